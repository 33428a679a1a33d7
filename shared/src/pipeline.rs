//! What the poller and the diff runner share: the fan-out they leave in the run store, the
//! report they assemble from it, and how they talk to the pull request (sticky comment,
//! commit status).
//!
//! ```text
//! poller: dbt Cloud run done → plan → FanOut { summary, one WorkItem per model } → diff queue
//! diff runner: WorkItem → diff → StoredOutcome (record_result) → last one: report → PR
//! ```
//!
//! Everything stored is versioned-by-shape JSON owned here; the store keeps it opaque.

use serde::{Deserialize, Serialize};

use crate::config::{CiConfig, DataSource, DataSourceKind};
use crate::diff::{DiffRequest, DiffResult, SamplingSettings};
use crate::githost::{CommitStatus, GitHost, GitHostError, StatusState};
use crate::report::{self, Header, ModelEntry, Report, SkippedEntry};
use crate::sql::Relation;
use crate::store::CiRun;
use crate::warehouse::WarehouseUrl;

/// What the report needs besides the per-model results. Written once by the poller.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub dbt_run_id: Option<u64>,
    pub dbt_run_url: Option<String>,
    /// The production manifest is not from the base commit: said in the report.
    pub base_note: Option<String>,
    /// Models to diff in report order: `(unique_id, name)`.
    pub models: Vec<(String, String)>,
    /// Models planned but not diffed: `(name, reason)`.
    pub skipped: Vec<(String, String)>,
    /// Names of models diffed because they are downstream of a change.
    pub downstream: Vec<String>,
    /// Plan warnings, shown as notes.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Models new in the PR or removed by it whose rows are counted (their work items
    /// count one relation): the count joins their line in the list of models not diffed.
    #[serde(default)]
    pub counted: Vec<Counted>,
    /// Models materialized differently in production and the PR, by name.
    #[serde(default)]
    pub materializations: std::collections::BTreeMap<String, crate::plan::MaterializationChange>,
}

/// A model whose rows are counted instead of diffed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counted {
    pub unique_id: String,
    pub name: String,
    pub side: CountSide,
}

/// Which relation a count reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CountSide {
    /// A model new in the PR: its PR relation.
    Pr,
    /// A model the PR removes: its production relation.
    Prod,
}

/// The work item that counts a new or removed model's rows, or `None` when the plan skips
/// the model for another reason or has no relation to count. A new model's relation must
/// be in the PR's schemas (`pr_schemas`), like every relation a PR names.
pub fn count_item(
    m: &crate::plan::PlannedModel,
    pr_schemas: Option<&crate::diff::from_plan::PrSchemas>,
) -> Option<(WorkItem, Counted)> {
    use crate::plan::SkipReason;
    let (side, rel) = match m.skip_reason? {
        SkipReason::NewModel => (CountSide::Pr, m.pr_relation.clone()?),
        SkipReason::Removed => (CountSide::Prod, m.prod_relation.clone()?),
        _ => return None,
    };
    if side == CountSide::Pr && pr_schemas.is_some_and(|s| !s.contains(&rel)) {
        return None;
    }
    let item = WorkItem {
        name: m.name.clone(),
        prod: rel.clone(),
        pr: rel,
        primary_key: Vec::new(),
        filter: None,
        include_columns: Vec::new(),
        exclude_columns: Vec::new(),
        masked_columns: Vec::new(),
        count: Some(side),
    };
    let counted = Counted {
        unique_id: m.unique_id.clone(),
        name: m.name.clone(),
        side,
    };
    Some((item, counted))
}

/// A counted model's line: the skip reason and its rows (or why they could not be counted).
pub fn counted_reason(reason: &str, side: CountSide, outcome: Result<u64, &str>) -> String {
    let side = match side {
        CountSide::Pr => "in the PR",
        CountSide::Prod => "in production",
    };
    match outcome {
        Ok(n) => format!("{reason} · {} rows {side}", report::format_count(n)),
        Err(e) => format!("{reason} · rows {side} not counted: {e}"),
    }
}

/// One model's diff, as the diff runner needs it (a [`DiffRequest`] without the closures).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkItem {
    pub name: String,
    pub prod: Relation,
    pub pr: Relation,
    pub primary_key: Vec<String>,
    pub filter: Option<String>,
    pub include_columns: Vec<String>,
    pub exclude_columns: Vec<String>,
    pub masked_columns: Vec<String>,
    /// Count this side's relation (`prod` and `pr` are then the same relation) instead of
    /// diffing: a model new in the PR or removed by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<CountSide>,
}

impl WorkItem {
    pub fn from_request(name: &str, req: &DiffRequest) -> Self {
        Self {
            name: name.to_owned(),
            prod: req.prod.clone(),
            pr: req.pr.clone(),
            primary_key: req.primary_key.clone(),
            filter: req.filter.clone(),
            include_columns: req.include_columns.clone(),
            exclude_columns: req.exclude_columns.clone(),
            masked_columns: req.masked_columns.clone(),
            count: None,
        }
    }

    /// How a CI model gets a key: what the planner reads, with the configuration's key tag.
    pub fn no_key_hint(primary_key_tag: &str) -> String {
        format!(
            "To match rows, mark the key column(s) with the primary key tag `{tag}` (column \
             `meta: {{{tag}: true}}` or `tags: [{tag}]`), name them in the model's \
             `meta: {{primary_key: <column>}}`, or add a `unique` test.",
            tag = primary_key_tag
        )
    }

    /// The request, with the configuration's sampling.
    pub fn request(&self, sampling: Option<SamplingSettings>) -> DiffRequest {
        let mut req =
            DiffRequest::new(self.prod.clone(), self.pr.clone(), self.primary_key.clone());
        req.filter = self.filter.clone();
        req.include_columns = self.include_columns.clone();
        req.exclude_columns = self.exclude_columns.clone();
        req.masked_columns = self.masked_columns.clone();
        req.sampling = sampling;
        req
    }
}

/// A model's stored outcome: its diff, or why it has none (a row of the report).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoredOutcome {
    Ok(Box<DiffResult>),
    Error(String),
}

/// The configuration's sampling for a data source of this kind.
pub fn sampling_for(config: &CiConfig, kind: DataSourceKind) -> Option<SamplingSettings> {
    let s = &config.sampling;
    SamplingSettings::new(s.threshold_for(kind), s.tolerance.get(), s.confidence.get()).ok()
}

/// Why a data source cannot be connected to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("data source {source_id}: {problem}")]
pub struct DataSourceError {
    pub source_id: String,
    pub problem: String,
}

/// The warehouse URL of a data source, with its secret (the password) filled in.
pub fn warehouse_url(
    source: &DataSource,
    secret: Option<String>,
) -> Result<WarehouseUrl, DataSourceError> {
    let err = |problem: String| DataSourceError {
        source_id: source.id.to_string(),
        problem,
    };
    let get = |k: &str| source.connection.get(k).map(String::as_str);
    match source.kind {
        DataSourceKind::Postgres | DataSourceKind::Redshift => {
            let redshift = source.kind == DataSourceKind::Redshift;
            let host = get("host").ok_or_else(|| err("connection has no `host`".into()))?;
            let port = match get("port") {
                None if redshift => 5439,
                None => 5432,
                Some(p) => p
                    .parse()
                    .map_err(|_| err(format!("port {p:?} is not a number")))?,
            };
            Ok(WarehouseUrl::Postgres {
                user: get("user")
                    .ok_or_else(|| err("connection has no `user`".into()))?
                    .to_owned(),
                password: secret.map(crate::warehouse::Password::new),
                host: host.to_owned(),
                port,
                database: get("database")
                    .or_else(|| get("dbname"))
                    .ok_or_else(|| err("connection has no `database`".into()))?
                    .to_owned(),
                options: get("options").map(str::to_owned),
                tls: crate::warehouse::Tls {
                    mode: match get("sslmode") {
                        None if redshift => crate::warehouse::SslMode::VerifyFull,
                        None => crate::warehouse::SslMode::Prefer,
                        Some(m) => crate::warehouse::SslMode::parse(m).ok_or_else(|| {
                            err(format!(
                                "sslmode {m:?} is not one of disable, prefer, require, verify-ca, verify-full"
                            ))
                        })?,
                    },
                    root_cert: get("sslrootcert").map(std::path::PathBuf::from),
                },
                redshift,
                iam: match get("iam") {
                    Some(mode) if redshift => Some(
                        crate::warehouse::RedshiftIam::from_settings(
                            mode,
                            get("cluster_id").or_else(|| get("workgroup")),
                            get("region"),
                            host,
                        )
                        .map_err(err)?,
                    ),
                    Some(_) => return Err(err("`iam` is for redshift data sources only".into())),
                    None => None,
                },
            })
        }
        DataSourceKind::Sqlite => {
            let path = get("path").ok_or_else(|| err("connection has no `path`".into()))?;
            WarehouseUrl::parse(&format!("sqlite:{path}"), None).map_err(|e| err(e.to_string()))
        }
        DataSourceKind::Snowflake => snowflake_target(source, secret).map_err(err),
        other => Err(err(format!(
            "no warehouse driver for {} in this build",
            other.as_str()
        ))),
    }
}

/// The connection keys a Snowflake data source may have.
pub const SNOWFLAKE_CONNECTION_KEYS: &[&str] = &[
    "account",
    "user",
    "database",
    "warehouse",
    "role",
    "schema",
    "host",
    "port",
    "protocol",
];

/// A Snowflake data source's login. The secret is the password, or the user's PEM private
/// key (key-pair authentication) when it starts with `-----BEGIN`.
fn snowflake_target(source: &DataSource, secret: Option<String>) -> Result<WarehouseUrl, String> {
    use crate::warehouse::{Password, SnowflakeAuth, SnowflakeTarget, snowflake_default_host};
    let c = &source.connection;
    if let Some(k) = c
        .keys()
        .find(|k| !SNOWFLAKE_CONNECTION_KEYS.contains(&k.as_str()))
    {
        return Err(format!(
            "unknown connection key `{k}` for snowflake (expected {})",
            SNOWFLAKE_CONNECTION_KEYS.join(", ")
        ));
    }
    let get = |k: &str| c.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let need = |k: &str| get(k).ok_or_else(|| format!("connection has no `{k}`"));
    let account = need("account")?.to_owned();
    let protocol = match get("protocol") {
        None | Some("https") => "https",
        Some("http") => "http",
        Some(p) => return Err(format!("protocol {p:?} is not https or http")),
    };
    let port = match get("port") {
        None if protocol == "http" => 80,
        None => 443,
        Some(p) => p
            .parse()
            .map_err(|_| format!("port {p:?} is not a number"))?,
    };
    let secret = secret
        .filter(|s| !s.trim().is_empty())
        .ok_or("a snowflake data source needs a secret (the password or a PEM private key)")?;
    let auth = if secret.trim_start().starts_with("-----BEGIN") {
        SnowflakeAuth::PrivateKeyPem(Password::new(secret))
    } else {
        SnowflakeAuth::Password(Password::new(secret))
    };
    Ok(WarehouseUrl::Snowflake(SnowflakeTarget {
        host: get("host")
            .map(str::to_owned)
            .unwrap_or_else(|| snowflake_default_host(&account)),
        port,
        protocol: protocol.to_owned(),
        user: need("user")?.to_owned(),
        database: need("database")?.to_owned(),
        warehouse: get("warehouse").map(str::to_owned),
        role: get("role").map(str::to_owned),
        schema: get("schema").map(str::to_owned),
        auth,
        account,
    }))
}

/// Problems with a data source's connection settings that apply and check can catch
/// before anything is stored or connected: Snowflake keys that are missing or unknown. (A
/// kind this build has no driver for is refused by apply on its own.)
pub fn data_source_problems(source: &DataSource) -> Vec<String> {
    match source.kind {
        // A stand-in secret: only the connection keys are checked here.
        DataSourceKind::Snowflake => match snowflake_target(source, Some("-".into())) {
            Ok(_) => Vec::new(),
            Err(e) => vec![e],
        },
        _ => Vec::new(),
    }
}

/// The report of a run from its summary and stored results. A model with no stored result
/// (should not happen once all are counted) is reported as missing rather than dropped.
pub fn build_report(
    config: &CiConfig,
    run: &CiRun,
    summary: &Summary,
    results: &[(String, String)],
) -> Report {
    let mut entries = Vec::new();
    for (uid, name) in &summary.models {
        let outcome = match results.iter().find(|(m, _)| m == uid) {
            None => Err("no result was recorded for this model".to_owned()),
            Some((_, body)) => match serde_json::from_str::<StoredOutcome>(body) {
                Ok(StoredOutcome::Ok(r)) => Ok(*r),
                Ok(StoredOutcome::Error(e)) => Err(e),
                Err(e) => Err(format!("stored result is unreadable: {e}")),
            },
        };
        entries.push(ModelEntry {
            name: name.clone(),
            outcome,
        });
    }
    let skipped = skipped_entries(summary, results);
    Report {
        title: format!("prdiff · {}", config.name),
        header: Some(header(config, run, summary)),
        entries,
        skipped,
        downstream: summary.downstream.clone(),
        metadata: Default::default(),
        materializations: summary.materializations.clone(),
    }
}

/// The models not diffed, each with its reason; a new or removed model's reason says its
/// rows (or why they could not be counted), and a changed materialization is named.
pub fn skipped_entries(summary: &Summary, results: &[(String, String)]) -> Vec<SkippedEntry> {
    summary
        .skipped
        .iter()
        .map(|(name, reason)| {
            let counted = summary.counted.iter().find(|c| &c.name == name);
            let reason = match counted {
                None => reason.clone(),
                Some(c) => {
                    let stored = results.iter().find(|(m, _)| m == &c.unique_id);
                    match stored.map(|(_, body)| serde_json::from_str::<StoredOutcome>(body)) {
                        None => reason.clone(),
                        Some(Ok(StoredOutcome::Ok(r))) => {
                            let n = match c.side {
                                CountSide::Pr => r.rows.pr,
                                CountSide::Prod => r.rows.prod,
                            };
                            counted_reason(reason, c.side, Ok(n))
                        }
                        Some(Ok(StoredOutcome::Error(e))) => {
                            counted_reason(reason, c.side, Err(&e))
                        }
                        Some(Err(e)) => counted_reason(reason, c.side, Err(&e.to_string())),
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

/// Counts a work item's relation (see [`WorkItem::count`]) as a result whose counted
/// side's rows are the count.
pub async fn count_work(
    wh: &dyn crate::warehouse::Warehouse,
    work: &WorkItem,
    side: CountSide,
) -> Result<DiffResult, crate::diff::DiffError> {
    let rel = match side {
        CountSide::Pr => &work.pr,
        CountSide::Prod => &work.prod,
    };
    let n = crate::diff::count_rows(wh, rel).await?;
    Ok(DiffResult::counted(
        &work.prod,
        &work.pr,
        match side {
            CountSide::Pr => crate::diff::PerSide { prod: 0, pr: n },
            CountSide::Prod => crate::diff::PerSide { prod: n, pr: 0 },
        },
    ))
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

/// The commit status description of a finished report (≤ 140 characters).
pub fn status_description(report: &Report) -> String {
    let n = report.entries.len();
    let differing = report
        .entries
        .iter()
        .filter(|e| matches!(&e.outcome, Ok(r) if r.has_differences()))
        .count();
    let failed = report.entries.iter().filter(|e| e.outcome.is_err()).count();
    let mut s = if n == 0 {
        "prdiff: no models to diff".to_owned()
    } else {
        format!(
            "prdiff: {n} model{} diffed, {differing} with differences",
            if n == 1 { "" } else { "s" }
        )
    };
    if failed > 0 {
        s.push_str(&format!(", {failed} failed"));
    }
    if !report.skipped.is_empty() {
        s.push_str(&format!(", {} not diffed", report.skipped.len()));
    }
    crate::githost::shorten(&s, 140)
}

/// Publishes a finished report: the sticky comment (created once, edited after) and the
/// final commit status.
pub async fn publish_report(
    host: &dyn GitHost,
    config: &CiConfig,
    run: &CiRun,
    report: &Report,
) -> Result<(), GitHostError> {
    // Fit GitHub's comment limit (GitLab's is larger) by dropping detail, leaving room for
    // the marker line.
    let marker = config.comment_marker();
    let limit = report::GITHUB_COMMENT_LIMIT - marker.chars().count() - 1;
    let body = with_marker(config, &report::markdown_within(report, limit));
    host.upsert_comment(
        &run.pr.repository,
        run.pr.number,
        &config.comment_marker(),
        &body,
    )
    .await?;
    host.set_status(
        &run.pr.repository,
        &run.head_sha,
        &CommitStatus {
            state: StatusState::Success,
            context: config.status_context(),
            description: status_description(report),
            target_url: None,
        },
    )
    .await
}

/// Ends a run that could not be diffed: a note in the sticky comment and a status that
/// follows the configuration's CI-status-reporting setting (failure when on, success
/// when off so the PR is never blocked).
pub async fn publish_failure(
    host: &dyn GitHost,
    config: &CiConfig,
    run: &CiRun,
    message: &str,
    target_url: Option<String>,
) -> Result<(), GitHostError> {
    let link = target_url
        .as_deref()
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
        .map(|u| format!(" ([dbt Cloud run]({u}))"))
        .unwrap_or_default();
    let body = format!(
        "{}\n## prdiff · {}\n\n❌ {}{link}\n",
        config.comment_marker(),
        report::escape_cell(config.name.as_str()),
        report::escape_text(&report::truncate_chars(message, report::MAX_FAILURE_TEXT)),
    );
    host.upsert_comment(
        &run.pr.repository,
        run.pr.number,
        &config.comment_marker(),
        &body,
    )
    .await?;
    let (state, description) = if config.status_reporting {
        (StatusState::Failure, format!("prdiff: {message}"))
    } else {
        (
            StatusState::Success,
            format!("prdiff (not blocking): {message}"),
        )
    };
    host.set_status(
        &run.pr.repository,
        &run.head_sha,
        &CommitStatus {
            state,
            context: config.status_context(),
            description: crate::githost::shorten(&description, 140),
            target_url,
        },
    )
    .await
}

/// The sticky comment while prdiff waits for dbt Cloud.
pub async fn publish_waiting(
    host: &dyn GitHost,
    config: &CiConfig,
    run: &CiRun,
    message: &str,
) -> Result<(), GitHostError> {
    let body = format!(
        "{}\n## prdiff · {}\n\n⏳ {}\n",
        config.comment_marker(),
        report::escape_cell(config.name.as_str()),
        report::escape_text(&report::truncate_chars(message, report::MAX_FAILURE_TEXT)),
    );
    host.upsert_comment(
        &run.pr.repository,
        run.pr.number,
        &config.comment_marker(),
        &body,
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snowflake_data_source_logs_in_with_its_secret_as_password_or_pem_key() {
        use crate::warehouse::SnowflakeAuth;
        let source: DataSource = serde_json::from_value(serde_json::json!({
            "id": "sf",
            "kind": "snowflake",
            "connection": { "account": "myorg-acme", "user": "PRDIFF", "database": "ANALYTICS",
                            "warehouse": "WH", "role": "READER" },
            "secret": "prdiff/data-source/sf"
        }))
        .unwrap();
        let WarehouseUrl::Snowflake(t) = warehouse_url(&source, Some("s3cret".into())).unwrap()
        else {
            panic!("not snowflake")
        };
        assert_eq!(
            t.auth,
            SnowflakeAuth::Password(crate::warehouse::Password::new("s3cret"))
        );
        assert_eq!(t.host, "myorg-acme.snowflakecomputing.com");
        assert_eq!((t.port, t.protocol.as_str()), (443, "https"));
        assert_eq!(t.role.as_deref(), Some("READER"));

        let pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----\n";
        let url = warehouse_url(&source, Some(pem.into())).unwrap();
        let WarehouseUrl::Snowflake(t) = &url else {
            panic!("not snowflake")
        };
        assert!(matches!(&t.auth, SnowflakeAuth::PrivateKeyPem(k) if k.expose() == pem));
        for shown in [url.to_string(), format!("{url:?}")] {
            assert!(
                !shown.contains("MIIEvQ") && !shown.contains("BEGIN"),
                "{shown}"
            );
        }
        let e = warehouse_url(&source, None).unwrap_err();
        assert!(e.to_string().contains("needs a secret"), "{e}");
    }

    #[test]
    fn new_and_removed_models_get_their_row_counts_and_materialization_changes_are_named() {
        let rel = Relation::parse("dbt_cloud_pr_1_2.fresh").unwrap();
        let count = |rows: crate::diff::PerSide| {
            serde_json::to_string(&StoredOutcome::Ok(Box::new(DiffResult::counted(
                &rel, &rel, rows,
            ))))
            .unwrap()
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
                serde_json::to_string(&StoredOutcome::Error("relation missing".into())).unwrap(),
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

    #[test]
    fn a_stored_outcome_round_trips_through_json() {
        let err = StoredOutcome::Error("relation does not exist".into());
        let json = serde_json::to_string(&err).unwrap();
        assert_eq!(json, r#"{"error":"relation does not exist"}"#);
        assert_eq!(serde_json::from_str::<StoredOutcome>(&json).unwrap(), err);
    }

    #[test]
    fn a_work_item_keeps_the_request_it_was_made_from() {
        let mut req = DiffRequest::new(
            Relation::parse("analytics.orders").unwrap(),
            Relation::parse("dbt_cloud_pr_1_2.orders").unwrap(),
            vec!["id".into()],
        );
        req.filter = Some("id > 0".into());
        req.masked_columns = vec!["email".into()];
        let item = WorkItem::from_request("orders", &req);
        let back: WorkItem = serde_json::from_str(&serde_json::to_string(&item).unwrap()).unwrap();
        let again = back.request(None);
        assert_eq!(again.pr, req.pr);
        assert_eq!(again.filter, req.filter);
        assert_eq!(again.masked_columns, req.masked_columns);
    }
}
