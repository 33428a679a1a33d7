//! The run model: a CI run, its id and state machine, and what the run store keeps for a
//! run's fan-out. The run store ([`crate::store::RunStore`]) reads and writes these.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::{CommitSha, ConfigId, Provider, RepoName};
use crate::diff::{DiffResult, DiffSpec};
use crate::store::StoreError;

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
    /// Set for a run started on demand (a `/prdiff run` comment, the HTTP trigger).
    /// Boxed: most runs have none, and a run travels by value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_demand: Option<Box<OnDemand>>,
    /// The run of the same PR and configuration that was current when this one started
    /// (open or not), set by [`crate::store::RunStore::start_run`]: where re-usable results
    /// are looked for (see [`crate::app::reuse`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<RunId>,
    /// Column remapping directives of the PR description when the run started (the
    /// poller adds those of the commit messages).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remap: Vec<crate::diff::remap::Remap>,
}

/// How a run started on demand differs from one a push starts: the label gate and
/// `max_models` do not apply, and when models are named only those are diffed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnDemand {
    /// Who asked, for the logs: `github:<login>`, `gitlab:<username>` or `trigger`.
    pub by: String,
    /// The models asked for by name; empty: every model the plan would diff.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
}

/// What [`crate::store::RunStore::start_run`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartOutcome {
    /// The run was recorded; `superseded` is the open run of the same PR it replaced.
    Started { superseded: Option<RunId> },
    /// An open run for the same head and base already exists (e.g. `labeled` after
    /// `synchronize`): nothing was written.
    AlreadyOpen(Box<CiRun>),
}

/// What the poller leaves for the diff runners of a run: written once, read many times.
///
/// `summary` is what the report needs besides the results (header, skipped models,
/// downstream names…); `models` is one work item per model to diff (`unique_id` → the
/// diff runner's input). The store adapters keep both as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct FanOut {
    pub summary: Summary,
    pub models: Vec<(String, WorkItem)>,
}

/// What the report needs besides the per-model results. Written once by the poller.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub dbt_run_id: Option<u64>,
    pub dbt_run_url: Option<String>,
    /// The production manifest is not from the base commit: said in the report.
    pub base_note: Option<String>,
    /// Models to diff in report order: `(unique_id, name)`.
    pub models: Vec<(String, String)>,
    /// Models planned but not diffed: `(name, reason)`.
    pub skipped: Vec<(String, String)>,
    /// Names of models diffed because they are downstream of a change.
    pub downstream: Vec<String>,
    /// Plan warnings, shown as notes.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Models new in the PR or removed by it whose rows are counted (their work items
    /// count one relation): the count joins their line in the list of models not diffed.
    #[serde(default)]
    pub counted: Vec<Counted>,
    /// Models materialized differently in production and the PR, by name.
    #[serde(default)]
    pub materializations: std::collections::BTreeMap<String, crate::plan::MaterializationChange>,
    /// Set when the plan had more models to diff than the configuration's `max_models`:
    /// none was diffed (see [`crate::app::fanout::apply_max_models`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub over_max_models: Option<crate::report::OverMaxModels>,
    /// Diffed models' merge gates, by name (evaluated when the report is built).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub gates: std::collections::BTreeMap<String, crate::gates::GatePolicy>,
    /// Diffed models' files in the dbt project (`original_file_path`), by name.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub paths: std::collections::BTreeMap<String, String>,
    /// The production dbt Cloud run whose manifest the plan compared with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prod_run_id: Option<u64>,
    /// Models whose result is re-used from an earlier run of the PR (their inputs are
    /// unchanged), by unique id: recorded at fan-out, never sent to the diff runner.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub reused: std::collections::BTreeMap<String, Reused>,
}

/// Where a re-used result comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reused {
    /// The head commit of the run that diffed the model (the first of a chain of re-uses).
    pub since: CommitSha,
    /// The run whose stored result was copied.
    pub run: RunId,
}

/// A model whose rows are counted instead of diffed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counted {
    pub unique_id: String,
    pub name: String,
    pub side: CountSide,
}

/// Which relation a count reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CountSide {
    /// A model new in the PR: its PR relation.
    Pr,
    /// A model the PR removes: its production relation.
    Prod,
}

/// One model's diff, as the diff runner needs it (its [`DiffSpec`] and how to run it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkItem {
    pub name: String,
    /// What to diff, built once by the poller (stored flat: `prod`, `pr`, `primary_key`…).
    #[serde(flatten)]
    pub spec: DiffSpec,
    /// Count this side's relation (`prod` and `pr` are then the same relation) instead of
    /// diffing: a model new in the PR or removed by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<CountSide>,
    /// The re-use key of this model's diff inputs (see [`crate::app::reuse::reuse_key`]),
    /// kept with the model's outcome: a later run of the PR with the same key re-uses the
    /// outcome. Items without one (older records, unknown inputs) are never re-used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reuse_key: Option<String>,
}

/// A model's stored outcome: its diff, or why it has none (a row of the report).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoredOutcome {
    Ok(Box<DiffResult>),
    Error(String),
}

/// What [`crate::store::RunStore::record_result`] did.
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
    use std::time::Duration;

    #[test]
    fn a_run_stored_before_on_demand_runs_still_loads_and_an_on_demand_one_round_trips() {
        let old = r#"{"id":"run_0000018f00000000_0000abcd","config_id":"shop","pr":{"provider":"github","repository":"o/r","number":2},"head_sha":"ec26c3e57ca3a959ca5aad62de7213c562f8c821","base_sha":"f95f852bd8fca8fcc58a9a2d6c842781e32a215e","base_branch":"main","state":"received","created_at":1,"updated_at":1}"#;
        let mut run: CiRun = serde_json::from_str(old).unwrap();
        assert_eq!(run.on_demand, None);
        assert!(!serde_json::to_string(&run).unwrap().contains("on_demand"));
        run.on_demand = Some(Box::new(OnDemand {
            by: "github:octocat".into(),
            models: vec!["orders".into()],
        }));
        let back: CiRun = serde_json::from_str(&serde_json::to_string(&run).unwrap()).unwrap();
        assert_eq!(back, run);
    }

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
