//! Results → the pull request: the report of a run from its fan-out summary and stored
//! results, the sticky comment and the commit status, the end of a run (failure, deadline,
//! dead letters) and the "waiting for dbt Cloud" note.
//!
//! Reads: the run, its [`Summary`](super::fanout::Summary) and stored outcomes (run store),
//! the configuration. Writes: the sticky comment and commit status (git host), the run's
//! final state (run store).

use super::fanout::{CountSide, StoredOutcome, Summary, counted_reason};
use crate::config::CiConfig;
use crate::githost::{CommitStatus, GitHost, GitHostError};
use crate::outcome::{self, Counts, Ending};
use crate::report::{self, Header, ModelEntry, Report, SkippedEntry};
use crate::run::CiRun;

/// The report of a run from its summary and stored results. A model with no stored result
/// (should not happen once all are counted) is reported as missing rather than dropped.
pub fn build_report(
    config: &CiConfig,
    run: &CiRun,
    summary: &Summary,
    results: &[(String, StoredOutcome)],
) -> Report {
    build_report_missing(
        config,
        run,
        summary,
        results,
        "no result was recorded for this model",
    )
}

/// [`build_report`] for a run that ended before every model had a result: each model
/// without one says `missing` (why it was not diffed).
pub fn build_report_missing(
    config: &CiConfig,
    run: &CiRun,
    summary: &Summary,
    results: &[(String, StoredOutcome)],
    missing: &str,
) -> Report {
    let mut entries = Vec::new();
    for (uid, name) in &summary.models {
        let outcome = match results.iter().find(|(m, _)| m == uid) {
            None => Err(missing.to_owned()),
            Some((_, StoredOutcome::Ok(r))) => Ok((**r).clone()),
            Some((_, StoredOutcome::Error(e))) => Err(e.clone()),
        };
        entries.push(ModelEntry {
            name: name.clone(),
            outcome,
        });
    }
    let skipped = skipped_entries(summary, results);
    let reused = summary
        .models
        .iter()
        .filter_map(|(uid, name)| {
            let r = summary.reused.get(uid)?;
            let sha = r.since.as_str();
            Some((name.clone(), sha.get(..7).unwrap_or(sha).to_owned()))
        })
        .collect();
    Report {
        title: format!("prdiff · {}", config.name),
        header: Some(header(config, run, summary)),
        entries,
        skipped,
        downstream: summary.downstream.clone(),
        metadata: Default::default(),
        materializations: summary.materializations.clone(),
        gates: summary.gates.clone(),
        over_max_models: summary.over_max_models,
        paths: summary.paths.clone(),
        reused,
    }
}

/// The models not diffed, each with its reason; a new or removed model's reason says its
/// rows (or why they could not be counted), and a changed materialization is named.
pub fn skipped_entries(
    summary: &Summary,
    results: &[(String, StoredOutcome)],
) -> Vec<SkippedEntry> {
    summary
        .skipped
        .iter()
        .map(|(name, reason)| {
            let counted = summary.counted.iter().find(|c| &c.name == name);
            let reason = match counted {
                None => reason.clone(),
                Some(c) => {
                    let stored = results.iter().find(|(m, _)| m == &c.unique_id);
                    match stored.map(|(_, outcome)| outcome) {
                        None => reason.clone(),
                        Some(StoredOutcome::Ok(r)) => {
                            let n = match c.side {
                                CountSide::Pr => r.rows.pr,
                                CountSide::Prod => r.rows.prod,
                            };
                            counted_reason(reason, c.side, Ok(n))
                        }
                        Some(StoredOutcome::Error(e)) => counted_reason(reason, c.side, Err(e)),
                    }
                }
            };
            let mut reason = reason;
            if let Some(m) = summary.materializations.get(name) {
                reason.push_str(" · ");
                reason.push_str(&m.text());
            }
            SkippedEntry {
                name: name.clone(),
                reason,
            }
        })
        .collect()
}

/// The report header of a run.
pub fn header(config: &CiConfig, run: &CiRun, summary: &Summary) -> Header {
    Header {
        config_name: config.name.to_string(),
        head_sha: run.head_sha.to_string(),
        base_sha: run.base_sha.to_string(),
        head_url: None,
        base_url: None,
        dbt_run_id: summary.dbt_run_id,
        dbt_run_url: summary.dbt_run_url.clone(),
        base_note: summary.base_note.clone(),
    }
}

/// `body` with the configuration's marker on its first line (added when absent).
pub fn with_marker(config: &CiConfig, body: &str) -> String {
    let marker = config.comment_marker();
    if body.contains(&marker) {
        body.to_owned()
    } else {
        format!("{marker}\n{body}")
    }
}

/// The commit status description of a finished report (≤ 140 characters), by the
/// outcome rule with status reporting on.
pub fn status_description(report: &Report) -> String {
    let rules = outcome::Rules {
        status_reporting: true,
        fail_on_primary_key_issues: false,
    };
    outcome::final_status(&Ending::Reported(Counts::of(report)), rules).description
}

/// `s` escaped like a table cell (no markdown, HTML or mentions) but whole, up to 2000
/// characters: a headline or waiting message says everything it has to.
pub fn escape_text(s: &str) -> String {
    report::escape_text(&crate::githost::shorten(s, 2000))
}

/// `body` (which starts with the report's `## ` heading) with `headline` right under the
/// heading.
fn with_headline(body: &str, headline: &str) -> String {
    match body.split_once('\n') {
        Some((first, rest)) if first.starts_with("## ") => {
            format!("{first}\n\n**{headline}**\n{rest}")
        }
        _ => format!("**{headline}**\n\n{body}"),
    }
}

/// Publishes a finished report: the sticky comment (created once, edited after) under the
/// outcome's headline, and the final commit status by the outcome rule, linking to the
/// comment. When primary-key issues fail the run, the headline names the models.
pub async fn publish_report(
    host: &dyn GitHost,
    config: &CiConfig,
    run: &CiRun,
    report: &Report,
) -> Result<(), GitHostError> {
    let ending = Ending::Reported(Counts::of(report));
    let mut fin = outcome::final_status(&ending, outcome::Rules::of(config));
    let conclusion = outcome::check_conclusion(&ending, outcome::Rules::of(config));
    if config.fail_on_primary_key_issues {
        let models: Vec<&str> = report
            .entries
            .iter()
            .filter(|e| outcome::has_pr_key_issues(e))
            .map(|e| e.name.as_str())
            .collect();
        if !models.is_empty() {
            fin.headline.push_str(&format!(
                " · NULL or duplicate primary keys in the PR: {}",
                models.join(", ")
            ));
        }
    }
    publish_final(host, config, run, &fin, conclusion, Some(report), None).await
}

/// Ends a run that could not complete: the cause in the sticky comment (with what happened
/// to every model when the run got as far as diffing: `partial`) and a final status by the
/// outcome rule — failure when status reporting is on, success "(not blocking)" when off.
/// `link` is the dbt Cloud run's page, shown in the comment.
pub async fn publish_failure(
    host: &dyn GitHost,
    config: &CiConfig,
    run: &CiRun,
    message: &str,
    link: Option<String>,
    partial: Option<&Report>,
) -> Result<(), GitHostError> {
    let ending = Ending::Incomplete(message.to_owned());
    let fin = outcome::final_status(&ending, outcome::Rules::of(config));
    let conclusion = outcome::check_conclusion(&ending, outcome::Rules::of(config));
    publish_final(host, config, run, &fin, conclusion, partial, link).await
}

async fn publish_final(
    host: &dyn GitHost,
    config: &CiConfig,
    run: &CiRun,
    fin: &outcome::FinalStatus,
    conclusion: crate::githost::CheckConclusion,
    report: Option<&Report>,
    link: Option<String>,
) -> Result<(), GitHostError> {
    let link = link.filter(|u| u.starts_with("https://") || u.starts_with("http://"));
    let link_md = link
        .as_deref()
        .map(|u| format!(" ([dbt Cloud run]({u}))"))
        .unwrap_or_default();
    let marker = config.comment_marker();
    let body = match report {
        Some(report) => {
            // Fit GitHub's comment limit (GitLab's is larger) by dropping detail, leaving
            // room for the marker line and the headline.
            let headline = format!("{}{link_md}", escape_text(&fin.headline));
            let limit = report::GITHUB_COMMENT_LIMIT
                - marker.chars().count()
                - headline.chars().count()
                - 16;
            with_marker(
                config,
                &with_headline(&report::markdown_within(report, limit), &headline),
            )
        }
        None => format!(
            "{marker}\n## prdiff · {}\n\n{}{link_md}\n",
            report::escape_cell(config.name.as_str()),
            escape_text(&fin.headline),
        ),
    };
    let comment = host
        .upsert_comment(&run.pr.repository, run.pr.number, &marker, &body)
        .await?;
    host.set_status(
        &run.pr.repository,
        &run.head_sha,
        &CommitStatus {
            state: fin.state,
            context: config.status_context(),
            description: fin.description.clone(),
            target_url: comment.url.or(link),
        },
    )
    .await?;
    // The check run shows the comment's markdown (both fit GitHub's 65 535 characters).
    let summary = body.replacen(&format!("{marker}\n"), "", 1);
    let output = super::checks::output(conclusion, &fin.description, &summary, report);
    super::checks::complete(host, config, run, &output).await;
    Ok(())
}

/// Why [`end_run`] could not finish.
#[derive(Debug, thiserror::Error)]
pub enum EndError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    GitHost(#[from] GitHostError),
}

impl EndError {
    pub fn is_retryable(&self) -> bool {
        match self {
            EndError::Store(e) => e.is_retryable(),
            EndError::GitHost(e) => e.is_retryable(),
        }
    }
}

/// Ends an open run that cannot complete: moves it to `to` (failed, cancelled or
/// superseded) with `why`, then tells the PR — the cause in the sticky comment (with each
/// model's result, or why it has none, when the run got as far as diffing) and the final
/// status by the outcome rule. False (nothing published) when the run was already final:
/// whoever ended it told the PR.
pub async fn end_run(
    runs: &dyn crate::store::RunStore,
    hosts: &dyn crate::githost::GitHosts,
    config: &CiConfig,
    run: &CiRun,
    to: crate::run::RunState,
    why: &str,
    link: Option<String>,
) -> Result<bool, EndError> {
    use crate::store::StoreError;
    let mut current = run.clone();
    let ended = loop {
        if current.state.is_final() {
            return Ok(false);
        }
        match runs
            .transition(&current.id, current.state, to, Some(why))
            .await
        {
            Ok(r) => break r,
            Err(StoreError::Conflict(_)) => match runs.get_run(&run.id).await? {
                Some(r) => current = r,
                None => return Ok(false),
            },
            Err(StoreError::InvalidTransition { .. }) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
    };
    // A fan-out or result that no longer decodes leaves the failure report without its
    // partial results rather than unpublished.
    let partial = match runs.fanout_summary(&ended.id).await {
        Ok(Some(summary)) => match runs.results(&ended.id).await {
            Ok(results) => Some(build_report_missing(
                config,
                &ended,
                &summary,
                &results,
                &format!("not diffed: {why}"),
            )),
            Err(e @ StoreError::Corrupt { .. }) => {
                tracing::warn!(run_id = %ended.id, error = %crate::error_chain(&e), "partial results left out");
                None
            }
            Err(e) => return Err(e.into()),
        },
        Ok(None) => None,
        Err(e @ StoreError::Corrupt { .. }) => {
            tracing::warn!(run_id = %ended.id, error = %crate::error_chain(&e), "partial results left out");
            None
        }
        Err(e) => return Err(e.into()),
    };
    let host = hosts.for_config(config).await?;
    publish_failure(host.as_ref(), config, &ended, why, link, partial.as_ref()).await?;
    Ok(true)
}

/// How long a run may stay open, as the webhook sets it (`PRDIFF_RUN_DEADLINE_SECONDS`).
pub const DEFAULT_RUN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(4 * 3600);

/// The sweep of the scheduled tick: ends every open run created more than `deadline`
/// before `now`, whether or not a message for it is still alive. Returns the runs it
/// ended; one that cannot be ended now is logged and left for the next tick.
pub async fn sweep_deadlines(
    configs: &dyn crate::store::ConfigStore,
    runs: &dyn crate::store::RunStore,
    hosts: &dyn crate::githost::GitHosts,
    deadline: std::time::Duration,
    now: u64,
) -> Result<Vec<crate::run::RunId>, crate::store::StoreError> {
    use crate::run::RunState;
    let mut ended = Vec::new();
    for run in runs.open_runs().await? {
        if run.created_at.saturating_add(deadline.as_secs()) > now {
            continue;
        }
        let secs = deadline.as_secs();
        let limit = if secs.is_multiple_of(3600) {
            format!("{} h", secs / 3600)
        } else {
            format!("{} min", secs / 60)
        };
        let why = match run.state {
            RunState::Diffing => format!("the diff did not finish within {limit}"),
            _ => format!(
                "no finished dbt Cloud run for commit {} within {limit}",
                run.head_sha
                    .as_str()
                    .get(..7)
                    .unwrap_or(run.head_sha.as_str())
            ),
        };
        let result = match configs.get_config(&run.config_id).await? {
            Some(config) => end_run(runs, hosts, &config, &run, RunState::Failed, &why, None).await,
            // No configuration, no PR to tell: the run only stops being open.
            None => runs
                .transition(&run.id, run.state, RunState::Failed, Some(&why))
                .await
                .map(|_| true)
                .map_err(EndError::from),
        };
        match result {
            Ok(true) => {
                tracing::warn!(run_id = %run.id, reason = %why, "run past its deadline ended");
                ended.push(run.id.clone());
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(run_id = %run.id, error = %crate::error_chain(&e), "could not end a run past its deadline")
            }
        }
    }
    Ok(ended)
}

/// What a dead-lettered message did to its run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadLetterOutcome {
    /// The run was ended with a failure naming the cause.
    Ended(crate::run::RunId),
    /// A model's failure was recorded; the run goes on with its other models.
    ModelFailed(crate::run::RunId),
    /// The run was already final, or the message belongs to no run (sync, unreadable).
    Nothing,
}

/// A message that failed too often and waits in a dead-letter queue: the run it belongs
/// to ends with a failure naming `cause`. A diff message fails only its model (recorded as
/// its result); when it was the last one, the run ends and the report shows every model.
/// The message itself stays in the dead-letter queue for replay. Safe to call again.
pub async fn handle_dead_letter(
    configs: &dyn crate::store::ConfigStore,
    runs: &dyn crate::store::RunStore,
    hosts: &dyn crate::githost::GitHosts,
    body: &str,
    cause: &str,
) -> Result<DeadLetterOutcome, EndError> {
    use crate::messages::Message;
    use crate::run::RunState;
    let (run_id, model) = match Message::from_json(body) {
        Ok(Message::Poll(p)) => (p.run_id, None),
        Ok(Message::Diff(d)) => (d.run_id, Some(d.model)),
        Ok(Message::Sync(s)) => {
            // Logged when it was dead-lettered; every tick sees it again, so only debug here.
            tracing::debug!(config = %s.config_id, cause, "a sync message is in the dead-letter queue");
            return Ok(DeadLetterOutcome::Nothing);
        }
        Err(e) => {
            tracing::debug!(error = %e, cause, "an unreadable message is in the dead-letter queue");
            return Ok(DeadLetterOutcome::Nothing);
        }
    };
    let Some(run) = runs.get_run(&run_id).await? else {
        return Ok(DeadLetterOutcome::Nothing);
    };
    if run.state.is_final() {
        return Ok(DeadLetterOutcome::Nothing);
    }
    let Some(config) = configs.get_config(&run.config_id).await? else {
        return Ok(DeadLetterOutcome::Nothing);
    };
    if let Some(model) = model
        && run.state == RunState::Diffing
    {
        // The model's name for the log and the report; its id when the work item is gone or
        // no longer decodes (the failure is still recorded).
        let name = match runs.model_work(&run.id, &model).await {
            Ok(Some(w)) => w.name,
            Ok(None) | Err(crate::store::StoreError::Corrupt { .. }) => model.clone(),
            Err(e) => return Err(e.into()),
        };
        let outcome = StoredOutcome::Error(format!("not diffed: {cause}"));
        let recorded = runs.record_result(&run.id, &model, Some(&outcome)).await?;
        if recorded.remaining > 0 {
            tracing::warn!(run_id = %run.id, model = %name, cause, "dead-lettered model recorded as failed");
            return Ok(DeadLetterOutcome::ModelFailed(run.id));
        }
        let why = format!("the diff of {name} failed repeatedly: {cause}");
        return Ok(
            if end_run(runs, hosts, &config, &run, RunState::Failed, &why, None).await? {
                DeadLetterOutcome::Ended(run.id)
            } else {
                DeadLetterOutcome::Nothing
            },
        );
    }
    let why = format!("polling dbt Cloud failed repeatedly: {cause}");
    Ok(
        if end_run(runs, hosts, &config, &run, RunState::Failed, &why, None).await? {
            DeadLetterOutcome::Ended(run.id)
        } else {
            DeadLetterOutcome::Nothing
        },
    )
}

/// The text of the sticky comment while prdiff waits for dbt Cloud.
pub fn waiting_body(config: &CiConfig, message: &str) -> String {
    format!(
        "{}\n## prdiff · {}\n\n⏳ {}\n",
        config.comment_marker(),
        report::escape_cell(config.name.as_str()),
        escape_text(message),
    )
}

/// The sticky comment while prdiff waits for dbt Cloud.
pub async fn publish_waiting(
    host: &dyn GitHost,
    config: &CiConfig,
    run: &CiRun,
    message: &str,
) -> Result<(), GitHostError> {
    host.upsert_comment(
        &run.pr.repository,
        run.pr.number,
        &config.comment_marker(),
        &waiting_body(config, message),
    )
    .await?;
    Ok(())
}

/// What the scheduled tick needs to end runs: past their deadline, or whose messages
/// wait in a dead-letter queue.
pub struct Lifecycle {
    pub configs: std::sync::Arc<dyn crate::store::ConfigStore>,
    pub runs: std::sync::Arc<dyn crate::store::RunStore>,
    pub hosts: std::sync::Arc<dyn crate::githost::GitHosts>,
    /// The poll, diff and sync dead-letter queues.
    pub dead_letters: Vec<std::sync::Arc<dyn crate::queue::DeadLetters>>,
    /// Open runs older than this are ended (the webhook's run deadline plus a grace).
    pub deadline: std::time::Duration,
}

/// The run sweep of the scheduled tick: ends open runs past the deadline, and the runs
/// of messages in the dead-letter queues (which stay there, for replay).
pub async fn lifecycle_tick(l: &Lifecycle, now: u64) -> serde_json::Value {
    use DeadLetterOutcome;
    let mut ended: Vec<String> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    match sweep_deadlines(
        l.configs.as_ref(),
        l.runs.as_ref(),
        l.hosts.as_ref(),
        l.deadline,
        now,
    )
    .await
    {
        Ok(ids) => ended.extend(ids.iter().map(|i| i.to_string())),
        Err(e) => errors.push(format!("deadline sweep: {}", crate::error_chain(&e))),
    }
    for dlq in &l.dead_letters {
        let bodies = match dlq.peek_dead().await {
            Ok(b) => b,
            Err(e) => {
                errors.push(format!("{} DLQ: {}", dlq.name(), crate::error_chain(&e)));
                continue;
            }
        };
        let cause = format!(
            "its {} message failed too often and is in the dead-letter queue",
            dlq.name()
        );
        for body in bodies {
            match handle_dead_letter(
                l.configs.as_ref(),
                l.runs.as_ref(),
                l.hosts.as_ref(),
                &body,
                &cause,
            )
            .await
            {
                Ok(DeadLetterOutcome::Ended(id)) => ended.push(id.to_string()),
                Ok(_) => {}
                Err(e) => errors.push(format!("{} DLQ: {}", dlq.name(), crate::error_chain(&e))),
            }
        }
    }
    for e in &errors {
        tracing::error!(error = %e, "run sweep");
    }
    serde_json::json!({ "runs_ended": ended, "errors": errors })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::fanout::Counted;
    use crate::diff::DiffResult;
    use crate::sql::Relation;

    #[test]
    fn over_max_models_no_model_is_diffed_and_every_one_is_listed() {
        use crate::app::fanout::{Counted, apply_max_models};
        let summary = || Summary {
            models: vec![
                ("model.p.a".into(), "a".into()),
                ("model.p.b".into(), "b".into()),
            ],
            skipped: vec![("fresh".into(), "new model".into())],
            counted: vec![Counted {
                unique_id: "model.p.fresh".into(),
                name: "fresh".into(),
                side: CountSide::Pr,
            }],
            ..Default::default()
        };
        let item = |name: &str| {
            let rel = Relation::parse(&format!("analytics.{name}")).unwrap();
            crate::run::WorkItem::from_request(
                name,
                &crate::diff::DiffRequest::new(rel.clone(), rel, vec![]),
            )
        };
        let work = || {
            vec![
                ("model.p.a".to_owned(), item("a")),
                ("model.p.b".to_owned(), item("b")),
                ("model.p.fresh".to_owned(), item("fresh")),
            ]
        };
        let config = |max: &str| {
            crate::config::tests::stored_example(&[(
                "max_models = 25",
                &format!("max_models = {max}"),
            )])
        };
        for max in ["2", "3"] {
            let (mut s, mut w) = (summary(), work());
            apply_max_models(&config(max), &mut s, &mut w);
            assert_eq!((s, w), (summary(), work()), "max_models = {max}");
        }
        let (mut s, mut w) = (summary(), work());
        apply_max_models(&config("1"), &mut s, &mut w);
        assert!(w.is_empty());
        assert!(s.models.is_empty() && s.counted.is_empty());
        assert_eq!(
            s.skipped,
            [
                ("a".to_owned(), "over max_models (1)".to_owned()),
                ("b".to_owned(), "over max_models (1)".to_owned()),
                ("fresh".to_owned(), "new model".to_owned()),
            ]
        );
        let report = Report {
            over_max_models: s.over_max_models,
            ..Default::default()
        };
        let fin = outcome::final_status(
            &Ending::Reported(Counts::of(&report)),
            outcome::Rules::of(&config("1")),
        );
        assert_eq!(fin.state, crate::githost::StatusState::Success);
        assert_eq!(
            fin.description,
            "prdiff: 2 models to diff, over max_models 1: not diffed"
        );
        // Zero is refused when the configuration is read.
        let zero = "max_models = 0";
        let text = crate::config::tests::EXAMPLE.replace("max_models = 25", zero);
        assert!(crate::config::ConfigFile::parse(&text, &[]).is_err());
    }

    #[test]
    fn text_is_escaped_whole() {
        let long = format!("{} | <b>@team</b>", "word ".repeat(30));
        let e = escape_text(&long);
        assert!(e.ends_with("\\| &lt;b&gt;&#64;team&lt;/b&gt;"), "{e}");
        assert!(!e.contains('…'));
        assert_eq!(escape_text(&"x".repeat(3000)).chars().count(), 2000);
    }

    #[test]
    fn new_and_removed_models_get_their_row_counts_and_materialization_changes_are_named() {
        let rel = Relation::parse("dbt_cloud_pr_1_2.fresh").unwrap();
        let count = |rows: crate::diff::PerSide| {
            StoredOutcome::Ok(Box::new(DiffResult::counted(&rel, &rel, rows)))
        };
        let summary = Summary {
            skipped: vec![
                ("fresh".into(), "new model".into()),
                ("gone".into(), "removed in this PR".into()),
                ("broken".into(), "new model".into()),
                ("view_now".into(), "ephemeral".into()),
            ],
            counted: vec![
                Counted {
                    unique_id: "model.p.fresh".into(),
                    name: "fresh".into(),
                    side: CountSide::Pr,
                },
                Counted {
                    unique_id: "model.p.gone".into(),
                    name: "gone".into(),
                    side: CountSide::Prod,
                },
                Counted {
                    unique_id: "model.p.broken".into(),
                    name: "broken".into(),
                    side: CountSide::Pr,
                },
            ],
            materializations: [(
                "view_now".to_owned(),
                crate::plan::MaterializationChange {
                    prod: "table".into(),
                    pr: "ephemeral".into(),
                },
            )]
            .into(),
            ..Default::default()
        };
        let results = vec![
            (
                "model.p.fresh".to_owned(),
                count(crate::diff::PerSide { prod: 0, pr: 1234 }),
            ),
            (
                "model.p.gone".to_owned(),
                count(crate::diff::PerSide { prod: 56, pr: 0 }),
            ),
            (
                "model.p.broken".to_owned(),
                StoredOutcome::Error("relation missing".into()),
            ),
        ];
        let reasons: Vec<String> = skipped_entries(&summary, &results)
            .into_iter()
            .map(|s| s.reason)
            .collect();
        assert_eq!(
            reasons,
            [
                "new model · 1,234 rows in the PR",
                "removed in this PR · 56 rows in production",
                "new model · rows in the PR not counted: relation missing",
                "ephemeral · materialized as `table` in production and as `ephemeral` in this PR",
            ]
        );
    }
}
