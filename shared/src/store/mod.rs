//! The configuration store and the run store: ports and adapters
//! (`dynamodb.rs` for Lambda, `embedded.rs` — a SQLite file, or memory — for `prdiff serve`
//! and tests). The run entities and their state machine are in [`crate::run`].
//!
//! At-least-once delivery means every write here may race a duplicate of itself, so the
//! writes that matter are conditional: a delivery id is claimed once, a run is created
//! once, and a state moves only from the state the caller saw.

#[cfg(feature = "aws")]
pub mod dynamodb;
#[cfg(feature = "sqlite")]
pub mod embedded;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use crate::config::{CiConfig, ConfigId, DataSource, DataSourceId, Provider, RepoName};
use crate::run::{
    CiRun, FanOut, PrKey, RecordOutcome, RunId, RunState, StartOutcome, StoredOutcome, Summary,
    WorkItem,
};

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A conditional write lost: the item changed since it was read (or already exists).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The run is not in a state that may move to the requested one.
    #[error("run {run} cannot move from {from} to {to}")]
    InvalidTransition {
        run: RunId,
        from: RunState,
        to: RunState,
    },
    #[error("not found: {0}")]
    NotFound(String),
    /// A stored item no longer parses (hand-edited, or written by a newer version). `key`
    /// names the item, and for a run's fan-out and results the run and the field.
    #[error("stored item {key} is corrupt")]
    Corrupt {
        key: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The backend failed (network, throttling, SQLite I/O).
    #[error("store backend failed")]
    Backend {
        retryable: bool,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StoreError {
    /// Conflicts are worth re-reading and retrying; corrupt items and bad transitions are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Conflict(_) => true,
            StoreError::Backend { retryable, .. } => *retryable,
            _ => false,
        }
    }
}

/// Configurations and data sources. Writes of one `apply` are all-or-nothing.
#[async_trait]
pub trait ConfigStore: Send + Sync {
    /// Writes all data sources and configurations in one transaction (replacing same ids).
    async fn put_all(&self, sources: &[DataSource], configs: &[CiConfig])
    -> Result<(), StoreError>;
    async fn get_config(&self, id: &ConfigId) -> Result<Option<CiConfig>, StoreError>;
    async fn list_configs(&self) -> Result<Vec<CiConfig>, StoreError>;
    async fn get_data_source(&self, id: &DataSourceId) -> Result<Option<DataSource>, StoreError>;
    async fn list_data_sources(&self) -> Result<Vec<DataSource>, StoreError>;
    /// Deletes a configuration; false when there was none.
    async fn delete_config(&self, id: &ConfigId) -> Result<bool, StoreError>;
    /// Deletes a data source; false when there was none.
    async fn delete_data_source(&self, id: &DataSourceId) -> Result<bool, StoreError>;

    /// The configurations of one repository, in name order.
    async fn configs_for_repository(
        &self,
        provider: Provider,
        repo: &RepoName,
    ) -> Result<Vec<CiConfig>, StoreError> {
        let mut found: Vec<CiConfig> = self
            .list_configs()
            .await?
            .into_iter()
            .filter(|c| {
                c.repository.provider == provider
                    && c.repository
                        .full_name
                        .as_str()
                        .eq_ignore_ascii_case(repo.as_str())
            })
            .collect();
        found.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(found)
    }
}

/// Decodes a JSON field of a run's fan-out or results; a failure names the run and the field.
#[cfg(any(feature = "aws", feature = "sqlite"))]
pub(crate) fn decode_run_field<T: serde::de::DeserializeOwned>(
    id: &RunId,
    field: &str,
    json: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt {
        key: format!("{field} of run {id}"),
        source: Box::new(e),
    })
}

/// Encodes a fan-out or result field as the adapters store it.
#[cfg(any(feature = "aws", feature = "sqlite"))]
pub(crate) fn encode_run_field<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("run fields serialize")
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// CI runs and delivery ids.
#[async_trait]
pub trait RunStore: Send + Sync {
    /// Claims a webhook delivery id for `ttl`. True the first time; false for a redelivery
    /// while the claim lives. One conditional write, so two racing copies cannot both win.
    async fn claim_delivery(&self, key: &str, ttl: Duration) -> Result<bool, StoreError>;
    /// Releases a claim after the delivery failed, so the host's retry is processed.
    async fn release_delivery(&self, key: &str) -> Result<(), StoreError>;
    /// Claims several distinct keys for `ttl`, all or none (a webhook delivery claims its
    /// id and the hash of its body). `None` when every key was claimed; `Some(i)` when
    /// `keys[i]` is held, and then nothing stays claimed.
    ///
    /// The default claims the keys one after another and gives back what it took when a
    /// later one is held: a key is never held by two callers, so of two racing copies
    /// sharing a key at most one gets through. Adapters override it with one atomic write.
    async fn claim_deliveries(
        &self,
        keys: &[String],
        ttl: Duration,
    ) -> Result<Option<usize>, StoreError> {
        for (i, key) in keys.iter().enumerate() {
            match self.claim_delivery(key, ttl).await {
                Ok(true) => {}
                Ok(false) => {
                    self.release_deliveries(&keys[..i]).await?;
                    return Ok(Some(i));
                }
                Err(e) => {
                    // The claim's error is the one to report; a key left claimed expires.
                    let _ = self.release_deliveries(&keys[..i]).await;
                    return Err(e);
                }
            }
        }
        Ok(None)
    }
    /// Releases the claims of [`claim_deliveries`](Self::claim_deliveries).
    async fn release_deliveries(&self, keys: &[String]) -> Result<(), StoreError> {
        for key in keys {
            self.release_delivery(key).await?;
        }
        Ok(())
    }

    /// Records `run` as the current run of its PR under its configuration and supersedes
    /// the previous open one, atomically. When the current open run already has the same
    /// head and base commits, writes nothing and returns it.
    async fn start_run(&self, run: &CiRun) -> Result<StartOutcome, StoreError>;
    async fn get_run(&self, id: &RunId) -> Result<Option<CiRun>, StoreError>;
    /// The current run of a PR under a configuration, open or not.
    async fn current_run(&self, config: &ConfigId, pr: &PrKey)
    -> Result<Option<CiRun>, StoreError>;
    /// Every run in an open state (received, waiting_for_dbt, diffing), oldest first: the
    /// scheduled sweep ends those past their deadline.
    async fn open_runs(&self) -> Result<Vec<CiRun>, StoreError>;
    /// Moves a run from `from` to `to`, only if it is still in `from` (conditional write).
    async fn transition(
        &self,
        id: &RunId,
        from: RunState,
        to: RunState,
        reason: Option<&str>,
    ) -> Result<CiRun, StoreError>;

    /// Records a run's fan-out and sets its pending count to the number of models. Written
    /// once: false (nothing changed) when the run already has one (a redelivered poll).
    async fn put_fanout(&self, id: &RunId, fanout: &FanOut) -> Result<bool, StoreError>;
    /// The fan-out summary of a run.
    async fn fanout_summary(&self, id: &RunId) -> Result<Option<Summary>, StoreError>;
    /// The work item of one model of a run.
    async fn model_work(&self, id: &RunId, model: &str) -> Result<Option<WorkItem>, StoreError>;
    /// Stores one model's result and counts it as done, atomically and once: recording the
    /// same model again changes nothing and reports `first: false`. Exactly one caller sees
    /// `first && remaining == 0`, even when the last two models finish together.
    ///
    /// `None` counts a result an earlier delivery stored (see [`has_result`](Self::has_result))
    /// without writing one: a redelivered message learns whether the report is still owed.
    async fn record_result(
        &self,
        id: &RunId,
        model: &str,
        outcome: Option<&StoredOutcome>,
    ) -> Result<RecordOutcome, StoreError>;
    /// Every recorded result of a run: `(model, outcome)`, in model order.
    async fn results(&self, id: &RunId) -> Result<Vec<(String, StoredOutcome)>, StoreError>;
    /// Whether a model's result is recorded (one key lookup: a redelivered diff message).
    async fn has_result(&self, id: &RunId, model: &str) -> Result<bool, StoreError>;
}
