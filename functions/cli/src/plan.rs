//! `prdiff plan`: which models a manifest pair would diff, and why — without a warehouse.

use std::io::Write;
use std::path::PathBuf;

use prdiff_shared::manifest::{ArtifactError, Manifest, RunResults};
use prdiff_shared::plan::{self, Action, IgnoreColumns, Plan, PlanInputs, PlanSettings};

use crate::CliError;
#[cfg(test)]
use crate::exit;

#[derive(clap::Args)]
pub struct PlanArgs {
    /// The production manifest.json (what the PR is compared with).
    #[arg(long, value_name = "FILE")]
    pub prod_manifest: PathBuf,
    /// The PR run's manifest.json.
    #[arg(long, value_name = "FILE")]
    pub pr_manifest: PathBuf,
    /// The PR run's run_results.json: only models it built successfully are diffed.
    /// Without it every planned model is assumed built.
    #[arg(long, value_name = "FILE")]
    pub pr_run_results: Option<PathBuf>,
    /// Diff only modified models (dbt's state:modified); without it, every model the PR run built.
    #[arg(long)]
    pub slim_ci: bool,
    /// With --slim-ci, also diff models downstream of modified ones (state:modified+).
    #[arg(long)]
    pub downstream: bool,
    /// The column meta key / column tag that marks primary key columns.
    #[arg(long, value_name = "TAG", default_value = "primary-key")]
    pub pk_tag: String,
    /// Columns to ignore in every model, .gitignore syntax, one pattern per line.
    #[arg(long, value_name = "FILE")]
    pub ignore_columns: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One line per model, for a terminal.
    Text,
    /// The plan as JSON (`"version": 1`).
    Json,
}

pub async fn run(args: PlanArgs) -> crate::CliResult {
    // Planning is CPU-bound work over files; it would block the runtime's worker.
    match tokio::task::spawn_blocking(move || plan_files(&args).map(|plan| (plan, args.format)))
        .await
    {
        Ok(Ok((plan, format))) => {
            print(&plan, format).map_err(|e| CliError::failed(&e).context("cannot write the plan"))
        }
        Ok(Err(e)) => Err(CliError::Usage(chain(&*e))),
        Err(e) => Err(CliError::failed(&e).context("internal error")),
    }
}

/// Loads the artifacts one at a time (each file's bytes are released before the next is
/// read, which keeps peak memory near one manifest's size) and plans.
fn plan_files(args: &PlanArgs) -> Result<Plan, Box<dyn std::error::Error + Send + Sync>> {
    let ignore_columns = match &args.ignore_columns {
        None => IgnoreColumns::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ArtifactError::Read {
                path: path.clone(),
                source,
            })?;
            IgnoreColumns::parse(&text).map_err(|e| format!("{}: {}", path.display(), chain(&e)))?
        }
    };
    // The two manifests parse on two threads: wall time is the slower of the two, and
    // memory stays at the two typed manifests because each file is streamed.
    let (prod, pr) = std::thread::scope(|scope| {
        let prod = scope.spawn(|| Manifest::load(&args.prod_manifest));
        let pr = Manifest::load(&args.pr_manifest);
        let prod = prod.join().expect("manifest parser thread panicked");
        (prod, pr)
    });
    let (prod, pr) = (prod?, pr?);
    let run_results = args
        .pr_run_results
        .as_deref()
        .map(RunResults::load)
        .transpose()?;
    let settings = PlanSettings {
        slim_ci: args.slim_ci,
        downstream: args.downstream,
        primary_key_tag: args.pk_tag.clone(),
        ignore_columns,
    };
    let plan = plan::plan(&PlanInputs {
        prod: &prod,
        pr: &pr,
        pr_run_results: run_results.as_ref(),
        settings: &settings,
    });
    // The process exits right after printing; freeing two 10 000-node manifests node by
    // node would add ~0.1 s for nothing.
    std::mem::forget((prod, pr));
    Ok(plan)
}

use prdiff_shared::error_chain as chain;

fn print(plan: &Plan, format: Format) -> std::io::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, plan)?;
            writeln!(out)?;
        }
        Format::Text => write_text(&mut out, plan)?,
    }
    out.flush()
}

/// The human form: one block per model, diffed ones first in plan order.
pub fn write_text(out: &mut impl Write, plan: &Plan) -> std::io::Result<()> {
    let diffed = plan
        .models
        .iter()
        .filter(|m| m.action == Action::Diff)
        .count();
    writeln!(
        out,
        "{} model(s) to diff, {} skipped (slim CI {}, downstream {})",
        diffed,
        plan.models.len() - diffed,
        on_off(plan.slim_ci),
        on_off(plan.downstream)
    )?;
    for m in &plan.models {
        let reasons: Vec<String> = m.reasons.iter().map(json_name).collect();
        match (m.action, m.skip_reason) {
            (Action::Skip, Some(skip)) => writeln!(
                out,
                "skip  {}  [{}]  {}",
                m.unique_id,
                reasons.join(", "),
                json_name(&skip)
            )?,
            _ => writeln!(out, "diff  {}  [{}]", m.unique_id, reasons.join(", "))?,
        }
        if let (Some(prod), Some(pr)) = (&m.prod_relation, &m.pr_relation) {
            writeln!(out, "      {prod} -> {pr}")?;
        }
        if m.action == Action::Diff {
            match m.primary_key_source {
                Some(source) => writeln!(
                    out,
                    "      key: {} ({})",
                    m.primary_key.join(", "),
                    json_name(&source)
                )?,
                None => writeln!(out, "      key: none (schema, counts and profiles only)")?,
            }
            if m.options != Default::default() {
                let options = serde_json::to_string(&m.options).unwrap_or_default();
                writeln!(out, "      options: {options}")?;
            }
        }
    }
    if !plan.modified_sources.is_empty() {
        writeln!(
            out,
            "modified sources (not diffed; what reads them is downstream): {}",
            plan.modified_sources.join(", ")
        )?;
    }
    if !plan.warnings.is_empty() {
        writeln!(out, "warnings:")?;
        for w in &plan.warnings {
            writeln!(out, "  - {w}")?;
        }
    }
    Ok(())
}

fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

/// The snake_case name a unit enum variant has in the JSON output.
fn json_name(v: &impl serde::Serialize) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::from("?"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/plan")
    }

    fn args(prod: PathBuf, pr: PathBuf) -> PlanArgs {
        PlanArgs {
            prod_manifest: prod,
            pr_manifest: pr,
            pr_run_results: None,
            slim_ci: true,
            downstream: false,
            pk_tag: "primary-key".into(),
            ignore_columns: None,
            format: Format::Json,
        }
    }

    #[tokio::test]
    async fn a_real_manifest_pair_plans_with_exit_code_zero() {
        let f = fixtures();
        let mut a = args(f.join("prod/manifest.json"), f.join("body/manifest.json"));
        a.pr_run_results = Some(f.join("body/run_results.json"));
        assert_eq!(run(a).await, Ok(()));
    }

    #[tokio::test]
    async fn a_run_results_file_given_as_manifest_exits_2_naming_the_file() {
        let f = fixtures();
        let a = args(
            f.join("prod/run_results.json"),
            f.join("body/manifest.json"),
        );
        let err = plan_files(&a).expect_err("refused").to_string();
        assert!(
            err.contains("prod/run_results.json") && err.contains("not a dbt manifest.json"),
            "{err}"
        );
        assert_eq!(run(a).await.unwrap_err().code(), exit::USAGE);
    }

    #[tokio::test]
    async fn a_missing_file_exits_2() {
        let f = fixtures();
        let a = args(f.join("prod/nope.json"), f.join("body/manifest.json"));
        assert_eq!(run(a).await.unwrap_err().code(), exit::USAGE);
    }

    #[test]
    fn text_output_lists_each_model_with_reasons_relations_and_key() {
        let f = fixtures();
        let a = args(f.join("prod/manifest.json"), f.join("body/manifest.json"));
        let plan = plan_files(&a).unwrap();
        let mut buf = Vec::new();
        write_text(&mut buf, &plan).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert!(
            text.contains("diff  model.plan_project.stg_orders  [body]"),
            "{text}"
        );
        assert!(
            text.contains(
                "warehouse.analytics.stg_orders -> warehouse.dbt_cloud_pr_4242_1.stg_orders"
            ),
            "{text}"
        );
        assert!(text.contains("key: order_id (unique_test)"), "{text}");
    }
}
