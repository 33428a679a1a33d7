//! The metadata store on SQLite (a file for `prdiff serve`, or memory for tests): one row
//! per model, one per configuration's state. A sync's writes are one transaction.

use std::collections::HashMap;
use std::path::Path;
use std::sync::MutexGuard;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::{MetadataError, MetadataStore, ModelMetadata, StoredDigest, SyncState};
use crate::config::ConfigId;
use crate::localdb::{LocalDb, is_busy};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS metadata_models (
    config TEXT NOT NULL, unique_id TEXT NOT NULL, name TEXT NOT NULL,
    hash TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (config, unique_id));
CREATE INDEX IF NOT EXISTS metadata_models_by_name ON metadata_models (config, name);
CREATE TABLE IF NOT EXISTS metadata_state (config TEXT PRIMARY KEY, body TEXT NOT NULL);
";

/// Model metadata on SQLite.
pub struct EmbeddedMetadata {
    db: LocalDb,
}

fn backend(e: rusqlite::Error) -> MetadataError {
    MetadataError::Backend {
        retryable: is_busy(&e),
        source: Box::new(e),
    }
}

fn decode<T: serde::de::DeserializeOwned>(key: &str, body: &str) -> Result<T, MetadataError> {
    serde_json::from_str(body).map_err(|e| MetadataError::Corrupt {
        key: key.to_owned(),
        source: Box::new(e),
    })
}

impl EmbeddedMetadata {
    /// Opens (creating if needed) a database file; it may be the configuration store's.
    pub fn open(path: &Path) -> Result<Self, MetadataError> {
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
}

#[async_trait]
impl MetadataStore for EmbeddedMetadata {
    async fn state(&self, config: &ConfigId) -> Result<Option<SyncState>, MetadataError> {
        let body: Option<String> = self
            .conn()
            .query_row(
                "SELECT body FROM metadata_state WHERE config = ?1",
                [config.as_str()],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)?;
        body.map(|b| decode(config.as_str(), &b)).transpose()
    }

    async fn put_state(&self, config: &ConfigId, state: &SyncState) -> Result<(), MetadataError> {
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO metadata_state (config, body) VALUES (?1, ?2)",
                params![
                    config.as_str(),
                    serde_json::to_string(state).expect("state serializes")
                ],
            )
            .map_err(backend)?;
        Ok(())
    }

    async fn digests(
        &self,
        config: &ConfigId,
    ) -> Result<HashMap<String, StoredDigest>, MetadataError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT unique_id, name, hash FROM metadata_models WHERE config = ?1")
            .map_err(backend)?;
        let rows = stmt
            .query_map([config.as_str()], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(backend)?;
        let mut out = HashMap::new();
        for row in rows {
            let (uid, name, hash) = row.map_err(backend)?;
            let hash = u64::from_str_radix(&hash, 16).map_err(|e| MetadataError::Corrupt {
                key: uid.clone(),
                source: Box::new(e),
            })?;
            out.insert(
                uid,
                StoredDigest {
                    name,
                    hash,
                    parts: 0,
                },
            );
        }
        Ok(out)
    }

    async fn put_models(
        &self,
        config: &ConfigId,
        models: &[ModelMetadata],
        _old: &HashMap<String, StoredDigest>,
    ) -> Result<(), MetadataError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(backend)?;
        {
            let mut stmt = tx
                .prepare(
                    "INSERT OR REPLACE INTO metadata_models (config, unique_id, name, hash, body)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(backend)?;
            for m in models {
                stmt.execute(params![
                    config.as_str(),
                    m.unique_id,
                    m.name,
                    format!("{:016x}", m.content_hash()),
                    serde_json::to_string(m).expect("metadata serializes"),
                ])
                .map_err(backend)?;
            }
        }
        tx.commit().map_err(backend)
    }

    async fn remove_models(
        &self,
        config: &ConfigId,
        models: &[(String, StoredDigest)],
    ) -> Result<(), MetadataError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(backend)?;
        for (uid, _) in models {
            tx.execute(
                "DELETE FROM metadata_models WHERE config = ?1 AND unique_id = ?2",
                params![config.as_str(), uid],
            )
            .map_err(backend)?;
        }
        tx.commit().map_err(backend)
    }

    async fn models_named(
        &self,
        config: &ConfigId,
        name: &str,
    ) -> Result<Vec<ModelMetadata>, MetadataError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT unique_id, body FROM metadata_models
                 WHERE config = ?1 AND (name = ?2 OR unique_id = ?2) ORDER BY unique_id",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![config.as_str(), name], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(backend)?;
        let mut out = Vec::new();
        for row in rows {
            let (uid, body) = row.map_err(backend)?;
            out.push(decode(&uid, &body)?);
        }
        Ok(out)
    }
}
