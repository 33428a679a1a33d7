//! The webhook intake: one delivery in, one answer out, within a second.
//!
//! ```text
//! size → event header → signature → content type → parse → repository's configurations
//!      → claim delivery id and body hash → per configuration: gates → base commit
//!      → record run (superseding the PR's previous open run) → claim the run's intake
//!      → pending status → poll message
//! ```
//!
//! A `/prdiff run` comment (GitHub `issue_comment`, GitLab `Note Hook`) takes the same
//! path after the claim, per configuration: the author's write access and the PR as the
//! host shows it now are asked of the git host, then the run starts on demand (no label
//! gate, no `max_models`; see [`super::trigger`] for the HTTP trigger).
//!
//! Reads: the signed delivery, the repository's configurations, the git host (changed
//! files, merge base, the PR and the author's access for a comment), the webhook secret. Writes: delivery claims, the run, a `pending`
//! commit status, a delayed poll message (and a sync message on a push to the default
//! branch).
//!
//! [`handle`] takes a transport-neutral [`WebhookRequest`] so the Lambda (`prdiff-webhook`),
//! `prdiff serve` and the tests call the same function. It never waits on dbt Cloud: the
//! poll message, sent with a delay, does that.
//!
//! Nothing is written before the signature verifies and the payload parses, and a
//! redelivery (same `X-GitHub-Delivery` / `Idempotency-Key`, or the same body under a new
//! one: a replay) changes nothing. Deliveries of one head arriving together record one run
//! and post one pending status. When a step
//! fails after the claim, the claim is released so the host's retry is processed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{BaseCommitSelection, CiConfig, Provider, SecretName};
use crate::githost::{CommitStatus, GitHostError, GitHosts, StatusState};
use crate::intake::{self, HostEvent, IntakeError, PrEvent, PushEvent, RunCommand, gates};
use crate::messages::{Message, PollMessage, SyncMessage, SyncReason};
use crate::queue::{Queue, QueueError};
use crate::run::{CiRun, OnDemand, PrKey, RunId, RunState, StartOutcome};
use crate::secrets::{ExposeSecret, Secrets, SecretsError};
use crate::store::{ConfigStore, RunStore, StoreError, unix_now};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tracing::Instrument;

/// Tunables of the intake, read once by `main.rs`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The stack's webhook secret (GitHub HMAC key / GitLab token), by name.
    pub webhook_secret: SecretName,
    /// The bearer token of `POST /trigger`, by name; `None`: the trigger is off.
    pub trigger_token: Option<SecretName>,
    /// Bodies over this are refused with 413 before anything else.
    pub max_body_bytes: usize,
    /// Delay of the first poll message: a dbt Cloud CI run rarely finishes sooner.
    pub poll_delay: Duration,
    /// How long a delivery id is remembered (GitHub lets operators redeliver for 3 days).
    pub delivery_ttl: Duration,
    /// How long the poller may wait for dbt Cloud before failing the run.
    pub run_deadline: Duration,
    /// How long the delivery that holds a new run's intake (pending status, poll message)
    /// has to finish it before another delivery of the same head may take over: only
    /// after a crash, since a failure gives the claim back at once.
    pub intake_lease: Duration,
}

impl Settings {
    pub fn new(webhook_secret: SecretName) -> Self {
        Self {
            webhook_secret,
            trigger_token: Some(
                SecretName::parse(DEFAULT_TRIGGER_TOKEN).expect("the default name is valid"),
            ),
            max_body_bytes: 5 * 1024 * 1024,
            poll_delay: Duration::from_secs(60),
            delivery_ttl: Duration::from_secs(4 * 24 * 3600),
            run_deadline: Duration::from_secs(4 * 3600),
            intake_lease: Duration::from_secs(300),
        }
    }
}

/// The trigger token's name unless configured otherwise.
pub const DEFAULT_TRIGGER_TOKEN: &str = "prdiff/trigger-token";

/// What the handler uses: each port, nothing more.
#[derive(Clone)]
pub struct Deps {
    pub configs: Arc<dyn ConfigStore>,
    pub runs: Arc<dyn RunStore>,
    pub secrets: Arc<dyn Secrets>,
    pub hosts: Arc<dyn GitHosts>,
    pub poll_queue: Arc<dyn Queue>,
    pub sync_queue: Arc<dyn Queue>,
    pub settings: Settings,
}

/// A delivery as received: lower-cased header names, raw body bytes.
#[derive(Debug, Clone, Default)]
pub struct WebhookRequest {
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl WebhookRequest {
    /// Builds a request; header names are matched case-insensitively.
    pub fn new<'a>(headers: impl IntoIterator<Item = (&'a str, &'a str)>, body: Vec<u8>) -> Self {
        Self {
            headers: headers
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
                .collect(),
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// The answer: a status code and a JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookResponse {
    pub status: u16,
    pub body: Value,
}

impl WebhookResponse {
    pub(crate) fn new(status: u16, body: Value) -> Self {
        Self { status, body }
    }
    pub fn error(status: u16, message: impl Into<String>) -> Self {
        Self::new(status, json!({ "error": message.into() }))
    }
    fn ignored(reason: impl Into<String>) -> Self {
        Self::new(200, json!({ "status": "ignored", "reason": reason.into() }))
    }
}

pub fn too_large(max: usize) -> WebhookResponse {
    WebhookResponse::error(413, format!("body is larger than {max} bytes"))
}

/// A failure after the delivery was accepted as genuine: answered 5xx so the host retries.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    GitHost(#[from] GitHostError),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
}

impl HandlerError {
    pub fn is_retryable(&self) -> bool {
        match self {
            HandlerError::Store(e) => e.is_retryable(),
            HandlerError::Queue(e) => e.is_retryable(),
            HandlerError::GitHost(e) => e.is_retryable(),
            HandlerError::Secrets(e) => e.is_retryable(),
        }
    }

    pub(crate) fn response(&self) -> WebhookResponse {
        // 503 asks the host to retry; 500 says retrying the same delivery will not help.
        let status = if self.is_retryable() { 503 } else { 500 };
        WebhookResponse::new(
            status,
            json!({ "error": self.to_string(), "retryable": self.is_retryable() }),
        )
    }
}

/// Handles one delivery.
pub async fn handle(req: &WebhookRequest, deps: &Deps) -> WebhookResponse {
    let (provider, event, delivery) =
        match (req.header("x-github-event"), req.header("x-gitlab-event")) {
            (Some(e), _) => (Provider::Github, e, req.header("x-github-delivery")),
            (None, Some(e)) => (
                Provider::Gitlab,
                e,
                req.header("idempotency-key")
                    .or_else(|| req.header("x-gitlab-event-uuid")),
            ),
            (None, None) => {
                return WebhookResponse::error(
                    400,
                    "missing X-GitHub-Event or X-Gitlab-Event header",
                );
            }
        };
    let span = tracing::info_span!(
        "webhook",
        provider = %provider,
        event,
        delivery = delivery.unwrap_or("-"),
    );
    let started = std::time::Instant::now();
    let resp = handle_inner(req, deps, provider, event, delivery)
        .instrument(span.clone())
        .await;
    span.in_scope(|| {
        tracing::info!(
            status = resp.status,
            elapsed_us = started.elapsed().as_micros() as u64,
            "webhook answered"
        )
    });
    resp
}

async fn handle_inner(
    req: &WebhookRequest,
    deps: &Deps,
    provider: Provider,
    event: &str,
    delivery: Option<&str>,
) -> WebhookResponse {
    if req.body.len() > deps.settings.max_body_bytes {
        return too_large(deps.settings.max_body_bytes);
    }
    let secret = match deps.secrets.get(&deps.settings.webhook_secret).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "webhook secret unavailable");
            return HandlerError::from(e).response();
        }
    };
    if secret.expose_secret().trim().is_empty() {
        // An empty HMAC key is known to everyone, and an empty GitLab token matches an
        // empty header: nothing could be verified.
        tracing::error!("webhook secret is empty: every delivery is refused");
        return WebhookResponse::error(500, "the webhook secret is empty");
    }
    let verified = match provider {
        Provider::Github => req
            .header("x-hub-signature-256")
            .is_some_and(|sig| intake::verify_github_signature(&secret, &req.body, sig)),
        Provider::Gitlab => req
            .header("x-gitlab-token")
            .is_some_and(|t| intake::verify_gitlab_token(&secret, t)),
    };
    if !verified {
        tracing::warn!("delivery refused: bad or missing signature");
        return WebhookResponse::error(401, "bad or missing signature");
    }
    let content_type = req.header("content-type").unwrap_or("");
    if !content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    {
        return WebhookResponse::error(
            400,
            format!(
                "content type must be application/json (got {content_type:?}); set the webhook's content type to JSON"
            ),
        );
    }
    let parsed = match provider {
        Provider::Github => intake::github::parse(event, &req.body),
        Provider::Gitlab => intake::gitlab::parse(event, &req.body),
    };
    let event = match parsed {
        Ok(e) => e,
        Err(e @ (IntakeError::Json(_) | IntakeError::Field { .. })) => {
            return WebhookResponse::error(400, e.to_string());
        }
    };
    let (provider, repo) = match &event {
        HostEvent::Ping => return WebhookResponse::new(200, json!({ "status": "pong" })),
        HostEvent::NotHandled(reason) => return WebhookResponse::ignored(reason.clone()),
        other => other
            .repository()
            .expect("PR and push events name a repository"),
    };
    let configs = match deps.configs.configs_for_repository(provider, repo).await {
        Ok(c) => c,
        Err(e) => return HandlerError::from(e).response(),
    };
    if configs.is_empty() {
        return WebhookResponse::ignored(format!("unknown repository {provider}:{repo}"));
    }
    let Some(delivery) = delivery else {
        return WebhookResponse::error(
            400,
            "missing delivery id (X-GitHub-Delivery / Idempotency-Key)",
        );
    };
    let claims = delivery_claims(provider, delivery, &req.body);
    match deps
        .runs
        .claim_deliveries(&claims, deps.settings.delivery_ttl)
        .await
    {
        Ok(None) => {}
        Ok(Some(held)) => {
            let reason = if held == 0 {
                "this delivery id was received already"
            } else {
                "this body was received already, under another delivery id"
            };
            tracing::info!(reason, "redelivery ignored");
            return WebhookResponse::new(
                200,
                json!({ "status": "duplicate", "delivery": delivery, "reason": reason }),
            );
        }
        Err(e) => return HandlerError::from(e).response(),
    }
    let result = match &event {
        HostEvent::PullRequest(pr) => pull_request(deps, &configs, pr).await,
        HostEvent::PrClosed {
            provider,
            repository,
            number,
        } => {
            let key = PrKey {
                provider: *provider,
                repository: repository.clone(),
                number: *number,
            };
            closed(deps, &configs, &key).await
        }
        HostEvent::Push(push) => push_event(deps, &configs, push).await,
        HostEvent::Command(cmd) => command(deps, &configs, cmd).await,
        HostEvent::Ping | HostEvent::NotHandled(_) => unreachable!("answered above"),
    };
    match result {
        Ok(resp) => resp,
        Err(e) => {
            tracing::error!(error = %e, retryable = e.is_retryable(), "delivery failed; claim released");
            if let Err(re) = deps.runs.release_deliveries(&claims).await {
                tracing::error!(error = %re, "could not release the delivery claim");
            }
            e.response()
        }
    }
}

/// The claims of one delivery: its id, and the SHA-256 of its body. The body is what the
/// signature covers, so a captured delivery replayed under a new delivery id (a header
/// nothing signs) still finds its claim held.
pub fn delivery_claims(provider: Provider, delivery: &str, body: &[u8]) -> Vec<String> {
    let digest = hex::encode(Sha256::digest(body));
    vec![
        format!("{provider}:{delivery}"),
        format!("body#{provider}#{digest}"),
    ]
}

/// The claim on finishing a recorded run's intake (pending status, poll message).
pub fn intake_claim(run: &RunId) -> String {
    format!("intake#{run}")
}

/// What happened for one configuration.
pub(crate) enum Outcome {
    Started {
        run: RunId,
        superseded: Option<RunId>,
    },
    AlreadyRunning(RunId),
    Skipped(String),
}

/// The runs started and the configurations skipped, for the response.
#[derive(Default)]
pub(crate) struct Collected {
    started: Vec<Value>,
    skipped: Vec<Value>,
}

impl Collected {
    pub(crate) fn push(&mut self, config: &CiConfig, outcome: Outcome) {
        match outcome {
            Outcome::Started { run, superseded } => self.started.push(json!({
                "config": config.name, "run_id": run, "superseded": superseded,
            })),
            Outcome::AlreadyRunning(run) => self.started.push(json!({
                "config": config.name, "run_id": run, "already_running": true,
            })),
            Outcome::Skipped(reason) => self
                .skipped
                .push(json!({ "config": config.name, "reason": reason })),
        }
    }

    pub(crate) fn response(self) -> WebhookResponse {
        let Collected { started, skipped } = self;
        if started.is_empty() {
            let reason = skipped
                .iter()
                .filter_map(|s| s["reason"].as_str())
                .collect::<Vec<_>>()
                .join("; ");
            return WebhookResponse::new(
                200,
                json!({ "status": "ignored", "reason": format!("gated: {reason}"), "skipped": skipped }),
            );
        }
        WebhookResponse::new(
            202,
            json!({ "status": "accepted", "runs": started, "skipped": skipped }),
        )
    }
}

async fn pull_request(
    deps: &Deps,
    configs: &[CiConfig],
    pr: &PrEvent,
) -> Result<WebhookResponse, HandlerError> {
    let mut collected = Collected::default();
    for config in configs {
        let outcome = start_for_config(deps, config, pr, None)
            .instrument(tracing::info_span!("config", config = %config.name, pr = pr.number))
            .await?;
        collected.push(config, outcome);
    }
    Ok(collected.response())
}

/// A `/prdiff run` comment: for each configuration whose git host says the author may
/// write to the repository, the PR as the host shows it now starts an on-demand run.
async fn command(
    deps: &Deps,
    configs: &[CiConfig],
    cmd: &RunCommand,
) -> Result<WebhookResponse, HandlerError> {
    let models = match &cmd.models {
        Ok(m) => m.clone(),
        Err(reason) => {
            tracing::info!(author = %cmd.author.login, pr = cmd.number, %reason, "/prdiff command refused");
            return Ok(WebhookResponse::ignored(format!(
                "/prdiff command refused: {reason}"
            )));
        }
    };
    let on_demand = OnDemand {
        by: format!("{}:{}", cmd.provider, cmd.author.login),
        models,
    };
    let mut collected = Collected::default();
    for config in configs {
        let span = tracing::info_span!("config", config = %config.name, pr = cmd.number, on_demand = %on_demand.by);
        let outcome = async {
            let host = deps.hosts.for_config(config).await?;
            if !host.can_write(&cmd.repository, &cmd.author).await? {
                let reason = format!(
                    "{} may not start runs: write access to the repository is required",
                    cmd.author.login
                );
                tracing::info!(%reason, "/prdiff run refused");
                return Ok(Outcome::Skipped(reason));
            }
            on_demand_run(deps, config, &host, &cmd.repository, cmd.number, &on_demand).await
        }
        .instrument(span)
        .await?;
        collected.push(config, outcome);
    }
    Ok(collected.response())
}

/// Starts an on-demand run of one configuration for the PR as the host shows it now.
pub(crate) async fn on_demand_run(
    deps: &Deps,
    config: &CiConfig,
    host: &Arc<dyn crate::githost::GitHost>,
    repository: &crate::config::RepoName,
    number: u64,
    on_demand: &OnDemand,
) -> Result<Outcome, HandlerError> {
    let now = host.pull_request(repository, number).await?;
    if !now.open {
        let reason = "the pull request is closed".to_owned();
        tracing::info!(%reason, "on-demand run refused");
        return Ok(Outcome::Skipped(reason));
    }
    let pr = PrEvent {
        provider: config.repository.provider,
        repository: repository.clone(),
        number,
        action: intake::PrAction::OnDemand,
        head_sha: now.head_sha,
        head_branch: now.head_branch,
        base_branch: now.base_branch,
        base_sha: None,
        draft: now.draft,
        labels: now.labels,
        remap: now
            .description
            .as_deref()
            .map(|d| crate::diff::remap::parse_text(d, "PR description"))
            .unwrap_or_default(),
    };
    start_for_config(deps, config, &pr, Some(on_demand)).await
}

async fn start_for_config(
    deps: &Deps,
    config: &CiConfig,
    pr: &PrEvent,
    on_demand: Option<&OnDemand>,
) -> Result<Outcome, HandlerError> {
    if let Err(reason) = gates::check_event(config, pr) {
        tracing::info!(%reason, "gated");
        return Ok(Outcome::Skipped(reason));
    }
    let host = deps.hosts.for_config(config).await?;
    let key = PrKey {
        provider: pr.provider,
        repository: pr.repository.clone(),
        number: pr.number,
    };
    if let Some(description) = gates::other_base_branch(config, pr) {
        tracing::info!(reason = %description, "gated");
        return record_skip(deps, config, pr, &host, key, description).await;
    }
    if !config.files_to_ignore.is_empty() {
        let files = host.changed_files(&pr.repository, pr.number).await?;
        if let Some(description) = gates::all_files_ignored(config, &files) {
            return record_skip(deps, config, pr, &host, key, description).await;
        }
    }
    let base_sha = match config.base_commit {
        BaseCommitSelection::MergeBase => {
            host.merge_base(&pr.repository, &pr.base_branch, &pr.head_sha)
                .await?
        }
        // Asked of the host rather than taken from the payload: GitLab does not send it,
        // and GitHub's may be stale on a redelivery.
        BaseCommitSelection::Latest => host.branch_head(&pr.repository, &pr.base_branch).await?,
    };
    let mut run = new_run(config, pr, key, base_sha, RunState::Received, "");
    run.on_demand = on_demand.cloned().map(Box::new);
    let mut started = deps.runs.start_run(&run).await?;
    if let StartOutcome::AlreadyOpen(existing) = &started
        && existing.state != RunState::Received
        && run.on_demand.is_some()
        && existing.on_demand != run.on_demand
    {
        // An open run of the same commits that diffs something else (a push's run held
        // to max_models, or other named models): the on-demand run replaces it.
        if let Some(old) = supersede_for_on_demand(deps, existing, &run).await? {
            started = deps.runs.start_run(&run).await?;
            if let StartOutcome::Started { superseded } = &mut started {
                superseded.get_or_insert(old);
            }
        }
    }
    let (run_id, superseded) = match started {
        StartOutcome::Started { superseded } => {
            if let Some(old) = &superseded {
                superseded_status(deps, config, &host, old, &run).await?;
            }
            (run.id.clone(), superseded)
        }
        // A run for this head and base got past `received` already: nothing to do.
        StartOutcome::AlreadyOpen(existing) if existing.state != RunState::Received => {
            return Ok(Outcome::AlreadyRunning(existing.id));
        }
        // Recorded by another delivery, still `received`: that one is finishing it (e.g.
        // `opened` and `labeled` arriving together), or it failed before queueing it.
        StartOutcome::AlreadyOpen(existing) => (existing.id, None),
    };
    // Exactly one delivery finishes a run's intake: the one holding this claim. The others
    // answer "already running" and post nothing. A holder that fails releases the claim so
    // the host's retry finishes the run; one that dies leaves it to expire.
    let intake = intake_claim(&run_id);
    if !deps
        .runs
        .claim_delivery(&intake, deps.settings.intake_lease)
        .await?
    {
        tracing::info!(run_id = %run_id, "another delivery is starting this run");
        return Ok(Outcome::AlreadyRunning(run_id));
    }
    let finished = finish_intake(deps, config, pr, &host, &run_id).await;
    if let Err(e) = &finished {
        tracing::warn!(run_id = %run_id, error = %e, "intake failed; its claim is released");
        if let Err(re) = deps.runs.release_delivery(&intake).await {
            tracing::error!(error = %re, "could not release the intake claim");
        }
    }
    finished?;
    tracing::info!(run_id = %run_id, superseded = ?superseded, "run started");
    Ok(Outcome::Started {
        run: run_id,
        superseded,
    })
}

/// Ends `existing` as superseded by the on-demand `run` of the same commits. `None` when
/// the run moved meanwhile (it finished, or another delivery ended it): the caller's next
/// `start_run` sees what is current.
async fn supersede_for_on_demand(
    deps: &Deps,
    existing: &CiRun,
    run: &CiRun,
) -> Result<Option<RunId>, HandlerError> {
    let reason = format!("superseded by an on-demand run (run {})", run.id);
    match deps
        .runs
        .transition(
            &existing.id,
            existing.state,
            RunState::Superseded,
            Some(reason.as_str()),
        )
        .await
    {
        Ok(_) => {
            tracing::info!(superseded = %existing.id, "open run replaced by an on-demand run");
            Ok(Some(existing.id.clone()))
        }
        Err(crate::store::StoreError::Conflict(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The final status of a superseded run's commit: "superseded by <sha>". Only when the
/// new run is for another commit — on the same commit the new run's status takes over.
/// Records a PR the configuration skips (success status with the reason) so an older open
/// run of this PR is superseded: its commit is no longer the PR's head, or its base is no
/// longer the configuration's branch.
async fn record_skip(
    deps: &Deps,
    config: &CiConfig,
    pr: &PrEvent,
    host: &Arc<dyn crate::githost::GitHost>,
    key: PrKey,
    description: String,
) -> Result<Outcome, HandlerError> {
    let run = new_run(
        config,
        pr,
        key,
        pr.head_sha.clone(),
        RunState::Skipped,
        &description,
    );
    let outcome = deps.runs.start_run(&run).await?;
    if let StartOutcome::Started {
        superseded: Some(old),
    } = &outcome
    {
        superseded_status(deps, config, host, old, &run).await?;
    }
    if matches!(outcome, StartOutcome::Started { .. }) {
        host.set_status(
            &pr.repository,
            &pr.head_sha,
            &CommitStatus {
                state: StatusState::Success,
                context: config.status_context(),
                description: description.clone(),
                target_url: None,
            },
        )
        .await?;
    }
    Ok(Outcome::Skipped(description))
}

async fn superseded_status(
    deps: &Deps,
    config: &CiConfig,
    host: &Arc<dyn crate::githost::GitHost>,
    old: &RunId,
    new: &CiRun,
) -> Result<(), HandlerError> {
    let Some(old) = deps.runs.get_run(old).await? else {
        return Ok(());
    };
    if old.head_sha == new.head_sha {
        return Ok(());
    }
    let why = format!("superseded by {}", &new.head_sha.as_str()[..7]);
    let fin = crate::outcome::final_status(
        &crate::outcome::Ending::Incomplete(why),
        crate::outcome::Rules::of(config),
    );
    host.set_status(
        &old.pr.repository,
        &old.head_sha,
        &CommitStatus {
            state: fin.state,
            context: config.status_context(),
            description: fin.description,
            target_url: None,
        },
    )
    .await?;
    Ok(())
}

/// Pending status, delayed poll message, then `received → waiting_for_dbt`.
async fn finish_intake(
    deps: &Deps,
    config: &CiConfig,
    pr: &PrEvent,
    host: &Arc<dyn crate::githost::GitHost>,
    run_id: &RunId,
) -> Result<(), HandlerError> {
    host.set_status(
        &pr.repository,
        &pr.head_sha,
        &CommitStatus {
            state: StatusState::Pending,
            context: config.status_context(),
            description: "prdiff: waiting for the dbt Cloud CI run".into(),
            target_url: None,
        },
    )
    .await?;
    super::checks::start(host.as_ref(), config, &pr.repository, &pr.head_sha).await;
    let message = Message::Poll(PollMessage {
        run_id: run_id.clone(),
        config_id: config.name.clone(),
        head_sha: pr.head_sha.clone(),
        attempt: 0,
        deadline_unix: unix_now() + deps.settings.run_deadline.as_secs(),
        shown: None,
        artifact_waits: 0,
    });
    deps.poll_queue
        .send(&message, deps.settings.poll_delay)
        .await?;
    deps.runs
        .transition(run_id, RunState::Received, RunState::WaitingForDbt, None)
        .await?;
    Ok(())
}

fn new_run(
    config: &CiConfig,
    pr: &PrEvent,
    key: PrKey,
    base_sha: crate::config::CommitSha,
    state: RunState,
    reason: &str,
) -> CiRun {
    let now = unix_now();
    CiRun {
        id: RunId::new(),
        config_id: config.name.clone(),
        pr: key,
        head_sha: pr.head_sha.clone(),
        base_sha,
        base_branch: pr.base_branch.clone(),
        state,
        reason: (!reason.is_empty()).then(|| reason.to_owned()),
        created_at: now,
        updated_at: now,
        on_demand: None,
        previous: None,
        remap: pr.remap.clone(),
    }
}

/// Why a run ends when its pull request is closed or merged.
pub const CLOSED_REASON: &str = "the pull request was closed before the diff finished";

async fn closed(
    deps: &Deps,
    configs: &[CiConfig],
    key: &PrKey,
) -> Result<WebhookResponse, HandlerError> {
    let mut cancelled = Vec::new();
    for config in configs {
        // Two tries: the run may move (e.g. to diffing) between the read and the write.
        for _ in 0..2 {
            let Some(run) = deps.runs.current_run(&config.name, key).await? else {
                break;
            };
            if run.state.is_final() {
                break;
            }
            // The run ends, and the PR says so: no pending status or "waiting" comment
            // is left behind.
            match crate::app::publish::end_run(
                deps.runs.as_ref(),
                deps.hosts.as_ref(),
                config,
                &run,
                RunState::Cancelled,
                CLOSED_REASON,
                None,
            )
            .await
            {
                Ok(true) => {
                    tracing::info!(run_id = %run.id, config = %config.name, "run cancelled");
                    cancelled.push(json!({ "config": config.name, "run_id": run.id }));
                    break;
                }
                Ok(false) => continue,
                Err(crate::app::publish::EndError::Store(e)) => return Err(e.into()),
                Err(crate::app::publish::EndError::GitHost(e)) => return Err(e.into()),
            }
        }
    }
    if cancelled.is_empty() {
        return Ok(WebhookResponse::ignored(
            "pull request closed with no open run",
        ));
    }
    Ok(WebhookResponse::new(
        200,
        json!({ "status": "cancelled", "runs": cancelled }),
    ))
}

async fn push_event(
    deps: &Deps,
    configs: &[CiConfig],
    push: &PushEvent,
) -> Result<WebhookResponse, HandlerError> {
    let Some(sha) = push.updates_default_branch() else {
        return Ok(WebhookResponse::ignored(
            "push is not a new commit on the default branch",
        ));
    };
    let mut synced = Vec::new();
    for config in configs.iter().filter(|c| c.sync_on_push) {
        let message = Message::Sync(SyncMessage {
            config_id: config.name.clone(),
            reason: SyncReason::Push { sha: sha.clone() },
        });
        deps.sync_queue.send(&message, Duration::ZERO).await?;
        synced.push(config.name.to_string());
    }
    if synced.is_empty() {
        return Ok(WebhookResponse::ignored(
            "no configuration of this repository syncs on push",
        ));
    }
    Ok(WebhookResponse::new(
        202,
        json!({ "status": "accepted", "syncs": synced }),
    ))
}
