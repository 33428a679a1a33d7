//! What a pull request controls cannot write to the warehouse, change prdiff's session or
//! outlive a timeout. Every test runs on the PostgreSQL test cluster as a role without
//! superuser rights, holding only what the docs grant plus the worst extras an operator
//! might leave (USAGE on a sequence).

use std::time::{Duration, Instant};

use prdiff_shared::diff::{self, DiffError, DiffRequest};
use prdiff_shared::sql::Relation;
use prdiff_shared::warehouse::{self, ConnectOptions, Warehouse, WarehouseError, WarehouseUrl};

/// A login role with USAGE on one schema, SELECT on its tables and USAGE on its sequence;
/// the schema holds `t` (prod) and `t_pr` (the PR side) and the sequence `s`.
struct Fixture {
    role: String,
    schema: String,
}

impl Fixture {
    async fn new() -> Self {
        let role = prdiff_tests::unique_name("prdiff_ro");
        let schema = prdiff_tests::unique_name("sec");
        let admin = prdiff_tests::pg_client().await;
        admin
            .batch_execute(&format!(
                "CREATE ROLE {role} LOGIN;
                 CREATE SCHEMA {schema};
                 CREATE TABLE {schema}.t (id int PRIMARY KEY, v text);
                 INSERT INTO {schema}.t SELECT g, 'v' || g FROM generate_series(1, 200) g;
                 CREATE TABLE {schema}.t_pr AS SELECT * FROM {schema}.t;
                 UPDATE {schema}.t_pr SET v = 'changed' WHERE id <= 3;
                 CREATE SEQUENCE {schema}.s;
                 GRANT USAGE ON SCHEMA {schema} TO {role};
                 GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role};
                 GRANT USAGE ON SEQUENCE {schema}.s TO {role};"
            ))
            .await
            .expect("create the read-only role and its schema");
        Fixture { role, schema }
    }

    /// The test cluster's URL with this role as the user.
    fn url(&self) -> WarehouseUrl {
        let mut url = url::Url::parse(&prdiff_tests::pg_url()).unwrap();
        url.set_username(&self.role).unwrap();
        url.set_password(None).unwrap();
        WarehouseUrl::parse(url.as_str(), None).unwrap()
    }

    async fn connect(&self, timeout: Duration) -> Box<dyn Warehouse> {
        warehouse::connect(
            &self.url(),
            &ConnectOptions {
                statement_timeout: timeout,
            },
        )
        .await
        .expect("connect as the read-only role")
    }

    fn request(&self, filter: &str) -> DiffRequest {
        let mut req = DiffRequest::new(
            Relation::new(None, Some(&self.schema), "t"),
            Relation::new(None, Some(&self.schema), "t_pr"),
            vec!["id".into()],
        );
        req.filter = Some(filter.to_owned());
        req
    }

    /// (the sequence's last value, large objects in the database).
    async fn footprint(&self) -> (i64, i64) {
        let admin = prdiff_tests::pg_client().await;
        let row = admin
            .query_one(
                &format!(
                    "SELECT (SELECT last_value FROM {}.s), (SELECT count(*) FROM pg_largeobject_metadata)",
                    self.schema
                ),
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    }

    /// prdiff's statements of this role still running on the server.
    async fn running(&self) -> i64 {
        let admin = prdiff_tests::pg_client().await;
        admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE usename = $1 AND application_name = 'prdiff' AND state = 'active'",
                &[&self.role],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// Waits (at most `within`) until none of this role's statements runs; returns how
    /// many still ran at the end.
    async fn settle(&self, within: Duration) -> i64 {
        let until = Instant::now() + within;
        loop {
            let n = self.running().await;
            if n == 0 || Instant::now() > until {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn filters_that_write_or_change_the_session_are_refused_before_any_query() {
    let f = Fixture::new().await;
    let before = f.footprint().await;
    let wh = f.connect(Duration::from_secs(10)).await;
    let s = &f.schema;
    for filter in [
        "lo_from_bytea(0, 'x'::bytea) > 0".to_owned(),
        "set_config('default_transaction_read_only', 'off', false) = 'off'".to_owned(),
        "set_config('statement_timeout', '0', false) IS NOT NULL".to_owned(),
        format!("nextval('{s}.s') > 0"),
        "pg_sleep(30) IS NULL".to_owned(),
        format!("id IN (SELECT id FROM {s}.t WHERE v = 'v1')"),
        format!("EXISTS (SELECT 1 FROM {s}.t)"),
    ] {
        let err = diff::diff(wh.as_ref(), &f.request(&filter))
            .await
            .expect_err(&filter);
        assert!(
            matches!(err, DiffError::UnsafeFilter(_)),
            "{filter}: {err:?}"
        );
        assert!(err.is_input_error());
        assert!(err.to_string().starts_with("unsafe filter: "), "{err}");
    }
    // A safe filter still diffs, on the same connections.
    let r = diff::diff(wh.as_ref(), &f.request("id <= 100 AND v LIKE 'v%'"))
        .await
        .unwrap();
    assert_eq!(r.rows.prod, 100);
    assert_eq!(
        f.footprint().await,
        before,
        "sequence and large objects unchanged"
    );
}

#[tokio::test]
async fn a_statement_cannot_write_or_change_what_later_statements_run_under() {
    // The driver's own defences, with the filter check out of the way: raw statements
    // through the warehouse port, as a broken check would send them.
    let f = Fixture::new().await;
    let before = f.footprint().await;
    let wh = f.connect(Duration::from_secs(2)).await;
    let s = &f.schema;

    // Writes in the statement itself: refused, or rolled back with its transaction.
    let lo = wh.query("SELECT lo_from_bytea(0, 'x'::bytea)").await;
    let next = wh.query(&format!("SELECT nextval('{s}.s')")).await;
    assert!(
        matches!(next, Err(WarehouseError::Rejected { .. })),
        "nextval in a read-only transaction: {next:?}"
    );
    // Session changes do not outlive the statement that made them. One connection in
    // turn: every statement below runs on a connection that ran the ones before.
    for _ in 0..3 {
        wh.query("SELECT set_config('default_transaction_read_only', 'off', false)")
            .await
            .unwrap();
        wh.query("SELECT set_config('transaction_read_only', 'off', false)")
            .await
            .ok();
        wh.query("SELECT set_config('statement_timeout', '0', false)")
            .await
            .unwrap();
    }
    let next = wh.query(&format!("SELECT nextval('{s}.s')")).await;
    assert!(
        matches!(next, Err(WarehouseError::Rejected { .. })),
        "still read-only after set_config: {next:?}"
    );
    let lo_after = wh.query("SELECT lo_from_bytea(0, 'y'::bytea)").await;
    assert_eq!(
        f.footprint().await,
        before,
        "sequence and large objects unchanged (lo: {lo:?}, {lo_after:?})"
    );

    // The statement timeout still holds after a statement tried to turn it off.
    let started = Instant::now();
    let slept = wh.query("SELECT pg_sleep(20)").await;
    assert!(
        matches!(slept, Err(WarehouseError::Timeout(_))),
        "{slept:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the 2 s timeout held (took {:?})",
        started.elapsed()
    );
    assert_eq!(f.settle(Duration::from_secs(3)).await, 0);
}

#[tokio::test]
async fn a_caller_that_stops_waiting_leaves_nothing_running_on_the_server() {
    let f = Fixture::new().await;
    let wh = f.connect(Duration::from_secs(60)).await;
    // The caller (e.g. serve's per-model deadline) gives up after 1 s; the statement
    // would run for 30.
    let gave_up =
        tokio::time::timeout(Duration::from_secs(1), wh.query("SELECT pg_sleep(30)")).await;
    assert!(gave_up.is_err());
    assert_eq!(
        f.settle(Duration::from_secs(3)).await,
        0,
        "the statement was cancelled on the server"
    );
    // The warehouse stays usable.
    assert_eq!(
        wh.query("SELECT 1").await.unwrap(),
        vec![vec![Some("1".to_owned())]]
    );
}

#[tokio::test]
async fn error_texts_carry_the_class_and_message_but_no_row_values() {
    let f = Fixture::new().await;
    let wh = f.connect(Duration::from_secs(10)).await;
    // A value from a row inside the message: `invalid input syntax for type integer: "v1"`.
    let err = wh
        .query(&format!("SELECT CAST(v AS integer) FROM {}.t", f.schema))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("data exception [SQLSTATE 22P02]"), "{text}");
    assert!(!text.contains("v1"), "a row value leaked: {text}");
    // Through the diff: a cast in the filter that fails on the data.
    let err = diff::diff(wh.as_ref(), &f.request("CAST(v AS integer) > 0"))
        .await
        .unwrap_err();
    assert!(err.is_input_error(), "{err:?}");
    assert!(!err.to_string().contains("\"v1"), "{err}");
}
