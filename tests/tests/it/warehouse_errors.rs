//! The warehouse's own errors on PostgreSQL (the test cluster): class, SQLSTATE and
//! message reach prdiff's error text, and authentication and permission errors are
//! permanent (not retried).

use prdiff_shared::diff::{self, DiffRequest};
use prdiff_shared::sql::Relation;
use prdiff_shared::warehouse::{self, ConnectOptions, WarehouseError, WarehouseUrl};
use prdiff_tests::{pg_client, pg_schema, pg_url, unique_name};

fn url_as(user: &str) -> WarehouseUrl {
    let mut url = url::Url::parse(&pg_url()).unwrap();
    url.set_username(user).unwrap();
    WarehouseUrl::parse(url.as_str(), None).unwrap()
}

#[tokio::test]
async fn a_refused_login_carries_the_servers_cause_and_is_not_retried() {
    let e = warehouse::connect(&url_as(&unique_name("nobody")), &ConnectOptions::default())
        .await
        .err()
        .expect("an unknown role cannot log in");
    assert!(matches!(e, WarehouseError::Connect { .. }), "{e}");
    assert!(!e.is_retryable(), "{e}");
    let text = prdiff_shared::error_chain(&e);
    assert!(
        text.contains("invalid authorization specification [SQLSTATE 28000]")
            && text.contains("does not exist"),
        "{text}"
    );
    assert!(!text.contains("db error"), "{text}");
}

#[tokio::test]
async fn a_missing_privilege_is_denied_with_its_sqlstate_and_not_retried() {
    let schema = pg_schema("denied").await;
    let role = unique_name("reader");
    pg_client()
        .await
        .batch_execute(&format!(
            "CREATE TABLE \"{schema}\".t (id int primary key, v int);
             INSERT INTO \"{schema}\".t VALUES (1, 1);
             CREATE ROLE \"{role}\" LOGIN;
             GRANT USAGE ON SCHEMA \"{schema}\" TO \"{role}\";"
        ))
        .await
        .unwrap();
    let wh = warehouse::connect(&url_as(&role), &ConnectOptions::default())
        .await
        .unwrap();
    let rel = Relation::new(None, Some(&schema), "t");
    let e = diff::diff(
        wh.as_ref(),
        &DiffRequest::new(rel.clone(), rel, vec!["id".into()]),
    )
    .await
    .expect_err("no SELECT privilege");
    assert!(!e.is_retryable(), "{e}");
    let text = prdiff_shared::error_chain(&e);
    assert!(
        text.contains("insufficient privilege [SQLSTATE 42501]")
            && text.contains("permission denied"),
        "{text}"
    );
    assert!(!text.contains("filter"), "{text}");
    pg_client()
        .await
        .batch_execute(&format!(
            "DROP SCHEMA \"{schema}\" CASCADE; REVOKE ALL ON SCHEMA public FROM \"{role}\"; DROP ROLE \"{role}\";"
        ))
        .await
        .unwrap();
}
