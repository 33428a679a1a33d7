//! The diff runner: one model of a run per message.
//!
//! ```text
//! diff message → run still diffing? → work item (run store) → data source + secret
//!   → diff in the warehouse (configuration's sampling; a failure or timeout is a result)
//!   → record_result (once per model, pending count down atomically)
//!   → the invocation that completes the last model: report → sticky comment + status → done
//! ```
//!
//! Reads: the run, the model's work item (run store), the data source and its secret,
//! the warehouse. Writes: the model's stored outcome; the last one publishes the report
//! through [`super::publish`].
//!
//! A redelivered message does not count twice (the store records each model once). The
//! report is published once even when the last two models finish together: only one
//! writer sees the count reach zero, and a claim guards the recovery path where that
//! writer died before publishing and a redelivery finds the count already at zero.

use std::sync::Arc;
use std::time::Duration;

use crate::app::fanout::{CountSide, StoredOutcome, WorkItem};
use crate::config::CiConfig;
use crate::diff;
use crate::diff::DiffResult;
use crate::githost::{GitHostError, GitHosts};
use crate::messages::{DiffMessage, Message, MessageError};
use crate::run::{CiRun, RunState};
use crate::secrets::{ExposeSecret, Secrets, SecretsError};
use crate::store::{ConfigStore, RunStore, StoreError};
use crate::warehouse::{self, ConnectOptions};
use tracing::Instrument;

/// Tunables of the diff runner, read once by `main.rs`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Per statement in the warehouse.
    pub statement_timeout: Duration,
    /// The whole model; past it the model is a "timed out" row of the report.
    pub model_timeout: Duration,
    /// Deliveries of a message whose warehouse error is transient before the model is
    /// reported as failed instead of retried again.
    pub max_receives: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            statement_timeout: Duration::from_secs(600),
            model_timeout: Duration::from_secs(840),
            max_receives: 3,
        }
    }
}

/// What the handler uses.
#[derive(Clone)]
pub struct Deps {
    pub configs: Arc<dyn ConfigStore>,
    pub runs: Arc<dyn RunStore>,
    pub secrets: Arc<dyn Secrets>,
    pub hosts: Arc<dyn GitHosts>,
    /// Synced model metadata (owners, descriptions) for the report; `None` leaves it out.
    pub metadata: Option<Arc<dyn crate::metadata::MetadataStore>>,
    pub settings: Settings,
}

/// Why a diff message could not be handled.
#[derive(Debug, thiserror::Error)]
pub enum DiffRunError {
    #[error(transparent)]
    Message(#[from] MessageError),
    #[error("not a diff message (kind {0})")]
    WrongKind(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    GitHost(#[from] GitHostError),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    /// A transient warehouse failure, retried through the queue.
    #[error("warehouse unavailable for {model}: {message}")]
    Warehouse { model: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

impl DiffRunError {
    pub fn is_retryable(&self) -> bool {
        match self {
            DiffRunError::Message(e) => e.is_retryable(),
            DiffRunError::WrongKind(_) | DiffRunError::Invalid(_) => false,
            DiffRunError::Store(e) => e.is_retryable(),
            DiffRunError::GitHost(e) => e.is_retryable(),
            DiffRunError::Secrets(e) => e.is_retryable(),
            DiffRunError::Warehouse { .. } => true,
        }
    }
}

#[cfg(feature = "lambda")]
impl crate::queue::batch::BatchError for DiffRunError {
    fn disposition(&self) -> crate::queue::batch::Disposition {
        use crate::queue::batch::Disposition;
        match self {
            e if e.is_retryable() => Disposition::Retry,
            DiffRunError::Message(_) | DiffRunError::WrongKind(_) => Disposition::DeadLetter,
            _ => Disposition::Drop,
        }
    }
}

/// What one diff message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiffOutcome {
    /// The run is no longer diffing (superseded, cancelled, done).
    Closed(RunState),
    /// The model's result was already recorded (a redelivered message).
    Duplicate,
    /// Recorded; this many models are still running.
    Recorded { remaining: u64 },
    /// Recorded the last model and published the report.
    Published,
}

/// Handles one diff message body; `receives` is SQS's delivery count of it.
pub async fn handle_message(
    body: &str,
    receives: u32,
    deps: &Deps,
) -> Result<DiffOutcome, DiffRunError> {
    let msg = match Message::from_json(body)? {
        Message::Diff(d) => d,
        other => return Err(DiffRunError::WrongKind(other.kind())),
    };
    let span = tracing::info_span!(
        "diff",
        run_id = %msg.run_id,
        config = %msg.config_id,
        model = %msg.model
    );
    run_one(&msg, receives, deps).instrument(span).await
}

async fn run_one(
    msg: &DiffMessage,
    receives: u32,
    deps: &Deps,
) -> Result<DiffOutcome, DiffRunError> {
    let run = deps
        .runs
        .get_run(&msg.run_id)
        .await?
        .ok_or_else(|| DiffRunError::Invalid(format!("run {} does not exist", msg.run_id)))?;
    if run.state != RunState::Diffing {
        tracing::info!(state = %run.state, "run is not diffing; message dropped");
        return Ok(DiffOutcome::Closed(run.state));
    }
    let config = deps
        .configs
        .get_config(&run.config_id)
        .await?
        .ok_or_else(|| {
            DiffRunError::Invalid(format!("configuration {} no longer exists", run.config_id))
        })?;
    let already = deps.runs.has_result(&run.id, &msg.model).await?;
    let outcome = if already {
        None
    } else {
        Some(diff_model(msg, &config, receives, deps).await?)
    };
    // `None`: recorded before; the count tells whether the report is still owed.
    let recorded = deps
        .runs
        .record_result(&run.id, &msg.model, outcome.as_ref())
        .await?;
    if recorded.remaining > 0 {
        return Ok(if recorded.first {
            DiffOutcome::Recorded {
                remaining: recorded.remaining,
            }
        } else {
            DiffOutcome::Duplicate
        });
    }
    // Every model has a result. The writer that recorded the last one publishes; a
    // redelivery finding the count at zero publishes only if that writer did not finish
    // (the run is still diffing) and nobody else holds the claim.
    if !recorded.first {
        tracing::info!("count already at zero; checking that the report went out");
    }
    if publish(&run, &config, deps).await? {
        Ok(DiffOutcome::Published)
    } else {
        Ok(DiffOutcome::Duplicate)
    }
}

/// Diffs one model; failures that are the model's (SQL errors, missing relations,
/// timeouts) become its outcome. Transient warehouse errors are retried via the queue a
/// few times first.
async fn diff_model(
    msg: &DiffMessage,
    config: &CiConfig,
    receives: u32,
    deps: &Deps,
) -> Result<StoredOutcome, DiffRunError> {
    let work: WorkItem = match deps.runs.model_work(&msg.run_id, &msg.model).await? {
        Some(w) => w,
        None => {
            return Ok(StoredOutcome::Error(
                "the poller left no work item for this model".into(),
            ));
        }
    };
    let Some(source) = deps.configs.get_data_source(&config.data_source).await? else {
        return Ok(StoredOutcome::Error(format!(
            "data source {} is not registered",
            config.data_source
        )));
    };
    let secret = match &source.secret {
        Some(name) => Some(deps.secrets.get(name).await?.expose_secret().to_owned()),
        None => None,
    };
    let url = match crate::warehouse::source::warehouse_url(&source, secret) {
        Ok(u) => u,
        Err(e) => return Ok(StoredOutcome::Error(e.to_string())),
    };
    let options = ConnectOptions {
        statement_timeout: deps.settings.statement_timeout,
    };
    let transient = |message: String| -> Result<StoredOutcome, DiffRunError> {
        if receives < deps.settings.max_receives {
            Err(DiffRunError::Warehouse {
                model: work.name.clone(),
                message,
            })
        } else {
            Ok(StoredOutcome::Error(format!(
                "the warehouse kept failing: {message}"
            )))
        }
    };
    let wh = match warehouse::connect(&url, &options).await {
        Ok(w) => w,
        Err(e) if e.is_retryable() => {
            let message = crate::error_chain(&e);
            tracing::warn!(error = %message, "warehouse unavailable: retrying through the queue");
            return transient(message);
        }
        Err(e) => {
            let message = crate::error_chain(&e);
            tracing::warn!(error = %message, "cannot connect to the warehouse");
            return Ok(StoredOutcome::Error(message));
        }
    };
    let mut req = work.request(Some(config.sampling.settings_for(source.kind)));
    req.no_key_hint = Some(WorkItem::no_key_hint(config.primary_key_tag.as_str()));
    let started = std::time::Instant::now();
    let run = async {
        match work.count {
            // A model new in the PR or removed by it: its rows are counted.
            Some(side) => crate::app::diff_run::count_work(wh.as_ref(), &work, side).await,
            None => diff::diff(wh.as_ref(), &req).await,
        }
    };
    let result = tokio::time::timeout(deps.settings.model_timeout, run).await;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(Ok(r)) => {
            tracing::info!(elapsed_ms, differs = r.has_differences(), "model diffed");
            Ok(StoredOutcome::Ok(Box::new(r)))
        }
        Ok(Err(e)) if e.is_retryable() => {
            let message = crate::error_chain(&e);
            tracing::warn!(elapsed_ms, error = %message, "warehouse error: retrying through the queue");
            transient(message)
        }
        Ok(Err(e)) => {
            let message = crate::error_chain(&e);
            tracing::warn!(elapsed_ms, error = %message, "model failed");
            Ok(StoredOutcome::Error(message))
        }
        Err(_) => {
            tracing::warn!(elapsed_ms, "model timed out");
            Ok(StoredOutcome::Error(format!(
                "timed out after {} s",
                deps.settings.model_timeout.as_secs()
            )))
        }
    }
}

/// Renders and publishes the report once (see
/// [`publish_run_report`](crate::app::publish_run::publish_run_report)). False when
/// another invocation holds the claim or already finished.
async fn publish(run: &CiRun, config: &CiConfig, deps: &Deps) -> Result<bool, DiffRunError> {
    Ok(crate::app::publish_run::publish_run_report(
        deps.runs.as_ref(),
        deps.hosts.as_ref(),
        deps.metadata.as_deref(),
        config,
        run,
    )
    .await?)
}

impl From<crate::app::publish_run::PublishRunError> for DiffRunError {
    fn from(e: crate::app::publish_run::PublishRunError) -> Self {
        use crate::app::publish_run::PublishRunError as P;
        match e {
            P::Store(e) => DiffRunError::Store(e),
            P::GitHost(e) => DiffRunError::GitHost(e),
            e @ P::NoFanOut(_) => DiffRunError::Invalid(e.to_string()),
        }
    }
}

/// Counts a work item's relation (see [`WorkItem::count`]) as a result whose counted
/// side's rows are the count.
pub async fn count_work(
    wh: &dyn crate::warehouse::Warehouse,
    work: &WorkItem,
    side: CountSide,
) -> Result<DiffResult, crate::diff::DiffError> {
    let rel = match side {
        CountSide::Pr => &work.spec.pr,
        CountSide::Prod => &work.spec.prod,
    };
    let n = crate::diff::count_rows(wh, rel).await?;
    Ok(DiffResult::counted(
        &work.spec.prod,
        &work.spec.pr,
        match side {
            CountSide::Pr => crate::diff::PerSide { prod: 0, pr: n },
            CountSide::Prod => crate::diff::PerSide { prod: n, pr: 0 },
        },
    ))
}
