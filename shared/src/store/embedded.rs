//! The embedded store: both ports on one SQLite database (a file for `prdiff serve`, or
//! memory for tests and benchmarks), opened through [`crate::localdb`].
//!
//! Every multi-row write is one transaction, which gives the same all-or-nothing and
//! conditional guarantees as the DynamoDB adapter.

use std::path::Path;
use std::sync::MutexGuard;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{ConfigStore, RunStore, StoreError, decode_run_field, encode_run_field, unix_now};
use crate::config::{CiConfig, ConfigId, DataSource, DataSourceId};
use crate::localdb::{LocalDb, is_busy};
use crate::run::{
    CiRun, FanOut, PrKey, RecordOutcome, RunId, RunState, StartOutcome, StoredOutcome, Summary,
    WorkItem, check_transition,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS configs (id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS data_sources (id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (id TEXT PRIMARY KEY, state TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pr_slots (slot TEXT PRIMARY KEY, run_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS deliveries (key TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS run_fanouts (run_id TEXT PRIMARY KEY, total INTEGER NOT NULL, summary TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS run_work (run_id TEXT NOT NULL, model TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (run_id, model));
CREATE TABLE IF NOT EXISTS run_results (run_id TEXT NOT NULL, model TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (run_id, model));
";

/// Configuration store and run store on SQLite.
pub struct EmbeddedStore {
    db: LocalDb,
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend {
        retryable: is_busy(&e),
        source: Box::new(e),
    }
}

fn decode<T: serde::de::DeserializeOwned>(key: &str, body: &str) -> Result<T, StoreError> {
    serde_json::from_str(body).map_err(|e| StoreError::Corrupt {
        key: key.to_owned(),
        source: Box::new(e),
    })
}

fn encode<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("store items serialize")
}

impl EmbeddedStore {
    /// Opens (creating if needed) a database file.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            db: LocalDb::open(path, SCHEMA).map_err(backend)?,
        })
    }

    /// A private in-memory database.
    pub fn in_memory() -> Self {
        Self {
            db: LocalDb::in_memory(SCHEMA),
        }
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.db.lock()
    }

    fn read_run(conn: &Connection, id: &str) -> Result<Option<CiRun>, StoreError> {
        let body: Option<String> = conn
            .query_row("SELECT body FROM runs WHERE id = ?1", [id], |r| r.get(0))
            .optional()
            .map_err(backend)?;
        body.map(|b| decode(id, &b)).transpose()
    }

    fn write_run(conn: &Connection, run: &CiRun) -> Result<(), StoreError> {
        conn.execute(
            "INSERT INTO runs (id, state, body) VALUES (?1, ?2, ?3)
             ON CONFLICT (id) DO UPDATE SET state = excluded.state, body = excluded.body",
            params![run.id.as_str(), run.state.as_str(), encode(run)],
        )
        .map_err(backend)?;
        Ok(())
    }
}

#[async_trait]
impl ConfigStore for EmbeddedStore {
    async fn put_all(
        &self,
        sources: &[DataSource],
        configs: &[CiConfig],
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(backend)?;
        for s in sources {
            tx.execute(
                "INSERT OR REPLACE INTO data_sources (id, body) VALUES (?1, ?2)",
                params![s.id.as_str(), encode(s)],
            )
            .map_err(backend)?;
        }
        for c in configs {
            tx.execute(
                "INSERT OR REPLACE INTO configs (id, body) VALUES (?1, ?2)",
                params![c.name.as_str(), encode(c)],
            )
            .map_err(backend)?;
        }
        tx.commit().map_err(backend)
    }

    async fn get_config(&self, id: &ConfigId) -> Result<Option<CiConfig>, StoreError> {
        let conn = self.conn();
        let body: Option<String> = conn
            .query_row(
                "SELECT body FROM configs WHERE id = ?1",
                [id.as_str()],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)?;
        body.map(|b| decode(id.as_str(), &b)).transpose()
    }

    async fn list_configs(&self) -> Result<Vec<CiConfig>, StoreError> {
        list(&self.conn(), "SELECT id, body FROM configs ORDER BY id")
    }

    async fn get_data_source(&self, id: &DataSourceId) -> Result<Option<DataSource>, StoreError> {
        let conn = self.conn();
        let body: Option<String> = conn
            .query_row(
                "SELECT body FROM data_sources WHERE id = ?1",
                [id.as_str()],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)?;
        body.map(|b| decode(id.as_str(), &b)).transpose()
    }

    async fn list_data_sources(&self) -> Result<Vec<DataSource>, StoreError> {
        list(
            &self.conn(),
            "SELECT id, body FROM data_sources ORDER BY id",
        )
    }

    async fn delete_config(&self, id: &ConfigId) -> Result<bool, StoreError> {
        let n = self
            .conn()
            .execute("DELETE FROM configs WHERE id = ?1", [id.as_str()])
            .map_err(backend)?;
        Ok(n > 0)
    }

    async fn delete_data_source(&self, id: &DataSourceId) -> Result<bool, StoreError> {
        let n = self
            .conn()
            .execute("DELETE FROM data_sources WHERE id = ?1", [id.as_str()])
            .map_err(backend)?;
        Ok(n > 0)
    }
}

fn list<T: serde::de::DeserializeOwned>(
    conn: &Connection,
    sql: &str,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn.prepare(sql).map_err(backend)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .map_err(backend)?;
    let mut out = Vec::new();
    for row in rows {
        let (id, body) = row.map_err(backend)?;
        out.push(decode(&id, &body)?);
    }
    Ok(out)
}

#[async_trait]
impl RunStore for EmbeddedStore {
    async fn claim_delivery(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        let now = unix_now();
        let n = self
            .conn()
            .execute(
                "INSERT INTO deliveries (key, expires_at) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at
                 WHERE deliveries.expires_at <= ?3",
                params![key, (now + ttl.as_secs()) as i64, now as i64],
            )
            .map_err(backend)?;
        Ok(n == 1)
    }

    async fn release_delivery(&self, key: &str) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM deliveries WHERE key = ?1", [key])
            .map_err(backend)?;
        Ok(())
    }

    async fn claim_deliveries(
        &self,
        keys: &[String],
        ttl: Duration,
    ) -> Result<Option<usize>, StoreError> {
        let now = unix_now();
        let mut conn = self.conn();
        // One transaction: all keys or none (dropping it uncommitted rolls back).
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        for (i, key) in keys.iter().enumerate() {
            let n = tx
                .execute(
                    "INSERT INTO deliveries (key, expires_at) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at
                     WHERE deliveries.expires_at <= ?3",
                    params![key, (now + ttl.as_secs()) as i64, now as i64],
                )
                .map_err(backend)?;
            if n != 1 {
                return Ok(Some(i));
            }
        }
        tx.commit().map_err(backend)?;
        Ok(None)
    }

    async fn release_deliveries(&self, keys: &[String]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(backend)?;
        for key in keys {
            tx.execute("DELETE FROM deliveries WHERE key = ?1", [key])
                .map_err(backend)?;
        }
        tx.commit().map_err(backend)
    }

    async fn start_run(&self, run: &CiRun) -> Result<StartOutcome, StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        let slot = run.pr.slot(&run.config_id);
        let current: Option<String> = tx
            .query_row(
                "SELECT run_id FROM pr_slots WHERE slot = ?1",
                [&slot],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)?;
        let mut superseded = None;
        if let Some(current) = current
            && let Some(mut old) = Self::read_run(&tx, &current)?
            && !old.state.is_final()
        {
            if old.head_sha == run.head_sha && old.base_sha == run.base_sha {
                return Ok(StartOutcome::AlreadyOpen(Box::new(old)));
            }
            old.state = RunState::Superseded;
            old.reason = Some(format!(
                "superseded by {} (run {})",
                run.head_sha
                    .as_str()
                    .get(..7)
                    .unwrap_or(run.head_sha.as_str()),
                run.id
            ));
            old.updated_at = unix_now();
            Self::write_run(&tx, &old)?;
            superseded = Some(old.id);
        }
        let inserted = tx
            .execute(
                "INSERT INTO runs (id, state, body) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                params![run.id.as_str(), run.state.as_str(), encode(run)],
            )
            .map_err(backend)?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!(
                "run {} already exists",
                run.id
            )));
        }
        tx.execute(
            "INSERT OR REPLACE INTO pr_slots (slot, run_id) VALUES (?1, ?2)",
            params![slot, run.id.as_str()],
        )
        .map_err(backend)?;
        tx.commit().map_err(backend)?;
        Ok(StartOutcome::Started { superseded })
    }

    async fn get_run(&self, id: &RunId) -> Result<Option<CiRun>, StoreError> {
        Self::read_run(&self.conn(), id.as_str())
    }

    async fn open_runs(&self) -> Result<Vec<CiRun>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT id, body FROM runs WHERE state IN ('received', 'waiting_for_dbt', 'diffing') ORDER BY id",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(backend)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)?;
        rows.iter().map(|(id, b)| decode(id, b)).collect()
    }

    async fn current_run(
        &self,
        config: &ConfigId,
        pr: &PrKey,
    ) -> Result<Option<CiRun>, StoreError> {
        let conn = self.conn();
        let id: Option<String> = conn
            .query_row(
                "SELECT run_id FROM pr_slots WHERE slot = ?1",
                [pr.slot(config)],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)?;
        match id {
            Some(id) => Self::read_run(&conn, &id),
            None => Ok(None),
        }
    }

    async fn transition(
        &self,
        id: &RunId,
        from: RunState,
        to: RunState,
        reason: Option<&str>,
    ) -> Result<CiRun, StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        let mut run = Self::read_run(&tx, id.as_str())?
            .ok_or_else(|| StoreError::NotFound(format!("run {id}")))?;
        check_transition(&run, from, to)?;
        run.state = to;
        run.reason = reason.map(str::to_owned).or(run.reason);
        run.updated_at = unix_now();
        Self::write_run(&tx, &run)?;
        tx.commit().map_err(backend)?;
        Ok(run)
    }

    async fn put_fanout(&self, id: &RunId, fanout: &FanOut) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        let inserted = tx
            .execute(
                "INSERT INTO run_fanouts (run_id, total, summary) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO NOTHING",
                params![
                    id.as_str(),
                    fanout.models.len() as i64,
                    encode_run_field(&fanout.summary)
                ],
            )
            .map_err(backend)?;
        if inserted == 0 {
            return Ok(false);
        }
        for (model, work) in &fanout.models {
            tx.execute(
                "INSERT OR REPLACE INTO run_work (run_id, model, body) VALUES (?1, ?2, ?3)",
                params![id.as_str(), model, encode_run_field(work)],
            )
            .map_err(backend)?;
        }
        tx.commit().map_err(backend)?;
        Ok(true)
    }

    async fn fanout_summary(&self, id: &RunId) -> Result<Option<Summary>, StoreError> {
        let json: Option<String> = self
            .conn()
            .query_row(
                "SELECT summary FROM run_fanouts WHERE run_id = ?1",
                [id.as_str()],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)?;
        json.map(|j| decode_run_field(id, "fan-out summary", &j))
            .transpose()
    }

    async fn model_work(&self, id: &RunId, model: &str) -> Result<Option<WorkItem>, StoreError> {
        let json: Option<String> = self
            .conn()
            .query_row(
                "SELECT body FROM run_work WHERE run_id = ?1 AND model = ?2",
                params![id.as_str(), model],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)?;
        json.map(|j| decode_run_field(id, &format!("work item of {model}"), &j))
            .transpose()
    }

    async fn record_result(
        &self,
        id: &RunId,
        model: &str,
        outcome: Option<&StoredOutcome>,
    ) -> Result<RecordOutcome, StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        let total: Option<i64> = tx
            .query_row(
                "SELECT total FROM run_fanouts WHERE run_id = ?1",
                [id.as_str()],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)?;
        let total = total.ok_or_else(|| StoreError::NotFound(format!("fan-out of run {id}")))?;
        let inserted = match outcome {
            Some(outcome) => tx
                .execute(
                    "INSERT INTO run_results (run_id, model, body) VALUES (?1, ?2, ?3)
                     ON CONFLICT DO NOTHING",
                    params![id.as_str(), model, encode_run_field(outcome)],
                )
                .map_err(backend)?,
            None => 0,
        };
        let done: i64 = tx
            .query_row(
                "SELECT count(*) FROM run_results r JOIN run_work w
                   ON w.run_id = r.run_id AND w.model = r.model WHERE r.run_id = ?1",
                [id.as_str()],
                |r| r.get(0),
            )
            .map_err(backend)?;
        tx.commit().map_err(backend)?;
        Ok(RecordOutcome {
            first: inserted == 1,
            remaining: (total - done).max(0) as u64,
        })
    }

    async fn results(&self, id: &RunId) -> Result<Vec<(String, StoredOutcome)>, StoreError> {
        let rows: Vec<(String, String)> = {
            let conn = self.conn();
            let mut stmt = conn
                .prepare("SELECT model, body FROM run_results WHERE run_id = ?1 ORDER BY model")
                .map_err(backend)?;
            stmt.query_map([id.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(backend)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(backend)?
        };
        rows.into_iter()
            .map(|(model, json)| {
                let outcome = decode_run_field(id, &format!("result of {model}"), &json)?;
                Ok((model, outcome))
            })
            .collect()
    }

    async fn has_result(&self, id: &RunId, model: &str) -> Result<bool, StoreError> {
        self.conn()
            .query_row(
                "SELECT 1 FROM run_results WHERE run_id = ?1 AND model = ?2",
                params![id.as_str(), model],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
            .map_err(backend)
    }
}
