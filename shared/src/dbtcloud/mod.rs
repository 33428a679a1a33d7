//! dbt Cloud Administrative API v2: the port prdiff uses, and its HTTP client.
//!
//! Today the port covers what `prdiff config apply` checks (the accounts a key sees and an
//! account's jobs). The poller extends it with runs and artifacts (`/runs/`,
//! `/runs/{id}/`, `/runs/{id}/artifacts/{path}`): add methods to [`DbtCloudApi`], implement
//! them on [`DbtCloudClient`] with [`DbtCloudClient::get_enveloped`] /
//! [`DbtCloudClient::get_paged`], which already handle auth, the `{status, data}`
//! envelope, pagination and 429/5xx backoff.

pub mod memory;

use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::config::DbtAccountId;

/// dbt Cloud's page size limit.
const PAGE: usize = 100;

/// A dbt Cloud account a key can see.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Account {
    pub id: u64,
    pub name: String,
}

/// A job of an account.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Job {
    pub id: u64,
    pub name: String,
    #[serde(default)]
    pub project_id: Option<u64>,
    #[serde(default)]
    pub environment_id: Option<u64>,
}

/// Why a dbt Cloud call failed. The API key never appears here.
#[derive(Debug, thiserror::Error)]
pub enum DbtCloudError {
    #[error("dbt Cloud refused the API key ({status}): {message}")]
    Unauthorized { status: u16, message: String },
    #[error("dbt Cloud answered {status} for {what}: {message}")]
    Http {
        status: u16,
        what: String,
        message: String,
    },
    #[error("dbt Cloud request for {what} failed")]
    Transport {
        what: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("dbt Cloud sent an unexpected response for {what}: {problem}")]
    Decode { what: String, problem: String },
}

impl DbtCloudError {
    pub fn is_retryable(&self) -> bool {
        match self {
            DbtCloudError::Transport { .. } => true,
            DbtCloudError::Http { status, .. } => *status == 429 || *status >= 500,
            DbtCloudError::Unauthorized { .. } | DbtCloudError::Decode { .. } => false,
        }
    }
}

/// What prdiff asks of dbt Cloud.
#[async_trait]
pub trait DbtCloudApi: Send + Sync {
    /// Accounts the key can see.
    async fn accounts(&self) -> Result<Vec<Account>, DbtCloudError>;
    /// Jobs of an account (every page).
    async fn jobs(&self, account: DbtAccountId) -> Result<Vec<Job>, DbtCloudError>;
}

/// The v2 REST client for one access URL and key.
pub struct DbtCloudClient {
    http: reqwest::Client,
    base: String,
    token: SecretString,
    /// Attempts per request on 429/5xx/network errors.
    attempts: u32,
}

#[derive(Deserialize)]
struct Envelope<T> {
    data: T,
}

impl DbtCloudClient {
    /// `access_url` is the account's base URL (`https://ab123.us1.dbt.com`).
    pub fn new(http: reqwest::Client, access_url: &url::Url, token: SecretString) -> Self {
        Self {
            http,
            base: format!("{}/api/v2", access_url.as_str().trim_end_matches('/')),
            token,
            attempts: 3,
        }
    }

    /// A plain client with prdiff's user agent and a 30 s timeout.
    pub fn http_client() -> reqwest::Client {
        reqwest::Client::builder()
            .user_agent(concat!("prdiff/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(30))
            .build()
            .expect("reqwest client with rustls")
    }

    /// GET `{base}/api/v2{path}` and unwrap the `data` of the envelope. Retries 429 (after
    /// `retry-after`, at most 10 s) and 5xx with a short backoff.
    pub async fn get_enveloped<T: DeserializeOwned>(
        &self,
        what: &str,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, DbtCloudError> {
        let url = format!("{}{path}", self.base);
        let mut attempt = 1;
        loop {
            let sent = self
                .http
                .get(&url)
                .header(
                    "authorization",
                    format!("Token {}", self.token.expose_secret()),
                )
                .header("accept", "application/json")
                .query(query)
                .send()
                .await;
            let resp = match sent {
                Ok(r) => r,
                Err(source) if attempt >= self.attempts => {
                    return Err(DbtCloudError::Transport {
                        what: what.into(),
                        source,
                    });
                }
                Err(_) => {
                    tokio::time::sleep(backoff(attempt, None)).await;
                    attempt += 1;
                    continue;
                }
            };
            let status = resp.status();
            if (status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error())
                && attempt < self.attempts
            {
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                tokio::time::sleep(backoff(attempt, retry_after)).await;
                attempt += 1;
                continue;
            }
            let bytes = resp
                .bytes()
                .await
                .map_err(|source| DbtCloudError::Transport {
                    what: what.into(),
                    source,
                })?;
            if !status.is_success() {
                let message = serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .and_then(|v| {
                        v.pointer("/status/user_message")
                            .and_then(|m| m.as_str())
                            .map(str::to_owned)
                    })
                    .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(200).collect());
                return Err(match status.as_u16() {
                    401 | 403 => DbtCloudError::Unauthorized {
                        status: status.as_u16(),
                        message,
                    },
                    s => DbtCloudError::Http {
                        status: s,
                        what: what.into(),
                        message,
                    },
                });
            }
            let env: Envelope<T> =
                serde_json::from_slice(&bytes).map_err(|e| DbtCloudError::Decode {
                    what: what.into(),
                    problem: e.to_string(),
                })?;
            return Ok(env.data);
        }
    }

    /// Every page of a list endpoint (`limit` ≤ 100, `offset`).
    pub async fn get_paged<T: DeserializeOwned>(
        &self,
        what: &str,
        path: &str,
    ) -> Result<Vec<T>, DbtCloudError> {
        let mut all = Vec::new();
        loop {
            let page: Vec<T> = self
                .get_enveloped(
                    what,
                    path,
                    &[
                        ("limit", PAGE.to_string()),
                        ("offset", all.len().to_string()),
                    ],
                )
                .await?;
            let done = page.len() < PAGE;
            all.extend(page);
            if done || all.len() >= 100_000 {
                return Ok(all);
            }
        }
    }
}

fn backoff(attempt: u32, retry_after: Option<u64>) -> Duration {
    match retry_after {
        Some(s) => Duration::from_secs(s.min(10)),
        None => Duration::from_millis(200 * 2u64.pow(attempt)),
    }
}

#[async_trait]
impl DbtCloudApi for DbtCloudClient {
    async fn accounts(&self) -> Result<Vec<Account>, DbtCloudError> {
        self.get_enveloped("accounts", "/accounts/", &[]).await
    }

    async fn jobs(&self, account: DbtAccountId) -> Result<Vec<Job>, DbtCloudError> {
        self.get_paged("jobs", &format!("/accounts/{account}/jobs/"))
            .await
    }
}
