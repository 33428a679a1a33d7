//! The bytes a diff will scan, estimated before it runs (BigQuery's dry runs), and the
//! data source's limit on billed bytes checked against each estimate: a statement over the
//! limit would be refused by the warehouse after the others had run and billed.
//!
//! What is estimated is the diff's main work: both sides' row counts and the join (each
//! column group's, for a model wider than one select list), or, without a key, both
//! sides' profiles. A windowed rerun for duplicated keys or examples read by key add to it.

use super::DiffError;
use super::exact::exact_kind;
use super::query::{ComparePlan, Side};
use crate::warehouse::Warehouse;

/// The statements whose dry runs make up the estimate.
fn statements(wh: &dyn Warehouse, plan: &ComparePlan) -> Vec<String> {
    let d = wh.dialect();
    if plan.key.is_empty() {
        return vec![
            plan.profile_query(d, Side::Prod),
            plan.profile_query(d, Side::Pr),
        ];
    }
    let mut out = vec![
        plan.count_query(d, Side::Prod),
        plan.count_query(d, Side::Pr),
    ];
    let kind = exact_kind(wh, plan);
    match plan.column_groups(d.max_reported_columns()) {
        Some(groups) => out.extend(groups.iter().map(|g| g.join_query(d, kind, None))),
        None => out.push(plan.join_query(d, kind, None)),
    }
    out
}

/// The sum of the statements' estimates, `None` when the warehouse gives none. Fails
/// with [`DiffError::OverBytesLimit`] when a statement's estimate is over the warehouse's
/// [`Warehouse::bytes_limit`], and with the warehouse's error when a dry run fails (it
/// checks the statement as the real run would).
pub(super) async fn scan_estimate(
    wh: &dyn Warehouse,
    plan: &ComparePlan,
) -> Result<Option<u64>, DiffError> {
    let statements = statements(wh, plan);
    // All at once: dry runs are quick and free.
    let estimates =
        futures::future::join_all(statements.iter().map(|sql| wh.estimate_bytes(sql))).await;
    let limit = wh.bytes_limit();
    let mut total: u64 = 0;
    for e in estimates {
        let Some(bytes) = e else {
            return Ok(None);
        };
        let bytes = bytes?;
        if let Some(limit) = limit.filter(|l| bytes > *l) {
            return Err(DiffError::OverBytesLimit {
                estimate: bytes,
                limit,
            });
        }
        total = total.saturating_add(bytes);
    }
    tracing::debug!(
        bytes = total,
        statements = statements.len(),
        "scan estimate"
    );
    Ok(Some(total))
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;

    use crate::diff::{DiffError, DiffRequest, diff};
    use crate::sql::{Dialect, Relation};
    use crate::warehouse::sqlite::{SqliteWarehouse, run_script};
    use crate::warehouse::{ConnectOptions, Row, Warehouse, WarehouseError, WarehouseUrl};

    /// SQLite that estimates every statement at 1,000 bytes per 100 characters and
    /// records what it estimated and what it ran.
    struct Estimating {
        inner: SqliteWarehouse,
        limit: Option<u64>,
        estimated: Mutex<Vec<String>>,
        ran: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl Warehouse for Estimating {
        fn dialect(&self) -> &'static dyn Dialect {
            self.inner.dialect()
        }
        async fn query(&self, sql: &str) -> Result<Vec<Row>, WarehouseError> {
            self.ran.lock().unwrap().push(sql.to_owned());
            self.inner.query(sql).await
        }
        async fn estimate_bytes(&self, sql: &str) -> Option<Result<u64, WarehouseError>> {
            self.estimated.lock().unwrap().push(sql.to_owned());
            Some(Ok(bytes_of(sql)))
        }
        fn bytes_limit(&self) -> Option<u64> {
            self.limit
        }
    }

    fn bytes_of(sql: &str) -> u64 {
        (sql.len() as u64).div_ceil(100) * 1000
    }

    fn warehouse(dir: &std::path::Path, limit: Option<u64>) -> Estimating {
        let path = dir.join("w.db");
        run_script(
            &path,
            "CREATE TABLE a (id integer, v text); INSERT INTO a VALUES (1, 'x'), (2, 'y');
             CREATE TABLE b (id integer, v text); INSERT INTO b VALUES (1, 'x'), (2, 'z'), (3, 'w');",
        )
        .unwrap();
        let url = WarehouseUrl::Sqlite {
            path,
            attach: Vec::new(),
        };
        Estimating {
            inner: SqliteWarehouse::open(&url, &ConnectOptions::default()).unwrap(),
            limit,
            estimated: Mutex::default(),
            ran: Mutex::default(),
        }
    }

    fn request(key: &[&str]) -> DiffRequest {
        DiffRequest::new(
            Relation::new(None, None, "a"),
            Relation::new(None, None, "b"),
            key.iter().map(|k| k.to_string()).collect(),
        )
    }

    #[tokio::test]
    async fn the_estimate_is_the_sum_of_the_counts_and_the_join_and_reaches_the_result() {
        let dir = tempfile::tempdir().unwrap();
        let wh = warehouse(dir.path(), Some(1_000_000));
        let r = diff(&wh, &request(&["id"])).await.unwrap();
        assert_eq!(r.changed, Some(1));
        let estimated = wh.estimated.lock().unwrap().clone();
        // Both counts and the join.
        assert_eq!(estimated.len(), 3, "{estimated:#?}");
        assert!(
            estimated.iter().any(|s| s.contains("JOIN")),
            "{estimated:#?}"
        );
        let sum: u64 = estimated.iter().map(|s| bytes_of(s)).sum();
        assert_eq!(r.bytes_estimate, Some(sum));
        // The statements estimated are the ones that then ran.
        let ran = wh.ran.lock().unwrap().clone();
        for s in &estimated {
            assert!(ran.contains(s), "estimated but not run: {s}");
        }
        // The estimate is stored with the result and read back; older results without
        // it still load.
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["bytes_estimate"], serde_json::json!(sum));
        let mut old = json.clone();
        old.as_object_mut().unwrap().remove("bytes_estimate");
        let back: crate::diff::DiffResult = serde_json::from_value(old).unwrap();
        assert_eq!(back.bytes_estimate, None);

        // Without a key: both profiles.
        let wh = warehouse(tempfile::tempdir().unwrap().path(), None);
        let r = diff(&wh, &request(&[])).await.unwrap();
        let estimated = wh.estimated.lock().unwrap().clone();
        assert_eq!(estimated.len(), 2, "{estimated:#?}");
        assert_eq!(
            r.bytes_estimate,
            Some(estimated.iter().map(|s| bytes_of(s)).sum())
        );
    }

    #[tokio::test]
    async fn a_statement_over_the_limit_fails_the_model_before_anything_runs() {
        let dir = tempfile::tempdir().unwrap();
        let wh = warehouse(dir.path(), Some(1_000));
        let e = diff(&wh, &request(&["id"])).await.unwrap_err();
        let DiffError::OverBytesLimit { estimate, limit } = e else {
            panic!("{e}")
        };
        assert_eq!(limit, 1_000);
        assert!(estimate > limit);
        assert!(e_text(estimate, limit).contains("(1,000 bytes)"));
        assert!(DiffError::OverBytesLimit { estimate, limit }.is_input_error());
        let estimated = wh.estimated.lock().unwrap().clone();
        let ran = wh.ran.lock().unwrap().clone();
        for s in &estimated {
            assert!(!ran.contains(s), "ran although over the limit: {s}");
        }
    }

    fn e_text(estimate: u64, limit: u64) -> String {
        DiffError::OverBytesLimit { estimate, limit }.to_string()
    }

    #[tokio::test]
    async fn a_warehouse_without_estimates_has_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        run_script(
            &path,
            "CREATE TABLE a (id integer); CREATE TABLE b (id integer);",
        )
        .unwrap();
        let wh = SqliteWarehouse::open(
            &WarehouseUrl::Sqlite {
                path,
                attach: Vec::new(),
            },
            &ConnectOptions::default(),
        )
        .unwrap();
        let r = diff(&wh, &request(&["id"])).await.unwrap();
        assert_eq!(r.bytes_estimate, None);
        assert!(
            !serde_json::to_string(&r)
                .unwrap()
                .contains("bytes_estimate")
        );
    }
}
