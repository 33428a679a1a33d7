//! `prdiff config apply` / `check` (the library behind the CLI) against the embedded store,
//! against moto (DynamoDB + Secrets Manager), and a wiremock dbt Cloud serving the real
//! account and job list responses.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use prdiff_shared::app::apply::{self, ApplyError, config_secret_name};
use prdiff_shared::config::{ConfigError, ConfigId, DataSourceId, SecretName, SecretRole};
use prdiff_shared::dbtcloud::http::HttpDbtCloud;
use prdiff_shared::secrets::aws::SecretsManager;
use prdiff_shared::secrets::local::LocalSecrets;
use prdiff_shared::secrets::{ExposeSecret, Secrets};
use prdiff_shared::store::ConfigStore;
use prdiff_shared::store::embedded::EmbeddedStore;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn dbt_fixture(name: &str) -> serde_json::Value {
    let p = prdiff_tests::fixtures().join("dbt_cloud").join(name);
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// dbt Cloud that knows account 1 (Jaffle Shop) with job 43167, for key `dbtc_good`.
async fn dbt_cloud() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/accounts/"))
        .and(header("authorization", "Token dbtc_good"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(dbt_fixture("data-mie.account_list_response.json")),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/accounts/1/jobs/"))
        .and(header("authorization", "Token dbtc_good"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(dbt_fixture("data-mie.job_list_response.json")),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(401).set_body_json(serde_json::json!({
            "status": {"code": 401, "is_success": false, "user_message": "Invalid token."}, "data": null
        })))
        .with_priority(10)
        .mount(&server)
        .await;
    server
}

/// A config file in `dir` with its secret files; `edits` replace text in it.
fn write_file(dir: &Path, dbt: &MockServer, edits: &[(&str, &str)]) -> String {
    std::fs::write(dir.join("dbt.key"), "dbtc_good\n").unwrap();
    std::fs::write(dir.join("gh.token"), "ghp_secret_value\n").unwrap();
    std::fs::write(dir.join("wh.password"), "pg-password\n").unwrap();
    let mut text = format!(
        r#"
[[data_source]]
id = "warehouse"
kind = "postgres"
connection = {{ host = "db.internal", port = "5432", database = "analytics", user = "prdiff_ro" }}
secret = {{ file = "wh.password" }}

[[ci_config]]
name = "analytics-main"
data_source = "warehouse"
sync_on_push = true
sync_schedule = "0 */6 * * *"
files_to_ignore = "docs/\n*.md\n"
sampling = {{ tolerance = 0.001, confidence = 0.99 }}
repository = {{ provider = "github", full_name = "acme/analytics" }}
git_auth = {{ kind = "token", token = {{ file = "gh.token" }} }}

[ci_config.dbt_cloud]
access_url = "{}"
account_id = 1
api_key = {{ file = "dbt.key" }}
artifacts_job_id = 43167
pr_job_id = 43167
"#,
        dbt.uri()
    );
    for (from, to) in edits {
        assert!(text.contains(from), "{from}");
        text = text.replace(from, to);
    }
    text
}

struct Embedded {
    dir: tempfile::TempDir,
    store: EmbeddedStore,
    secrets: LocalSecrets,
}

fn embedded() -> Embedded {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("prdiff.db")).unwrap();
    let secrets = LocalSecrets::with_env_and_dir(Some(dir.path().join("secrets")));
    Embedded {
        dir,
        store,
        secrets,
    }
}

impl Embedded {
    async fn apply(&self, text: &str) -> Result<apply::ApplyReport, ApplyError> {
        apply::apply(
            text,
            self.dir.path(),
            &self.store,
            &self.secrets,
            &HttpDbtCloud::default(),
            true,
        )
        .await
    }

    async fn assert_empty(&self) {
        assert!(self.store.list_configs().await.unwrap().is_empty());
        assert!(self.store.list_data_sources().await.unwrap().is_empty());
        assert!(
            !self.dir.path().join("secrets").exists(),
            "no secret was written"
        );
    }
}

fn problems(err: ApplyError) -> Vec<(String, String)> {
    match err {
        ApplyError::Invalid(p) => p.into_iter().map(|f| (f.field, f.problem)).collect(),
        other => panic!("expected field problems, got {other}"),
    }
}

#[tokio::test]
async fn apply_stores_configs_and_data_sources_and_moves_secret_values_to_the_secret_store() {
    let dbt = dbt_cloud().await;
    let e = embedded();
    let text = write_file(e.dir.path(), &dbt, &[]);
    let report = e.apply(&text).await.unwrap();
    assert_eq!(report.configs, [ConfigId::parse("analytics-main").unwrap()]);
    assert_eq!(
        report.data_sources,
        [DataSourceId::parse("warehouse").unwrap()]
    );
    assert_eq!(report.secrets_written.len(), 3);

    let stored = e
        .store
        .get_config(&ConfigId::parse("analytics-main").unwrap())
        .await
        .unwrap()
        .unwrap();
    let key_name = config_secret_name(&stored.name, SecretRole::DbtApiKey);
    assert_eq!(stored.dbt_cloud.api_key, key_name);
    assert_eq!(
        e.secrets.get(&key_name).await.unwrap().expose_secret(),
        "dbtc_good"
    );
    // The stored JSON names secrets; it never holds a value.
    let json = serde_json::to_string(&stored).unwrap();
    assert!(
        !json.contains("dbtc_good") && !json.contains("ghp_secret_value"),
        "{json}"
    );
    assert!(e.dir.path().join("secrets").exists());

    // check: data source, secrets and dbt Cloud all fine.
    let lines = apply::check(
        &stored.name,
        &e.store,
        &e.secrets,
        &HttpDbtCloud::default(),
        false,
    )
    .await
    .unwrap()
    .unwrap();
    assert!(lines.iter().all(|l| l.ok), "{lines:?}");
    assert_eq!(lines.len(), 4);
}

#[tokio::test]
async fn an_unknown_job_is_refused_listing_the_jobs_the_key_sees_and_nothing_is_written() {
    let dbt = dbt_cloud().await;
    let e = embedded();
    let text = write_file(
        e.dir.path(),
        &dbt,
        &[("pr_job_id = 43167", "pr_job_id = 99")],
    );
    let p = problems(e.apply(&text).await.unwrap_err());
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].0, "ci_config \"analytics-main\".dbt_cloud.pr_job_id");
    assert!(p[0].1.contains("43167 (Do nothing!)"), "{}", p[0].1);
    e.assert_empty().await;
}

#[tokio::test]
async fn an_account_the_key_cannot_see_is_refused_listing_the_accounts() {
    let dbt = dbt_cloud().await;
    let e = embedded();
    let text = write_file(e.dir.path(), &dbt, &[("account_id = 1", "account_id = 7")]);
    let p = problems(e.apply(&text).await.unwrap_err());
    assert_eq!(p[0].0, "ci_config \"analytics-main\".dbt_cloud.account_id");
    assert!(p[0].1.contains("1 (Jaffle Shop)"), "{}", p[0].1);
    e.assert_empty().await;
}

#[tokio::test]
async fn a_key_dbt_cloud_refuses_is_reported_on_the_api_key_field() {
    let dbt = dbt_cloud().await;
    let e = embedded();
    let text = write_file(e.dir.path(), &dbt, &[]);
    std::fs::write(e.dir.path().join("dbt.key"), "dbtc_revoked").unwrap();
    let p = problems(e.apply(&text).await.unwrap_err());
    assert_eq!(p[0].0, "ci_config \"analytics-main\".dbt_cloud.api_key");
    assert!(p[0].1.contains("Invalid token."));
    assert!(!p[0].1.contains("dbtc_revoked"));
    e.assert_empty().await;
}

#[tokio::test]
async fn invalid_values_are_refused_before_dbt_cloud_is_asked() {
    let dbt = dbt_cloud().await;
    let e = embedded();
    for (from, to, field) in [
        ("tolerance = 0.001", "tolerance = 1.5", "tolerance"),
        ("\"0 */6 * * *\"", "\"61 * * * *\"", "sync_schedule"),
        ("\"docs/\\n*.md\\n\"", "\"[z-a]\\n\"", "files_to_ignore"),
    ] {
        let text = write_file(e.dir.path(), &dbt, &[(from, to)]);
        let err = e.apply(&text).await.unwrap_err();
        assert!(
            matches!(err, ApplyError::Config(ConfigError::Syntax(_))),
            "{err}"
        );
        assert!(err.to_string().contains(field), "{err}");
    }
    assert!(dbt.received_requests().await.unwrap().is_empty());
    e.assert_empty().await;
}

#[tokio::test]
async fn a_kind_this_build_cannot_diff_is_refused_naming_the_field() {
    let dbt = dbt_cloud().await;
    let e = embedded();
    for kind in ["duckdb"] {
        assert!(!prdiff_shared::warehouse::has_driver(kind));
        let text = write_file(
            e.dir.path(),
            &dbt,
            &[("kind = \"postgres\"", &format!("kind = \"{kind}\""))],
        );
        let err = e.apply(&text).await.unwrap_err();
        assert!(err.is_usage(), "{kind}: {err}");
        let p = problems(err);
        assert_eq!(p[0].0, "data_source \"warehouse\".kind", "{kind}: {p:?}");
        assert!(p[0].1.contains(&format!("no driver for {kind}")), "{p:?}");
        e.assert_empty().await;
    }
    for kind in [
        "postgres",
        "redshift",
        "sqlite",
        "snowflake",
        "bigquery",
        "databricks",
    ] {
        assert!(prdiff_shared::warehouse::has_driver(kind), "{kind}");
    }
}

/// This test binary is built with the `snowflake` feature (as the CLI, the diff Lambda and
/// serve are): a Snowflake data source is accepted with its connection keys and a secret,
/// and refused, naming the problem, without them. A build without the feature refuses the
/// kind (the test above's path: `has_driver`).
#[tokio::test]
async fn a_snowflake_data_source_is_accepted_with_its_keys_and_refused_without() {
    assert!(prdiff_shared::warehouse::has_driver("snowflake"));
    let dbt = dbt_cloud().await;
    let sf = r#"kind = "snowflake"
connection = { account = "myorg-acme", user = "PRDIFF", database = "ANALYTICS", warehouse = "CI_WH", role = "PRDIFF_READER" }"#;
    let postgres = r#"kind = "postgres"
connection = { host = "db.internal", port = "5432", database = "analytics", user = "prdiff_ro" }"#;
    let e = embedded();
    let text = write_file(e.dir.path(), &dbt, &[(postgres, sf)]);
    let report = e.apply(&text).await.unwrap();
    assert_eq!(report.data_sources.len(), 1);
    let stored = e.store.list_data_sources().await.unwrap();
    assert_eq!(stored[0].kind.as_str(), "snowflake");
    // The stored source builds a Snowflake login with the stored secret as the password.
    let url =
        prdiff_shared::warehouse::source::warehouse_url(&stored[0], Some("pg-password".into()))
            .unwrap();
    assert_eq!(url.kind(), "snowflake");
    assert!(!format!("{url} {url:?}").contains("pg-password"));

    for (edit, field_problem) in [
        (
            r#"kind = "snowflake"
connection = { user = "PRDIFF", database = "ANALYTICS" }"#,
            "connection has no `account`",
        ),
        (
            r#"kind = "snowflake"
connection = { account = "a", user = "PRDIFF", database = "ANALYTICS", password = "x" }"#,
            "unknown connection key `password`",
        ),
        (
            r#"kind = "snowflake"
connection = { account = "a", user = "PRDIFF", database = "ANALYTICS", protocol = "ftp" }"#,
            "is not https or http",
        ),
    ] {
        let e = embedded();
        let text = write_file(e.dir.path(), &dbt, &[(postgres, edit)]);
        let err = e.apply(&text).await.unwrap_err();
        let p = problems(err);
        assert!(
            p.iter()
                .any(|(f, m)| f == "data_source \"warehouse\"" && m.contains(field_problem)),
            "{field_problem}: {p:?}"
        );
        e.assert_empty().await;
    }
    let e = embedded();
    let text = write_file(
        e.dir.path(),
        &dbt,
        &[
            (postgres, sf),
            ("secret = { file = \"wh.password\" }\n", ""),
        ],
    );
    let p = problems(e.apply(&text).await.unwrap_err());
    assert!(
        p.iter()
            .any(|(f, m)| f == "data_source \"warehouse\".secret" && m.contains("needs a secret")),
        "{p:?}"
    );
    e.assert_empty().await;
}

/// Built with the `databricks` feature (as the CLI, the diff Lambda and serve are): a
/// Databricks data source is accepted with its keys and a secret (the token, or the OAuth
/// client secret with `client_id`), and refused, naming the problem, without them.
#[tokio::test]
async fn a_databricks_data_source_is_accepted_with_its_keys_and_refused_without() {
    assert!(prdiff_shared::warehouse::has_driver("databricks"));
    let dbt = dbt_cloud().await;
    let dbx = r#"kind = "databricks"
connection = { host = "dbc-1234.cloud.databricks.com", http_path = "/sql/1.0/warehouses/abc123", client_id = "sp-uuid" }"#;
    let postgres = r#"kind = "postgres"
connection = { host = "db.internal", port = "5432", database = "analytics", user = "prdiff_ro" }"#;
    let e = embedded();
    let text = write_file(e.dir.path(), &dbt, &[(postgres, dbx)]);
    let report = e.apply(&text).await.unwrap();
    assert_eq!(report.data_sources.len(), 1);
    let stored = e.store.list_data_sources().await.unwrap();
    assert_eq!(stored[0].kind.as_str(), "databricks");
    // The stored source builds an OAuth M2M login with the stored secret.
    let url =
        prdiff_shared::warehouse::source::warehouse_url(&stored[0], Some("pg-password".into()))
            .unwrap();
    assert_eq!(url.kind(), "databricks");
    assert!(!format!("{url} {url:?}").contains("pg-password"));

    for (edit, field_problem) in [
        (
            r#"kind = "databricks"
connection = { http_path = "/sql/1.0/warehouses/abc123" }"#,
            "connection has no `host`",
        ),
        (
            r#"kind = "databricks"
connection = { host = "h.example", warehouse_id = "w", token = "dapi-x" }"#,
            "unknown connection key `token`",
        ),
        (
            r#"kind = "databricks"
connection = { host = "h.example", warehouse_id = "w", protocol = "http" }"#,
            "this machine only",
        ),
    ] {
        let e = embedded();
        let text = write_file(e.dir.path(), &dbt, &[(postgres, edit)]);
        let p = problems(e.apply(&text).await.unwrap_err());
        assert!(
            p.iter()
                .any(|(f, m)| f == "data_source \"warehouse\"" && m.contains(field_problem)),
            "{field_problem}: {p:?}"
        );
        assert!(!format!("{p:?}").contains("dapi-x"));
        e.assert_empty().await;
    }
    let e = embedded();
    let text = write_file(
        e.dir.path(),
        &dbt,
        &[
            (postgres, dbx),
            ("secret = { file = \"wh.password\" }\n", ""),
        ],
    );
    let p = problems(e.apply(&text).await.unwrap_err());
    assert!(
        p.iter()
            .any(|(f, m)| f == "data_source \"warehouse\".secret" && m.contains("needs a secret")),
        "{p:?}"
    );
    e.assert_empty().await;
}

#[tokio::test]
async fn an_unreadable_secret_file_is_refused_naming_the_field() {
    let dbt = dbt_cloud().await;
    let e = embedded();
    let text = write_file(
        e.dir.path(),
        &dbt,
        &[("file = \"gh.token\"", "file = \"missing.token\"")],
    );
    let p = problems(e.apply(&text).await.unwrap_err());
    assert_eq!(p[0].0, "ci_config \"analytics-main\".git_auth.token");
    e.assert_empty().await;
}

#[tokio::test]
async fn check_reports_a_missing_secret() {
    let dbt = dbt_cloud().await;
    let e = embedded();
    let text = write_file(e.dir.path(), &dbt, &[]);
    e.apply(&text).await.unwrap();
    let id = ConfigId::parse("analytics-main").unwrap();
    let token = config_secret_name(&id, SecretRole::GitToken);
    std::fs::remove_file(
        e.dir
            .path()
            .join("secrets")
            .join(token.as_str().replace('/', "_")),
    )
    .unwrap();
    let fresh = LocalSecrets::with_env_and_dir(Some(e.dir.path().join("secrets")));
    let lines = apply::check(&id, &e.store, &fresh, &HttpDbtCloud::default(), false)
        .await
        .unwrap()
        .unwrap();
    let failed: Vec<_> = lines.iter().filter(|l| !l.ok).collect();
    assert_eq!(failed.len(), 1, "{lines:?}");
    assert!(failed[0].what.contains("git-token"));
    assert!(
        apply::check(
            &ConfigId::parse("nope").unwrap(),
            &e.store,
            &fresh,
            &HttpDbtCloud::default(),
            false
        )
        .await
        .unwrap()
        .is_none()
    );
}

#[tokio::test]
async fn apply_against_the_aws_adapters_writes_dynamodb_and_secrets_manager() {
    let dbt = dbt_cloud().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::stores::moto().await;
    let store = Arc::new(crate::stores::dynamo_store().await);
    let secrets = SecretsManager::new(aws_sdk_secretsmanager::Client::new(&cfg), Duration::ZERO);
    // A unique configuration name keeps secret names apart between runs on one moto.
    let name = prdiff_tests::unique_name("cfg").replace('_', "-");
    let text = write_file(
        dir.path(),
        &dbt,
        &[("\"analytics-main\"", &format!("\"{name}\""))],
    );
    let report = apply::apply(
        &text,
        dir.path(),
        store.as_ref(),
        &secrets,
        &HttpDbtCloud::default(),
        true,
    )
    .await
    .unwrap();
    assert_eq!(report.secrets_written.len(), 3);
    let id = ConfigId::parse(name).unwrap();
    assert!(store.get_config(&id).await.unwrap().is_some());
    let key = secrets
        .get(&config_secret_name(&id, SecretRole::DbtApiKey))
        .await
        .unwrap();
    assert_eq!(key.expose_secret(), "dbtc_good");
    let lines = apply::check(
        &id,
        store.as_ref(),
        &secrets,
        &HttpDbtCloud::default(),
        false,
    )
    .await
    .unwrap()
    .unwrap();
    assert!(lines.iter().all(|l| l.ok), "{lines:?}");

    // A failing apply leaves both stores as they were.
    let bad = write_file(dir.path(), &dbt, &[("pr_job_id = 43167", "pr_job_id = 5")])
        .replace("\"analytics-main\"", "\"other-config\"");
    assert!(
        apply::apply(
            &bad,
            dir.path(),
            store.as_ref(),
            &secrets,
            &HttpDbtCloud::default(),
            true
        )
        .await
        .is_err()
    );
    assert!(
        store
            .get_config(&ConfigId::parse("other-config").unwrap())
            .await
            .unwrap()
            .is_none()
    );
    let other_key = SecretName::parse("prdiff/config/other-config/dbt-api-key").unwrap();
    assert!(secrets.get(&other_key).await.is_err());
}

#[tokio::test]
async fn a_github_app_key_that_is_not_a_pem_rsa_key_is_refused() {
    let dbt = dbt_cloud().await;
    let e = embedded();
    std::fs::write(e.dir.path().join("app.pem"), "-----BEGIN NOTHING-----\n").unwrap();
    let text = write_file(
        e.dir.path(),
        &dbt,
        &[(
            "git_auth = { kind = \"token\", token = { file = \"gh.token\" } }",
            "git_auth = { kind = \"github_app\", app_id = 1, installation_id = 2, private_key = { file = \"app.pem\" } }",
        )],
    );
    let p = problems(e.apply(&text).await.unwrap_err());
    assert_eq!(p[0].0, "ci_config \"analytics-main\".git_auth.private_key");
    assert!(p[0].1.contains("RSA"), "{}", p[0].1);
    e.assert_empty().await;
}
