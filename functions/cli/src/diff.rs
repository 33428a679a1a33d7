//! `prdiff diff`: one model (two relations) against a warehouse.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use prdiff_shared::diff::from_plan::{PrSchemas, check_request, request_for};
use prdiff_shared::diff::{self, DiffRequest, DiffResult, SamplingSettings};
use prdiff_shared::manifest::{Manifest, RunResults};
use prdiff_shared::plan::{self, Plan, PlanInputs, PlanSettings};
use prdiff_shared::report;
use prdiff_shared::sql::Relation;
use prdiff_shared::warehouse::{self, ConnectOptions, WarehouseUrl};

use crate::{CliError, CliResult};

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Format {
    /// Plain text for a terminal.
    Text,
    /// The markdown of the pull request comment.
    Markdown,
    /// One JSON object per diff (`"version": 1`).
    Json,
}

#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    /// Warehouse URL: postgres://user[:password]@host:port/db (password also from
    /// PGPASSWORD), sqlite:PATH[?attach=SCHEMA=PATH…] or
    /// snowflake://USER[:PASSWORD]@ACCOUNT/DATABASE[?warehouse=…&role=…&private_key_path=…]
    /// (docs/warehouses/snowflake.md), databricks://HOST/WAREHOUSE_ID[?catalog=…&schema=…]
    /// with DATABRICKS_TOKEN or DATABRICKS_CLIENT_ID/_SECRET in the environment
    /// (docs/warehouses/databricks.md). Unquoted parts of --prod/--pr are resolved as the
    /// warehouse resolves them (Snowflake: upper case).
    #[arg(long)]
    pub warehouse: String,
    /// Production relation: schema.table or database.schema.table.
    #[arg(
        long,
        required_unless_present = "prod_manifest",
        conflicts_with = "prod_manifest"
    )]
    pub prod: Option<String>,
    /// PR relation: schema.table or database.schema.table.
    #[arg(
        long,
        required_unless_present = "prod_manifest",
        conflicts_with = "prod_manifest"
    )]
    pub pr: Option<String>,
    /// Manifest mode: the production manifest.json. Plans (as `prdiff plan`) and diffs
    /// every planned model.
    #[arg(long, requires = "pr_manifest")]
    pub prod_manifest: Option<std::path::PathBuf>,
    /// Manifest mode: the PR run's manifest.json.
    #[arg(long, requires = "prod_manifest")]
    pub pr_manifest: Option<std::path::PathBuf>,
    /// Manifest mode: the PR run's run_results.json (only models it built are diffed).
    #[arg(long, requires = "prod_manifest")]
    pub pr_run_results: Option<std::path::PathBuf>,
    /// Manifest mode: diff only modified models (dbt's state:modified).
    #[arg(long)]
    pub slim_ci: bool,
    /// Manifest mode with --slim-ci: also diff models downstream of modified ones.
    #[arg(long)]
    pub downstream: bool,
    /// Manifest mode: the tag that marks primary key columns.
    #[arg(long, default_value = "primary-key")]
    pub pk_tag: String,
    /// Manifest mode: the schema prefix the PR run built into (e.g. dbt_cloud_pr_123_45);
    /// models whose PR relation is in another schema are not diffed.
    #[arg(long, requires = "prod_manifest")]
    pub pr_schema: Option<String>,
    /// Primary key column(s), comma-separated. Without a key only schema, row counts and
    /// NULL counts are compared.
    #[arg(long, value_delimiter = ',')]
    pub pk: Vec<String>,
    /// A SQL boolean expression applied to both sides: column names, literals, operators,
    /// CASE, IN (list), BETWEEN, LIKE, casts and pure scalar functions (no subqueries).
    #[arg(long)]
    pub filter: Option<String>,
    /// Compare only these columns (comma-separated; keys are always kept).
    #[arg(long, value_delimiter = ',')]
    pub include_columns: Vec<String>,
    /// Never compare these columns (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub exclude_columns: Vec<String>,
    /// Compare a numeric column with a tolerance: COLUMN=ABS, COLUMN=rel=R or
    /// COLUMN=ABS,rel=R (values within either bound are unchanged). Repeatable.
    #[arg(long = "tolerance", value_name = "COLUMN=BOUNDS")]
    pub tolerance: Vec<String>,
    /// Mask these columns' values in sample rows (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub mask_columns: Vec<String>,
    /// Turns sampling on: every share estimated from the sample is within ± this (e.g.
    /// 0.001) at --sampling-confidence. Applies to tables of at least
    /// --sampling-threshold rows; without it every table is diffed exactly.
    #[arg(long)]
    pub sampling_tolerance: Option<f64>,
    /// Confidence of the sampled intervals, in (0, 1).
    #[arg(long, default_value_t = 0.99)]
    pub sampling_confidence: f64,
    /// With --sampling-tolerance: tables with fewer rows than this (on both sides) are
    /// diffed exactly.
    #[arg(long, default_value_t = 1_000_000)]
    pub sampling_threshold: u64,
    /// Seed of the key hash that chooses the sample.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Example rows to show per kind of difference (only in prod, only in the PR,
    /// changed); 0 shows none.
    #[arg(long, default_value_t = 5)]
    pub samples: usize,
    /// Statement timeout, in seconds (at least 1).
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// Output format.
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

fn sampling(args: &DiffArgs) -> Result<Option<SamplingSettings>, InputError> {
    args.sampling_tolerance
        .map(|t| {
            SamplingSettings::new(args.sampling_threshold, t, args.sampling_confidence)
                .map_err(|e| InputError(e.to_string()))
        })
        .transpose()
}

/// `--prod`/`--pr` are read as the warehouse reads names: unquoted parts folded the way
/// it folds unquoted identifiers (Snowflake: upper case), quoted parts exactly.
fn build_request(
    args: &DiffArgs,
    dialect: &dyn prdiff_shared::sql::Dialect,
) -> Result<DiffRequest, InputError> {
    let prod = Relation::parse_for(args.prod.as_deref().unwrap_or_default(), dialect)
        .map_err(|e| InputError(format!("--prod: {e}")))?;
    let pr = Relation::parse_for(args.pr.as_deref().unwrap_or_default(), dialect)
        .map_err(|e| InputError(format!("--pr: {e}")))?;
    let clean = |v: &[String]| {
        v.iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
    };
    let mut req = DiffRequest::new(prod, pr, clean(&args.pk));
    req.filter = args.filter.clone().filter(|f| !f.trim().is_empty());
    req.include_columns = clean(&args.include_columns);
    req.exclude_columns = clean(&args.exclude_columns);
    req.masked_columns = clean(&args.mask_columns);
    req.tolerance = args
        .tolerance
        .iter()
        .map(|t| prdiff_shared::diff::Tolerance::parse_arg(t))
        .collect::<Result<_, _>>()
        .map_err(|e| InputError(format!("--tolerance {e}")))?;
    req.sample_rows = args.samples;
    req.seed = args.seed;
    req.sampling = sampling(args)?;
    req.no_key_hint = Some("Pass the key column(s) with `--pk`.".into());
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

pub fn print(format: Format, report: &report::Report) -> anyhow::Result<()> {
    let results = &report.entries;
    match format {
        Format::Json => {
            let v: Vec<serde_json::Value> = results
                .iter()
                .map(|e| match &e.outcome {
                    Ok(r) => serde_json::to_value(r).expect("serialisable"),
                    Err(m) => serde_json::json!({"version": 1, "model": e.name, "error": m}),
                })
                .collect();
            let out = if v.len() == 1 {
                v.into_iter().next().unwrap()
            } else {
                serde_json::Value::Array(v)
            };
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Format::Markdown => print!("{}", report::markdown(report)),
        Format::Text => {
            for e in results {
                match &e.outcome {
                    Ok(r) => println!("{}", report::text(r)),
                    Err(m) => println!("{}: failed: {m}\n", e.name),
                }
            }
            for s in &report.skipped {
                println!("{}: not diffed: {}", s.name, s.reason);
            }
        }
    }
    Ok(())
}

pub async fn run(args: DiffArgs) -> CliResult {
    run_inner(&args).await.map_err(|e| {
        let message = crate::error_text(&e);
        if e.downcast_ref::<InputError>().is_some()
            || e.downcast_ref::<diff::DiffError>()
                .is_some_and(|d| d.is_input_error())
        {
            CliError::Usage(message)
        } else {
            CliError::Failed(message)
        }
    })
}

async fn run_inner(args: &DiffArgs) -> anyhow::Result<()> {
    let url = WarehouseUrl::parse(&args.warehouse, std::env::var("PGPASSWORD").ok())
        .map_err(|e| InputError(format!("--warehouse: {e}")))?;
    let options = ConnectOptions {
        statement_timeout: Duration::from_secs(args.timeout),
    };
    if let (Some(prod_manifest), Some(pr_manifest)) = (&args.prod_manifest, &args.pr_manifest) {
        let load = |p: &std::path::Path| Manifest::load(p).map_err(|e| InputError(e.to_string()));
        let prod = load(prod_manifest)?;
        let pr = load(pr_manifest)?;
        let rr = match &args.pr_run_results {
            Some(p) => Some(RunResults::load(p).map_err(|e| InputError(e.to_string()))?),
            None => None,
        };
        let settings = PlanSettings {
            slim_ci: args.slim_ci,
            downstream: args.downstream,
            primary_key_tag: args.pk_tag.clone(),
            ..Default::default()
        };
        let plan = plan::plan(&PlanInputs {
            prod: &prod,
            pr: &pr,
            pr_run_results: rr.as_ref(),
            settings: &settings,
        });
        let wh = warehouse::connect(&url, &options).await?;
        let report = with_progress(
            "diffing",
            diff_plan(
                wh.as_ref(),
                &plan,
                &pr,
                sampling(args)?,
                args.pr_schema.clone().map(PrSchemas::new).as_ref(),
                "prdiff: PR against production",
            ),
        )
        .await;
        return print(args.format, &report);
    }
    let req = build_request(args, url.dialect())?;
    let wh = warehouse::connect(&url, &options).await?;
    let result: DiffResult = with_progress("diffing", diff::diff(wh.as_ref(), &req)).await?;
    let report = report::Report {
        title: format!("prdiff: {} → {}", req.prod, req.pr),
        entries: vec![report::ModelEntry {
            name: req.pr.name.clone(),
            outcome: Ok(result),
        }],
        ..Default::default()
    };
    print(args.format, &report)
}

/// Diffs every model `plan` selects; a model that fails is a row of the report.
pub async fn diff_plan(
    wh: &dyn prdiff_shared::warehouse::Warehouse,
    plan: &Plan,
    pr: &Manifest,
    sampling: Option<SamplingSettings>,
    pr_schemas: Option<&PrSchemas>,
    title: &str,
) -> report::Report {
    let mut report = report::Report {
        title: title.to_owned(),
        ..Default::default()
    };
    for m in &plan.models {
        if let Some(change) = &m.materialization_change {
            report
                .materializations
                .insert(m.name.clone(), change.clone());
        }
        let req = request_for(m, pr.nodes.get(&m.unique_id), sampling, None);
        if let Some(refused) = req
            .as_ref()
            .and_then(|r| check_request(r, wh.dialect(), pr_schemas).err())
        {
            report.skipped.push(report::SkippedEntry {
                name: m.name.clone(),
                reason: refused.to_string(),
            });
            continue;
        }
        match req {
            Some(mut req) => {
                req.no_key_hint = Some(
                    "To match rows, mark the key column(s) with the primary key tag \
                     (`--pk-tag`, `primary-key` by default: column `meta: {primary-key: true}` \
                     or `tags: [primary-key]`), or diff the two relations with `--prod`, `--pr` \
                     and `--pk`."
                        .into(),
                );
                let outcome = diff::diff(wh, &req)
                    .await
                    .map_err(|e| prdiff_shared::error_chain(&e));
                if !m.options.gates.is_empty() {
                    report.gates.insert(m.name.clone(), m.options.gates.clone());
                }
                report.entries.push(report::ModelEntry {
                    name: m.name.clone(),
                    outcome,
                });
            }
            None => {
                let mut reason = m
                    .skip_reason
                    .map(report::skip_reason_text)
                    .unwrap_or("no relation to compare")
                    .to_owned();
                // New and removed models: their rows are counted.
                if let Some((work, counted)) = prdiff_shared::app::fanout::count_item(m, pr_schemas)
                {
                    let n = prdiff_shared::app::diff_run::count_work(wh, &work, counted.side)
                        .await
                        .map(|r| r.rows.pr.max(r.rows.prod))
                        .map_err(|e| prdiff_shared::error_chain(&e));
                    reason = prdiff_shared::app::fanout::counted_reason(
                        &reason,
                        counted.side,
                        n.as_ref().map(|n| *n).map_err(String::as_str),
                    );
                }
                if let Some(change) = &m.materialization_change {
                    reason.push_str(" · ");
                    reason.push_str(&change.text());
                }
                report.skipped.push(report::SkippedEntry {
                    name: m.name.clone(),
                    reason,
                })
            }
        }
    }
    report
}
