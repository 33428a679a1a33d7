//! SQLite driver over rusqlite (bundled): the embedded default for the demo and local use.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rusqlite::functions::FunctionFlags;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use super::{ConnectOptions, Row, Warehouse, WarehouseError, WarehouseUrl};
use crate::sql::{Dialect, Sqlite};

pub struct SqliteWarehouse {
    conn: Arc<Mutex<Connection>>,
    statement_timeout: Duration,
}

/// 32-bit bucket of a key's text: the first half of xxh3-64 over `seed || text`.
pub fn hash32(text: &str, seed: u64) -> i64 {
    (xxhash_rust::xxh3::xxh3_64_with_seed(text.as_bytes(), seed) >> 32) as i64
}

impl SqliteWarehouse {
    /// Opens the database at the URL's path and attaches the others, all read-only.
    pub fn open(url: &WarehouseUrl, options: &ConnectOptions) -> Result<Self, WarehouseError> {
        let WarehouseUrl::Sqlite { path, attach } = url else {
            return Err(WarehouseError::NoDriver("this URL"));
        };
        let connect_err = |e: rusqlite::Error| WarehouseError::Connect {
            target: url.to_string(),
            source: Box::new(e),
            retryable: false,
        };
        // Every file is opened read-only: no statement can change one, whatever it does to
        // the session. Without a main file, attached files are read through an in-memory
        // main database.
        let read_only = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI;
        let conn = if path.exists() {
            Connection::open_with_flags(path, read_only)
        } else if !attach.is_empty() {
            Connection::open_in_memory_with_flags(
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_URI,
            )
        } else {
            return Err(WarehouseError::Connect {
                target: url.to_string(),
                source: format!("{} does not exist", path.display()).into(),
                retryable: false,
            });
        }
        .map_err(connect_err)?;
        for (name, p) in attach {
            if !p.exists() {
                return Err(WarehouseError::Connect {
                    target: url.to_string(),
                    source: format!(
                        "attached database `{name}` ({}) does not exist",
                        p.display()
                    )
                    .into(),
                    retryable: false,
                });
            }
            conn.execute("ATTACH DATABASE ?1 AS ?2", (read_only_uri(p), name))
                .map_err(connect_err)?;
        }
        Self::from_connection(conn, options).map_err(connect_err)
    }

    /// Wraps an open connection (tests and the demo build their data first).
    pub fn from_connection(
        conn: Connection,
        options: &ConnectOptions,
    ) -> Result<Self, rusqlite::Error> {
        conn.create_scalar_function(
            crate::sql::sqlite::HASH_FUNCTION,
            2,
            FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
            |ctx| {
                let text: Option<String> = ctx.get(0)?;
                let seed: i64 = ctx.get(1)?;
                Ok(text.map(|t| hash32(&t, seed as u64)))
            },
        )?;
        // The diff only reads: no statement may change a database file.
        conn.pragma_update(None, "query_only", true)?;
        Ok(SqliteWarehouse {
            conn: Arc::new(Mutex::new(conn)),
            statement_timeout: options.statement_timeout,
        })
    }
}

#[async_trait]
impl Warehouse for SqliteWarehouse {
    fn dialect(&self) -> &'static dyn Dialect {
        &Sqlite
    }

    async fn query(&self, sql: &str) -> Result<Vec<Row>, WarehouseError> {
        let conn = self.conn.clone();
        let sql = sql.to_owned();
        let timeout = self.statement_timeout;
        tokio::task::spawn_blocking(move || {
            run(
                &conn.lock().expect("sqlite connection poisoned"),
                &sql,
                timeout,
            )
        })
        .await
        .map_err(|e| WarehouseError::Other {
            message: e.to_string(),
        })?
    }
}

fn run(conn: &Connection, sql: &str, timeout: Duration) -> Result<Vec<Row>, WarehouseError> {
    let started = Instant::now();
    let deadline = started + timeout;
    // Checked every few thousand VM steps: interrupts the statement past its deadline.
    conn.progress_handler(10_000, Some(move || Instant::now() > deadline));
    let result = (|| {
        // `prepare` compiles one statement and refuses trailing ones.
        let mut stmt = conn.prepare(sql)?;
        let n = stmt.column_count();
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let mut row = Vec::with_capacity(n);
            for i in 0..n {
                row.push(match r.get_ref(i)? {
                    ValueRef::Null => None,
                    ValueRef::Integer(v) => Some(v.to_string()),
                    ValueRef::Real(v) => Some(v.to_string()),
                    ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Some(b.iter().map(|x| format!("{x:02x}")).collect()),
                });
            }
            out.push(row);
        }
        Ok(out)
    })();
    conn.progress_handler(0, None::<fn() -> bool>);
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        ok = result.is_ok(),
        sql,
        "sqlite statement"
    );
    result.map_err(|e: rusqlite::Error| match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::OperationInterrupted =>
        {
            WarehouseError::Timeout(timeout)
        }
        // SQLite reports syntax errors and unknown tables or columns as generic errors.
        rusqlite::Error::SqlInputError { msg, .. } => WarehouseError::Rejected {
            message: super::error_text(&msg),
        },
        rusqlite::Error::SqliteFailure(f, Some(msg)) if f.code == rusqlite::ErrorCode::Unknown => {
            WarehouseError::Rejected {
                message: super::error_text(&msg),
            }
        }
        rusqlite::Error::MultipleStatement => WarehouseError::Rejected {
            message: "more than one SQL statement (a filter must be a single expression)"
                .to_owned(),
        },
        other => WarehouseError::Other {
            message: super::error_text(&other.to_string()),
        },
    })
}

/// A `file:` URI that opens `path` read-only (SQLite's URI filenames: `%`, `?` and `#`
/// percent-encoded).
fn read_only_uri(path: &std::path::Path) -> String {
    const ESCAPE: &percent_encoding::AsciiSet =
        &percent_encoding::CONTROLS.add(b'%').add(b'?').add(b'#');
    format!(
        "file:{}?mode=ro",
        percent_encoding::utf8_percent_encode(&path.to_string_lossy(), ESCAPE)
    )
}

/// Creates (or extends) the SQLite database at `path` by running `script`, in one
/// transaction: for the demo and for tests that build their own data.
pub fn run_script(path: &std::path::Path, script: &str) -> Result<(), rusqlite::Error> {
    let mut conn = Connection::open(path)?;
    let tx = conn.transaction()?;
    tx.execute_batch(script)?;
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn statements_cannot_change_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        run_script(
            &path,
            "CREATE TABLE t (id integer); INSERT INTO t VALUES (1);",
        )
        .unwrap();
        let url = WarehouseUrl::Sqlite {
            path: path.clone(),
            attach: Vec::new(),
        };
        let wh = SqliteWarehouse::open(&url, &ConnectOptions::default()).unwrap();
        assert_eq!(
            read_only_uri(std::path::Path::new("/a b/c?d#e%f.db")),
            "file:/a b/c%3Fd%23e%25f.db?mode=ro"
        );
        for sql in [
            "INSERT INTO t VALUES (2)",
            "DELETE FROM t",
            "CREATE TABLE u (a integer)",
            "PRAGMA query_only = OFF",
        ] {
            let _ = wh.query(sql).await;
        }
        assert!(wh.query("INSERT INTO t VALUES (3)").await.is_err());
        let rows = wh.query("SELECT count(*) FROM t").await.unwrap();
        assert_eq!(rows, vec![vec![Some("1".to_owned())]]);
        drop(wh);

        // Attached files, through an in-memory main database.
        let url = WarehouseUrl::Sqlite {
            path: dir.path().join("missing.db"),
            attach: vec![("prod".to_owned(), path.clone())],
        };
        let wh = SqliteWarehouse::open(&url, &ConnectOptions::default()).unwrap();
        let _ = wh.query("PRAGMA query_only = OFF").await;
        assert!(wh.query("INSERT INTO prod.t VALUES (4)").await.is_err());
        assert!(!dir.path().join("missing.db").exists(), "nothing created");
        let missing = WarehouseUrl::Sqlite {
            path: dir.path().join("missing.db"),
            attach: Vec::new(),
        };
        assert!(SqliteWarehouse::open(&missing, &ConnectOptions::default()).is_err());
        let tables = wh
            .query("SELECT count(*) FROM sqlite_master WHERE name = 'u'")
            .await
            .unwrap();
        assert_eq!(tables, vec![vec![Some("0".to_owned())]]);
    }
}
