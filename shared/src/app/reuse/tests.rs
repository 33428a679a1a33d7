//! The re-use key on hand-made manifests, and the look-up over the embedded store.

use std::path::Path;

use serde_json::{Value, json};

use super::*;
use crate::sql::Relation;

/// `a` (calls `outer` → `inner`) ← `b` ← seed `s` and source `src`; `c` is unrelated.
fn manifest_json() -> Value {
    let node = |id: &str, rtype: &str, sum: &str, deps: Value| {
        let name = id.rsplit('.').next().unwrap();
        json!({
            "unique_id": id, "name": name, "resource_type": rtype,
            "raw_code": format!("select 1 as {name}"),
            "checksum": {"name": "sha256", "checksum": sum},
            "database": "db", "schema": "s", "alias": name,
            "config": {"materialized": "table", "enabled": true},
            "depends_on": deps,
        })
    };
    json!({
        "metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json"},
        "nodes": {
            "model.p.a": node("model.p.a", "model", "aaa", json!({"nodes": ["model.p.b"], "macros": ["macro.p.outer"]})),
            "model.p.b": node("model.p.b", "model", "bbb", json!({"nodes": ["seed.p.s", "source.p.raw.src"], "macros": []})),
            "seed.p.s": node("seed.p.s", "seed", "sss", json!({"nodes": [], "macros": []})),
            "model.p.c": node("model.p.c", "model", "ccc", json!({"nodes": [], "macros": []})),
        },
        "sources": {
            "source.p.raw.src": {"unique_id": "source.p.raw.src", "name": "src", "source_name": "raw",
                                 "database": "db", "schema": "raw", "identifier": "src"},
        },
        "macros": {
            "macro.p.outer": {"macro_sql": "{{ inner() }}", "depends_on": {"macros": ["macro.p.inner"]}},
            "macro.p.inner": {"macro_sql": "1", "depends_on": {"macros": []}},
        },
        "child_map": {},
    })
}

fn parse(v: &Value) -> Manifest {
    Manifest::from_slice(&serde_json::to_vec(v).unwrap(), Path::new("m.json")).unwrap()
}

fn spec() -> DiffSpec {
    DiffSpec::new(
        Relation::parse("analytics.a").unwrap(),
        Relation::parse("dbt_cloud_pr_1_2.a").unwrap(),
        vec!["id".into()],
    )
}

fn key_with(m: &Value, edit: impl FnOnce(&mut KeyInputs<'_>)) -> Option<String> {
    let manifest = parse(m);
    let spec = spec();
    let sampling = Sampling::default();
    let mut inputs = KeyInputs {
        pr_manifest: &manifest,
        unique_id: "model.p.a",
        prod_run_id: Some(500),
        spec: &spec,
        sampling: &sampling,
        data_source: "wh",
    };
    edit(&mut inputs);
    reuse_key(&inputs)
}

fn key_of(m: &Value) -> Option<String> {
    key_with(m, |_| {})
}

#[test]
fn the_same_inputs_give_the_same_key_and_it_is_a_sha256() {
    let k = key_of(&manifest_json()).expect("every input known");
    assert_eq!(k.len(), 64);
    assert!(k.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(key_of(&manifest_json()), Some(k));
}

#[test]
fn every_manifest_input_of_the_model_changes_the_key() {
    let base = key_of(&manifest_json()).unwrap();
    type Edit = Box<dyn Fn(&mut Value)>;
    let edits: Vec<(&str, Edit)> = vec![
        (
            "the model's checksum",
            Box::new(|m| m["nodes"]["model.p.a"]["checksum"]["checksum"] = "a2".into()),
        ),
        (
            "the model's SQL",
            Box::new(|m| m["nodes"]["model.p.a"]["raw_code"] = "select 2".into()),
        ),
        (
            "the model's config",
            Box::new(|m| m["nodes"]["model.p.a"]["config"]["materialized"] = "view".into()),
        ),
        (
            "a direct upstream model",
            Box::new(|m| m["nodes"]["model.p.b"]["checksum"]["checksum"] = "b2".into()),
        ),
        (
            "an upstream seed, two levels up",
            Box::new(|m| m["nodes"]["seed.p.s"]["checksum"]["checksum"] = "s2".into()),
        ),
        (
            "a source read upstream",
            Box::new(|m| m["sources"]["source.p.raw.src"]["identifier"] = "src_v2".into()),
        ),
        (
            "a macro called through another",
            Box::new(|m| m["macros"]["macro.p.inner"]["macro_sql"] = "2".into()),
        ),
        (
            "a new upstream dependency",
            Box::new(|m| {
                m["nodes"]["model.p.a"]["depends_on"]["nodes"] = json!(["model.p.b", "model.p.c"])
            }),
        ),
    ];
    for (what, edit) in edits {
        let mut m = manifest_json();
        edit(&mut m);
        let k = key_of(&m).unwrap_or_else(|| panic!("{what}: still known"));
        assert_ne!(k, base, "{what} must change the key");
    }
}

#[test]
fn every_other_input_changes_the_key() {
    let m = manifest_json();
    let base = key_of(&m).unwrap();
    let mut other = spec();
    other.prod = Relation::parse("analytics.a_v2").unwrap();
    let specs: Vec<(&str, DiffSpec)> = vec![
        ("the production relation", other),
        ("the PR relation", {
            let mut s = spec();
            s.pr = Relation::parse("dbt_cloud_pr_1_3.a").unwrap();
            s
        }),
        ("the keys", {
            let mut s = spec();
            s.primary_key = vec!["id".into(), "day".into()];
            s
        }),
        ("the filter", {
            let mut s = spec();
            s.filter = Some("id > 0".into());
            s
        }),
        ("the columns", {
            let mut s = spec();
            s.exclude_columns = vec!["loaded_at".into()];
            s
        }),
        ("the tolerance", {
            let mut s = spec();
            s.tolerance = vec![(
                "amount".into(),
                crate::diff::Tolerance::new(Some(0.01), None).unwrap(),
            )];
            s
        }),
    ];
    for (what, s) in specs {
        let k = key_with(&m, |i| i.spec = Box::leak(Box::new(s))).unwrap();
        assert_ne!(k, base, "{what} must change the key");
    }
    let k = key_with(&m, |i| i.prod_run_id = Some(501)).unwrap();
    assert_ne!(k, base, "the production run");
    let sampling = Sampling {
        threshold: Some(10),
        ..Sampling::default()
    };
    let k = key_with(&m, |i| i.sampling = Box::leak(Box::new(sampling))).unwrap();
    assert_ne!(k, base, "the sampling");
    let k = key_with(&m, |i| i.data_source = "other").unwrap();
    assert_ne!(k, base, "the data source");
}

#[test]
fn unrelated_nodes_and_the_order_of_dependencies_leave_the_key_alone() {
    let base = key_of(&manifest_json()).unwrap();
    let mut m = manifest_json();
    m["nodes"]["model.p.c"]["checksum"]["checksum"] = "c2".into();
    m["nodes"]["model.p.c"]["raw_code"] = "select 42".into();
    assert_eq!(
        key_of(&m).as_deref(),
        Some(base.as_str()),
        "a model not upstream"
    );
    let mut m = manifest_json();
    m["nodes"]["model.p.b"]["depends_on"]["nodes"] = json!(["source.p.raw.src", "seed.p.s"]);
    assert_eq!(
        key_of(&m).as_deref(),
        Some(base.as_str()),
        "dependency order"
    );
    // A diamond (a → b, a → s, b → s) visits `s` once: the same as listing it once.
    let mut one = manifest_json();
    one["nodes"]["model.p.a"]["depends_on"]["nodes"] = json!(["model.p.b", "seed.p.s"]);
    let mut two = manifest_json();
    two["nodes"]["model.p.a"]["depends_on"]["nodes"] = json!(["seed.p.s", "model.p.b", "seed.p.s"]);
    assert_eq!(key_of(&one), key_of(&two));
}

#[test]
fn an_unknown_input_gives_no_key() {
    let m = manifest_json();
    assert_eq!(
        key_with(&m, |i| i.prod_run_id = None),
        None,
        "no production run"
    );
    assert_eq!(
        key_with(&m, |i| i.unique_id = "model.p.gone"),
        None,
        "no model"
    );
    let mut gone = manifest_json();
    gone["nodes"].as_object_mut().unwrap().remove("seed.p.s");
    assert_eq!(key_of(&gone), None, "an upstream node missing");
    let mut gone = manifest_json();
    gone["macros"]
        .as_object_mut()
        .unwrap()
        .remove("macro.p.inner");
    assert_eq!(key_of(&gone), None, "a macro missing");
    let mut empty = manifest_json();
    empty["nodes"]["model.p.b"]["checksum"]["checksum"] = "".into();
    assert_eq!(key_of(&empty), None, "an empty checksum");
}

#[cfg(feature = "sqlite")]
mod lookup {
    use super::*;
    use crate::config::{CommitSha, ConfigId, Provider, RepoName};
    use crate::diff::DiffResult;
    use crate::run::{FanOut, PrKey, RunId, RunState, StartOutcome, Summary};
    use crate::store::embedded::EmbeddedStore;

    fn sha(c: char) -> CommitSha {
        CommitSha::parse(c.to_string().repeat(40)).unwrap()
    }

    fn pr() -> PrKey {
        PrKey {
            provider: Provider::Github,
            repository: RepoName::parse("acme/shop").unwrap(),
            number: 7,
        }
    }

    fn item(key: Option<&str>) -> WorkItem {
        WorkItem {
            name: "a".into(),
            spec: spec(),
            count: None,
            reuse_key: key.map(str::to_owned),
        }
    }

    fn ok(changed: u64) -> StoredOutcome {
        let mut r = DiffResult::counted(
            &Relation::parse("analytics.a").unwrap(),
            &Relation::parse("pr.a").unwrap(),
            crate::diff::PerSide { prod: 10, pr: 10 },
        );
        r.changed = Some(changed);
        StoredOutcome::Ok(Box::new(r))
    }

    /// Starts a run at `head` and, when `work` is given, fans it out with `results`.
    async fn push(
        store: &EmbeddedStore,
        head: char,
        work: Option<Vec<(&str, Option<&str>)>>,
        results: Vec<(&str, StoredOutcome)>,
        reused: Vec<(&str, Reused)>,
    ) -> CiRun {
        let run = CiRun {
            id: RunId::new(),
            config_id: ConfigId::parse("main").unwrap(),
            pr: pr(),
            head_sha: sha(head),
            base_sha: sha('0'),
            base_branch: "main".into(),
            state: RunState::Received,
            reason: None,
            created_at: 0,
            updated_at: 0,
            on_demand: None,
            remap: Vec::new(),
            previous: None,
        };
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(matches!(
            store.start_run(&run).await.unwrap(),
            StartOutcome::Started { .. }
        ));
        if let Some(work) = work {
            let fanout = FanOut {
                summary: Summary {
                    reused: reused.into_iter().map(|(u, r)| (u.to_owned(), r)).collect(),
                    ..Default::default()
                },
                models: work
                    .into_iter()
                    .map(|(uid, key)| (uid.to_owned(), item(key)))
                    .collect(),
            };
            store.put_fanout(&run.id, &fanout).await.unwrap();
            for (uid, o) in results {
                store.record_result(&run.id, uid, Some(&o)).await.unwrap();
            }
        }
        store.get_run(&run.id).await.unwrap().unwrap()
    }

    #[tokio::test]
    async fn only_a_successful_result_under_the_same_key_is_reused_and_a_chain_keeps_the_first_sha()
    {
        let store = EmbeddedStore::in_memory();
        let work = |k: &'static str| {
            Some(vec![
                ("a", Some("ka")),
                ("b", Some(k)),
                ("e", Some("ke")),
                ("n", None),
            ])
        };
        let r1 = push(
            &store,
            '1',
            work("kb"),
            vec![
                ("a", ok(3)),
                ("b", ok(4)),
                ("e", StoredOutcome::Error("timed out after 840 s".into())),
                ("n", ok(5)),
            ],
            vec![],
        )
        .await;
        // A run superseded before its fan-out is skipped over.
        let r2 = push(&store, '2', None, vec![], vec![]).await;
        assert_eq!(r2.previous.as_ref(), Some(&r1.id));
        let r3 = push(&store, '3', None, vec![], vec![]).await;
        let wanted: Vec<(String, WorkItem)> = [("a", "ka"), ("b", "kb2"), ("e", "ke")]
            .into_iter()
            .map(|(u, k)| (u.to_owned(), item(Some(k))))
            .chain([("n".to_owned(), item(None))])
            .collect();
        let found = find_reusable(&store, &r3, &wanted).await.unwrap();
        // `b`'s key changed, `e` failed, `n` has no key: only `a`.
        assert_eq!(
            found.into_iter().collect::<Vec<_>>(),
            [(
                "a".to_owned(),
                Reused {
                    since: sha('1'),
                    run: r1.id.clone()
                }
            )]
        );
        // Push 4 re-used `a` from push 1: push 5 re-uses it again, still since push 1.
        let r4 = push(
            &store,
            '4',
            Some(vec![("a", Some("ka"))]),
            vec![("a", ok(3))],
            vec![(
                "a",
                Reused {
                    since: sha('1'),
                    run: r1.id.clone(),
                },
            )],
        )
        .await;
        let r5 = push(&store, '5', None, vec![], vec![]).await;
        let found = find_reusable(&store, &r5, &[("a".to_owned(), item(Some("ka")))])
            .await
            .unwrap();
        assert_eq!(found["a"].since, sha('1'));
        assert_eq!(found["a"].run, r4.id);
        assert_eq!(lent_outcome(&store, "a", &found["a"]).await.unwrap(), ok(3));
        // The newest run with a result decides: a later failure is not skipped over.
        let _r6 = push(
            &store,
            '6',
            Some(vec![("a", Some("ka"))]),
            vec![("a", StoredOutcome::Error("relation does not exist".into()))],
            vec![],
        )
        .await;
        let r7 = push(&store, '7', None, vec![], vec![]).await;
        let found = find_reusable(&store, &r7, &[("a".to_owned(), item(Some("ka")))])
            .await
            .unwrap();
        assert!(found.is_empty(), "{found:?}");
        // A lent result that is gone becomes an error, never a gap.
        let gone = Reused {
            since: sha('1'),
            run: RunId::new(),
        };
        assert!(matches!(
            lent_outcome(&store, "a", &gone).await.unwrap(),
            StoredOutcome::Error(e) if e.contains("no longer stored")
        ));
    }
}
