//! The configuration store and the run store: ports, the run state machine, and adapters
//! (`dynamodb.rs` for Lambda, `embedded.rs` — a SQLite file, or memory — for `prdiff serve`
//! and tests).
//!
//! At-least-once delivery means every write here may race a duplicate of itself, so the
//! writes that matter are conditional: a delivery id is claimed once, a run is created
//! once, and a state moves only from the state the caller saw.

#[cfg(feature = "aws")]
pub mod dynamodb;
#[cfg(feature = "sqlite")]
pub mod embedded;

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::config::{CiConfig, CommitSha, ConfigId, DataSource, DataSourceId, Provider, RepoName};

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
    /// A stored item no longer parses (hand-edited, or written by a newer version).
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

/// The id of a CI run: `run_<unix ms, 16 hex>_<8 random hex>`, so ids sort by creation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RunId(String);

impl RunId {
    pub fn new() -> Self {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        Self(format!("run_{ms:016x}_{:08x}", rand::random::<u32>()))
    }
    pub fn parse(s: impl Into<String>) -> Result<Self, String> {
        let s = s.into();
        let ok = s.starts_with("run_")
            && s.len() <= 64
            && s[4..]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            && s.len() > 4;
        if ok {
            Ok(Self(s))
        } else {
            Err(format!("run id {s:?} is not run_<alphanumeric>"))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for RunId {
    fn default() -> Self {
        Self::new()
    }
}

impl TryFrom<String> for RunId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(s)
    }
}

impl From<RunId> for String {
    fn from(v: RunId) -> String {
        v.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a CI run is. Open states: received, waiting_for_dbt, diffing. The rest are final.
///
/// ```text
/// received ──► waiting_for_dbt ──► diffing ──► done
///     │               │               │
///     └───────────────┴───────────────┴──► skipped | failed | superseded | cancelled
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Received,
    WaitingForDbt,
    Diffing,
    Done,
    Skipped,
    Failed,
    Superseded,
    Cancelled,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Received => "received",
            RunState::WaitingForDbt => "waiting_for_dbt",
            RunState::Diffing => "diffing",
            RunState::Done => "done",
            RunState::Skipped => "skipped",
            RunState::Failed => "failed",
            RunState::Superseded => "superseded",
            RunState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "received" => RunState::Received,
            "waiting_for_dbt" => RunState::WaitingForDbt,
            "diffing" => RunState::Diffing,
            "done" => RunState::Done,
            "skipped" => RunState::Skipped,
            "failed" => RunState::Failed,
            "superseded" => RunState::Superseded,
            "cancelled" => RunState::Cancelled,
            _ => return None,
        })
    }

    /// Final states never change again.
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            RunState::Received | RunState::WaitingForDbt | RunState::Diffing
        )
    }

    /// Whether the state machine allows `self → next`. Moving forward only; any open state
    /// may end early (skipped, failed, superseded, cancelled).
    pub fn can_move_to(self, next: RunState) -> bool {
        use RunState::*;
        match (self, next) {
            (s, _) if s.is_final() => false,
            (Received, WaitingForDbt) | (WaitingForDbt, Diffing) | (Diffing, Done) => true,
            (_, Skipped | Failed | Superseded | Cancelled) => true,
            _ => false,
        }
    }

    /// States a run may sit in; `all()` for listings and tests.
    pub fn all() -> [RunState; 8] {
        use RunState::*;
        [
            Received,
            WaitingForDbt,
            Diffing,
            Done,
            Skipped,
            Failed,
            Superseded,
            Cancelled,
        ]
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A pull/merge request of a repository.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PrKey {
    pub provider: Provider,
    pub repository: RepoName,
    /// GitHub PR number / GitLab MR iid.
    pub number: u64,
}

impl PrKey {
    /// The key of "the current run of this PR under this configuration".
    pub fn slot(&self, config: &ConfigId) -> String {
        format!(
            "{config}#{}#{}#{}",
            self.provider,
            self.repository.as_str().to_ascii_lowercase(),
            self.number
        )
    }
}

/// One CI run: a PR head commit compared against a base commit under one configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CiRun {
    pub id: RunId,
    pub config_id: ConfigId,
    pub pr: PrKey,
    pub head_sha: CommitSha,
    pub base_sha: CommitSha,
    pub base_branch: String,
    pub state: RunState,
    /// Why the run is in its state, for people (skip reasons, failure summaries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Unix seconds.
    pub created_at: u64,
    pub updated_at: u64,
}

/// What [`RunStore::start_run`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartOutcome {
    /// The run was recorded; `superseded` is the open run of the same PR it replaced.
    Started { superseded: Option<RunId> },
    /// An open run for the same head and base already exists (e.g. `labeled` after
    /// `synchronize`): nothing was written.
    AlreadyOpen(CiRun),
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
    async fn fanout_summary(&self, id: &RunId) -> Result<Option<String>, StoreError>;
    /// The work item of one model of a run.
    async fn model_work(&self, id: &RunId, model: &str) -> Result<Option<String>, StoreError>;
    /// Stores one model's result and counts it as done, atomically and once: recording the
    /// same model again changes nothing and reports `first: false`. Exactly one caller sees
    /// `first && remaining == 0`, even when the last two models finish together.
    async fn record_result(
        &self,
        id: &RunId,
        model: &str,
        body: &str,
    ) -> Result<RecordOutcome, StoreError>;
    /// Every recorded result of a run: `(model, body)`, in model order.
    async fn results(&self, id: &RunId) -> Result<Vec<(String, String)>, StoreError>;
    /// Whether a model's result is recorded (one key lookup: a redelivered diff message).
    async fn has_result(&self, id: &RunId, model: &str) -> Result<bool, StoreError>;
}

/// What the poller leaves for the diff runners of a run: written once, read many times.
///
/// `summary` is what the report needs besides the results (header, skipped models,
/// downstream names…); `models` is one work item per model to diff (`unique_id` → the
/// diff runner's input). Both are opaque JSON to the store; the functions own their shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanOut {
    pub summary: String,
    pub models: Vec<(String, String)>,
}

/// What [`RunStore::record_result`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordOutcome {
    /// False when this model's result was already recorded (a redelivered message): the
    /// pending count did not move.
    pub first: bool,
    /// Models still without a result after this write.
    pub remaining: u64,
}

/// Checks a transition before an adapter writes it.
pub(crate) fn check_transition(
    run: &CiRun,
    from: RunState,
    to: RunState,
) -> Result<(), StoreError> {
    if run.state != from {
        return Err(StoreError::Conflict(format!(
            "run {} is {}, not {from}",
            run.id, run.state
        )));
    }
    if !from.can_move_to(to) {
        return Err(StoreError::InvalidTransition {
            run: run.id.clone(),
            from,
            to,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_states_never_move_and_open_states_only_move_forward() {
        for s in RunState::all() {
            for t in RunState::all() {
                let allowed = s.can_move_to(t);
                if s.is_final() {
                    assert!(!allowed, "{s} -> {t}");
                }
            }
        }
        assert!(RunState::Received.can_move_to(RunState::WaitingForDbt));
        assert!(!RunState::Received.can_move_to(RunState::Diffing));
        assert!(!RunState::Diffing.can_move_to(RunState::WaitingForDbt));
        assert!(RunState::Diffing.can_move_to(RunState::Superseded));
        assert!(!RunState::Done.can_move_to(RunState::Cancelled));
    }

    #[test]
    fn states_round_trip_through_their_names() {
        for s in RunState::all() {
            assert_eq!(RunState::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn run_ids_sort_by_creation_time() {
        let a = RunId::new();
        std::thread::sleep(Duration::from_millis(2));
        let b = RunId::new();
        assert!(a < b);
        assert!(RunId::parse(a.as_str()).is_ok());
        assert!(RunId::parse("nope").is_err());
    }
}
