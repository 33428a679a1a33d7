//! The outcome rule: how a finished CI run shows on the pull request (commit status state,
//! its ≤ 140-character description, and the headline of the sticky comment).
//!
//! | how the run ended | status reporting on | status reporting off |
//! |---|---|---|
//! | every planned model diffed (differences or not) | `success` | `success` |
//! | a model failed | `failure`, counts | `success` "(not blocking)", counts |
//! | `fail_on_primary_key_issues` and a diffed model has NULL or duplicate keys in the PR | `failure` "primary-key issues in N models", counts | `success` "(not blocking)", the same |
//! | a merge gate (`meta.prdiff.gates` in a model's yaml) fails on a diffed model | `failure` "N gates failed in M models", counts | `success` "(not blocking)", the same |
//! | more models to diff than the configuration's `max_models`: none diffed | `success` "N models to diff, over max_models M: not diffed" | the same |
//! | the run could not complete (dbt Cloud run failed or cancelled, deadline, dead letter, PR closed, superseded…) | `failure`, cause | `success` "(not blocking)", cause |
//!
//! Models the plan leaves out on purpose (ephemeral, no relation, refused) are "not
//! diffed": they are listed with their reason and counted in the description, and do not
//! fail the run.

use crate::config::CiConfig;
use crate::githost::{StatusState, shorten};
use crate::report::{ModelEntry, Report};

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
    /// Diffed models with NULL or duplicate keys on the PR side.
    pub key_issues: usize,
    /// Merge gates that failed on diffed models, and in how many models.
    pub gates_failed: usize,
    pub gate_models: usize,
    /// The plan had this many models to diff, over the configuration's `max_models`
    /// (`.1`): none was diffed.
    pub over_max_models: Option<(usize, u32)>,
}

/// Whether a diffed model has NULL or duplicate keys on the PR side.
pub fn has_pr_key_issues(entry: &ModelEntry) -> bool {
    matches!(&entry.outcome, Ok(r) if r.primary_key_issues.pr.nulls > 0 || r.primary_key_issues.pr.duplicates > 0)
}

/// What a configuration asks of the outcome rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Off: what would fail reports as success "(not blocking)".
    pub status_reporting: bool,
    /// On: NULL or duplicate keys on the PR side fail the run.
    pub fail_on_primary_key_issues: bool,
}

impl Rules {
    pub fn of(config: &CiConfig) -> Self {
        Self {
            status_reporting: config.status_reporting,
            fail_on_primary_key_issues: config.fail_on_primary_key_issues,
        }
    }
}

impl Counts {
    pub fn of(report: &Report) -> Self {
        let failed_gates: Vec<usize> = report
            .entries
            .iter()
            .map(|e| match (&e.outcome, report.gates.get(&e.name)) {
                (Ok(r), Some(policy)) => crate::gates::evaluate_all(policy, r)
                    .iter()
                    .filter(|o| !o.passed)
                    .count(),
                _ => 0,
            })
            .collect();
        Self {
            models: report.entries.len(),
            differing: report
                .entries
                .iter()
                .filter(|e| matches!(&e.outcome, Ok(r) if r.has_differences()))
                .count(),
            failed: report.entries.iter().filter(|e| e.outcome.is_err()).count(),
            not_diffed: report.skipped.len(),
            key_issues: report
                .entries
                .iter()
                .filter(|e| has_pr_key_issues(e))
                .count(),
            gates_failed: failed_gates.iter().sum(),
            gate_models: failed_gates.iter().filter(|n| **n > 0).count(),
            over_max_models: report.over_max_models.map(|o| (o.models, o.max)),
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

/// The outcome rule (see the module documentation), under the configuration's `rules`.
pub fn final_status(ending: &Ending, rules: Rules) -> FinalStatus {
    let (failed, summary) = match ending {
        Ending::Reported(Counts {
            over_max_models: Some((models, max)),
            ..
        }) => (
            false,
            format!("{models} models to diff, over max_models {max}: not diffed"),
        ),
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
            let key_failure = rules.fail_on_primary_key_issues && c.key_issues > 0;
            if c.gates_failed > 0 {
                s = format!(
                    "{} failed in {}, {s}",
                    plural(c.gates_failed, "gate", "gates"),
                    plural(c.gate_models, "model", "models")
                );
            }
            if key_failure {
                s = format!(
                    "primary-key issues in {}, {s}",
                    plural(c.key_issues, "model", "models")
                );
            }
            (c.failed > 0 || key_failure || c.gates_failed > 0, s)
        }
        Ending::Incomplete(why) => (true, why.trim().to_owned()),
    };
    let (state, prefix, headline) = match (failed, rules.status_reporting) {
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

/// The GitHub check run's conclusion under the outcome rule: `success`, `failure`, or
/// `neutral` for what would fail with status reporting off ("(not blocking)").
pub fn check_conclusion(ending: &Ending, rules: Rules) -> crate::githost::CheckConclusion {
    use crate::githost::CheckConclusion;
    let blocking = Rules {
        status_reporting: true,
        ..rules
    };
    match (final_status(ending, blocking).state, rules.status_reporting) {
        (StatusState::Success, _) => CheckConclusion::Success,
        (_, true) => CheckConclusion::Failure,
        (_, false) => CheckConclusion::Neutral,
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
            key_issues: 0,
            ..Counts::default()
        })
    }

    fn rules(status_reporting: bool, fail_on_primary_key_issues: bool) -> Rules {
        Rules {
            status_reporting,
            fail_on_primary_key_issues,
        }
    }

    #[test]
    fn primary_key_issues_fail_the_run_only_when_the_configuration_asks() {
        use StatusState::{Failure, Success};
        let keys = |models, differing, failed, key_issues| {
            Ending::Reported(Counts {
                models,
                differing,
                failed,
                not_diffed: 0,
                key_issues,
                ..Counts::default()
            })
        };
        // (how it ended, status reporting, fail on key issues, state, description)
        let table: Vec<(Ending, bool, bool, StatusState, &str)> = vec![
            (
                keys(2, 1, 0, 1),
                true,
                false,
                Success,
                "prdiff: 2 models diffed, 1 with differences",
            ),
            (
                keys(2, 1, 0, 1),
                true,
                true,
                Failure,
                "prdiff: primary-key issues in 1 model, 2 models diffed, 1 with differences",
            ),
            (
                keys(3, 0, 0, 2),
                true,
                true,
                Failure,
                "prdiff: primary-key issues in 2 models, 3 models diffed, 0 with differences",
            ),
            (
                keys(2, 1, 0, 0),
                true,
                true,
                Success,
                "prdiff: 2 models diffed, 1 with differences",
            ),
            (
                keys(2, 0, 1, 1),
                true,
                true,
                Failure,
                "prdiff: primary-key issues in 1 model, 1 of 2 models failed, 0 with differences",
            ),
            (
                keys(2, 1, 0, 1),
                false,
                true,
                Success,
                "prdiff (not blocking): primary-key issues in 1 model, 2 models diffed, 1 with differences",
            ),
            (
                Ending::Incomplete("dbt Cloud run 7 was cancelled".into()),
                true,
                true,
                Failure,
                "prdiff: dbt Cloud run 7 was cancelled",
            ),
        ];
        for (ending, reporting, fail_on_keys, state, description) in table {
            let got = final_status(&ending, rules(reporting, fail_on_keys));
            assert_eq!(
                (got.state, got.description.as_str()),
                (state, description),
                "{ending:?} reporting={reporting} keys={fail_on_keys}"
            );
        }
    }

    #[test]
    fn failed_gates_fail_the_run_with_their_count_unless_status_reporting_is_off() {
        use StatusState::{Failure, Success};
        let gates = |failed, gates_failed, gate_models, key_issues| {
            Ending::Reported(Counts {
                models: 3,
                differing: 2,
                failed,
                not_diffed: 0,
                key_issues,
                gates_failed,
                gate_models,
                over_max_models: None,
            })
        };
        // (how it ended, status reporting, fail on key issues, state, description)
        let table: Vec<(Ending, bool, bool, StatusState, &str)> = vec![
            (
                gates(0, 0, 0, 0),
                true,
                false,
                Success,
                "prdiff: 3 models diffed, 2 with differences",
            ),
            (
                gates(0, 1, 1, 0),
                true,
                false,
                Failure,
                "prdiff: 1 gate failed in 1 model, 3 models diffed, 2 with differences",
            ),
            (
                gates(0, 3, 2, 0),
                true,
                false,
                Failure,
                "prdiff: 3 gates failed in 2 models, 3 models diffed, 2 with differences",
            ),
            (
                gates(0, 3, 2, 0),
                false,
                false,
                Success,
                "prdiff (not blocking): 3 gates failed in 2 models, 3 models diffed, 2 with differences",
            ),
            (
                gates(1, 2, 1, 1),
                true,
                true,
                Failure,
                "prdiff: primary-key issues in 1 model, 2 gates failed in 1 model, 1 of 3 models failed, 2 with differences",
            ),
        ];
        for (ending, reporting, fail_on_keys, state, description) in table {
            let got = final_status(&ending, rules(reporting, fail_on_keys));
            assert_eq!(
                (got.state, got.description.as_str()),
                (state, description),
                "{ending:?} reporting={reporting}"
            );
            assert!(got.description.chars().count() <= DESCRIPTION_MAX);
        }
    }

    #[test]
    fn over_max_models_the_run_succeeds_and_says_why_nothing_was_diffed() {
        for reporting in [true, false] {
            let got = final_status(
                &Ending::Reported(Counts {
                    not_diffed: 14,
                    over_max_models: Some((12, 10)),
                    ..Counts::default()
                }),
                rules(reporting, true),
            );
            assert_eq!(got.state, StatusState::Success);
            assert_eq!(
                got.description,
                "prdiff: 12 models to diff, over max_models 10: not diffed"
            );
            assert!(got.headline.starts_with("✅ "), "{}", got.headline);
        }
    }

    #[test]
    fn counts_evaluate_the_gates_of_diffed_models_only() {
        use crate::gates::{Gate, GatePolicy, RowLimit};
        let policy = |gates: Vec<Gate>| GatePolicy {
            gates,
            problems: vec![],
        };
        // `result` has 3 rows removed, 1 NULL key in the PR, `amount` changed on 7 of 997.
        let report = Report {
            entries: vec![
                ModelEntry {
                    name: "a".into(),
                    outcome: Ok(crate::report::tests::result("a", 7)),
                },
                ModelEntry {
                    name: "b".into(),
                    outcome: Ok(crate::report::tests::result("b", 7)),
                },
                ModelEntry {
                    name: "c".into(),
                    outcome: Err("boom".into()),
                },
            ],
            gates: [
                (
                    "a".to_owned(),
                    policy(vec![
                        Gate::RowsRemoved(RowLimit {
                            max: Some(0),
                            max_pct: None,
                        }),
                        Gate::NoKeyIssues,
                        Gate::ChangedPct {
                            column: "amount".into(),
                            max: 1.0,
                        },
                    ]),
                ),
                (
                    "b".to_owned(),
                    policy(vec![Gate::ChangedPct {
                        column: "amount".into(),
                        max: 0.5,
                    }]),
                ),
                ("c".to_owned(), policy(vec![Gate::NoKeyIssues])),
            ]
            .into(),
            ..Default::default()
        };
        let c = Counts::of(&report);
        assert_eq!((c.gates_failed, c.gate_models), (3, 2), "{c:?}");
        let fin = final_status(&Ending::Reported(c), rules(true, false));
        assert_eq!(fin.state, StatusState::Failure);
        assert!(
            fin.description
                .starts_with("prdiff: 3 gates failed in 2 models, 1 of 3 models failed"),
            "{}",
            fin.description
        );
    }

    #[test]
    fn counts_find_key_issues_on_the_pr_side_only() {
        use crate::diff::KeyIssues;
        use crate::report::ModelEntry;
        let base = crate::report::tests::result("m", 0);
        let entry = |prod: KeyIssues, pr: KeyIssues| {
            let mut r = base.clone();
            r.primary_key_issues.prod = prod;
            r.primary_key_issues.pr = pr;
            ModelEntry {
                name: "m".into(),
                outcome: Ok(r),
            }
        };
        let none = KeyIssues::default();
        let nulls = KeyIssues {
            nulls: 1,
            ..KeyIssues::default()
        };
        let dups = KeyIssues {
            duplicates: 2,
            duplicate_keys: 1,
            ..KeyIssues::default()
        };
        assert!(!has_pr_key_issues(&entry(none, none)));
        assert!(!has_pr_key_issues(&entry(dups, none)));
        assert!(has_pr_key_issues(&entry(none, nulls)));
        assert!(has_pr_key_issues(&entry(none, dups)));
        assert!(!has_pr_key_issues(&ModelEntry {
            name: "f".into(),
            outcome: Err("boom".into()),
        }));
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
            let got = final_status(&ending, rules(reporting, false));
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
        let got = final_status(&Ending::Incomplete(long), rules(true, true));
        assert_eq!(got.description.chars().count(), DESCRIPTION_MAX);
        assert_eq!(got.state, Failure);
    }

    #[test]
    fn check_conclusions_follow_the_outcome_rule_and_not_blocking_is_neutral() {
        use crate::githost::CheckConclusion;
        let on = Rules {
            status_reporting: true,
            fail_on_primary_key_issues: false,
        };
        let off = Rules {
            status_reporting: false,
            ..on
        };
        let ok = counts(2, 1, 0, 0);
        let failed = counts(2, 0, 1, 0);
        let incomplete = Ending::Incomplete("dbt Cloud run 913 was cancelled".into());
        for (ending, rules, expect) in [
            (&ok, on, CheckConclusion::Success),
            (&ok, off, CheckConclusion::Success),
            (&failed, on, CheckConclusion::Failure),
            (&failed, off, CheckConclusion::Neutral),
            (&incomplete, on, CheckConclusion::Failure),
            (&incomplete, off, CheckConclusion::Neutral),
        ] {
            assert_eq!(
                check_conclusion(ending, rules),
                expect,
                "{ending:?} {rules:?}"
            );
        }
    }
}
