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
    /// Opens the database at the URL's path (created if missing) and attaches the others.
    pub fn open(url: &WarehouseUrl, options: &ConnectOptions) -> Result<Self, WarehouseError> {
        let WarehouseUrl::Sqlite { path, attach } = url else {
            return Err(WarehouseError::NoDriver("this URL"));
        };
        let connect_err = |e: rusqlite::Error| WarehouseError::Connect {
            target: url.to_string(),
            source: Box::new(e),
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_URI,
        )
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
                });
            }
            conn.execute("ATTACH DATABASE ?1 AS ?2", (p.to_string_lossy(), name))
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

/// Creates (or extends) the SQLite database at `path` by running `script`, in one
/// transaction: for the demo and for tests that build their own data.
pub fn run_script(path: &std::path::Path, script: &str) -> Result<(), rusqlite::Error> {
    let mut conn = Connection::open(path)?;
    let tx = conn.transaction()?;
    tx.execute_batch(script)?;
    tx.commit()
}
