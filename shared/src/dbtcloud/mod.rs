//! dbt Cloud Administrative API v2: the port prdiff uses (its HTTP client is [`http`]).
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

pub mod http;
pub mod memory;

use async_trait::async_trait;
use secrecy::SecretString;
use serde::Deserialize;

use crate::config::{DbtAccountId, DbtJobId};

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

/// Opens a dbt Cloud client for an access URL and key (a fake in tests).
pub trait DbtCloudConnector: Send + Sync {
    fn connect(&self, access_url: &url::Url, key: SecretString) -> Box<dyn DbtCloudApi>;
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
}
