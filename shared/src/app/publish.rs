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
use crate::githost::{CommitStatus, GitHost, GitHostError};
use crate::outcome::{self, Counts, Ending};
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
        DataSourceKind::Bigquery => {
            let project = get("project")
                .filter(|p| !p.is_empty())
                .ok_or_else(|| err("connection has no `project`".into()))?;
            let bq = crate::warehouse::BigQueryUrl {
                project: project.to_owned(),
                location: get("location").map(str::to_owned),
                dataset: get("dataset").map(str::to_owned),
                endpoint: get("endpoint").map(str::to_owned),
                maximum_bytes_billed: match get("maximum_bytes_billed") {
                    None => None,
                    Some(n) => Some(n.parse().map_err(|_| {
                        err(format!(
                            "maximum_bytes_billed {n:?} is not a number of bytes"
                        ))
                    })?),
                },
                // The secret is a service-account key (JSON); without one, Application
                // Default Credentials (workload identity, the metadata server).
                credentials: secret.map(crate::warehouse::Password::new),
            };
            bq.check_endpoint().map_err(err)?;
            if let Some(unknown) = source.connection.keys().find(|k| {
                !matches!(
                    k.as_str(),
                    "project" | "location" | "dataset" | "endpoint" | "maximum_bytes_billed"
                )
            }) {
                return Err(err(format!(
                    "connection key `{unknown}` is not one of project, location, dataset, endpoint, maximum_bytes_billed"
                )));
            }
            Ok(WarehouseUrl::BigQuery(bq))
        }
        DataSourceKind::Sqlite => {
            let path = get("path").ok_or_else(|| err("connection has no `path`".into()))?;
            WarehouseUrl::parse(&format!("sqlite:{path}"), None).map_err(|e| err(e.to_string()))
        }
        DataSourceKind::Snowflake => snowflake_target(source, secret).map_err(err),
        DataSourceKind::Databricks => databricks_target(source, secret).map_err(err),
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

/// The connection keys a Databricks data source may have.
pub const DATABRICKS_CONNECTION_KEYS: &[&str] = &[
    "host",
    "warehouse_id",
    "http_path",
    "catalog",
    "schema",
    "client_id",
    "port",
    "protocol",
];

/// A Databricks data source's warehouse and credentials. The secret is a personal access
/// token, or the service principal's OAuth client secret when `client_id` is set.
fn databricks_target(source: &DataSource, secret: Option<String>) -> Result<WarehouseUrl, String> {
    use crate::warehouse::{DatabricksAuth, DatabricksTarget, Password};
    let c = &source.connection;
    if let Some(k) = c
        .keys()
        .find(|k| !DATABRICKS_CONNECTION_KEYS.contains(&k.as_str()))
    {
        return Err(format!(
            "unknown connection key `{k}` for databricks (expected {})",
            DATABRICKS_CONNECTION_KEYS.join(", ")
        ));
    }
    let get = |k: &str| c.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let host = get("host")
        .ok_or("connection has no `host`")?
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_owned();
    let warehouse_id = match (get("warehouse_id"), get("http_path")) {
        (Some(id), None) => DatabricksTarget::warehouse_id_from_path(id),
        (None, Some(path)) => DatabricksTarget::warehouse_id_from_path(path),
        (Some(_), Some(_)) => return Err("give `warehouse_id` or `http_path`, not both".into()),
        (None, None) => return Err("connection has no `warehouse_id` (or `http_path`)".into()),
    }
    .ok_or("`warehouse_id` is one id, or `http_path` is /sql/1.0/warehouses/ID")?;
    let protocol = match get("protocol") {
        None | Some("https") => "https",
        Some("http") if crate::warehouse::is_loopback_host(&host) => "http",
        Some("http") => return Err("protocol http is for a stand-in on this machine only".into()),
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
        .ok_or(
            "a databricks data source needs a secret (a personal access token, or the OAuth client secret with `client_id`)",
        )?;
    let auth = match get("client_id") {
        Some(id) => DatabricksAuth::OAuthM2m {
            client_id: id.to_owned(),
            client_secret: Password::new(secret.trim()),
        },
        None => DatabricksAuth::Token(Password::new(secret.trim())),
    };
    Ok(WarehouseUrl::Databricks(DatabricksTarget {
        host,
        port,
        protocol: protocol.to_owned(),
        warehouse_id,
        catalog: get("catalog").map(str::to_owned),
        schema: get("schema").map(str::to_owned),
        auth,
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
        DataSourceKind::Databricks => match databricks_target(source, Some("-".into())) {
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
    results: &[(String, String)],
    missing: &str,
) -> Report {
    let mut entries = Vec::new();
    for (uid, name) in &summary.models {
        let outcome = match results.iter().find(|(m, _)| m == uid) {
            None => Err(missing.to_owned()),
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
    let mut fin = outcome::final_status(
        &Ending::Reported(Counts::of(report)),
        outcome::Rules::of(config),
    );
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
    publish_final(host, config, run, &fin, Some(report), None).await
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
    let fin = outcome::final_status(
        &Ending::Incomplete(message.to_owned()),
        outcome::Rules::of(config),
    );
    publish_final(host, config, run, &fin, partial, link).await
}

async fn publish_final(
    host: &dyn GitHost,
    config: &CiConfig,
    run: &CiRun,
    fin: &outcome::FinalStatus,
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
    .await
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
    to: crate::store::RunState,
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
    let partial = match runs.fanout_summary(&ended.id).await? {
        Some(s) => match serde_json::from_str::<Summary>(&s) {
            Ok(summary) => {
                let results = runs.results(&ended.id).await?;
                Some(build_report_missing(
                    config,
                    &ended,
                    &summary,
                    &results,
                    &format!("not diffed: {why}"),
                ))
            }
            Err(_) => None,
        },
        None => None,
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
) -> Result<Vec<crate::store::RunId>, crate::store::StoreError> {
    use crate::store::RunState;
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
    Ended(crate::store::RunId),
    /// A model's failure was recorded; the run goes on with its other models.
    ModelFailed(crate::store::RunId),
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
    use crate::store::RunState;
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
        let name = runs
            .model_work(&run.id, &model)
            .await?
            .and_then(|w| serde_json::from_str::<WorkItem>(&w).ok())
            .map_or(model.clone(), |w| w.name);
        let outcome = StoredOutcome::Error(format!("not diffed: {cause}"));
        let body = serde_json::to_string(&outcome).expect("outcomes serialize");
        let recorded = runs.record_result(&run.id, &model, &body).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bigquery_data_source_maps_to_its_url_with_the_key_as_credentials() {
        let source = |pairs: &[(&str, &str)]| DataSource {
            id: crate::config::DataSourceId::parse("bq").unwrap(),
            kind: DataSourceKind::Bigquery,
            connection: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            secret: None,
        };
        let key = r#"{"type":"service_account","private_key":"-----BEGIN PRIVATE KEY-----"}"#;
        let url = warehouse_url(
            &source(&[
                ("project", "proj-1"),
                ("location", "EU"),
                ("dataset", "analytics"),
                ("maximum_bytes_billed", "5000000000"),
            ]),
            Some(key.into()),
        )
        .unwrap();
        let WarehouseUrl::BigQuery(bq) = &url else {
            panic!("not bigquery: {url}")
        };
        assert_eq!(bq.project, "proj-1");
        assert_eq!(bq.location.as_deref(), Some("EU"));
        assert_eq!(bq.dataset.as_deref(), Some("analytics"));
        assert_eq!(bq.maximum_bytes_billed, Some(5_000_000_000));
        assert_eq!(bq.credentials.as_ref().unwrap().expose(), key);
        assert!(!format!("{url} {url:?}").contains("PRIVATE"));

        for (pairs, why) in [
            (&[("location", "EU")][..], "no `project`"),
            (
                &[("project", "p"), ("maximum_bytes_billed", "lots")][..],
                "maximum_bytes_billed",
            ),
            (
                &[("project", "p"), ("endpoint", "http://bq.example")][..],
                "non-loopback",
            ),
            (
                &[("project", "p"), ("host", "x")][..],
                "connection key `host`",
            ),
        ] {
            let e = warehouse_url(&source(pairs), None).unwrap_err();
            assert!(e.to_string().contains(why), "{pairs:?}: {e}");
        }
    }

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
    fn a_databricks_data_source_uses_its_secret_as_token_or_oauth_client_secret() {
        use crate::warehouse::{DatabricksAuth, Password};
        let source = |connection: serde_json::Value| -> DataSource {
            serde_json::from_value(serde_json::json!({
                "id": "dbx",
                "kind": "databricks",
                "connection": connection,
                "secret": "prdiff/data-source/dbx"
            }))
            .unwrap()
        };
        let pat = source(serde_json::json!({
            "host": "https://dbc-1234.cloud.databricks.com/",
            "http_path": "/sql/1.0/warehouses/abc123",
            "catalog": "main", "schema": "analytics"
        }));
        let url = warehouse_url(&pat, Some("dapi-s3cret".into())).unwrap();
        let WarehouseUrl::Databricks(t) = &url else {
            panic!("not databricks")
        };
        assert_eq!(t.host, "dbc-1234.cloud.databricks.com");
        assert_eq!(t.warehouse_id, "abc123");
        assert_eq!(t.base_url(), "https://dbc-1234.cloud.databricks.com:443");
        assert_eq!(t.auth, DatabricksAuth::Token(Password::new("dapi-s3cret")));
        for shown in [url.to_string(), format!("{url:?}")] {
            assert!(!shown.contains("dapi-s3cret"), "{shown}");
        }
        let e = warehouse_url(&pat, None).unwrap_err();
        assert!(e.to_string().contains("needs a secret"), "{e}");

        let m2m = source(serde_json::json!({
            "host": "dbc-1234.cloud.databricks.com", "warehouse_id": "abc123",
            "client_id": "sp-uuid"
        }));
        let WarehouseUrl::Databricks(t) = warehouse_url(&m2m, Some("oauth-s3cret".into())).unwrap()
        else {
            panic!("not databricks")
        };
        assert_eq!(
            t.auth,
            DatabricksAuth::OAuthM2m {
                client_id: "sp-uuid".into(),
                client_secret: Password::new("oauth-s3cret")
            }
        );
        for (connection, why) in [
            (serde_json::json!({"warehouse_id": "w"}), "no `host`"),
            (serde_json::json!({"host": "h"}), "no `warehouse_id`"),
            (
                serde_json::json!({"host": "h", "warehouse_id": "w", "token": "x"}),
                "unknown connection key `token`",
            ),
            (
                serde_json::json!({"host": "h.example", "warehouse_id": "w", "protocol": "http"}),
                "this machine only",
            ),
        ] {
            let problems = data_source_problems(&source(connection));
            assert!(
                problems.iter().any(|p| p.contains(why)),
                "{why}: {problems:?}"
            );
        }
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
