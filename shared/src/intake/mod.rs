//! Webhook intake: checking that a delivery really comes from the git host, reading
//! GitHub / GitLab payloads into one [`HostEvent`], and the gates that decide whether a
//! pull request event starts a run.
//!
//! Provider JSON shapes stay private to `github.rs` and `gitlab.rs`; the webhook handler
//! sees only the domain types below.

pub mod command;
pub mod gates;
pub mod github;
pub mod gitlab;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::{CommitSha, Provider, RepoName};
use crate::secrets::{ExposeSecret, SecretString};

/// Why a delivery could not be read. Each maps to a 4xx; none is retryable (the same bytes
/// fail again).
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("body is not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
    #[error("payload lacks or mistypes {field}: {problem}")]
    Field {
        field: &'static str,
        problem: String,
    },
}

impl IntakeError {
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// What a delivery is about, once read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEvent {
    /// GitHub's hook-created check.
    Ping,
    PullRequest(PrEvent),
    /// A pull/merge request was closed or merged: its open run is cancelled.
    PrClosed {
        provider: Provider,
        repository: RepoName,
        number: u64,
    },
    Push(PushEvent),
    /// A `/prdiff run` comment on a pull/merge request.
    Command(RunCommand),
    /// A valid delivery prdiff does not act on; the reason goes into the 200 response.
    NotHandled(String),
}

/// Whether an edit of a PR description (text before, after) changed its column remapping
/// directives.
fn remap_edited(before: Option<&str>, after: Option<&str>) -> bool {
    let directives = |t: Option<&str>| {
        t.map(|t| crate::diff::remap::parse_text(t, "PR description"))
            .unwrap_or_default()
    };
    directives(before) != directives(after)
}

/// What happened to a pull/merge request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrAction {
    Opened,
    Reopened,
    /// New commits (GitHub `synchronize`, GitLab `update` with `oldrev`).
    NewCommits,
    ReadyForReview,
    /// Labels were added (their names; GitLab may add several at once).
    Labeled(Vec<String>),
    /// The base (target) branch changed.
    BaseChanged,
    /// The description was edited and its column remapping directives changed (see
    /// [`crate::diff::remap`]): the models they touch are diffed again.
    RemapChanged,
    /// A run asked for by a `/prdiff run` comment or the HTTP trigger: the label gate and
    /// `max_models` do not apply.
    OnDemand,
}

impl PrAction {
    pub fn as_str(&self) -> &'static str {
        match self {
            PrAction::Opened => "opened",
            PrAction::Reopened => "reopened",
            PrAction::NewCommits => "new_commits",
            PrAction::ReadyForReview => "ready_for_review",
            PrAction::Labeled(_) => "labeled",
            PrAction::BaseChanged => "base_changed",
            PrAction::RemapChanged => "remap_changed",
            PrAction::OnDemand => "on_demand",
        }
    }
}

/// A pull/merge request event prdiff acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrEvent {
    pub provider: Provider,
    pub repository: RepoName,
    /// GitHub PR number / GitLab MR iid.
    pub number: u64,
    pub action: PrAction,
    pub head_sha: CommitSha,
    pub head_branch: String,
    pub base_branch: String,
    /// The base branch head as the host saw it (GitHub sends it; GitLab does not).
    pub base_sha: Option<CommitSha>,
    pub draft: bool,
    /// Labels on the PR after the event.
    pub labels: Vec<String>,
    /// Column remapping directives in the PR description (GitHub `pull_request.body`,
    /// GitLab `object_attributes.description`), in order.
    pub remap: Vec<crate::diff::remap::Remap>,
}

/// Who wrote a comment, as the host names them: the GitHub login, or the GitLab user id
/// (and username, for the logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    pub login: String,
    /// GitLab's numeric user id (the members API takes it); `None` on GitHub.
    pub id: Option<u64>,
}

/// A `/prdiff run` comment: who asked, on which pull/merge request, for which models.
/// The comment carries no head commit: the intake asks the host for the PR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunCommand {
    pub provider: Provider,
    pub repository: RepoName,
    /// GitHub PR number / GitLab MR iid.
    pub number: u64,
    pub author: Author,
    /// The models named (empty: every model the plan would diff); or why the command
    /// line was refused.
    pub models: Result<Vec<String>, String>,
}

/// A push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushEvent {
    pub provider: Provider,
    pub repository: RepoName,
    /// The branch pushed to; `None` for tags.
    pub branch: Option<String>,
    pub default_branch: Option<String>,
    /// The new head; `None` when the ref was deleted.
    pub after: Option<CommitSha>,
}

impl PushEvent {
    /// A push that moved the default branch to a commit (not a tag, not a deletion).
    pub fn updates_default_branch(&self) -> Option<&CommitSha> {
        match (&self.branch, &self.default_branch, &self.after) {
            (Some(b), Some(d), Some(after)) if b == d => Some(after),
            _ => None,
        }
    }
}

impl HostEvent {
    /// The repository the event belongs to, when it has one.
    pub fn repository(&self) -> Option<(Provider, &RepoName)> {
        match self {
            HostEvent::PullRequest(e) => Some((e.provider, &e.repository)),
            HostEvent::Push(e) => Some((e.provider, &e.repository)),
            HostEvent::Command(c) => Some((c.provider, &c.repository)),
            HostEvent::PrClosed {
                provider,
                repository,
                ..
            } => Some((*provider, repository)),
            HostEvent::Ping | HostEvent::NotHandled(_) => None,
        }
    }
}

/// Checks GitHub's `X-Hub-Signature-256` (`sha256=<hex HMAC-SHA256 of the raw body>`) in
/// constant time. The raw bytes matter: a re-serialised body does not verify.
pub fn verify_github_signature(secret: &SecretString, body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_sig) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(body);
    // verify_slice compares in constant time.
    mac.verify_slice(&expected).is_ok()
}

/// Checks GitLab's `X-Gitlab-Token` (the secret itself) in constant time.
pub fn verify_gitlab_token(secret: &SecretString, header: &str) -> bool {
    let expected = secret.expose_secret().as_bytes();
    let given = header.as_bytes();
    // ct_eq on slices of different lengths returns false without comparing contents;
    // the length of the secret is not what we protect.
    expected.ct_eq(given).into()
}

/// Reads a field of a JSON payload, naming it when it is missing.
pub(crate) fn field<'a>(
    v: &'a serde_json::Value,
    path: &'static str,
) -> Result<&'a serde_json::Value, IntakeError> {
    let mut cur = v;
    for part in path.split('.') {
        cur = cur.get(part).ok_or(IntakeError::Field {
            field: path,
            problem: "missing".into(),
        })?;
    }
    if cur.is_null() {
        return Err(IntakeError::Field {
            field: path,
            problem: "null".into(),
        });
    }
    Ok(cur)
}

pub(crate) fn str_field<'a>(
    v: &'a serde_json::Value,
    path: &'static str,
) -> Result<&'a str, IntakeError> {
    field(v, path)?.as_str().ok_or(IntakeError::Field {
        field: path,
        problem: "not a string".into(),
    })
}

pub(crate) fn u64_field(v: &serde_json::Value, path: &'static str) -> Result<u64, IntakeError> {
    field(v, path)?.as_u64().ok_or(IntakeError::Field {
        field: path,
        problem: "not a positive integer".into(),
    })
}

pub(crate) fn sha_field(
    v: &serde_json::Value,
    path: &'static str,
) -> Result<CommitSha, IntakeError> {
    CommitSha::parse(str_field(v, path)?).map_err(|problem| IntakeError::Field {
        field: path,
        problem,
    })
}

pub(crate) fn repo_field(
    v: &serde_json::Value,
    path: &'static str,
) -> Result<RepoName, IntakeError> {
    RepoName::parse(str_field(v, path)?).map_err(|problem| IntakeError::Field {
        field: path,
        problem,
    })
}

pub(crate) fn parse_json(body: &[u8]) -> Result<serde_json::Value, IntakeError> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(IntakeError::Json)?;
    if !v.is_object() {
        return Err(IntakeError::Field {
            field: "(body)",
            problem: "not a JSON object".into(),
        });
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_docs_test_vector_verifies() {
        let secret = SecretString::from("It's a Secret to Everybody".to_owned());
        assert!(verify_github_signature(
            &secret,
            b"Hello, World!",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        ));
    }

    #[test]
    fn a_wrong_or_malformed_github_signature_fails() {
        let secret = SecretString::from("It's a Secret to Everybody".to_owned());
        let good = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(!verify_github_signature(
            &secret,
            b"Hello, World?",
            &format!("sha256={good}")
        ));
        assert!(!verify_github_signature(&secret, b"Hello, World!", good));
        assert!(!verify_github_signature(
            &secret,
            b"Hello, World!",
            "sha256=zz"
        ));
        assert!(!verify_github_signature(
            &secret,
            b"Hello, World!",
            &format!("sha1={good}")
        ));
        assert!(!verify_github_signature(
            &secret,
            b"Hello, World!",
            "sha256="
        ));
    }

    #[test]
    fn gitlab_tokens_must_match_exactly() {
        let secret = SecretString::from("s3cret".to_owned());
        assert!(verify_gitlab_token(&secret, "s3cret"));
        assert!(!verify_gitlab_token(&secret, "s3cre"));
        assert!(!verify_gitlab_token(&secret, "s3cret "));
        assert!(!verify_gitlab_token(&secret, ""));
    }
}
