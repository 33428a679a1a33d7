//! The dbt Cloud adapter: the v2 REST client over reqwest.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{Account, DbtCloudApi, DbtCloudConnector, DbtCloudError, Job, Run};
use crate::config::{DbtAccountId, DbtJobId};

/// dbt Cloud's page size limit.
const PAGE: usize = 100;

/// The v2 REST client for one access URL and key.
pub struct DbtCloudClient {
    http: reqwest::Client,
    base: String,
    token: SecretString,
    /// Attempts per request on 429/5xx/network errors.
    attempts: u32,
}

/// Time limit of one API call (JSON pages are small).
pub const API_TIMEOUT: Duration = Duration::from_secs(30);

/// Time limit of one artifact download: production manifests of 50–200 MB are normal.
pub const ARTIFACT_TIMEOUT: Duration = Duration::from_secs(120);

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

    /// A plain client with prdiff's user agent and a connect timeout; each request sets its
    /// own time limit ([`API_TIMEOUT`], [`ARTIFACT_TIMEOUT`]).
    pub fn http_client() -> reqwest::Client {
        reqwest::Client::builder()
            .user_agent(concat!("prdiff/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
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
        let bytes = self.get_bytes(what, path, query, API_TIMEOUT).await?;
        let env: Envelope<T> =
            serde_json::from_slice(&bytes).map_err(|e| DbtCloudError::Decode {
                what: what.into(),
                problem: e.to_string(),
            })?;
        Ok(env.data)
    }

    /// GET `{base}/api/v2{path}` and return the body as is (artifacts have no envelope),
    /// each attempt within `timeout`. Retries 429 (after `retry-after`, at most 10 s), 5xx
    /// and network errors.
    pub async fn get_bytes(
        &self,
        what: &str,
        path: &str,
        query: &[(&str, String)],
        timeout: Duration,
    ) -> Result<Vec<u8>, DbtCloudError> {
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
                .timeout(timeout)
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
                    .and_then(|v| v.trim().parse::<u64>().ok());
                tracing::debug!(status = status.as_u16(), attempt, what, "dbt Cloud retry");
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
                        message: format!(
                            "{message} (while reading {what}; check that the configuration's dbt Cloud API key is valid and may read it)"
                        ),
                    },
                    404 => DbtCloudError::Http {
                        status: 404,
                        what: what.into(),
                        message: format!(
                            "{message} (not found: check the account id, job id and access URL of the configuration)"
                        ),
                    },
                    s => DbtCloudError::Http {
                        status: s,
                        what: what.into(),
                        message,
                    },
                });
            }
            return Ok(bytes.to_vec());
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

    async fn runs(
        &self,
        account: DbtAccountId,
        job: DbtJobId,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<Run>, DbtCloudError> {
        self.get_enveloped(
            &format!("runs of job {job} in account {account}"),
            &format!("/accounts/{account}/runs/"),
            &[
                ("job_definition_id", job.to_string()),
                ("order_by", "-id".into()),
                ("include_related", r#"["trigger"]"#.into()),
                ("limit", limit.min(PAGE).to_string()),
                ("offset", offset.to_string()),
            ],
        )
        .await
    }

    async fn run(&self, account: DbtAccountId, run: u64) -> Result<Run, DbtCloudError> {
        self.get_enveloped(
            &format!("run {run} in account {account}"),
            &format!("/accounts/{account}/runs/{run}/"),
            &[("include_related", r#"["trigger"]"#.into())],
        )
        .await
    }

    async fn artifact(
        &self,
        account: DbtAccountId,
        run: u64,
        path: &str,
        step: Option<u32>,
    ) -> Result<Vec<u8>, DbtCloudError> {
        let query: Vec<(&str, String)> =
            step.map(|s| ("step", s.to_string())).into_iter().collect();
        self.get_bytes(
            &format!("artifact {path} of run {run} in account {account}"),
            &format!("/accounts/{account}/runs/{run}/artifacts/{path}"),
            &query,
            ARTIFACT_TIMEOUT,
        )
        .await
    }
}

/// The real connector: HTTP to the access URL.
pub struct HttpDbtCloud {
    http: reqwest::Client,
}

impl Default for HttpDbtCloud {
    fn default() -> Self {
        Self {
            http: DbtCloudClient::http_client(),
        }
    }
}

impl DbtCloudConnector for HttpDbtCloud {
    fn connect(&self, access_url: &url::Url, key: SecretString) -> Box<dyn DbtCloudApi> {
        Box::new(DbtCloudClient::new(self.http.clone(), access_url, key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dbtcloud::{parse_timestamp, status};

    #[test]
    fn a_run_from_the_fixtures_parses() {
        let body = std::fs::read_to_string(
            crate::test_fixtures().join("dbt_cloud/data-mie.run_get_response.json"),
        )
        .expect("the dbt Cloud fixture under tests/fixtures");
        let env: Envelope<Run> = serde_json::from_str(&body).unwrap();
        assert_eq!(env.data.id, 36_053_848);
        assert_eq!(env.data.status, status::SUCCESS);
        assert_eq!(
            env.data.sha(),
            Some("981c5cf1ba299e942c6c277c38c8dec9b0738dd0")
        );
        assert_eq!(
            env.data.created_unix(),
            parse_timestamp("2021-12-07T10:32:24Z")
        );
        assert_eq!(env.data.artifacts_saved, Some(true));
        // created 10:32:24.3, finished 10:34:14.4 (the answer's `duration` is 00:01:50).
        assert_eq!(env.data.duration_secs(), Some(110));
    }
}
