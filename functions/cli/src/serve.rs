//! `prdiff serve`: the whole product in one process on the embedded adapters. The wiring
//! lives in the `prdiff-serve` crate; this module reads arguments and waits for a signal.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use prdiff_serve::{Database, HttpLimits, Server, Settings};
use prdiff_shared::config::SecretName;

use crate::exit;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address of the webhook endpoint (`POST /webhook`, `GET /healthz`).
    #[arg(long, env = "PRDIFF_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// SQLite file holding configurations, runs, metadata and the queues (the file
    /// `prdiff config apply --backend embedded` writes).
    #[arg(long, env = "PRDIFF_DB", default_value = "prdiff.db")]
    db: PathBuf,
    /// Secrets directory; default `<db>.secrets`. Environment variables
    /// `PRDIFF_SECRET_<NAME>` take precedence.
    #[arg(long, env = "PRDIFF_SECRETS_DIR")]
    secrets_dir: Option<PathBuf>,
    /// Name of the webhook secret (GitHub's HMAC key, GitLab's token).
    #[arg(
        long,
        env = "PRDIFF_WEBHOOK_SECRET_NAME",
        default_value = "prdiff/webhook-secret"
    )]
    webhook_secret_name: String,
    /// Models diffed at the same time.
    #[arg(long, env = "PRDIFF_DIFF_WORKERS", default_value_t = 2)]
    diff_workers: usize,
    /// Delay of the first poll of dbt Cloud after a push.
    #[arg(long, env = "PRDIFF_POLL_DELAY_SECONDS", default_value_t = 60)]
    poll_delay_seconds: u64,
    /// Delay before the poller looks again; doubles up to 900 s.
    #[arg(long, env = "PRDIFF_REPOLL_DELAY_SECONDS", default_value_t = 30)]
    repoll_delay_seconds: u64,
    /// How long to wait for the dbt Cloud run before failing the check.
    #[arg(long, env = "PRDIFF_RUN_DEADLINE_SECONDS", default_value_t = 4 * 3600)]
    run_deadline_seconds: u64,
    /// Time limit of one model's diff (past it, a "timed out" row in the report).
    #[arg(long, env = "PRDIFF_MODEL_TIMEOUT_SECONDS", default_value_t = 840)]
    model_timeout_seconds: u64,
    /// How often sync schedules are checked; 0 turns scheduled syncs off.
    #[arg(long, env = "PRDIFF_SYNC_TICK_SECONDS", default_value_t = 900)]
    sync_tick_seconds: u64,
    /// Time the work in hand gets to finish after SIGINT/SIGTERM.
    #[arg(long, env = "PRDIFF_SHUTDOWN_GRACE_SECONDS", default_value_t = 30)]
    shutdown_grace_seconds: u64,
    /// A request's headers must arrive within this; an idle connection is closed after
    /// as long.
    #[arg(long, env = "PRDIFF_HEADER_TIMEOUT_SECONDS", default_value_t = 10)]
    header_timeout_seconds: u64,
    /// A request's body must arrive within this once its headers are in (else 408).
    #[arg(long, env = "PRDIFF_BODY_TIMEOUT_SECONDS", default_value_t = 30)]
    body_timeout_seconds: u64,
    /// HTTP connections served at once; more wait in the listen backlog.
    #[arg(long, env = "PRDIFF_MAX_CONNECTIONS", default_value_t = 512)]
    max_connections: usize,
}

pub async fn run(args: ServeArgs) -> u8 {
    // Logs on stderr; `RUST_LOG` filters (default info), `PRDIFF_LOG_FORMAT=json` for JSON lines.
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // Colour only on a terminal: a log file or journal gets plain text.
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = if std::env::var("PRDIFF_LOG_FORMAT").is_ok_and(|v| v == "json") {
        fmt.json().try_init()
    } else {
        fmt.try_init()
    };
    let webhook_secret = match SecretName::parse(&args.webhook_secret_name) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("error: --webhook-secret-name: {e}");
            return exit::USAGE;
        }
    };
    if args.model_timeout_seconds == 0 || args.run_deadline_seconds == 0 {
        eprintln!("error: --model-timeout-seconds and --run-deadline-seconds must be positive");
        return exit::USAGE;
    }
    if args.header_timeout_seconds == 0
        || args.body_timeout_seconds == 0
        || args.max_connections == 0
    {
        eprintln!(
            "error: --header-timeout-seconds, --body-timeout-seconds and --max-connections must be positive"
        );
        return exit::USAGE;
    }
    let mut settings = Settings::new(args.listen, webhook_secret);
    settings.http = HttpLimits {
        header_timeout: Duration::from_secs(args.header_timeout_seconds),
        body_timeout: Duration::from_secs(args.body_timeout_seconds),
        max_connections: args.max_connections,
    };
    settings.webhook.poll_delay = Duration::from_secs(args.poll_delay_seconds);
    settings.webhook.run_deadline = Duration::from_secs(args.run_deadline_seconds);
    settings.poller.first_delay = Duration::from_secs(args.repoll_delay_seconds.max(1));
    settings.diff.model_timeout = Duration::from_secs(args.model_timeout_seconds);
    settings.diff.statement_timeout = settings
        .diff
        .statement_timeout
        .min(settings.diff.model_timeout);
    settings.diff_workers = args.diff_workers.max(1);
    settings.sync_tick =
        (args.sync_tick_seconds > 0).then(|| Duration::from_secs(args.sync_tick_seconds));
    settings.shutdown_grace = Duration::from_secs(args.shutdown_grace_seconds);

    // Serve refuses to start when the file is in use, the webhook secret is missing or the
    // address is taken; it then removes the files it created for this start.
    let created = new_files(&args.db);
    let db = match Database::open(&args.db, args.secrets_dir) {
        Ok(db) => db,
        Err(e) => {
            eprintln!("error: {e}");
            remove(&created);
            return exit::USAGE;
        }
    };
    let server = match Server::bind(db.services.clone(), settings).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            // Closes the database and releases the lock before their files go.
            drop(db);
            remove(&created);
            return exit::USAGE;
        }
    };
    // The handlers are installed before serve says it listens: a signal sent as soon as
    // the line appears (or a request answered) stops it gracefully instead of killing it.
    let stop = shutdown_signal();
    eprintln!(
        "prdiff serve: listening on http://{} (POST /webhook, GET /healthz), database {}",
        server.local_addr(),
        args.db.display()
    );
    server.run(stop).await;
    eprintln!("prdiff serve: stopped");
    exit::OK
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
