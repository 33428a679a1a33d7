//! [`ArtifactsApi`] over dbt Cloud's v2 REST API: the newest successful run of a job
//! (`/runs/?job_definition_id=…&status=10&order_by=-id`) through
//! [`DbtCloudClient::get_enveloped`], and run artifacts (`/runs/{id}/artifacts/{path}`),
//! which come as the raw file rather than in the `{status, data}` envelope.
//!
//! The poller's run and artifact calls on [`crate::dbtcloud::DbtCloudApi`] cover the same
//! endpoints; once they land this adapter can delegate to them.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::sync::{ArtifactRun, ArtifactsApi, ArtifactsConnector};
use crate::config::{DbtAccountId, DbtJobId};
use crate::dbtcloud::{DbtCloudClient, DbtCloudError};

/// dbt Cloud's run status code for "Success".
const SUCCESS: u8 = 10;
/// Attempts per artifact download on 429/5xx/network errors.
const ATTEMPTS: u32 = 3;

/// The HTTP adapter for one access URL and key.
pub struct HttpArtifacts {
    http: reqwest::Client,
    base: String,
    token: SecretString,
    client: DbtCloudClient,
    /// First retry delay; doubled per attempt.
    backoff: Duration,
}

impl HttpArtifacts {
    pub fn new(http: reqwest::Client, access_url: &url::Url, token: SecretString) -> Self {
        Self {
            client: DbtCloudClient::new(http.clone(), access_url, token.clone()),
            http,
            base: format!("{}/api/v2", access_url.as_str().trim_end_matches('/')),
            token,
            backoff: Duration::from_millis(400),
        }
    }
}

/// Opens [`HttpArtifacts`] on one shared HTTP client (artifact downloads get 120 s).
pub struct HttpArtifactsConnector {
    http: reqwest::Client,
}

impl HttpArtifactsConnector {
    pub fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .user_agent(concat!("prdiff/", env!("CARGO_PKG_VERSION")))
                .timeout(Duration::from_secs(120))
                .build()
                .expect("reqwest client with rustls"),
        }
    }
}

impl Default for HttpArtifactsConnector {
    fn default() -> Self {
        Self::new()
    }
}

impl ArtifactsConnector for HttpArtifactsConnector {
    fn connect(&self, access_url: &url::Url, key: SecretString) -> Box<dyn ArtifactsApi> {
        Box::new(HttpArtifacts::new(self.http.clone(), access_url, key))
    }
}

/// Ids are numbers in v2 and strings in some older shapes.
#[derive(Deserialize)]
#[serde(untagged)]
enum Id {
    Num(u64),
    Text(String),
}

#[derive(Deserialize)]
struct RawRun {
    id: Id,
    #[serde(default)]
    git_sha: Option<String>,
}

#[async_trait]
impl ArtifactsApi for HttpArtifacts {
    async fn latest_successful_run(
        &self,
        account: DbtAccountId,
        job: DbtJobId,
    ) -> Result<Option<ArtifactRun>, DbtCloudError> {
        let runs: Vec<RawRun> = self
            .client
            .get_enveloped(
                "runs of the artifacts job",
                &format!("/accounts/{account}/runs/"),
                &[
                    ("job_definition_id", job.to_string()),
                    ("status", SUCCESS.to_string()),
                    ("order_by", "-id".into()),
                    ("limit", "1".into()),
                ],
            )
            .await?;
        runs.into_iter()
            .next()
            .map(|r| {
                let id = match r.id {
                    Id::Num(n) => n,
                    Id::Text(t) => t.parse().map_err(|_| DbtCloudError::Decode {
                        what: "runs of the artifacts job".into(),
                        problem: format!("run id {t:?} is not a number"),
                    })?,
                };
                Ok(ArtifactRun {
                    id,
                    git_sha: r.git_sha,
                })
            })
            .transpose()
    }

    async fn artifact(
        &self,
        account: DbtAccountId,
        run: u64,
        path: &str,
    ) -> Result<Option<Vec<u8>>, DbtCloudError> {
        let what = format!("{path} of run {run}");
        let url = format!(
            "{}/accounts/{account}/runs/{run}/artifacts/{path}",
            self.base
        );
        let mut attempt = 1;
        loop {
            let sent = self
                .http
                .get(&url)
                .header(
                    "authorization",
                    format!("Token {}", self.token.expose_secret()),
                )
                .send()
                .await;
            let retry = |attempt: u32| attempt < ATTEMPTS;
            let resp = match sent {
                Ok(r) => r,
                Err(_) if retry(attempt) => {
                    tokio::time::sleep(self.backoff * 2u32.pow(attempt - 1)).await;
                    attempt += 1;
                    continue;
                }
                Err(source) => return Err(DbtCloudError::Transport { what, source }),
            };
            let status = resp.status();
            if (status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error())
                && retry(attempt)
            {
                tokio::time::sleep(self.backoff * 2u32.pow(attempt - 1)).await;
                attempt += 1;
                continue;
            }
            if status == StatusCode::NOT_FOUND {
                return Ok(None);
            }
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                return Err(DbtCloudError::Unauthorized {
                    status: status.as_u16(),
                    message: format!("while fetching {what}"),
                });
            }
            let bytes = resp
                .bytes()
                .await
                .map_err(|source| DbtCloudError::Transport {
                    what: what.clone(),
                    source,
                })?;
            if !status.is_success() {
                return Err(DbtCloudError::Http {
                    status: status.as_u16(),
                    what,
                    message: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
                });
            }
            return Ok(Some(bytes.into()));
        }
    }
}
