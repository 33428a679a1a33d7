//! One SQLite database for the embedded adapters (configuration and run store, model
//! metadata, the durable queue): opened the same way everywhere, so `prdiff serve` can keep
//! all of them in one file.
//!
//! SQLite calls are short and local, so they run inline under a mutex instead of on a
//! blocking pool: a call costs microseconds, less than a thread hand-off. Files use WAL so
//! the adapters' separate connections read while another writes, and wait up to
//! [`BUSY_TIMEOUT`] for a writer instead of failing.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::Connection;

/// How long a connection waits for another writer before `SQLITE_BUSY`.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection with its schema applied.
pub struct LocalDb {
    conn: Mutex<Connection>,
}

impl LocalDb {
    /// Opens (creating if needed) a database file and applies `schema` (idempotent DDL).
    pub fn open(path: &Path, schema: &str) -> rusqlite::Result<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // WAL lets readers run beside a writer; it persists in the file once set.
        let _mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Self::init(conn, schema)
    }

    /// A private in-memory database.
    pub fn in_memory(schema: &str) -> Self {
        Self::init(
            Connection::open_in_memory().expect("in-memory SQLite"),
            schema,
        )
        .expect("schema on an in-memory database")
    }

    fn init(conn: Connection, schema: &str) -> rusqlite::Result<Self> {
        conn.execute_batch(schema)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    /// The connection. A panic while holding it cannot leave a half transaction (it rolls
    /// back on drop), so a poisoned lock is safe to keep using.
    pub fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether an error is another writer holding the database: worth retrying.
pub fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_connections_to_one_file_see_each_other_and_the_schema_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let schema = "CREATE TABLE IF NOT EXISTS t (v INTEGER);";
        let a = LocalDb::open(&path, schema).unwrap();
        let b = LocalDb::open(&path, schema).unwrap();
        a.lock().execute("INSERT INTO t VALUES (7)", []).unwrap();
        let v: i64 = b
            .lock()
            .query_row("SELECT v FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 7);
        let mode: String = b
            .lock()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }
}
