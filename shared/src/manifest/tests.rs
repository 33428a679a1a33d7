use std::path::Path;

use serde_json::json;

use super::*;

fn manifest(v: serde_json::Value) -> Result<Manifest, ArtifactError> {
    Manifest::from_slice(
        &serde_json::to_vec(&v).unwrap(),
        Path::new("test/manifest.json"),
    )
}

fn v12(nodes: serde_json::Value) -> serde_json::Value {
    json!({
        "metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json", "dbt_version": "1.11.0"},
        "nodes": nodes,
        "sources": {"ignored": {"huge": "x"}},
        "some_future_section": [1, 2, 3],
    })
}

#[test]
fn schema_urls_give_kind_and_version() {
    assert_eq!(
        schema_kind_and_version("https://schemas.getdbt.com/dbt/manifest/v12.json"),
        Some(("manifest", 12))
    );
    assert_eq!(
        schema_kind_and_version("https://schemas.getdbt.com/dbt/run-results/v6.json"),
        Some(("run-results", 6))
    );
    assert_eq!(schema_kind_and_version("nonsense"), None);
}

#[test]
fn a_node_with_only_an_id_parses_and_unknown_fields_are_ignored() {
    let m = manifest(v12(
        json!({"model.p.a": {"resource_type": "model", "name": "a", "brand_new_field": {"x": 1}}}),
    ))
    .unwrap();
    let a = &m.nodes["model.p.a"];
    assert_eq!(a.unique_id, "model.p.a");
    assert!(a.config.enabled);
    assert!(a.columns.is_empty());
}

#[test]
fn a_null_relation_name_falls_back_to_database_schema_and_alias() {
    let m = manifest(v12(json!({"model.p.a": {
        "resource_type": "model", "name": "a", "relation_name": null,
        "database": "DB", "schema": "DBT_CLOUD_PR_1_2_FINANCE", "alias": "A_V2",
    }})))
    .unwrap();
    assert_eq!(
        m.nodes["model.p.a"].relation(),
        Some(Relation::new(
            Some("DB"),
            Some("DBT_CLOUD_PR_1_2_FINANCE"),
            "A_V2"
        ))
    );
}

#[test]
fn ephemeral_models_have_no_relation() {
    let m = manifest(v12(json!({"model.p.e": {
        "resource_type": "model", "name": "e", "relation_name": null, "config": {"materialized": "ephemeral"},
    }})))
    .unwrap();
    assert_eq!(m.nodes["model.p.e"].relation(), None);
}

#[test]
fn columns_keep_the_order_the_yaml_declares() {
    // Raw text: `json!` would sort the keys before the parser ever saw them.
    let text = r#"{"metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json"},
        "nodes": {"model.p.a": {"columns": {"zeta": {"name": "zeta"}, "alpha": {"name": "alpha"}, "mid": {}}}}}"#;
    let m = Manifest::from_slice(text.as_bytes(), Path::new("m.json")).unwrap();
    let names: Vec<&str> = m.nodes["model.p.a"]
        .columns
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["zeta", "alpha", "mid"]);
}

#[test]
fn unrendered_config_comparison_ignores_tags_group_relation_parts_and_key_order() {
    let a = manifest(v12(json!({"model.p.a": {"unrendered_config": {
        "materialized": "table", "meta": {"x": 1, "y": 2}, "tags": ["a"], "group": "g", "schema": "s",
    }}})))
    .unwrap();
    let b = manifest(v12(json!({"model.p.a": {"unrendered_config": {
        "meta": {"y": 2, "x": 1}, "materialized": "table", "tags": ["b"], "schema": "other",
    }}})))
    .unwrap();
    let (a, b) = (&a.nodes["model.p.a"], &b.nodes["model.p.a"]);
    assert_eq!(a.unrendered_config_hash, b.unrendered_config_hash);
    assert_ne!(a.unrendered_relation, b.unrendered_relation);
}

#[test]
fn model_meta_in_unrendered_config_is_part_of_the_comparison() {
    let a = manifest(v12(
        json!({"model.p.a": {"unrendered_config": {"meta": {"owner": "x"}}}}),
    ))
    .unwrap();
    let b = manifest(v12(
        json!({"model.p.a": {"unrendered_config": {"meta": {"owner": "y"}}}}),
    ))
    .unwrap();
    assert_ne!(
        a.nodes["model.p.a"].unrendered_config_hash,
        b.nodes["model.p.a"].unrendered_config_hash
    );
}

#[test]
fn nulls_where_newer_dbt_writes_empty_objects_are_accepted() {
    let m = manifest(json!({
        "metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v7.json"},
        "nodes": {"model.p.a": {"meta": null, "columns": null, "depends_on": null, "config": null, "tags": null}},
        "disabled": null,
        "child_map": null,
    }))
    .unwrap();
    assert_eq!(m.schema_version, 7);
    assert!(m.nodes["model.p.a"].config.enabled);
}

#[test]
fn versions_outside_v7_to_v12_are_refused_naming_the_file() {
    for v in [6, 13] {
        let err = manifest(json!({"metadata": {
            "dbt_schema_version": format!("https://schemas.getdbt.com/dbt/manifest/v{v}.json")
        }}))
        .unwrap_err();
        assert!(matches!(err, ArtifactError::UnsupportedVersion { version, .. } if version == v));
        assert!(err.to_string().contains("test/manifest.json"), "{err}");
    }
}

#[test]
fn run_results_are_keyed_by_unique_id_with_status_and_relation() {
    let rr = RunResults::from_slice(
        &serde_json::to_vec(&json!({
            "metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/run-results/v6.json"},
            "results": [
                {"unique_id": "model.p.a", "status": "success", "relation_name": "\"db\".\"s\".\"a\"", "timing": []},
                {"unique_id": "model.p.b", "status": "error"},
            ],
        }))
        .unwrap(),
        Path::new("run_results.json"),
    )
    .unwrap();
    assert_eq!(
        rr.get("model.p.a").unwrap().relation_name.as_deref(),
        Some("\"db\".\"s\".\"a\"")
    );
    assert_eq!(rr.get("model.p.b").unwrap().status, "error");
}

#[test]
fn a_manifest_given_as_run_results_is_refused() {
    let err = RunResults::from_slice(
        br#"{"metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json"}}"#,
        Path::new("x.json"),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("x.json is not a dbt run_results.json"),
        "{err}"
    );
}

#[test]
fn a_snowflake_manifest_names_relations_as_snowflake_resolves_them() {
    let mut v = v12(json!({
        "model.p.a": {"resource_type": "model", "name": "a",
                      "relation_name": "analytics.dbt_pr_1_2.orders"},
        "model.p.b": {"resource_type": "model", "name": "b",
                      "relation_name": "analytics.\"Quoted\".\"Mixed Case\""},
        "model.p.c": {"resource_type": "model", "name": "c", "relation_name": null,
                      "database": "analytics", "schema": "dbt_pr_1_2", "alias": "c_v2"},
    }));
    v["metadata"]["adapter_type"] = json!("snowflake");
    let m = manifest(v).unwrap();
    let d = m.dialect();
    assert_eq!(d.map(|d| d.name()), Some("snowflake"));
    let rel = |id: &str| m.nodes[id].relation_in(d).unwrap();
    assert_eq!(
        rel("model.p.a"),
        Relation::new(Some("ANALYTICS"), Some("DBT_PR_1_2"), "ORDERS")
    );
    assert_eq!(
        rel("model.p.b"),
        Relation::new(Some("ANALYTICS"), Some("Quoted"), "Mixed Case")
    );
    assert_eq!(
        rel("model.p.c"),
        Relation::new(Some("ANALYTICS"), Some("DBT_PR_1_2"), "C_V2")
    );
    // Without the adapter (or on PostgreSQL), names stay as written.
    assert_eq!(
        m.nodes["model.p.a"].relation(),
        Some(Relation::new(
            Some("analytics"),
            Some("dbt_pr_1_2"),
            "orders"
        ))
    );
}
