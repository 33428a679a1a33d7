//! GitLab webhook payloads (`X-Gitlab-Event`): `Merge Request Hook`, `Push Hook`,
//! `Note Hook` (the `/prdiff run` command on a merge request).

use std::collections::BTreeSet;

use serde_json::Value;

use super::{
    HostEvent, IntakeError, PrAction, PrEvent, PushEvent, field, parse_json, repo_field, sha_field,
    str_field, u64_field,
};
use crate::config::{CommitSha, Provider};

/// Reads a delivery given its `X-Gitlab-Event` header and raw body.
pub fn parse(event: &str, body: &[u8]) -> Result<HostEvent, IntakeError> {
    let v = parse_json(body)?;
    match event {
        "Merge Request Hook" => merge_request(&v),
        "Push Hook" => push(&v),
        "Note Hook" => note(&v),
        other => Ok(HostEvent::NotHandled(format!(
            "event `{other}` is not handled"
        ))),
    }
}

fn titles(labels: Option<&Value>) -> Vec<String> {
    labels
        .and_then(Value::as_array)
        .map(|ls| {
            ls.iter()
                .filter_map(|l| l.get("title").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn merge_request(v: &Value) -> Result<HostEvent, IntakeError> {
    let repository = repo_field(v, "project.path_with_namespace")?;
    let number = u64_field(v, "object_attributes.iid")?;
    let action = str_field(v, "object_attributes.action")?;
    let oa = field(v, "object_attributes")?;
    let changes = v.get("changes");
    let action = match action {
        "open" => PrAction::Opened,
        "reopen" => PrAction::Reopened,
        "update" => {
            let has = |k: &str| changes.and_then(|c| c.get(k)).is_some();
            let added: Vec<String> = changes
                .and_then(|c| c.get("labels"))
                .map(|l| {
                    let before: BTreeSet<String> = titles(l.get("previous")).into_iter().collect();
                    titles(l.get("current"))
                        .into_iter()
                        .filter(|t| !before.contains(t))
                        .collect()
                })
                .unwrap_or_default();
            let undrafted = changes.and_then(|c| c.get("draft")).is_some_and(|d| {
                d.get("previous") == Some(&Value::Bool(true))
                    && d.get("current") == Some(&Value::Bool(false))
            });
            if oa.get("oldrev").is_some_and(|r| !r.is_null()) {
                PrAction::NewCommits
            } else if has("target_branch") {
                PrAction::BaseChanged
            } else if let Some(d) = changes.and_then(|c| c.get("description"))
                && super::remap_edited(
                    d.get("previous").and_then(Value::as_str),
                    d.get("current").and_then(Value::as_str),
                )
            {
                PrAction::RemapChanged
            } else if !added.is_empty() {
                PrAction::Labeled(added)
            } else if undrafted {
                PrAction::ReadyForReview
            } else {
                return Ok(HostEvent::NotHandled(
                    "merge request update without new commits, added labels, target branch, draft or column remapping change"
                        .into(),
                ));
            }
        }
        "close" | "merge" => {
            return Ok(HostEvent::PrClosed {
                provider: Provider::Gitlab,
                repository,
                number,
            });
        }
        other => {
            return Ok(HostEvent::NotHandled(format!(
                "merge request action `{other}` is not handled"
            )));
        }
    };
    let draft = ["draft", "work_in_progress"]
        .iter()
        .any(|k| oa.get(*k).and_then(Value::as_bool).unwrap_or(false));
    Ok(HostEvent::PullRequest(PrEvent {
        provider: Provider::Gitlab,
        repository,
        number,
        action,
        head_sha: sha_field(v, "object_attributes.last_commit.id")?,
        head_branch: str_field(v, "object_attributes.source_branch")?.to_owned(),
        base_branch: str_field(v, "object_attributes.target_branch")?.to_owned(),
        base_sha: None,
        draft,
        labels: titles(v.get("labels").or_else(|| oa.get("labels"))),
        remap: oa
            .get("description")
            .and_then(Value::as_str)
            .map(|d| crate::diff::remap::parse_text(d, "MR description"))
            .unwrap_or_default(),
    }))
}

/// A `Note Hook` delivery: a `/prdiff run` command when a person (not a system note, not
/// prdiff's own note) wrote it on a merge request.
fn note(v: &Value) -> Result<HostEvent, IntakeError> {
    let kind = str_field(v, "object_attributes.noteable_type")?;
    if kind != "MergeRequest" {
        return Ok(HostEvent::NotHandled(format!(
            "note on a {kind}, not a merge request"
        )));
    }
    // GitLab sends `action` (`create` / `update`) on newer versions; an edit is not a
    // new command.
    if let Some(action) = v
        .pointer("/object_attributes/action")
        .and_then(Value::as_str)
        && action != "create"
    {
        return Ok(HostEvent::NotHandled(format!(
            "note action `{action}` is not handled"
        )));
    }
    let repository = repo_field(v, "project.path_with_namespace")?;
    let number = u64_field(v, "merge_request.iid")?;
    let body = v
        .pointer("/object_attributes/note")
        .and_then(Value::as_str)
        .unwrap_or("");
    let system = v
        .pointer("/object_attributes/system")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if system || crate::report::is_prdiff_comment(body) {
        return Ok(HostEvent::NotHandled(
            "a system note or prdiff's own note".into(),
        ));
    }
    let Some(models) = super::command::parse(body) else {
        return Ok(HostEvent::NotHandled(
            "note without a `/prdiff` command".into(),
        ));
    };
    Ok(HostEvent::Command(super::RunCommand {
        provider: Provider::Gitlab,
        repository,
        number,
        author: super::Author {
            login: str_field(v, "user.username")?.to_owned(),
            id: Some(u64_field(v, "user.id")?),
        },
        models,
    }))
}

fn push(v: &Value) -> Result<HostEvent, IntakeError> {
    let git_ref = str_field(v, "ref")?;
    let after = str_field(v, "after")?;
    Ok(HostEvent::Push(PushEvent {
        provider: Provider::Gitlab,
        repository: repo_field(v, "project.path_with_namespace")?,
        branch: git_ref.strip_prefix("refs/heads/").map(str::to_owned),
        default_branch: v
            .pointer("/project/default_branch")
            .and_then(Value::as_str)
            .map(str::to_owned),
        after: if after.bytes().all(|b| b == b'0') {
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
