//! A run's report, published once: by the last diff runner, or by the poller when a run
//! has nothing left to diff (every model skipped or re-used). One claim per run decides
//! which; the report is [`build_report`](super::publish::build_report)'s, with the synced
//! owners and descriptions.
//!
//! Reads: the run, its fan-out summary and stored outcomes (run store), the model
//! metadata. Writes: the sticky comment and commit status (git host), the run's end.

use crate::config::CiConfig;
use crate::githost::{GitHostError, GitHosts};
use crate::metadata::MetadataStore;
use crate::run::{CiRun, RunState};
use crate::store::{RunStore, StoreError};

/// Why a run's report could not be published.
#[derive(Debug, thiserror::Error)]
pub enum PublishRunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    GitHost(#[from] GitHostError),
    #[error("run {0} has no fan-out")]
    NoFanOut(String),
}

/// Publishes the report of a run whose models all have a result, once, and ends the run:
/// the report from its fan-out summary and stored results, with the synced owners and
/// descriptions of its models and their downstream ones when `metadata` is given. The
/// report claim makes one publish per run, whether the last diff runner or the poller
/// (nothing left to diff) gets there. False when another invocation holds the claim or
/// the run is no longer diffing. A failed publish releases the claim so a retry
/// publishes.
pub async fn publish_run_report(
    runs: &dyn RunStore,
    hosts: &dyn GitHosts,
    metadata: Option<&dyn MetadataStore>,
    config: &CiConfig,
    run: &CiRun,
) -> Result<bool, PublishRunError> {
    let claim = format!("report#{}", run.id);
    if !runs.claim_delivery(&claim, REPORT_CLAIM).await? {
        return Ok(false);
    }
    let result = async {
        let current = runs.get_run(&run.id).await?;
        if current.as_ref().map(|r| r.state) != Some(RunState::Diffing) {
            return Ok(false);
        }
        let Some(summary) = runs.fanout_summary(&run.id).await? else {
            return Err(PublishRunError::NoFanOut(run.id.to_string()));
        };
        let results = runs.results(&run.id).await?;
        let mut report = super::publish::build_report(config, run, &summary, &results);
        if let Some(store) = metadata {
            // Owners and descriptions of the changed and downstream models, from the sync.
            let mut names: Vec<String> = report.entries.iter().map(|e| e.name.clone()).collect();
            names.extend(report.downstream.iter().cloned());
            report.metadata = crate::metadata::report_metadata(store, &config.name, &names).await;
        }
        let host = hosts.for_config(config).await?;
        super::publish::publish_report(host.as_ref(), config, run, &report).await?;
        match runs
            .transition(&run.id, RunState::Diffing, RunState::Done, None)
            .await
        {
            Ok(_) | Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
        tracing::info!(models = report.entries.len(), "report published");
        Ok(true)
    }
    .await;
    if result.is_err()
        && let Err(e) = runs.release_delivery(&claim).await
    {
        tracing::error!(error = %e, "could not release the report claim");
    }
    result
}

/// How long a report claim holds before another invocation may publish.
const REPORT_CLAIM: std::time::Duration = std::time::Duration::from_secs(900);
