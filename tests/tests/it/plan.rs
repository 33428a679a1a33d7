//! `prdiff plan` against real dbt: the artifacts under `tests/fixtures/plan/` were built by
//! dbt-core 1.11 + dbt-duckdb from `examples/plan_project` (`scripts/gen_plan_fixtures.sh`),
//! once as production and once per PR scenario, with dbt's own `state:modified` answers.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use prdiff_shared::manifest::{ArtifactError, Manifest, RunResults};
use prdiff_shared::plan::{
    Action, IgnoreColumns, KeySource, Plan, PlanInputs, PlanSettings, PlannedModel, Reason,
    SkipReason, plan,
};
use prdiff_shared::sql::Relation;

fn fixtures() -> PathBuf {
    prdiff_tests::fixtures().join("plan")
}

fn scenarios() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().join("expected").is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

fn prod() -> Manifest {
    Manifest::load(&fixtures().join("prod/manifest.json")).unwrap()
}

fn load(scenario: &str) -> (Manifest, RunResults) {
    let dir = fixtures().join(scenario);
    (
        Manifest::load(&dir.join("manifest.json")).unwrap(),
        RunResults::load(&dir.join("run_results.json")).unwrap(),
    )
}

fn settings(slim_ci: bool, downstream: bool) -> PlanSettings {
    PlanSettings {
        slim_ci,
        downstream,
        ..PlanSettings::default()
    }
}

fn plan_scenario(scenario: &str, settings: &PlanSettings) -> Plan {
    let prod = prod();
    let (pr, rr) = load(scenario);
    plan(&PlanInputs {
        prod: &prod,
        pr: &pr,
        pr_run_results: Some(&rr),
        settings,
    })
}

fn model<'a>(plan: &'a Plan, unique_id: &str) -> &'a PlannedModel {
    plan.models
        .iter()
        .find(|m| m.unique_id == unique_id)
        .unwrap_or_else(|| panic!("{unique_id} not in plan: {:#?}", ids(plan)))
}

fn ids(plan: &Plan) -> Vec<&str> {
    plan.models.iter().map(|m| m.unique_id.as_str()).collect()
}

/// The models, seeds and snapshots dbt listed (tests and other kinds are not diffed).
fn dbt_selection(scenario: &str, file: &str) -> BTreeSet<String> {
    std::fs::read_to_string(fixtures().join(scenario).join("expected").join(file))
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("model.") || l.starts_with("seed.") || l.starts_with("snapshot."))
        .map(str::to_owned)
        .collect()
}

/// The sources dbt listed.
fn dbt_sources(scenario: &str, file: &str) -> BTreeSet<String> {
    std::fs::read_to_string(fixtures().join(scenario).join("expected").join(file))
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("source."))
        .map(str::to_owned)
        .collect()
}

/// What the plan selected because of the PR (removed and disabled models are listed too,
/// but dbt's selection cannot contain them).
fn prdiff_selection(plan: &Plan) -> BTreeSet<String> {
    plan.models
        .iter()
        .filter(|m| {
            !matches!(
                m.skip_reason,
                Some(SkipReason::Removed | SkipReason::Disabled)
            )
        })
        .map(|m| m.unique_id.clone())
        .collect()
}

#[test]
fn every_scenario_selects_what_dbt_state_modified_selects() {
    let scenarios = scenarios();
    assert!(scenarios.len() >= 10, "fixtures missing: {scenarios:?}");
    for s in &scenarios {
        let plan = plan_scenario(s, &settings(true, false));
        assert_eq!(
            prdiff_selection(&plan),
            dbt_selection(s, "state_modified.txt"),
            "scenario {s}: state:modified"
        );
        assert_eq!(
            plan.modified_sources
                .iter()
                .cloned()
                .collect::<BTreeSet<_>>(),
            dbt_sources(s, "state_modified.txt"),
            "scenario {s}: sources in state:modified"
        );
    }
}

#[test]
fn every_scenario_with_downstream_selects_what_dbt_state_modified_plus_selects() {
    for s in &scenarios() {
        let plan = plan_scenario(s, &settings(true, true));
        assert_eq!(
            prdiff_selection(&plan),
            dbt_selection(s, "state_modified_plus.txt"),
            "scenario {s}: state:modified+"
        );
        assert_eq!(
            plan.modified_sources
                .iter()
                .cloned()
                .collect::<BTreeSet<_>>(),
            dbt_sources(s, "state_modified_plus.txt"),
            "scenario {s}: sources in state:modified+"
        );
    }
}

#[test]
fn each_modified_model_carries_the_reason_dbt_would_give() {
    let cases: &[(&str, &str, &[Reason])] = &[
        ("body", "model.plan_project.stg_orders", &[Reason::Body]),
        // The change is a `config()` call in the SQL, so the body changed too.
        (
            "config",
            "model.plan_project.daily_revenue",
            &[Reason::Body, Reason::Config],
        ),
        (
            "macro",
            "model.plan_project.stg_payments",
            &[Reason::Macros],
        ),
        ("macro", "model.plan_project.orders", &[Reason::Macros]),
        (
            "contract",
            "model.plan_project.customers",
            &[Reason::Contract],
        ),
        (
            "relation",
            "model.plan_project.order_totals",
            &[Reason::Body, Reason::Relation],
        ),
        (
            "new_model",
            "model.plan_project.orders_by_status",
            &[Reason::New],
        ),
        ("seed", "seed.plan_project.raw_payments", &[Reason::Body]),
        ("model_meta", "model.plan_project.orders", &[Reason::Config]),
        (
            "description_persisted",
            "model.plan_project.payments_summary",
            &[Reason::PersistedDescriptions],
        ),
    ];
    for (scenario, id, reasons) in cases {
        let plan = plan_scenario(scenario, &settings(true, false));
        assert_eq!(model(&plan, id).reasons, *reasons, "{scenario}: {id}");
    }
}

#[test]
fn tags_column_meta_and_unpersisted_descriptions_change_nothing() {
    for s in ["tags_meta", "description"] {
        assert!(
            plan_scenario(s, &settings(true, true)).models.is_empty(),
            "{s}"
        );
    }
}

#[test]
fn new_removed_and_ephemeral_models_are_listed_but_never_diffed() {
    let plan = plan_scenario("new_model", &settings(true, false));
    let new = model(&plan, "model.plan_project.orders_by_status");
    assert_eq!(
        (new.action, new.skip_reason),
        (Action::Skip, Some(SkipReason::NewModel))
    );
    assert!(new.prod_relation.is_none() && new.pr_relation.is_some());

    let plan = plan_scenario("removed_model", &settings(true, false));
    let removed = model(&plan, "model.plan_project.legacy_report");
    assert_eq!(
        (removed.action, removed.skip_reason),
        (Action::Skip, Some(SkipReason::Removed))
    );
    assert!(removed.pr_relation.is_none());

    let plan = plan_scenario("macro", &settings(true, true));
    let eph = model(&plan, "model.plan_project.int_order_payments");
    assert_eq!(eph.skip_reason, Some(SkipReason::Ephemeral));
    assert!(eph.prod_relation.is_none() && eph.pr_relation.is_none());
}

#[test]
fn downstream_models_are_diffed_only_when_diff_downstream_is_on() {
    let off = plan_scenario("body", &settings(true, false));
    assert_eq!(ids(&off), ["model.plan_project.stg_orders"]);
    let on = plan_scenario("body", &settings(true, true));
    let orders = model(&on, "model.plan_project.orders");
    assert!(orders.downstream);
    assert_eq!(orders.reasons, [Reason::Downstream]);
    assert_eq!(orders.action, Action::Diff);
}

#[test]
fn slim_ci_off_plans_every_model_the_pr_run_built() {
    let (_, rr) = load("body");
    let plan = plan_scenario("body", &settings(false, false));
    let built: BTreeSet<String> = rr
        .results
        .keys()
        .filter(|id| {
            id.starts_with("model.") || id.starts_with("seed.") || id.starts_with("snapshot.")
        })
        .cloned()
        .collect();
    let planned: BTreeSet<String> = plan
        .models
        .iter()
        .filter(|m| m.action == Action::Diff)
        .map(|m| m.unique_id.clone())
        .collect();
    assert_eq!(planned, built);
    assert_eq!(
        model(&plan, "model.plan_project.stg_orders").reasons,
        [Reason::Body]
    );
    // A snapshot is compared on its current versions, by its unique_key, without the
    // bookkeeping columns that differ between any two builds.
    let snapshot = model(&plan, "snapshot.plan_project.orders_snapshot");
    assert_eq!(snapshot.primary_key, ["order_id"]);
    assert_eq!(
        snapshot.options.filter.as_deref(),
        Some("dbt_valid_to is null")
    );
    assert_eq!(
        snapshot.options.exclude_columns,
        [
            "dbt_scd_id",
            "dbt_updated_at",
            "dbt_valid_from",
            "dbt_valid_to"
        ]
    );
    assert_eq!(
        snapshot.pr_relation.as_ref().map(|r| r.name.as_str()),
        Some("orders_snapshot")
    );
    // Models get no such defaults.
    assert!(
        model(&plan, "model.plan_project.stg_orders")
            .options
            .filter
            .is_none()
    );
}

#[test]
fn models_the_pr_run_did_not_build_or_failed_are_skipped_with_the_reason() {
    let prod = prod();
    let (pr, mut rr) = load("body");
    rr.results.remove("model.plan_project.customers");
    rr.results
        .get_mut("model.plan_project.orders")
        .unwrap()
        .status = "error".into();
    rr.results
        .get_mut("model.plan_project.daily_revenue")
        .unwrap()
        .status = "skipped".into();
    let s = settings(true, true);
    let plan = plan(&PlanInputs {
        prod: &prod,
        pr: &pr,
        pr_run_results: Some(&rr),
        settings: &s,
    });
    let skip = |id: &str| model(&plan, id).skip_reason;
    assert_eq!(
        skip("model.plan_project.customers"),
        Some(SkipReason::NotBuilt)
    );
    assert_eq!(skip("model.plan_project.orders"), Some(SkipReason::Error));
    assert_eq!(
        skip("model.plan_project.daily_revenue"),
        Some(SkipReason::Skipped)
    );
    assert_eq!(skip("model.plan_project.stg_orders"), None);
}

#[test]
fn relations_follow_custom_schemas_aliases_and_versions_on_both_sides() {
    let plan = plan_scenario("macro", &settings(true, true));
    let rel = |id: &str| {
        let m = model(&plan, id);
        (
            m.prod_relation.clone().unwrap(),
            m.pr_relation.clone().unwrap(),
        )
    };
    assert_eq!(
        rel("model.plan_project.payments_summary"),
        (
            Relation::new(
                Some("warehouse"),
                Some("analytics_finance"),
                "payments_summary"
            ),
            Relation::new(
                Some("warehouse"),
                Some("dbt_cloud_pr_4242_3_finance"),
                "payments_summary"
            ),
        )
    );
    assert_eq!(
        rel("model.plan_project.order_totals"),
        (
            Relation::new(
                Some("warehouse"),
                Some("analytics_finance"),
                "order_totals_v"
            ),
            Relation::new(
                Some("warehouse"),
                Some("dbt_cloud_pr_4242_3_finance"),
                "order_totals_v"
            ),
        )
    );
    let plan = plan_scenario("body", &settings(true, true));
    let v2 = model(&plan, "model.plan_project.dim_dates.v2");
    assert_eq!(v2.pr_relation.as_ref().unwrap().name, "dim_dates_v2");
    assert_eq!(
        v2.prod_relation.as_ref().unwrap().schema.as_deref(),
        Some("analytics")
    );
}

#[test]
fn the_pr_relation_comes_from_run_results_and_upper_case_names_are_kept() {
    let prod = prod();
    let (pr, mut rr) = load("body");
    rr.results
        .get_mut("model.plan_project.stg_orders")
        .unwrap()
        .relation_name = Some(r#""WAREHOUSE"."DBT_CLOUD_PR_4242_1"."STG_ORDERS""#.into());
    let s = settings(true, false);
    let plan = plan(&PlanInputs {
        prod: &prod,
        pr: &pr,
        pr_run_results: Some(&rr),
        settings: &s,
    });
    let m = model(&plan, "model.plan_project.stg_orders");
    assert_eq!(
        m.pr_relation,
        Some(Relation::new(
            Some("WAREHOUSE"),
            Some("DBT_CLOUD_PR_4242_1"),
            "STG_ORDERS"
        ))
    );
}

#[test]
fn primary_keys_are_found_by_the_first_rule_that_applies() {
    // Slim CI off and no run_results: every model of the PR manifest is planned.
    let (prod, pr) = (prod(), load("seed").0);
    let s = settings(false, false);
    let plan = plan(&PlanInputs {
        prod: &prod,
        pr: &pr,
        pr_run_results: None,
        settings: &s,
    });
    let key = |id: &str| {
        let m = model(&plan, id);
        (m.primary_key.clone(), m.primary_key_source)
    };
    let k = |cols: &[&str], src| {
        (
            cols.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            Some(src),
        )
    };
    assert_eq!(
        key("model.plan_project.customers"),
        k(&["customer_id"], KeySource::ModelMeta)
    );
    assert_eq!(
        key("model.plan_project.orders"),
        k(&["order_id"], KeySource::ColumnMeta)
    );
    assert_eq!(
        key("model.plan_project.stg_payments"),
        k(&["payment_id"], KeySource::ColumnTags)
    );
    assert_eq!(
        key("model.plan_project.payments_summary"),
        k(&["payment_method"], KeySource::UniqueTest)
    );
    assert_eq!(
        key("model.plan_project.order_totals"),
        k(&["order_date", "amount"], KeySource::UniqueTest)
    );
    assert_eq!(
        key("model.plan_project.customer_orders"),
        k(&["customer_id", "order_id"], KeySource::UniqueKeyConfig)
    );
    let ltv = model(&plan, "model.plan_project.customer_ltv");
    assert!(ltv.primary_key.is_empty() && ltv.primary_key_source.is_none());
    assert!(
        ltv.primary_key_hint
            .is_some_and(|h| h.contains("primary-key"))
    );
}

#[test]
fn datafold_options_come_from_model_meta_and_folder_level_meta() {
    let plan = plan_scenario("macro", &settings(true, true));
    let orders = &model(&plan, "model.plan_project.orders").options;
    assert_eq!(orders.filter.as_deref(), Some("amount >= 0"));
    assert_eq!(orders.exclude_columns, ["fee"]);
    let summary = &model(&plan, "model.plan_project.payments_summary").options;
    assert_eq!(summary.time_column.as_deref(), Some("paid_at"));
}

/// A real manifest with one node edited through its JSON, for cases no scenario covers.
fn edited_manifest(scenario: &str, edit: impl FnOnce(&mut serde_json::Value)) -> Manifest {
    let path = fixtures().join(scenario).join("manifest.json");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut json);
    Manifest::from_slice(&serde_json::to_vec(&json).unwrap(), &path).unwrap()
}

#[test]
fn unknown_datadiff_keys_and_never_diff_are_reported_not_fatal() {
    let prod = prod();
    let pr = edited_manifest("body", |j| {
        j["nodes"]["model.plan_project.stg_orders"]["config"]["meta"] = serde_json::json!({"datafold": {"datadiff": {"never_diff": true, "sampling_rate": 0.1}}});
    });
    let s = settings(true, false);
    let plan = plan(&PlanInputs {
        prod: &prod,
        pr: &pr,
        pr_run_results: None,
        settings: &s,
    });
    let m = model(&plan, "model.plan_project.stg_orders");
    assert_eq!(m.skip_reason, Some(SkipReason::NeverDiff));
    assert!(
        plan.warnings
            .iter()
            .any(|w| w.contains("stg_orders") && w.contains("sampling_rate")),
        "{:?}",
        plan.warnings
    );
}

#[test]
fn slim_diff_diff_when_downstream_includes_a_downstream_model_without_diff_downstream() {
    let prod = prod();
    let pr = edited_manifest("body", |j| {
        j["nodes"]["model.plan_project.orders"]["config"]["meta"]["datafold"]["datadiff"]["slim_diff"] =
            serde_json::json!("diff_when_downstream");
    });
    let s = settings(true, false);
    let plan = plan(&PlanInputs {
        prod: &prod,
        pr: &pr,
        pr_run_results: None,
        settings: &s,
    });
    let orders = model(&plan, "model.plan_project.orders");
    assert_eq!(orders.reasons, [Reason::Downstream]);
    assert_eq!(orders.action, Action::Diff);
    assert!(!ids(&plan).contains(&"model.plan_project.daily_revenue"));
}

#[test]
fn the_ignore_list_drops_documented_columns_but_never_key_columns() {
    let prod = prod();
    let (pr, rr) = load("contract");
    let s = PlanSettings {
        ignore_columns: IgnoreColumns::parse("*_name\ncustomer_*\n").unwrap(),
        ..settings(true, false)
    };
    let plan = plan(&PlanInputs {
        prod: &prod,
        pr: &pr,
        pr_run_results: Some(&rr),
        settings: &s,
    });
    let customers = model(&plan, "model.plan_project.customers");
    assert_eq!(customers.primary_key, ["customer_id"]);
    assert_eq!(
        customers.options.ignored_columns,
        ["first_name", "last_name"]
    );
}

#[test]
fn models_are_listed_parents_first_then_by_name_every_time() {
    let a = plan_scenario("seed", &settings(true, true));
    let b = plan_scenario("seed", &settings(true, true));
    assert_eq!(ids(&a), ids(&b));
    let pr = load("seed").0;
    let pos = |id: &str| ids(&a).iter().position(|m| *m == id);
    for m in &a.models {
        for parent in &pr.nodes[&m.unique_id].depends_on_nodes {
            if let (Some(p), Some(c)) = (pos(parent), pos(&m.unique_id)) {
                assert!(p < c, "{parent} listed after its child {}", m.unique_id);
            }
        }
    }
}

#[test]
fn the_plan_serialises_as_version_1_json_with_the_documented_fields() {
    let json = serde_json::to_value(plan_scenario("body", &settings(true, false))).unwrap();
    assert_eq!(json["version"], 1);
    let m = &json["models"][0];
    for field in [
        "unique_id",
        "action",
        "reasons",
        "prod_relation",
        "pr_relation",
        "primary_key",
        "primary_key_source",
        "options",
    ] {
        assert!(m.get(field).is_some(), "missing {field} in {m}");
    }
    assert_eq!(m["action"], "diff");
    assert_eq!(m["reasons"][0], "body");
}

fn dbt_artifacts() -> PathBuf {
    prdiff_tests::fixtures().join("dbt_artifacts")
}

#[test]
fn every_fixture_manifest_v7_to_v12_parses_and_plans() {
    let dir = dbt_artifacts().join("manifests");
    let mut versions = Vec::new();
    let mut previous: Option<Manifest> = None;
    for v in 7..=12 {
        let path = dir.join(format!("dbt-core.state.v{v}.manifest.json"));
        let m = Manifest::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(m.schema_version, v);
        let models: Vec<_> = m
            .nodes
            .values()
            .filter(|n| n.resource_type == "model")
            .collect();
        assert!(!models.is_empty(), "v{v} has no models");
        assert!(
            models
                .iter()
                .all(|n| n.is_ephemeral() || n.relation().is_some())
        );
        let s = settings(true, true);
        let same = plan(&PlanInputs {
            prod: &m,
            pr: &m,
            pr_run_results: None,
            settings: &s,
        });
        assert!(
            same.models.is_empty(),
            "v{v} against itself: {:?}",
            ids(&same)
        );
        if let Some(prev) = &previous {
            // Across versions dbt's own macros differ, so everything is modified — but it plans.
            let across = plan(&PlanInputs {
                prod: prev,
                pr: &m,
                pr_run_results: None,
                settings: &s,
            });
            assert!(
                across
                    .models
                    .iter()
                    .all(|p| !p.reasons.is_empty() || p.skip_reason.is_some())
            );
        }
        versions.push(v);
        previous = Some(m);
    }
    assert_eq!(versions, [7, 8, 9, 10, 11, 12]);
}

#[test]
fn every_fixture_run_results_v4_to_v6_parses() {
    let dir = dbt_artifacts();
    for (file, v) in [
        ("run_results/dbt-core.results.v4.run_results.json", 4),
        ("run_results/dbt-core.results.v5.run_results.json", 5),
        ("run_results/dbt-core.results.v6.run_results.json", 6),
        ("datafold-data-diff/run_results_run_results_v4.json", 4),
        ("datafold-data-diff/run_results_run_results_v5.json", 5),
    ] {
        let rr = RunResults::load(&dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(rr.schema_version, v, "{file}");
        assert!(!rr.results.is_empty(), "{file}");
        assert!(rr.results.values().all(|r| !r.status.is_empty()), "{file}");
    }
}

#[test]
fn jaffle_shop_datafold_options_and_primary_key_tag_are_read() {
    let path = dbt_artifacts().join("datafold-data-diff/target_manifest.json");
    let m = Manifest::load(&path).unwrap();
    let rr = RunResults::load(&dbt_artifacts().join("datafold-data-diff/target_run_results.json"))
        .unwrap();
    let s = settings(false, false);
    let plan = plan(&PlanInputs {
        prod: &m,
        pr: &m,
        pr_run_results: Some(&rr),
        settings: &s,
    });
    let orders = model(&plan, "model.datafold_demo.orders");
    assert_eq!(orders.options.filter.as_deref(), Some("amount >= 0"));
    assert_eq!(orders.options.exclude_columns, ["new_column"]);
    assert_eq!(orders.options.include_columns.len(), 8);
    let customers = model(&plan, "model.datafold_demo.customers");
    assert_eq!(customers.primary_key, ["customer_id"]);
    assert_eq!(customers.primary_key_source, Some(KeySource::ColumnMeta));
    assert_eq!(
        customers.pr_relation,
        Some(Relation::new(Some("jaffle_shop"), Some("dev"), "customers"))
    );
}

fn expect_error(path: &Path, bytes: &[u8]) -> ArtifactError {
    Manifest::from_slice(bytes, path).expect_err("refused")
}

#[test]
fn bad_input_is_refused_with_the_file_and_the_problem() {
    let run_results = fixtures().join("prod/run_results.json");
    let e = Manifest::load(&run_results).unwrap_err();
    assert!(matches!(e, ArtifactError::WrongKind { .. }));
    assert!(e.to_string().contains("prod/run_results.json"), "{e}");

    let here = Path::new("future/manifest.json");
    let e = expect_error(
        here,
        br#"{"metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v13.json"}}"#,
    );
    assert!(
        matches!(e, ArtifactError::UnsupportedVersion { version: 13, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("future/manifest.json") && e.to_string().contains("v13"));

    let e = expect_error(here, b"{\"nodes\": [");
    assert!(
        matches!(e, ArtifactError::Json { .. }) && e.to_string().contains("future/manifest.json")
    );

    let e = expect_error(here, b"{}");
    assert!(
        e.to_string().contains("no metadata.dbt_schema_version"),
        "{e}"
    );

    let e = Manifest::load(Path::new("/nonexistent/manifest.json")).unwrap_err();
    assert!(matches!(e, ArtifactError::Read { .. }) && e.to_string().contains("/nonexistent"));
}
