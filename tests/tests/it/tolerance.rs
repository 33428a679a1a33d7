//! Per-column numeric tolerance on every engine the engine tests run on (PostgreSQL
//! plain, over TLS and as Redshift; SQLite; Snowflake on fakesnow; BigQuery on
//! bqemulator): designed values on each side of each bound.

use prdiff_shared::diff::Tolerance;

use crate::engine::{changed_of, load, run};

const COLUMNS: &str = "id integer, a double precision, big double precision, i integer, n numeric(10,2), p double precision";

/// Row by row, what each column holds and whether it is within its bound:
/// - `a` (±0.01): 0.1 + 0.2 vs 0.3 (within), 1.0 vs 1.0101 (just above), 2.0 vs 2.0099
///   (just below), NULL vs 5 (a change), NULL vs NULL.
/// - `big` (±0.001 relative): 1 000 000 vs 1 000 900 (within), vs 1 001 100 (above),
///   −2 000 000 vs −2 001 000 (within, negative), 0 vs 1e-7 (above: nothing is relative to 0).
/// - `i` (±1, an integer): 10 vs 11, 10 vs 12, 5 vs 5, NULL vs 3, 7 vs NULL.
/// - `n` (±0.05, a decimal): 1.00 vs 1.04, 1.00 vs 1.06, NULL vs NULL, −1.00 vs −1.03.
/// - `p` (±0.005 or ±0.0001 relative): 100 vs 100.009 (relative only), 0.1 vs 0.104
///   (absolute only), 0.1 vs 0.106 (neither), NULL vs 0.
///
/// Key 6 is duplicated in prod: the diff takes the windowed pass, which must apply the
/// same bounds (and never matches key 6).
fn tables() -> (String, String) {
    let prod = format!(
        "CREATE TABLE t ({COLUMNS});
        INSERT INTO t VALUES (1, 0.30000000000000004, 1000000, 10, 1.00, 100),
                             (2, 1.0, 1000000, 10, 1.00, 0.1),
                             (3, 2.0, -2000000, 5, NULL, 0.1),
                             (4, NULL, 0, NULL, -1.00, 5),
                             (5, NULL, NULL, 7, 2.00, NULL),
                             (6, 1, 1, 1, 1, 1), (6, 2, 2, 2, 2, 2);"
    );
    let pr = format!(
        "CREATE TABLE t ({COLUMNS});
        INSERT INTO t VALUES (1, 0.3, 1000900, 11, 1.04, 100.009),
                             (2, 1.0101, 1001100, 12, 1.06, 0.104),
                             (3, 2.0099, -2001000, 5, NULL, 0.106),
                             (4, 5.0, 0.0000001, 3, -1.03, 5),
                             (5, NULL, NULL, NULL, 2.00, 0),
                             (6, 9, 9, 9, 9, 9);"
    );
    (prod, pr)
}

#[tokio::test]
async fn values_within_a_bound_are_unchanged_and_values_beyond_it_are_changed() {
    let (prod, pr) = tables();
    let bounds = [
        ("a", Tolerance::new(Some(0.01), None)),
        ("big", Tolerance::new(None, Some(0.001))),
        ("i", Tolerance::new(Some(1.0), None)),
        ("n", Tolerance::new(Some(0.05), None)),
        ("p", Tolerance::new(Some(0.005), Some(0.0001))),
    ];
    let cols = ["a", "big", "i", "n", "p"];
    for l in load(&prod, &pr).await {
        let k = l.kind;
        let exact = run(&l, &l.request("t", &["id"])).await;
        let got: Vec<u64> = cols.iter().map(|c| changed_of(&exact, c)).collect();
        assert_eq!(got, [4, 4, 4, 3, 4], "{k}: compared exactly");
        assert_eq!(exact.changed, Some(5), "{k}");
        assert!(exact.columns.iter().all(|c| c.tolerance.is_none()), "{k}");

        let mut req = l.request("t", &["id"]);
        req.tolerance = bounds
            .iter()
            .map(|(c, t)| (c.to_string(), t.clone().expect("valid bounds")))
            .collect();
        let plain = {
            let mut q = req.clone();
            q.filter = Some("id < 6".into());
            run(&l, &q).await
        };
        let windowed = run(&l, &req).await;
        assert_eq!(
            windowed.primary_key_issues.prod.duplicates, 2,
            "{k}: windowed"
        );
        assert_eq!(plain.primary_key_issues.prod.duplicates, 0, "{k}: plain");
        for (pass, r) in [("plain", &plain), ("windowed", &windowed)] {
            let got: Vec<u64> = cols.iter().map(|c| changed_of(r, c)).collect();
            // a: 1.0101 and NULL vs 5; big: 1 001 100 and 0 vs 1e-7; i: 12, NULL vs 3 and
            // 7 vs NULL; n: 1.06; p: 0.106 and NULL vs 0.
            assert_eq!(got, [2, 2, 3, 1, 2], "{k} {pass}: with tolerance");
            assert_eq!(
                r.changed,
                Some(4),
                "{k} {pass}: only row 1 is within every bound"
            );
            assert_eq!(r.unchanged, Some(1), "{k} {pass}");
            let a = r.columns.iter().find(|c| c.name == "a").unwrap();
            assert_eq!(
                a.tolerance.map(|t| t.label()).as_deref(),
                Some("±0.01"),
                "{k}"
            );
            assert!(
                r.notes.iter().all(|n| !n.contains("tolerance")),
                "{k}: {:?}",
                r.notes
            );
        }
    }
}
