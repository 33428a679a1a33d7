//! GitHub webhook payloads (`X-GitHub-Event`): `ping`, `pull_request`, `push`,
//! `issue_comment` (the `/prdiff run` command on a pull request).
//!
//! The payload is read into small structs holding only the fields prdiff uses, borrowed
//! from the body where JSON escapes allow: a `pull_request` delivery is ~30 KB of which we
//! need a dozen values, and building a full `serde_json::Value` tree was most of the
//! handler's CPU time (docs/bench-webhook.md). Every field is optional at the serde level
//! so a missing one is reported by its path (`pull_request.head.sha`), not by serde's
//! line and column.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::{HostEvent, IntakeError, PrAction, PrEvent, PushEvent};
use crate::config::{CommitSha, Provider, RepoName};

#[derive(Deserialize)]
struct Payload<'a> {
    #[serde(borrow, default)]
    action: Option<Cow<'a, str>>,
    #[serde(default)]
    number: Option<u64>,
    #[serde(borrow, default)]
    repository: Option<Repo<'a>>,
    #[serde(borrow, default)]
    pull_request: Option<Pr<'a>>,
    #[serde(borrow, default)]
    label: Option<Label<'a>>,
    #[serde(borrow, default)]
    changes: Option<Changes<'a>>,
    #[serde(borrow, default, rename = "ref")]
    git_ref: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    after: Option<Cow<'a, str>>,
    #[serde(default)]
    deleted: Option<bool>,
}

#[derive(Deserialize)]
struct Repo<'a> {
    #[serde(borrow, default)]
    full_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    default_branch: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Pr<'a> {
    #[serde(borrow, default)]
    head: Option<GitRef<'a>>,
    #[serde(borrow, default)]
    base: Option<GitRef<'a>>,
    #[serde(default)]
    draft: Option<bool>,
    #[serde(borrow, default)]
    labels: Option<Vec<Label<'a>>>,
    #[serde(borrow, default)]
    body: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct GitRef<'a> {
    #[serde(borrow, default)]
    sha: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "ref")]
    name: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Label<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Changes<'a> {
    #[serde(default)]
    base: Option<IgnoredAny>,
    #[serde(borrow, default)]
    body: Option<Change<'a>>,
}

/// An edited field's value before the edit.
#[derive(Deserialize)]
struct Change<'a> {
    #[serde(borrow, default)]
    from: Option<Cow<'a, str>>,
}

fn missing(field: &'static str) -> IntakeError {
    IntakeError::Field {
        field,
        problem: "missing".into(),
    }
}

fn need<T>(v: Option<T>, field: &'static str) -> Result<T, IntakeError> {
    v.ok_or_else(|| missing(field))
}

fn sha(v: Option<&Cow<'_, str>>, field: &'static str) -> Result<CommitSha, IntakeError> {
    CommitSha::parse(need(v, field)?.as_ref())
        .map_err(|problem| IntakeError::Field { field, problem })
}

fn repo(p: &Payload<'_>) -> Result<RepoName, IntakeError> {
    let field = "repository.full_name";
    let name = need(
        p.repository.as_ref().and_then(|r| r.full_name.as_ref()),
        field,
    )?;
    RepoName::parse(name.as_ref()).map_err(|problem| IntakeError::Field { field, problem })
}

/// Reads the body: JSON syntax errors are [`IntakeError::Json`]; a body that is JSON but
/// not the expected shape (wrong types, not an object) is [`IntakeError::Field`].
fn read<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, IntakeError> {
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => IntakeError::Field {
            field: "(body)",
            problem: e.to_string(),
        },
        _ => IntakeError::Json(e),
    })
}

/// Reads a delivery given its `X-GitHub-Event` header and raw body.
pub fn parse(event: &str, body: &[u8]) -> Result<HostEvent, IntakeError> {
    match event {
        "pull_request" => pull_request(read(body)?),
        "push" => push(read(body)?),
        "issue_comment" => issue_comment(&super::parse_json(body)?),
        other => {
            // Still a JSON object, or the delivery is malformed whatever its event.
            read::<AnyObject>(body)?;
            Ok(if other == "ping" {
                HostEvent::Ping
            } else {
                HostEvent::NotHandled(format!("event `{other}` is not handled"))
            })
        }
    }
}

/// A JSON object, its contents skipped without being built.
#[derive(Deserialize)]
struct AnyObject {}

fn pull_request(p: Payload<'_>) -> Result<HostEvent, IntakeError> {
    let action = need(p.action.as_deref(), "action")?;
    let repository = repo(&p)?;
    let number = need(p.number, "number")?;
    let action = match action {
        "opened" => PrAction::Opened,
        "reopened" => PrAction::Reopened,
        "synchronize" => PrAction::NewCommits,
        "ready_for_review" => PrAction::ReadyForReview,
        "labeled" => PrAction::Labeled(vec![
            need(p.label.as_ref().and_then(|l| l.name.as_ref()), "label.name")?.to_string(),
        ]),
        "edited" if p.changes.as_ref().is_some_and(|c| c.base.is_some()) => PrAction::BaseChanged,
        "edited" if remap_changed(&p) => PrAction::RemapChanged,
        "edited" => {
            return Ok(HostEvent::NotHandled(
                "pull_request edited without a base branch or column remapping change".into(),
            ));
        }
        "closed" => {
            return Ok(HostEvent::PrClosed {
                provider: Provider::Github,
                repository,
                number,
            });
        }
        other => {
            return Ok(HostEvent::NotHandled(format!(
                "pull_request action `{other}` is not handled"
            )));
        }
    };
    let pr = need(p.pull_request.as_ref(), "pull_request")?;
    let head = pr.head.as_ref();
    let base = pr.base.as_ref();
    Ok(HostEvent::PullRequest(PrEvent {
        provider: Provider::Github,
        repository,
        number,
        action,
        head_sha: sha(head.and_then(|h| h.sha.as_ref()), "pull_request.head.sha")?,
        head_branch: need(head.and_then(|h| h.name.as_ref()), "pull_request.head.ref")?.to_string(),
        base_branch: need(base.and_then(|b| b.name.as_ref()), "pull_request.base.ref")?.to_string(),
        base_sha: sha(base.and_then(|b| b.sha.as_ref()), "pull_request.base.sha").ok(),
        draft: pr.draft.unwrap_or(false),
        labels: pr
            .labels
            .iter()
            .flatten()
            .filter_map(|l| l.name.as_ref().map(|n| n.to_string()))
            .collect(),
        remap: pr
            .body
            .as_deref()
            .map(|b| crate::diff::remap::parse_text(b, "PR description"))
            .unwrap_or_default(),
    }))
}

/// Whether an `edited` delivery changed the description's column remapping directives
/// (an edit elsewhere in the text starts nothing).
fn remap_changed(p: &Payload<'_>) -> bool {
    let Some(before) = p.changes.as_ref().and_then(|c| c.body.as_ref()) else {
        return false;
    };
    let after = p.pull_request.as_ref().and_then(|pr| pr.body.as_deref());
    super::remap_edited(before.from.as_deref(), after)
}

/// An `issue_comment` delivery: a `/prdiff run` command when a person (not a bot, not
/// prdiff's own comment) created it on a pull request.
fn issue_comment(v: &serde_json::Value) -> Result<HostEvent, IntakeError> {
    use super::{str_field, u64_field};
    let action = str_field(v, "action")?;
    if action != "created" {
        return Ok(HostEvent::NotHandled(format!(
            "issue_comment action `{action}` is not handled"
        )));
    }
    let repository = super::repo_field(v, "repository.full_name")?;
    let number = u64_field(v, "issue.number")?;
    if v.pointer("/issue/pull_request").is_none_or(|p| p.is_null()) {
        return Ok(HostEvent::NotHandled(
            "issue_comment on an issue, not a pull request".into(),
        ));
    }
    let body = v
        .pointer("/comment/body")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("");
    let login = str_field(v, "comment.user.login")?;
    let bot = v
        .pointer("/comment/user/type")
        .and_then(serde_json::Value::as_str)
        == Some("Bot")
        || login.ends_with("[bot]");
    if bot || crate::report::is_prdiff_comment(body) {
        return Ok(HostEvent::NotHandled(
            "issue_comment by a bot or by prdiff itself".into(),
        ));
    }
    let Some(models) = super::command::parse(body) else {
        return Ok(HostEvent::NotHandled(
            "issue_comment without a `/prdiff` command".into(),
        ));
    };
    Ok(HostEvent::Command(super::RunCommand {
        provider: Provider::Github,
        repository,
        number,
        author: super::Author {
            login: login.to_owned(),
            id: None,
        },
        models,
    }))
}

fn push(p: Payload<'_>) -> Result<HostEvent, IntakeError> {
    let git_ref = need(p.git_ref.as_deref(), "ref")?;
    let after = need(p.after.as_deref(), "after")?;
    let deleted = p.deleted.unwrap_or(false);
    Ok(HostEvent::Push(PushEvent {
        provider: Provider::Github,
        repository: repo(&p)?,
        branch: git_ref.strip_prefix("refs/heads/").map(str::to_owned),
        default_branch: p
            .repository
            .as_ref()
            .and_then(|r| r.default_branch.as_ref())
            .map(|b| b.to_string()),
        after: if deleted || after.bytes().all(|b| b == b'0') {
            None
        } else {
            Some(
                CommitSha::parse(after).map_err(|problem| IntakeError::Field {
                    field: "after",
                    problem,
                })?,
            )
        },
    }))
}
