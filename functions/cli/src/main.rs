//! `prdiff`: the operator CLI. Each subcommand lives in its own module; this file wires them.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod config;
mod demo;
mod diff;
mod error;
mod plan;
mod queue;
mod serve;
mod sync;

/// Data diffs for dbt pull requests. `diff` compares two relations in a warehouse; `demo`
/// runs it on an embedded example; `plan` says which models a pull request diffs; `config` manages CI configurations and
/// data sources; `sync` and `metadata` fetch and show model metadata from dbt Cloud;
/// `serve` runs the whole pipeline in one process; `queue` inspects and replays its queues.
#[derive(Parser)]
#[command(name = "prdiff", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Diff a production relation against a PR relation inside a warehouse.
    Diff(Box<diff::DiffArgs>),
    /// Run the whole diff on an embedded example (SQLite, no network, no setup).
    Demo(demo::DemoArgs),
    /// Plan which models a manifest pair would diff, and why.
    Plan(plan::PlanArgs),
    /// Manage CI configurations and data sources.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Sync a configuration's model metadata from its dbt Cloud artifacts job now.
    Sync(sync::SyncArgs),
    /// Show synced model metadata.
    #[command(subcommand)]
    Metadata(sync::MetadataCommand),
    /// Run webhook, poller, diff runner and sync in one process on the embedded store.
    Serve(Box<serve::ServeArgs>),
    /// Inspect the queues of a `prdiff serve` database; replay dead letters.
    #[command(subcommand)]
    Queue(queue::QueueCommand),
}

pub use error::{CliError, CliResult, error_text, exit};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve` sets up its own logging. Elsewhere logs are off unless `RUST_LOG` asks for
    // them (`RUST_LOG=prdiff_shared=debug` shows each warehouse statement and its time).
    if !matches!(cli.command, Command::Serve(_))
        && let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env()
    {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = runtime.block_on(async move {
        let (name, result) = match cli.command {
            Command::Diff(args) => ("diff", diff::run(*args).await),
            Command::Demo(args) => ("demo", demo::run(args).await),
            Command::Plan(args) => ("plan", plan::run(args).await),
            Command::Config(cmd) => ("config", config::run(cmd).await),
            Command::Sync(args) => ("sync", sync::run_sync(args).await),
            Command::Metadata(cmd) => ("metadata", sync::run_metadata(cmd).await),
            Command::Serve(args) => ("serve", serve::run(*args).await),
            Command::Queue(cmd) => ("queue", queue::run(cmd)),
        };
        error::finish(name, result)
    });
    ExitCode::from(code)
}
