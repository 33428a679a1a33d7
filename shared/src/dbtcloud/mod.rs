//! dbt Cloud Administrative API v2: the port prdiff uses, and its HTTP client.
//!
//! The port covers what `prdiff config apply` checks (the accounts a key sees and an
//! account's jobs) and what the poller reads: runs of a job, newest first (`/runs/` with
//! `job_definition_id`, `order_by=-id`, `include_related=["trigger"]`, `limit`/`offset`),
//! one run (`/runs/{id}/`) and artifacts (`/runs/{id}/artifacts/{path}`, the raw file, no
//! envelope; `step` picks the step whose artifacts to read).
//!
//! Auth is `Authorization: Token <key>`. 429 and 5xx are retried with backoff, honouring
//! `Retry-After`; 401/403/404 say which account/job/run was asked for so an operator can
//! fix the configuration. Timestamps come as `2021-12-07 10:32:24.326116+00:00` or with a
//! `T`; [`parse_timestamp`] reads both.

pub mod memory;

use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::config::{DbtAccountId, DbtJobId};

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

/// dbt Cloud's run status codes.
pub mod status {
    pub const QUEUED: u32 = 1;
    pub const STARTING: u32 = 2;
    pub const RUNNING: u32 = 3;
    pub const SUCCESS: u32 = 10;
    pub const ERROR: u32 = 20;
    pub const CANCELLED: u32 = 30;
}

/// What started a run (`include_related=["trigger"]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct Trigger {
    #[serde(default)]
    pub cause: Option<String>,
    #[serde(default)]
    pub git_sha: Option<String>,
    #[serde(default)]
    pub git_branch: Option<String>,
    #[serde(default)]
    pub github_pull_request_id: Option<u64>,
    #[serde(default)]
    pub gitlab_merge_request_id: Option<u64>,
    #[serde(default)]
    pub schema_override: Option<String>,
}

/// One run of a job.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct Run {
    #[serde(deserialize_with = "u64_or_string")]
    pub id: u64,
    #[serde(default)]
    pub account_id: Option<u64>,
    #[serde(default)]
    pub job_definition_id: Option<u64>,
    /// See [`status`].
    pub status: u32,
    #[serde(default)]
    pub git_sha: Option<String>,
    #[serde(default)]
    pub git_branch: Option<String>,
    #[serde(default)]
    pub status_message: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub finished_at: Option<String>,
    /// Whether the run's artifacts are stored yet: dbt Cloud saves them a little after the
    /// run succeeds. `None` when the answer does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifacts_saved: Option<bool>,
    /// The run's page in dbt Cloud (for people).
    #[serde(default)]
    pub href: Option<String>,
    #[serde(default)]
    pub trigger: Option<Trigger>,
}

impl Run {
    /// The commit the run built: the run's own `git_sha`, else its trigger's.
    pub fn sha(&self) -> Option<&str> {
        self.git_sha
            .as_deref()
            .or_else(|| self.trigger.as_ref().and_then(|t| t.git_sha.as_deref()))
            .filter(|s| !s.is_empty())
    }

    /// Whether it was started for this pull/merge request.
    pub fn is_for_pr(&self, number: u64) -> bool {
        self.trigger.as_ref().is_some_and(|t| {
            t.github_pull_request_id == Some(number) || t.gitlab_merge_request_id == Some(number)
        })
    }

    pub fn is_finished(&self) -> bool {
        matches!(
            self.status,
            status::SUCCESS | status::ERROR | status::CANCELLED
        )
    }

    /// `created_at` as Unix seconds.
    pub fn created_unix(&self) -> Option<u64> {
        self.created_at.as_deref().and_then(parse_timestamp)
    }

    /// Seconds from creation (the trigger) to the end, for a finished run.
    pub fn duration_secs(&self) -> Option<u64> {
        let end = self.finished_at.as_deref().and_then(parse_timestamp)?;
        end.checked_sub(self.created_unix()?)
    }
}

fn u64_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        N(u64),
        S(String),
    }
    match Either::deserialize(d)? {
        Either::N(n) => Ok(n),
        Either::S(s) => s.trim().parse().map_err(serde::de::Error::custom),
    }
}

/// Reads dbt Cloud timestamps (`2021-12-07 10:32:24.326116+00:00`, `2021-12-07T10:32:24Z`,
/// with or without fraction and offset) as Unix seconds (UTC).
pub fn parse_timestamp(s: &str) -> Option<u64> {
    let s = s.trim();
    let (date, rest) = s.split_at_checked(10)?;
    let rest = rest.strip_prefix([' ', 'T'])?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let time = rest.get(..8)?;
    let mut t = time.split(':').map(|p| p.parse::<i64>());
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let tail = &rest[8..];
    let tail = tail.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    let offset = match tail {
        "" | "Z" | "z" => 0,
        o => {
            let sign = match o.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let digits: String = o[1..].chars().filter(char::is_ascii_digit).collect();
            if digits.len() != 4 {
                return None;
            }
            let (h, mi) = (
                digits[..2].parse::<i64>().ok()?,
                digits[2..].parse::<i64>().ok()?,
            );
            sign * (h * 3600 + mi * 60)
        }
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss - offset;
    u64::try_from(secs).ok()
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
    /// One page of a job's runs, newest first, with their triggers.
    async fn runs(
        &self,
        account: DbtAccountId,
        job: DbtJobId,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<Run>, DbtCloudError>;
    /// One run, with its trigger.
    async fn run(&self, account: DbtAccountId, run: u64) -> Result<Run, DbtCloudError>;
    /// An artifact of a run (`manifest.json`, `run_results.json`) as raw bytes; `step`
    /// picks a step's artifacts instead of the last step's.
    async fn artifact(
        &self,
        account: DbtAccountId,
        run: u64,
        path: &str,
        step: Option<u32>,
    ) -> Result<Vec<u8>, DbtCloudError>;
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_with_a_space_or_a_t_read_the_same() {
        let a = parse_timestamp("2021-12-07 10:32:24.326116+00:00").unwrap();
        let b = parse_timestamp("2021-12-07T10:32:24Z").unwrap();
        let c = parse_timestamp("2021-12-07T12:32:24.5+02:00").unwrap();
        assert_eq!(a, 1_638_873_144);
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(parse_timestamp("yesterday"), None);
    }

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
