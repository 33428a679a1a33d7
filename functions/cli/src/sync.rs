//! `prdiff sync --config ID` (one manifest sync by hand, printing what changed) and
//! `prdiff metadata show MODEL` (what is stored), against the deployed stack (DynamoDB +
//! Secrets Manager) or the embedded store (a SQLite file + a secrets directory). The
//! logic lives in `prdiff_shared::metadata`; this module parses arguments and prints.

use std::path::PathBuf;

use prdiff_shared::app::sync::{SyncError, sync_config};
use prdiff_shared::config::ConfigId;
use prdiff_shared::store::unix_now;
use prdiff_shared::wiring::{self, Adapters};

use crate::{CliError, CliResult};

/// Prints a line to stdout, ignoring a closed pipe.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Where configurations and metadata are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    /// DynamoDB table + Secrets Manager (the deployed stack).
    Aws,
    /// A local SQLite file + a directory of secret files.
    Embedded,
}

/// Store options (the same flags and variables as `prdiff config`).
#[derive(clap::Args, Debug)]
pub struct StoreArgs {
    /// `aws` (DynamoDB + Secrets Manager) or `embedded` (SQLite file + secrets directory).
    #[arg(long, env = "PRDIFF_BACKEND", value_enum, default_value = "aws")]
    backend: StoreKind,
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

#[derive(clap::Args, Debug)]
pub struct SyncArgs {
    /// The configuration whose artifacts job to sync from.
    #[arg(long = "config")]
    config: String,
    /// Print the outcome as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(clap::Subcommand, Debug)]
pub enum MetadataCommand {
    /// Print the stored metadata of a model (by name or unique id) as JSON.
    Show {
        /// The model's name (`orders`) or unique id (`model.shop.orders`).
        model: String,
        /// The configuration; may be left out when there is only one.
        #[arg(long = "config")]
        config: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

type Failure = CliError;

fn failure(e: impl std::error::Error + 'static) -> Failure {
    CliError::failed(&e)
}

async fn adapters(a: &StoreArgs) -> Result<Adapters, Failure> {
    let backend = match a.backend {
        StoreKind::Embedded => {
            let secrets_dir = a.secrets_dir.clone().unwrap_or_else(|| {
                let mut p = a.db.clone().into_os_string();
                p.push(".secrets");
                PathBuf::from(p)
            });
            wiring::Backend::Embedded {
                db: a.db.clone(),
                secrets_dir,
            }
        }
        StoreKind::Aws => crate::config::aws_backend(a.table.as_deref()).await?,
    };
    backend
        .adapters()
        .map_err(|e| CliError::Failed(e.to_string()))
}

/// `prdiff sync --config ID`.
pub async fn run_sync(args: SyncArgs) -> CliResult {
    let id = ConfigId::parse(args.config.clone()).map_err(CliError::Usage)?;
    let a = adapters(&args.store).await?;
    let deps = a.sync();
    let outcome = match sync_config(&deps, &id, unix_now()).await {
        Ok(o) => o,
        Err(e @ SyncError::UnknownConfig(_)) => return Err(CliError::Usage(e.chain())),
        Err(e) => return Err(CliError::Failed(e.chain())),
    };
    if args.json {
        out!(
            "{}",
            serde_json::to_string_pretty(&outcome).map_err(failure)?
        );
        return Ok(());
    }
    out!(
        "configuration {}: dbt Cloud run {}, manifest generated {}",
        outcome.config,
        outcome.run_id,
        outcome.generated_at.as_deref().unwrap_or("(unknown)")
    );
    if outcome.unchanged {
        out!("unchanged: {} models stored", outcome.models);
        return Ok(());
    }
    out!(
        "{} added, {} updated, {} removed; {} models stored",
        outcome.added.len(),
        outcome.updated.len(),
        outcome.removed.len(),
        outcome.models
    );
    for (sign, ids) in [
        ("+", &outcome.added),
        ("~", &outcome.updated),
        ("-", &outcome.removed),
    ] {
        for id in ids {
            out!("  {sign} {id}");
        }
    }
    Ok(())
}

/// `prdiff metadata …`.
pub async fn run_metadata(cmd: MetadataCommand) -> CliResult {
    let MetadataCommand::Show {
        model,
        config,
        store,
    } = cmd;
    let a = adapters(&store).await?;
    let id = match config {
        Some(c) => ConfigId::parse(c).map_err(CliError::Usage)?,
        None => {
            let all = a.configs.list_configs().await.map_err(failure)?;
            match all.as_slice() {
                [one] => one.name.clone(),
                [] => return Err(CliError::Usage("no configuration is stored".into())),
                many => {
                    let names: Vec<&str> = many.iter().map(|c| c.name.as_str()).collect();
                    return Err(CliError::Usage(format!(
                        "several configurations are stored ({}); pick one with --config",
                        names.join(", ")
                    )));
                }
            }
        }
    };
    let state = a.metadata.state(&id).await.map_err(failure)?;
    let models = a
        .metadata
        .models_named(&id, &model)
        .await
        .map_err(failure)?;
    if models.is_empty() {
        let why = match &state {
            None => format!("configuration {id} has never been synced"),
            Some(s) => match &s.last_error {
                Some(e) => format!("the last sync of {id} failed: {e}"),
                None => format!("{} models of {id} are stored", s.models),
            },
        };
        return Err(CliError::Usage(format!("no model {model:?} ({why})")));
    }
    let state = state.unwrap_or_default();
    let shown = serde_json::json!({
        "config": id.as_str(),
        "manifest_generated_at": state.generated_at,
        "dbt_cloud_run": state.run_id,
        "last_success_at": state.last_success_at,
        "last_error": state.last_error,
        "models": models,
    });
    out!("{}", serde_json::to_string_pretty(&shown).map_err(failure)?);
    Ok(())
}
