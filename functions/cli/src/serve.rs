//! `prdiff serve`: the whole product in one process on the embedded adapters. The wiring
//! lives in the `prdiff-serve` crate; this module reads arguments and waits for a signal.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use prdiff_serve::{Database, HttpLimits, Server, Settings};
use prdiff_shared::settings::{FromEnv, LogFormat, ServeSettings};

use crate::{CliError, CliResult};

/// Every flag has an environment variable of the same meaning (the flag wins); see
/// `docs/configuration.md`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address of the webhook endpoint (`POST /webhook`, `GET /healthz`) [env PRDIFF_LISTEN,
    /// default 127.0.0.1:8080].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// SQLite file holding configurations, runs, metadata and the queues (the file
    /// `prdiff config apply --backend embedded` writes) [env PRDIFF_DB, default prdiff.db].
    #[arg(long)]
    db: Option<PathBuf>,
    /// Secrets directory [env PRDIFF_SECRETS_DIR, default `<db>.secrets`]. Environment
    /// variables `PRDIFF_SECRET_<NAME>` take precedence.
    #[arg(long)]
    secrets_dir: Option<PathBuf>,
    /// Name of the webhook secret (GitHub's HMAC key, GitLab's token)
    /// [env PRDIFF_WEBHOOK_SECRET_NAME, default prdiff/webhook-secret].
    #[arg(long)]
    webhook_secret_name: Option<String>,
    /// Models diffed at the same time [env PRDIFF_DIFF_WORKERS, default 2].
    #[arg(long)]
    diff_workers: Option<usize>,
    /// Delay of the first poll of dbt Cloud after a push [env PRDIFF_POLL_DELAY_SECONDS,
    /// default 60].
    #[arg(long)]
    poll_delay_seconds: Option<u64>,
    /// Delay before the poller looks again; doubles up to 900 s
    /// [env PRDIFF_REPOLL_DELAY_SECONDS, default 30].
    #[arg(long)]
    repoll_delay_seconds: Option<u64>,
    /// How long to wait for the dbt Cloud run before failing the check
    /// [env PRDIFF_RUN_DEADLINE_SECONDS, default 14400].
    #[arg(long)]
    run_deadline_seconds: Option<u64>,
    /// Time limit of one model's diff (past it, a "timed out" row in the report)
    /// [env PRDIFF_MODEL_TIMEOUT_SECONDS, default 840].
    #[arg(long)]
    model_timeout_seconds: Option<u64>,
    /// How often sync schedules are checked; 0 turns scheduled syncs off
    /// [env PRDIFF_SYNC_TICK_SECONDS, default 900].
    #[arg(long)]
    sync_tick_seconds: Option<u64>,
    /// Time the work in hand gets to finish after SIGINT/SIGTERM
    /// [env PRDIFF_SHUTDOWN_GRACE_SECONDS, default 30].
    #[arg(long)]
    shutdown_grace_seconds: Option<u64>,
    /// A request's headers must arrive within this; an idle connection is closed after
    /// as long [env PRDIFF_HEADER_TIMEOUT_SECONDS, default 10].
    #[arg(long)]
    header_timeout_seconds: Option<u64>,
    /// A request's body must arrive within this once its headers are in (else 408)
    /// [env PRDIFF_BODY_TIMEOUT_SECONDS, default 30].
    #[arg(long)]
    body_timeout_seconds: Option<u64>,
    /// HTTP connections served at once; more wait in the listen backlog
    /// [env PRDIFF_MAX_CONNECTIONS, default 512].
    #[arg(long)]
    max_connections: Option<usize>,
}

impl ServeArgs {
    /// The flags given, under the name of the variable each one overrides.
    fn given(&self) -> Vec<(&'static str, &'static str, String)> {
        let text = |v: &Option<PathBuf>| v.as_ref().map(|p| p.to_string_lossy().into_owned());
        [
            (
                "PRDIFF_LISTEN",
                "--listen",
                self.listen.map(|v| v.to_string()),
            ),
            ("PRDIFF_DB", "--db", text(&self.db)),
            (
                "PRDIFF_SECRETS_DIR",
                "--secrets-dir",
                text(&self.secrets_dir),
            ),
            (
                "PRDIFF_WEBHOOK_SECRET_NAME",
                "--webhook-secret-name",
                self.webhook_secret_name.clone(),
            ),
            (
                "PRDIFF_DIFF_WORKERS",
                "--diff-workers",
                self.diff_workers.map(|v| v.to_string()),
            ),
            (
                "PRDIFF_POLL_DELAY_SECONDS",
                "--poll-delay-seconds",
                self.poll_delay_seconds.map(|v| v.to_string()),
            ),
            (
                "PRDIFF_REPOLL_DELAY_SECONDS",
                "--repoll-delay-seconds",
                self.repoll_delay_seconds.map(|v| v.to_string()),
            ),
            (
                "PRDIFF_RUN_DEADLINE_SECONDS",
                "--run-deadline-seconds",
                self.run_deadline_seconds.map(|v| v.to_string()),
            ),
            (
                "PRDIFF_MODEL_TIMEOUT_SECONDS",
                "--model-timeout-seconds",
                self.model_timeout_seconds.map(|v| v.to_string()),
            ),
            (
                "PRDIFF_SYNC_TICK_SECONDS",
                "--sync-tick-seconds",
                self.sync_tick_seconds.map(|v| v.to_string()),
            ),
            (
                "PRDIFF_SHUTDOWN_GRACE_SECONDS",
                "--shutdown-grace-seconds",
                self.shutdown_grace_seconds.map(|v| v.to_string()),
            ),
            (
                "PRDIFF_HEADER_TIMEOUT_SECONDS",
                "--header-timeout-seconds",
                self.header_timeout_seconds.map(|v| v.to_string()),
            ),
            (
                "PRDIFF_BODY_TIMEOUT_SECONDS",
                "--body-timeout-seconds",
                self.body_timeout_seconds.map(|v| v.to_string()),
            ),
            (
                "PRDIFF_MAX_CONNECTIONS",
                "--max-connections",
                self.max_connections.map(|v| v.to_string()),
            ),
        ]
        .into_iter()
        .filter_map(|(var, flag, v)| v.map(|v| (var, flag, v)))
        .collect()
    }

    /// The settings: each flag given, else its environment variable, else the default;
    /// every bad value reported together, named by the flag when it came from one.
    fn settings(&self) -> Result<ServeSettings, CliError> {
        let given = self.given();
        let from_flag = |name: &str| given.iter().find(|(v, _, _)| *v == name);
        ServeSettings::from_vars(|name| {
            from_flag(name)
                .map(|(_, _, v)| v.clone())
                .or_else(|| std::env::var(name).ok())
        })
        .map_err(|e| {
            let problems: Vec<String> =
                e.0.into_iter()
                    .map(|p| match given.iter().find(|(v, _, _)| p.starts_with(v)) {
                        Some((var, flag, _)) => p.replacen(var, flag, 1),
                        None => p,
                    })
                    .collect();
            CliError::Usage(problems.join("; "))
        })
    }
}

/// Logs on stderr: `RUST_LOG` filters (default info), `PRDIFF_LOG_FORMAT=json` for JSON
/// lines, colour only on a terminal (a log file or journal gets plain text).
fn init_logs(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Json => fmt.json().try_init(),
        LogFormat::Text => fmt.try_init(),
    };
}

pub async fn run(args: ServeArgs) -> CliResult {
    let s = args.settings()?;
    init_logs(s.log_format);
    let mut settings = Settings::new(s.listen, s.webhook_secret);
    settings.webhook.trigger_token = Some(s.trigger_token);
    settings.http = HttpLimits {
        header_timeout: s.header_timeout,
        body_timeout: s.body_timeout,
        max_connections: s.max_connections,
    };
    settings.webhook.poll_delay = s.poll_delay;
    settings.webhook.run_deadline = s.run_deadline;
    settings.poller.first_delay = s.repoll_delay;
    settings.diff.model_timeout = s.model_timeout;
    settings.diff.statement_timeout = settings
        .diff
        .statement_timeout
        .min(settings.diff.model_timeout);
    settings.diff_workers = s.diff_workers;
    settings.sync_tick = s.sync_tick;
    settings.shutdown_grace = s.shutdown_grace;

    // Serve refuses to start when the file is in use, the webhook secret is missing or the
    // address is taken; it then removes the files it created for this start.
    let created = new_files(&s.db);
    let db = match Database::open(&s.db, s.secrets_dir) {
        Ok(db) => db,
        Err(e) => {
            remove(&created);
            return Err(CliError::Usage(e.to_string()));
        }
    };
    let server = match Server::bind(db.services.clone(), settings).await {
        Ok(s) => s,
        Err(e) => {
            // Closes the database and releases the lock before their files go.
            drop(db);
            remove(&created);
            return Err(CliError::Usage(e.to_string()));
        }
    };
    // The handlers are installed before serve says it listens: a signal sent as soon as
    // the line appears (or a request answered) stops it gracefully instead of killing it.
    let stop = shutdown_signal();
    eprintln!(
        "prdiff serve: listening on http://{} (POST /webhook, GET /healthz), database {}",
        server.local_addr(),
        s.db.display()
    );
    server.run(stop).await;
    eprintln!("prdiff serve: stopped");
    Ok(())
}

/// The database's files (the file, its journal files, the lock) that do not exist yet.
fn new_files(db: &Path) -> Vec<PathBuf> {
    let mut paths = vec![db.to_owned(), prdiff_serve::lock_path(db)];
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        paths.push(PathBuf::from(p));
    }
    paths.retain(|p| !p.exists());
    paths
}

fn remove(paths: &[PathBuf]) {
    for p in paths {
        let _ = std::fs::remove_file(p);
    }
}

/// Installs the SIGINT (Ctrl-C) and SIGTERM handlers now; the future resolves on either.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let handlers = signal(SignalKind::terminate()).and_then(|term| {
            let int = signal(SignalKind::interrupt())?;
            Ok((term, int))
        });
        async move {
            match handlers {
                Ok((mut term, mut int)) => {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
