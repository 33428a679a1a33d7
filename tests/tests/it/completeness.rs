//! What a report must say beyond the counts of an ordinary model, on PostgreSQL (the test
//! cluster) and SQLite where the case exists there: columns without an equality operator,
//! wide models, sampled diffs with duplicate keys.

use prdiff_shared::diff::{self, DiffRequest, DiffResult};
use prdiff_shared::sql::Relation;
use prdiff_shared::warehouse::{self, ConnectOptions, Warehouse, WarehouseUrl};

/// Fresh prod and PR schemas on the test cluster, loaded with `prod_sql` and `pr_sql`.
pub async fn pg_loaded(prod_sql: &str, pr_sql: &str) -> (Box<dyn Warehouse>, String, String) {
    let client = prdiff_tests::pg_client().await;
    let (prod, pr) = (
        prdiff_tests::unique_name("prod"),
        prdiff_tests::unique_name("pr"),
    );
    for (schema, sql) in [(&prod, prod_sql), (&pr, pr_sql)] {
        client
            .batch_execute(&format!(
                "CREATE SCHEMA \"{schema}\"; SET search_path TO \"{schema}\"; {sql}"
            ))
            .await
            .unwrap_or_else(|e| panic!("loading {schema}: {e}"));
    }
    let url = WarehouseUrl::parse(&prdiff_tests::pg_url(), None).unwrap();
    let wh = warehouse::connect(&url, &ConnectOptions::default())
        .await
        .unwrap();
    (wh, prod, pr)
}

fn request(prod: &str, pr: &str, table: &str, key: &[&str]) -> DiffRequest {
    DiffRequest::new(
        Relation::new(None, Some(prod), table),
        Relation::new(None, Some(pr), table),
        key.iter().map(|k| k.to_string()).collect(),
    )
}

fn changed_of(r: &DiffResult, col: &str) -> Option<u64> {
    r.columns.iter().find(|c| c.name == col)?.changed
}

#[tokio::test]
async fn columns_without_an_equality_operator_are_compared_as_canonical_text() {
    let table =
        "CREATE TABLE t (id integer PRIMARY KEY, j json, x xml, pt point, b box, js jsonb);";
    let prod = format!(
        "{table} INSERT INTO t VALUES
         (1, '{{\"a\": 1, \"b\": 2}}', '<a/>', '(1,2)', '(1,1),(0,0)', '{{\"k\": 1}}'),
         (2, '{{\"a\": 1}}', '<b/>', '(0,0)', '(2,2),(0,0)', '{{\"k\": 1}}'),
         (3, NULL, NULL, NULL, NULL, NULL);"
    );
    // Row 1: the same values written differently (key order, white space); row 2: every
    // column changed; row 3: NULL on both sides.
    let pr = format!(
        "{table} INSERT INTO t VALUES
         (1, '{{\"b\":2,\"a\":1}}', '<a/>', '(1,2)', '(1,1),(0,0)', '{{\"k\":1}}'),
         (2, '{{\"a\": 2}}', '<c/>', '(1,1)', '(3,3),(0,0)', '{{\"k\": 2}}'),
         (3, NULL, NULL, NULL, NULL, NULL);"
    );
    let (wh, p, q) = pg_loaded(&prod, &pr).await;
    for filter in [None, Some("id > 0")] {
        let mut req = request(&p, &q, "t", &["id"]);
        req.filter = filter.map(str::to_owned);
        let r = diff::diff(wh.as_ref(), &req)
            .await
            .unwrap_or_else(|e| panic!("{filter:?}: {}", prdiff_shared::error_chain(&e)));
        assert_eq!(r.matched, Some(3), "{filter:?}");
        assert_eq!(r.changed, Some(1), "{filter:?}");
        for col in ["j", "x", "pt", "b", "js"] {
            assert_eq!(changed_of(&r, col), Some(1), "{filter:?}: {col}");
        }
        let sample = r.samples.iter().find(|s| s.kind == "changed").unwrap();
        let j = sample.values.iter().find(|v| v.column == "j").unwrap();
        assert_eq!(j.pr.as_deref(), Some("{\"a\": 2}"), "{filter:?}");
    }
    // Sampled too: the hash and the windowed pass see the same text.
    let mut req = request(&p, &q, "t", &["id"]);
    req.sampling = Some(prdiff_shared::diff::SamplingSettings::new(1, 0.5, 0.5).unwrap());
    let r = diff::diff(wh.as_ref(), &req).await.unwrap();
    assert!(r.changed.is_some());
}

/// The same tables in SQLite (attached files named like the schemas).
fn sqlite_loaded(
    prod_sql: &str,
    pr_sql: &str,
) -> (Box<dyn Warehouse>, String, String, tempfile::TempDir) {
    use prdiff_shared::warehouse::sqlite::{SqliteWarehouse, run_script};
    let dir = tempfile::tempdir().unwrap();
    let (p, q) = (dir.path().join("prod.db"), dir.path().join("pr.db"));
    run_script(&p, prod_sql).expect("load SQLite prod");
    run_script(&q, pr_sql).expect("load SQLite PR");
    let url = WarehouseUrl::Sqlite {
        path: dir.path().join("main.db"),
        attach: vec![("prod".to_owned(), p), ("pr".to_owned(), q)],
    };
    let wh = SqliteWarehouse::open(&url, &ConnectOptions::default()).unwrap();
    (Box::new(wh), "prod".into(), "pr".into(), dir)
}

/// Every row of each side is in exactly one part of the result.
fn assert_parts_add_up(what: &str, r: &DiffResult) {
    let e = r.exclusive.unwrap();
    let m = r.matched.unwrap();
    let i = r.primary_key_issues;
    assert_eq!(
        i.prod.nulls + i.prod.duplicates + i.prod.unmatchable + e.prod + m,
        r.rows.prod,
        "{what}: prod parts add up ({r:?})"
    );
    assert_eq!(
        i.pr.nulls + i.pr.duplicates + i.pr.unmatchable + e.pr + m,
        r.rows.pr,
        "{what}: PR parts add up ({r:?})"
    );
    assert_eq!(r.changed.unwrap() + r.unchanged.unwrap(), m, "{what}");
}

const SERIES: &str =
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20500)";

#[tokio::test]
async fn a_sampled_diff_with_duplicate_pr_keys_adds_up_on_both_sides_and_says_so() {
    // Prod: keys 1–20 000. PR: keys 1–19 000 (every tenth changed), every twentieth key
    // twice, and keys 20 001–20 500 new.
    let prod = format!(
        "CREATE TABLE s (id integer, v integer); INSERT INTO s {SERIES} SELECT i, i % 7 FROM n WHERE i <= 20000;"
    );
    let pr = format!(
        "CREATE TABLE s (id integer, v integer);
         INSERT INTO s {SERIES} SELECT i, CASE WHEN i % 10 = 0 THEN i % 7 + 1 ELSE i % 7 END FROM n WHERE i <= 19000 OR i > 20000;
         INSERT INTO s {SERIES} SELECT i, i % 7 FROM n WHERE i % 20 = 0 AND i <= 19000;"
    );
    let (pg, p, q) = pg_loaded(&prod, &pr).await;
    let (lite, lp, lq, _dir) = sqlite_loaded(&prod, &pr);
    for (kind, wh, p, q) in [("postgres", pg, p, q), ("sqlite", lite, lp, lq)] {
        for seed in [1u64, 2, 3] {
            let mut req = request(&p, &q, "s", &["id"]);
            req.sampling =
                Some(prdiff_shared::diff::SamplingSettings::new(1_000, 0.02, 0.9).unwrap());
            req.seed = seed;
            req.pilot_rows = 1_000;
            let r = diff::diff(wh.as_ref(), &req).await.unwrap();
            let what = format!("{kind}, seed {seed}");
            assert!(r.sampled.is_some(), "{what}: sampled");
            assert_eq!(r.rows.prod, 20_000, "{what}");
            assert_eq!(r.rows.pr, 19_500 + 950, "{what}");
            assert_parts_add_up(&what, &r);
            assert!(r.primary_key_issues.pr.duplicates > 0, "{what}: {r:?}");
            assert!(
                r.notes
                    .iter()
                    .any(|n| n.starts_with("duplicate keys (estimated from the sample)")),
                "{what}: {:?}",
                r.notes
            );
        }
    }
}

/// A table of `id` and `width` integer columns `c1`…, ids 1–10, with `edits` applied
/// (`(id, column, value)`) and `extra` rows appended.
fn wide_table(width: usize, edits: &[(i64, usize, i64)], extra: &[i64]) -> String {
    let cols: Vec<String> = (1..=width).map(|c| format!("c{c} integer")).collect();
    let mut sql = format!("CREATE TABLE w (id integer, {});\n", cols.join(", "));
    for id in (1..=10).chain(extra.iter().copied()) {
        let values: Vec<String> = (1..=width)
            .map(|c| {
                edits
                    .iter()
                    .find(|(i, col, _)| *i == id && *col == c)
                    .map_or(id * 1000 + c as i64, |(_, _, v)| *v)
                    .to_string()
            })
            .collect();
        sql.push_str(&format!(
            "INSERT INTO w VALUES ({id}, {});\n",
            values.join(", ")
        ));
    }
    sql
}

#[tokio::test]
async fn a_model_wider_than_a_select_list_is_diffed_in_column_groups() {
    let width = 950;
    let prod = wide_table(width, &[], &[]);
    // Row 3: c10 and c850 changed; row 7: c5. Key 10 twice in the PR (a duplicate).
    let pr = wide_table(width, &[(3, 10, -1), (3, 850, -1), (7, 5, -1)], &[10]);
    let (pg, p, q) = pg_loaded(&prod, &pr).await;
    let (lite, lp, lq, _dir) = sqlite_loaded(&prod, &pr);
    for (kind, wh, p, q) in [("postgres", pg, p, q), ("sqlite", lite, lp, lq)] {
        let limit = wh.dialect().max_reported_columns().unwrap();
        assert!(width > limit, "{kind}: the case needs more than one group");
        let r = diff::diff(wh.as_ref(), &request(&p, &q, "w", &["id"]))
            .await
            .unwrap_or_else(|e| panic!("{kind}: {}", prdiff_shared::error_chain(&e)));
        assert_eq!(r.columns.len(), width, "{kind}");
        assert_eq!(r.matched, Some(9), "{kind}");
        assert_eq!(r.changed, Some(2), "{kind}: rows with any column changed");
        for c in 1..=width {
            let expected = u64::from(matches!(c, 5 | 10 | 850));
            assert_eq!(
                changed_of(&r, &format!("c{c}")),
                Some(expected),
                "{kind}: c{c}"
            );
        }
        assert_eq!(r.primary_key_issues.pr.duplicates, 2, "{kind}");
        assert_parts_add_up(kind, &r);
        let changed: Vec<_> = r.samples.iter().filter(|s| s.kind == "changed").collect();
        assert_eq!(changed.len(), 2, "{kind}: {:?}", r.samples);
        let row3 = changed
            .iter()
            .find(|s| s.key["id"].as_deref() == Some("3"))
            .unwrap();
        let cols: Vec<&str> = row3.values.iter().map(|v| v.column.as_str()).collect();
        assert_eq!(cols, ["c10", "c850"], "{kind}");
    }
}

#[tokio::test]
async fn new_and_removed_models_are_counted_on_their_one_side() {
    use prdiff_shared::app::fanout::{CountSide, WorkItem};
    let prod = "CREATE TABLE gone (id integer); INSERT INTO gone VALUES (1), (2), (3);";
    let pr =
        "CREATE TABLE fresh (id integer, v text); INSERT INTO fresh VALUES (1, 'a'), (2, 'b');";
    let (pg, p, q) = pg_loaded(prod, pr).await;
    let (lite, lp, lq, _dir) = sqlite_loaded(prod, pr);
    for (kind, wh, p, q) in [("postgres", pg, p, q), ("sqlite", lite, lp, lq)] {
        let item = |rel: Relation, side| WorkItem {
            name: "m".into(),
            spec: prdiff_shared::diff::DiffSpec::new(rel.clone(), rel, Vec::new()),
            count: Some(side),
            reuse_key: None,
        };
        let fresh = Relation::new(None, Some(&q), "fresh");
        let r = prdiff_shared::app::diff_run::count_work(
            wh.as_ref(),
            &item(fresh, CountSide::Pr),
            CountSide::Pr,
        )
        .await
        .unwrap();
        assert_eq!((r.rows.prod, r.rows.pr), (0, 2), "{kind}: new model");
        let gone = Relation::new(None, Some(&p), "gone");
        let r = prdiff_shared::app::diff_run::count_work(
            wh.as_ref(),
            &item(gone, CountSide::Prod),
            CountSide::Prod,
        )
        .await
        .unwrap();
        assert_eq!((r.rows.prod, r.rows.pr), (3, 0), "{kind}: removed model");
        let missing = Relation::new(None, Some(&q), "nowhere");
        let e = prdiff_shared::app::diff_run::count_work(
            wh.as_ref(),
            &item(missing, CountSide::Pr),
            CountSide::Pr,
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{kind}: {e}");
    }
}
