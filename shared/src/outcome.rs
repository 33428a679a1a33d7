//! The outcome rule: how a finished CI run shows on the pull request (commit status state,
//! its ≤ 140-character description, and the headline of the sticky comment).
//!
//! | how the run ended | status reporting on | status reporting off |
//! |---|---|---|
//! | every planned model diffed (differences or not) | `success` | `success` |
//! | a model failed | `failure`, counts | `success` "(not blocking)", counts |
//! | the run could not complete (dbt Cloud run failed or cancelled, deadline, dead letter, PR closed, superseded…) | `failure`, cause | `success` "(not blocking)", cause |
//!
//! Models the plan leaves out on purpose (ephemeral, no relation, refused) are "not
//! diffed": they are listed with their reason and counted in the description, and do not
//! fail the run.

use crate::githost::{StatusState, shorten};
use crate::report::Report;

/// The longest commit status description (GitHub's limit).
pub const DESCRIPTION_MAX: usize = 140;

/// The per-model counts of a run that reached its report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Models planned for a diff.
    pub models: usize,
    /// Of those, diffed with differences.
    pub differing: usize,
    /// Of those, failed (warehouse error, timeout, never diffed).
    pub failed: usize,
    /// Models the plan left out, with a reason.
    pub not_diffed: usize,
}

impl Counts {
    pub fn of(report: &Report) -> Self {
        Self {
            models: report.entries.len(),
            differing: report
                .entries
                .iter()
                .filter(|e| matches!(&e.outcome, Ok(r) if r.has_differences()))
                .count(),
            failed: report.entries.iter().filter(|e| e.outcome.is_err()).count(),
            not_diffed: report.skipped.len(),
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Every planned model has a result (a diff or a failure).
    Reported(Counts),
    /// The run could not complete; the cause, for people.
    Incomplete(String),
}

/// What the pull request shows for a finished run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalStatus {
    pub state: StatusState,
    /// At most [`DESCRIPTION_MAX`] characters.
    pub description: String,
    /// The first line of the sticky comment.
    pub headline: String,
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The outcome rule (see the module documentation). `status_reporting` is the
/// configuration's CI-status-reporting setting.
pub fn final_status(ending: &Ending, status_reporting: bool) -> FinalStatus {
    let (failed, summary) = match ending {
        Ending::Reported(c) => {
            let mut s = if c.models == 0 {
                "no models to diff".to_owned()
            } else if c.failed == 0 {
                format!(
                    "{} diffed, {} with differences",
                    plural(c.models, "model", "models"),
                    c.differing
                )
            } else {
                format!(
                    "{} of {} failed, {} with differences",
                    c.failed,
                    plural(c.models, "model", "models"),
                    c.differing
                )
            };
            if c.not_diffed > 0 {
                s.push_str(&format!(", {} not diffed", c.not_diffed));
            }
            (c.failed > 0, s)
        }
        Ending::Incomplete(why) => (true, why.trim().to_owned()),
    };
    let (state, prefix, headline) = match (failed, status_reporting) {
        (false, _) => (StatusState::Success, "prdiff: ", format!("✅ {summary}")),
        (true, true) => (StatusState::Failure, "prdiff: ", format!("❌ {summary}")),
        (true, false) => (
            StatusState::Success,
            "prdiff (not blocking): ",
            format!("⚠️ {summary} (not blocking: CI status reporting is off)"),
        ),
    };
    FinalStatus {
        state,
        description: shorten(&format!("{prefix}{summary}"), DESCRIPTION_MAX),
        headline,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(models: usize, differing: usize, failed: usize, not_diffed: usize) -> Ending {
        Ending::Reported(Counts {
            models,
            differing,
            failed,
            not_diffed,
        })
    }

    #[test]
    fn the_outcome_rule() {
        use StatusState::{Failure, Success};
        let long = "x".repeat(300);
        // (how it ended, status reporting, state, description)
        let table: Vec<(Ending, bool, StatusState, String)> = vec![
            (
                counts(2, 1, 0, 0),
                true,
                Success,
                "prdiff: 2 models diffed, 1 with differences".into(),
            ),
            (
                counts(1, 0, 0, 0),
                true,
                Success,
                "prdiff: 1 model diffed, 0 with differences".into(),
            ),
            (
                counts(3, 0, 0, 2),
                true,
                Success,
                "prdiff: 3 models diffed, 0 with differences, 2 not diffed".into(),
            ),
            (
                counts(0, 0, 0, 1),
                true,
                Success,
                "prdiff: no models to diff, 1 not diffed".into(),
            ),
            (
                counts(2, 0, 2, 0),
                true,
                Failure,
                "prdiff: 2 of 2 models failed, 0 with differences".into(),
            ),
            (
                counts(2, 1, 1, 1),
                true,
                Failure,
                "prdiff: 1 of 2 models failed, 1 with differences, 1 not diffed".into(),
            ),
            (
                counts(2, 0, 2, 0),
                false,
                Success,
                "prdiff (not blocking): 2 of 2 models failed, 0 with differences".into(),
            ),
            (
                counts(2, 1, 0, 0),
                false,
                Success,
                "prdiff: 2 models diffed, 1 with differences".into(),
            ),
            (
                Ending::Incomplete("dbt Cloud run 7 was cancelled".into()),
                true,
                Failure,
                "prdiff: dbt Cloud run 7 was cancelled".into(),
            ),
            (
                Ending::Incomplete("pull request closed before the diff ran".into()),
                false,
                Success,
                "prdiff (not blocking): pull request closed before the diff ran".into(),
            ),
        ];
        for (ending, reporting, state, description) in table {
            let got = final_status(&ending, reporting);
            assert_eq!(
                (got.state, got.description.as_str()),
                (state, description.as_str()),
                "{ending:?} reporting={reporting}"
            );
            let mark = match (state, description.contains("not blocking")) {
                (Success, false) => "✅",
                (Success, true) => "⚠️",
                _ => "❌",
            };
            assert!(got.headline.starts_with(mark), "{}", got.headline);
        }
        let got = final_status(&Ending::Incomplete(long), true);
        assert_eq!(got.description.chars().count(), DESCRIPTION_MAX);
        assert_eq!(got.state, Failure);
    }
}
