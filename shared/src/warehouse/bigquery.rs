//! Google BigQuery driver over the REST API v2
//! (<https://cloud.google.com/bigquery/docs/reference/rest>), through reqwest (rustls).
//!
//! A statement runs as one query job: `jobs.query` with GoogleSQL (`useLegacySql: false`),
//! the statement timeout as the job's own timeout (`jobTimeoutMs`, enforced by BigQuery),
//! the data source's cost guard (`maximumBytesBilled`), then `jobs.getQueryResults` until
//! the job is complete and through every page. When the client stops waiting (its own
//! timeout, a little after the job's, or a dropped future), the job is cancelled with
//! `jobs.cancel`. Values arrive as `rows[].f[].v`: a string or null for every scalar type;
//! the engine casts everything it reads to text or integers in SQL, so they are passed on
//! as they are.
//!
//! Authentication: an OAuth token with the `bigquery` scope from `gcp_auth` (a
//! service-account key from the secret store, else Application Default Credentials:
//! `GOOGLE_APPLICATION_CREDENTIALS`, gcloud's credentials, the metadata server, which is
//! how workload identity reaches a workload). No token is fetched for a loopback
//! `endpoint` (an emulator).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{
    BigQueryUrl, ConnectOptions, PrivilegeScope, PrivilegeWarning, Row, Warehouse, WarehouseError,
    error_text,
};
use crate::sql::{BigQuery, Dialect, Relation};

/// The OAuth scope of the BigQuery API.
pub const SCOPE: &str = "https://www.googleapis.com/auth/bigquery";

/// How long one `jobs.query` / `jobs.getQueryResults` call waits for the job server-side
/// before it returns `jobComplete: false` (then the driver asks again).
const POLL_WAIT: Duration = Duration::from_secs(10);

/// How long past the statement timeout the client waits before it cancels the job itself
/// (BigQuery's own `jobTimeoutMs` should have stopped it by then).
const CLIENT_GRACE: Duration = Duration::from_secs(2);

/// Statements one diff runs at once: BigQuery runs jobs side by side without sharing a
/// connection.
const PARALLELISM: usize = 3;

/// How often a request that could not be sent is sent again.
const SEND_RETRIES: u32 = 2;

/// The longest a single HTTP request may take (a page of results, a token).
const HTTP_TIMEOUT: Duration = Duration::from_secs(120);

pub struct BigQueryWarehouse {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// `{endpoint}/bigquery/v2`.
    api: String,
    /// `{api}/projects/{project}`.
    base: String,
    project: String,
    location: Option<String>,
    dataset: Option<String>,
    maximum_bytes_billed: Option<u64>,
    statement_timeout: Duration,
    /// `None` for a loopback emulator endpoint.
    auth: Option<Arc<dyn gcp_auth::TokenProvider>>,
    target: String,
}

/// What a statement's job reported.
struct JobResult {
    rows: Vec<Row>,
    total_bytes_processed: Option<u64>,
}

impl BigQueryWarehouse {
    /// Sets up the HTTP client and the token source, then runs `SELECT 1` so that refused
    /// credentials, a missing permission or an unknown project fail before any work starts.
    pub async fn connect(
        url: &BigQueryUrl,
        options: &ConnectOptions,
    ) -> Result<Self, WarehouseError> {
        let target = super::WarehouseUrl::BigQuery(url.clone()).to_string();
        let connect_err = |source: Box<dyn std::error::Error + Send + Sync>, retryable: bool| {
            WarehouseError::Connect {
                target: target.clone(),
                source,
                retryable,
            }
        };
        url.check_endpoint()
            .map_err(|e| connect_err(e.into(), false))?;
        let http = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .connect_timeout(Duration::from_secs(15))
            .user_agent(concat!("prdiff/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| connect_err(Box::new(e), false))?;
        let auth: Option<Arc<dyn gcp_auth::TokenProvider>> = if url.is_loopback() {
            None
        } else if let Some(key) = &url.credentials {
            // The key's own error text never includes the key.
            let sa = gcp_auth::CustomServiceAccount::from_json(key.expose()).map_err(|e| {
                connect_err(
                    format!("the service-account key is not usable: {}", key_error(&e)).into(),
                    false,
                )
            })?;
            Some(Arc::new(sa))
        } else {
            Some(gcp_auth::provider().await.map_err(|e| {
                connect_err(
                    format!(
                        "no Google credentials found (a service-account key as the data source's secret, GOOGLE_APPLICATION_CREDENTIALS, or the metadata server): {}",
                        error_text(&crate::error_chain(&e))
                    )
                    .into(),
                    false,
                )
            })?)
        };
        let inner = Inner {
            http,
            api: format!("{}/bigquery/v2", url.endpoint()),
            base: format!(
                "{}/bigquery/v2/projects/{}",
                url.endpoint(),
                path_segment(&url.project)
            ),
            project: url.project.clone(),
            location: url.location.clone(),
            dataset: url.dataset.clone(),
            maximum_bytes_billed: url.maximum_bytes_billed,
            statement_timeout: options.statement_timeout,
            auth,
            target: target.clone(),
        };
        let wh = BigQueryWarehouse {
            inner: Arc::new(inner),
        };
        match wh.query("SELECT 1").await {
            Ok(_) => Ok(wh),
            Err(WarehouseError::Connect { .. }) | Err(WarehouseError::Timeout(_)) => {
                Err(connect_err("`SELECT 1` did not complete".into(), true))
            }
            Err(e @ WarehouseError::Rejected { .. }) => Err(connect_err(Box::new(e), false)),
            Err(e) => {
                let retryable = e.is_retryable();
                Err(connect_err(Box::new(e), retryable))
            }
        }
    }

    /// The bytes `sql` would process, from a dry run (`dryRun: true`: BigQuery checks and
    /// plans the statement without running or billing it). The diff sums them for the
    /// report and checks each against `maximumBytesBilled` before any job runs.
    pub async fn dry_run_bytes(&self, sql: &str) -> Result<u64, WarehouseError> {
        let body = self.inner.request_body(sql, true);
        let resp = self
            .inner
            .call(
                reqwest::Method::POST,
                &format!("{}/queries", self.inner.base),
                &[],
                Some(&body),
            )
            .await?;
        check_job_errors(&resp, self.inner.statement_timeout)?;
        total_bytes_processed(&resp).ok_or_else(|| WarehouseError::Other {
            message: "the dry run's response has no totalBytesProcessed".into(),
        })
    }

    async fn run(&self, sql: &str) -> Result<JobResult, WarehouseError> {
        let timeout = self.inner.statement_timeout;
        let mut guard = CancelOnDrop {
            inner: self.inner.clone(),
            job: None,
        };
        let started = Instant::now();
        let result = tokio::time::timeout(
            timeout + CLIENT_GRACE,
            self.inner.run_job(sql, &mut guard.job),
        )
        .await;
        let result = match result {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!(
                    timeout_ms = timeout.as_millis() as u64,
                    "BigQuery job outlived its timeout: cancelling it"
                );
                // `guard` cancels the job when dropped here.
                return Err(WarehouseError::Timeout(timeout));
            }
        };
        if result.is_ok() {
            // Done: nothing to cancel.
            guard.job = None;
        }
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            ok = result.is_ok(),
            bytes_processed = result.as_ref().ok().and_then(|r| r.total_bytes_processed),
            sql,
            "bigquery statement"
        );
        result
    }
}

#[async_trait]
impl Warehouse for BigQueryWarehouse {
    fn dialect(&self) -> &'static dyn Dialect {
        &BigQuery
    }

    fn parallelism(&self) -> usize {
        PARALLELISM
    }

    async fn query(&self, sql: &str) -> Result<Vec<Row>, WarehouseError> {
        Ok(self.run(sql).await?.rows)
    }

    /// A dry run of `sql` ([`BigQueryWarehouse::dry_run_bytes`]).
    async fn estimate_bytes(&self, sql: &str) -> Option<Result<u64, WarehouseError>> {
        Some(self.dry_run_bytes(sql).await)
    }

    fn bytes_limit(&self) -> Option<u64> {
        self.inner.maximum_bytes_billed
    }

    /// IAM's answer for each table in scope (`tables.testIamPermissions` with the write
    /// permissions; the answer is the subset this identity holds).
    async fn api_privilege_warnings(
        &self,
        scope: &PrivilegeScope,
    ) -> Option<Result<Vec<PrivilegeWarning>, WarehouseError>> {
        Some(self.iam_warnings(scope).await)
    }

    /// From the table resource (`tables.get`): one request, no query job; the catalog
    /// query when the relation names no dataset.
    async fn columns(&self, rel: &Relation) -> Result<Vec<Row>, WarehouseError> {
        match self.table_columns(rel).await? {
            Some(cols) => Ok(cols
                .into_iter()
                .map(|(name, ty)| vec![Some(name), Some(ty)])
                .collect()),
            None => self.query(&self.dialect().columns_query(rel)).await,
        }
    }
}

/// Write and administrative IAM permissions on a table, what each allows, and the
/// predefined roles that grant it
/// (<https://cloud.google.com/bigquery/docs/access-control#bigquery-roles>).
const WRITE_PERMISSIONS: &[(&str, &str, &str)] = &[
    (
        "bigquery.tables.updateData",
        "may insert, update, delete and truncate rows",
        "roles/bigquery.dataEditor, roles/bigquery.dataOwner or roles/bigquery.admin",
    ),
    (
        "bigquery.tables.update",
        "may change the schema and metadata",
        "roles/bigquery.dataEditor, roles/bigquery.dataOwner or roles/bigquery.admin",
    ),
    (
        "bigquery.tables.delete",
        "may delete the table",
        "roles/bigquery.dataEditor, roles/bigquery.dataOwner or roles/bigquery.admin",
    ),
    (
        "bigquery.tables.setIamPolicy",
        "may grant others access to the table",
        "roles/bigquery.dataOwner or roles/bigquery.admin",
    ),
];

/// The most tables one privilege check tests (`tables.testIamPermissions`, one request
/// each), and how many requests are in flight at once.
const MAX_CHECKED_TABLES: usize = 200;

/// A table: project, dataset, table id.
type TableRef = (String, String, String);
const CHECKS_IN_FLIGHT: usize = 8;

impl BigQueryWarehouse {
    /// The columns of `rel` from the table resource (`tables.get`), in column order.
    /// Types are rendered as `INFORMATION_SCHEMA.COLUMNS.data_type` renders them; an
    /// empty list for a table that does not exist; `None` without a dataset to look in.
    pub async fn table_columns(
        &self,
        rel: &Relation,
    ) -> Result<Option<Vec<(String, String)>>, WarehouseError> {
        let Some(dataset) = rel.schema.as_ref().or(self.inner.dataset.as_ref()) else {
            // No dataset to look in: the catalog query reports that in BigQuery's words.
            return Ok(None);
        };
        let project = rel.database.as_ref().unwrap_or(&self.inner.project);
        let url = format!(
            "{}/projects/{}/datasets/{}/tables/{}",
            self.inner.api,
            path_segment(project),
            path_segment(dataset),
            path_segment(&rel.name)
        );
        let params = [("fields", "schema".to_owned())];
        let table = match self
            .inner
            .call_status(reqwest::Method::GET, &url, &params, None)
            .await?
        {
            Ok(v) => v,
            // No such project, dataset or table (or none this identity may see).
            Err((404, _)) => return Ok(Some(Vec::new())),
            Err((status, body)) => {
                return Err(api_error(
                    status,
                    &body,
                    &self.inner.target,
                    self.inner.statement_timeout,
                ));
            }
        };
        let fields = table
            .get("schema")
            .and_then(|s| s.get("fields"))
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        fields
            .iter()
            .map(|f| {
                let name =
                    f.get("name")
                        .and_then(Value::as_str)
                        .ok_or_else(|| WarehouseError::Other {
                            message: "a field of BigQuery's table schema has no name".into(),
                        })?;
                Ok((name.to_owned(), data_type(f)))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// The tables a privilege check tests: the scope's relations, or every table of the
    /// data source's dataset (of every dataset of the project without one), at most
    /// [`MAX_CHECKED_TABLES`].
    async fn tables_in_scope(
        &self,
        scope: &PrivilegeScope,
    ) -> Result<Vec<TableRef>, WarehouseError> {
        let inner = &self.inner;
        if let PrivilegeScope::Relations(rels) = scope {
            return Ok(rels
                .iter()
                .filter_map(|r| {
                    let dataset = r.schema.as_ref().or(inner.dataset.as_ref())?;
                    let project = r.database.as_ref().unwrap_or(&inner.project);
                    Some((project.clone(), dataset.clone(), r.name.clone()))
                })
                .take(MAX_CHECKED_TABLES)
                .collect());
        }
        let datasets = match &inner.dataset {
            Some(d) => vec![d.clone()],
            None => {
                let list = inner
                    .call(
                        reqwest::Method::GET,
                        &format!("{}/datasets", inner.base),
                        &[("maxResults", "1000".to_owned())],
                        None,
                    )
                    .await?;
                list.get("datasets")
                    .and_then(Value::as_array)
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|d| {
                        d.pointer("/datasetReference/datasetId")
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    })
                    .collect()
            }
        };
        let mut tables = Vec::new();
        for d in datasets {
            if tables.len() >= MAX_CHECKED_TABLES {
                break;
            }
            let list = inner
                .call(
                    reqwest::Method::GET,
                    &format!("{}/datasets/{}/tables", inner.base, path_segment(&d)),
                    &[(
                        "maxResults",
                        (MAX_CHECKED_TABLES - tables.len()).to_string(),
                    )],
                    None,
                )
                .await?;
            for t in list
                .get("tables")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                if let Some(id) = t.pointer("/tableReference/tableId").and_then(Value::as_str) {
                    tables.push((inner.project.clone(), d.clone(), id.to_owned()));
                }
            }
        }
        tables.truncate(MAX_CHECKED_TABLES);
        Ok(tables)
    }

    async fn iam_warnings(
        &self,
        scope: &PrivilegeScope,
    ) -> Result<Vec<PrivilegeWarning>, WarehouseError> {
        use futures::StreamExt;
        let tables = self.tables_in_scope(scope).await?;
        let permissions: Vec<&str> = WRITE_PERMISSIONS.iter().map(|(p, _, _)| *p).collect();
        let body = json!({ "permissions": permissions });
        let inner = &self.inner;
        let held: Vec<(TableRef, Vec<String>)> =
            futures::stream::iter(tables.into_iter().map(|t| {
                let body = &body;
                async move {
                    let url = format!(
                        "{}/projects/{}/datasets/{}/tables/{}:testIamPermissions",
                        inner.api,
                        path_segment(&t.0),
                        path_segment(&t.1),
                        path_segment(&t.2)
                    );
                    let resp = inner
                        .call(reqwest::Method::POST, &url, &[], Some(body))
                        .await?;
                    let granted: Vec<String> = resp
                        .get("permissions")
                        .and_then(Value::as_array)
                        .map(Vec::as_slice)
                        .unwrap_or_default()
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect();
                    Ok::<_, WarehouseError>((t, granted))
                }
            }))
            .buffered(CHECKS_IN_FLIGHT)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        Ok(permission_warnings(&held))
    }
}

/// One warning per write permission held on any table, naming the tables and the roles
/// that grant it.
fn permission_warnings(held: &[(TableRef, Vec<String>)]) -> Vec<PrivilegeWarning> {
    const SHOWN: usize = 5;
    let mut out = Vec::new();
    for (permission, what, roles) in WRITE_PERMISSIONS {
        let tables: Vec<String> = held
            .iter()
            .filter(|(_, granted)| granted.iter().any(|g| g == permission))
            .map(|((p, d, t), _)| format!("{p}.{d}.{t}"))
            .collect();
        if tables.is_empty() {
            continue;
        }
        let mut listing = tables[..tables.len().min(SHOWN)].join(", ");
        if tables.len() > SHOWN {
            listing.push_str(&format!(" and {} more", tables.len() - SHOWN));
        }
        out.push(PrivilegeWarning {
            privilege: (*permission).to_owned(),
            detail: format!(
                "this identity {what} on {} table{}: {listing}",
                tables.len(),
                if tables.len() == 1 { "" } else { "s" }
            ),
            revoke: format!(
                "remove {roles} from this identity on the project, the dataset and the table \
                 (or the custom role that holds {permission}); reading needs only \
                 roles/bigquery.dataViewer on the datasets and roles/bigquery.jobUser on the \
                 project"
            ),
        });
    }
    out
}

/// A schema field's type as `INFORMATION_SCHEMA.COLUMNS.data_type` writes it: GoogleSQL
/// names (the REST resource may use the legacy `INTEGER`, `FLOAT`, `BOOLEAN`, `RECORD`),
/// parameters (`NUMERIC(10, 2)`, `STRING(20)`), `ARRAY<…>` for a repeated field,
/// `STRUCT<name type, …>` for a record.
/// <https://cloud.google.com/bigquery/docs/reference/rest/v2/tables#TableFieldSchema>
fn data_type(field: &Value) -> String {
    let inner = element_type(field);
    if field.get("mode").and_then(Value::as_str) == Some("REPEATED") {
        format!("ARRAY<{inner}>")
    } else {
        inner
    }
}

fn element_type(field: &Value) -> String {
    let raw = field
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_ascii_uppercase();
    let t = match raw.as_str() {
        "INTEGER" => "INT64",
        "FLOAT" => "FLOAT64",
        "BOOLEAN" => "BOOL",
        "RECORD" => "STRUCT",
        other => other,
    };
    // Integers in the REST resource are JSON strings (int64 format).
    let param = |name: &str| match field.get(name) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    match t {
        "STRUCT" => {
            let fields = field
                .get("fields")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let inner: Vec<String> = fields
                .iter()
                .map(|f| {
                    format!(
                        "{} {}",
                        f.get("name").and_then(Value::as_str).unwrap_or(""),
                        data_type(f)
                    )
                })
                .collect();
            format!("STRUCT<{}>", inner.join(", "))
        }
        "RANGE" => match field.get("rangeElementType") {
            Some(e) => format!("RANGE<{}>", element_type(e)),
            None => t.to_owned(),
        },
        "NUMERIC" | "BIGNUMERIC" => match (param("precision"), param("scale")) {
            (Some(p), Some(s)) => format!("{t}({p}, {s})"),
            (Some(p), None) => format!("{t}({p})"),
            _ => t.to_owned(),
        },
        "STRING" | "BYTES" => match param("maxLength") {
            Some(n) => format!("{t}({n})"),
            None => t.to_owned(),
        },
        _ => t.to_owned(),
    }
}

/// A job: its id and location (for `getQueryResults` and `cancel`).
#[derive(Debug, Clone)]
struct JobRef {
    id: String,
    location: Option<String>,
}

impl Inner {
    fn request_body(&self, sql: &str, dry_run: bool) -> Value {
        let mut body = json!({
            "query": sql,
            "useLegacySql": false,
            "timeoutMs": POLL_WAIT.min(self.statement_timeout).as_millis() as u64,
            "jobTimeoutMs": self.statement_timeout.as_millis().max(1).to_string(),
            "dryRun": dry_run,
            // Idempotency: a retried request does not start a second job.
            "requestId": request_id(),
        });
        if let Some(l) = &self.location {
            body["location"] = json!(l);
        }
        if let Some(n) = self.maximum_bytes_billed {
            body["maximumBytesBilled"] = json!(n.to_string());
        }
        if let Some(d) = &self.dataset {
            body["defaultDataset"] = json!({"projectId": self.project, "datasetId": d});
        }
        body
    }

    /// `jobs.query`, then `jobs.getQueryResults` until the job is complete and every page
    /// is read. `job` is set as soon as the job is known (for the cancel guard).
    async fn run_job(
        &self,
        sql: &str,
        job: &mut Option<JobRef>,
    ) -> Result<JobResult, WarehouseError> {
        let body = self.request_body(sql, false);
        let mut resp = self
            .call(
                reqwest::Method::POST,
                &format!("{}/queries", self.base),
                &[],
                Some(&body),
            )
            .await?;
        let mut rows = Vec::new();
        loop {
            if let Some(r) = job_ref(&resp) {
                *job = Some(r);
            }
            check_job_errors(&resp, self.statement_timeout)?;
            let complete = resp
                .get("jobComplete")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            if complete {
                read_rows(&resp, &mut rows)?;
            }
            let page_token = resp
                .get("pageToken")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .map(str::to_owned);
            if complete && page_token.is_none() {
                return Ok(JobResult {
                    rows,
                    total_bytes_processed: total_bytes_processed(&resp),
                });
            }
            let j = job.clone().ok_or_else(|| WarehouseError::Other {
                message: "BigQuery's response names no job to read the results of".into(),
            })?;
            let mut params = vec![(
                "timeoutMs",
                POLL_WAIT
                    .min(self.statement_timeout)
                    .as_millis()
                    .to_string(),
            )];
            if let Some(l) = j.location.as_ref().or(self.location.as_ref()) {
                params.push(("location", l.clone()));
            }
            if complete && let Some(t) = page_token {
                params.push(("pageToken", t));
            }
            resp = self
                .call(
                    reqwest::Method::GET,
                    &format!("{}/queries/{}", self.base, path_segment(&j.id)),
                    &params,
                    None,
                )
                .await?;
        }
    }

    /// `jobs.cancel` (best effort: the job may have finished meanwhile).
    async fn cancel(&self, job: &JobRef) -> Result<(), WarehouseError> {
        let mut params = Vec::new();
        if let Some(l) = job.location.as_ref().or(self.location.as_ref()) {
            params.push(("location", l.clone()));
        }
        self.call(
            reqwest::Method::POST,
            &format!("{}/jobs/{}/cancel", self.base, path_segment(&job.id)),
            &params,
            None,
        )
        .await
        .map(|_| ())
    }

    async fn token(&self) -> Result<Option<Arc<gcp_auth::Token>>, WarehouseError> {
        let Some(auth) = &self.auth else {
            return Ok(None);
        };
        auth.token(&[SCOPE])
            .await
            .map(Some)
            .map_err(|e| WarehouseError::Connect {
                target: self.target.clone(),
                source: format!(
                    "could not get a Google access token: {}",
                    error_text(&crate::error_chain(&e))
                )
                .into(),
                retryable: matches!(e, gcp_auth::Error::Http(..) | gcp_auth::Error::Io(..)),
            })
    }

    /// One API call; a non-success status becomes the API's error (reason and message).
    async fn call(
        &self,
        method: reqwest::Method,
        url: &str,
        params: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, WarehouseError> {
        self.call_status(method, url, params, body)
            .await?
            .map_err(|(status, value)| {
                api_error(status, &value, &self.target, self.statement_timeout)
            })
    }

    /// One API call: `Ok(Err((status, body)))` for a non-success status, for callers that
    /// treat some statuses (a 404) as an answer.
    async fn call_status(
        &self,
        method: reqwest::Method,
        url: &str,
        params: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Result<Value, (u16, Value)>, WarehouseError> {
        // A request that could not be sent (a pooled connection the server had just
        // closed, a reset) is sent again: every call here is idempotent (`jobs.query`
        // carries a `requestId`, polls and cancels are repeatable).
        let mut attempt = 0;
        let resp = loop {
            let mut req = self.http.request(method.clone(), url);
            if !params.is_empty() {
                req = req.query(params);
            }
            if let Some(t) = self.token().await? {
                req = req.bearer_auth(t.as_str());
            }
            req = match body {
                Some(b) => req.json(b),
                // `jobs.cancel` is a POST without a body.
                None => req.header(reqwest::header::CONTENT_LENGTH, "0"),
            };
            match req.send().await {
                Ok(r) => break r,
                Err(e) if attempt < SEND_RETRIES && !e.is_timeout() => {
                    attempt += 1;
                    tracing::debug!(error = %e.without_url(), attempt, "BigQuery request not sent: again");
                    tokio::time::sleep(Duration::from_millis(200 * attempt as u64)).await;
                }
                Err(e) => {
                    return Err(WarehouseError::Connect {
                        target: self.target.clone(),
                        source: Box::new(e.without_url()),
                        retryable: true,
                    });
                }
            }
        };
        let status = resp.status();
        let text = resp.text().await.map_err(|e| WarehouseError::Other {
            message: error_text(&format!("reading BigQuery's response: {}", e.without_url())),
        })?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            if value.is_null() {
                return Err(WarehouseError::Other {
                    message: format!("BigQuery answered {status} with a body that is not JSON"),
                });
            }
            return Ok(Ok(value));
        }
        Ok(Err((status.as_u16(), value)))
    }
}

/// Cancels the job when dropped while set: a client-side timeout, or a caller that stopped
/// waiting, must not leave the job running (and billing).
struct CancelOnDrop {
    inner: Arc<Inner>,
    job: Option<JobRef>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(job) = self.job.take() else {
            return;
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let inner = self.inner.clone();
            rt.spawn(async move {
                match inner.cancel(&job).await {
                    Ok(()) => tracing::debug!(job = %job.id, "BigQuery job cancelled"),
                    Err(e) => tracing::warn!(error = %e, "could not cancel a BigQuery job"),
                }
            });
        }
    }
}

fn job_ref(resp: &Value) -> Option<JobRef> {
    let r = resp.get("jobReference")?;
    Some(JobRef {
        id: r.get("jobId")?.as_str()?.to_owned(),
        location: r.get("location").and_then(Value::as_str).map(str::to_owned),
    })
}

fn total_bytes_processed(resp: &Value) -> Option<u64> {
    match resp.get("totalBytesProcessed")? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// A completed response may still carry the job's errors (`errors[]`): the first one with
/// a reason decides (BigQuery lists the fatal one; the others can be warnings).
fn check_job_errors(resp: &Value, timeout: Duration) -> Result<(), WarehouseError> {
    if resp.get("jobComplete").and_then(Value::as_bool) != Some(true) {
        return Ok(());
    }
    let Some(errors) = resp.get("errors").and_then(Value::as_array) else {
        return Ok(());
    };
    // A complete job with a result schema and errors: the errors were warnings (a SELECT
    // has at least one column). bqemulator reports a failed job as complete, with its
    // errors and an empty schema.
    let columns = resp
        .get("schema")
        .and_then(|s| s.get("fields"))
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if columns > 0 {
        return Ok(());
    }
    match errors.first() {
        Some(e) => {
            let reason = e.get("reason").and_then(Value::as_str).unwrap_or("");
            let message = e.get("message").and_then(Value::as_str).unwrap_or("");
            Err(classify(None, reason, message, timeout))
        }
        None => Ok(()),
    }
}

/// Appends the response's rows as text.
fn read_rows(resp: &Value, out: &mut Vec<Row>) -> Result<(), WarehouseError> {
    let Some(rows) = resp.get("rows").and_then(Value::as_array) else {
        return Ok(());
    };
    out.reserve(rows.len());
    for r in rows {
        let cells = r
            .get("f")
            .and_then(Value::as_array)
            .ok_or_else(|| WarehouseError::Other {
                message: "a BigQuery result row has no `f` list".into(),
            })?;
        out.push(cells.iter().map(|c| cell_text(c.get("v"))).collect());
    }
    Ok(())
}

/// One cell's value as text: scalars come as strings (INT64, FLOAT64, NUMERIC, BOOL,
/// STRING, dates and times alike), NULL as null; a repeated or record value (which the
/// engine never selects) as its JSON.
fn cell_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        other => Some(other.to_string()),
    }
}

/// The API's error (`{"error": {"code", "message", "errors": [{"reason", "message"}]}}`)
/// as prdiff reports it: reason and message, capped. BigQuery's messages name tables,
/// columns and types, not row values.
fn api_error(status: u16, body: &Value, target: &str, timeout: Duration) -> WarehouseError {
    let err = body.get("error");
    let first = err
        .and_then(|e| e.get("errors"))
        .and_then(Value::as_array)
        .and_then(|a| a.first());
    let reason = first
        .and_then(|e| e.get("reason"))
        .and_then(Value::as_str)
        .or_else(|| err.and_then(|e| e.get("status")).and_then(Value::as_str))
        .unwrap_or("");
    let message = err
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .or_else(|| first.and_then(|e| e.get("message")).and_then(Value::as_str))
        .unwrap_or("no error message");
    match (status, reason) {
        // Who we are was refused: no retry helps.
        (401, _) => WarehouseError::Connect {
            target: target.to_owned(),
            source: format!("HTTP 401 {reason}: {}", error_text(message)).into(),
            retryable: false,
        },
        _ => classify(Some(status), reason, message, timeout),
    }
}

/// An error reason (<https://cloud.google.com/bigquery/docs/error-messages>) as a
/// [`WarehouseError`].
fn classify(status: Option<u16>, reason: &str, message: &str, timeout: Duration) -> WarehouseError {
    let text = error_text(&match status {
        Some(s) => format!("HTTP {s} {reason}: {message}"),
        None => format!("{reason}: {message}"),
    });
    match reason {
        "timeout" | "jobTimeout" => WarehouseError::Timeout(timeout),
        // The SQL, a table or column, a permission, the cost guard: an input problem.
        "invalidQuery"
        | "invalid"
        | "notFound"
        | "accessDenied"
        | "billingNotEnabled"
        | "bytesBilledLimitExceeded"
        | "duplicate"
        | "resourcesExceeded"
        | "responseTooLarge"
        | "notImplemented"
        | "INVALID_ARGUMENT"
        | "NOT_FOUND"
        | "PERMISSION_DENIED" => WarehouseError::Rejected { message: text },
        // Busy or briefly broken: worth another try.
        _ => WarehouseError::Other { message: text },
    }
}

/// `e` without anything from the key: serde's messages can quote a value (`invalid type:
/// string "…"`), so a parse error says only what kind of error and where.
fn key_error(e: &gcp_auth::Error) -> String {
    match e {
        gcp_auth::Error::Json(_, inner) => format!(
            "not a service-account key JSON ({:?} error at line {}, column {})",
            inner.classify(),
            inner.line(),
            inner.column()
        ),
        other => error_text(&other.to_string()),
    }
}

/// A random UUID (version 4), as BigQuery recommends for `requestId`.
fn request_id() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// A path segment with everything but unreserved characters percent-encoded.
fn path_segment(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_read_as_text() {
        let resp = json!({
            "jobComplete": true,
            "rows": [
                {"f": [{"v": "1"}, {"v": null}, {"v": "abc"}, {"v": "1.5E10"}, {"v": "true"}]},
                {"f": [{"v": "2"}, {"v": "x"}, {"v": ""}, {"v": [{"v": "a"}]}, {"v": {"f": [{"v": "1"}]}}]},
            ]
        });
        let mut rows = Vec::new();
        read_rows(&resp, &mut rows).unwrap();
        assert_eq!(
            rows[0],
            vec![
                Some("1".into()),
                None,
                Some("abc".into()),
                Some("1.5E10".into()),
                Some("true".into())
            ]
        );
        assert_eq!(rows[1][2].as_deref(), Some(""));
        assert_eq!(rows[1][3].as_deref(), Some(r#"[{"v":"a"}]"#));
        let bad = json!({"rows": [{"x": []}]});
        assert!(read_rows(&bad, &mut rows).is_err());
    }

    #[test]
    fn api_errors_keep_reason_and_message_and_are_classified() {
        let body = |reason: &str, msg: &str| json!({"error": {"code": 400, "message": msg, "errors": [{"reason": reason, "message": msg}], "status": "INVALID_ARGUMENT"}});
        let t = Duration::from_secs(60);
        let e = api_error(
            400,
            &body("invalidQuery", "Unrecognized name: colx at [1:8]"),
            "bq",
            t,
        );
        assert!(
            matches!(&e, WarehouseError::Rejected { message } if message.contains("invalidQuery") && message.contains("Unrecognized name: colx")),
            "{e}"
        );
        let e = api_error(
            400,
            &body(
                "bytesBilledLimitExceeded",
                "Query exceeded limit for bytes billed: 1000.",
            ),
            "bq",
            t,
        );
        assert!(matches!(e, WarehouseError::Rejected { .. }), "{e}");
        let e = api_error(400, &body("timeout", "Job timed out"), "bq", t);
        assert!(matches!(e, WarehouseError::Timeout(d) if d == t), "{e}");
        let e = api_error(
            401,
            &body(
                "authError",
                "Request had invalid authentication credentials.",
            ),
            "bq",
            t,
        );
        assert!(
            matches!(
                e,
                WarehouseError::Connect {
                    retryable: false,
                    ..
                }
            ),
            "{e}"
        );
        let e = api_error(503, &body("backendError", "Backend error"), "bq", t);
        assert!(e.is_retryable(), "{e}");
        let e = api_error(502, &Value::Null, "bq", t);
        assert!(
            e.is_retryable() && e.to_string().contains("HTTP 502"),
            "{e}"
        );
        let long = "x".repeat(3 * super::super::MAX_ERROR_TEXT);
        let e = api_error(400, &body("invalidQuery", &long), "bq", t);
        assert!(e.to_string().chars().count() < super::super::MAX_ERROR_TEXT + 100);
    }

    const T: Duration = Duration::from_secs(60);

    #[test]
    fn a_complete_job_with_errors_and_no_schema_failed() {
        let failed = json!({"jobComplete": true, "errors": [{"reason": "invalidQuery", "message": "Syntax error"}]});
        assert!(matches!(
            check_job_errors(&failed, T),
            Err(WarehouseError::Rejected { .. })
        ));
        let running = json!({"jobComplete": false, "errors": [{"reason": "x", "message": "y"}]});
        assert!(check_job_errors(&running, T).is_ok());
        let warned = json!({"jobComplete": true, "schema": {"fields": [{"name": "n"}]},
            "errors": [{"reason": "x"}]});
        assert!(check_job_errors(&warned, T).is_ok());
        // bqemulator's shape of a failed job.
        let emulated = json!({"jobComplete": true, "schema": {"fields": []}, "rows": [],
            "errors": [{"reason": "notFound", "message": "Not found: Dataset p:x was not found in location US"}]});
        assert!(matches!(check_job_errors(&emulated, T),
            Err(WarehouseError::Rejected { message }) if message.contains("notFound")));
        let timed_out = json!({"jobComplete": true, "errors": [{"reason": "timeout", "message": "Job timed out"}]});
        assert!(
            matches!(check_job_errors(&timed_out, T), Err(WarehouseError::Timeout(d)) if d == T)
        );
    }

    #[test]
    fn dry_run_bytes_come_from_total_bytes_processed() {
        // The shape of a dry-run `jobs.query` response (REST reference, QueryResponse).
        let resp = json!({
            "kind": "bigquery#queryResponse",
            "schema": {"fields": [{"name": "n", "type": "INTEGER", "mode": "NULLABLE"}]},
            "jobReference": {"projectId": "p", "location": "EU"},
            "totalBytesProcessed": "123456789",
            "jobComplete": true,
            "cacheHit": false
        });
        assert_eq!(total_bytes_processed(&resp), Some(123_456_789));
        assert_eq!(
            total_bytes_processed(&json!({"totalBytesProcessed": 42})),
            Some(42)
        );
        assert_eq!(total_bytes_processed(&json!({})), None);
        // No job id in a dry run: nothing to poll or cancel.
        assert!(job_ref(&resp).is_none());
    }

    #[test]
    fn a_bad_key_is_reported_without_its_content() {
        let e = gcp_auth::CustomServiceAccount::from_json(
            r#"{"type": "service_account", "private_key": 12345678, "client_email": "secret-value"}"#,
        )
        .unwrap_err();
        let text = key_error(&e);
        assert!(text.contains("line 1"), "{text}");
        assert!(
            !text.contains("12345678") && !text.contains("secret-value"),
            "{text}"
        );
    }

    #[test]
    fn schema_fields_render_as_information_schema_data_types() {
        let f = |v: Value| data_type(&v);
        assert_eq!(f(json!({"name": "a", "type": "INTEGER"})), "INT64");
        assert_eq!(f(json!({"name": "a", "type": "INT64"})), "INT64");
        assert_eq!(f(json!({"name": "a", "type": "FLOAT"})), "FLOAT64");
        assert_eq!(f(json!({"name": "a", "type": "BOOLEAN"})), "BOOL");
        assert_eq!(f(json!({"name": "a", "type": "TIMESTAMP"})), "TIMESTAMP");
        assert_eq!(
            f(json!({"name": "a", "type": "NUMERIC", "precision": "10", "scale": "4"})),
            "NUMERIC(10, 4)"
        );
        assert_eq!(
            f(json!({"name": "a", "type": "BIGNUMERIC", "precision": "40"})),
            "BIGNUMERIC(40)"
        );
        assert_eq!(f(json!({"name": "a", "type": "NUMERIC"})), "NUMERIC");
        assert_eq!(
            f(json!({"name": "a", "type": "STRING", "maxLength": "20"})),
            "STRING(20)"
        );
        assert_eq!(
            f(json!({"name": "a", "type": "INTEGER", "mode": "REPEATED"})),
            "ARRAY<INT64>"
        );
        assert_eq!(
            f(json!({"name": "a", "type": "RECORD", "fields": [
                {"name": "x", "type": "STRING"},
                {"name": "y", "type": "FLOAT", "mode": "REPEATED"}
            ]})),
            "STRUCT<x STRING, y ARRAY<FLOAT64>>"
        );
        assert_eq!(
            f(json!({"name": "a", "type": "RANGE", "rangeElementType": {"type": "DATE"}})),
            "RANGE<DATE>"
        );
    }

    #[test]
    fn request_ids_are_uuids() {
        let (a, b) = (request_id(), request_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.as_bytes()[14], b'4');
        assert!(a.split('-').map(str::len).eq([8, 4, 4, 4, 12]));
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(path_segment("my-proj_1.x"), "my-proj_1.x");
        assert_eq!(path_segment("domain.com:proj"), "domain.com%3Aproj");
        assert_eq!(path_segment("a/b?c"), "a%2Fb%3Fc");
    }
}
