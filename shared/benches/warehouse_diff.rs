//! Connected benchmark of the model diff on any warehouse URL (a bench binary,
//! `harness = false`), for the stand-ins that `scripts/bench_snowflake.sh` and
//! `scripts/bench_bigquery.sh` start.
//!
//! One connection is opened and warmed (one diff and one floor statement, which also does
//! every login); then, alternately, the hand-written single-statement diff (the floor) and
//! prdiff's whole exact diff (column lookups, counts, the join, example rows) are timed
//! through that same connection. It prints one JSON line: the median seconds of each, the
//! floor's row and prdiff's result, for the calling script to check that both agree.
//!
//! `PRDIFF_BENCH_URL` (warehouse URL), `PRDIFF_BENCH_PROD`, `PRDIFF_BENCH_PR` (relations),
//! `PRDIFF_BENCH_PK` (key column), `PRDIFF_BENCH_FLOOR_SQL` (the statement),
//! `PRDIFF_BENCH_REPEATS` (default 3). With `RUST_LOG=prdiff_shared=debug`, every
//! statement's time is logged to stderr.

use std::time::{Duration, Instant};

use prdiff_shared::diff::{self, DiffRequest};
use prdiff_shared::sql::Relation;
use prdiff_shared::warehouse::{self, ConnectOptions, WarehouseUrl};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64()
}

#[tokio::main]
async fn main() {
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .init();
    }
    let url = WarehouseUrl::parse(&env("PRDIFF_BENCH_URL"), None).expect("PRDIFF_BENCH_URL");
    let floor = env("PRDIFF_BENCH_FLOOR_SQL");
    let repeats: usize = std::env::var("PRDIFF_BENCH_REPEATS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let wh = warehouse::connect(
        &url,
        &ConnectOptions {
            statement_timeout: Duration::from_secs(3600),
        },
    )
    .await
    .expect("connect");
    let rel = |name: &str| Relation::parse_for(&env(name), wh.dialect()).expect("relation");
    let req = DiffRequest::new(
        rel("PRDIFF_BENCH_PROD"),
        rel("PRDIFF_BENCH_PR"),
        vec![env("PRDIFF_BENCH_PK")],
    );

    // Warm up: logins (every session the diff opens), caches.
    diff::diff(wh.as_ref(), &req).await.expect("prdiff diff");
    wh.query(&floor).await.expect("floor statement");

    let (mut floors, mut diffs) = (Vec::new(), Vec::new());
    let (mut floor_row, mut result) = (None, None);
    for _ in 0..repeats {
        let t = Instant::now();
        let rows = wh.query(&floor).await.expect("floor statement");
        floors.push(t.elapsed());
        floor_row = rows.into_iter().next();
        let t = Instant::now();
        let r = diff::diff(wh.as_ref(), &req).await.expect("prdiff diff");
        diffs.push(t.elapsed());
        result = Some(r);
    }
    println!(
        "{}",
        serde_json::json!({
            "floor_seconds": median(floors),
            "diff_seconds": median(diffs),
            "floor": floor_row,
            "diff": result,
        })
    );
}
