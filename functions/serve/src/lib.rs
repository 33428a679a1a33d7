//! `prdiff serve`: the webhook, poller, diff runner and manifest sync in one process, on
//! the embedded adapters (one SQLite file for configurations, runs, metadata and queues; a
//! secrets directory or environment variables), for teams that do not run on AWS and for
//! end-to-end tests.
//!
//! ```text
//!  POST /webhook ──► webhook::handle ──► poll queue ──► poller ──► diff queue ──► diff runner ──► PR comment
//!                                   └──► sync queue ──► sync ◄── schedule tick
//! ```
//!
//! The queues are [`EmbeddedQueue`]s in the same file: a delayed poll or a pending diff
//! survives a restart. Each consumer leases a message, runs the same handler the Lambda
//! runs, then acknowledges it, retries it later (a transient error, with a doubling
//! delay) or moves it to the dead letters (a permanent error, or too many attempts).
//! Shutdown (the future given to [`Server::run`]) stops accepting requests and taking
//! messages, lets the work in hand finish within a grace period, and returns; a message
//! still leased then is delivered again at the next start.

mod http;

use std::fs::File;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prdiff_shared::app::sync::{self, SyncDeps, SyncError};
use prdiff_shared::config::SecretName;
use prdiff_shared::dbtcloud::DbtCloudConnector;
use prdiff_shared::githost::GitHosts;
use prdiff_shared::messages::Message;
use prdiff_shared::metadata::MetadataStore;
use prdiff_shared::queue::Queue;
use prdiff_shared::queue::embedded::{Delivery, EmbeddedQueue, EmbeddedQueues};
use prdiff_shared::secrets::local::LocalSecrets;
use prdiff_shared::secrets::{ExposeSecret, Secrets};
use prdiff_shared::store::{ConfigStore, RunStore, unix_now};
use prdiff_shared::wiring::{Adapters, Backend, Queues, WiringError};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

/// The queue names inside the database file.
pub use prdiff_shared::wiring::{DIFF_QUEUE, POLL_QUEUE, SYNC_QUEUE};

/// Why serve could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot open {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error(
        "{path} is in use by another `prdiff serve` (lock {lock}); one process per database file"
    )]
    Locked { path: PathBuf, lock: PathBuf },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the webhook secret {name} is not set: {hint}. GitHub signs deliveries with it, GitLab sends it as the token"
    )]
    WebhookSecret { name: String, hint: String },
}

/// The ports every function uses, over one database file (or memory, for tests).
#[derive(Clone)]
pub struct Services {
    pub configs: Arc<dyn ConfigStore>,
    pub runs: Arc<dyn RunStore>,
    pub metadata: Arc<dyn MetadataStore>,
    pub secrets: Arc<dyn Secrets>,
    pub hosts: Arc<dyn GitHosts>,
    pub dbt: Arc<dyn DbtCloudConnector>,
    pub queues: EmbeddedQueues,
}

impl Services {
    /// The same ports as [`Adapters`], the queues by their names in the file.
    pub fn adapters(&self) -> Adapters {
        let named = |name| Some(Arc::new(self.queues.queue(name)) as Arc<dyn Queue>);
        Adapters {
            configs: self.configs.clone(),
            runs: self.runs.clone(),
            metadata: self.metadata.clone(),
            secrets: self.secrets.clone(),
            hosts: self.hosts.clone(),
            dbt: self.dbt.clone(),
            queues: Queues {
                poll: named(POLL_QUEUE),
                diff: named(DIFF_QUEUE),
                sync: named(SYNC_QUEUE),
                dead_letters: Vec::new(),
            },
            embedded_queues: Some(self.queues.clone()),
        }
    }
}

/// An open database file, locked for this process.
pub struct Database {
    pub services: Services,
    /// Held for the life of the process: a second `prdiff serve` on the file is refused.
    _lock: File,
}

impl Database {
    /// Opens (creating) the file's store, metadata and queues, takes its lock, and makes the
    /// messages a previous process left leased deliverable again. Secrets come from the
    /// environment (`PRDIFF_SECRET_…`) and `secrets_dir` (default `<db>.secrets`, the
    /// directory `prdiff config apply --backend embedded` writes).
    pub fn open(path: &Path, secrets_dir: Option<PathBuf>) -> Result<Self, ServeError> {
        let open_err = |e: &dyn std::fmt::Display| ServeError::Open {
            path: path.to_owned(),
            message: e.to_string(),
        };
        let lock_path = lock_path(path);
        let mut options = File::options();
        options.create(true).truncate(false).write(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let lock = options.open(&lock_path).map_err(|e| open_err(&e))?;
        if let Err(e) = lock.try_lock() {
            return Err(match e {
                std::fs::TryLockError::WouldBlock => ServeError::Locked {
                    path: path.to_owned(),
                    lock: lock_path,
                },
                std::fs::TryLockError::Error(e) => open_err(&e),
            });
        }
        let secrets_dir = secrets_dir.unwrap_or_else(|| default_secrets_dir(path));
        let backend = Backend::Embedded {
            db: path.to_owned(),
            secrets_dir,
        };
        let adapters = backend.adapters().map_err(|e| match e {
            WiringError::Open { path, message } => ServeError::Open { path, message },
            other => open_err(&other),
        })?;
        let queues = adapters
            .embedded_queues
            .clone()
            .expect("the embedded backend opens its queues");
        let released = queues.release_leases().map_err(|e| open_err(&e))?;
        if released > 0 {
            tracing::warn!(
                released,
                "messages in flight when the previous process stopped will be delivered again"
            );
        }
        Ok(Self {
            services: Services {
                configs: adapters.configs,
                runs: adapters.runs,
                metadata: adapters.metadata,
                secrets: adapters.secrets,
                hosts: adapters.hosts,
                dbt: adapters.dbt,
                queues,
            },
            _lock: lock,
        })
    }
}

/// `<db>.lock`.
pub fn lock_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// `<db>.secrets`, as `prdiff config` uses.
pub fn default_secrets_dir(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(".secrets");
    PathBuf::from(s)
}

/// Limits of the HTTP endpoint: what one client (or many) can hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// A request's headers must arrive within this from when the server starts reading
    /// them; a connection idle for as long (before its first request or between two) is
    /// closed too.
    pub header_timeout: Duration,
    /// A request's body must arrive within this once its headers are in; past it the
    /// answer is 408 and the connection is closed.
    pub body_timeout: Duration,
    /// Connections served at once. Past it, new connections wait in the listen backlog
    /// until one ends; none is accepted without a free slot.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 512,
        }
    }
}

/// Tunables of the process; each function keeps its own settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub http: HttpLimits,
    pub webhook: prdiff_shared::app::intake::Settings,
    pub poller: prdiff_shared::app::poll::Settings,
    pub diff: prdiff_shared::app::diff_run::Settings,
    /// Models diffed at the same time.
    pub diff_workers: usize,
    /// How often configurations' sync schedules are checked; `None` turns the schedule off
    /// (syncs on push still run).
    pub sync_tick: Option<Duration>,
    /// Deliveries of a message before it goes to the dead letters (SQS's maxReceiveCount).
    pub max_receives: u32,
    /// Delay before the first redelivery of a transient failure; doubles, capped at 900 s.
    pub retry_delay: Duration,
    /// How long the work in hand may take to finish after a shutdown signal.
    pub shutdown_grace: Duration,
    /// How often open runs past their deadline and dead-lettered messages are looked
    /// for; `None` turns it off.
    pub lifecycle_tick: Option<Duration>,
}

impl Settings {
    pub fn new(listen: SocketAddr, webhook_secret: SecretName) -> Self {
        Self {
            listen,
            http: HttpLimits::default(),
            webhook: prdiff_shared::app::intake::Settings::new(webhook_secret),
            poller: prdiff_shared::app::poll::Settings::default(),
            diff: prdiff_shared::app::diff_run::Settings::default(),
            diff_workers: 2,
            sync_tick: Some(Duration::from_secs(900)),
            max_receives: 5,
            retry_delay: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            lifecycle_tick: Some(Duration::from_secs(60)),
        }
    }

    /// The delay before delivery `receives + 1` of a message that failed transiently.
    pub fn retry_after(&self, receives: u32) -> Duration {
        prdiff_shared::queue::doubling_delay(self.retry_delay, receives.saturating_sub(1))
    }
}

/// What a consumer does with a message after its handler ran.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Settle {
    Done,
    /// A transient failure: deliver again later (or dead-letter after too many attempts).
    Retry(String),
    /// A permanent failure: the same bytes would fail again.
    Fail(String),
}

/// Counters, for `/healthz` and the shutdown summary.
#[derive(Debug, Default)]
pub struct Counters {
    pub handled: AtomicU64,
    pub retried: AtomicU64,
    pub dead_lettered: AtomicU64,
    /// HTTP connections open now (at most `HttpLimits::max_connections`).
    pub open_connections: AtomicU64,
}

/// A bound, not yet running server.
pub struct Server {
    services: Services,
    settings: Settings,
    listener: tokio::net::TcpListener,
    counters: Arc<Counters>,
}

impl Server {
    /// Checks the webhook secret resolves and binds the listen address.
    pub async fn bind(services: Services, settings: Settings) -> Result<Self, ServeError> {
        let name = &settings.webhook.webhook_secret;
        let problem = match services.secrets.get(name).await {
            // Anyone can sign with an empty key (and send an empty GitLab token): an empty
            // secret is refused like a missing one.
            Ok(v) if v.expose_secret().trim().is_empty() => {
                Some("it is empty (or only whitespace)".to_owned())
            }
            Ok(_) => None,
            Err(e) => Some(e.to_string()),
        };
        if let Some(problem) = problem {
            return Err(ServeError::WebhookSecret {
                name: name.to_string(),
                hint: format!(
                    "{problem}; set {} or write it with `prdiff config` to the secrets directory",
                    LocalSecrets::env_var(name)
                ),
            });
        }
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .map_err(|source| ServeError::Listen {
                addr: settings.listen,
                source,
            })?;
        Ok(Self {
            services,
            settings,
            listener,
            counters: Arc::default(),
        })
    }

    /// The address actually bound (port 0 picks a free one).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// Runs until `shutdown` resolves, then drains within the grace period.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Server {
            services,
            settings,
            listener,
            counters,
        } = self;
        let (stop_tx, stop) = watch::channel(false);
        let queues = &services.queues;
        let (poll_q, diff_q, sync_q) = (
            queues.queue(POLL_QUEUE),
            queues.queue(DIFF_QUEUE),
            queues.queue(SYNC_QUEUE),
        );
        let adapters = services.adapters();
        // Services::adapters names all three queues, so neither use case can miss one.
        let webhook = Arc::new(
            adapters
                .intake(settings.webhook.clone())
                .expect("serve's adapters hold every queue"),
        );
        let poller = Arc::new(
            adapters
                .poll(settings.poller.clone())
                .expect("serve's adapters hold every queue"),
        );
        let differ = Arc::new(adapters.diff_run(settings.diff.clone()));
        let syncer = Arc::new(adapters.sync());
        let settings = Arc::new(settings);
        let mut tasks = JoinSet::new();

        let state = http::State {
            webhook,
            queues: queues.clone(),
            counters: counters.clone(),
            limits: settings.http.clone(),
        };
        tasks.spawn(http::serve(listener, state, stop.clone()));

        // A poll re-sends itself and waits on dbt Cloud: short, one at a time is plenty.
        let lease = Duration::from_secs(300);
        let consumer = Consumer::new(poll_q, lease, &settings, &counters, &stop);
        tasks.spawn(consumer.run(move |body, _receives| {
            let poller = poller.clone();
            async move {
                match prdiff_shared::app::poll::handle_message(&body, &poller).await {
                    Ok(outcome) => {
                        tracing::info!(?outcome, "poll handled");
                        Settle::Done
                    }
                    Err(e) if e.is_retryable() => Settle::Retry(chain(&e)),
                    Err(e) => Settle::Fail(chain(&e)),
                }
            }
        }));

        // A model may take up to its timeout; the lease outlasts it.
        let lease = settings.diff.model_timeout + Duration::from_secs(60);
        for _ in 0..settings.diff_workers.max(1) {
            let consumer = Consumer::new(diff_q.clone(), lease, &settings, &counters, &stop);
            let differ = differ.clone();
            tasks.spawn(consumer.run(move |body, receives| {
                let differ = differ.clone();
                async move {
                    match prdiff_shared::app::diff_run::handle_message(&body, receives, &differ)
                        .await
                    {
                        Ok(outcome) => {
                            tracing::info!(?outcome, "diff handled");
                            Settle::Done
                        }
                        Err(e) if e.is_retryable() => Settle::Retry(chain(&e)),
                        Err(e) => Settle::Fail(chain(&e)),
                    }
                }
            }));
        }

        let consumer = Consumer::new(
            sync_q,
            Duration::from_secs(900),
            &settings,
            &counters,
            &stop,
        );
        let sync_deps = syncer.clone();
        tasks.spawn(consumer.run(move |body, _receives| {
            let deps = sync_deps.clone();
            async move {
                let msg = match Message::from_json(&body) {
                    Ok(Message::Sync(m)) => m,
                    Ok(other) => {
                        return Settle::Fail(format!("not a sync message ({})", other.kind()));
                    }
                    Err(e) => return Settle::Fail(chain(&e)),
                };
                let span = tracing::info_span!("sync", config = %msg.config_id);
                let sha = match &msg.reason {
                    prdiff_shared::messages::SyncReason::Push { sha } => Some(sha.as_str()),
                    prdiff_shared::messages::SyncReason::Schedule => None,
                };
                match sync::sync_config_at(&deps, &msg.config_id, unix_now(), sha)
                    .instrument(span)
                    .await
                {
                    Ok(_) => Settle::Done,
                    Err(e) if e.is_retryable() => Settle::Retry(e.chain()),
                    // Retrying cannot help. A failed sync was logged and recorded on the
                    // configuration's sync state by `sync` itself; only a configuration
                    // that could not be read is logged here.
                    Err(e) => {
                        if matches!(e, SyncError::UnknownConfig(_) | SyncError::Config(_)) {
                            tracing::warn!(error = %e.chain(), "sync failed");
                        }
                        Settle::Done
                    }
                }
            }
        }));

        if let Some(every) = settings.sync_tick {
            tasks.spawn(schedule(syncer, every, stop.clone()));
        }
        if let Some(every) = settings.lifecycle_tick {
            tasks.spawn(lifecycle(
                services.clone(),
                every,
                settings.webhook.run_deadline + DEADLINE_GRACE,
                stop.clone(),
            ));
        }

        tracing::info!(diff_workers = settings.diff_workers, "prdiff serve running");
        shutdown.await;
        tracing::info!(
            grace_s = settings.shutdown_grace.as_secs(),
            "shutting down: no new requests or messages; finishing the work in hand"
        );
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(settings.shutdown_grace, async {
            while let Some(joined) = tasks.join_next().await {
                if let Err(e) = joined
                    && e.is_panic()
                {
                    tracing::error!(error = %e, "a serve task panicked");
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                still_running = tasks.len(),
                "grace period over: stopping; their messages will be delivered again at the next start"
            );
            tasks.abort_all();
        }
        tracing::info!(
            handled = counters.handled.load(Ordering::Relaxed),
            retried = counters.retried.load(Ordering::Relaxed),
            dead_lettered = counters.dead_lettered.load(Ordering::Relaxed),
            "prdiff serve stopped"
        );
    }
}

use prdiff_shared::error_chain as chain;

/// When nothing is due, look again at least this often (a message sent by another
/// process on the file, or a clock step).
const IDLE_RECHECK: Duration = Duration::from_secs(5);

/// One consumer loop over a queue.
struct Consumer {
    queue: EmbeddedQueue,
    lease: Duration,
    settings: Arc<Settings>,
    counters: Arc<Counters>,
    stop: watch::Receiver<bool>,
}

impl Consumer {
    fn new(
        queue: EmbeddedQueue,
        lease: Duration,
        settings: &Arc<Settings>,
        counters: &Arc<Counters>,
        stop: &watch::Receiver<bool>,
    ) -> Self {
        Self {
            queue,
            lease,
            settings: settings.clone(),
            counters: counters.clone(),
            stop: stop.clone(),
        }
    }

    async fn run<F, Fut>(mut self, handler: F)
    where
        F: Fn(String, u32) -> Fut,
        Fut: Future<Output = Settle>,
    {
        let queues = self.queue.queues().clone();
        loop {
            if *self.stop.borrow() {
                return;
            }
            // Registered before looking, so a send in between is not missed.
            let sent = queues.notified();
            tokio::pin!(sent);
            sent.as_mut().enable();
            match self.queue.receive(self.lease) {
                Ok(Some(d)) => {
                    let span = tracing::info_span!(
                        "message",
                        queue = self.queue.name(),
                        id = d.id,
                        receives = d.receives
                    );
                    let settle = handler(d.body.clone(), d.receives).instrument(span).await;
                    self.settle(&d, settle);
                }
                Ok(None) => {
                    let wait = match self.queue.next_due_in() {
                        Ok(Some(d)) => d.min(IDLE_RECHECK),
                        _ => IDLE_RECHECK,
                    };
                    tokio::select! {
                        _ = sent => {}
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.stop.changed() => {}
                    }
                }
                Err(e) => {
                    tracing::error!(queue = self.queue.name(), error = %chain(&e), "cannot read the queue");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = self.stop.changed() => {}
                    }
                }
            }
        }
    }

    fn settle(&self, d: &Delivery, settle: Settle) {
        let q = &self.queue;
        let result = match &settle {
            Settle::Done => q.ack(d),
            Settle::Retry(why) if d.receives < self.settings.max_receives => {
                let delay = self.settings.retry_after(d.receives);
                tracing::warn!(queue = q.name(), id = d.id, error = %why, delay_s = delay.as_secs(), "failed; will be retried");
                self.counters.retried.fetch_add(1, Ordering::Relaxed);
                q.retry(d, delay)
            }
            Settle::Retry(why) => {
                tracing::error!(queue = q.name(), id = d.id, error = %why, receives = d.receives, "failed too often; dead-lettered");
                self.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
                q.dead_letter(d, &format!("after {} deliveries: {why}", d.receives))
            }
            Settle::Fail(why) => {
                tracing::error!(queue = q.name(), id = d.id, error = %why, "permanent failure; dead-lettered");
                self.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
                q.dead_letter(d, why)
            }
        };
        self.counters.handled.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = result {
            // The lease runs out and the message comes back: at least once, never lost.
            tracing::error!(queue = q.name(), id = d.id, error = %chain(&e), "cannot settle the message");
        }
    }
}

/// The sweep waits this long past a run's deadline, so the poller (which checks the same
/// deadline on each poll) ends it first when its poll message is alive.
pub const DEADLINE_GRACE: Duration = Duration::from_secs(300);

/// One pass of the lifecycle tick: ends open runs past `deadline` and the runs of
/// dead-lettered messages (the dead letters stay, for replay). Returns the runs ended.
pub async fn lifecycle_pass(
    services: &Services,
    deadline: Duration,
    now: u64,
) -> Vec<prdiff_shared::run::RunId> {
    let mut ended = match prdiff_shared::app::publish::sweep_deadlines(
        services.configs.as_ref(),
        services.runs.as_ref(),
        services.hosts.as_ref(),
        deadline,
        now,
    )
    .await
    {
        Ok(ended) => ended,
        Err(e) => {
            tracing::error!(error = %chain(&e), "deadline sweep could not list open runs");
            Vec::new()
        }
    };
    let dead = match services.queues.dead_letters() {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %chain(&e), "cannot read the dead letters");
            return ended;
        }
    };
    for d in dead {
        let cause = format!(
            "its {} message is in the dead letters after {} deliveries ({})",
            d.queue, d.receives, d.reason
        );
        match prdiff_shared::app::publish::handle_dead_letter(
            services.configs.as_ref(),
            services.runs.as_ref(),
            services.hosts.as_ref(),
            &d.body,
            &cause,
        )
        .await
        {
            Ok(prdiff_shared::app::publish::DeadLetterOutcome::Ended(run)) => ended.push(run),
            Ok(_) => {}
            Err(e) => {
                tracing::error!(id = d.id, error = %chain(&e), "could not end the run of a dead letter")
            }
        }
    }
    ended
}

/// The lifecycle tick: every `every`, [`lifecycle_pass`].
async fn lifecycle(
    services: Services,
    every: Duration,
    deadline: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.changed() => return,
        }
        lifecycle_pass(&services, deadline, unix_now())
            .instrument(tracing::info_span!("lifecycle"))
            .await;
    }
}

/// The sync schedule: every `every`, sync the configurations whose own schedule is due.
async fn schedule(deps: Arc<SyncDeps>, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.changed() => return,
        }
        let now = unix_now();
        match sync::tick(&deps, now)
            .instrument(tracing::info_span!("scheduled_sync", now))
            .await
        {
            // Each configuration's sync logs its own outcome, success or failure; only a
            // sync state that could not be read or written is logged here.
            Ok(out) => {
                for (id, r) in &out.synced {
                    if let Err(e @ SyncError::Store(_)) = r {
                        tracing::warn!(config = %id, error = %e.chain(), "sync failed");
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e.chain(), "scheduled sync could not list configurations")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_from_the_first_delay_and_stop_at_fifteen_minutes() {
        let s = Settings::new(
            "127.0.0.1:0".parse().unwrap(),
            SecretName::parse("prdiff/webhook-secret").unwrap(),
        );
        assert_eq!(s.retry_after(1), Duration::from_secs(30));
        assert_eq!(s.retry_after(2), Duration::from_secs(60));
        assert_eq!(s.retry_after(4), Duration::from_secs(240));
        assert_eq!(s.retry_after(10), prdiff_shared::queue::MAX_DELAY);
    }

    fn sync_msg(name: &str) -> Message {
        Message::Sync(prdiff_shared::messages::SyncMessage {
            config_id: prdiff_shared::config::ConfigId::parse(name).unwrap(),
            reason: prdiff_shared::messages::SyncReason::Schedule,
        })
    }

    #[tokio::test]
    async fn a_consumer_acks_retries_and_dead_letters_as_its_handler_says() {
        let clock: prdiff_shared::queue::embedded::Clock = Arc::new(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64
        });
        let queues = EmbeddedQueues::in_memory(clock);
        let q = queues.queue("work");
        for name in ["ok", "flaky", "bad", "always"] {
            q.send(&sync_msg(name), Duration::ZERO).await.unwrap();
        }
        let mut settings = Settings::new(
            "127.0.0.1:0".parse().unwrap(),
            SecretName::parse("prdiff/webhook-secret").unwrap(),
        );
        settings.max_receives = 3;
        settings.retry_delay = Duration::from_millis(20);
        let (settings, counters) = (Arc::new(settings), Arc::new(Counters::default()));
        let (stop_tx, stop) = watch::channel(false);
        let seen = Arc::new(std::sync::Mutex::new(Vec::<(String, u32)>::new()));
        let consumer = Consumer::new(
            q.clone(),
            Duration::from_secs(60),
            &settings,
            &counters,
            &stop,
        );
        let log = seen.clone();
        let task = tokio::spawn(consumer.run(move |body, receives| {
            let log = log.clone();
            async move {
                let Ok(Message::Sync(m)) = Message::from_json(&body) else {
                    return Settle::Fail("unreadable".into());
                };
                let name = m.config_id.as_str().to_owned();
                log.lock().unwrap().push((name.clone(), receives));
                match (name.as_str(), receives) {
                    ("ok", _) | ("flaky", 3) => Settle::Done,
                    ("bad", _) => Settle::Fail("bad input".into()),
                    _ => Settle::Retry("warehouse busy".into()),
                }
            }
        }));
        let start = std::time::Instant::now();
        while !q.is_empty().unwrap() {
            assert!(start.elapsed() < Duration::from_secs(10), "not settled");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop_tx.send(true).unwrap();
        task.await.unwrap();
        let seen = seen.lock().unwrap().clone();
        let count = |n: &str| seen.iter().filter(|(m, _)| m == n).count();
        assert_eq!(
            (count("ok"), count("flaky"), count("bad"), count("always")),
            (1, 3, 1, 3)
        );
        let dead = queues.dead_letters().unwrap();
        let reasons: Vec<&str> = dead.iter().map(|d| d.reason.as_str()).collect();
        assert_eq!(reasons, ["bad input", "after 3 deliveries: warehouse busy"]);
        assert_eq!(counters.retried.load(Ordering::Relaxed), 4);
        assert_eq!(counters.dead_lettered.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_second_process_on_the_same_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("prdiff.db");
        let first = Database::open(&db, None).unwrap();
        match Database::open(&db, None) {
            Err(ServeError::Locked { lock, .. }) => assert_eq!(lock, lock_path(&db)),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("two processes on one file"),
        }
        drop(first);
        Database::open(&db, None).expect("the lock goes with the process");
    }
}
