//! The application layer: one module per use case, in the order a pull request's data
//! flows through them. Every binary — the Lambdas, `prdiff serve` and the CLI — calls
//! these functions over the ports (stores, queues, secrets, git host, dbt Cloud,
//! warehouse); none of them holds use-case logic of its own.
//!
//! | module | use case | reads | writes |
//! |---|---|---|---|
//! | [`intake`] | webhook delivery → run | the signed delivery, configurations, git host | the run, a pending status, a delayed poll message |
//! | [`trigger`] | authenticated `POST /trigger` → on-demand run | the bearer token, configurations, git host | as [`intake`] |
//! | [`poll`] | dbt Cloud run → plan | the run, dbt Cloud runs and artifacts | the fan-out, diff messages, re-polls |
//! | [`fanout`] | plan → work items | the plan | the summary and one work item per model |
//! | [`reuse`] | unchanged model → earlier result | earlier runs of the PR (fan-outs, results) | the re-used results of the run |
//! | [`diff_run`] | work item → result | the work item, data source and secret, the warehouse | the model's stored outcome |
//! | [`publish`] | results → comment and status | the fan-out and stored outcomes | sticky comment, commit status, the run's end |
//! | [`publish_run`] | a run's report, once (last diff runner or poller) | the fan-out, stored outcomes, model metadata | as [`publish`] |
//! | [`sync`] | production manifest → model metadata | dbt Cloud artifacts | the metadata store |
//! | [`apply`] | configuration file → stores | the TOML file, secrets, dbt Cloud, warehouse | configurations, data sources, secrets |

pub mod apply;
pub mod checks;
pub mod diff_run;
pub mod fanout;
pub mod intake;
pub mod poll;
pub mod publish;
pub mod publish_run;
pub mod reuse;
pub mod sync;
pub mod trigger;
