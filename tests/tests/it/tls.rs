//! PostgreSQL over TLS, on the test cluster `scripts/test.sh` starts with `ssl = on`, a CA
//! made at test time and a role (`prdiff_tls`) that `pg_hba.conf` admits only over TLS. The
//! server's certificate names `localhost` only.

use prdiff_shared::warehouse::{self, ConnectOptions, Warehouse, WarehouseError, WarehouseUrl};

/// `PRDIFF_TEST_PG_TLS_URL`: `prdiff_tls@localhost` with `sslmode=verify-full` and the
/// test CA.
fn tls_url() -> String {
    prdiff_tests::pg_tls_url()
}

fn tls_dir() -> std::path::PathBuf {
    std::env::var("PRDIFF_TEST_PG_TLS_DIR")
        .expect("PRDIFF_TEST_PG_TLS_DIR is not set: run the tests through scripts/test.sh")
        .into()
}

/// The TLS URL with another host, `sslmode` and root certificate.
fn with(host: &str, sslmode: &str, root: Option<&str>) -> WarehouseUrl {
    let mut url = url::Url::parse(&tls_url()).unwrap();
    url.set_host(Some(host)).unwrap();
    let mut query = format!("sslmode={sslmode}");
    if let Some(r) = root {
        query.push_str(&format!("&sslrootcert={}", tls_dir().join(r).display()));
    }
    url.set_query(Some(&query));
    WarehouseUrl::parse(url.as_str(), None).unwrap()
}

async fn connect(url: &WarehouseUrl) -> Result<Box<dyn Warehouse>, WarehouseError> {
    warehouse::connect(url, &ConnectOptions::default()).await
}

/// Whether this connection is encrypted, as the server sees it.
async fn encrypted(wh: &dyn Warehouse) -> String {
    wh.query("SELECT CAST(ssl AS TEXT) FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .await
        .unwrap()[0][0]
        .clone()
        .unwrap()
}

#[tokio::test]
async fn verify_full_with_the_test_ca_connects_encrypted() {
    let url = WarehouseUrl::parse(&tls_url(), None).unwrap();
    let wh = connect(&url).await.expect("verify-full with the right CA");
    assert_eq!(encrypted(wh.as_ref()).await, "true");
}

#[tokio::test]
async fn every_sslmode_keeps_its_libpq_meaning() {
    // require: encrypted, the certificate not checked (even against an unknown CA).
    let wh = connect(&with("127.0.0.1", "require", None)).await.unwrap();
    assert_eq!(encrypted(wh.as_ref()).await, "true");
    // prefer: encrypted when the server offers TLS.
    let wh = connect(&with("127.0.0.1", "prefer", None)).await.unwrap();
    assert_eq!(encrypted(wh.as_ref()).await, "true");
    // verify-ca: the chain is checked, the name is not (the certificate names localhost).
    let wh = connect(&with("127.0.0.1", "verify-ca", Some("ca.crt")))
        .await
        .expect("verify-ca ignores the name");
    assert_eq!(encrypted(wh.as_ref()).await, "true");
    // verify-full: the name is checked too.
    let e = connect(&with("127.0.0.1", "verify-full", Some("ca.crt")))
        .await
        .err()
        .expect("127.0.0.1 is not the certificate's name");
    let text = prdiff_shared::error_chain(&e);
    assert!(text.to_lowercase().contains("certificate"), "{text}");
    assert!(
        !e.is_retryable(),
        "a name mismatch does not go away: {text}"
    );
}

#[tokio::test]
async fn a_certificate_from_an_untrusted_ca_is_refused_with_the_reason() {
    for mode in ["verify-ca", "verify-full", "require"] {
        let e = connect(&with("localhost", mode, Some("other_ca.crt")))
            .await
            .err()
            .unwrap_or_else(|| panic!("{mode}: a server the given CA did not sign"));
        let text = prdiff_shared::error_chain(&e);
        assert!(text.contains("UnknownIssuer"), "{mode}: {text}");
        assert!(!e.is_retryable(), "{mode}: {text}");
    }
}

#[tokio::test]
async fn a_tls_only_role_over_plain_tcp_gets_the_servers_own_refusal() {
    let e = connect(&with("127.0.0.1", "disable", None))
        .await
        .err()
        .expect("pg_hba.conf refuses prdiff_tls without TLS");
    let text = prdiff_shared::error_chain(&e);
    assert!(text.contains("pg_hba.conf rejects connection"), "{text}");
    assert!(text.contains("no encryption"), "{text}");
    assert!(!e.is_retryable());
}

#[tokio::test]
async fn a_missing_or_empty_root_certificate_file_is_named() {
    let e = connect(&with("localhost", "verify-full", Some("no-such.crt")))
        .await
        .err()
        .unwrap();
    let text = prdiff_shared::error_chain(&e);
    assert!(text.contains("no-such.crt"), "{text}");
    assert!(!e.is_retryable());
    let e = connect(&with("localhost", "verify-full", Some("server.ext")))
        .await
        .err()
        .unwrap();
    assert!(
        prdiff_shared::error_chain(&e).contains("no PEM certificate"),
        "{e}"
    );
}

#[tokio::test]
async fn an_unknown_database_is_the_servers_message_and_not_retried() {
    let mut url = url::Url::parse(&tls_url()).unwrap();
    url.set_path("/no_such_database");
    let e = connect(&WarehouseUrl::parse(url.as_str(), None).unwrap())
        .await
        .err()
        .unwrap();
    let text = prdiff_shared::error_chain(&e);
    assert!(
        text.contains("database \"no_such_database\" does not exist"),
        "{text}"
    );
    assert!(!e.is_retryable(), "{text}");
}

#[tokio::test]
async fn a_statement_over_tls_is_cancelled_on_the_server_when_the_caller_stops_waiting() {
    let url = WarehouseUrl::parse(&tls_url(), None).unwrap();
    let wh = connect(&url).await.unwrap();
    let marker = prdiff_tests::unique_name("tls_cancel");
    let sql = format!("SELECT pg_sleep(30), '{marker}'");
    assert!(
        tokio::time::timeout(std::time::Duration::from_secs(1), wh.query(&sql))
            .await
            .is_err()
    );
    let admin = prdiff_tests::pg_client().await;
    let mut running = 1;
    for _ in 0..60 {
        running = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()",
                &[&marker],
            )
            .await
            .unwrap()
            .get::<_, i64>(0);
        if running == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        running, 0,
        "the cancel request went over TLS and was obeyed"
    );
}
