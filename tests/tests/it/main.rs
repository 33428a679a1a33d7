//! prdiff's integration tests: one binary, one module per area. The harness
//! (`prdiff_tests`) reaches the services `scripts/test.sh` started.
mod plan;
mod webhook;
mod engine;
mod stores;
mod githost;
mod config_cli;
