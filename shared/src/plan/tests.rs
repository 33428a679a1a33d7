//! Rules on hand-made manifests; `tests/tests/it/plan.rs` checks the same decisions
//! against dbt itself on real artifacts.

use std::path::Path;

use serde_json::{Value, json};

use super::*;

fn manifest(nodes: Value, macros: Value, child_map: Value) -> Manifest {
    let v = json!({
        "metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json"},
        "nodes": nodes, "macros": macros, "child_map": child_map,
    });
    Manifest::from_slice(&serde_json::to_vec(&v).unwrap(), Path::new("m.json")).unwrap()
}

fn model(name: &str, extra: Value) -> (String, Value) {
    let id = format!("model.p.{name}");
    let mut node = json!({
        "unique_id": id, "name": name, "resource_type": "model", "raw_code": format!("select 1 as {name}"),
        "database": "db", "schema": "s", "alias": name, "relation_name": format!("\"db\".\"s\".\"{name}\""),
        "fqn": ["p", name], "config": {"materialized": "table", "enabled": true},
    });
    for (k, v) in extra.as_object().unwrap() {
        node[k] = v.clone();
    }
    (id, node)
}

fn nodes(items: Vec<(String, Value)>) -> Value {
    Value::Object(items.into_iter().collect())
}

fn plan_of(prod: &Manifest, pr: &Manifest, slim: bool, downstream: bool) -> Plan {
    let settings = PlanSettings {
        slim_ci: slim,
        downstream,
        ..PlanSettings::default()
    };
    plan(&PlanInputs {
        prod,
        pr,
        pr_run_results: None,
        settings: &settings,
    })
}

fn reasons_of(plan: &Plan, id: &str) -> Vec<Reason> {
    plan.models
        .iter()
        .find(|m| m.unique_id == id)
        .map(|m| m.reasons.clone())
        .unwrap_or_default()
}

#[test]
fn a_macro_change_reaches_models_through_other_macros() {
    let macros = |inner: &str| {
        json!({
            "macro.p.outer": {"macro_sql": "{{ inner() }}", "depends_on": {"macros": ["macro.p.inner"]}},
            "macro.p.inner": {"macro_sql": inner, "depends_on": {"macros": []}},
        })
    };
    let a = model(
        "a",
        json!({"depends_on": {"macros": ["macro.p.outer"], "nodes": []}}),
    );
    let b = model("b", json!({}));
    let prod = manifest(nodes(vec![a.clone(), b.clone()]), macros("1"), json!({}));
    let pr = manifest(nodes(vec![a, b]), macros("2"), json!({}));
    let plan = plan_of(&prod, &pr, true, false);
    assert_eq!(reasons_of(&plan, "model.p.a"), [Reason::Macros]);
    assert!(reasons_of(&plan, "model.p.b").is_empty());
}

#[test]
fn seeds_compare_checksums_so_an_unchanged_large_seed_path_is_unmodified() {
    let seed = |sum: &str| {
        (
            "seed.p.s".to_owned(),
            json!({"resource_type": "seed", "name": "s", "checksum": {"name": "path", "checksum": sum}}),
        )
    };
    let prod = manifest(nodes(vec![seed("seeds/s.csv")]), json!({}), json!({}));
    let same = manifest(nodes(vec![seed("seeds/s.csv")]), json!({}), json!({}));
    let moved = manifest(nodes(vec![seed("seeds/t.csv")]), json!({}), json!({}));
    assert!(plan_of(&prod, &same, true, false).models.is_empty());
    assert_eq!(
        reasons_of(&plan_of(&prod, &moved, true, false), "seed.p.s"),
        [Reason::Body]
    );
}

#[test]
fn turning_a_contract_on_or_changing_its_checksum_is_a_contract_change() {
    let with = |c: Value| model("a", json!({"contract": c}));
    let off = manifest(
        nodes(vec![with(json!({"enforced": false}))]),
        json!({}),
        json!({}),
    );
    let on1 = manifest(
        nodes(vec![with(json!({"enforced": true, "checksum": "1"}))]),
        json!({}),
        json!({}),
    );
    let on2 = manifest(
        nodes(vec![with(json!({"enforced": true, "checksum": "2"}))]),
        json!({}),
        json!({}),
    );
    assert_eq!(
        reasons_of(&plan_of(&off, &on1, true, false), "model.p.a"),
        [Reason::Contract]
    );
    assert_eq!(
        reasons_of(&plan_of(&on1, &on2, true, false), "model.p.a"),
        [Reason::Contract]
    );
    assert!(plan_of(&on1, &on1, true, false).models.is_empty());
}

#[test]
fn descriptions_count_only_when_persist_docs_is_on() {
    let m = |desc: &str, persist: bool| {
        model(
            "a",
            json!({"description": desc, "config": {"materialized": "table", "persist_docs": {"relation": persist}}}),
        )
    };
    let plain = |d| manifest(nodes(vec![m(d, false)]), json!({}), json!({}));
    let persisted = |d| manifest(nodes(vec![m(d, true)]), json!({}), json!({}));
    assert!(
        plan_of(&plain("x"), &plain("y"), true, false)
            .models
            .is_empty()
    );
    assert_eq!(
        reasons_of(
            &plan_of(&persisted("x"), &persisted("y"), true, false),
            "model.p.a"
        ),
        [Reason::PersistedDescriptions]
    );
}

#[test]
fn downstream_follows_child_map_transitively() {
    let a = model("a", json!({}));
    let b = model("b", json!({"depends_on": {"nodes": ["model.p.a"]}}));
    let c = model("c", json!({"depends_on": {"nodes": ["model.p.b"]}}));
    let children = json!({"model.p.a": ["model.p.b"], "model.p.b": ["model.p.c"], "model.p.c": []});
    let prod = manifest(
        nodes(vec![a.clone(), b.clone(), c.clone()]),
        json!({}),
        children.clone(),
    );
    let mut a2 = a;
    a2.1["raw_code"] = json!("select 2");
    let pr = manifest(nodes(vec![a2, b, c]), json!({}), children);
    let plan = plan_of(&prod, &pr, true, true);
    let ids: Vec<&str> = plan.models.iter().map(|m| m.unique_id.as_str()).collect();
    assert_eq!(ids, ["model.p.a", "model.p.b", "model.p.c"]);
    assert_eq!(reasons_of(&plan, "model.p.c"), [Reason::Downstream]);
    assert_eq!(plan_of(&prod, &pr, true, false).models.len(), 1);
}

#[test]
fn column_meta_wins_over_unique_tests_and_composite_keys_keep_column_order() {
    // Raw text: `json!` would sort the column keys and lose the yaml order.
    let text = r#"{"metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json"},
      "nodes": {
        "model.p.a": {"resource_type": "model", "name": "a", "raw_code": "select 1", "columns": {
            "b": {"name": "b", "meta": {"primary-key": true}},
            "x": {"name": "x"},
            "a": {"name": "a", "meta": {"primary-key": true}}}},
        "test.p.unique_a_x": {"resource_type": "test", "name": "unique_a_x", "attached_node": "model.p.a",
            "test_metadata": {"name": "unique", "kwargs": {"column_name": "x"}}, "config": {"enabled": true}}}}"#;
    let m = Manifest::from_slice(text.as_bytes(), Path::new("m.json")).unwrap();
    let plan = plan_of(&m, &m, false, false);
    let a = plan
        .models
        .iter()
        .find(|p| p.unique_id == "model.p.a")
        .unwrap();
    assert_eq!(a.primary_key, ["b", "a"]);
    assert_eq!(a.primary_key_source, Some(KeySource::ColumnMeta));
}

#[test]
fn unique_combination_of_columns_and_primary_key_constraints_are_key_sources() {
    let a = model("a", json!({}));
    let test = (
        "test.p.combo".to_owned(),
        json!({"resource_type": "test", "name": "combo", "depends_on": {"nodes": ["model.p.a"]},
               "test_metadata": {"name": "unique_combination_of_columns", "namespace": "dbt_utils",
                                 "kwargs": {"combination_of_columns": ["k1", "k2"]}}}),
    );
    let b = model(
        "b",
        json!({"constraints": [{"type": "primary_key", "columns": ["id", "day"]}]}),
    );
    let m = manifest(nodes(vec![a, test, b]), json!({}), json!({}));
    let plan = plan_of(&m, &m, false, false);
    let key = |id: &str| {
        let p = plan.models.iter().find(|p| p.unique_id == id).unwrap();
        (p.primary_key.clone(), p.primary_key_source)
    };
    assert_eq!(
        key("model.p.a"),
        (
            vec!["k1".into(), "k2".into()],
            Some(KeySource::UniqueCombinationTest)
        )
    );
    assert_eq!(
        key("model.p.b"),
        (
            vec!["id".into(), "day".into()],
            Some(KeySource::PrimaryKeyConstraint)
        )
    );
}

#[test]
fn node_meta_overrides_config_meta_and_bad_values_warn() {
    let a = model(
        "a",
        json!({
            "config": {"materialized": "table", "meta": {"datafold": {"datadiff": {"filter": "x > 0", "time_column": "t"}}}},
            "meta": {"datafold": {"datadiff": {"filter": "x > 1", "exclude_columns": 5}}},
        }),
    );
    let m = manifest(nodes(vec![a]), json!({}), json!({}));
    let plan = plan_of(&m, &m, false, false);
    let o = &plan.models[0].options;
    assert_eq!(o.filter.as_deref(), Some("x > 1"));
    assert_eq!(o.time_column.as_deref(), Some("t"));
    assert!(
        plan.warnings.iter().any(|w| w.contains("exclude_columns")),
        "{:?}",
        plan.warnings
    );
}

#[test]
fn tolerance_is_read_per_column_from_meta_prdiff_and_bad_bounds_warn() {
    let a = model(
        "a",
        json!({
            "config": {"materialized": "table", "meta": {"prdiff": {"tolerance": {
                "amount": {"absolute": 0.5},
                "ratio": {"relative": 0.001},
            }}}},
            "meta": {"prdiff": {"tolerance": {
                "amount": {"absolute": 0.01},
                "price": {"absolute": 0.005, "relative": 0.0001},
                "bad_text": {"absolute": "0.01; DROP TABLE x"},
                "bad_sign": {"absolute": -1},
                "bad_key": {"abs": 1},
            }}},
        }),
    );
    let m = manifest(nodes(vec![a]), json!({}), json!({}));
    let plan = plan_of(&m, &m, false, false);
    let t = &plan.models[0].options.tolerance;
    let got: Vec<(&str, Option<f64>, Option<f64>)> = t
        .iter()
        .map(|(c, t)| (c.as_str(), t.absolute, t.relative))
        .collect();
    assert_eq!(
        got,
        [
            ("amount", Some(0.01), None),
            ("price", Some(0.005), Some(0.0001)),
            ("ratio", None, Some(0.001)),
        ]
    );
    for bad in ["bad_text", "bad_sign", "bad_key"] {
        assert!(
            plan.warnings
                .iter()
                .any(|w| w.contains("model.p.a") && w.contains(&format!("tolerance.{bad}"))),
            "{bad}: {:?}",
            plan.warnings
        );
    }
}

#[test]
fn dimensions_are_read_from_meta_prdiff_over_datafold_s_block_and_bad_lists_warn() {
    let plan_for = |v: Value| {
        let m = manifest(nodes(vec![model("a", v)]), json!({}), json!({}));
        plan_of(&m, &m, false, false)
    };
    let plan = plan_for(json!({
        "config": {"materialized": "table", "meta": {"prdiff": {"dimensions": ["channel"]}}},
        "meta": {"prdiff": {"dimensions": ["region", "channel"]},
                 "datafold": {"datadiff": {"dimensions": ["ignored_here"]}}},
    }));
    assert_eq!(plan.models[0].options.dimensions, ["region", "channel"]);
    let plan = plan_for(json!({
        "config": {"materialized": "table"},
        "meta": {"datafold": {"datadiff": {"dimensions": ["region"]}}},
    }));
    assert_eq!(plan.models[0].options.dimensions, ["region"]);
    assert!(
        !plan.warnings.iter().any(|w| w.contains("dimensions")),
        "a known key: {:?}",
        plan.warnings
    );
    let plan = plan_for(json!({
        "config": {"materialized": "table"},
        "meta": {"prdiff": {"dimensions": {"region": 1}}},
    }));
    assert!(plan.models[0].options.dimensions.is_empty());
    assert!(
        plan.warnings
            .iter()
            .any(|w| w.contains("model.p.a") && w.contains("meta.prdiff.dimensions")),
        "{:?}",
        plan.warnings
    );
}

#[test]
fn a_changed_source_selects_what_reads_it_as_downstream_and_descriptions_do_not_count() {
    let src_id = "source.p.raw.payments";
    let with_source = |source: Value| {
        let v = json!({
            "metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json"},
            "nodes": nodes(vec![model("reader", json!({"depends_on": {"nodes": [src_id], "macros": []}}))]),
            "sources": {src_id: source},
            "child_map": {src_id: ["model.p.reader"], "model.p.reader": []},
        });
        Manifest::from_slice(&serde_json::to_vec(&v).unwrap(), Path::new("m.json")).unwrap()
    };
    let base = json!({
        "unique_id": src_id, "database": "db", "schema": "raw", "identifier": "payments",
        "fqn": ["p", "raw", "payments"], "loaded_at_field": "paid_at", "description": "Payments.",
        "quoting": {}, "freshness": null, "external": null,
        "unrendered_config": {"loaded_at_field": "paid_at", "meta": {}},
    });
    let edit = |k: &str, v: Value| {
        let mut s = base.clone();
        s[k] = v;
        s
    };
    let prod = with_source(base.clone());
    for (what, changed) in [
        ("schema", edit("schema", json!("raw_v2"))),
        ("identifier", edit("identifier", json!("payments_v2"))),
        (
            "freshness column",
            edit("loaded_at_field", json!("loaded_at")),
        ),
        (
            "config meta",
            edit(
                "unrendered_config",
                json!({"loaded_at_field": "paid_at", "meta": {"owner": "x"}}),
            ),
        ),
    ] {
        let pr = with_source(changed);
        let plan = plan_of(&prod, &pr, true, true);
        assert_eq!(plan.modified_sources, [src_id], "{what}");
        assert_eq!(
            reasons_of(&plan, "model.p.reader"),
            [Reason::Downstream],
            "{what}"
        );
        // Without downstream, dbt's state:modified selects the source only: nothing to diff.
        let plan = plan_of(&prod, &pr, true, false);
        assert!(plan.models.is_empty(), "{what}");
        assert_eq!(plan.modified_sources, [src_id], "{what}");
    }
    let docs_only = with_source(edit("description", json!("Payments, as exported.")));
    let plan = plan_of(&prod, &docs_only, true, true);
    assert!(plan.modified_sources.is_empty());
    assert!(plan.models.is_empty());
    // A new source is modified too.
    let none = manifest(
        nodes(vec![model("reader", json!({}))]),
        json!({}),
        json!({}),
    );
    assert_eq!(plan_of(&none, &prod, true, true).modified_sources, [src_id]);
}

#[test]
fn a_materialization_change_is_recorded_on_the_model() {
    let prod = manifest(
        nodes(vec![model("a", json!({})), model("b", json!({}))]),
        json!({}),
        json!({}),
    );
    let pr = manifest(
        nodes(vec![
            model(
                "a",
                json!({"config": {"materialized": "view", "enabled": true}}),
            ),
            model(
                "b",
                json!({"config": {"materialized": "TABLE", "enabled": true}}),
            ),
        ]),
        json!({}),
        json!({}),
    );
    let p = plan_of(&prod, &pr, false, false);
    let a = p.models.iter().find(|m| m.name == "a").unwrap();
    assert_eq!(
        a.materialization_change,
        Some(MaterializationChange {
            prod: "table".into(),
            pr: "view".into()
        })
    );
    assert!(
        a.materialization_change
            .as_ref()
            .unwrap()
            .text()
            .contains("`view`")
    );
    // Only the case differs: the same materialization.
    let b = p.models.iter().find(|m| m.name == "b").unwrap();
    assert_eq!(b.materialization_change, None);
}
