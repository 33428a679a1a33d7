//! One SQLite database for the embedded adapters (configuration and run store, model
//! metadata, the durable queue): opened the same way everywhere, so `prdiff serve` can keep
//! all of them in one file.
//!
//! SQLite calls are short and local, so they run inline under a mutex instead of on a
//! blocking pool: a call costs microseconds, less than a thread hand-off. Files use WAL so
//! the adapters' separate connections read while another writes, and wait up to
//! [`BUSY_TIMEOUT`] for a writer instead of failing.
//!
//! The file holds configurations, runs and queued messages: it and its `-wal` and `-shm`
//! companions are made readable by their owner only (0600), whatever the process umask.
//! A new file is created with that mode; an existing one with group or other permission
//! bits is narrowed when opened.

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
        create_private(path);
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // WAL lets readers run beside a writer; it persists in the file once set.
        let _mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // SQLite creates `-wal` and `-shm` with the file's mode; older files (or ones
        // created by another tool) may be wider.
        for file in [
            path.to_owned(),
            companion(path, "-wal"),
            companion(path, "-shm"),
        ] {
            make_private(&file);
        }
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

/// `<db><suffix>`: SQLite's `-wal` and `-shm` files beside a database.
pub fn companion(db: &Path, suffix: &str) -> std::path::PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(suffix);
    s.into()
}

/// Creates the database file, owner-only, when it does not exist yet. An error is left
/// for SQLite's open to report.
fn create_private(path: &Path) {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let _ = options.open(path);
}

/// Drops group and other permissions from `file`, if it exists.
fn make_private(file: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = std::fs::metadata(file) else {
            return;
        };
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 == 0 {
            return;
        }
        let narrowed = mode & 0o700;
        match std::fs::set_permissions(file, std::fs::Permissions::from_mode(narrowed)) {
            Ok(()) => tracing::info!(
                file = %file.display(),
                from = format!("{mode:o}"),
                to = format!("{narrowed:o}"),
                "database file made private to its owner"
            ),
            Err(e) => tracing::warn!(
                file = %file.display(),
                mode = format!("{mode:o}"),
                error = %e,
                "database file is readable by others and its mode cannot be changed"
            ),
        }
    }
    #[cfg(not(unix))]
    let _ = file;
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

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[cfg(unix)]
    #[test]
    fn a_new_database_and_its_wal_and_shm_files_are_private_to_their_owner() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let db = LocalDb::open(&path, "CREATE TABLE IF NOT EXISTS t (v INTEGER);").unwrap();
        db.lock().execute("INSERT INTO t VALUES (1)", []).unwrap();
        for file in [
            path.clone(),
            companion(&path, "-wal"),
            companion(&path, "-shm"),
        ] {
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
    }

    #[cfg(unix)]
    #[test]
    fn an_existing_database_readable_by_others_is_narrowed_when_opened() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let schema = "CREATE TABLE IF NOT EXISTS t (v INTEGER);";
        drop(LocalDb::open(&path, schema).unwrap());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        // A `-shm` left wide by an older version (SQLite keeps an existing file's mode).
        let shm = companion(&path, "-shm");
        std::fs::write(&shm, b"").unwrap();
        std::fs::set_permissions(&shm, std::fs::Permissions::from_mode(0o666)).unwrap();
        let _db = LocalDb::open(&path, schema).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&shm), 0o600);
        assert_eq!(mode(&companion(&path, "-wal")), 0o600);
    }
}
