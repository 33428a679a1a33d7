//! `prdiff demo`: the whole diff path on an embedded SQLite example, no network, no setup.
//!
//! The example is `examples/demo_shop`, built twice by real dbt (`scripts/build_demo.sh`):
//! as production and as a PR build. Its relations are embedded as SQL and loaded into two
//! SQLite databases in a temporary directory, attached as the schemas dbt used (`prod` and
//! `dbt_cloud_pr_4242_17`).

use prdiff_shared::diff::from_plan::PrSchemas;
use std::path::Path;

use prdiff_shared::manifest::{Manifest, RunResults};
use prdiff_shared::plan::{self, PlanInputs, PlanSettings};
use prdiff_shared::warehouse::sqlite::run_script;
use prdiff_shared::warehouse::{self, ConnectOptions, WarehouseUrl};

use crate::diff::Format;
use crate::{CliError, CliResult};

pub const PROD_SQL: &str = include_str!("../demo/prod.sql");
pub const PR_SQL: &str = include_str!("../demo/pr.sql");
pub const PROD_MANIFEST: &str = include_str!("../demo/prod_manifest.json");
pub const PR_MANIFEST: &str = include_str!("../demo/pr_manifest.json");
pub const PR_RUN_RESULTS: &str = include_str!("../demo/pr_run_results.json");
pub const PROD_SCHEMA: &str = "prod";
pub const PR_SCHEMA: &str = "dbt_cloud_pr_4242_17";

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Markdown)]
    pub format: Format,
    /// Keep the demo warehouse in this directory instead of a temporary one.
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
}

/// Loads the example into SQLite under `dir` and returns the warehouse URL.
pub fn build_warehouse(dir: &std::path::Path) -> anyhow::Result<WarehouseUrl> {
    let prod = dir.join("prod.db");
    let pr = dir.join("pr.db");
    for p in [&prod, &pr, &dir.join("main.db")] {
        if p.exists() {
            std::fs::remove_file(p)?;
        }
    }
    run_script(&prod, PROD_SQL)?;
    run_script(&pr, PR_SQL)?;
    Ok(WarehouseUrl::Sqlite {
        path: dir.join("main.db"),
        attach: vec![(PROD_SCHEMA.to_owned(), prod), (PR_SCHEMA.to_owned(), pr)],
    })
}

pub async fn run(args: DemoArgs) -> CliResult {
    run_inner(&args)
        .await
        .map_err(|e| CliError::Failed(crate::error_text(&e)))
}

async fn run_inner(args: &DemoArgs) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => tmp.path().to_path_buf(),
    };
    let url = build_warehouse(&dir)?;
    let wh = warehouse::connect(&url, &ConnectOptions::default()).await?;
    let prod = Manifest::from_slice(
        PROD_MANIFEST.as_bytes(),
        Path::new("demo/prod_manifest.json"),
    )?;
    let pr = Manifest::from_slice(PR_MANIFEST.as_bytes(), Path::new("demo/pr_manifest.json"))?;
    let rr = RunResults::from_slice(
        PR_RUN_RESULTS.as_bytes(),
        Path::new("demo/pr_run_results.json"),
    )?;
    // Slim CI with downstream models, as a CI configuration would set it.
    let settings = PlanSettings {
        slim_ci: true,
        downstream: true,
        ..Default::default()
    };
    let plan = plan::plan(&PlanInputs {
        prod: &prod,
        pr: &pr,
        pr_run_results: Some(&rr),
        settings: &settings,
    });
    let report = crate::diff::diff_plan(
        wh.as_ref(),
        &plan,
        &pr,
        None,
        Some(&PrSchemas::new(PR_SCHEMA)),
        "prdiff demo: demo_shop, PR #17 against production",
    )
    .await;
    crate::diff::print(args.format, &report)?;
    if args.dir.is_some() {
        eprint!("{}", kept_note(&dir));
    }
    Ok(())
}

/// Where `--dir` kept the demo warehouse, and the `prdiff diff` that reads it again.
fn kept_note(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "prdiff demo: the demo warehouse is in {d}: prod.db (schema {PROD_SCHEMA}) and pr.db \
         (schema {PR_SCHEMA}). Diff one of its models again with:\n  \
         prdiff diff --warehouse 'sqlite:{d}/main.db?attach={PROD_SCHEMA}={d}/prod.db&attach={PR_SCHEMA}={d}/pr.db' \
         --prod {PROD_SCHEMA}.orders --pr {PR_SCHEMA}.orders --pk order_id\n"
    )
}
