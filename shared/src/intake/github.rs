//! GitHub webhook payloads (`X-GitHub-Event`): `ping`, `pull_request`, `push`.

use serde_json::Value;

use super::{
    HostEvent, IntakeError, PrAction, PrEvent, PushEvent, field, parse_json, repo_field, sha_field,
    str_field, u64_field,
};
use crate::config::{CommitSha, Provider};

/// Reads a delivery given its `X-GitHub-Event` header and raw body.
pub fn parse(event: &str, body: &[u8]) -> Result<HostEvent, IntakeError> {
    let v = parse_json(body)?;
    match event {
        "ping" => Ok(HostEvent::Ping),
        "pull_request" => pull_request(&v),
        "push" => push(&v),
        other => Ok(HostEvent::NotHandled(format!(
            "event `{other}` is not handled"
        ))),
    }
}

fn labels(pr: &Value) -> Vec<String> {
    pr.get("labels")
        .and_then(Value::as_array)
        .map(|ls| {
            ls.iter()
                .filter_map(|l| l.get("name").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn pull_request(v: &Value) -> Result<HostEvent, IntakeError> {
    let action = str_field(v, "action")?;
    let repository = repo_field(v, "repository.full_name")?;
    let number = u64_field(v, "number")?;
    let action = match action {
        "opened" => PrAction::Opened,
        "reopened" => PrAction::Reopened,
        "synchronize" => PrAction::NewCommits,
        "ready_for_review" => PrAction::ReadyForReview,
        "labeled" => PrAction::Labeled(vec![str_field(v, "label.name")?.to_owned()]),
        "edited" if v.pointer("/changes/base").is_some() => PrAction::BaseChanged,
        "edited" => {
            return Ok(HostEvent::NotHandled(
                "pull_request edited without a base branch change".into(),
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
    let pr = field(v, "pull_request")?;
    Ok(HostEvent::PullRequest(PrEvent {
        provider: Provider::Github,
        repository,
        number,
        action,
        head_sha: sha_field(v, "pull_request.head.sha")?,
        head_branch: str_field(v, "pull_request.head.ref")?.to_owned(),
        base_branch: str_field(v, "pull_request.base.ref")?.to_owned(),
        base_sha: sha_field(v, "pull_request.base.sha").ok(),
        draft: pr.get("draft").and_then(Value::as_bool).unwrap_or(false),
        labels: labels(pr),
    }))
}

fn push(v: &Value) -> Result<HostEvent, IntakeError> {
    let git_ref = str_field(v, "ref")?;
    let after = str_field(v, "after")?;
    let deleted = v.get("deleted").and_then(Value::as_bool).unwrap_or(false);
    Ok(HostEvent::Push(PushEvent {
        provider: Provider::Github,
        repository: repo_field(v, "repository.full_name")?,
        branch: git_ref.strip_prefix("refs/heads/").map(str::to_owned),
        default_branch: v
            .pointer("/repository/default_branch")
            .and_then(Value::as_str)
            .map(str::to_owned),
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
