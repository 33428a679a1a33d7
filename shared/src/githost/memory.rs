//! An in-process git host: answers from what a test (or `prdiff serve --offline`) put in
//! it, and records every status, comment and check run so they can be asserted on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::{CheckOutput, CommentRef, CommitStatus, GitHost, GitHostError, GitHosts};
use crate::config::{CiConfig, CommitSha, RepoName};

#[derive(Default)]
struct State {
    files: HashMap<(String, u64), Vec<String>>,
    commits: HashMap<(String, u64), Vec<String>>,
    labels: HashMap<(String, u64), Vec<String>>,
    branch_heads: HashMap<(String, String), CommitSha>,
    merge_bases: HashMap<(String, String), CommitSha>,
    statuses: Vec<(RepoName, CommitSha, CommitStatus)>,
    comments: HashMap<(String, u64), Vec<(u64, String)>>,
    next_comment: u64,
    check_runs: Vec<CheckRun>,
    pulls: HashMap<(String, u64), super::PullRequest>,
    /// Authors (GitHub login) with write access, per repository.
    writers: HashMap<String, Vec<String>>,
}

/// A check run as the memory host recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRun {
    pub repo: RepoName,
    pub sha: CommitSha,
    pub name: String,
    /// `None` while in progress.
    pub output: Option<CheckOutput>,
}

/// A git host held in memory. Cheap to clone (shared state).
#[derive(Clone, Default)]
pub struct MemoryGitHost {
    state: Arc<Mutex<State>>,
}

fn key(repo: &RepoName) -> String {
    repo.as_str().to_ascii_lowercase()
}

impl MemoryGitHost {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_files(&self, repo: &RepoName, number: u64, files: &[&str]) {
        self.lock().files.insert(
            (key(repo), number),
            files.iter().map(|s| s.to_string()).collect(),
        );
    }

    /// The PR's commit messages, oldest first.
    pub fn set_commit_messages(&self, repo: &RepoName, number: u64, messages: &[&str]) {
        self.lock().commits.insert(
            (key(repo), number),
            messages.iter().map(|s| s.to_string()).collect(),
        );
    }

    pub fn set_labels(&self, repo: &RepoName, number: u64, labels: &[&str]) {
        self.lock().labels.insert(
            (key(repo), number),
            labels.iter().map(|s| s.to_string()).collect(),
        );
    }

    /// The PR answered by [`GitHost::pull_request`].
    pub fn set_pull_request(&self, repo: &RepoName, number: u64, pr: super::PullRequest) {
        self.lock().pulls.insert((key(repo), number), pr);
    }

    /// Gives `login` write access to the repository.
    pub fn add_writer(&self, repo: &RepoName, login: &str) {
        self.lock()
            .writers
            .entry(key(repo))
            .or_default()
            .push(login.to_owned());
    }

    pub fn set_branch_head(&self, repo: &RepoName, branch: &str, sha: CommitSha) {
        self.lock()
            .branch_heads
            .insert((key(repo), branch.to_owned()), sha);
    }

    /// The merge base answered for `head` (whatever the base).
    pub fn set_merge_base(&self, repo: &RepoName, head: &CommitSha, base: CommitSha) {
        self.lock()
            .merge_bases
            .insert((key(repo), head.to_string()), base);
    }

    /// Every status set so far, oldest first.
    pub fn statuses(&self) -> Vec<(RepoName, CommitSha, CommitStatus)> {
        self.lock().statuses.clone()
    }

    /// Every check run so far, oldest first.
    pub fn check_runs(&self) -> Vec<CheckRun> {
        self.lock().check_runs.clone()
    }

    /// The comments on a PR (id, body).
    pub fn comments(&self, repo: &RepoName, number: u64) -> Vec<(u64, String)> {
        self.lock()
            .comments
            .get(&(key(repo), number))
            .cloned()
            .unwrap_or_default()
    }
}

fn not_found(what: String) -> GitHostError {
    GitHostError::Http {
        status: 404,
        what,
        message: "Not Found".into(),
    }
}

#[async_trait]
impl GitHost for MemoryGitHost {
    async fn changed_files(
        &self,
        repo: &RepoName,
        number: u64,
    ) -> Result<Vec<String>, GitHostError> {
        Ok(self
            .lock()
            .files
            .get(&(key(repo), number))
            .cloned()
            .unwrap_or_default())
    }

    async fn commit_messages(
        &self,
        repo: &RepoName,
        number: u64,
    ) -> Result<Vec<String>, GitHostError> {
        Ok(self
            .lock()
            .commits
            .get(&(key(repo), number))
            .cloned()
            .unwrap_or_default())
    }

    async fn merge_base(
        &self,
        repo: &RepoName,
        base: &str,
        head: &CommitSha,
    ) -> Result<CommitSha, GitHostError> {
        let state = self.lock();
        state
            .merge_bases
            .get(&(key(repo), head.to_string()))
            .or_else(|| state.branch_heads.get(&(key(repo), base.to_owned())))
            .cloned()
            .ok_or_else(|| not_found(format!("merge base of {base} and {head}")))
    }

    async fn branch_head(&self, repo: &RepoName, branch: &str) -> Result<CommitSha, GitHostError> {
        self.lock()
            .branch_heads
            .get(&(key(repo), branch.to_owned()))
            .cloned()
            .ok_or_else(|| not_found(format!("branch {branch}")))
    }

    async fn set_status(
        &self,
        repo: &RepoName,
        sha: &CommitSha,
        status: &CommitStatus,
    ) -> Result<(), GitHostError> {
        self.lock()
            .statuses
            .push((repo.clone(), sha.clone(), status.clone()));
        Ok(())
    }

    async fn upsert_comment(
        &self,
        repo: &RepoName,
        number: u64,
        marker: &str,
        body: &str,
    ) -> Result<CommentRef, GitHostError> {
        let mut state = self.lock();
        state.next_comment += 1;
        let next = state.next_comment;
        let list = state.comments.entry((key(repo), number)).or_default();
        if let Some(c) = list.iter_mut().find(|(_, b)| b.contains(marker)) {
            c.1 = body.to_owned();
            return Ok(CommentRef {
                id: c.0,
                created: false,
                url: Some(format!("memory://{}/{number}#comment-{}", key(repo), c.0)),
            });
        }
        list.push((next, body.to_owned()));
        Ok(CommentRef {
            id: next,
            created: true,
            url: Some(format!("memory://{}/{number}#comment-{next}", key(repo))),
        })
    }

    async fn labels(&self, repo: &RepoName, number: u64) -> Result<Vec<String>, GitHostError> {
        Ok(self
            .lock()
            .labels
            .get(&(key(repo), number))
            .cloned()
            .unwrap_or_default())
    }

    async fn pull_request(
        &self,
        repo: &RepoName,
        number: u64,
    ) -> Result<super::PullRequest, GitHostError> {
        self.lock()
            .pulls
            .get(&(key(repo), number))
            .cloned()
            .ok_or_else(|| not_found(format!("pull request {number}")))
    }

    async fn can_write(
        &self,
        repo: &RepoName,
        author: &crate::intake::Author,
    ) -> Result<bool, GitHostError> {
        Ok(self
            .lock()
            .writers
            .get(&key(repo))
            .is_some_and(|w| w.contains(&author.login)))
    }

    async fn start_check_run(
        &self,
        repo: &RepoName,
        sha: &CommitSha,
        name: &str,
    ) -> Result<bool, GitHostError> {
        self.lock().check_runs.push(CheckRun {
            repo: repo.clone(),
            sha: sha.clone(),
            name: name.to_owned(),
            output: None,
        });
        Ok(true)
    }

    async fn complete_check_run(
        &self,
        repo: &RepoName,
        sha: &CommitSha,
        name: &str,
        output: &CheckOutput,
    ) -> Result<bool, GitHostError> {
        let mut state = self.lock();
        let latest = state
            .check_runs
            .iter_mut()
            .rev()
            .find(|c| key(&c.repo) == key(repo) && &c.sha == sha && c.name == name);
        match latest {
            Some(c) => c.output = Some(output.clone()),
            None => state.check_runs.push(CheckRun {
                repo: repo.clone(),
                sha: sha.clone(),
                name: name.to_owned(),
                output: Some(output.clone()),
            }),
        }
        Ok(true)
    }
}

/// Every configuration gets the same in-memory host.
#[async_trait]
impl GitHosts for MemoryGitHost {
    async fn for_config(&self, _config: &CiConfig) -> Result<Arc<dyn GitHost>, GitHostError> {
        Ok(Arc::new(self.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::githost::CheckConclusion;

    fn output(title: &str) -> CheckOutput {
        CheckOutput {
            conclusion: CheckConclusion::Success,
            title: title.into(),
            summary: String::new(),
            annotations: Vec::new(),
        }
    }

    #[tokio::test]
    async fn check_runs_are_recorded_and_completion_finishes_the_latest() {
        let host = MemoryGitHost::new();
        let repo = RepoName::parse("Octo/Analytics").unwrap();
        let sha = CommitSha::parse("ec26c3e57ca3a959ca5aad62de7213c562f8c821").unwrap();
        assert!(host.start_check_run(&repo, &sha, "prdiff/a").await.unwrap());
        assert!(host.start_check_run(&repo, &sha, "prdiff/b").await.unwrap());
        let lower = RepoName::parse("octo/analytics").unwrap();
        host.complete_check_run(&lower, &sha, "prdiff/a", &output("done"))
            .await
            .unwrap();
        let runs = host.check_runs();
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].output, Some(output("done")));
        assert_eq!(runs[1].output, None);
        // Never started: created completed.
        host.complete_check_run(&repo, &sha, "prdiff/c", &output("c"))
            .await
            .unwrap();
        assert_eq!(host.check_runs()[2].name, "prdiff/c");
        assert_eq!(host.check_runs()[2].output, Some(output("c")));
    }
}
