//! prdiff's common crate: everything the four Lambda functions and the `prdiff` CLI share.
//!
//! # Layout
//!
//! Modules follow the data path of a pull request, from the webhook to the comment:
//!
//! ```text
//! webhook → intake → queue → poll (dbt Cloud) → manifest → plan → diff → report
//! ```
//!
//! | module | what it holds |
//! |---|---|
//! | [`app`] | the use cases, in data-flow order: intake, poll, fan-out, diff run, publish, sync, apply |
//! | [`sql`] | relations, the SQL dialect trait and one file per warehouse dialect |
//! | [`warehouse`] | the warehouse port (run SQL, read rows as text) and its drivers |
//! | [`diff`] | the in-warehouse model diff: schema, counts, per-column changes, sampling |
//! | [`manifest`] | reading dbt `manifest.json` / `run_results.json` (v7–v12 / v4–v6) |
//! | [`plan`] | which models a PR changes, their relations, keys and per-model options |
//! | [`report`] | rendering diffs as text, markdown (the PR comment) and JSON |
//! | [`config`] | CI configurations and data sources: validated newtypes, the TOML file |
//! | [`intake`] | webhook deliveries: signature checks, GitHub/GitLab event parsing, the gates |
//! | `aws_error` | one classifier of AWS SDK errors: retryable or permanent, the service's message kept |
//! | [`run`] | the run model: a CI run, its id and state machine, its fan-out and results |
//! | [`store`] | configuration store and run store ports (run state machine, delivery dedupe) |
//! | [`secrets`] | the secret store port: Secrets Manager with a TTL cache, env/file/in-process |
//! | [`settings`] | settings from the environment, every problem reported together |
//! | [`queue`] | the queue port: SQS with per-message delay, a durable SQLite queue, an in-process delay queue |
//! | `localdb` | the SQLite database the embedded adapters share (one file for `prdiff serve`) |
//! | [`messages`] | versioned JSON of every queue message (poll, diff, sync) |
//! | [`githost`] | GitHub and GitLab REST clients behind one trait (files, merge base, status, comment) |
//! | [`metadata`] | model metadata synced from the production manifest: store port, sync, due-ness |
//! | [`dbtcloud`] | dbt Cloud Administrative API v2 client (accounts, jobs, runs, artifacts) |
//! | [`gates`] | merge gates from a model's dbt yaml (`meta.prdiff.gates`) and their verdicts on its diff |
//! | [`wiring`] | one backend (AWS, embedded, memory) → every adapter → each use case's dependencies |
//! | [`outcome`] | the outcome rule: a finished run's status, description and comment headline |
//!
//! Ports (small traits) sit in a module root; adapters are sibling files. Every port has an
//! in-process adapter so the whole path runs in one process (`prdiff serve`, tests).
#![doc(html_no_source)]

pub mod app;
#[cfg(feature = "aws")]
pub mod aws_error;
pub mod config;
pub mod dbtcloud;
pub mod diff;
pub mod gates;
pub mod githost;
pub mod intake;
#[cfg(feature = "sqlite")]
pub mod localdb;
pub mod manifest;
pub mod messages;
pub mod metadata;
pub mod outcome;
pub mod plan;
pub mod queue;
pub mod report;
pub mod run;
pub mod runtime;
pub mod secrets;
pub mod settings;
pub mod sql;
pub mod store;
pub mod warehouse;
#[cfg(any(feature = "aws", feature = "sqlite"))]
pub mod wiring;

/// The repository's test fixtures (`tests/fixtures`), for this crate's own unit tests.
#[cfg(test)]
pub(crate) fn test_fixtures() -> &'static std::path::Path {
    std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures"))
}

/// An error and its causes on one line (`cannot read x.json: No such file or directory`),
/// leaving out a cause whose text the line already carries (wrappers that repeat it).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cause = c.source();
    }
    s
}
