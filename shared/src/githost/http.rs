//! The git hosts' HTTP adapter: [`HttpGitHosts`] builds the GitHub or GitLab client of a
//! configuration, and the transport they share (requests with rate-limit handling, paging,
//! JSON decoding).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::{RequestBuilder, Response, StatusCode};

use async_trait::async_trait;

use super::{GitHost, GitHostError, GitHosts, github, gitlab};
use crate::config::{CiConfig, CommitSha, ConfigId, GitAuth, Provider};
use crate::secrets::{ExposeSecret, Secrets};

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

pub(crate) fn unix_now() -> u64 {
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
    use std::sync::Mutex;

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
}
