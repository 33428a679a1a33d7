//! Snowflake driver over the connector REST protocol, the one Snowflake's own drivers
//! (Python, Go, JDBC) speak:
//!
//! - `POST /session/v1/login-request`: password or key-pair (JWT, `SNOWFLAKE_JWT`) login;
//!   returns the session token.
//! - `POST /queries/v1/query-request?requestId=…`: one statement; the result comes inline
//!   as JSON (`rowset`) or Arrow IPC (`rowsetBase64`), larger ones also in `chunks`
//!   fetched from their (presigned) URLs. A statement still running after the server's
//!   wait answers `333333`/`333334` with a `getResultUrl` to follow until it is done.
//! - `POST /queries/v1/abort-request`: cancels a statement by its request id; sent when
//!   the client-side timeout fires and when the caller drops the future.
//! - `POST /session?delete=true`: closes a session when it is dropped (with the warehouse).
//!
//! Every statement carries `STATEMENT_TIMEOUT_IN_SECONDS` as a statement parameter (the
//! query-request body's `parameters`, as the connectors send theirs); the login also sets
//! it for the session, so the server enforces it even where a statement parameter of
//! that name were ignored.
//!
//! Values come back as the text the engine reads: integers as decimal digits, `NUMBER(p,s)`
//! with exactly `s` decimals (as Snowflake prints them), booleans `true`/`false`, floats in
//! the shortest form that reads back the same, dates `YYYY-MM-DD`, timestamps
//! `YYYY-MM-DD HH:MM:SS[.fraction]`, NULL as `None`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use async_trait::async_trait;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    ConnectOptions, Password, Row, SnowflakeAuth, SnowflakeTarget, Warehouse, WarehouseError,
    error_text,
};
use crate::sql::{Dialect, Relation, Snowflake};

/// Statements one diff runs at once, each on its own session (the virtual warehouse, not
/// the session, bounds the work; one statement per session also suits stand-ins that
/// serialise a session's statements).
const PARALLELISM: usize = 3;

/// How long past the statement timeout the client waits before it aborts the statement
/// itself (the server's own timeout should have fired by then).
const CLIENT_GRACE: Duration = Duration::from_secs(2);

/// The lifetime of a key-pair login JWT (Snowflake accepts at most one hour).
const JWT_LIFETIME_SECS: u64 = 59 * 60;

/// A Snowflake warehouse: a small pool of logged-in sessions, one statement at a time on
/// each (the engine runs a few statements at once).
pub struct SnowflakeWarehouse {
    login: Login,
    idle: tokio::sync::Mutex<Vec<Arc<Session>>>,
    statement_timeout: Duration,
}

/// What a login needs; the target holds the password or key (never printed).
struct Login {
    http: reqwest::Client,
    target: SnowflakeTarget,
    /// The URL as shown in messages (no secrets).
    shown: String,
    timeout_secs: u64,
}

struct Session {
    http: reqwest::Client,
    /// `protocol://host:port`.
    base: String,
    /// The session token: only ever sent in the `Authorization` header.
    token: Password,
    sequence: AtomicU64,
}

impl SnowflakeWarehouse {
    /// Logs in (password or key pair) now, so a bad URL, password or key fails before any
    /// work starts, and keeps the sessions.
    pub async fn connect(
        target: &SnowflakeTarget,
        options: &ConnectOptions,
    ) -> Result<Self, WarehouseError> {
        let shown = super::WarehouseUrl::Snowflake(target.clone()).to_string();
        let http = super::session_http_client(&shown)?;
        let login = Login {
            http,
            target: target.clone(),
            shown,
            timeout_secs: options.statement_timeout.as_secs().max(1),
        };
        // Every session the engine will use, logged in at once: a diff runs its per-side
        // counts beside the join from the start, and a login takes a round trip or more.
        let mut idle = Vec::with_capacity(PARALLELISM);
        for session in futures::future::join_all((0..PARALLELISM).map(|_| login.session())).await {
            idle.push(Arc::new(session?));
        }
        Ok(SnowflakeWarehouse {
            login,
            idle: tokio::sync::Mutex::new(idle),
            statement_timeout: options.statement_timeout,
        })
    }
}

impl Login {
    /// A login that cannot succeed as configured (refused credentials, a bad key, an
    /// unknown database): not worth retrying.
    fn error(&self, message: String) -> WarehouseError {
        WarehouseError::Connect {
            target: self.shown.clone(),
            source: error_text(&message).into(),
            retryable: false,
        }
    }

    /// Unreachable or busy: trying again could succeed.
    fn transient(&self, message: String) -> WarehouseError {
        WarehouseError::Connect {
            target: self.shown.clone(),
            source: error_text(&message).into(),
            retryable: true,
        }
    }

    async fn session(&self) -> Result<Session, WarehouseError> {
        let target = &self.target;
        let mut data = json!({
            "CLIENT_APP_ID": "prdiff",
            "CLIENT_APP_VERSION": env!("CARGO_PKG_VERSION"),
            "ACCOUNT_NAME": account_name(&target.account),
            "LOGIN_NAME": target.user,
            "CLIENT_ENVIRONMENT": { "APPLICATION": "prdiff", "OS": std::env::consts::OS },
            "SESSION_PARAMETERS": {
                "STATEMENT_TIMEOUT_IN_SECONDS": self.timeout_secs,
                "QUERY_TAG": "prdiff",
            },
        });
        let jwt = |pem: &str| {
            key_pair_jwt(&target.account, &target.user, pem, now_secs()).map_err(|e| self.error(e))
        };
        match &target.auth {
            SnowflakeAuth::Password(p) => data["PASSWORD"] = json!(p.expose()),
            SnowflakeAuth::PrivateKeyPath(path) => {
                let pem = std::fs::read_to_string(path).map_err(|e| {
                    self.error(format!(
                        "cannot read the private key file {}: {e}",
                        path.display()
                    ))
                })?;
                data["AUTHENTICATOR"] = json!("SNOWFLAKE_JWT");
                data["TOKEN"] = json!(jwt(&pem)?);
            }
            SnowflakeAuth::PrivateKeyPem(pem) => {
                data["AUTHENTICATOR"] = json!("SNOWFLAKE_JWT");
                data["TOKEN"] = json!(jwt(pem.expose())?);
            }
        }
        let base = target.base_url();
        let mut url = reqwest::Url::parse(&format!("{base}/session/v1/login-request"))
            .map_err(|e| self.error(e.to_string()))?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("requestId", &uuid4());
            q.append_pair("databaseName", &target.database);
            if let Some(s) = &target.schema {
                q.append_pair("schemaName", s);
            }
            if let Some(w) = &target.warehouse {
                q.append_pair("warehouse", w);
            }
            if let Some(r) = &target.role {
                q.append_pair("roleName", r);
            }
        }
        let response = self
            .http
            .post(url)
            .header("Accept", "application/json")
            .json(&json!({ "data": data }))
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .map_err(|e| self.transient(crate::error_chain(&e)))?;
        let status = response.status();
        let body: ApiResponse = response.json().await.map_err(|e| {
            let message = format!("HTTP {status}: the login answer is not Snowflake's JSON: {e}");
            if status.is_server_error() || status.as_u16() == 429 {
                self.transient(message)
            } else {
                self.error(message)
            }
        })?;
        if !body.success {
            return Err(self.error(format!(
                "login refused [{}]: {}",
                body.code_text(),
                body.message.as_deref().unwrap_or("no message")
            )));
        }
        let token = body
            .data
            .as_ref()
            .and_then(|d| d.get("token"))
            .and_then(Value::as_str)
            .ok_or_else(|| self.error("the login answer carries no session token".into()))?;
        Ok(Session {
            http: self.http.clone(),
            base,
            token: Password::new(token),
            sequence: AtomicU64::new(0),
        })
    }
}

impl Drop for Session {
    /// Closes the session on the server (best effort, when a runtime is at hand).
    fn drop(&mut self) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let request = self
            .authorized(self.http.post(format!(
                "{}/session?delete=true&requestId={}",
                self.base,
                uuid4()
            )))
            .json(&json!({}))
            .timeout(Duration::from_secs(10));
        rt.spawn(async move {
            if let Err(e) = request.send().await {
                tracing::debug!(error = %e, "could not close a Snowflake session");
            }
        });
    }
}

#[async_trait]
impl Warehouse for SnowflakeWarehouse {
    fn dialect(&self) -> &'static dyn Dialect {
        &Snowflake
    }

    fn parallelism(&self) -> usize {
        PARALLELISM
    }

    /// Runs one statement on an idle session (or a new one). If it outlives its timeout by
    /// [`CLIENT_GRACE`], or the caller stops waiting, an abort request is sent for it.
    async fn query(&self, sql: &str) -> Result<Vec<Row>, WarehouseError> {
        Ok(self.run(sql).await?.rows)
    }

    /// The columns as the statement `SELECT * FROM rel LIMIT 0` describes them in its
    /// answer's `rowtype` (name, type, precision, scale): Snowflake compiles the statement
    /// and reads no data, where `INFORMATION_SCHEMA.COLUMNS` is a slower catalog query (and
    /// leaves `DATETIME_PRECISION` empty). The types are spelled as that view spells them
    /// (`NUMBER(p,s)`, `TEXT`, `FLOAT`, `TIMESTAMP_NTZ(9)` …). A relation that does not
    /// exist or is not visible (`002003`, "does not exist or not authorized") has no
    /// columns.
    async fn columns(&self, rel: &Relation) -> Result<Vec<Row>, WarehouseError> {
        let sql = format!("SELECT * FROM {} LIMIT 0", Snowflake.relation(rel));
        match self.run(&sql).await {
            Ok(answer) => Ok(answer
                .rowtype
                .iter()
                .map(|c| vec![Some(c.name.clone()), Some(c.catalog_type())])
                .collect()),
            Err(RunError::Server { code, .. }) if code == OBJECT_NOT_FOUND => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Snowflake's error code for "Object '…' does not exist or not authorized" (also for a
/// database or schema).
const OBJECT_NOT_FOUND: &str = "002003";

/// A statement's answer: its columns and rows.
struct Answer {
    rowtype: Vec<ColumnInfo>,
    rows: Vec<Row>,
}

/// A failed statement: Snowflake's error code kept beside the error it becomes.
enum RunError {
    Server { code: String, error: WarehouseError },
    Other(WarehouseError),
}

impl From<RunError> for WarehouseError {
    fn from(e: RunError) -> Self {
        match e {
            RunError::Server { error, .. } | RunError::Other(error) => error,
        }
    }
}

impl SnowflakeWarehouse {
    /// Runs one statement on an idle session (or a new one). If it outlives its timeout by
    /// [`CLIENT_GRACE`], or the caller stops waiting, an abort request is sent for it.
    async fn run(&self, sql: &str) -> Result<Answer, RunError> {
        let idle = self.idle.lock().await.pop();
        let session = match idle {
            Some(s) => s,
            None => Arc::new(self.login.session().await.map_err(RunError::Other)?),
        };
        let request_id = uuid4();
        let mut abort = AbortOnDrop(Some((session.clone(), request_id.clone())));
        let started = std::time::Instant::now();
        let limit = self.statement_timeout + CLIENT_GRACE;
        let result = match tokio::time::timeout(
            limit,
            session.execute(sql, &request_id, self.statement_timeout),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!(
                    timeout_ms = self.statement_timeout.as_millis() as u64,
                    "statement outlived its timeout: aborting it on the server"
                );
                // `abort` fires when dropped here; the session is not reused.
                return Err(RunError::Other(WarehouseError::Timeout(
                    self.statement_timeout,
                )));
            }
        };
        abort.0 = None;
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            ok = result.is_ok(),
            sql,
            "snowflake statement"
        );
        {
            let mut idle = self.idle.lock().await;
            if idle.len() < PARALLELISM {
                idle.push(session);
            }
        }
        result.map_err(|e| {
            let code = match &e {
                CallError::Server { code, .. } => Some(code.clone()),
                CallError::Transport(_) => None,
            };
            let error = e.into_warehouse_error(self.statement_timeout);
            match code {
                Some(code) => RunError::Server { code, error },
                None => RunError::Other(error),
            }
        })
    }
}

/// Sends an abort request for the statement when dropped while set: a client-side
/// timeout, or a caller that stopped waiting, must not leave it running (and billing).
struct AbortOnDrop(Option<(Arc<Session>, String)>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        let Some((session, request_id)) = self.0.take() else {
            return;
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = session.abort(&request_id).await {
                    tracing::warn!(error = %e, "could not abort a statement on Snowflake");
                }
            });
        }
    }
}

/// A failed call, before it becomes a [`WarehouseError`].
#[derive(Debug)]
enum CallError {
    /// Snowflake answered `success: false`.
    Server {
        code: String,
        sql_state: Option<String>,
        message: String,
    },
    /// Transport, HTTP status or an answer that does not parse.
    Transport(String),
}

impl CallError {
    fn into_warehouse_error(self, timeout: Duration) -> WarehouseError {
        match self {
            CallError::Server {
                code,
                sql_state,
                message,
            } => {
                let state = sql_state.unwrap_or_default();
                let text = if state.starts_with("22") {
                    redact_quoted(&message)
                } else {
                    message
                };
                let message = error_text(&if state.is_empty() {
                    format!("[{code}] {text}")
                } else {
                    format!("[{code}, SQLSTATE {state}] {text}")
                });
                // 000630: statement reached its timeout; 000604: statement cancelled.
                if code == "000630" || code == "000604" {
                    WarehouseError::Timeout(timeout)
                } else if access_denied(&code, &state) {
                    WarehouseError::Denied { message }
                } else if state.starts_with("42")
                    || state.starts_with("22")
                    || compilation_error(&code)
                {
                    // Compilation errors (syntax, unknown object or column, no
                    // privilege) and data exceptions: the input's to fix.
                    WarehouseError::Rejected { message }
                } else {
                    WarehouseError::Other { message }
                }
            }
            CallError::Transport(message) => WarehouseError::Other {
                message: error_text(&message),
            },
        }
    }
}

/// Authentication and authorization failures that another try cannot fix: the 390xxx
/// login codes (390100 incorrect username or password, 390144 invalid JWT, …) except the
/// session ones a new login renews (390104, 390111, 390112, 390114), SQLSTATE class 28,
/// and insufficient privileges (003001, SQLSTATE 42501).
fn access_denied(code: &str, state: &str) -> bool {
    const SESSION: [&str; 4] = ["390104", "390111", "390112", "390114"];
    (code.starts_with("390") && !SESSION.contains(&code))
        || state.starts_with("28")
        || state == "42501"
        || code == "003001"
}

/// Whether a Snowflake error code is a SQL compilation error (numbered 000900–002999:
/// 000904 invalid identifier, 001003 syntax error, 002003 object does not exist, 002043
/// object does not exist or operation cannot be performed, …).
fn compilation_error(code: &str) -> bool {
    code.len() == 6 && code.parse::<u32>().is_ok_and(|n| (900..3000).contains(&n))
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Server { code, message, .. } => write!(f, "[{code}] {message}"),
            CallError::Transport(m) => f.write_str(m),
        }
    }
}

/// The envelope of every Snowflake REST answer.
#[derive(Debug, Deserialize)]
struct ApiResponse {
    #[serde(default)]
    success: bool,
    #[serde(default)]
    code: Option<Value>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    data: Option<Value>,
}

impl ApiResponse {
    fn code_text(&self) -> String {
        match &self.code {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => format!("{:06}", n.as_u64().unwrap_or(0)),
            _ => String::new(),
        }
    }

    fn still_running(&self) -> bool {
        matches!(self.code_text().as_str(), "333333" | "333334")
    }

    fn into_error(self) -> CallError {
        let sql_state = self
            .data
            .as_ref()
            .and_then(|d| d.get("sqlState"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        CallError::Server {
            code: self.code_text(),
            sql_state,
            message: self.message.unwrap_or_else(|| "no message".into()),
        }
    }
}

/// One column of `rowtype`.
#[derive(Debug, Clone, Deserialize)]
struct ColumnInfo {
    #[serde(default)]
    name: String,
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    precision: Option<i64>,
    #[serde(default)]
    scale: Option<i64>,
}

impl ColumnInfo {
    /// The column's type as `INFORMATION_SCHEMA.COLUMNS` spells it with precision and scale
    /// (what the Snowflake dialect's catalog query returns): `NUMBER(p,s)` for `fixed`,
    /// `FLOAT` for `real`, `TIMESTAMP_NTZ(scale)` …, and the type's own name upper-cased
    /// otherwise (`TEXT`, `BOOLEAN`, `DATE`, `TIME`, `VARIANT`, `BINARY` …).
    /// <https://docs.snowflake.com/en/sql-reference/info-schema/columns>
    fn catalog_type(&self) -> String {
        let kind = self.kind.to_ascii_uppercase();
        match kind.as_str() {
            "FIXED" => format!(
                "NUMBER({},{})",
                self.precision.unwrap_or(38),
                self.scale.unwrap_or(0)
            ),
            "REAL" => "FLOAT".to_owned(),
            k if k.starts_with("TIMESTAMP") => match self.scale {
                Some(s) => format!("{k}({s})"),
                None => kind,
            },
            _ => kind,
        }
    }
}

/// The parts of a query answer's `data` prdiff reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryData {
    #[serde(default)]
    rowtype: Vec<ColumnInfo>,
    #[serde(default)]
    query_result_format: Option<String>,
    #[serde(default)]
    rowset: Option<Vec<Vec<Value>>>,
    #[serde(default)]
    rowset_base64: Option<String>,
    #[serde(default)]
    chunks: Vec<Chunk>,
    #[serde(default)]
    chunk_headers: Option<HashMap<String, String>>,
    #[serde(default)]
    qrmk: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Chunk {
    url: String,
}

impl Session {
    fn authorized(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        req.header(
            "Authorization",
            format!("Snowflake Token=\"{}\"", self.token.expose()),
        )
        .header("Accept", "application/snowflake")
    }

    async fn call(
        &self,
        req: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<ApiResponse, CallError> {
        let req = self.authorized(req).timeout(timeout);
        // A pooled connection the server closed while it was idle fails the next request
        // before any answer ("connection closed before message completed"): send it once
        // more on a fresh connection. prdiff sends only reads, and the request id lets
        // Snowflake recognise a statement it already has.
        let mut retried = false;
        let response = loop {
            let attempt = req.try_clone().expect("a JSON or empty body clones");
            match attempt.send().await {
                Ok(r) => break r,
                Err(e) if !retried && e.is_request() && !e.is_timeout() => {
                    tracing::debug!(error = %e, "request failed before an answer: once more");
                    retried = true;
                }
                Err(e) => return Err(CallError::Transport(crate::error_chain(&e))),
            }
        };
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| CallError::Transport(crate::error_chain(&e)))?;
        match serde_json::from_slice::<ApiResponse>(&bytes) {
            Ok(r) => Ok(r),
            Err(e) if status.is_success() => Err(CallError::Transport(format!(
                "HTTP {status}: the answer is not Snowflake's JSON: {e}"
            ))),
            Err(_) => Err(CallError::Transport(format!("HTTP {status}"))),
        }
    }

    /// Runs one statement and reads all its rows.
    async fn execute(
        &self,
        sql: &str,
        request_id: &str,
        statement_timeout: Duration,
    ) -> Result<Answer, CallError> {
        let http_timeout = statement_timeout + CLIENT_GRACE * 2;
        let body = json!({
            "sqlText": sql,
            "asyncExec": false,
            "sequenceId": self.sequence.fetch_add(1, Ordering::Relaxed) + 1,
            "querySubmissionTime": now_millis(),
            "parameters": {
                "STATEMENT_TIMEOUT_IN_SECONDS": statement_timeout.as_secs().max(1),
            },
        });
        let url = format!(
            "{}/queries/v1/query-request?requestId={request_id}",
            self.base
        );
        let mut answer = self
            .call(self.http.post(url).json(&body), http_timeout)
            .await?;
        // Still running: follow the result URL until it is done.
        while answer.still_running() {
            let next = answer
                .data
                .as_ref()
                .and_then(|d| d.get("getResultUrl"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    CallError::Transport("a running statement without a getResultUrl".into())
                })?;
            let url = if next.starts_with("http://") || next.starts_with("https://") {
                next.to_owned()
            } else {
                format!("{}{next}", self.base)
            };
            tokio::time::sleep(Duration::from_millis(50)).await;
            answer = self.call(self.http.get(url), http_timeout).await?;
        }
        if !answer.success {
            return Err(answer.into_error());
        }
        let data: QueryData = serde_json::from_value(answer.data.unwrap_or(Value::Null))
            .map_err(|e| CallError::Transport(format!("unexpected query answer: {e}")))?;
        let arrow = data
            .query_result_format
            .as_deref()
            .is_some_and(|f| f.eq_ignore_ascii_case("arrow"));
        let mut rows = Vec::new();
        if arrow {
            if let Some(b64) = data.rowset_base64.as_deref().filter(|s| !s.is_empty()) {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| CallError::Transport(format!("rowsetBase64: {e}")))?;
                read_arrow(&bytes, &data.rowtype, &mut rows)?;
            }
        } else if let Some(rowset) = &data.rowset {
            read_json_rows(rowset, &data.rowtype, &mut rows)?;
        }
        for chunk in &data.chunks {
            let bytes = self.fetch_chunk(chunk, &data, http_timeout).await?;
            if arrow {
                read_arrow(&bytes, &data.rowtype, &mut rows)?;
            } else {
                // A JSON chunk is the rows without the enclosing brackets.
                let mut text = Vec::with_capacity(bytes.len() + 2);
                text.push(b'[');
                text.extend_from_slice(&bytes);
                text.push(b']');
                let rowset: Vec<Vec<Value>> = serde_json::from_slice(&text)
                    .map_err(|e| CallError::Transport(format!("JSON result chunk: {e}")))?;
                read_json_rows(&rowset, &data.rowtype, &mut rows)?;
            }
        }
        Ok(Answer {
            rowtype: data.rowtype,
            rows,
        })
    }

    /// Downloads one result chunk from its URL with the headers Snowflake gave (or the
    /// SSE-C headers of its `qrmk`), never with the session token.
    async fn fetch_chunk(
        &self,
        chunk: &Chunk,
        data: &QueryData,
        timeout: Duration,
    ) -> Result<Vec<u8>, CallError> {
        let mut req = self.http.get(&chunk.url).timeout(timeout);
        if let Some(headers) = &data.chunk_headers {
            for (k, v) in headers {
                req = req.header(k, v);
            }
        } else if let Some(qrmk) = &data.qrmk {
            req = req
                .header("x-amz-server-side-encryption-customer-algorithm", "AES256")
                .header("x-amz-server-side-encryption-customer-key", qrmk);
        }
        let response = req.send().await.map_err(|e| {
            CallError::Transport(format!("result chunk: {}", error_chain_no_url(&e)))
        })?;
        let status = response.status();
        if !status.is_success() {
            return Err(CallError::Transport(format!("result chunk: HTTP {status}")));
        }
        response
            .bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| CallError::Transport(format!("result chunk: {}", error_chain_no_url(&e))))
    }

    async fn abort(&self, request_id: &str) -> Result<(), CallError> {
        let url = format!(
            "{}/queries/v1/abort-request?requestId={}",
            self.base,
            uuid4()
        );
        let answer = self
            .call(
                self.http
                    .post(url)
                    .json(&json!({ "requestId": request_id })),
                Duration::from_secs(15),
            )
            .await?;
        if answer.success {
            Ok(())
        } else {
            Err(answer.into_error())
        }
    }
}

/// What went wrong with a chunk download, without the URL (presigned chunk URLs carry
/// credentials in their query).
fn error_chain_no_url(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else if e.is_body() || e.is_decode() {
        "could not read the body".into()
    } else {
        "request failed".into()
    }
}

// ---------------------------------------------------------------------------------------
// Values as text

fn read_json_rows(
    rowset: &[Vec<Value>],
    rowtype: &[ColumnInfo],
    out: &mut Vec<Row>,
) -> Result<(), CallError> {
    for raw in rowset {
        let mut row = Vec::with_capacity(raw.len());
        for (i, v) in raw.iter().enumerate() {
            let text = match v {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                Value::Bool(b) => Some(b.to_string()),
                Value::Number(n) => Some(n.to_string()),
                other => Some(other.to_string()),
            };
            let col = rowtype.get(i);
            row.push(match (text, col) {
                (Some(t), Some(c)) => Some(json_value_text(&t, c)?),
                (t, _) => t,
            });
        }
        out.push(row);
    }
    Ok(())
}

/// A JSON result value (Snowflake's wire text) as the engine's text.
fn json_value_text(t: &str, col: &ColumnInfo) -> Result<String, CallError> {
    let scale = col.scale.unwrap_or(0).max(0) as u32;
    let bad = || CallError::Transport(format!("a {} value that does not parse", col.kind));
    Ok(match col.kind.to_ascii_lowercase().as_str() {
        "fixed" => pad_scale(t, scale),
        "boolean" => match t {
            "1" | "TRUE" | "true" | "True" => "true".into(),
            "0" | "FALSE" | "false" | "False" => "false".into(),
            _ => return Err(bad()),
        },
        "real" => match t.parse::<f64>() {
            Ok(f) => f.to_string(),
            Err(_) => t.to_owned(),
        },
        // Days since the epoch.
        "date" => date_text(t.parse::<i64>().map_err(|_| bad())?).ok_or_else(bad)?,
        // Seconds since the epoch (or midnight) with `scale` decimals; TIMESTAMP_TZ
        // adds its offset (minutes + 1440) after a space.
        "timestamp_ntz" | "timestamp_ltz" | "timestamp_tz" | "time" => {
            let mut parts = t.split(' ');
            let secs = parts.next().unwrap_or_default();
            let nanos = decimal_to_nanos(secs).ok_or_else(bad)?;
            let offset_min = match parts.next() {
                Some(o) => o.parse::<i64>().map_err(|_| bad())? - 1440,
                None => 0,
            };
            if col.kind.eq_ignore_ascii_case("time") {
                time_text(nanos, scale)
            } else {
                timestamp_text(
                    nanos,
                    scale,
                    offset_min,
                    col.kind.eq_ignore_ascii_case("timestamp_tz"),
                )
                .ok_or_else(bad)?
            }
        }
        _ => t.to_owned(),
    })
}

/// Appends an Arrow IPC stream's rows as text.
fn read_arrow(bytes: &[u8], rowtype: &[ColumnInfo], out: &mut Vec<Row>) -> Result<(), CallError> {
    let reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
        .map_err(|e| CallError::Transport(format!("Arrow result: {e}")))?;
    for batch in reader {
        let batch = batch.map_err(|e| CallError::Transport(format!("Arrow result: {e}")))?;
        read_batch(&batch, rowtype, out)?;
    }
    Ok(())
}

fn read_batch(
    batch: &RecordBatch,
    rowtype: &[ColumnInfo],
    out: &mut Vec<Row>,
) -> Result<(), CallError> {
    let schema = batch.schema();
    let mut columns: Vec<Vec<Option<String>>> = Vec::with_capacity(batch.num_columns());
    for (i, array) in batch.columns().iter().enumerate() {
        let field = schema.field(i);
        let meta = field.metadata();
        let logical = rowtype
            .get(i)
            .map(|c| c.kind.to_ascii_lowercase())
            .or_else(|| meta.get("logicalType").map(|s| s.to_ascii_lowercase()))
            .unwrap_or_default();
        let scale = rowtype
            .get(i)
            .and_then(|c| c.scale)
            .or_else(|| meta.get("scale").and_then(|s| s.parse().ok()))
            .unwrap_or(0)
            .max(0) as u32;
        columns.push(arrow_column_text(array.as_ref(), &logical, scale)?);
    }
    for r in 0..batch.num_rows() {
        out.push(columns.iter_mut().map(|c| c[r].take()).collect());
    }
    Ok(())
}

fn arrow_column_text(
    array: &dyn Array,
    logical: &str,
    scale: u32,
) -> Result<Vec<Option<String>>, CallError> {
    let n = array.len();
    let each = |f: &dyn Fn(usize) -> Option<String>| -> Vec<Option<String>> {
        (0..n)
            .map(|i| if array.is_null(i) { None } else { f(i) })
            .collect()
    };
    // Integers carry a logical type: a scaled NUMBER, or epoch/midnight units for
    // timestamps and times with scale ≤ 7.
    let int_text = |v: i128| -> Option<String> {
        match logical {
            "timestamp_ntz" | "timestamp_ltz" => {
                timestamp_text(scaled_to_nanos(v, scale)?, scale, 0, false)
            }
            "time" => Some(time_text(scaled_to_nanos(v, scale)?, scale)),
            "date" => date_text(v as i64),
            _ => Some(scaled_text(v, scale)),
        }
    };
    Ok(match array.data_type() {
        DataType::Null => vec![None; n],
        DataType::Boolean => {
            let a = array.as_boolean();
            each(&|i| Some(a.value(i).to_string()))
        }
        DataType::Int8 => {
            let a = array.as_primitive::<Int8Type>();
            each(&|i| int_text(a.value(i) as i128))
        }
        DataType::Int16 => {
            let a = array.as_primitive::<Int16Type>();
            each(&|i| int_text(a.value(i) as i128))
        }
        DataType::Int32 => {
            let a = array.as_primitive::<Int32Type>();
            each(&|i| int_text(a.value(i) as i128))
        }
        DataType::Int64 => {
            let a = array.as_primitive::<Int64Type>();
            each(&|i| int_text(a.value(i) as i128))
        }
        DataType::Decimal128(_, s) => {
            let a = array.as_primitive::<Decimal128Type>();
            let s = (*s).max(0) as u32;
            each(&|i| Some(scaled_text(a.value(i), s)))
        }
        DataType::Float64 => {
            let a = array.as_primitive::<Float64Type>();
            each(&|i| Some(a.value(i).to_string()))
        }
        DataType::Float32 => {
            let a = array.as_primitive::<Float32Type>();
            each(&|i| Some(a.value(i).to_string()))
        }
        DataType::Utf8 => {
            let a = array.as_string::<i32>();
            each(&|i| Some(a.value(i).to_owned()))
        }
        DataType::LargeUtf8 => {
            let a = array.as_string::<i64>();
            each(&|i| Some(a.value(i).to_owned()))
        }
        DataType::Utf8View => {
            let a = array.as_string_view();
            each(&|i| Some(a.value(i).to_owned()))
        }
        DataType::Binary => {
            let a = array.as_binary::<i32>();
            each(&|i| Some(hex::encode_upper(a.value(i))))
        }
        DataType::Date32 => {
            let a = array.as_primitive::<Date32Type>();
            each(&|i| date_text(a.value(i) as i64))
        }
        // TIMESTAMP_* as {epoch seconds, fraction nanoseconds[, timezone]}.
        DataType::Struct(fields) => {
            let s = array.as_struct();
            let col = |name: &str| {
                fields
                    .iter()
                    .position(|f| f.name() == name)
                    .map(|p| s.column(p).clone())
            };
            // With a `fraction` (scale above 7, or TIMESTAMP_TZ above 3) the epoch is in
            // seconds; without, it is in units of 10^-scale seconds.
            let Some(epoch) = col("epoch") else {
                return Err(CallError::Transport(format!(
                    "an Arrow struct column of type {logical} without an epoch"
                )));
            };
            let epoch = epoch
                .as_primitive_opt::<Int64Type>()
                .ok_or_else(|| CallError::Transport("timestamp epoch is not int64".into()))?
                .clone();
            let fraction = match col("fraction") {
                Some(f) => Some(
                    f.as_primitive_opt::<Int32Type>()
                        .ok_or_else(|| {
                            CallError::Transport("timestamp fraction is not int32".into())
                        })?
                        .clone(),
                ),
                None => None,
            };
            let tz = col("timezone").and_then(|c| c.as_primitive_opt::<Int32Type>().cloned());
            each(&|i| {
                let nanos = match &fraction {
                    Some(f) => epoch.value(i) as i128 * 1_000_000_000 + f.value(i) as i128,
                    None => scaled_to_nanos(epoch.value(i) as i128, scale)?,
                };
                let offset = tz.as_ref().map(|t| t.value(i) as i64 - 1440);
                timestamp_text(nanos, scale, offset.unwrap_or(0), offset.is_some())
            })
        }
        other => {
            return Err(CallError::Transport(format!(
                "an Arrow column of type {other} ({logical}) that prdiff does not read"
            )));
        }
    })
}

/// `v / 10^scale` as Snowflake prints a `NUMBER(p, scale)`: exactly `scale` decimals.
fn scaled_text(v: i128, scale: u32) -> String {
    if scale == 0 {
        return v.to_string();
    }
    let digits = v.unsigned_abs().to_string();
    let scale = scale as usize;
    let padded = if digits.len() <= scale {
        format!("{}{digits}", "0".repeat(scale + 1 - digits.len()))
    } else {
        digits
    };
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{}{int}.{frac}", if v < 0 { "-" } else { "" })
}

/// A decimal text padded to exactly `scale` decimals (JSON results may drop trailing
/// zeros).
fn pad_scale(t: &str, scale: u32) -> String {
    if scale == 0 || t.contains(['e', 'E']) {
        return t.to_owned();
    }
    let scale = scale as usize;
    match t.split_once('.') {
        Some((_, frac)) if frac.len() >= scale => t.to_owned(),
        Some((_, frac)) => format!("{t}{}", "0".repeat(scale - frac.len())),
        None => format!("{t}.{}", "0".repeat(scale)),
    }
}

/// An integer in units of `10^-scale` seconds as nanoseconds.
fn scaled_to_nanos(v: i128, scale: u32) -> Option<i128> {
    if scale > 9 {
        return None;
    }
    v.checked_mul(10i128.pow(9 - scale))
}

/// `"seconds[.fraction]"` as nanoseconds.
fn decimal_to_nanos(t: &str) -> Option<i128> {
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t),
    };
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i128 = int.parse().ok()?;
    let frac_n: i128 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    let n = secs * 1_000_000_000 + frac_n;
    Some(if neg { -n } else { n })
}

fn date_text(days: i64) -> Option<String> {
    let d = chrono::DateTime::from_timestamp(days.checked_mul(86_400)?, 0)?;
    Some(d.format("%Y-%m-%d").to_string())
}

/// `YYYY-MM-DD HH:MM:SS[.fraction]` with `scale` fractional digits (and ` +HH:MM` when
/// `with_offset`); `nanos` since the epoch in UTC, shown at `offset_min`.
fn timestamp_text(nanos: i128, scale: u32, offset_min: i64, with_offset: bool) -> Option<String> {
    let secs = nanos.div_euclid(1_000_000_000) as i64;
    let sub = nanos.rem_euclid(1_000_000_000) as u32;
    let local = chrono::DateTime::from_timestamp(secs.checked_add(offset_min * 60)?, sub)?;
    let mut out = local.format("%Y-%m-%d %H:%M:%S").to_string();
    push_fraction(&mut out, sub, scale);
    if with_offset {
        let sign = if offset_min < 0 { '-' } else { '+' };
        let m = offset_min.abs();
        out.push_str(&format!(" {sign}{:02}:{:02}", m / 60, m % 60));
    }
    Some(out)
}

fn time_text(nanos: i128, scale: u32) -> String {
    let secs = nanos.div_euclid(1_000_000_000);
    let sub = nanos.rem_euclid(1_000_000_000) as u32;
    let mut out = format!(
        "{:02}:{:02}:{:02}",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60
    );
    push_fraction(&mut out, sub, scale);
    out
}

fn push_fraction(out: &mut String, nanos: u32, scale: u32) {
    let scale = scale.min(9) as usize;
    if scale > 0 {
        out.push('.');
        out.push_str(&format!("{nanos:09}")[..scale]);
    }
}

/// `text` with every single- or double-quoted part replaced by `'…'` / `"…"`: data
/// exceptions quote the offending value, which comes from the rows.
fn redact_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut inside: Option<char> = None;
    for c in text.chars() {
        match inside {
            None if c == '\'' || c == '"' => {
                out.push(c);
                out.push('…');
                inside = Some(c);
            }
            None => out.push(c),
            Some(q) if c == q => {
                out.push(q);
                inside = None;
            }
            Some(_) => {}
        }
    }
    if let Some(q) = inside {
        out.push(q);
    }
    out
}

// ---------------------------------------------------------------------------------------
// Login helpers

/// The account name Snowflake expects at login and in JWT claims: the account
/// identifier without its region or cloud suffix, upper-cased.
fn account_name(account: &str) -> String {
    let account = if account.contains(".global") {
        account.split('-').next().unwrap_or(account)
    } else {
        account.split('.').next().unwrap_or(account)
    };
    account.to_ascii_uppercase()
}

/// The key-pair login token: a JWT signed RS256 with the user's private key, issued by
/// `ACCOUNT.USER.SHA256:<fingerprint of the public key>` for `ACCOUNT.USER`.
/// <https://docs.snowflake.com/en/developer-guide/sql-api/authenticating#using-key-pair-authentication>
pub(crate) fn key_pair_jwt(
    account: &str,
    user: &str,
    pem: &str,
    now: u64,
) -> Result<String, String> {
    let fingerprint = public_key_fingerprint(pem)?;
    let qualified = format!("{}.{}", account_name(account), user.to_ascii_uppercase());
    let claims = json!({
        "iss": format!("{qualified}.{fingerprint}"),
        "sub": qualified,
        "iat": now,
        "exp": now + JWT_LIFETIME_SECS,
    });
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes())
        .map_err(|e| format!("the private key is not an RSA PEM key: {e}"))?;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &key,
    )
    .map_err(|e| format!("cannot sign the login token: {e}"))
}

/// `SHA256:<base64 of the SHA-256 of the public key's DER SubjectPublicKeyInfo>`, the
/// fingerprint Snowflake keeps as `RSA_PUBLIC_KEY_FP`.
pub(crate) fn public_key_fingerprint(pem: &str) -> Result<String, String> {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::{KeyPair as _, RsaKeyPair};
    use sha2::Digest;
    if pem.contains("ENCRYPTED PRIVATE KEY") {
        return Err(
            "the private key is encrypted: prdiff needs an unencrypted PKCS#8 or PKCS#1 key".into(),
        );
    }
    let (pkcs1, der) = pem_body(pem)?;
    let pair = if pkcs1 {
        RsaKeyPair::from_der(&der)
    } else {
        RsaKeyPair::from_pkcs8(&der)
    }
    .map_err(|e| format!("the private key is not an RSA key: {e}"))?;
    let spki = pair
        .public_key()
        .as_der()
        .map_err(|_| "cannot encode the public key".to_owned())?;
    let digest = sha2::Sha256::digest(spki.as_ref());
    Ok(format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    ))
}

/// The DER inside a PEM private key, and whether it is PKCS#1 (`RSA PRIVATE KEY`).
fn pem_body(pem: &str) -> Result<(bool, Vec<u8>), String> {
    let mut pkcs1 = None;
    let mut body = String::new();
    let mut inside = false;
    for line in pem.lines().map(str::trim) {
        if let Some(label) = line.strip_prefix("-----BEGIN ") {
            if label.starts_with("RSA PRIVATE KEY") {
                pkcs1 = Some(true);
            } else if label.starts_with("PRIVATE KEY") {
                pkcs1 = Some(false);
            } else {
                return Err("the PEM block is not a private key".into());
            }
            inside = true;
        } else if line.starts_with("-----END ") {
            break;
        } else if inside {
            body.push_str(line);
        }
    }
    let pkcs1 = pkcs1.ok_or("no PEM private key (-----BEGIN PRIVATE KEY-----)")?;
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|_| "the PEM private key is not valid base64".to_owned())?;
    Ok((pkcs1, der))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A random (version 4) UUID: request ids let Snowflake deduplicate retries and name the
/// statement to abort.
fn uuid4() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_with_exactly_their_scale() {
        assert_eq!(scaled_text(150, 2), "1.50");
        assert_eq!(scaled_text(-5, 3), "-0.005");
        assert_eq!(scaled_text(0, 2), "0.00");
        assert_eq!(scaled_text(-123, 0), "-123");
        assert_eq!(
            scaled_text(i128::MAX, 0),
            "170141183460469231731687303715884105727"
        );
        assert_eq!(pad_scale("1.5", 2), "1.50");
        assert_eq!(pad_scale("7", 2), "7.00");
        assert_eq!(pad_scale("-0.125", 3), "-0.125");
        assert_eq!(pad_scale("42", 0), "42");
    }

    #[test]
    fn json_values_become_the_engine_text() {
        let col = |kind: &str, scale: i64| ColumnInfo {
            name: "C".into(),
            kind: kind.into(),
            precision: None,
            scale: Some(scale),
        };
        let t = |v: &str, c: ColumnInfo| json_value_text(v, &c).unwrap();
        assert_eq!(t("1", col("boolean", 0)), "true");
        assert_eq!(t("0", col("boolean", 0)), "false");
        assert_eq!(t("2.5", col("fixed", 3)), "2.500");
        assert_eq!(t("19782", col("date", 0)), "2024-02-29");
        assert_eq!(
            t("1709251199.000001000", col("timestamp_ntz", 6)),
            "2024-02-29 23:59:59.000001"
        );
        assert_eq!(
            t("1709251199.5 1500", col("timestamp_tz", 3)),
            "2024-03-01 00:59:59.500 +01:00"
        );
        assert_eq!(t("3661.25", col("time", 2)), "01:01:01.25");
        assert_eq!(t("1.0E-1", col("real", 0)), "0.1");
        assert!(json_value_text("x", &col("boolean", 0)).is_err());
    }

    #[test]
    fn arrow_results_read_as_text() {
        use arrow_array::{
            BooleanArray, Date32Array, Decimal128Array, Float64Array, Int64Array, StringArray,
            StructArray,
        };
        use arrow_schema::{Field, Schema};
        use std::sync::Arc;
        let ts = StructArray::from(vec![
            (
                Arc::new(Field::new("epoch", DataType::Int64, false)),
                Arc::new(Int64Array::from(vec![1_709_251_199, 0])) as Arc<dyn Array>,
            ),
            (
                Arc::new(Field::new("fraction", DataType::Int32, false)),
                Arc::new(arrow_array::Int32Array::from(vec![123_000_000, 0])) as Arc<dyn Array>,
            ),
        ]);
        let schema = Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("d", DataType::Decimal128(10, 2), true),
            Field::new("price", DataType::Int64, true),
            Field::new("b", DataType::Boolean, true),
            Field::new("s", DataType::Utf8, true),
            Field::new("f", DataType::Float64, true),
            Field::new("day", DataType::Date32, true),
            Field::new("ts", ts.data_type().clone(), true),
        ]);
        let batch = RecordBatch::try_new(
            Arc::new(schema.clone()),
            vec![
                Arc::new(Int64Array::from(vec![Some(-7), None])),
                Arc::new(
                    Decimal128Array::from(vec![Some(150), Some(-5)])
                        .with_precision_and_scale(10, 2)
                        .unwrap(),
                ),
                Arc::new(Int64Array::from(vec![Some(1234), Some(5)])),
                Arc::new(BooleanArray::from(vec![Some(true), Some(false)])),
                Arc::new(StringArray::from(vec![Some("δέλτα"), Some("")])),
                Arc::new(Float64Array::from(vec![Some(0.1), Some(2.0)])),
                Arc::new(Date32Array::from(vec![Some(19_782), None])),
                Arc::new(ts),
            ],
        )
        .unwrap();
        let mut bytes = Vec::new();
        {
            let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut bytes, &schema).unwrap();
            w.write(&batch).unwrap();
            w.finish().unwrap();
        }
        let rowtype: Vec<ColumnInfo> = [
            ("fixed", 0),
            ("fixed", 2),
            ("fixed", 2),
            ("boolean", 0),
            ("text", 0),
            ("real", 0),
            ("date", 0),
            ("timestamp_ntz", 3),
        ]
        .iter()
        .map(|(k, s)| ColumnInfo {
            name: "C".into(),
            kind: (*k).into(),
            precision: None,
            scale: Some(*s),
        })
        .collect();
        let mut rows = Vec::new();
        read_arrow(&bytes, &rowtype, &mut rows).unwrap();
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(
            rows,
            vec![
                vec![
                    s("-7"),
                    s("1.50"),
                    s("12.34"),
                    s("true"),
                    s("δέλτα"),
                    s("0.1"),
                    s("2024-02-29"),
                    s("2024-02-29 23:59:59.123")
                ],
                vec![
                    None,
                    s("-0.05"),
                    s("0.05"),
                    s("false"),
                    s(""),
                    s("2"),
                    None,
                    s("1970-01-01 00:00:00.000")
                ],
            ]
        );
    }

    #[test]
    fn timestamp_tz_structs_without_a_fraction_carry_a_scaled_epoch() {
        use arrow_array::{Int32Array, Int64Array, StructArray};
        use arrow_schema::Field;
        use std::sync::Arc;
        // TIMESTAMP_TZ(3): epoch in milliseconds, offset +01:00 (1440 + 60).
        let ts = StructArray::from(vec![
            (
                Arc::new(Field::new("epoch", DataType::Int64, false)),
                Arc::new(Int64Array::from(vec![1_709_251_199_500])) as Arc<dyn Array>,
            ),
            (
                Arc::new(Field::new("timezone", DataType::Int32, false)),
                Arc::new(Int32Array::from(vec![1500])) as Arc<dyn Array>,
            ),
        ]);
        assert_eq!(
            arrow_column_text(&ts, "timestamp_tz", 3).unwrap(),
            vec![Some("2024-03-01 00:59:59.500 +01:00".to_owned())]
        );
    }

    #[test]
    fn data_exception_values_are_redacted() {
        assert_eq!(
            redact_quoted("Numeric value 'ada@example.com' is not recognized"),
            "Numeric value '…' is not recognized"
        );
        assert_eq!(redact_quoted(r#"bad "x" and 'y"#), r#"bad "…" and '…'"#);
        let e = CallError::Server {
            code: "100038".into(),
            sql_state: Some("22018".into()),
            message: "Numeric value 'secret' is not recognized".into(),
        }
        .into_warehouse_error(Duration::from_secs(1));
        assert!(matches!(e, WarehouseError::Rejected { .. }), "{e}");
        assert!(!e.to_string().contains("secret"), "{e}");
        let e = CallError::Server {
            code: "000630".into(),
            sql_state: Some("57014".into()),
            message: "Statement reached its statement or warehouse timeout".into(),
        }
        .into_warehouse_error(Duration::from_secs(1));
        assert!(matches!(e, WarehouseError::Timeout(_)), "{e}");
        let e = CallError::Server {
            code: "002003".into(),
            sql_state: Some("42S02".into()),
            message: "Object 'X' does not exist or not authorized.".into(),
        }
        .into_warehouse_error(Duration::from_secs(1));
        assert!(matches!(e, WarehouseError::Rejected { .. }), "{e}");
        assert!(e.to_string().contains("Object 'X' does not exist"), "{e}");
        let e = CallError::Server {
            code: "000904".into(),
            sql_state: None,
            message: "SQL compilation error: invalid identifier 'NOPE'".into(),
        }
        .into_warehouse_error(Duration::from_secs(1));
        assert!(matches!(e, WarehouseError::Rejected { .. }), "{e}");
        let e = CallError::Server {
            code: "390114".into(),
            sql_state: Some("08001".into()),
            message: "Authentication token has expired.".into(),
        }
        .into_warehouse_error(Duration::from_secs(1));
        assert!(e.is_retryable(), "{e}");
        for (code, state) in [
            ("390100", "08004"),
            ("390144", "08004"),
            ("003001", "42501"),
        ] {
            let e = CallError::Server {
                code: code.into(),
                sql_state: Some(state.into()),
                message: "Incorrect username or password was specified.".into(),
            }
            .into_warehouse_error(Duration::from_secs(1));
            assert!(matches!(e, WarehouseError::Denied { .. }), "{code}: {e}");
            assert!(!e.is_retryable(), "{e}");
            assert!(e.to_string().contains(code), "{e}");
        }
    }

    #[test]
    fn rowtype_columns_are_spelled_as_the_catalog_spells_them() {
        // Rowtype entries as the query-request answer carries them (the connectors read
        // `name`, `type`, `precision`, `scale`).
        let rowtype: Vec<ColumnInfo> = serde_json::from_value(json!([
            {"name": "ID", "type": "fixed", "precision": 38, "scale": 0, "nullable": true},
            {"name": "PRICE", "type": "fixed", "precision": 12, "scale": 2},
            {"name": "F", "type": "real", "precision": null, "scale": null},
            {"name": "S", "type": "text", "length": 16777216, "byteLength": 16777216},
            {"name": "TS", "type": "timestamp_ntz", "precision": 0, "scale": 3},
            {"name": "TZ", "type": "timestamp_tz", "precision": 0, "scale": 9},
            {"name": "T", "type": "time", "precision": 0, "scale": 9},
            {"name": "B", "type": "boolean"},
            {"name": "V", "type": "variant"},
        ]))
        .unwrap();
        let types: Vec<String> = rowtype.iter().map(ColumnInfo::catalog_type).collect();
        assert_eq!(
            types,
            [
                "NUMBER(38,0)",
                "NUMBER(12,2)",
                "FLOAT",
                "TEXT",
                "TIMESTAMP_NTZ(3)",
                "TIMESTAMP_TZ(9)",
                "TIME",
                "BOOLEAN",
                "VARIANT"
            ]
        );
        assert_eq!(rowtype[1].name, "PRICE");
        // The dialect reads them as the catalog query's types.
        let d = crate::sql::Snowflake;
        assert!(
            d.parse_type(&types[1])
                .same_as(&d.parse_type("NUMBER(12,2)"))
        );
    }

    #[test]
    fn account_names_drop_region_and_are_upper_case() {
        assert_eq!(account_name("myorg-acme"), "MYORG-ACME");
        assert_eq!(account_name("xy12345.eu-west-1.aws"), "XY12345");
        assert_eq!(account_name("xy12345-myorg.global"), "XY12345");
    }

    #[test]
    fn uuids_are_version_4() {
        let u = uuid4();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"), "{u}");
        assert_ne!(u, uuid4());
    }
}
