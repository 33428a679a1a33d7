//! GitLab REST v4 (gitlab.com or a self-managed instance), with a project access token.
//!
//! Projects are addressed by their URL-encoded full path (`group%2Fsub%2Fproject`), which
//! works without first looking up the numeric id.

use async_trait::async_trait;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::http::{HttpSettings, json, send, sha};
use super::{CommentRef, CommitStatus, GitHost, GitHostError, StatusState, shorten};
use crate::config::{CommitSha, RepoName};

/// gitlab.com's API root.
pub const PUBLIC_API: &str = "https://gitlab.com/api/v4";
/// Characters kept as they are in a path segment; everything else (including `/`) is
/// percent-encoded, as GitLab wants for project paths and branch names.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');
/// GitLab does not document a description limit; keep it as short as GitHub's.
const STATUS_DESCRIPTION_MAX: usize = 140;
/// The most commits of a merge request read for directives (the newest).
pub const MAX_MR_COMMITS: usize = 1000;

/// A GitLab REST client.
pub struct GitLab {
    http: reqwest::Client,
    settings: HttpSettings,
    base: String,
    token: SecretString,
}

#[derive(Deserialize)]
struct Diff {
    new_path: String,
    old_path: String,
}

#[derive(Deserialize)]
struct MrCommit {
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct CommitId {
    id: String,
}

#[derive(Deserialize)]
struct Branch {
    commit: CommitId,
}

#[derive(Deserialize)]
struct Note {
    id: u64,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    system: bool,
}

#[derive(Deserialize)]
struct MergeRequest {
    #[serde(default)]
    labels: Vec<String>,
}

#[derive(Deserialize)]
struct MergeRequestFull {
    sha: String,
    source_branch: String,
    target_branch: String,
    state: String,
    #[serde(default)]
    draft: bool,
    #[serde(default)]
    work_in_progress: bool,
    #[serde(default)]
    labels: Vec<String>,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Deserialize)]
struct Member {
    access_level: u32,
}

/// GitLab's Developer role: the least that may push to a project.
pub const DEVELOPER_ACCESS: u32 = 30;

fn state_name(s: StatusState) -> &'static str {
    match s {
        StatusState::Pending => "pending",
        StatusState::Success => "success",
        StatusState::Failure | StatusState::Error => "failed",
    }
}

impl GitLab {
    /// `base` is the API root (`https://gitlab.example.com/api/v4`); gitlab.com when `None`.
    pub fn new(
        http: reqwest::Client,
        settings: HttpSettings,
        base: Option<url::Url>,
        token: SecretString,
    ) -> Self {
        let base = base
            .map(|u| u.as_str().trim_end_matches('/').to_owned())
            .unwrap_or_else(|| PUBLIC_API.to_owned());
        Self {
            http,
            settings,
            base,
            token,
        }
    }

    fn url(&self, repo: &RepoName, tail: &str) -> String {
        format!(
            "{}/projects/{}{tail}",
            self.base,
            utf8_percent_encode(repo.as_str(), SEGMENT)
        )
    }

    /// The web page of a merge request note: the project's page (the instance root, the
    /// API root without `/api/v4`, then the project path), `/-/merge_requests/<iid>`, and
    /// the note's anchor.
    fn note_url(&self, repo: &RepoName, iid: u64, note: u64) -> Option<String> {
        let root = self.base.strip_suffix("/api/v4")?;
        Some(format!(
            "{root}/{}/-/merge_requests/{iid}#note_{note}",
            repo.as_str()
        ))
    }

    fn authed(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        rb.header("private-token", self.token.expose_secret())
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        url: &str,
        query: &[(&str, String)],
    ) -> Result<T, GitHostError> {
        let resp = send(&self.settings, what, || {
            self.authed(self.http.get(url)).query(query)
        })
        .await?;
        json(what, resp).await
    }

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

#[async_trait]
impl GitHost for GitLab {
    async fn changed_files(
        &self,
        repo: &RepoName,
        number: u64,
    ) -> Result<Vec<String>, GitHostError> {
        let diffs: Vec<Diff> = self
            .paged(
                "MR diffs",
                &self.url(repo, &format!("/merge_requests/{number}/diffs")),
                10_000,
            )
            .await?;
        let mut paths = Vec::with_capacity(diffs.len());
        for d in diffs {
            if d.old_path != d.new_path {
                paths.push(d.old_path);
            }
            paths.push(d.new_path);
        }
        Ok(paths)
    }

    async fn commit_messages(
        &self,
        repo: &RepoName,
        number: u64,
    ) -> Result<Vec<String>, GitHostError> {
        let commits: Vec<MrCommit> = self
            .paged(
                "MR commits",
                &self.url(repo, &format!("/merge_requests/{number}/commits")),
                MAX_MR_COMMITS,
            )
            .await?;
        // GitLab lists the newest first.
        Ok(commits.into_iter().rev().map(|c| c.message).collect())
    }

    async fn merge_base(
        &self,
        repo: &RepoName,
        base: &str,
        head: &CommitSha,
    ) -> Result<CommitSha, GitHostError> {
        let what = "merge base";
        let c: CommitId = self
            .get_json(
                what,
                &self.url(repo, "/repository/merge_base"),
                &[("refs[]", base.to_owned()), ("refs[]", head.to_string())],
            )
            .await?;
        sha(what, &c.id)
    }

    async fn branch_head(&self, repo: &RepoName, branch: &str) -> Result<CommitSha, GitHostError> {
        let what = "branch head";
        let url = self.url(
            repo,
            &format!(
                "/repository/branches/{}",
                utf8_percent_encode(branch, SEGMENT)
            ),
        );
        let b: Branch = self.get_json(what, &url, &[]).await?;
        sha(what, &b.commit.id)
    }

    async fn set_status(
        &self,
        repo: &RepoName,
        sha: &CommitSha,
        status: &CommitStatus,
    ) -> Result<(), GitHostError> {
        let url = self.url(repo, &format!("/statuses/{sha}"));
        let mut body = serde_json::json!({
            "state": state_name(status.state),
            "name": status.context,
            "description": shorten(&status.description, STATUS_DESCRIPTION_MAX),
        });
        if let Some(u) = &status.target_url {
            body["target_url"] = u.clone().into();
        }
        match send(&self.settings, "commit status", || {
            self.authed(self.http.post(&url)).json(&body)
        })
        .await
        {
            Ok(_) => Ok(()),
            // GitLab refuses to "move" a status to the state it already has; the status
            // is what we wanted, so this is success.
            Err(GitHostError::Http {
                status: 400,
                message,
                ..
            }) if message.contains("Cannot transition status") => {
                tracing::debug!(%sha, "GitLab status already in the requested state");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn upsert_comment(
        &self,
        repo: &RepoName,
        number: u64,
        marker: &str,
        body: &str,
    ) -> Result<CommentRef, GitHostError> {
        let notes_url = self.url(repo, &format!("/merge_requests/{number}/notes"));
        let notes: Vec<Note> = self.paged("MR notes", &notes_url, 5000).await?;
        let payload = serde_json::json!({ "body": body });
        let existing = notes
            .iter()
            .find(|n| !n.system && n.body.as_deref().is_some_and(|b| b.contains(marker)));
        let (resp, created) = match existing {
            Some(n) => {
                let url = format!("{notes_url}/{}", n.id);
                let r = send(&self.settings, "edit note", || {
                    self.authed(self.http.put(&url)).json(&payload)
                })
                .await?;
                (r, false)
            }
            None => {
                let r = send(&self.settings, "create note", || {
                    self.authed(self.http.post(&notes_url)).json(&payload)
                })
                .await?;
                (r, true)
            }
        };
        let n: Note = json("note", resp).await?;
        Ok(CommentRef {
            id: n.id,
            created,
            url: self.note_url(repo, number, n.id),
        })
    }

    async fn labels(&self, repo: &RepoName, number: u64) -> Result<Vec<String>, GitHostError> {
        let mr: MergeRequest = self
            .get_json(
                "merge request",
                &self.url(repo, &format!("/merge_requests/{number}")),
                &[],
            )
            .await?;
        Ok(mr.labels)
    }

    async fn pull_request(
        &self,
        repo: &RepoName,
        number: u64,
    ) -> Result<super::PullRequest, GitHostError> {
        let what = "merge request";
        let mr: MergeRequestFull = self
            .get_json(
                what,
                &self.url(repo, &format!("/merge_requests/{number}")),
                &[],
            )
            .await?;
        Ok(super::PullRequest {
            head_sha: sha(what, &mr.sha)?,
            head_branch: mr.source_branch,
            base_branch: mr.target_branch,
            draft: mr.draft || mr.work_in_progress,
            labels: mr.labels,
            open: mr.state == "opened",
            description: mr.description,
        })
    }

    async fn can_write(
        &self,
        repo: &RepoName,
        author: &crate::intake::Author,
    ) -> Result<bool, GitHostError> {
        let Some(id) = author.id else {
            return Ok(false);
        };
        let url = self.url(repo, &format!("/members/all/{id}"));
        match self.get_json::<Member>("project member", &url, &[]).await {
            Ok(m) => Ok(m.access_level >= DEVELOPER_ACCESS),
            // Not a member of the project or its groups.
            Err(GitHostError::Http { status: 404, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
