//! Git hosts behind one trait: what prdiff needs from GitHub and GitLab, and nothing more.
//!
//! Adapters: `github.rs` (REST v3; token or GitHub App; GitHub Enterprise Server base URL),
//! `gitlab.rs` (REST v4; project access token; self-managed base URL) and `memory.rs` (an
//! in-process fake that records what was sent, for `prdiff serve --offline`, tests and the
//! benchmark). [`GitHosts`] turns a configuration into a client, so a handler never builds
//! HTTP clients or reads tokens itself.
//!
//! Rate limits: a 403/429 carrying `retry-after` or an exhausted `x-ratelimit-*` window is
//! waited out when the wait is short ([`HttpSettings::max_rate_limit_wait`]) and otherwise
//! returned as [`GitHostError::RateLimited`] so the caller's queue retries later.

pub mod github;
pub mod gitlab;
pub mod memory;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use reqwest::{RequestBuilder, Response, StatusCode};

use crate::config::{CiConfig, CommitSha, ConfigId, GitAuth, Provider, RepoName};
use crate::secrets::{ExposeSecret, Secrets, SecretsError};

/// The state of a commit status, in prdiff's terms (mapped per host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusState {
    Pending,
    Success,
    Failure,
    Error,
}

/// A commit status to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitStatus {
    pub state: StatusState,
    /// `prdiff/<configuration>` (see [`CiConfig::status_context`]).
    pub context: String,
    /// Shortened to the host's limit (GitHub: 140 characters) by the adapter.
    pub description: String,
    pub target_url: Option<String>,
}

/// A comment that was created or edited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentRef {
    pub id: u64,
    /// False when an existing comment carrying the marker was edited.
    pub created: bool,
    /// The comment's page for people (GitHub `html_url`; GitLab the merge request page
    /// with `#note_<id>`), when the host gives one: a commit status links to it.
    pub url: Option<String>,
}

/// Why a git host call failed.
#[derive(Debug, thiserror::Error)]
pub enum GitHostError {
    #[error("rate limited by the git host; retry in {} s", retry_after.as_secs())]
    RateLimited { retry_after: Duration },
    #[error("git host answered {status} for {what}: {message}")]
    Http {
        status: u16,
        what: String,
        message: String,
    },
    #[error("git host request for {what} failed")]
    Transport {
        what: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("git host sent an unexpected response for {what}: {problem}")]
    Decode { what: String, problem: String },
    #[error("git host credentials are unusable: {0}")]
    Credentials(String),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
}

impl GitHostError {
    /// Rate limits, server errors and network failures pass; 4xx and bad credentials stay.
    pub fn is_retryable(&self) -> bool {
        match self {
            GitHostError::RateLimited { .. } | GitHostError::Transport { .. } => true,
            GitHostError::Http { status, .. } => *status >= 500,
            GitHostError::Secrets(e) => e.is_retryable(),
            GitHostError::Decode { .. } | GitHostError::Credentials(_) => false,
        }
    }
}

/// What prdiff asks of a git host.
#[async_trait]
pub trait GitHost: Send + Sync {
    /// Paths changed by a PR (renamed files count with both paths), up to the host's
    /// listing limit (GitHub: 3000 files).
    async fn changed_files(
        &self,
        repo: &RepoName,
        number: u64,
    ) -> Result<Vec<String>, GitHostError>;
    /// The best common ancestor of `base` (branch or sha) and `head`.
    async fn merge_base(
        &self,
        repo: &RepoName,
        base: &str,
        head: &CommitSha,
    ) -> Result<CommitSha, GitHostError>;
    /// The latest commit of a branch.
    async fn branch_head(&self, repo: &RepoName, branch: &str) -> Result<CommitSha, GitHostError>;
    /// Sets (or moves) a commit status. Setting the state it already has is not an error.
    async fn set_status(
        &self,
        repo: &RepoName,
        sha: &CommitSha,
        status: &CommitStatus,
    ) -> Result<(), GitHostError>;
    /// Edits the PR comment containing `marker`, or creates one. `body` must contain it.
    async fn upsert_comment(
        &self,
        repo: &RepoName,
        number: u64,
        marker: &str,
        body: &str,
    ) -> Result<CommentRef, GitHostError>;
    /// Labels currently on the PR.
    async fn labels(&self, repo: &RepoName, number: u64) -> Result<Vec<String>, GitHostError>;
}

/// Hands out the git host client of a configuration.
#[async_trait]
pub trait GitHosts: Send + Sync {
    async fn for_config(&self, config: &CiConfig) -> Result<Arc<dyn GitHost>, GitHostError>;
}

/// HTTP behaviour shared by the clients.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Rate-limit waits up to this long are slept through; longer ones are returned.
    pub max_rate_limit_wait: Duration,
    /// Attempts per request (rate-limit waits included).
    pub attempts: u32,
    pub timeout: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            max_rate_limit_wait: Duration::from_secs(10),
            attempts: 3,
            timeout: Duration::from_secs(10),
        }
    }
}

/// A reqwest client for git hosts (rustls, prdiff user agent).
pub fn http_client(settings: &HttpSettings) -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("prdiff/", env!("CARGO_PKG_VERSION")))
        .timeout(settings.timeout)
        .build()
        .expect("reqwest client with rustls")
}

/// Builds real clients from configurations and secrets, and keeps them for the life of the
/// process so GitHub App installation tokens are reused until they near expiry.
pub struct HttpGitHosts {
    http: reqwest::Client,
    settings: HttpSettings,
    secrets: Arc<dyn Secrets>,
    clients: Mutex<HashMap<ConfigId, CachedClient>>,
}

/// A client and the configuration it was built from (rebuilt when that changes).
type CachedClient = (CiConfig, Arc<dyn GitHost>);

impl HttpGitHosts {
    pub fn new(secrets: Arc<dyn Secrets>, settings: HttpSettings) -> Self {
        Self {
            http: http_client(&settings),
            settings,
            secrets,
            clients: Mutex::default(),
        }
    }
}

#[async_trait]
impl GitHosts for HttpGitHosts {
    async fn for_config(&self, config: &CiConfig) -> Result<Arc<dyn GitHost>, GitHostError> {
        if let Some((seen, client)) = self
            .clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&config.name)
            && seen == config
        {
            return Ok(client.clone());
        }
        let base = config.repository.api_base_url.clone();
        let client: Arc<dyn GitHost> = match (&config.repository.provider, &config.git_auth) {
            (Provider::Github, GitAuth::Token { token }) => Arc::new(github::GitHub::new(
                self.http.clone(),
                self.settings.clone(),
                base,
                github::GitHubAuth::Token(self.secrets.get(token).await?),
            )),
            (
                Provider::Github,
                GitAuth::GithubApp {
                    app_id,
                    installation_id,
                    private_key,
                },
            ) => {
                let pem = self.secrets.get(private_key).await?;
                Arc::new(github::GitHub::new(
                    self.http.clone(),
                    self.settings.clone(),
                    base,
                    github::GitHubAuth::app(
                        *app_id,
                        *installation_id,
                        pem.expose_secret().as_bytes(),
                    )?,
                ))
            }
            (Provider::Gitlab, GitAuth::Token { token }) => Arc::new(gitlab::GitLab::new(
                self.http.clone(),
                self.settings.clone(),
                base,
                self.secrets.get(token).await?,
            )),
            (Provider::Gitlab, GitAuth::GithubApp { .. }) => {
                return Err(GitHostError::Credentials(
                    "a GitHub App cannot authenticate to GitLab".into(),
                ));
            }
        };
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(config.name.clone(), (config.clone(), client.clone()));
        Ok(client)
    }
}

/// How long a rate-limited response asks us to wait, if it is one.
fn rate_limit_wait(resp: &Response) -> Option<Duration> {
    let status = resp.status();
    if status != StatusCode::TOO_MANY_REQUESTS && status != StatusCode::FORBIDDEN {
        return None;
    }
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    if let Some(secs) = header("retry-after") {
        return Some(Duration::from_secs(secs));
    }
    let remaining = header("x-ratelimit-remaining").or_else(|| header("ratelimit-remaining"));
    let reset = header("x-ratelimit-reset").or_else(|| header("ratelimit-reset"));
    match (remaining, reset) {
        (Some(0), Some(reset)) => Some(Duration::from_secs(reset.saturating_sub(unix_now()))),
        // GitHub's secondary limits: 403/429 without headers; its docs say wait a minute.
        _ if status == StatusCode::TOO_MANY_REQUESTS => Some(Duration::from_secs(60)),
        _ => None,
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Sends a request built by `build`, waiting out short rate limits; non-2xx responses
/// become [`GitHostError::Http`] with the host's message.
pub(crate) async fn send(
    settings: &HttpSettings,
    what: &str,
    build: impl Fn() -> RequestBuilder,
) -> Result<Response, GitHostError> {
    let mut attempt = 1;
    loop {
        let resp = build()
            .send()
            .await
            .map_err(|source| GitHostError::Transport {
                what: what.to_owned(),
                source,
            })?;
        if let Some(wait) = rate_limit_wait(&resp) {
            if wait <= settings.max_rate_limit_wait && attempt < settings.attempts {
                tracing::info!(
                    what,
                    wait_s = wait.as_secs(),
                    "git host rate limit; waiting"
                );
                tokio::time::sleep(wait).await;
                attempt += 1;
                continue;
            }
            return Err(GitHostError::RateLimited { retry_after: wait });
        }
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| {
                v.get("message").or_else(|| v.get("error")).map(|m| {
                    m.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| m.to_string())
                })
            })
            .unwrap_or_else(|| text.chars().take(200).collect());
        return Err(GitHostError::Http {
            status,
            what: what.to_owned(),
            message,
        });
    }
}

/// Items per page of a list endpoint (both hosts' maximum).
const PER_PAGE: usize = 100;

/// Every page of a list endpoint, up to `max_items`: `fetch` gets each page's `per_page`
/// and `page` query parameters (GitHub's and GitLab's convention); a short page is the last.
pub(crate) async fn collect_pages<T, F, Fut>(
    max_items: usize,
    mut fetch: F,
) -> Result<Vec<T>, GitHostError>
where
    F: FnMut(Vec<(&'static str, String)>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>, GitHostError>>,
{
    let mut all = Vec::new();
    for page in 1..=max_items.div_ceil(PER_PAGE) {
        let items = fetch(vec![
            ("per_page", PER_PAGE.to_string()),
            ("page", page.to_string()),
        ])
        .await?;
        let last = items.len() < PER_PAGE;
        all.extend(items);
        if last {
            break;
        }
    }
    all.truncate(max_items);
    Ok(all)
}

/// Reads a JSON body.
pub(crate) async fn json<T: serde::de::DeserializeOwned>(
    what: &str,
    resp: Response,
) -> Result<T, GitHostError> {
    let bytes = resp
        .bytes()
        .await
        .map_err(|source| GitHostError::Transport {
            what: what.to_owned(),
            source,
        })?;
    serde_json::from_slice(&bytes).map_err(|e| GitHostError::Decode {
        what: what.to_owned(),
        problem: e.to_string(),
    })
}

/// A commit id from a host response.
pub(crate) fn sha(what: &str, s: &str) -> Result<CommitSha, GitHostError> {
    CommitSha::parse(s.to_ascii_lowercase()).map_err(|problem| GitHostError::Decode {
        what: what.to_owned(),
        problem,
    })
}

/// Shortens `text` to at most `max` characters, ending with `…` when cut.
pub fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Unix seconds of an RFC 3339 UTC timestamp (`2024-11-25T01:00:02Z`), as GitHub writes them.
pub(crate) fn parse_rfc3339_utc(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || !s.ends_with('Z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves `total` numbered items in pages, recording the page parameters it was asked.
    async fn pages(total: usize, max_items: usize) -> (Vec<usize>, Vec<(String, String)>) {
        let asked = Mutex::new(Vec::new());
        let items = collect_pages(max_items, |q| {
            let (per, page) = (q[0].1.clone(), q[1].1.clone());
            asked.lock().unwrap().push((per.clone(), page.clone()));
            async move {
                let (per, page): (usize, usize) = (per.parse().unwrap(), page.parse().unwrap());
                let start = (page - 1) * per;
                Ok((start..total.min(start + per)).collect())
            }
        })
        .await
        .unwrap();
        (items, asked.into_inner().unwrap())
    }

    #[tokio::test]
    async fn pages_are_collected_until_a_short_one_or_the_limit() {
        let (items, asked) = pages(250, 5000).await;
        assert_eq!(items, (0..250).collect::<Vec<_>>());
        assert_eq!(asked.len(), 3, "the short third page is the last");
        assert!(asked.iter().all(|(per, _)| per == "100"));
        let (items, asked) = pages(200, 5000).await;
        assert_eq!(items.len(), 200);
        assert_eq!(asked.len(), 3, "a full page asks for the next one");
        let (items, asked) = pages(1000, 150).await;
        assert_eq!(items, (0..150).collect::<Vec<_>>(), "cut at the limit");
        assert_eq!(asked.len(), 2);
    }

    #[test]
    fn rfc3339_timestamps_convert_to_unix_seconds() {
        assert_eq!(parse_rfc3339_utc("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_utc("2024-11-25T01:00:02Z"),
            Some(1_732_496_402)
        );
        assert_eq!(parse_rfc3339_utc("2024-11-25 01:00:02"), None);
    }

    #[test]
    fn long_descriptions_are_shortened_to_the_limit() {
        let long = "é".repeat(200);
        let short = shorten(&long, 140);
        assert_eq!(short.chars().count(), 140);
        assert!(short.ends_with('…'));
        assert_eq!(shorten("ok", 140), "ok");
    }
}
