//! The poller: waits for the PR's dbt Cloud run, then plans the diff and fans it out.
//!
//! ```text
//! poll message → run still open? → PR job's runs: trigger names the PR, git_sha = head
//!   not there / queued / running → re-send after a tenth of the job's typical run time
//!                                  (60 s to 900 s), until the deadline
//!   cancelled → superseded quietly when the PR has a newer run, else failed (status, comment)
//!   error → failed (link; status per the outcome rule)
//!   success → artifacts saved? manifest.json / run_results.json there and JSON? (else look
//!             again soon, a few times) → production manifest (artifacts job) → plan
//!           → fan-out in the run store → one diff message per model → diffing
//! ```
//!
//! Reads: the run (run store), the configuration and its dbt Cloud key, dbt Cloud (runs,
//! artifacts of the PR run and of the production run). Writes: the fan-out (run store,
//! through [`super::fanout`]), diff messages or a delayed re-poll, the "waiting" note in
//! the sticky comment, the run's state.
//!
//! [`handle_message`] handles one message; the caller (the Lambda's SQS batch handler,
//! `prdiff serve`) retries the errors that say so. Errors that a retry cannot fix (bad credentials, a missing job, unreadable artifacts) end the run with
//! a status and a note in the sticky comment instead of cycling to the DLQ; unreadable
//! messages are reported as failed so they reach the DLQ.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::app::fanout::{Summary, WorkItem};
use crate::config::{BaseCommitSelection, CiConfig};
use crate::dbtcloud::DbtCloudConnector;
use crate::dbtcloud::{DbtCloudApi, DbtCloudError, Run, status};
use crate::diff::from_plan::{PrSchemas, check_request, request_for};
use crate::githost::{GitHostError, GitHosts};
use crate::manifest::{ArtifactError, Manifest, RunResults};
use crate::messages::{DiffMessage, Message, MessageError, PollMessage};
use crate::plan::{self, PlanInputs, PlanSettings};
use crate::queue::{MAX_DELAY, Queue, QueueError};
use crate::report;
use crate::run::{CiRun, FanOut, RunState};
use crate::secrets::{Secrets, SecretsError};
use crate::store::{ConfigStore, RunStore, StoreError, unix_now};
use tracing::Instrument;

/// Tunables of the poller, read once by `main.rs`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The shortest wait between two polls: a finished dbt Cloud run is noticed within
    /// this, or within 10 % of the job's typical duration when that is longer.
    pub first_delay: Duration,
    /// The longest wait between two polls (at most SQS's 900 s).
    pub max_delay: Duration,
    /// Pages of 100 runs searched for the PR's run (newest first).
    pub run_pages: usize,
    /// Wait before looking again at a finished run whose artifacts are not ready (not
    /// saved yet, 404, not JSON).
    pub artifact_delay: Duration,
    /// Looks at artifacts that are not ready before the run fails.
    pub artifact_waits: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            first_delay: Duration::from_secs(60),
            max_delay: MAX_DELAY,
            run_pages: 3,
            artifact_delay: Duration::from_secs(20),
            artifact_waits: 6,
        }
    }
}

impl Settings {
    /// The wait before the next poll when the job's finished runs typically take
    /// `typical` (from dbt Cloud's run history): 10 % of it, at least
    /// [`first_delay`](Self::first_delay), at most [`max_delay`](Self::max_delay).
    pub fn delay(&self, typical: Option<Duration>) -> Duration {
        let tenth = typical.map_or(Duration::ZERO, |t| t / 10);
        tenth
            .max(self.first_delay)
            .min(self.max_delay.min(MAX_DELAY))
    }
}

/// The typical (median) duration of a job's finished successful runs among `runs`.
pub fn typical_duration(runs: &[Run]) -> Option<Duration> {
    let mut d: Vec<u64> = runs
        .iter()
        .filter(|r| r.status == status::SUCCESS)
        .filter_map(Run::duration_secs)
        .take(20)
        .collect();
    if d.is_empty() {
        return None;
    }
    d.sort_unstable();
    Some(Duration::from_secs(d[d.len() / 2]))
}

/// What the handler uses.
#[derive(Clone)]
pub struct Deps {
    pub configs: Arc<dyn ConfigStore>,
    pub runs: Arc<dyn RunStore>,
    pub secrets: Arc<dyn Secrets>,
    pub hosts: Arc<dyn GitHosts>,
    pub dbt: Arc<dyn DbtCloudConnector>,
    pub poll_queue: Arc<dyn Queue>,
    pub diff_queue: Arc<dyn Queue>,
    /// Synced model metadata (owners, descriptions) for a report the poller publishes
    /// itself (nothing left to diff); `None` leaves it out.
    pub metadata: Option<Arc<dyn crate::metadata::MetadataStore>>,
    pub settings: Settings,
}

/// Why a poll message could not be handled.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error(transparent)]
    Message(#[from] MessageError),
    #[error("not a poll message (kind {0})")]
    WrongKind(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    GitHost(#[from] GitHostError),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error(transparent)]
    DbtCloud(#[from] DbtCloudError),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error("{0}")]
    Config(String),
}

impl PollError {
    pub fn is_retryable(&self) -> bool {
        match self {
            PollError::Message(e) => e.is_retryable(),
            PollError::WrongKind(_) | PollError::Config(_) => false,
            PollError::Store(e) => e.is_retryable(),
            PollError::Queue(e) => e.is_retryable(),
            PollError::GitHost(e) => e.is_retryable(),
            PollError::Secrets(e) => e.is_retryable(),
            PollError::DbtCloud(e) => e.is_retryable(),
            PollError::Artifact(e) => e.is_retryable(),
        }
    }
}

#[cfg(feature = "lambda")]
impl crate::queue::batch::BatchError for PollError {
    fn disposition(&self) -> crate::queue::batch::Disposition {
        use crate::queue::batch::Disposition;
        match self {
            e if e.is_retryable() => Disposition::Retry,
            PollError::Message(_) | PollError::WrongKind(_) => Disposition::DeadLetter,
            // The same bytes fail again; handle_message has ended the run (if any).
            _ => Disposition::Drop,
        }
    }
}

/// What one poll did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollOutcome {
    /// The run is no longer open (superseded, cancelled…): nothing to do.
    Closed(RunState),
    /// dbt Cloud is not done: the message was sent again with this delay.
    Waiting {
        dbt_run: Option<u64>,
        delay: Duration,
    },
    /// The deadline passed: the run failed.
    TimedOut,
    /// The dbt Cloud run was cancelled and a newer commit of the PR has its own run: the
    /// run is superseded, quietly.
    Superseded { dbt_run: u64 },
    /// The dbt Cloud run on the PR's current head was cancelled: the run failed.
    DbtCancelled { dbt_run: u64 },
    /// The dbt Cloud run succeeded but its artifacts are not ready: polled again soon.
    AwaitingArtifacts { dbt_run: u64, delay: Duration },
    /// The dbt Cloud run errored: the run failed.
    DbtFailed { dbt_run: u64 },
    /// Planned and fanned out: this many diff messages were sent.
    FannedOut { models: usize },
    /// A permanent error ended the run.
    Ended(String),
}

/// Handles one poll message body.
pub async fn handle_message(body: &str, deps: &Deps) -> Result<PollOutcome, PollError> {
    let msg = match Message::from_json(body)? {
        Message::Poll(p) => p,
        other => return Err(PollError::WrongKind(other.kind())),
    };
    let span = tracing::info_span!(
        "poll",
        run_id = %msg.run_id,
        config = %msg.config_id,
        attempt = msg.attempt
    );
    poll(&msg, deps).instrument(span).await
}

async fn poll(msg: &PollMessage, deps: &Deps) -> Result<PollOutcome, PollError> {
    let Some(run) = deps.runs.get_run(&msg.run_id).await? else {
        return Err(PollError::Config(format!(
            "run {} does not exist",
            msg.run_id
        )));
    };
    if run.state.is_final() {
        tracing::info!(state = %run.state, "run already closed");
        return Ok(PollOutcome::Closed(run.state));
    }
    let Some(config) = deps.configs.get_config(&run.config_id).await? else {
        let why = format!("configuration {} no longer exists", run.config_id);
        end_quietly(deps, &run, RunState::Failed, &why).await?;
        return Ok(PollOutcome::Ended(why));
    };
    match poll_config(msg, &run, &config, deps).await {
        Ok(outcome) => Ok(outcome),
        Err(e) if !e.is_retryable() => {
            let why = e.to_string();
            tracing::error!(error = %why, "permanent error: ending the run");
            end_with_status(deps, &config, &run, &why, None).await?;
            Ok(PollOutcome::Ended(why))
        }
        Err(e) => Err(e),
    }
}

async fn poll_config(
    msg: &PollMessage,
    run: &CiRun,
    config: &CiConfig,
    deps: &Deps,
) -> Result<PollOutcome, PollError> {
    let run = &if run.state == RunState::Received {
        // The webhook sends the poll before it records `waiting_for_dbt`.
        match deps
            .runs
            .transition(&run.id, RunState::Received, RunState::WaitingForDbt, None)
            .await
        {
            Ok(r) => r,
            Err(StoreError::Conflict(_)) => deps
                .runs
                .get_run(&run.id)
                .await?
                .ok_or_else(|| PollError::Config(format!("run {} vanished", run.id)))?,
            Err(e) => return Err(e.into()),
        }
    } else {
        run.clone()
    };
    if run.state.is_final() {
        return Ok(PollOutcome::Closed(run.state));
    }
    if run.state == RunState::Diffing {
        // A redelivery after the fan-out: send the diff messages again (the diff runner
        // counts each model once).
        let models = resend_diffs(deps, run).await?;
        if models == 0 {
            publish_without_diffs(deps, config, run).await?;
        }
        return Ok(PollOutcome::FannedOut { models });
    }
    let Some(pr_job) = config.dbt_cloud.pr_job_id else {
        return Err(PollError::Config(format!(
            "configuration {} has no dbt Cloud PR job (pr_job_id)",
            config.name
        )));
    };
    let key = deps.secrets.get(&config.dbt_cloud.api_key).await?;
    let dbt = deps.dbt.connect(&config.dbt_cloud.access_url, key);
    let host = deps.hosts.for_config(config).await?;

    let (found, typical) =
        match find_pr_run(dbt.as_ref(), config, pr_job, run, deps.settings.run_pages).await {
            Ok(f) => f,
            // An answer that is not the JSON it should be (an error page with 200): looked
            // at again a few times before it is taken as final.
            Err(PollError::DbtCloud(e @ DbtCloudError::Decode { .. }))
                if msg.artifact_waits < deps.settings.artifact_waits =>
            {
                tracing::warn!(error = %e, "dbt Cloud's answer is not readable; polling again");
                let delay = deps.settings.delay(None);
                let again = Message::Poll(PollMessage {
                    attempt: msg.attempt + 1,
                    artifact_waits: msg.artifact_waits + 1,
                    ..msg.clone()
                });
                deps.poll_queue.send(&again, delay).await?;
                return Ok(PollOutcome::Waiting {
                    dbt_run: None,
                    delay,
                });
            }
            Err(e) => return Err(e),
        };
    match found.as_ref().map(|r| r.status) {
        Some(status::SUCCESS) => {}
        Some(status::CANCELLED) => {
            let r = found.expect("matched Some");
            // Cancelled because the PR moved on (the newer head has its own CI run): quiet.
            // Cancelled on the PR's current head (by hand, or dbt Cloud's timeout): the
            // run cannot complete, and the PR is told.
            let current = deps.runs.current_run(&config.name, &run.pr).await?;
            if current.as_ref().is_some_and(|c| c.id != run.id) {
                end_quietly(
                    deps,
                    run,
                    RunState::Superseded,
                    &format!("dbt Cloud run {} was cancelled (a newer commit)", r.id),
                )
                .await?;
                return Ok(PollOutcome::Superseded { dbt_run: r.id });
            }
            let why = format!(
                "dbt Cloud run {} was cancelled{}",
                r.id,
                r.status_message
                    .as_deref()
                    .map(|m| format!(": {}", m.chars().take(200).collect::<String>()))
                    .unwrap_or_default()
            );
            end_with_status(deps, config, run, &why, run_url(&r)).await?;
            return Ok(PollOutcome::DbtCancelled { dbt_run: r.id });
        }
        Some(status::ERROR) => {
            let r = found.expect("matched Some");
            let why = format!(
                "dbt Cloud run {} failed{}",
                r.id,
                r.status_message
                    .as_deref()
                    .map(|m| format!(": {}", m.chars().take(200).collect::<String>()))
                    .unwrap_or_default()
            );
            end_with_status(deps, config, run, &why, run_url(&r)).await?;
            return Ok(PollOutcome::DbtFailed { dbt_run: r.id });
        }
        _ => {
            if unix_now() >= msg.deadline_unix {
                let why = match &found {
                    Some(r) => format!("dbt Cloud run {} did not finish before the deadline", r.id),
                    None => format!(
                        "no dbt Cloud run of job {pr_job} for commit {} before the deadline",
                        short(run.head_sha.as_str())
                    ),
                };
                end_with_status(deps, config, run, &why, found.as_ref().and_then(run_url)).await?;
                return Ok(PollOutcome::TimedOut);
            }
            let text = match &found {
                Some(r) => format!("waiting for dbt Cloud run {}", r.id),
                None => format!(
                    "waiting for the dbt Cloud CI run of commit {}",
                    short(run.head_sha.as_str())
                ),
            };
            // The comment is edited only when what it says changes.
            if msg.shown.as_deref() != Some(text.as_str()) {
                crate::app::publish::publish_waiting(host.as_ref(), config, run, &text).await?;
            }
            let delay = deps.settings.delay(typical);
            let again = Message::Poll(PollMessage {
                attempt: msg.attempt + 1,
                shown: Some(text),
                ..msg.clone()
            });
            deps.poll_queue.send(&again, delay).await?;
            return Ok(PollOutcome::Waiting {
                dbt_run: found.map(|r| r.id),
                delay,
            });
        }
    }
    let pr_run = found.expect("success is Some");
    tracing::info!(
        dbt_run = pr_run.id,
        "dbt Cloud run succeeded; reading artifacts"
    );
    // dbt Cloud stores a run's artifacts a little after it succeeds: until it says they
    // are saved, or while they answer 404 or are not JSON yet, look again soon, a bounded
    // number of times.
    let artifacts = async {
        if pr_run.artifacts_saved == Some(false) {
            return Err(NotReady(format!(
                "dbt Cloud has not saved the artifacts of run {} yet",
                pr_run.id
            )));
        }
        let pr_manifest_bytes = artifact(dbt.as_ref(), config, pr_run.id, "manifest.json").await?;
        let pr_results_bytes =
            artifact(dbt.as_ref(), config, pr_run.id, "run_results.json").await?;
        let (prod_run, base_note) = production_run(dbt.as_ref(), config, run)
            .await
            .map_err(Ready)?;
        let prod_bytes = artifact(dbt.as_ref(), config, prod_run.id, "manifest.json").await?;
        let pr_origin = format!("dbt Cloud run {} manifest.json", pr_run.id);
        let prod_origin = format!("dbt Cloud run {} manifest.json", prod_run.id);
        let pr = parsed(Manifest::from_slice(
            &pr_manifest_bytes,
            Path::new(&pr_origin),
        ))?;
        let prod = parsed(Manifest::from_slice(&prod_bytes, Path::new(&prod_origin)))?;
        let rr = parsed(RunResults::from_slice(
            &pr_results_bytes,
            Path::new(&format!("dbt Cloud run {} run_results.json", pr_run.id)),
        ))?;
        Ok((pr, prod, rr, base_note, prod_run.id))
    }
    .await;
    let (pr, prod, rr, base_note, prod_run_id) = match artifacts {
        Ok(a) => a,
        Err(Ready(e)) => return Err(e),
        Err(NotReady(why)) if msg.artifact_waits < deps.settings.artifact_waits => {
            let delay = deps.settings.artifact_delay;
            tracing::info!(reason = %why, waits = msg.artifact_waits, "artifacts not ready; polling again");
            let again = Message::Poll(PollMessage {
                attempt: msg.attempt + 1,
                artifact_waits: msg.artifact_waits + 1,
                ..msg.clone()
            });
            deps.poll_queue.send(&again, delay).await?;
            return Ok(PollOutcome::AwaitingArtifacts {
                dbt_run: pr_run.id,
                delay,
            });
        }
        Err(NotReady(why)) => {
            let why = format!(
                "{why} (still after {} looks over {} s)",
                msg.artifact_waits + 1,
                deps.settings.artifact_delay.as_secs() * u64::from(msg.artifact_waits)
            );
            end_with_status(deps, config, run, &why, run_url(&pr_run)).await?;
            return Ok(PollOutcome::Ended(why));
        }
    };
    let settings = PlanSettings {
        slim_ci: config.slim_ci,
        downstream: config.diff_downstream,
        primary_key_tag: config.primary_key_tag.as_str().to_owned(),
        ..Default::default()
    };
    let the_plan = plan::plan(&PlanInputs {
        prod: &prod,
        pr: &pr,
        pr_run_results: Some(&rr),
        settings: &settings,
    });
    let mut summary = Summary {
        dbt_run_id: Some(pr_run.id),
        dbt_run_url: run_url(&pr_run),
        base_note,
        warnings: the_plan.warnings.clone(),
        prod_run_id: Some(prod_run_id),
        ..Default::default()
    };
    // What the PR controls is checked before anything is queued: its filters in the data
    // source's dialect, and that its relations are in the PR job's own schemas.
    let dialect = match deps.configs.get_data_source(&config.data_source).await? {
        Some(source) => source.kind.dialect(),
        None => {
            return Err(PollError::Config(format!(
                "data source {} of configuration {} is not registered",
                config.data_source, config.name
            )));
        }
    };
    let pr_schemas = PrSchemas::new(
        config
            .pr_schema
            .prefix(config.dbt_cloud.pr_job_id.map(|j| j.get()), run.pr.number),
    );
    let remaps = pr_remaps(host.as_ref(), run, &mut summary).await?;
    let mut work = Vec::new();
    for m in &the_plan.models {
        if let Some(change) = &m.materialization_change {
            summary
                .materializations
                .insert(m.name.clone(), change.clone());
        }
        let mut req = request_for(m, pr.nodes.get(&m.unique_id), None, None);
        if let Some(req) = req.as_mut() {
            let names = [m.name.as_str(), &req.prod.name, &req.pr.name];
            req.remap = crate::diff::remap::for_model(&remaps, &names);
        }
        if let Some(refused) = req
            .as_ref()
            .and_then(|r| check_request(r, dialect, Some(&pr_schemas)).err())
        {
            tracing::warn!(model = %m.name, reason = %refused, "model refused");
            summary.skipped.push((m.name.clone(), refused.to_string()));
            continue;
        }
        match req {
            Some(req) => {
                summary.models.push((m.unique_id.clone(), m.name.clone()));
                if let Some(path) = pr
                    .nodes
                    .get(&m.unique_id)
                    .and_then(|n| n.original_file_path.clone())
                {
                    summary.paths.insert(m.name.clone(), path);
                }
                if !m.options.gates.is_empty() {
                    summary
                        .gates
                        .insert(m.name.clone(), m.options.gates.clone());
                }
                if m.downstream {
                    summary.downstream.push(m.name.clone());
                }
                let mut item = WorkItem::from_request(&m.name, &req);
                item.reuse_key = crate::app::reuse::reuse_key(&crate::app::reuse::KeyInputs {
                    pr_manifest: &pr,
                    unique_id: &m.unique_id,
                    prod_run_id: Some(prod_run_id),
                    spec: &item.spec,
                    sampling: &config.sampling,
                    data_source: config.data_source.as_str(),
                });
                work.push((m.unique_id.clone(), item));
            }
            None => {
                // New and removed models: their rows are counted.
                if let Some((item, counted)) = crate::app::fanout::count_item(m, Some(&pr_schemas))
                {
                    work.push((m.unique_id.clone(), item));
                    summary.counted.push(counted);
                }
                summary.skipped.push((
                    m.name.clone(),
                    m.skip_reason
                        .map(report::skip_reason_text)
                        .unwrap_or("no relation to compare")
                        .to_owned(),
                ))
            }
        }
    }
    crate::app::fanout::apply_run_scope(config, run.on_demand.as_deref(), &mut summary, &mut work);
    // An on-demand run asks for a fresh diff: it re-uses nothing.
    if config.reuse_unchanged && run.on_demand.is_none() {
        summary.reused = crate::app::reuse::find_reusable(deps.runs.as_ref(), run, &work).await?;
    }
    let fanout = FanOut {
        summary,
        models: work,
    };
    deps.runs.put_fanout(&run.id, &fanout).await?;
    // The stored fan-out decides (a redelivered poll may have planned differently): its
    // re-used models get their results now, each counted once, and are never sent.
    let stored = deps
        .runs
        .fanout_summary(&run.id)
        .await?
        .ok_or_else(|| PollError::Config(format!("run {} lost its fan-out", run.id)))?;
    for (uid, from) in &stored.reused {
        let outcome = crate::app::reuse::lent_outcome(deps.runs.as_ref(), uid, from).await?;
        deps.runs
            .record_result(&run.id, uid, Some(&outcome))
            .await?;
    }
    if !stored.reused.is_empty() {
        tracing::info!(models = stored.reused.len(), "unchanged models re-used");
    }
    let run = deps
        .runs
        .transition(&run.id, run.state, RunState::Diffing, None)
        .await?;
    let n = resend_diffs(deps, &run).await?;
    if n == 0 {
        // Nothing to diff (skipped or re-used models only): the report is published now.
        publish_without_diffs(deps, config, &run).await?;
        return Ok(PollOutcome::FannedOut { models: 0 });
    }
    tracing::info!(models = n, "diff messages sent");
    Ok(PollOutcome::FannedOut { models: n })
}

/// Publishes the report of a run with nothing left to diff (its models skipped or
/// re-used) and ends it, once: the claim is the diff runner's, so a redelivered poll and
/// a diff runner never both publish.
async fn publish_without_diffs(
    deps: &Deps,
    config: &CiConfig,
    run: &CiRun,
) -> Result<(), PollError> {
    crate::app::publish_run::publish_run_report(
        deps.runs.as_ref(),
        deps.hosts.as_ref(),
        deps.metadata.as_deref(),
        config,
        run,
    )
    .await?;
    Ok(())
}

impl From<crate::app::publish_run::PublishRunError> for PollError {
    fn from(e: crate::app::publish_run::PublishRunError) -> Self {
        use crate::app::publish_run::PublishRunError as P;
        match e {
            P::Store(e) => PollError::Store(e),
            P::GitHost(e) => PollError::GitHost(e),
            e @ P::NoFanOut(_) => PollError::Config(e.to_string()),
        }
    }
}

/// Why the artifacts could not be read: `NotReady` may pass on a later look (not saved
/// yet, 404, not JSON); `Ready` is any other error, handled as usual.
enum ArtifactProblem {
    NotReady(String),
    Ready(PollError),
}
use ArtifactProblem::{NotReady, Ready};

impl From<PollError> for ArtifactProblem {
    fn from(e: PollError) -> Self {
        Ready(e)
    }
}

/// One artifact of a finished run; a 404 means "not stored yet" here.
/// The PR's column remappings: its commit messages' directives, then its description's
/// (stored on the run). Commit messages that cannot be read (other than for a retryable
/// reason) leave the description's directives alone, with a warning in the report.
async fn pr_remaps(
    host: &dyn crate::githost::GitHost,
    run: &CiRun,
    summary: &mut Summary,
) -> Result<Vec<crate::diff::remap::Remap>, PollError> {
    let messages = match host
        .commit_messages(&run.pr.repository, run.pr.number)
        .await
    {
        Ok(m) => m,
        Err(e) if e.is_retryable() => return Err(e.into()),
        Err(e) => {
            tracing::warn!(error = %e, "the PR's commit messages could not be read");
            summary.warnings.push(
                "the PR's commit messages could not be read: column remapping directives in them were not applied".into(),
            );
            Vec::new()
        }
    };
    let remaps = crate::diff::remap::combine(&messages, &run.remap);
    if !remaps.is_empty() {
        tracing::info!(
            directives = remaps.len(),
            "column remapping directives from the PR"
        );
    }
    Ok(remaps)
}

async fn artifact(
    dbt: &dyn DbtCloudApi,
    config: &CiConfig,
    run: u64,
    path: &str,
) -> Result<Vec<u8>, ArtifactProblem> {
    match dbt
        .artifact(config.dbt_cloud.account_id, run, path, None)
        .await
    {
        Ok(b) => Ok(b),
        Err(DbtCloudError::Http { status: 404, .. }) => Err(NotReady(format!(
            "dbt Cloud has no {path} for run {run} yet (404)"
        ))),
        Err(e) => Err(Ready(e.into())),
    }
}

/// An artifact that does not parse may be a half-stored file or an error page answered
/// with 200: looked at again a few times.
fn parsed<T>(r: Result<T, ArtifactError>) -> Result<T, ArtifactProblem> {
    r.map_err(|e| NotReady(crate::error_chain(&e)))
}

/// Sends one diff message per model of the run's fan-out.
async fn resend_diffs(deps: &Deps, run: &CiRun) -> Result<usize, PollError> {
    let Some(summary) = deps.runs.fanout_summary(&run.id).await? else {
        return Ok(0);
    };
    let counted = summary.counted.iter().map(|c| &c.unique_id);
    let mut sent = 0;
    for uid in summary.models.iter().map(|(uid, _)| uid).chain(counted) {
        if summary.reused.contains_key(uid) {
            continue;
        }
        sent += 1;
        let m = Message::Diff(DiffMessage {
            run_id: run.id.clone(),
            config_id: run.config_id.clone(),
            model: uid.clone(),
            attempt: 0,
        });
        deps.diff_queue.send(&m, Duration::ZERO).await?;
    }
    Ok(sent)
}

/// The newest run of the PR job built for this PR at its head commit, and the job's
/// typical run duration (from the newest page of its runs).
async fn find_pr_run(
    dbt: &dyn DbtCloudApi,
    config: &CiConfig,
    job: crate::config::DbtJobId,
    run: &CiRun,
    pages: usize,
) -> Result<(Option<Run>, Option<Duration>), PollError> {
    let mut typical = None;
    for page in 0..pages.max(1) {
        let runs = dbt
            .runs(config.dbt_cloud.account_id, job, 100, page * 100)
            .await?;
        if page == 0 {
            typical = typical_duration(&runs);
        }
        let last = runs.len() < 100;
        if let Some(r) = runs
            .into_iter()
            .find(|r| r.is_for_pr(run.pr.number) && r.sha() == Some(run.head_sha.as_str()))
        {
            return Ok((Some(r), typical));
        }
        if last {
            break;
        }
    }
    Ok((None, typical))
}

/// The artifacts job's run whose manifest is production: at the base commit (merge-base
/// strategy, falling back to the newest earlier run, with a note) or the latest.
async fn production_run(
    dbt: &dyn DbtCloudApi,
    config: &CiConfig,
    run: &CiRun,
) -> Result<(Run, Option<String>), PollError> {
    let job = config.dbt_cloud.artifacts_job_id;
    let account = config.dbt_cloud.account_id;
    let mut successful = Vec::new();
    for page in 0..3 {
        let runs = dbt.runs(account, job, 100, page * 100).await?;
        let last = runs.len() < 100;
        successful.extend(runs.into_iter().filter(|r| r.status == status::SUCCESS));
        if config.base_commit == BaseCommitSelection::Latest && !successful.is_empty() {
            break;
        }
        if successful
            .iter()
            .any(|r| r.sha() == Some(run.base_sha.as_str()))
            || last
        {
            break;
        }
    }
    let none = || {
        PollError::Config(format!(
            "the artifacts job {job} has no successful run to take the production manifest from"
        ))
    };
    match config.base_commit {
        BaseCommitSelection::Latest => {
            let r = successful.into_iter().next().ok_or_else(none)?;
            Ok((r, None))
        }
        BaseCommitSelection::MergeBase => {
            if let Some(r) = successful
                .iter()
                .find(|r| r.sha() == Some(run.base_sha.as_str()))
            {
                return Ok((r.clone(), None));
            }
            // The newest run started before this CI run; else the newest there is.
            let earlier = successful
                .iter()
                .find(|r| r.created_unix().is_some_and(|t| t <= run.created_at))
                .or(successful.first())
                .cloned()
                .ok_or_else(none)?;
            let note = format!(
                "no artifacts run at the merge base {}; compared with the production manifest of dbt Cloud run {}{}",
                short(run.base_sha.as_str()),
                earlier.id,
                earlier
                    .sha()
                    .map(|s| format!(" at {}", short(s)))
                    .unwrap_or_default()
            );
            Ok((earlier, Some(note)))
        }
    }
}

fn short(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

/// The run's page in dbt Cloud, when it is a web link.
fn run_url(r: &Run) -> Option<String> {
    r.href
        .clone()
        .filter(|h| h.starts_with("https://") || h.starts_with("http://"))
}

/// Moves an open run to a final state without telling the PR (superseded, config gone).
async fn end_quietly(deps: &Deps, run: &CiRun, to: RunState, why: &str) -> Result<(), PollError> {
    match deps
        .runs
        .transition(&run.id, run.state, to, Some(why))
        .await
    {
        Ok(_) | Err(StoreError::InvalidTransition { .. }) => Ok(()),
        Err(StoreError::Conflict(_)) => {
            // Moved meanwhile (e.g. superseded by the webhook): fine when it is now final.
            match deps.runs.get_run(&run.id).await? {
                Some(r) if r.state.is_final() => Ok(()),
                _ => Err(StoreError::Conflict(format!("run {} keeps changing", run.id)).into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Fails an open run and says so on the PR (comment and status per the setting).
async fn end_with_status(
    deps: &Deps,
    config: &CiConfig,
    run: &CiRun,
    why: &str,
    url: Option<String>,
) -> Result<(), PollError> {
    match crate::app::publish::end_run(
        deps.runs.as_ref(),
        deps.hosts.as_ref(),
        config,
        run,
        RunState::Failed,
        why,
        url,
    )
    .await
    {
        Ok(_) => Ok(()),
        Err(crate::app::publish::EndError::Store(e)) => Err(e.into()),
        Err(crate::app::publish::EndError::GitHost(e)) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: u64, state: u32, created: &str, finished: Option<&str>) -> Run {
        serde_json::from_value(serde_json::json!({
            "id": id, "status": state, "created_at": created, "finished_at": finished,
        }))
        .unwrap()
    }

    #[test]
    fn the_poll_delay_is_a_tenth_of_the_typical_run_at_least_a_minute_at_most_fifteen() {
        let s = Settings::default();
        let secs = |t: Option<u64>| s.delay(t.map(Duration::from_secs)).as_secs();
        // No history: one minute. A 17-minute job: noticed within 102 s, not after 31 min.
        assert_eq!(secs(None), 60);
        assert_eq!(secs(Some(300)), 60);
        assert_eq!(secs(Some(17 * 60)), 102);
        assert_eq!(secs(Some(3600)), 360);
        assert_eq!(secs(Some(10 * 3600)), 900);
    }

    #[test]
    fn the_typical_duration_is_the_median_of_finished_successful_runs() {
        let t0 = "2026-11-27 10:00:00.000000+00:00";
        let runs = [
            run(9, status::RUNNING, t0, None),
            run(8, status::SUCCESS, t0, Some("2026-11-27 10:17:00+00:00")),
            run(7, status::ERROR, t0, Some("2026-11-27 12:00:00+00:00")),
            run(6, status::SUCCESS, t0, Some("2026-11-27 10:15:00+00:00")),
            run(5, status::SUCCESS, t0, Some("2026-11-27 11:00:00+00:00")),
        ];
        assert_eq!(typical_duration(&runs), Some(Duration::from_secs(17 * 60)));
        assert_eq!(typical_duration(&runs[..1]), None);
    }
}
