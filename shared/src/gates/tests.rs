//! Reading gates from a node's meta (good and bad yaml, as dbt writes it into the
//! manifest) and each gate's verdict on designed diffs.

use std::path::Path;

use serde_json::{Value, json};

use super::*;
use crate::diff::{ColumnDiff, KeyIssues, PerSide, SampledInfo, SchemaDiff};
use crate::manifest::Manifest;

/// The node `model.p.orders` with these extra fields (meta, config, columns).
fn node(extra: Value) -> Node {
    let mut n = json!({
        "unique_id": "model.p.orders", "name": "orders", "resource_type": "model",
        "raw_code": "select 1", "database": "db", "schema": "s", "alias": "orders",
        "relation_name": "\"db\".\"s\".\"orders\"", "fqn": ["p", "orders"],
        "config": {"materialized": "table", "enabled": true},
    });
    for (k, v) in extra.as_object().unwrap() {
        n[k] = v.clone();
    }
    let v = json!({
        "metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json"},
        "nodes": {"model.p.orders": n}, "macros": {}, "child_map": {},
    });
    let m = Manifest::from_slice(&serde_json::to_vec(&v).unwrap(), Path::new("m.json")).unwrap();
    m.nodes.get("model.p.orders").unwrap().clone()
}

fn read_meta(meta: Value) -> (GatePolicy, Vec<String>) {
    let mut warnings = Vec::new();
    let p = read(&node(json!({ "meta": meta })), None, &mut warnings);
    (p, warnings)
}

#[test]
fn the_documented_gates_parse_into_typed_gates() {
    let (p, warnings) = read_meta(json!({"prdiff": {"gates": [
        {"changed_pct": {"column": "amount", "max": 5}},
        {"rows_removed": {"max": 0}},
        {"rows_added": {"max_pct": 10}},
        {"rows_removed": {"max": 3, "max_pct": 1.5}},
        {"no_key_issues": true},
        {"no_key_issues": false},
    ]}}));
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(p.problems.is_empty());
    assert_eq!(
        p.gates,
        [
            Gate::ChangedPct {
                column: "amount".into(),
                max: 5.0
            },
            Gate::RowsRemoved(RowLimit {
                max: Some(0),
                max_pct: None
            }),
            Gate::RowsAdded(RowLimit {
                max: None,
                max_pct: Some(10.0)
            }),
            Gate::RowsRemoved(RowLimit {
                max: Some(3),
                max_pct: Some(1.5)
            }),
            Gate::NoKeyIssues,
        ]
    );
    // What the summary stores reads back the same.
    let back: GatePolicy = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
    assert_eq!(back, p);
}

#[test]
fn gates_are_read_under_datafold_too_and_meta_prdiff_wins() {
    let (p, w) =
        read_meta(json!({"datafold": {"datadiff": {"gates": [{"rows_removed": {"max": 0}}]}}}));
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(p.gates.len(), 1);
    let (p, _) = read_meta(json!({
        "datafold": {"datadiff": {"gates": [{"rows_removed": {"max": 0}}]}},
        "prdiff": {"gates": [{"no_key_issues": true}]},
    }));
    assert_eq!(p.gates, [Gate::NoKeyIssues]);
    // The node's own meta wins over config meta (folder-level `+meta`).
    let mut w = Vec::new();
    let n = node(json!({
        "config": {"materialized": "table", "enabled": true,
                   "meta": {"prdiff": {"gates": [{"rows_added": {"max": 1}}]}}},
        "meta": {"prdiff": {"gates": [{"rows_added": {"max": 2}}]}},
    }));
    assert_eq!(
        read(&n, None, &mut w).gates,
        [Gate::RowsAdded(RowLimit {
            max: Some(2),
            max_pct: None
        })]
    );
}

#[test]
fn bad_gates_are_left_out_with_a_warning_naming_the_model_and_the_gate() {
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"row_removed": {"max": 0}}),
            "unknown gate `row_removed`",
        ),
        (
            json!({"rows_removed": {"max": "zero"}}),
            "gate `rows_removed` takes",
        ),
        (
            json!({"rows_removed": {"max": -1}}),
            "gate `rows_removed` takes",
        ),
        (
            json!({"rows_removed": {"maximum": 1}}),
            "unknown field `maximum`",
        ),
        (json!({"rows_added": {}}), "needs max or max_pct"),
        (
            json!({"rows_added": {"max_pct": -2}}),
            "percentage of 0 or more",
        ),
        (json!({"changed_pct": {"max": 5}}), "missing field `column`"),
        (
            json!({"changed_pct": {"column": "amount", "max": 500}}),
            "from 0 to 100",
        ),
        (
            json!({"changed_pct": {"column": " ", "max": 5}}),
            "needs a column name",
        ),
        (
            json!({"no_key_issues": "yes"}),
            "gate `no_key_issues` takes true or false",
        ),
        (
            json!("rows_removed"),
            "each gate is a mapping with one gate name",
        ),
        (
            json!({"rows_removed": {"max": 0}, "rows_added": {"max": 0}}),
            "each gate is a mapping",
        ),
        (
            json!({"contract_types_unchanged": true}),
            "the model has no enforced contract",
        ),
    ];
    for (gate, expect) in cases {
        let (p, w) = read_meta(json!({"prdiff": {"gates": [gate, {"no_key_issues": true}]}}));
        assert_eq!(p.gates, [Gate::NoKeyIssues], "{gate}");
        assert_eq!(p.problems.len(), 1, "{gate}: {:?}", p.problems);
        assert!(p.problems[0].contains(expect), "{gate}: {}", p.problems[0]);
        assert!(
            p.problems[0].starts_with("meta.prdiff.gates[0]: "),
            "{}",
            p.problems[0]
        );
        assert_eq!(w.len(), 1);
        assert!(
            w[0].starts_with("model.p.orders: meta.prdiff.gates[0]: "),
            "{}",
            w[0]
        );
    }
    let (p, w) = read_meta(json!({"prdiff": {"gates": {"rows_removed": {"max": 0}}}}));
    assert!(p.gates.is_empty());
    assert!(w[0].contains("must be a list of gates"), "{w:?}");
    let (_, w) = read_meta(json!({"prdiff": {"gate": []}}));
    assert!(
        w[0].contains("unknown key in meta.prdiff ignored: gate"),
        "{w:?}"
    );
}

#[test]
fn the_contract_gate_checks_the_contracted_columns_of_both_manifests() {
    let contracted = |cols: Value| {
        node(json!({
            "config": {"materialized": "table", "enabled": true, "contract": {"enforced": true}},
            "columns": cols,
            "meta": {"prdiff": {"gates": [{"contract_types_unchanged": true}]}},
        }))
    };
    let pr = contracted(json!({
        "id": {"name": "id", "data_type": "integer"},
        "amount": {"name": "amount", "data_type": "numeric"},
        "note": {"name": "note"},
    }));
    let prod = contracted(json!({
        "id": {"name": "id", "data_type": "integer"},
        "legacy": {"name": "legacy", "data_type": "text"},
    }));
    let mut w = Vec::new();
    assert_eq!(
        read(&pr, Some(&prod), &mut w).gates,
        [Gate::ContractTypesUnchanged {
            columns: vec!["amount".into(), "id".into(), "legacy".into()]
        }]
    );
    assert!(w.is_empty(), "{w:?}");
}

/// A diff of `orders` keyed on `id`: 1,000 rows in production, `removed` only there,
/// `added` only in the PR, `amount` changed on `changed` of 900 matched rows.
fn diff(removed: u64, added: u64, changed: u64) -> DiffResult {
    let mut r = crate::report::tests::result("orders", changed);
    r.rows = PerSide {
        prod: 1000,
        pr: 1000 - removed + added,
    };
    r.primary_key_issues = Default::default();
    r.exclusive = Some(PerSide {
        prod: removed,
        pr: added,
    });
    r.matched = Some(900);
    r.columns = vec![ColumnDiff {
        name: "amount".into(),
        prod_type: "integer".into(),
        pr_type: "numeric".into(),
        changed: Some(changed),
        changed_pct: Some(changed as f64 * 100.0 / 900.0),
        changed_pct_interval: None,
        nulls: None,
        tolerance: None,
    }];
    r.schema = SchemaDiff {
        added: vec!["is_repeat".into()],
        removed: vec!["legacy".into()],
        type_changed: vec!["amount".into(), "id".into()],
        renamed: Vec::new(),
    };
    r
}

#[test]
fn each_gate_s_verdict_and_what_it_measured() {
    let changed = |column: &str, max: f64| Gate::ChangedPct {
        column: column.into(),
        max,
    };
    let limit = |max: Option<u64>, max_pct: Option<f64>| RowLimit { max, max_pct };
    let contract = |cols: &[&str]| Gate::ContractTypesUnchanged {
        columns: cols.iter().map(|c| c.to_string()).collect(),
    };
    let mut null_keys = diff(0, 0, 0);
    null_keys.primary_key_issues.pr = KeyIssues {
        nulls: 2,
        ..KeyIssues::default()
    };
    null_keys.primary_key_issues.prod = KeyIssues {
        duplicates: 1,
        ..KeyIssues::default()
    };
    let mut keyless = diff(0, 0, 0);
    keyless.primary_key.clear();
    keyless.exclusive = None;
    keyless.matched = None;
    keyless.columns[0].changed_pct = None;
    let mut sampled = diff(10, 0, 0);
    sampled.sampled = Some(SampledInfo {
        tolerance: 0.001,
        confidence: 0.99,
        threshold: 100,
        seed: 1,
        rate: 0.5,
        rows_sampled: PerSide { prod: 500, pr: 495 },
        method: Default::default(),
        intervals: Default::default(),
    });
    // (gate, diff, passed, text)
    let table: Vec<(Gate, DiffResult, bool, &str)> = vec![
        (
            changed("amount", 5.0),
            diff(0, 0, 65),
            false,
            "amount changed on 7.22 % of matched rows > 5 %",
        ),
        (
            changed("AMOUNT", 10.0),
            diff(0, 0, 65),
            true,
            "amount changed on 7.22 % of matched rows ≤ 10 %",
        ),
        (
            changed("amount", 0.0),
            diff(0, 0, 0),
            true,
            "amount changed on 0 % of matched rows ≤ 0 %",
        ),
        (
            changed("amout", 5.0),
            diff(0, 0, 0),
            false,
            "column amout is not among the compared columns: changed_pct cannot be measured",
        ),
        (
            changed("legacy", 5.0),
            diff(0, 0, 0),
            false,
            "column legacy is removed in the PR: changed_pct cannot be measured",
        ),
        (
            changed("is_repeat", 5.0),
            diff(0, 0, 0),
            false,
            "column is_repeat is new in the PR: changed_pct cannot be measured",
        ),
        (
            changed("id", 5.0),
            diff(0, 0, 0),
            false,
            "column id is a key column: changed_pct cannot be measured",
        ),
        (
            changed("amount", 5.0),
            keyless.clone(),
            false,
            "amount: changed rows cannot be measured without a primary key",
        ),
        (
            Gate::RowsRemoved(limit(Some(0), None)),
            diff(0, 4, 0),
            true,
            "0 rows removed (0 % of production rows) ≤ 0",
        ),
        (
            Gate::RowsRemoved(limit(Some(0), None)),
            diff(1, 0, 0),
            false,
            "1 row removed (0.1 % of production rows) > 0",
        ),
        (
            Gate::RowsRemoved(limit(None, Some(1.0))),
            diff(10, 0, 0),
            true,
            "10 rows removed (1 % of production rows) ≤ 1 %",
        ),
        (
            Gate::RowsRemoved(limit(None, Some(1.0))),
            diff(11, 0, 0),
            false,
            "11 rows removed (1.1 % of production rows) > 1 %",
        ),
        (
            Gate::RowsRemoved(limit(Some(20), Some(1.0))),
            diff(11, 0, 0),
            false,
            "11 rows removed (1.1 % of production rows) ≤ 20, > 1 %",
        ),
        (
            Gate::RowsRemoved(limit(Some(0), None)),
            sampled,
            false,
            "≈10 rows removed (≈1 % of production rows) > 0",
        ),
        (
            Gate::RowsAdded(limit(None, Some(10.0))),
            diff(0, 100, 0),
            true,
            "100 rows added (10 % of production rows) ≤ 10 %",
        ),
        (
            Gate::RowsAdded(limit(None, Some(10.0))),
            diff(0, 1234, 0),
            false,
            "1,234 rows added (123.4 % of production rows) > 10 %",
        ),
        (
            Gate::RowsAdded(limit(Some(5), None)),
            keyless.clone(),
            false,
            "rows added cannot be measured without a primary key",
        ),
        (
            Gate::NoKeyIssues,
            diff(3, 3, 3),
            true,
            "no NULL or duplicate keys",
        ),
        (
            Gate::NoKeyIssues,
            null_keys,
            false,
            "1 row with a duplicate key in production; 2 rows with a NULL key in PR",
        ),
        (
            Gate::NoKeyIssues,
            keyless,
            false,
            "the model has no primary key to check",
        ),
        (
            contract(&["status"]),
            diff(0, 0, 0),
            true,
            "1 contracted column keeps its type",
        ),
        (
            contract(&["Amount", "legacy", "id"]),
            diff(0, 0, 0),
            false,
            "contracted column types changed: Amount integer → numeric, legacy removed, id changed type",
        ),
    ];
    for (gate, r, passed, text) in table {
        let got = evaluate(&gate, &r);
        assert_eq!((got.passed, got.text.as_str()), (passed, text), "{gate:?}");
        assert_eq!(got.gate, gate.name());
    }
}

#[test]
fn rows_added_to_an_empty_production_table_fail_a_percentage_and_pass_a_count() {
    let mut r = diff(0, 0, 0);
    r.rows = PerSide { prod: 0, pr: 5 };
    r.exclusive = Some(PerSide { prod: 0, pr: 5 });
    let pct = evaluate(
        &Gate::RowsAdded(RowLimit {
            max: None,
            max_pct: Some(50.0),
        }),
        &r,
    );
    assert!(!pct.passed);
    assert_eq!(pct.text, "5 rows added (production has no rows) > 50 %");
    let count = evaluate(
        &Gate::RowsAdded(RowLimit {
            max: Some(5),
            max_pct: None,
        }),
        &r,
    );
    assert!(count.passed, "{count:?}");
}

#[test]
fn percentages_read_plainly() {
    assert_eq!(fmt_pct(7.2222), "7.22");
    assert_eq!(fmt_pct(5.0), "5");
    assert_eq!(fmt_pct(0.0), "0");
    assert_eq!(fmt_pct(100.0), "100");
    assert_eq!(fmt_pct(5.005005), "5.01");
}
