//! Redshift IAM authentication: temporary credentials from `GetClusterCredentials`
//! (moto's Redshift API; `scripts/test.sh` points `AWS_ENDPOINT_URL_REDSHIFT` at it, with
//! dummy AWS credentials), then a connection as the database user it names — to the
//! PostgreSQL test cluster, which speaks Redshift's wire protocol and trusts loopback, so
//! the password moto invents is not checked there.

use prdiff_shared::warehouse::{self, ConnectOptions, WarehouseUrl};

/// A redshift:// URL to the test cluster as `user`, with `iam` settings.
fn url(user: &str, iam: &str) -> WarehouseUrl {
    let pg = url::Url::parse(&prdiff_tests::pg_url()).unwrap();
    let text = format!(
        "redshift://{user}@{}:{}{}?sslmode=disable&region=us-east-1&{iam}",
        pg.host_str().unwrap(),
        pg.port().unwrap(),
        pg.path()
    );
    WarehouseUrl::parse(&text, None).unwrap()
}

#[tokio::test]
async fn iam_credentials_from_get_cluster_credentials_log_in_as_the_iam_user() {
    let cluster = prdiff_tests::unique_name("prdiff-iam").replace('_', "-");
    let redshift = aws_sdk_redshift::Client::new(&crate::stores::moto().await);
    redshift
        .create_cluster()
        .cluster_identifier(&cluster)
        .node_type("ra3.xlplus")
        .master_username("admin")
        .master_user_password("Passw0rd!")
        .send()
        .await
        .expect("create the cluster in moto");
    let user = prdiff_tests::unique_name("reader");
    let admin = prdiff_tests::pg_client().await;
    admin
        .batch_execute(&format!("CREATE ROLE \"IAM:{user}\" LOGIN"))
        .await
        .unwrap();

    let wh = warehouse::connect(
        &url(&user, &format!("iam=cluster&cluster_id={cluster}")),
        &ConnectOptions::default(),
    )
    .await
    .expect("connect with IAM credentials");
    assert_eq!(wh.dialect().name(), "redshift");
    let who = wh.query("SELECT CAST(current_user AS TEXT)").await.unwrap();
    assert_eq!(who, vec![vec![Some(format!("IAM:{user}"))]]);

    // An unknown cluster: AWS's own error, and not retried.
    let e = warehouse::connect(
        &url(&user, "iam=cluster&cluster_id=no-such-cluster"),
        &ConnectOptions::default(),
    )
    .await
    .err()
    .expect("no such cluster");
    let text = prdiff_shared::error_chain(&e);
    assert!(text.contains("ClusterNotFound"), "{text}");
    assert!(text.contains("no-such-cluster"), "{text}");
    assert!(!e.is_retryable(), "{text}");
}
