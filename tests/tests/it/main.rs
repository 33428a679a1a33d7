//! prdiff's integration tests: one binary, one module per area. The harness
//! (`prdiff_tests`) reaches the services `scripts/test.sh` started.
mod bigquery;
mod completeness;
mod concentration;
mod config_cli;
mod databricks;
mod dbtcloud;
mod e2e;
mod engine;
mod githost;
mod plan;
mod privileges;
mod redshift;
mod renames;
mod security;
mod snowflake;
mod stores;
mod sync;
mod template;
mod tls;
mod tolerance;
mod warehouse_errors;
mod webhook;
