//! Databricks SQL warehouses over the SQL Statement Execution API 2.0
//! (<https://docs.databricks.com/api/workspace/statementexecution>):
//!
//! - `POST /api/2.0/sql/statements`: one statement on the warehouse, with the default
//!   catalog and schema, `disposition=INLINE`, `format=JSON_ARRAY`, a `wait_timeout` and
//!   `on_wait_timeout=CONTINUE`: a statement done within the wait answers with its result,
//!   a longer one with its `statement_id` and state `PENDING`/`RUNNING`.
//! - `GET /api/2.0/sql/statements/{id}`: polled until the state is `SUCCEEDED`, `FAILED`,
//!   `CANCELED` or `CLOSED`.
//! - `GET …/result/chunks/{n}` (the answer's `next_chunk_internal_link`): the result's
//!   further chunks.
//! - `POST /api/2.0/sql/statements/{id}/cancel`: sent when the client-side timeout fires
//!   and when the caller drops the call, so no statement keeps running (and billing).
//!
//! The Statement Execution API has no per-statement or per-session settings, so the
//! server-side bound is the warehouse's own `STATEMENT_TIMEOUT` (set by the operator, see
//! docs/warehouses/databricks.md); prdiff's statement timeout cancels the statement on the
//! server through the cancel call.
//!
//! Authentication: a personal access token, or OAuth machine-to-machine (a service
//! principal's client id and secret exchanged for an access token at
//! `/oidc/v1/token`, scope `all-apis`, renewed before it expires). Tokens and secrets are
//! only ever sent in the `Authorization` header; they never appear in errors or logs.
//!
//! Values come back as the text the engine reads, following the manifest's `type_name`:
//! integers and decimals as Databricks prints them, booleans `true`/`false`, floats in the
//! shortest form that reads back the same, timestamps `YYYY-MM-DD HH:MM:SS[.fraction]`,
//! NULL as `None`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    ConnectOptions, DatabricksAuth, DatabricksTarget, Password, Row, Warehouse, WarehouseError,
    error_text,
};
use crate::sql::{Databricks, Dialect};

/// Statements one diff runs at once (a SQL warehouse queues and scales them itself).
const PARALLELISM: usize = 3;

/// How long past the statement timeout the client waits before it cancels the statement
/// itself (the warehouse's own timeout, where set lower, fires first).
const CLIENT_GRACE: Duration = Duration::from_secs(2);

/// The longest `wait_timeout` prdiff asks for (the API accepts 0 or 5–50 s).
const MAX_WAIT_SECS: u64 = 30;

/// An OAuth access token is renewed this long before it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);

/// A Databricks SQL warehouse reached over the Statement Execution API.
pub struct DatabricksWarehouse {
    client: Arc<Client>,
    statement_timeout: Duration,
}

/// What every call needs: the HTTP client, the target and its credentials.
struct Client {
    http: reqwest::Client,
    target: DatabricksTarget,
    base: String,
    /// The target as shown in messages (no secrets).
    shown: String,
    /// OAuth M2M: the current access token and when to renew it.
    oauth_token: tokio::sync::Mutex<Option<(Password, Instant)>>,
}

impl DatabricksWarehouse {
    /// Prepares the client; with OAuth M2M it also fetches the first access token, so
    /// refused client credentials fail before any work starts.
    pub async fn connect(
        target: &DatabricksTarget,
        options: &ConnectOptions,
    ) -> Result<Self, WarehouseError> {
        let shown = super::WarehouseUrl::Databricks(target.clone()).to_string();
        let http = super::session_http_client(&shown)?;
        let client = Client {
            http,
            base: target.base_url(),
            target: target.clone(),
            shown,
            oauth_token: tokio::sync::Mutex::new(None),
        };
        client
            .bearer()
            .await
            .map_err(|e| e.into_warehouse_error(options.statement_timeout, &client.shown))?;
        Ok(DatabricksWarehouse {
            client: Arc::new(client),
            statement_timeout: options.statement_timeout,
        })
    }
}

#[async_trait]
impl Warehouse for DatabricksWarehouse {
    fn dialect(&self) -> &'static dyn Dialect {
        &Databricks
    }

    fn parallelism(&self) -> usize {
        PARALLELISM
    }

    /// Runs one statement. If it outlives its timeout by [`CLIENT_GRACE`], or the caller
    /// stops waiting, a cancel request is sent for it.
    async fn query(&self, sql: &str) -> Result<Vec<Row>, WarehouseError> {
        let started = Instant::now();
        let mut cancel = CancelOnDrop {
            client: self.client.clone(),
            statement_id: None,
        };
        let limit = self.statement_timeout + CLIENT_GRACE;
        let result = match tokio::time::timeout(
            limit,
            self.client
                .execute(sql, self.statement_timeout, &mut cancel.statement_id),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!(
                    timeout_ms = self.statement_timeout.as_millis() as u64,
                    "statement outlived its timeout: cancelling it on the server"
                );
                // `cancel` fires when dropped here.
                return Err(WarehouseError::Timeout(self.statement_timeout));
            }
        };
        // `cancel` is still set only when the statement may still run on the server (the
        // answer was lost while polling): it fires as this returns.
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            ok = result.is_ok(),
            sql,
            "databricks statement"
        );
        result.map_err(|e| e.into_warehouse_error(self.statement_timeout, &self.client.shown))
    }
}

/// Sends a cancel request for the statement when dropped while it is set: a client-side
/// timeout, or a caller that stopped waiting, must not leave it running.
struct CancelOnDrop {
    client: Arc<Client>,
    statement_id: Option<String>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(id) = self.statement_id.take() else {
            return;
        };
        let client = self.client.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = client.cancel(&id).await {
                    tracing::warn!(error = %e, "could not cancel a statement on Databricks");
                }
            });
        }
    }
}

/// A failed call, before it becomes a [`WarehouseError`].
#[derive(Debug)]
enum CallError {
    /// Databricks answered with an HTTP error (`error_code` and `message` as it gave them).
    Http {
        status: u16,
        code: String,
        message: String,
    },
    /// The statement ended `FAILED` (or `CANCELED`, `CLOSED`) with this error.
    Statement {
        state: String,
        code: String,
        sql_state: Option<String>,
        message: String,
    },
    /// The OAuth token endpoint refused the client credentials.
    OAuth { status: u16, message: String },
    /// Transport, or an answer that does not parse.
    Transport { message: String, retryable: bool },
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Http {
                status,
                code,
                message,
            } => write!(f, "HTTP {status} [{code}] {message}"),
            CallError::Statement { code, message, .. } => write!(f, "[{code}] {message}"),
            CallError::OAuth { status, message } => {
                write!(f, "OAuth token request: HTTP {status}: {message}")
            }
            CallError::Transport { message, .. } => f.write_str(message),
        }
    }
}

impl CallError {
    fn into_warehouse_error(self, timeout: Duration, target: &str) -> WarehouseError {
        let shown = |c: &CallError| error_text(&c.to_string());
        let permanent = |message: String| WarehouseError::Connect {
            target: target.to_owned(),
            source: message.into(),
            retryable: false,
        };
        let busy = |message: String| WarehouseError::Connect {
            target: target.to_owned(),
            source: message.into(),
            retryable: true,
        };
        match &self {
            // Refused credentials or no right to the warehouse: retrying cannot help.
            CallError::Http { status, code, .. }
                if matches!(status, 401 | 403)
                    || matches!(code.as_str(), "PERMISSION_DENIED" | "UNAUTHENTICATED") =>
            {
                permanent(shown(&self))
            }
            CallError::OAuth { status, .. } => {
                if *status == 429 || *status >= 500 {
                    busy(shown(&self))
                } else {
                    permanent(shown(&self))
                }
            }
            // Throttled or briefly unavailable (a warehouse starting, a rate limit).
            CallError::Http { status, code, .. }
                if matches!(status, 429 | 503)
                    || matches!(
                        code.as_str(),
                        "TEMPORARILY_UNAVAILABLE" | "RESOURCE_EXHAUSTED" | "REQUEST_LIMIT_EXCEEDED"
                    ) =>
            {
                busy(shown(&self))
            }
            CallError::Http { status, .. } if *status >= 500 => WarehouseError::Other {
                message: shown(&self),
            },
            // Any other refused request (an unknown warehouse, a bad parameter).
            CallError::Http { .. } => permanent(shown(&self)),
            CallError::Statement {
                state,
                code,
                sql_state,
                message,
            } => {
                let sql_state = sql_state.as_deref().unwrap_or_default();
                // Data exceptions quote the offending value, which comes from the rows.
                let message = if sql_state.starts_with("22") {
                    redact_quoted(message)
                } else {
                    message.clone()
                };
                let text = error_text(&if sql_state.is_empty() {
                    format!("[{code}] {message}")
                } else {
                    format!("[{code}, SQLSTATE {sql_state}] {message}")
                });
                if state == "CANCELED" || code == "DEADLINE_EXCEEDED" {
                    WarehouseError::Timeout(timeout)
                } else if code == "UNAUTHENTICATED" {
                    permanent(text)
                } else if sql_state.starts_with("42")
                    || sql_state.starts_with("22")
                    || matches!(
                        code.as_str(),
                        "BAD_REQUEST"
                            | "INVALID_PARAMETER_VALUE"
                            | "PERMISSION_DENIED"
                            | "NOT_FOUND"
                            | "RESOURCE_DOES_NOT_EXIST"
                    )
                {
                    // The SQL as written (syntax, unknown table or column, no privilege,
                    // a data exception): the input's to fix.
                    WarehouseError::Rejected { message: text }
                } else {
                    WarehouseError::Other { message: text }
                }
            }
            CallError::Transport {
                message,
                retryable: false,
            } => permanent(error_text(message)),
            CallError::Transport { message, .. } => WarehouseError::Other {
                message: error_text(message),
            },
        }
    }
}

/// Databricks' REST error body.
#[derive(Debug, Default, Deserialize)]
struct ServiceError {
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// A statement's answer (`StatementResponse`).
#[derive(Debug, Default, Deserialize)]
struct StatementResponse {
    #[serde(default)]
    statement_id: Option<String>,
    #[serde(default)]
    status: StatementStatus,
    #[serde(default)]
    manifest: Option<Manifest>,
    #[serde(default)]
    result: Option<ResultData>,
}

#[derive(Debug, Default, Deserialize)]
struct StatementStatus {
    #[serde(default)]
    state: String,
    #[serde(default)]
    error: Option<ServiceError>,
    #[serde(default)]
    sql_state: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Manifest {
    #[serde(default)]
    schema: Schema,
    #[serde(default)]
    total_chunk_count: Option<u64>,
    #[serde(default)]
    truncated: bool,
}

#[derive(Debug, Default, Deserialize)]
struct Schema {
    #[serde(default)]
    columns: Vec<Column>,
}

#[derive(Debug, Default, Deserialize)]
struct Column {
    #[serde(default)]
    type_name: String,
}

/// One chunk of an `INLINE` result.
#[derive(Debug, Default, Deserialize)]
struct ResultData {
    #[serde(default)]
    chunk_index: Option<u64>,
    #[serde(default)]
    data_array: Option<Vec<Vec<Value>>>,
    #[serde(default)]
    next_chunk_index: Option<u64>,
    #[serde(default)]
    next_chunk_internal_link: Option<String>,
}

impl Client {
    /// The `Authorization` header's value: the token, or a current OAuth access token.
    async fn bearer(&self) -> Result<String, CallError> {
        match &self.target.auth {
            DatabricksAuth::Token(t) => Ok(format!("Bearer {}", t.expose())),
            DatabricksAuth::OAuthM2m {
                client_id,
                client_secret,
            } => {
                let mut cached = self.oauth_token.lock().await;
                if let Some((token, renew_at)) = cached.as_ref()
                    && Instant::now() < *renew_at
                {
                    return Ok(format!("Bearer {}", token.expose()));
                }
                let (token, lifetime) = self.oauth_exchange(client_id, client_secret).await?;
                let bearer = format!("Bearer {}", token.expose());
                *cached = Some((
                    token,
                    Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN),
                ));
                Ok(bearer)
            }
        }
    }

    /// OAuth 2.0 client credentials grant at the workspace's token endpoint
    /// (<https://docs.databricks.com/en/dev-tools/auth/oauth-m2m.html>): the client id and
    /// secret as HTTP basic credentials, `scope=all-apis`.
    async fn oauth_exchange(
        &self,
        client_id: &str,
        client_secret: &Password,
    ) -> Result<(Password, Duration), CallError> {
        let body = ::url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("scope", "all-apis")
            .finish();
        let response = self
            .http
            .post(format!("{}/oidc/v1/token", self.base))
            .basic_auth(client_id, Some(client_secret.expose()))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Accept", "application/json")
            .body(body)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| CallError::Transport {
                message: format!("OAuth token request: {}", crate::error_chain(&e)),
                retryable: true,
            })?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        #[derive(Deserialize)]
        struct TokenAnswer {
            access_token: Option<String>,
            expires_in: Option<u64>,
            error: Option<String>,
            error_description: Option<String>,
        }
        let answer: Option<TokenAnswer> = serde_json::from_str(&text).ok();
        match answer {
            Some(TokenAnswer {
                access_token: Some(token),
                expires_in,
                ..
            }) if status == 200 => Ok((
                Password::new(token),
                Duration::from_secs(expires_in.unwrap_or(3600)),
            )),
            Some(a) => Err(CallError::OAuth {
                status,
                message: match (a.error, a.error_description) {
                    (Some(e), Some(d)) => format!("{e}: {d}"),
                    (Some(e), None) => e,
                    (None, Some(d)) => d,
                    (None, None) => "no access token in the answer".into(),
                },
            }),
            None => Err(CallError::OAuth {
                status,
                message: "the answer is not OAuth's JSON".into(),
            }),
        }
    }

    /// Sends one request with the bearer token and reads Databricks' JSON answer; an HTTP
    /// error keeps Databricks' `error_code` and `message`.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<T, CallError> {
        let req = req
            .header("Authorization", self.bearer().await?)
            .header("Accept", "application/json")
            .timeout(timeout);
        let response = req.send().await.map_err(|e| CallError::Transport {
            message: crate::error_chain(&e),
            retryable: true,
        })?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| CallError::Transport {
            message: crate::error_chain(&e),
            retryable: true,
        })?;
        if !status.is_success() {
            let e: ServiceError = serde_json::from_slice(&bytes).unwrap_or_default();
            return Err(CallError::Http {
                status: status.as_u16(),
                code: e.error_code.unwrap_or_else(|| {
                    status
                        .canonical_reason()
                        .unwrap_or("error")
                        .to_ascii_uppercase()
                }),
                message: e.message.unwrap_or_else(|| "no message".into()),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| CallError::Transport {
            message: format!("HTTP {status}: the answer is not Databricks' JSON: {e}"),
            retryable: false,
        })
    }

    /// Runs one statement and reads all its rows. `statement_id` is set as soon as the
    /// server names the statement (so a dropped call can cancel it).
    async fn execute(
        &self,
        sql: &str,
        statement_timeout: Duration,
        statement_id: &mut Option<String>,
    ) -> Result<Vec<Row>, CallError> {
        let http_timeout = Duration::from_secs(MAX_WAIT_SECS) + CLIENT_GRACE * 5;
        let mut body = json!({
            "statement": sql,
            "warehouse_id": self.target.warehouse_id,
            "wait_timeout": wait_timeout(statement_timeout),
            "on_wait_timeout": "CONTINUE",
            "disposition": "INLINE",
            "format": "JSON_ARRAY",
        });
        if let Some(c) = &self.target.catalog {
            body["catalog"] = json!(c);
        }
        if let Some(s) = &self.target.schema {
            body["schema"] = json!(s);
        }
        let mut answer: StatementResponse = self
            .call(
                self.http
                    .post(format!("{}/api/2.0/sql/statements", self.base))
                    .json(&body),
                http_timeout,
            )
            .await?;
        let id = answer.statement_id.clone().ok_or(CallError::Transport {
            message: "the answer names no statement_id".into(),
            retryable: false,
        })?;
        *statement_id = Some(id.clone());
        let mut pause = Duration::from_millis(50);
        while matches!(answer.status.state.as_str(), "PENDING" | "RUNNING") {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
            answer = self
                .call(
                    self.http
                        .get(format!("{}/api/2.0/sql/statements/{id}", self.base)),
                    http_timeout,
                )
                .await?;
        }
        // Done on the server (whatever the outcome): nothing left to cancel.
        *statement_id = None;
        match answer.status.state.as_str() {
            "SUCCEEDED" => {}
            state => {
                let error = answer.status.error.unwrap_or_default();
                return Err(CallError::Statement {
                    state: state.to_owned(),
                    code: error.error_code.unwrap_or_else(|| state.to_owned()),
                    sql_state: answer.status.sql_state,
                    message: error
                        .message
                        .unwrap_or_else(|| format!("the statement ended {state}")),
                });
            }
        }
        let manifest = answer.manifest.unwrap_or_default();
        if manifest.truncated {
            return Err(CallError::Transport {
                message: "the result was truncated (larger than an INLINE result may be)".into(),
                retryable: false,
            });
        }
        let types: Vec<&str> = manifest
            .schema
            .columns
            .iter()
            .map(|c| c.type_name.as_str())
            .collect();
        let mut rows = Vec::new();
        let mut chunk = match answer.result {
            Some(r) => Some(r),
            // No first chunk inline although the manifest counts some: fetch chunk 0.
            None if manifest.total_chunk_count.unwrap_or(0) > 0 => Some(ResultData {
                next_chunk_index: Some(0),
                ..ResultData::default()
            }),
            None => None,
        };
        let mut fetched = 0u64;
        while let Some(data) = chunk.take() {
            if let Some(array) = &data.data_array {
                read_rows(array, &types, &mut rows)?;
            }
            let next = match (&data.next_chunk_internal_link, data.next_chunk_index) {
                (Some(link), _) => Some(self.internal_link(link, &id)?),
                (None, Some(n)) => Some(format!(
                    "{}/api/2.0/sql/statements/{id}/result/chunks/{n}",
                    self.base
                )),
                (None, None) => None,
            };
            if let Some(url) = next {
                fetched += 1;
                if fetched > manifest.total_chunk_count.unwrap_or(u64::MAX) {
                    return Err(CallError::Transport {
                        message: "more result chunks than the manifest counts".into(),
                        retryable: false,
                    });
                }
                let next: ResultData = self.call(self.http.get(url), http_timeout).await?;
                if next
                    .chunk_index
                    .is_some_and(|i| Some(i) == data.chunk_index)
                {
                    return Err(CallError::Transport {
                        message: "a result chunk links to itself".into(),
                        retryable: false,
                    });
                }
                chunk = Some(next);
            }
        }
        Ok(rows)
    }

    /// A `next_chunk_internal_link` as a URL on the workspace: only a path under this
    /// statement is followed (the bearer token goes with it).
    fn internal_link(&self, link: &str, id: &str) -> Result<String, CallError> {
        let prefix = format!("/api/2.0/sql/statements/{id}/result/chunks/");
        if link.starts_with(&prefix) && !link.contains("..") && !link.contains("//") {
            Ok(format!("{}{link}", self.base))
        } else {
            Err(CallError::Transport {
                message: "a result chunk link outside this statement's results".into(),
                retryable: false,
            })
        }
    }

    /// Asks the warehouse to cancel a statement (the answer's body is not needed).
    async fn cancel(&self, id: &str) -> Result<(), CallError> {
        let response = self
            .http
            .post(format!("{}/api/2.0/sql/statements/{id}/cancel", self.base))
            .header("Authorization", self.bearer().await?)
            .json(&json!({}))
            .timeout(Duration::from_secs(15))
            .send()
            .await
            .map_err(|e| CallError::Transport {
                message: crate::error_chain(&e),
                retryable: true,
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let e: ServiceError = response.json().await.unwrap_or_default();
        Err(CallError::Http {
            status: status.as_u16(),
            code: e.error_code.unwrap_or_else(|| "ERROR".into()),
            message: e.message.unwrap_or_else(|| "no message".into()),
        })
    }
}

/// The `wait_timeout` of a statement: the server holds the first answer up to this long.
/// Never longer than the statement timeout (so the statement id comes back before the
/// client-side timeout could fire), and 0 (answer at once, then poll) when under the API's
/// 5 s minimum.
fn wait_timeout(statement_timeout: Duration) -> String {
    let secs = statement_timeout.as_secs().min(MAX_WAIT_SECS);
    if secs < 5 {
        "0s".into()
    } else {
        format!("{secs}s")
    }
}

/// `text` with every single-quoted span replaced by `'…'`.
fn redact_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('\'') {
        out.push_str(&rest[..start]);
        match rest[start + 1..].find('\'') {
            Some(len) => {
                out.push_str("'…'");
                rest = &rest[start + len + 2..];
            }
            None => {
                out.push_str("'…");
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

// ---------------------------------------------------------------------------------------
// Values as text

/// Appends JSON_ARRAY rows (every non-null value a string) as the engine's text.
fn read_rows(array: &[Vec<Value>], types: &[&str], out: &mut Vec<Row>) -> Result<(), CallError> {
    for raw in array {
        let mut row = Vec::with_capacity(raw.len());
        for (i, v) in raw.iter().enumerate() {
            let text = match v {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            };
            row.push(match text {
                Some(t) => Some(value_text(&t, types.get(i).copied().unwrap_or("STRING"))?),
                None => None,
            });
        }
        out.push(row);
    }
    Ok(())
}

/// One value's text by its column's `type_name`.
fn value_text(t: &str, type_name: &str) -> Result<String, CallError> {
    let bad = || CallError::Transport {
        message: format!("a {type_name} value that does not parse"),
        retryable: false,
    };
    Ok(match type_name.to_ascii_uppercase().as_str() {
        "BOOLEAN" => match t {
            "true" | "TRUE" | "True" | "1" => "true".into(),
            "false" | "FALSE" | "False" | "0" => "false".into(),
            _ => return Err(bad()),
        },
        "BYTE" | "SHORT" | "INT" | "LONG" => {
            t.parse::<i64>().map_err(|_| bad())?;
            t.to_owned()
        }
        "FLOAT" | "DOUBLE" => match t.parse::<f64>() {
            Ok(f) => f.to_string(),
            Err(_) => return Err(bad()),
        },
        // `2024-01-02T03:04:05.123Z` (or with a space, or an offset of zero).
        "TIMESTAMP" | "TIMESTAMP_NTZ" => {
            let t = t
                .strip_suffix('Z')
                .or_else(|| t.strip_suffix("+00:00"))
                .unwrap_or(t);
            match t.split_once(['T', ' ']) {
                Some((date, time)) => format!("{date} {time}"),
                None => return Err(bad()),
            }
        }
        _ => t.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_become_the_engine_text_by_type_name() {
        let v = |t: &str, ty: &str| value_text(t, ty).unwrap();
        assert_eq!(v("true", "BOOLEAN"), "true");
        assert_eq!(v("FALSE", "BOOLEAN"), "false");
        assert_eq!(v("-42", "INT"), "-42");
        assert_eq!(v("9223372036854775807", "LONG"), "9223372036854775807");
        assert_eq!(v("1.50", "DECIMAL"), "1.50");
        assert_eq!(v("1.0E-5", "DOUBLE"), "0.00001");
        assert_eq!(v("NaN", "DOUBLE"), "NaN");
        assert_eq!(v("-0.0", "DOUBLE"), "-0");
        assert_eq!(
            v("2024-01-02T03:04:05.123Z", "TIMESTAMP"),
            "2024-01-02 03:04:05.123"
        );
        assert_eq!(
            v("2024-01-02 03:04:05", "TIMESTAMP_NTZ"),
            "2024-01-02 03:04:05"
        );
        assert_eq!(v("2024-01-02", "DATE"), "2024-01-02");
        assert_eq!(v("a`b", "STRING"), "a`b");
        for (t, ty) in [
            ("yes", "BOOLEAN"),
            ("1.5", "INT"),
            ("x", "DOUBLE"),
            ("2024", "TIMESTAMP"),
        ] {
            assert!(value_text(t, ty).is_err(), "{t} as {ty}");
        }
        let mut rows = Vec::new();
        read_rows(
            &[vec![json!("1"), Value::Null, json!("true")]],
            &["LONG", "STRING", "BOOLEAN"],
            &mut rows,
        )
        .unwrap();
        assert_eq!(
            rows,
            vec![vec![Some("1".into()), None, Some("true".into())]]
        );
    }

    #[test]
    fn the_wait_never_outlasts_the_statement_timeout() {
        assert_eq!(wait_timeout(Duration::from_secs(600)), "30s");
        assert_eq!(wait_timeout(Duration::from_secs(12)), "12s");
        assert_eq!(wait_timeout(Duration::from_secs(5)), "5s");
        assert_eq!(wait_timeout(Duration::from_secs(4)), "0s");
        assert_eq!(wait_timeout(Duration::from_millis(300)), "0s");
    }

    #[test]
    fn statement_errors_map_to_what_retrying_can_do() {
        let stmt = |state: &str, code: &str, sql_state: Option<&str>| CallError::Statement {
            state: state.into(),
            code: code.into(),
            sql_state: sql_state.map(str::to_owned),
            message: "m".into(),
        };
        let t = Duration::from_secs(9);
        let e = stmt("FAILED", "BAD_REQUEST", Some("42703"))
            .into_warehouse_error(t, "databricks://h/w");
        assert!(
            matches!(&e, WarehouseError::Rejected { message } if message == "[BAD_REQUEST, SQLSTATE 42703] m"),
            "{e:?}"
        );
        assert!(!e.is_retryable());
        assert!(matches!(
            stmt("CANCELED", "CANCELED", None).into_warehouse_error(t, "databricks://h/w"),
            WarehouseError::Timeout(d) if d == t
        ));
        let cast = CallError::Statement {
            state: "FAILED".into(),
            code: "BAD_REQUEST".into(),
            sql_state: Some("22018".into()),
            message: "[CAST_INVALID_INPUT] The value 'jane@example.com' of the type \"STRING\" cannot be cast to \"INT\"".into(),
        };
        let e = cast.into_warehouse_error(t, "databricks://h/w");
        assert!(
            matches!(&e, WarehouseError::Rejected { message }
                if message.contains("The value '…' of the type") && !message.contains("jane")),
            "{e:?}"
        );
        assert_eq!(redact_quoted("a 'x' b 'y"), "a '…' b '…");
        let e = stmt("FAILED", "INTERNAL_ERROR", None).into_warehouse_error(t, "databricks://h/w");
        assert!(e.is_retryable(), "{e:?}");
        let http = |status: u16, code: &str| CallError::Http {
            status,
            code: code.into(),
            message: "m".into(),
        };
        for (status, code, retryable) in [
            (401, "UNAUTHENTICATED", false),
            (403, "PERMISSION_DENIED", false),
            (404, "RESOURCE_DOES_NOT_EXIST", false),
            (400, "INVALID_PARAMETER_VALUE", false),
            (429, "REQUEST_LIMIT_EXCEEDED", true),
            (503, "TEMPORARILY_UNAVAILABLE", true),
            (500, "INTERNAL_ERROR", true),
        ] {
            let e = http(status, code).into_warehouse_error(t, "databricks://h/w");
            assert_eq!(e.is_retryable(), retryable, "{status} {code}: {e:?}");
            assert!(crate::error_chain(&e).contains(code), "{e}");
        }
    }
}
