//! The GitHub check run of a configuration: started with the pending status, completed
//! with the final one — conclusion by the outcome rule, the status description as title,
//! the report as summary, and one annotation per diffed model on its SQL file.
//!
//! A check run is extra: when it cannot be created or completed (the App lacks
//! `checks:write`, GitHub answers 403) the failure is logged with GitHub's message and the
//! run goes on with its status and comment.

use crate::config::CiConfig;
use crate::githost::{
    AnnotationLevel, CheckAnnotation, CheckConclusion, CheckOutput, GitHost, shorten,
};
use crate::report::{Report, format_count};
use crate::run::CiRun;

/// The check run's name: the status context (`prdiff/<configuration>`), so two
/// configurations of one repository keep their own check runs.
pub fn check_name(config: &CiConfig) -> String {
    config.status_context()
}

/// Starts the run's check run (`in_progress`) when the configuration has `github_checks`.
pub async fn start(
    host: &dyn GitHost,
    config: &CiConfig,
    run_repo: &crate::config::RepoName,
    sha: &crate::config::CommitSha,
) {
    if !config.github_checks {
        return;
    }
    if let Err(e) = host
        .start_check_run(run_repo, sha, &check_name(config))
        .await
    {
        tracing::warn!(config = %config.name, error = %crate::error_chain(&e), "could not create the GitHub check run; the status and comment still report the run");
    }
}

/// Completes the run's check run when the configuration has `github_checks`.
pub async fn complete(host: &dyn GitHost, config: &CiConfig, run: &CiRun, output: &CheckOutput) {
    if !config.github_checks {
        return;
    }
    if let Err(e) = host
        .complete_check_run(
            &run.pr.repository,
            &run.head_sha,
            &check_name(config),
            output,
        )
        .await
    {
        tracing::warn!(config = %config.name, run_id = %run.id, error = %crate::error_chain(&e), "could not complete the GitHub check run; the status and comment still report the run");
    }
}

/// One annotation per model of the report whose file is known: `notice` unchanged,
/// `warning` with differences, `failure` when the diff failed or a merge gate failed.
pub fn annotations(report: &Report) -> Vec<CheckAnnotation> {
    let mut out = Vec::new();
    for e in &report.entries {
        let Some(path) = report.paths.get(&e.name) else {
            continue;
        };
        let (level, title, message) = match &e.outcome {
            Err(msg) => (
                AnnotationLevel::Failure,
                format!("{}: diff failed", e.name),
                shorten(msg.lines().next().unwrap_or("").trim(), 500),
            ),
            Ok(r) => {
                let failed_gates = report.gates.get(&e.name).map_or(0, |p| {
                    crate::gates::evaluate_all(p, r)
                        .iter()
                        .filter(|o| !o.passed)
                        .count()
                });
                let mut parts = vec![format!(
                    "rows {} → {}",
                    format_count(r.rows.prod),
                    format_count(r.rows.pr)
                )];
                if let Some(x) = r.exclusive {
                    parts.push(format!("only in production {}", format_count(x.prod)));
                    parts.push(format!("only in PR {}", format_count(x.pr)));
                }
                if let Some(c) = r.changed {
                    parts.push(format!("changed {}", format_count(c)));
                }
                let s = &r.schema;
                let columns = s.added.len() + s.removed.len() + s.type_changed.len();
                if columns > 0 {
                    parts.push(format!("{columns} column changes"));
                }
                if failed_gates > 0 {
                    parts.push(format!("{failed_gates} gates failed"));
                }
                let message = parts.join(" · ");
                if failed_gates > 0 {
                    let title = format!("{}: {failed_gates} merge gates failed", e.name);
                    (AnnotationLevel::Failure, title, message)
                } else if r.has_differences() {
                    let title = format!("{}: differences", e.name);
                    (AnnotationLevel::Warning, title, message)
                } else {
                    let title = format!("{}: no differences", e.name);
                    (AnnotationLevel::Notice, title, message)
                }
            }
        };
        out.push(CheckAnnotation {
            path: path.clone(),
            level,
            title,
            message,
        });
    }
    out
}

/// The completed check run: `summary` is the comment's markdown (without its marker).
pub fn output(
    conclusion: CheckConclusion,
    description: &str,
    summary: &str,
    report: Option<&Report>,
) -> CheckOutput {
    CheckOutput {
        conclusion,
        title: description.to_owned(),
        summary: summary.to_owned(),
        annotations: report.map(annotations).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::{DiffResult, PerSide};
    use crate::report::ModelEntry;
    use crate::sql::Relation;

    #[test]
    fn each_model_with_a_file_gets_one_annotation_at_its_level() {
        let rel = Relation::parse("analytics.orders").unwrap();
        let counted = |prod, pr| Ok(DiffResult::counted(&rel, &rel, PerSide { prod, pr }));
        let entry = |name: &str, outcome| ModelEntry {
            name: name.into(),
            outcome,
        };
        let report = Report {
            entries: vec![
                entry("same", counted(5, 5)),
                entry("grew", counted(1000, 1234)),
                entry("broken", Err("relation missing\nmore detail".into())),
                entry("nowhere", counted(1, 2)),
            ],
            paths: ["same", "grew", "broken"]
                .iter()
                .map(|n| (n.to_string(), format!("models/{n}.sql")))
                .collect(),
            ..Default::default()
        };
        let got: Vec<(String, AnnotationLevel, String, String)> = annotations(&report)
            .into_iter()
            .map(|a| (a.path, a.level, a.title, a.message))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "models/same.sql".to_owned(),
                    AnnotationLevel::Notice,
                    "same: no differences".to_owned(),
                    "rows 5 → 5".to_owned()
                ),
                (
                    "models/grew.sql".to_owned(),
                    AnnotationLevel::Warning,
                    "grew: differences".to_owned(),
                    "rows 1,000 → 1,234".to_owned()
                ),
                (
                    "models/broken.sql".to_owned(),
                    AnnotationLevel::Failure,
                    "broken: diff failed".to_owned(),
                    "relation missing".to_owned()
                ),
            ]
        );
    }
}
