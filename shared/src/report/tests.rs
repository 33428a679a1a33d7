//! Rendering tests: snapshots of the PR comment (insta) and the size limit.

use std::collections::BTreeMap;

use super::*;
use crate::diff::{
    ColumnDiff, DiffResult, KeyIssues, KeyIssuesPerSide, PerSide, SampleMethod, SampleRow,
    SampleValue, SampledInfo, SchemaDiff,
};

fn column(name: &str, changed: u64, matched: u64) -> ColumnDiff {
    ColumnDiff {
        name: name.into(),
        prod_type: "integer".into(),
        pr_type: "integer".into(),
        changed: Some(changed),
        changed_pct: Some(100.0 * changed as f64 / matched as f64),
        changed_pct_interval: None,
        tolerance: None,
        nulls: None,
    }
}

pub(crate) fn result(name: &str, changed: u64) -> DiffResult {
    DiffResult {
        version: 1,
        prod: format!("analytics.prod.{name}"),
        pr: format!("analytics.dbt_cloud_pr_1_2.{name}"),
        rows: PerSide {
            prod: 1000,
            pr: 1002,
        },
        primary_key: vec!["id".into()],
        primary_key_issues: KeyIssuesPerSide {
            prod: KeyIssues::default(),
            pr: KeyIssues {
                nulls: 1,
                ..Default::default()
            },
        },
        exclusive: Some(PerSide { prod: 3, pr: 5 }),
        matched: Some(997),
        changed: Some(changed),
        unchanged: Some(997 - changed),
        columns: vec![column("amount", changed, 997), column("status", 0, 997)],
        schema: SchemaDiff {
            added: vec!["is_repeat".into()],
            removed: vec![],
            type_changed: vec!["amount".into()],
            renamed: vec![],
        },
        sampled: None,
        samples: vec![SampleRow {
            kind: "changed",
            key: BTreeMap::from([("id".to_owned(), Some("42".to_owned()))]),
            values: vec![SampleValue {
                column: "amount".into(),
                prod: Some("10.00".into()),
                pr: Some("10.5|0 <b>@team</b>".into()),
            }],
        }],
        notes: vec![],
        bytes_estimate: None,
        concentration: None,
    }
}

fn header() -> Header {
    Header {
        config_name: "analytics".into(),
        head_sha: "ec26c3e57ca3a959ca5aad62de7213c562f8c821".into(),
        base_sha: "f95f852bd8fca8fcc58a9a2d6c842781e32a215e".into(),
        head_url: Some("https://github.com/acme/dbt/commit/ec26c3e".into()),
        base_url: None,
        dbt_run_id: Some(70_403_103_932),
        dbt_run_url: Some("https://ab123.us1.dbt.com/deploy/1/projects/2/runs/70403103932".into()),
        base_note: None,
    }
}

fn report() -> Report {
    let mut sampled = result("events", 12);
    sampled.sampled = Some(SampledInfo {
        tolerance: 0.001,
        confidence: 0.99,
        threshold: 1_000_000,
        seed: 0,
        rate: 0.0123,
        rows_sampled: PerSide {
            prod: 12_300,
            pr: 12_310,
        },
        method: SampleMethod::Joined,
        intervals: BTreeMap::from([("changed_pct".to_owned(), (0.9, 1.5))]),
    });
    sampled.columns[0].changed_pct_interval = Some((0.9, 1.5));
    Report {
        title: String::new(),
        header: Some(header()),
        entries: vec![
            ModelEntry {
                name: "orders".into(),
                outcome: Ok(result("orders", 7)),
            },
            ModelEntry {
                name: "events".into(),
                outcome: Ok(sampled),
            },
            ModelEntry {
                name: "broken | model".into(),
                outcome: Err("statement timeout (600s)".into()),
            },
        ],
        skipped: vec![SkippedEntry {
            name: "new_model".into(),
            reason: skip_reason_text(crate::plan::SkipReason::NewModel).into(),
        }],
        downstream: vec!["customers".into(), "revenue".into()],
        metadata: BTreeMap::from([(
            "orders".to_owned(),
            ModelMeta {
                owner: Some("@data-team".into()),
                description: Some("One row per order.".into()),
            },
        )]),
        materializations: BTreeMap::from([(
            "orders".to_owned(),
            crate::plan::MaterializationChange {
                prod: "table".into(),
                pr: "incremental".into(),
            },
        )]),
        gates: BTreeMap::new(),
        over_max_models: None,
        paths: BTreeMap::new(),
        reused: BTreeMap::new(),
    }
}

/// [`report`] with merge gates on `orders` (one fails), `events` (sampled), the failed
/// model, and a policy problem whose text comes from the PR.
fn report_with_gates() -> Report {
    use crate::gates::{Gate, GatePolicy, RowLimit};
    let mut r = report();
    r.gates = BTreeMap::from([
        (
            "orders".to_owned(),
            GatePolicy {
                gates: vec![
                    Gate::ChangedPct {
                        column: "amount".into(),
                        max: 0.5,
                    },
                    Gate::RowsRemoved(RowLimit {
                        max: Some(5),
                        max_pct: None,
                    }),
                    Gate::NoKeyIssues,
                    Gate::ChangedPct {
                        column: "<b>@team|x</b>".into(),
                        max: 1.0,
                    },
                ],
                problems: vec![
                    "meta.prdiff.gates[4]: unknown gate `@all_*` (known: …); gate ignored".into(),
                ],
            },
        ),
        (
            "events".to_owned(),
            GatePolicy {
                gates: vec![Gate::RowsAdded(RowLimit {
                    max: None,
                    max_pct: Some(1.0),
                })],
                problems: vec![],
            },
        ),
        (
            "broken | model".to_owned(),
            GatePolicy {
                gates: vec![Gate::NoKeyIssues],
                problems: vec![],
            },
        ),
    ]);
    r
}

/// The gates section of a comment: from its heading to the end of its table.
fn gates_section(md: &str) -> String {
    let start = md.find("**Merge gates**").expect("a gates section");
    let rest = &md[start..];
    let table = rest.find("\n|").unwrap();
    let end = rest[table + 1..]
        .find("\n\n")
        .map_or(rest.len(), |e| table + 1 + e + 1);
    rest[..end].to_owned()
}

#[test]
fn the_gates_section_matches_its_snapshot_and_escapes_names() {
    let md = markdown(&report_with_gates());
    let section = gates_section(&md);
    assert!(!section.contains("<b>"), "{section}");
    assert!(!section.contains("@team"), "{section}");
    insta::assert_snapshot!(section);
    assert_tables_whole(&md);
    // No gates, no section.
    assert!(!markdown(&report()).contains("Merge gates"));
}

#[test]
fn a_run_over_max_models_says_so_and_how_to_diff_them() {
    let r = Report {
        header: Some(header()),
        skipped: vec![
            SkippedEntry {
                name: "orders".into(),
                reason: "over max_models (1)".into(),
            },
            SkippedEntry {
                name: "customers".into(),
                reason: "over max_models (1)".into(),
            },
        ],
        over_max_models: Some(OverMaxModels { models: 2, max: 1 }),
        ..Default::default()
    };
    let md = markdown(&r);
    insta::assert_snapshot!(md);
    assert!(!md.contains("No models to diff"), "{md}");
    assert!(md.contains("| `orders` | over max\\_models (1) |"), "{md}");
}

#[test]
fn the_gates_section_survives_shortening() {
    let r = report_with_gates();
    let full = markdown(&r);
    let short = markdown_within(&r, full.chars().count() / 3);
    assert!(
        short.contains("_Per-model details were left out"),
        "{short}"
    );
    assert_eq!(gates_section(&short), gates_section(&full));
}

#[test]
fn the_pr_comment_matches_its_snapshot() {
    insta::assert_snapshot!(markdown(&report()));
}

#[test]
fn the_waiting_comment_matches_its_snapshot() {
    insta::assert_snapshot!(waiting_markdown(
        &header(),
        "Waiting for dbt Cloud run #70403103932 to finish."
    ));
}

#[test]
fn the_comment_carries_the_marker_and_escapes_data() {
    let md = markdown(&report());
    assert!(md.starts_with(&marker("analytics")));
    // Data values sit in code spans, where markdown, HTML and mentions are inert; the
    // pipe is escaped so the table holds.
    assert!(md.contains("`10.5\\|0 <b>@team</b>`"), "{md}");
    assert!(
        !md.replace("`10.5\\|0 <b>@team</b>`", "").contains("<b>"),
        "no HTML outside code spans"
    );
    assert!(
        !md.contains("@data-team"),
        "owners from metadata cannot mention a team"
    );
    assert!(
        md.contains("≈12"),
        "sampled figures are marked as estimates"
    );
}

/// Every table line of `md` has the same number of unescaped pipes as its header.
fn assert_tables_whole(md: &str) {
    let mut expected: Option<usize> = None;
    for line in md.lines() {
        if line.starts_with('|') {
            let pipes = line.replace("\\|", "").matches('|').count();
            match expected {
                None => expected = Some(pipes),
                Some(e) => assert_eq!(pipes, e, "a table row was cut: {line}"),
            }
        } else {
            expected = None;
        }
    }
}

#[test]
fn a_huge_report_fits_the_github_limit_by_dropping_detail_not_by_cutting_tables() {
    let mut r = report();
    for i in 0..400 {
        let mut d = result(&format!("model_{i}"), 5);
        d.columns = (0..40)
            .map(|c| column(&format!("column_with_a_long_name_{c}"), c % 3, 997))
            .collect();
        r.entries.push(ModelEntry {
            name: format!("model_{i}"),
            outcome: Ok(d),
        });
    }
    for i in 0..300 {
        r.skipped.push(SkippedEntry {
            name: format!("skipped_{i}"),
            reason: "not built by the PR run".into(),
        });
    }
    let full = markdown(&r);
    assert!(full.chars().count() > GITHUB_COMMENT_LIMIT);
    let fitted = markdown_within(&r, GITHUB_COMMENT_LIMIT);
    assert!(fitted.chars().count() <= GITHUB_COMMENT_LIMIT);
    assert!(fitted.starts_with(&marker("analytics")));
    assert_tables_whole(&fitted);
    // It keeps as much as fits: the summary of every model.
    assert!(fitted.contains("`model_399`"));

    // Far too many models even for the summary: rows are dropped whole, with a note.
    for i in 400..3000 {
        r.entries.push(ModelEntry {
            name: format!("model_{i}"),
            outcome: Ok(result("x", 1)),
        });
    }
    let fitted = markdown_within(&r, GITHUB_COMMENT_LIMIT);
    assert!(fitted.chars().count() <= GITHUB_COMMENT_LIMIT);
    assert_tables_whole(&fitted);
    assert!(fitted.contains("more models, left out to fit"));
}

#[test]
fn a_small_report_is_not_shortened() {
    let r = report();
    assert_eq!(markdown_within(&r, GITHUB_COMMENT_LIMIT), markdown(&r));
}

#[test]
fn status_descriptions_stay_within_140_characters() {
    assert_eq!(
        status_description(&report()),
        "3 models diffed: 2 with differences, 1 failed, 1 not diffed"
    );
    let mut r = report();
    r.entries.clear();
    assert_eq!(status_description(&r), "No models to diff, 1 not diffed");
    assert_eq!(truncate_chars(&"é".repeat(200), 140).chars().count(), 140);
}

/// A failure's whole text (class, code, message) reaches the model's details section,
/// escaped; the summary table shows its start.
#[test]
fn failed_models_show_their_whole_error_in_a_details_section() {
    let cause = format!(
        "warehouse error: insufficient privilege [SQLSTATE 42501]: permission denied for table orders <b>@team</b> | {}end-of-message",
        "x ".repeat(200)
    );
    let report = Report {
        title: "t".into(),
        entries: vec![ModelEntry {
            name: "orders".into(),
            outcome: Err(cause.clone()),
        }],
        ..Default::default()
    };
    let md = markdown(&report);
    assert_tables_whole(&md);
    let row = md.lines().find(|l| l.starts_with("| `orders`")).unwrap();
    assert!(row.contains("SQLSTATE 42501"), "{row}");
    assert!(!row.contains("end-of-message"), "{row}");
    assert!(
        md.contains("<details><summary><code>orders</code> · ⚠️ failed</summary>"),
        "{md}"
    );
    let section = &md[md.find("**Failed:**").unwrap()..];
    assert!(section.contains("end-of-message"), "{section}");
    assert!(
        section.contains("permission denied for table orders"),
        "{section}"
    );
    assert!(
        !section.contains("<b>") && !section.contains("@team"),
        "{section}"
    );
    // Longer failures are cut at the per-model cap, not at a cell's width.
    let huge = "y".repeat(5 * MAX_FAILURE_TEXT);
    let report = Report {
        entries: vec![ModelEntry {
            name: "big".into(),
            outcome: Err(huge),
        }],
        ..report
    };
    let md = markdown(&report);
    let line = md.lines().find(|l| l.starts_with("**Failed:**")).unwrap();
    let ys = line.chars().filter(|&c| c == 'y').count();
    assert_eq!(ys, MAX_FAILURE_TEXT - 1, "{line}");
}

#[test]
fn tolerant_and_renamed_columns_say_so_in_the_comment_and_the_text() {
    let mut r = result("orders", 7);
    r.columns[0].tolerance = Some(crate::diff::Tolerance::new(Some(0.01), None).unwrap());
    r.schema.renamed.push(crate::diff::Renamed {
        from: "amt".into(),
        to: "amount_usd".into(),
        agreement_pct: 99.8,
        from_pr: false,
    });
    let mut rep = report();
    rep.entries[0].outcome = Ok(r.clone());
    let md = markdown(&rep);
    assert!(md.contains("| `amount` (±0.01) |"), "{md}");
    assert!(
        md.contains("- Renamed `amt` → `amount_usd` (99.8 % agree)"),
        "{md}"
    );
    assert!(md.contains("1 renamed"), "{md}");
    let t = text(&r);
    assert!(t.contains("amount (±0.01)"), "{t}");
    assert!(t.contains("renamed amt → amount_usd (99.8 % agree)"), "{t}");
}

/// Models diffed on BigQuery carry their dry-run estimates: each model's details show its
/// own, the summary the total, the text output the model's; a model refused by the cost
/// guard shows why.
#[test]
fn scan_estimates_show_per_model_and_in_total() {
    let mut orders = result("orders", 7);
    orders.bytes_estimate = Some(1_288_490_189);
    let mut events = result("events", 0);
    events.bytes_estimate = Some(3 * (1 << 20));
    let refused = crate::diff::DiffError::OverBytesLimit {
        estimate: 3 << 40,
        limit: 1 << 40,
    };
    let report = Report {
        title: "prdiff".into(),
        entries: vec![
            ModelEntry {
                name: "orders".into(),
                outcome: Ok(orders.clone()),
            },
            ModelEntry {
                name: "events".into(),
                outcome: Ok(events),
            },
            ModelEntry {
                name: "huge".into(),
                outcome: Err(refused.to_string()),
            },
        ],
        ..Default::default()
    };
    let md = markdown(&report);
    insta::assert_snapshot!(md);
    assert!(md.contains("Scans ≈ 1.2 GiB (the warehouse"), "{md}");
    assert!(md.contains("Scans ≈ 3.0 MiB (the warehouse"), "{md}");
    assert!(md.contains("Scans ≈ 1.2 GiB in total (2 models;"), "{md}");
    assert!(
        md.contains("scan 3.0 TiB (3,298,534,883,328 bytes), more than the data source's maximum\\_bytes\\_billed of 1.0 TiB (1,099,511,627,776 bytes)"),
        "{md}"
    );
    // The total survives shortening to the summary table.
    let short = markdown_within(&report, md.chars().count() - 1);
    assert!(short.contains("in total (2 models;"), "{short}");
    assert!(
        text(&orders).contains("scans: ≈ 1.2 GiB (dry-run estimate)"),
        "{}",
        text(&orders)
    );
    // Without estimates (every other warehouse) nothing is said about scans.
    let plain = markdown(&self::report());
    assert!(!plain.contains("Scans"), "{plain}");
    assert!(!text(&result("orders", 7)).contains("scans"));
}

fn concentration(sample_rate: Option<f64>) -> crate::diff::Concentration {
    use crate::diff::{Concentration, Dimension, DimensionValue};
    let top = |v: Option<&str>, rows| DimensionValue {
        value: v.map(str::to_owned),
        rows,
    };
    Concentration {
        changed_rows: 1309,
        sample_rate,
        chosen: "auto".into(),
        dimensions: vec![
            Dimension {
                column: "region".into(),
                distinct: 3,
                top: vec![top(Some("EU"), 1204), top(Some("US"), 100)],
            },
            Dimension {
                column: "channel".into(),
                distinct: 2,
                top: vec![top(Some("w`e|b <b>@x</b>"), 929)],
            },
            Dimension {
                column: "is_test".into(),
                distinct: 2,
                top: vec![top(None, 700)],
            },
        ],
    }
}

#[test]
fn the_concentration_line_shows_each_dimension_s_top_share_with_values_escaped() {
    let c = concentration(None);
    assert_eq!(
        concentration_line(&c, true),
        "Changes concentrate in: `region` = `EU` 92 % (1,204 of 1,309) · `channel` = `w'e\\|b <b>@x</b>` 71 % · `is_test` = NULL 53 %"
    );
    assert_eq!(
        concentration_line(&c, false),
        "Changes concentrate in: region = 'EU' 92 % (1,204 of 1,309) · channel = 'w`e|b <b>@x</b>' 71 % · is_test = NULL 53 %"
    );
    let sampled = concentration(Some(0.0123));
    assert_eq!(
        concentration_line(&sampled, true),
        "Changes concentrate in (approximate: a 1.2 % key sample, 1,309 changed rows): `region` = `EU` ≈92 % (1,204 of 1,309) · `channel` = `w'e\\|b <b>@x</b>` ≈71 % · `is_test` = NULL ≈53 %"
    );
}

#[test]
fn the_comment_shows_the_concentration_in_the_model_s_details() {
    let mut r = report();
    let Ok(orders) = &mut r.entries[0].outcome else {
        panic!("orders has a result");
    };
    orders.concentration = Some(concentration(None));
    let md = markdown(&r);
    let line = "Changes concentrate in: `region` = `EU` 92 % (1,204 of 1,309)";
    assert_eq!(md.matches(line).count(), 1, "{md}");
    // Inside the model's details, after its column table.
    let details = md.find("<summary>").expect("details");
    assert!(md.find(line).unwrap() > details, "{md}");
    assert!(text(orders_result(&r)).contains("Changes concentrate in: region = 'EU' 92 %"));
}

fn orders_result(r: &Report) -> &DiffResult {
    match &r.entries[0].outcome {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn stored_results_without_a_concentration_still_load() {
    let mut stored = serde_json::to_value(result("orders", 7)).unwrap();
    assert!(
        stored.get("concentration").is_none(),
        "absent when not computed"
    );
    stored.as_object_mut().unwrap().remove("concentration");
    let back: DiffResult = serde_json::from_value(stored).unwrap();
    assert_eq!(back.concentration, None);
    let mut with = result("orders", 7);
    with.concentration = Some(concentration(Some(0.5)));
    let json = serde_json::to_string(&with).unwrap();
    let back: DiffResult = serde_json::from_str(&json).unwrap();
    assert_eq!(back, with);
}

#[test]
fn a_re_used_result_says_since_which_commit_in_its_row_only() {
    let mut r = report();
    r.reused = BTreeMap::from([("orders".to_owned(), "ec26c3e".to_owned())]);
    let md = markdown(&r);
    let rows: Vec<&str> = md
        .lines()
        .filter(|l| l.contains("unchanged since"))
        .collect();
    assert_eq!(rows.len(), 1, "{md}");
    assert!(
        rows[0].starts_with("| `orders` · unchanged since `ec26c3e` | "),
        "{}",
        rows[0]
    );
    // The figures are the result's, as for a diffed model.
    let plain = markdown(&report());
    let figures = |md: &str| {
        md.lines()
            .find(|l| l.starts_with("| `orders`"))
            .unwrap()
            .split(" | ")
            .skip(1)
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(figures(&md), figures(&plain));
    assert!(!plain.contains("unchanged since"));
}

#[test]
fn a_pair_the_pr_remapped_is_shown_as_a_rename_from_the_pr() {
    let mut r = result("orders", 7);
    r.schema.renamed.push(crate::diff::Renamed {
        from: "legacy_code".into(),
        to: "code".into(),
        agreement_pct: 97.5,
        from_pr: true,
    });
    let mut rep = report();
    rep.entries[0].outcome = Ok(r.clone());
    let md = markdown(&rep);
    assert!(
        md.contains("- Renamed `legacy_code` → `code` (from the PR)"),
        "{md}"
    );
    assert!(!md.contains("97.5"), "{md}");
    let t = text(&r);
    assert!(
        t.contains("renamed legacy_code → code (from the PR)"),
        "{t}"
    );
}
