//! The gates a pull request event passes before it starts a run: skip PRs,
//! draft, required label, base branch, files to ignore. Pure functions over the configuration and the
//! event, so every rule is unit-tested without a git host.

use super::{PrAction, PrEvent};
use crate::config::CiConfig;

/// Whether an event may start a run, before looking at the changed files. A run asked
/// for on demand passes the label gate; the other gates apply to it too. `Err` carries
/// the reason it may not, for the webhook's 200 response and the logs.
pub fn check_event(config: &CiConfig, event: &PrEvent) -> Result<(), String> {
    if config.skip_pull_requests {
        return Err(format!("configuration {} skips pull requests", config.name));
    }
    if event.draft {
        return Err("draft pull requests are not diffed".into());
    }
    if event.action == PrAction::OnDemand {
        // Asked for by someone with write access (or the trigger's token): the label
        // gate does not apply.
        return Ok(());
    }
    let required = config.require_label.required();
    if let PrAction::Labeled(added) = &event.action {
        // Adding a label starts a run only when it is the required label (the other
        // events already ran, or were gated on that label).
        match required {
            Some(label) if added.iter().any(|a| a == label.as_str()) => {}
            Some(label) => {
                return Err(format!("label added is not the required label `{label}`"));
            }
            None => return Err("labels start runs only when a label is required".into()),
        }
    }
    if let Some(label) = required
        && !event.labels.iter().any(|l| l == label.as_str())
    {
        return Err(format!(
            "required label `{label}` is not on the pull request"
        ));
    }
    Ok(())
}

/// The success-status description for a PR into a branch other than the configuration's
/// `base_branch`, or `None` when the configuration runs for this PR's base.
pub fn other_base_branch(config: &CiConfig, event: &PrEvent) -> Option<String> {
    let wanted = config.base_branch.as_ref()?;
    (event.base_branch != wanted.as_str()).then(|| {
        format!(
            "prdiff skipped: base branch {} is not {}",
            event.base_branch,
            wanted.as_str()
        )
    })
}

/// The success-status description for a PR whose changed files are all ignored, or `None`
/// when the PR must be diffed.
pub fn all_files_ignored(config: &CiConfig, changed: &[String]) -> Option<String> {
    if config.files_to_ignore.is_empty() {
        return None;
    }
    config
        .files_to_ignore
        .all_ignored(changed.iter().map(String::as_str))
        .then(|| {
            format!(
                "prdiff skipped: all {} changed files match files_to_ignore",
                changed.len()
            )
        })
}

#[cfg(test)]
mod tests;
