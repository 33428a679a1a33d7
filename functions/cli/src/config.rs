//! `prdiff config`: manage CI configurations and data sources in the deployed stack
//! (DynamoDB + Secrets Manager, honouring `AWS_ENDPOINT_URL`) or in the embedded store
//! (a SQLite file and a secrets directory, for `prdiff serve`). The logic lives in
//! `prdiff_shared::app::apply`; this module parses arguments, picks adapters, prints.

use std::path::{Path, PathBuf};

use prdiff_shared::app::apply;
use prdiff_shared::config::{ConfigId, DataSourceId};
use prdiff_shared::wiring::{self, Adapters};

use crate::{CliError, CliResult};

/// Prints a line to stdout, ignoring a closed pipe (`prdiff config show x | head`).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Where configurations are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// DynamoDB table + Secrets Manager (the deployed stack).
    Aws,
    /// A local SQLite file + a directory of secret files.
    Embedded,
}

/// Backend options shared by every subcommand.
#[derive(clap::Args, Debug)]
pub struct Backend {
    /// `aws` (DynamoDB + Secrets Manager) or `embedded` (SQLite file + secrets directory).
    #[arg(long, env = "PRDIFF_BACKEND", value_enum, default_value = "aws")]
    backend: BackendKind,
    /// DynamoDB table of the stack (aws backend).
    #[arg(long, env = "PRDIFF_TABLE")]
    table: Option<String>,
    /// SQLite file (embedded backend).
    #[arg(long, env = "PRDIFF_DB", default_value = "prdiff.db")]
    db: PathBuf,
    /// Secrets directory (embedded backend); default `<db>.secrets`.
    #[arg(long, env = "PRDIFF_SECRETS_DIR")]
    secrets_dir: Option<PathBuf>,
}

#[derive(clap::Subcommand, Debug)]
pub enum ConfigCommand {
    /// Validate a TOML file (every field, dbt Cloud account and jobs) and store it.
    /// Nothing is written when any check fails.
    Apply {
        /// The configuration file.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Skip asking dbt Cloud about the account and jobs (air-gapped embedded use).
        #[arg(long)]
        no_dbt_check: bool,
        #[command(flatten)]
        backend: Backend,
    },
    /// List configurations and data sources.
    List {
        #[command(flatten)]
        backend: Backend,
    },
    /// Show a configuration (or data source) as JSON; secrets by name only.
    Show {
        /// The configuration name or data source id.
        id: String,
        #[command(flatten)]
        backend: Backend,
    },
    /// Delete a configuration (or data source). Its secrets stay in the secret store.
    Delete {
        /// The configuration name or data source id.
        id: String,
        #[command(flatten)]
        backend: Backend,
    },
    /// Check a stored configuration: data source, secrets, dbt Cloud account and jobs, and
    /// the warehouse: connect with the stored secret, run `SELECT 1`, and warn about any
    /// write or administrative privilege of the role (warnings keep exit code 0).
    Check {
        /// The configuration name.
        id: String,
        /// Do not connect to the warehouse.
        #[arg(long)]
        no_warehouse_check: bool,
        #[command(flatten)]
        backend: Backend,
    },
}

/// The embedded backend's secrets directory: `--secrets-dir`, else `<db>.secrets`.
fn secrets_dir(b: &Backend) -> PathBuf {
    b.secrets_dir
        .clone()
        .unwrap_or_else(|| with_suffix(&b.db, ".secrets"))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// The files and directories of the embedded backend that do not exist yet, so that a
/// command that fails can remove what it created.
struct NewFiles(Vec<PathBuf>);

impl NewFiles {
    fn before(b: &Backend) -> Self {
        if b.backend != BackendKind::Embedded {
            return Self(Vec::new());
        }
        let mut paths = vec![b.db.clone(), secrets_dir(b)];
        paths.extend(["-wal", "-shm", "-journal"].map(|s| with_suffix(&b.db, s)));
        Self(paths.into_iter().filter(|p| !p.exists()).collect())
    }

    fn remove(&self) {
        for p in &self.0 {
            let _ = if p.is_dir() {
                std::fs::remove_dir_all(p)
            } else {
                std::fs::remove_file(p)
            };
        }
    }
}

/// The wiring backend the flags name.
async fn backend(b: &Backend) -> Result<wiring::Backend, CliError> {
    match b.backend {
        BackendKind::Embedded => Ok(wiring::Backend::Embedded {
            db: b.db.clone(),
            secrets_dir: secrets_dir(b),
        }),
        BackendKind::Aws => aws_backend(b.table.as_deref()).await,
    }
}

async fn adapters(b: &Backend) -> Result<Adapters, CliError> {
    backend(b)
        .await?
        .adapters()
        .map_err(|e| CliError::Failed(e.to_string()))
}

/// The deployed stack's table, with AWS settings loaded the usual way (`AWS_ENDPOINT_URL`,
/// the region and credentials); secrets are read afresh on every use.
#[cfg(feature = "aws")]
pub(crate) async fn aws_backend(table: Option<&str>) -> Result<wiring::Backend, CliError> {
    let Some(table) = table.filter(|t| !t.is_empty()) else {
        return Err(CliError::Usage(
            "the aws backend needs --table or PRDIFF_TABLE (the stack's DynamoDB table)".into(),
        ));
    };
    Ok(wiring::Backend::Aws(Box::new(
        wiring::AwsBackend::load(table).await,
    )))
}

#[cfg(not(feature = "aws"))]
pub(crate) async fn aws_backend(_table: Option<&str>) -> Result<wiring::Backend, CliError> {
    Err(CliError::Usage(
        "this prdiff was built without AWS support; use --backend embedded".into(),
    ))
}

fn failure(e: impl std::error::Error + 'static) -> CliError {
    CliError::failed(&e)
}

pub async fn run(cmd: ConfigCommand) -> CliResult {
    match cmd {
        ConfigCommand::Apply {
            file,
            no_dbt_check,
            backend,
        } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?;
            // A failed apply leaves no embedded database or secrets directory behind.
            let created = NewFiles::before(&backend);
            let applied = async {
                let Adapters {
                    configs: store,
                    secrets,
                    dbt,
                    ..
                } = adapters(&backend).await?;
                let base = file.parent().unwrap_or(Path::new("."));
                apply::apply(
                    &text,
                    base,
                    store.as_ref(),
                    secrets.as_ref(),
                    dbt.as_ref(),
                    !no_dbt_check,
                )
                .await
                .map_err(|e| {
                    let message = format!("{}: {}", file.display(), prdiff_shared::error_chain(&e));
                    if e.is_usage() {
                        CliError::Usage(message)
                    } else {
                        CliError::Failed(message)
                    }
                })
            }
            .await;
            let report = applied.inspect_err(|_| created.remove())?;
            for id in &report.data_sources {
                out!("data source {id}: applied");
            }
            for id in &report.configs {
                out!("configuration {id}: applied");
            }
            for name in &report.secrets_written {
                out!("secret {name}: stored");
            }
            Ok(())
        }
        ConfigCommand::List { backend } => {
            let store = adapters(&backend).await?.configs;
            let sources = store.list_data_sources().await.map_err(failure)?;
            let configs = store.list_configs().await.map_err(failure)?;
            out!("DATA SOURCES");
            for d in &sources {
                out!("  {:<24} {}", d.id, d.kind.as_str());
            }
            out!("CI CONFIGURATIONS");
            for c in &configs {
                out!(
                    "  {:<24} {}:{:<32} data source {:<16} dbt account {} jobs {}/{}",
                    c.name,
                    c.repository.provider,
                    c.repository.full_name,
                    c.data_source,
                    c.dbt_cloud.account_id,
                    c.dbt_cloud.artifacts_job_id,
                    c.dbt_cloud
                        .pr_job_id
                        .map_or("-".to_owned(), |j| j.to_string())
                );
            }
            Ok(())
        }
        ConfigCommand::Show { id, backend } => {
            let store = adapters(&backend).await?.configs;
            if let Ok(cid) = ConfigId::parse(id.clone())
                && let Some(c) = store.get_config(&cid).await.map_err(failure)?
            {
                out!("{}", serde_json::to_string_pretty(&c).map_err(failure)?);
                return Ok(());
            }
            if let Ok(did) = DataSourceId::parse(id.clone())
                && let Some(d) = store.get_data_source(&did).await.map_err(failure)?
            {
                out!("{}", serde_json::to_string_pretty(&d).map_err(failure)?);
                return Ok(());
            }
            Err(CliError::Usage(format!(
                "no configuration or data source {id:?}"
            )))
        }
        ConfigCommand::Delete { id, backend } => {
            let store = adapters(&backend).await?.configs;
            if let Ok(cid) = ConfigId::parse(id.clone())
                && store.delete_config(&cid).await.map_err(failure)?
            {
                out!("configuration {id}: deleted");
                return Ok(());
            }
            if let Ok(did) = DataSourceId::parse(id.clone()) {
                let users: Vec<_> = store
                    .list_configs()
                    .await
                    .map_err(failure)?
                    .into_iter()
                    .filter(|c| c.data_source == did)
                    .map(|c| c.name.to_string())
                    .collect();
                if !users.is_empty() {
                    return Err(CliError::Usage(format!(
                        "data source {id} is used by {}",
                        users.join(", ")
                    )));
                }
                if store.delete_data_source(&did).await.map_err(failure)? {
                    out!("data source {id}: deleted");
                    return Ok(());
                }
            }
            Err(CliError::Usage(format!(
                "no configuration or data source {id:?}"
            )))
        }
        ConfigCommand::Check {
            id,
            no_warehouse_check,
            backend,
        } => {
            let cid = ConfigId::parse(id).map_err(CliError::Usage)?;
            let Adapters {
                configs: store,
                secrets,
                dbt,
                ..
            } = adapters(&backend).await?;
            let lines = apply::check(
                &cid,
                store.as_ref(),
                secrets.as_ref(),
                dbt.as_ref(),
                !no_warehouse_check,
            )
            .await
            .map_err(|e| CliError::Failed(prdiff_shared::error_chain(&e)))?
            .ok_or_else(|| CliError::Usage(format!("no configuration {cid}")))?;
            let mut ok = true;
            for l in &lines {
                ok &= l.ok;
                out!(
                    "{:<4} {}: {}",
                    match (l.ok, l.warning) {
                        (false, _) => "FAIL",
                        (true, true) => "WARN",
                        (true, false) => "ok",
                    },
                    l.what,
                    l.detail
                );
            }
            if ok {
                Ok(())
            } else {
                Err(CliError::Failed(format!(
                    "configuration {cid} has problems"
                )))
            }
        }
    }
}
