//! `prdiff diff`: one model (two relations) against a warehouse.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::Context;
use prdiff_shared::diff::{self, DiffRequest, DiffResult, SamplingSettings};
use prdiff_shared::report;
use prdiff_shared::sql::Relation;
use prdiff_shared::warehouse::{self, ConnectOptions, WarehouseUrl};

use crate::exit;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Format {
    Text,
    Markdown,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    /// Warehouse URL: postgres://user[:password]@host:port/db (password also from
    /// PGPASSWORD) or sqlite:PATH[?attach=SCHEMA=PATH…].
    #[arg(long)]
    pub warehouse: String,
    /// Production relation: schema.table or database.schema.table.
    #[arg(long)]
    pub prod: String,
    /// PR relation: schema.table or database.schema.table.
    #[arg(long)]
    pub pr: String,
    /// Primary key column(s), comma-separated. Without a key only schema, row counts and
    /// NULL counts are compared.
    #[arg(long, value_delimiter = ',')]
    pub pk: Vec<String>,
    /// A SQL boolean expression applied to both sides.
    #[arg(long)]
    pub filter: Option<String>,
    /// Compare only these columns (comma-separated; keys are always kept).
    #[arg(long, value_delimiter = ',')]
    pub include_columns: Vec<String>,
    /// Never compare these columns (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub exclude_columns: Vec<String>,
    /// Mask these columns' values in sample rows (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub mask_columns: Vec<String>,
    /// Sample tables at least this many rows: half-width of every estimated share.
    #[arg(long)]
    pub sampling_tolerance: Option<f64>,
    /// Confidence of the sampled intervals.
    #[arg(long, default_value_t = 0.99)]
    pub sampling_confidence: f64,
    /// Tables with fewer rows than this are diffed exactly.
    #[arg(long, default_value_t = 1_000_000)]
    pub sampling_threshold: u64,
    /// Seed of the key hash that chooses the sample.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Sample rows to show per kind of difference.
    #[arg(long, default_value_t = 5)]
    pub samples: usize,
    /// Statement timeout, in seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// A usage or input problem: exit code 2.
#[derive(Debug)]
pub struct InputError(pub String);

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InputError {}

fn build_request(args: &DiffArgs) -> Result<DiffRequest, InputError> {
    let prod = Relation::parse(&args.prod).map_err(|e| InputError(format!("--prod: {e}")))?;
    let pr = Relation::parse(&args.pr).map_err(|e| InputError(format!("--pr: {e}")))?;
    let clean = |v: &[String]| v.iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect::<Vec<_>>();
    let mut req = DiffRequest::new(prod, pr, clean(&args.pk));
    req.filter = args.filter.clone().filter(|f| !f.trim().is_empty());
    req.include_columns = clean(&args.include_columns);
    req.exclude_columns = clean(&args.exclude_columns);
    req.masked_columns = clean(&args.mask_columns);
    req.sample_rows = args.samples;
    req.seed = args.seed;
    if let Some(t) = args.sampling_tolerance {
        req.sampling = Some(
            SamplingSettings::new(args.sampling_threshold, t, args.sampling_confidence)
                .map_err(|e| InputError(e.to_string()))?,
        );
    }
    Ok(req)
}

/// Prints elapsed time on stderr while `fut` runs, when stderr is a terminal.
pub async fn with_progress<T>(label: &str, fut: impl std::future::Future<Output = T>) -> T {
    if !std::io::stderr().is_terminal() {
        return fut.await;
    }
    let start = Instant::now();
    let ticker = async {
        let mut i = 0usize;
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let spin = ['|', '/', '-', '\\'][i % 4];
            eprint!("\r{spin} {label} {:.0}s ", start.elapsed().as_secs_f64());
            i += 1;
        }
    };
    let out = tokio::select! {
        v = fut => v,
        _ = ticker => unreachable!(),
    };
    eprint!("\r\x1b[2K");
    out
}

pub fn print(format: Format, title: &str, results: &[report::ModelEntry]) -> anyhow::Result<()> {
    match format {
        Format::Json => {
            let v: Vec<serde_json::Value> = results
                .iter()
                .map(|e| match &e.outcome {
                    Ok(r) => serde_json::to_value(r).expect("serialisable"),
                    Err(m) => serde_json::json!({"version": 1, "model": e.name, "error": m}),
                })
                .collect();
            let out = if v.len() == 1 { v.into_iter().next().unwrap() } else { serde_json::Value::Array(v) };
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Format::Markdown => print!("{}", report::markdown(title, results)),
        Format::Text => {
            for e in results {
                match &e.outcome {
                    Ok(r) => println!("{}", report::text(r)),
                    Err(m) => println!("{}: failed: {m}\n", e.name),
                }
            }
        }
    }
    Ok(())
}

pub async fn run(args: DiffArgs) -> u8 {
    match run_inner(&args).await {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("prdiff diff: {e:#}");
            if e.downcast_ref::<InputError>().is_some()
                || e.downcast_ref::<diff::DiffError>().is_some_and(|d| d.is_input_error())
            {
                exit::USAGE
            } else {
                exit::FAILURE
            }
        }
    }
}

async fn run_inner(args: &DiffArgs) -> anyhow::Result<()> {
    let req = build_request(args)?;
    let url = WarehouseUrl::parse(&args.warehouse, std::env::var("PGPASSWORD").ok())
        .map_err(|e| InputError(format!("--warehouse: {e}")))?;
    let options = ConnectOptions { statement_timeout: Duration::from_secs(args.timeout) };
    let wh = warehouse::connect(&url, &options).await.context("connecting to the warehouse")?;
    let result: DiffResult = with_progress("diffing", diff::diff(wh.as_ref(), &req)).await?;
    let entries = vec![report::ModelEntry { name: req.pr.name.clone(), outcome: Ok(result) }];
    print(args.format, &format!("prdiff: {} → {}", req.prod, req.pr), &entries)
}
