//! Git hosts behind one trait: what prdiff needs from GitHub and GitLab, and nothing more.
//!
//! Adapters: `http.rs` ([`http::HttpGitHosts`]: the HTTP clients' shared transport, rate
//! limits and paging, choosing `github.rs` or `gitlab.rs` per configuration), `github.rs` (REST v3; token or GitHub App; GitHub Enterprise Server base URL),
//! `gitlab.rs` (REST v4; project access token; self-managed base URL) and `memory.rs` (an
//! in-process fake that records what was sent, for `prdiff serve --offline`, tests and the
//! benchmark). [`GitHosts`] turns a configuration into a client, so a handler never builds
//! HTTP clients or reads tokens itself.
//!
//! Rate limits: a 403/429 carrying `retry-after` or an exhausted `x-ratelimit-*` window is
//! waited out when the wait is short ([`http::HttpSettings::max_rate_limit_wait`]) and otherwise
//! returned as [`GitHostError::RateLimited`] so the caller's queue retries later.

pub mod github;
pub mod gitlab;
pub mod http;
pub mod memory;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::config::{CiConfig, CommitSha, RepoName};
use crate::secrets::SecretsError;

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

/// How a finished check run concludes (GitHub's `conclusion`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckConclusion {
    Success,
    Failure,
    /// What would fail, with status reporting off ("(not blocking)").
    Neutral,
}

impl CheckConclusion {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckConclusion::Success => "success",
            CheckConclusion::Failure => "failure",
            CheckConclusion::Neutral => "neutral",
        }
    }
}

/// An annotation's level (GitHub's `annotation_level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnotationLevel {
    Notice,
    Warning,
    Failure,
}

impl AnnotationLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            AnnotationLevel::Notice => "notice",
            AnnotationLevel::Warning => "warning",
            AnnotationLevel::Failure => "failure",
        }
    }
}

/// A note on one file of the PR (a model's SQL file), on its first line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckAnnotation {
    /// The file's path in the repository (the model's `original_file_path`).
    pub path: String,
    pub level: AnnotationLevel,
    pub title: String,
    /// One line of counts.
    pub message: String,
}

/// What a completed check run shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutput {
    pub conclusion: CheckConclusion,
    /// The commit status description.
    pub title: String,
    /// Markdown; the adapter keeps it within the host's limit.
    pub summary: String,
    pub annotations: Vec<CheckAnnotation>,
}

/// A pull/merge request as the host shows it now (what a `/prdiff run` comment or the
/// HTTP trigger does not carry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    pub head_sha: CommitSha,
    pub head_branch: String,
    pub base_branch: String,
    pub draft: bool,
    pub labels: Vec<String>,
    /// False when closed or merged.
    pub open: bool,
    /// The PR description (GitHub `body`, GitLab `description`): where column remapping
    /// directives may be.
    pub description: Option<String>,
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
    /// The full messages of a PR's commits, oldest first, up to the host's listing limit
    /// (GitHub: 250 commits).
    async fn commit_messages(
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
    /// The PR as it is now: head commit, branches, labels, draft and open state.
    async fn pull_request(&self, repo: &RepoName, number: u64)
    -> Result<PullRequest, GitHostError>;
    /// Whether `author` may push to the repository (GitHub permission `write`, `maintain`
    /// or `admin`; GitLab access level Developer (30) or more): who may start a run from
    /// a comment. An unknown user may not.
    async fn can_write(
        &self,
        repo: &RepoName,
        author: &crate::intake::Author,
    ) -> Result<bool, GitHostError>;
    /// Starts a check run `name` (status `in_progress`) on `sha`. False when the host or
    /// its authentication has no check runs (GitLab; GitHub with a token).
    async fn start_check_run(
        &self,
        _repo: &RepoName,
        _sha: &CommitSha,
        _name: &str,
    ) -> Result<bool, GitHostError> {
        Ok(false)
    }
    /// Completes the latest check run `name` on `sha` (creating it when there is none)
    /// with `output`. False when the host or its authentication has no check runs.
    async fn complete_check_run(
        &self,
        _repo: &RepoName,
        _sha: &CommitSha,
        _name: &str,
        _output: &CheckOutput,
    ) -> Result<bool, GitHostError> {
        Ok(false)
    }
}

/// Hands out the git host client of a configuration.
#[async_trait]
pub trait GitHosts: Send + Sync {
    async fn for_config(&self, config: &CiConfig) -> Result<Arc<dyn GitHost>, GitHostError>;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_descriptions_are_shortened_to_the_limit() {
        let long = "é".repeat(200);
        let short = shorten(&long, 140);
        assert_eq!(short.chars().count(), 140);
        assert!(short.ends_with('…'));
        assert_eq!(shorten("ok", 140), "ok");
    }
}
