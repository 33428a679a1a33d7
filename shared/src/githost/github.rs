//! GitHub REST (api.github.com or GitHub Enterprise Server's `/api/v3`).
//!
//! Auth is a token, or a GitHub App: an RS256 JWT (issued 60 s in the past against clock
//! drift, valid 9 minutes) buys an installation token, which is cached until five minutes
//! before it expires.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::RequestBuilder;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::http::{HttpSettings, json, parse_rfc3339_utc, send, sha, unix_now};
use super::{
    CheckAnnotation, CheckOutput, CommentRef, CommitStatus, GitHost, GitHostError, StatusState,
    shorten,
};
use crate::config::{CommitSha, RepoName};

/// api.github.com.
pub const PUBLIC_API: &str = "https://api.github.com";
/// GitHub's limit on a commit status description.
pub const STATUS_DESCRIPTION_MAX: usize = 140;
/// GitHub lists at most this many files of a PR.
pub const MAX_PR_FILES: usize = 3000;
/// GitHub lists at most this many commits of a PR.
pub const MAX_PR_COMMITS: usize = 250;
/// GitHub's limit on a check run's `output.summary` (characters).
pub const CHECK_SUMMARY_MAX: usize = 65_535;
/// GitHub takes at most this many annotations per check run request.
pub const ANNOTATIONS_PER_REQUEST: usize = 50;
/// Refresh an installation token this long before GitHub says it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(300);

/// How prdiff authenticates to GitHub.
pub enum GitHubAuth {
    Token(SecretString),
    App {
        app_id: u64,
        installation_id: u64,
        key: EncodingKey,
        /// Installation token and its expiry (unix seconds).
        cached: Mutex<Option<(SecretString, u64)>>,
    },
}

impl GitHubAuth {
    /// A GitHub App from its id, installation and PEM private key.
    pub fn app(app_id: u64, installation_id: u64, pem: &[u8]) -> Result<Self, GitHostError> {
        let key = EncodingKey::from_rsa_pem(pem).map_err(|e| {
            GitHostError::Credentials(format!("GitHub App private key is not an RSA PEM: {e}"))
        })?;
        Ok(Self::App {
            app_id,
            installation_id,
            key,
            cached: Mutex::new(None),
        })
    }
}

/// A GitHub REST client.
pub struct GitHub {
    http: reqwest::Client,
    settings: HttpSettings,
    base: String,
    auth: GitHubAuth,
}

#[derive(Deserialize)]
struct PrFile {
    filename: String,
    #[serde(default)]
    previous_filename: Option<String>,
}

#[derive(Deserialize)]
struct PrCommit {
    commit: CommitMessage,
}

#[derive(Deserialize)]
struct CommitMessage {
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct ShaOnly {
    sha: String,
}

#[derive(Deserialize)]
struct Compare {
    merge_base_commit: ShaOnly,
}

#[derive(Deserialize)]
struct Branch {
    commit: ShaOnly,
}

#[derive(Deserialize)]
struct Comment {
    id: u64,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    html_url: Option<String>,
}

#[derive(Deserialize)]
struct CheckRunId {
    id: u64,
}

#[derive(Deserialize)]
struct CheckRunList {
    check_runs: Vec<CheckRunId>,
}

/// A check run's `output` with one batch of annotations.
fn check_output(output: &CheckOutput, batch: &[CheckAnnotation]) -> serde_json::Value {
    let annotations: Vec<serde_json::Value> = batch
        .iter()
        .map(|a| {
            serde_json::json!({
                "path": a.path,
                "start_line": 1,
                "end_line": 1,
                "annotation_level": a.level.as_str(),
                "title": shorten(&a.title, 255),
                "message": shorten(&a.message, 64 * 1024),
            })
        })
        .collect();
    serde_json::json!({
        "title": shorten(&output.title, 255),
        "summary": shorten(&output.summary, CHECK_SUMMARY_MAX),
        "annotations": annotations,
    })
}

#[derive(Deserialize)]
struct LabelName {
    name: String,
}

#[derive(Deserialize)]
struct PullRef {
    sha: String,
    #[serde(rename = "ref")]
    name: String,
}

#[derive(Deserialize)]
struct Pull {
    state: String,
    #[serde(default)]
    draft: bool,
    head: PullRef,
    base: PullRef,
    #[serde(default)]
    labels: Vec<LabelName>,
    #[serde(default)]
    body: Option<String>,
}

#[derive(Deserialize)]
struct Permission {
    #[serde(default)]
    permission: Option<String>,
    #[serde(default)]
    role_name: Option<String>,
}

#[derive(Deserialize)]
struct InstallationToken {
    token: String,
    expires_at: String,
}

#[derive(serde::Serialize)]
struct AppClaims {
    iat: u64,
    exp: u64,
    iss: String,
}

impl GitHub {
    /// `base` is the API root; api.github.com when `None`.
    pub fn new(
        http: reqwest::Client,
        settings: HttpSettings,
        base: Option<url::Url>,
        auth: GitHubAuth,
    ) -> Self {
        let base = base
            .map(|u| u.as_str().trim_end_matches('/').to_owned())
            .unwrap_or_else(|| PUBLIC_API.to_owned());
        Self {
            http,
            settings,
            base,
            auth,
        }
    }

    fn url(&self, repo: &RepoName, tail: &str) -> String {
        format!("{}/repos/{}{tail}", self.base, repo.as_str())
    }

    /// The app JWT: RS256, `iss` = app id, issued 60 s ago, expiring in 9 minutes
    /// (GitHub refuses more than 10).
    fn app_jwt(app_id: u64, key: &EncodingKey) -> Result<String, GitHostError> {
        let now = unix_now();
        let claims = AppClaims {
            iat: now.saturating_sub(60),
            exp: now + 540,
            iss: app_id.to_string(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, key)
            .map_err(|e| GitHostError::Credentials(format!("cannot sign the GitHub App JWT: {e}")))
    }

    /// The bearer token for API calls (fetching an installation token when needed).
    async fn token(&self) -> Result<SecretString, GitHostError> {
        match &self.auth {
            GitHubAuth::Token(t) => Ok(t.clone()),
            GitHubAuth::App {
                app_id,
                installation_id,
                key,
                cached,
            } => {
                if let Some((token, expires)) =
                    cached.lock().unwrap_or_else(|p| p.into_inner()).as_ref()
                    && unix_now() + TOKEN_MARGIN.as_secs() < *expires
                {
                    return Ok(token.clone());
                }
                let jwt = Self::app_jwt(*app_id, key)?;
                let url = format!(
                    "{}/app/installations/{installation_id}/access_tokens",
                    self.base
                );
                let what = "GitHub App installation token";
                let resp = send(&self.settings, what, || {
                    self.http
                        .post(&url)
                        .bearer_auth(&jwt)
                        .header("accept", "application/vnd.github+json")
                })
                .await?;
                let t: InstallationToken = json(what, resp).await?;
                let expires =
                    parse_rfc3339_utc(&t.expires_at).ok_or_else(|| GitHostError::Decode {
                        what: what.into(),
                        problem: format!("expires_at {:?} is not RFC 3339", t.expires_at),
                    })?;
                let token = SecretString::from(t.token);
                *cached.lock().unwrap_or_else(|p| p.into_inner()) = Some((token.clone(), expires));
                tracing::info!(
                    installation_id,
                    expires,
                    "GitHub App installation token issued"
                );
                Ok(token)
            }
        }
    }

    /// Check runs need a GitHub App: a token (PAT) cannot create them.
    fn has_checks(&self) -> bool {
        matches!(self.auth, GitHubAuth::App { .. })
    }

    fn authed(&self, rb: RequestBuilder, token: &SecretString) -> RequestBuilder {
        rb.bearer_auth(token.expose_secret())
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28")
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        url: &str,
        query: &[(&str, String)],
    ) -> Result<T, GitHostError> {
        let token = self.token().await?;
        let resp = send(&self.settings, what, || {
            self.authed(self.http.get(url), &token).query(query)
        })
        .await?;
        json(what, resp).await
    }

    /// Every page of a list endpoint, up to `max_items`.
    async fn paged<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        url: &str,
        max_items: usize,
    ) -> Result<Vec<T>, GitHostError> {
        super::http::collect_pages(max_items, |query| async move {
            self.get_json(what, url, &query).await
        })
        .await
    }
}

/// GitHub's status state names.
fn state_name(s: StatusState) -> &'static str {
    match s {
        StatusState::Pending => "pending",
        StatusState::Success => "success",
        StatusState::Failure => "failure",
        StatusState::Error => "error",
    }
}

#[async_trait]
impl GitHost for GitHub {
    async fn changed_files(
        &self,
        repo: &RepoName,
        number: u64,
    ) -> Result<Vec<String>, GitHostError> {
        let files: Vec<PrFile> = self
            .paged(
                "PR files",
                &self.url(repo, &format!("/pulls/{number}/files")),
                MAX_PR_FILES,
            )
            .await?;
        let mut paths = Vec::with_capacity(files.len());
        for f in files {
            paths.extend(f.previous_filename);
            paths.push(f.filename);
        }
        Ok(paths)
    }

    async fn commit_messages(
        &self,
        repo: &RepoName,
        number: u64,
    ) -> Result<Vec<String>, GitHostError> {
        let commits: Vec<PrCommit> = self
            .paged(
                "PR commits",
                &self.url(repo, &format!("/pulls/{number}/commits")),
                MAX_PR_COMMITS,
            )
            .await?;
        Ok(commits.into_iter().map(|c| c.commit.message).collect())
    }

    async fn merge_base(
        &self,
        repo: &RepoName,
        base: &str,
        head: &CommitSha,
    ) -> Result<CommitSha, GitHostError> {
        let what = "compare (merge base)";
        let base_enc =
            percent_encoding::utf8_percent_encode(base, percent_encoding::NON_ALPHANUMERIC);
        let url = self.url(repo, &format!("/compare/{base_enc}...{head}"));
        // per_page=1 keeps the commit and file lists of a large compare small.
        let c: Compare = self
            .get_json(what, &url, &[("per_page", "1".into())])
            .await?;
        sha(what, &c.merge_base_commit.sha)
    }

    async fn branch_head(&self, repo: &RepoName, branch: &str) -> Result<CommitSha, GitHostError> {
        let what = "branch head";
        let enc = percent_encoding::utf8_percent_encode(branch, percent_encoding::NON_ALPHANUMERIC);
        let b: Branch = self
            .get_json(what, &self.url(repo, &format!("/branches/{enc}")), &[])
            .await?;
        sha(what, &b.commit.sha)
    }

    async fn set_status(
        &self,
        repo: &RepoName,
        sha: &CommitSha,
        status: &CommitStatus,
    ) -> Result<(), GitHostError> {
        let token = self.token().await?;
        let url = self.url(repo, &format!("/statuses/{sha}"));
        let mut body = serde_json::json!({
            "state": state_name(status.state),
            "context": status.context,
            "description": shorten(&status.description, STATUS_DESCRIPTION_MAX),
        });
        if let Some(u) = &status.target_url {
            body["target_url"] = u.clone().into();
        }
        send(&self.settings, "commit status", || {
            self.authed(self.http.post(&url), &token).json(&body)
        })
        .await?;
        Ok(())
    }

    async fn upsert_comment(
        &self,
        repo: &RepoName,
        number: u64,
        marker: &str,
        body: &str,
    ) -> Result<CommentRef, GitHostError> {
        let comments: Vec<Comment> = self
            .paged(
                "PR comments",
                &self.url(repo, &format!("/issues/{number}/comments")),
                5000,
            )
            .await?;
        let token = self.token().await?;
        let payload = serde_json::json!({ "body": body });
        let existing = comments
            .iter()
            .find(|c| c.body.as_deref().is_some_and(|b| b.contains(marker)));
        let (resp, created) = match existing {
            Some(c) => {
                let url = self.url(repo, &format!("/issues/comments/{}", c.id));
                let r = send(&self.settings, "edit comment", || {
                    self.authed(self.http.patch(&url), &token).json(&payload)
                })
                .await?;
                (r, false)
            }
            None => {
                let url = self.url(repo, &format!("/issues/{number}/comments"));
                let r = send(&self.settings, "create comment", || {
                    self.authed(self.http.post(&url), &token).json(&payload)
                })
                .await?;
                (r, true)
            }
        };
        let c: Comment = json("comment", resp).await?;
        Ok(CommentRef {
            id: c.id,
            created,
            url: c
                .html_url
                .filter(|u| u.starts_with("https://") || u.starts_with("http://")),
        })
    }

    async fn labels(&self, repo: &RepoName, number: u64) -> Result<Vec<String>, GitHostError> {
        let labels: Vec<LabelName> = self
            .paged(
                "PR labels",
                &self.url(repo, &format!("/issues/{number}/labels")),
                1000,
            )
            .await?;
        Ok(labels.into_iter().map(|l| l.name).collect())
    }

    async fn pull_request(
        &self,
        repo: &RepoName,
        number: u64,
    ) -> Result<super::PullRequest, GitHostError> {
        let what = "pull request";
        let p: Pull = self
            .get_json(what, &self.url(repo, &format!("/pulls/{number}")), &[])
            .await?;
        Ok(super::PullRequest {
            head_sha: sha(what, &p.head.sha)?,
            head_branch: p.head.name,
            base_branch: p.base.name,
            draft: p.draft,
            labels: p.labels.into_iter().map(|l| l.name).collect(),
            open: p.state == "open",
            description: p.body,
        })
    }

    async fn can_write(
        &self,
        repo: &RepoName,
        author: &crate::intake::Author,
    ) -> Result<bool, GitHostError> {
        let user = percent_encoding::utf8_percent_encode(
            &author.login,
            percent_encoding::NON_ALPHANUMERIC,
        );
        let url = self.url(repo, &format!("/collaborators/{user}/permission"));
        let p: Permission = match self.get_json("collaborator permission", &url, &[]).await {
            Ok(p) => p,
            // Not a collaborator (or not a user): no write access.
            Err(GitHostError::Http { status: 404, .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        let writes = |r: &Option<String>| {
            r.as_deref()
                .is_some_and(|r| matches!(r, "admin" | "maintain" | "write"))
        };
        Ok(writes(&p.permission) || writes(&p.role_name))
    }

    async fn start_check_run(
        &self,
        repo: &RepoName,
        sha: &CommitSha,
        name: &str,
    ) -> Result<bool, GitHostError> {
        if !self.has_checks() {
            return Ok(false);
        }
        let token = self.token().await?;
        let url = self.url(repo, "/check-runs");
        let body = serde_json::json!({
            "name": name,
            "head_sha": sha.as_str(),
            "status": "in_progress",
        });
        let resp = send(&self.settings, "create check run", || {
            self.authed(self.http.post(&url), &token).json(&body)
        })
        .await?;
        let _: CheckRunId = json("check run", resp).await?;
        Ok(true)
    }

    async fn complete_check_run(
        &self,
        repo: &RepoName,
        sha: &CommitSha,
        name: &str,
        output: &CheckOutput,
    ) -> Result<bool, GitHostError> {
        if !self.has_checks() {
            return Ok(false);
        }
        let list: CheckRunList = self
            .get_json(
                "check runs",
                &self.url(repo, &format!("/commits/{sha}/check-runs")),
                &[("check_name", name.to_owned()), ("filter", "latest".into())],
            )
            .await?;
        let token = self.token().await?;
        let mut batches = output.annotations.chunks(ANNOTATIONS_PER_REQUEST);
        let first = batches.next().unwrap_or(&[]);
        let mut body = serde_json::json!({
            "status": "completed",
            "conclusion": output.conclusion.as_str(),
            "output": check_output(output, first),
        });
        let id = match list.check_runs.first() {
            Some(run) => {
                let url = self.url(repo, &format!("/check-runs/{}", run.id));
                send(&self.settings, "update check run", || {
                    self.authed(self.http.patch(&url), &token).json(&body)
                })
                .await?;
                run.id
            }
            None => {
                body["name"] = name.into();
                body["head_sha"] = sha.as_str().into();
                let url = self.url(repo, "/check-runs");
                let resp = send(&self.settings, "create check run", || {
                    self.authed(self.http.post(&url), &token).json(&body)
                })
                .await?;
                let created: CheckRunId = json("check run", resp).await?;
                created.id
            }
        };
        // Annotations past the first 50 are appended by further updates of the same run.
        let url = self.url(repo, &format!("/check-runs/{id}"));
        for batch in batches {
            let body = serde_json::json!({ "output": check_output(output, batch) });
            send(&self.settings, "update check run", || {
                self.authed(self.http.patch(&url), &token).json(&body)
            })
            .await?;
        }
        Ok(true)
    }
}
