//! The Databricks driver's side of the SQL Statement Execution API 2.0, against a scripted
//! server (wiremock) answering with the response shapes of Databricks' API reference
//! (`StatementResponse`: `statement_id`, `status.state`, `status.error`, `manifest.schema`,
//! `result.data_array`, `next_chunk_internal_link`; `ServiceError`: `error_code`,
//! `message`; the OAuth token endpoint's `access_token`/`expires_in`), and the simple
//! statements brickhouse (a Databricks API stand-in) can run. No stand-in runs the diff
//! SQL (docs/warehouses/databricks.md says which parts ran where).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use prdiff_shared::app::apply;
use prdiff_shared::config::DataSource;
use prdiff_shared::secrets::local::LocalSecrets;
use prdiff_shared::sql::Dialect as _;
use prdiff_shared::warehouse::{
    self, ConnectOptions, DatabricksAuth, DatabricksTarget, Password, WarehouseError, WarehouseUrl,
};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const STATEMENTS: &str = "/api/2.0/sql/statements";

fn target(server: &MockServer, auth: DatabricksAuth) -> WarehouseUrl {
    WarehouseUrl::Databricks(DatabricksTarget {
        host: "127.0.0.1".into(),
        port: server.address().port(),
        protocol: "http".into(),
        warehouse_id: "wh-1234".into(),
        catalog: Some("main".into()),
        schema: Some("analytics".into()),
        auth,
    })
}

fn pat() -> DatabricksAuth {
    DatabricksAuth::Token(Password::new("dapi-pat-secret"))
}

fn options(secs: u64) -> ConnectOptions {
    ConnectOptions {
        statement_timeout: Duration::from_secs(secs),
    }
}

fn body(r: &Request) -> Value {
    serde_json::from_slice(&r.body).unwrap()
}

async fn requests_to(server: &MockServer, p: &str) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == p)
        .collect()
}

/// Waits (up to 5 s) until the server has seen a request to `p`.
async fn eventually(server: &MockServer, p: &str) -> Vec<Request> {
    for _ in 0..100 {
        let seen = requests_to(server, p).await;
        if !seen.is_empty() {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no request to {p}")
}

fn running(id: &str, state: &str) -> Value {
    json!({ "statement_id": id, "status": { "state": state } })
}

fn column(name: &str, position: u32, type_name: &str, type_text: &str) -> Value {
    json!({ "name": name, "position": position, "type_name": type_name, "type_text": type_text })
}

/// Mounts a cancel endpoint for `id` that answers `{}` as the API does.
async fn cancel_ok(server: &MockServer, id: &str) {
    Mock::given(method("POST"))
        .and(path(format!("{STATEMENTS}/{id}/cancel")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(server)
        .await;
}

#[tokio::test]
async fn a_running_statement_is_polled_and_every_chunk_is_read_as_typed_text() {
    let server = MockServer::start().await;
    let id = "01ef-stmt-1";
    Mock::given(method("POST"))
        .and(path(STATEMENTS))
        .and(header("authorization", "Bearer dapi-pat-secret"))
        .respond_with(ResponseTemplate::new(200).set_body_json(running(id, "PENDING")))
        .mount(&server)
        .await;
    // Running once, then done with the first of two chunks.
    let polls = Arc::new(AtomicUsize::new(0));
    let seen = polls.clone();
    Mock::given(method("GET"))
        .and(path(format!("{STATEMENTS}/{id}")))
        .respond_with(move |_: &Request| {
            if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                return ResponseTemplate::new(200).set_body_json(running(id, "RUNNING"));
            }
            ResponseTemplate::new(200).set_body_json(json!({
                "statement_id": id,
                "status": { "state": "SUCCEEDED" },
                "manifest": {
                    "format": "JSON_ARRAY",
                    "schema": { "column_count": 6, "columns": [
                        column("id", 0, "LONG", "BIGINT"),
                        column("amount", 1, "DECIMAL", "DECIMAL(12,2)"),
                        column("ratio", 2, "DOUBLE", "DOUBLE"),
                        column("active", 3, "BOOLEAN", "BOOLEAN"),
                        column("ts", 4, "TIMESTAMP", "TIMESTAMP"),
                        column("note", 5, "STRING", "STRING"),
                    ]},
                    "total_chunk_count": 2,
                    "chunks": [
                        { "chunk_index": 0, "row_offset": 0, "row_count": 2 },
                        { "chunk_index": 1, "row_offset": 2, "row_count": 1 }
                    ],
                    "total_row_count": 3,
                    "truncated": false
                },
                "result": {
                    "chunk_index": 0, "row_offset": 0, "row_count": 2,
                    "data_array": [
                        ["1", "10.50", "0.1", "true", "2024-01-02T03:04:05.123Z", "a`b"],
                        ["2", null, "NaN", "false", null, null]
                    ],
                    "next_chunk_index": 1,
                    "next_chunk_internal_link": format!("{STATEMENTS}/{id}/result/chunks/1")
                }
            }))
        })
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{STATEMENTS}/{id}/result/chunks/1")))
        .and(header("authorization", "Bearer dapi-pat-secret"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "chunk_index": 1, "row_offset": 2, "row_count": 1,
            "data_array": [["3", "-0.01", "-0.0", "true", "2024-01-02 00:00:00", "c"]]
        })))
        .mount(&server)
        .await;

    let wh = warehouse::connect(&target(&server, pat()), &options(60))
        .await
        .unwrap();
    assert_eq!(wh.dialect().name(), "databricks");
    let rows = wh.query("SELECT 1").await.unwrap();
    let s = |v: &str| Some(v.to_owned());
    assert_eq!(
        rows,
        vec![
            vec![
                s("1"),
                s("10.50"),
                s("0.1"),
                s("true"),
                s("2024-01-02 03:04:05.123"),
                s("a`b")
            ],
            vec![s("2"), None, s("NaN"), s("false"), None, None],
            vec![
                s("3"),
                s("-0.01"),
                s("-0"),
                s("true"),
                s("2024-01-02 00:00:00"),
                s("c")
            ],
        ]
    );
    assert_eq!(polls.load(Ordering::SeqCst), 2);
    let submitted = requests_to(&server, STATEMENTS).await;
    assert_eq!(submitted.len(), 1);
    let b = body(&submitted[0]);
    assert_eq!(b["statement"], "SELECT 1");
    assert_eq!(b["warehouse_id"], "wh-1234");
    assert_eq!(
        (b["catalog"].as_str(), b["schema"].as_str()),
        (Some("main"), Some("analytics"))
    );
    assert_eq!(b["disposition"], "INLINE");
    assert_eq!(b["format"], "JSON_ARRAY");
    assert_eq!(b["on_wait_timeout"], "CONTINUE");
    assert_eq!(b["wait_timeout"], "30s");
    // A finished statement is not cancelled.
    assert!(
        requests_to(&server, &format!("{STATEMENTS}/{id}/cancel"))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn a_failed_statement_keeps_databricks_error_code_and_message() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(STATEMENTS))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "statement_id": "01ef-stmt-2",
            "status": {
                "state": "FAILED",
                "error": {
                    "error_code": "BAD_REQUEST",
                    "message": "[UNRESOLVED_COLUMN.WITH_SUGGESTION] A column, variable, or function parameter with name `nope` cannot be resolved. SQLSTATE: 42703"
                },
                "sql_state": "42703"
            }
        })))
        .mount(&server)
        .await;
    let wh = warehouse::connect(&target(&server, pat()), &options(60))
        .await
        .unwrap();
    let e = wh.query("SELECT nope FROM t").await.unwrap_err();
    assert!(
        matches!(&e, WarehouseError::Rejected { message }
            if message.starts_with("[BAD_REQUEST, SQLSTATE 42703]") && message.contains("UNRESOLVED_COLUMN")),
        "{e:?}"
    );
    assert!(!e.is_retryable());
    assert!(!e.to_string().contains("dapi-pat-secret"));
}

#[tokio::test]
async fn a_statement_past_its_timeout_is_cancelled_on_the_server_by_its_id() {
    let server = MockServer::start().await;
    let id = "01ef-stmt-slow";
    Mock::given(method("POST"))
        .and(path(STATEMENTS))
        .respond_with(ResponseTemplate::new(200).set_body_json(running(id, "PENDING")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{STATEMENTS}/{id}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(running(id, "RUNNING")))
        .mount(&server)
        .await;
    cancel_ok(&server, id).await;
    let wh = warehouse::connect(&target(&server, pat()), &options(1))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let e = wh.query("SELECT slow()").await.unwrap_err();
    assert!(
        matches!(e, WarehouseError::Timeout(d) if d == Duration::from_secs(1)),
        "{e:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // Under the API's 5 s minimum wait: answer at once, then poll.
    assert_eq!(
        body(&requests_to(&server, STATEMENTS).await[0])["wait_timeout"],
        "0s"
    );
    let cancels = eventually(&server, &format!("{STATEMENTS}/{id}/cancel")).await;
    assert_eq!(cancels.len(), 1);
    assert_eq!(
        cancels[0].headers.get("authorization").unwrap(),
        "Bearer dapi-pat-secret"
    );
}

#[tokio::test]
async fn a_dropped_call_cancels_its_statement_and_a_server_cancel_is_a_timeout() {
    let server = MockServer::start().await;
    let id = "01ef-stmt-dropped";
    Mock::given(method("POST"))
        .and(path(STATEMENTS))
        .respond_with(ResponseTemplate::new(200).set_body_json(running(id, "RUNNING")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{STATEMENTS}/{id}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(running(id, "RUNNING")))
        .mount(&server)
        .await;
    cancel_ok(&server, id).await;
    let wh = warehouse::connect(&target(&server, pat()), &options(600))
        .await
        .unwrap();
    // The caller stops waiting while the statement runs.
    let r = tokio::time::timeout(Duration::from_millis(400), wh.query("SELECT slow()")).await;
    assert!(r.is_err());
    let cancels = eventually(&server, &format!("{STATEMENTS}/{id}/cancel")).await;
    assert_eq!(cancels.len(), 1);

    // A statement the warehouse cancelled (its own STATEMENT_TIMEOUT) is a timeout.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(STATEMENTS))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "statement_id": "01ef-stmt-3",
            "status": { "state": "CANCELED" }
        })))
        .mount(&server)
        .await;
    let wh = warehouse::connect(&target(&server, pat()), &options(60))
        .await
        .unwrap();
    let e = wh.query("SELECT 1").await.unwrap_err();
    assert!(matches!(e, WarehouseError::Timeout(_)), "{e:?}");
}

#[tokio::test]
async fn refused_credentials_are_permanent_throttling_is_retryable_and_no_secret_is_shown() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(STATEMENTS))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error_code": "UNAUTHENTICATED",
            "message": "Invalid access token."
        })))
        .mount(&server)
        .await;
    let wh = warehouse::connect(&target(&server, pat()), &options(60))
        .await
        .unwrap();
    let e = wh.query("SELECT 1").await.unwrap_err();
    let text = prdiff_shared::error_chain(&e);
    assert!(
        matches!(
            e,
            WarehouseError::Connect {
                retryable: false,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        text.contains("UNAUTHENTICATED") && text.contains("Invalid access token."),
        "{text}"
    );
    assert!(!text.contains("dapi-pat-secret"), "{text}");

    for (status, code) in [
        (429, "REQUEST_LIMIT_EXCEEDED"),
        (503, "TEMPORARILY_UNAVAILABLE"),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(STATEMENTS))
            .respond_with(ResponseTemplate::new(status).set_body_json(json!({
                "error_code": code, "message": "try again later"
            })))
            .mount(&server)
            .await;
        let wh = warehouse::connect(&target(&server, pat()), &options(60))
            .await
            .unwrap();
        let e = wh.query("SELECT 1").await.unwrap_err();
        assert!(e.is_retryable(), "{status}: {e:?}");
        assert!(prdiff_shared::error_chain(&e).contains(code));
    }
}

#[tokio::test]
async fn oauth_m2m_exchanges_the_client_secret_once_and_sends_the_access_token() {
    let server = MockServer::start().await;
    let basic = base64::engine::general_purpose::STANDARD.encode("sp-client:oauth-client-secret");
    Mock::given(method("POST"))
        .and(path("/oidc/v1/token"))
        .and(header("authorization", format!("Basic {basic}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "eyJ-access-token",
            "token_type": "Bearer",
            "expires_in": 3600,
            "scope": "all-apis"
        })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(STATEMENTS))
        .and(header("authorization", "Bearer eyJ-access-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "statement_id": "01ef-stmt-4",
            "status": { "state": "SUCCEEDED" },
            "manifest": {
                "format": "JSON_ARRAY",
                "schema": { "column_count": 1, "columns": [column("1", 0, "INT", "INT")] },
                "total_chunk_count": 1, "total_row_count": 1, "truncated": false
            },
            "result": { "chunk_index": 0, "row_offset": 0, "row_count": 1, "data_array": [["1"]] }
        })))
        .mount(&server)
        .await;
    let auth = DatabricksAuth::OAuthM2m {
        client_id: "sp-client".into(),
        client_secret: Password::new("oauth-client-secret"),
    };
    let wh = warehouse::connect(&target(&server, auth), &options(60))
        .await
        .unwrap();
    for _ in 0..2 {
        assert_eq!(
            wh.query("SELECT 1").await.unwrap(),
            vec![vec![Some("1".to_owned())]]
        );
    }
    let exchanges = requests_to(&server, "/oidc/v1/token").await;
    assert_eq!(
        exchanges.len(),
        1,
        "the access token is reused until it expires"
    );
    let form = String::from_utf8(exchanges[0].body.clone()).unwrap();
    assert!(form.contains("grant_type=client_credentials"), "{form}");
    assert!(form.contains("scope=all-apis"), "{form}");

    // A refused client fails at connect with the endpoint's own error, never the secret.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oidc/v1/token"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": "invalid_client",
            "error_description": "Client authentication failed"
        })))
        .mount(&server)
        .await;
    let auth = DatabricksAuth::OAuthM2m {
        client_id: "sp-client".into(),
        client_secret: Password::new("oauth-client-secret"),
    };
    let e = match warehouse::connect(&target(&server, auth), &options(60)).await {
        Ok(_) => panic!("a refused client connected"),
        Err(e) => e,
    };
    let text = prdiff_shared::error_chain(&e);
    assert!(!e.is_retryable(), "{e:?}");
    assert!(
        text.contains("invalid_client: Client authentication failed"),
        "{text}"
    );
    assert!(!text.contains("oauth-client-secret"), "{text}");
    assert!(requests_to(&server, STATEMENTS).await.is_empty());
}

/// `prdiff config check` on a Databricks data source: the stored secret is the token, and
/// `SELECT 1` runs on the warehouse; a refused token fails the line with Databricks' words.
#[tokio::test]
async fn config_check_runs_select_1_with_the_stored_token() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(STATEMENTS))
        .and(header("authorization", "Bearer dapi-stored-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "statement_id": "01ef-stmt-5",
            "status": { "state": "SUCCEEDED" },
            "manifest": {
                "format": "JSON_ARRAY",
                "schema": { "column_count": 1, "columns": [column("1", 0, "INT", "INT")] },
                "total_chunk_count": 1, "total_row_count": 1, "truncated": false
            },
            "result": { "chunk_index": 0, "row_offset": 0, "row_count": 1, "data_array": [["1"]] }
        })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(STATEMENTS))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "error_code": "PERMISSION_DENIED",
            "message": "User does not have permission 'CAN_USE' on warehouse wh-1234."
        })))
        .mount(&server)
        .await;
    let source: DataSource = serde_json::from_value(json!({
        "id": "dbx",
        "kind": "databricks",
        "connection": {
            "host": "127.0.0.1", "port": server.address().port().to_string(),
            "protocol": "http", "http_path": "/sql/1.0/warehouses/wh-1234",
            "catalog": "main"
        },
        "secret": "prdiff/data-source/dbx"
    }))
    .unwrap();
    let name = prdiff_shared::config::SecretName::parse("prdiff/data-source/dbx").unwrap();
    for (token, ok, expect) in [
        ("dapi-stored-token", true, "connected, SELECT 1 ran"),
        ("dapi-other-token", false, "CAN_USE"),
    ] {
        let secrets = LocalSecrets::in_memory();
        secrets.insert(&name, token);
        let lines = apply::check_warehouse(&source, &secrets).await;
        assert_eq!(lines[0].what, "warehouse connection");
        assert_eq!(lines[0].ok, ok, "{lines:?}");
        assert!(lines[0].detail.contains(expect), "{}", lines[0].detail);
        assert!(!lines[0].detail.contains(token), "{}", lines[0].detail);
    }
}

// ---------------------------------------------------------------------------------------
// brickhouse: a Databricks API stand-in (`PRDIFF_TEST_DATABRICKS_API`, started by
// scripts/test.sh). Its SQL subset cannot run a diff (no outer joins, CTEs, COUNT_IF or
// catalog), but it answers the driver's submit with real response bodies: typed manifests,
// JSON_ARRAY rows, FAILED statements.

fn brickhouse_api() -> String {
    std::env::var("PRDIFF_TEST_DATABRICKS_API")
        .expect("PRDIFF_TEST_DATABRICKS_API is not set: run the tests through scripts/test.sh")
}

/// Posts one statement to brickhouse directly (setup, not through the driver).
async fn brickhouse_sql(http: &reqwest::Client, api: &str, warehouse: &str, sql: &str) {
    let answer: Value = http
        .post(format!("{api}{STATEMENTS}"))
        .bearer_auth("brickhouse-admin")
        .json(&json!({ "statement": sql, "warehouse_id": warehouse, "wait_timeout": "30s" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["status"]["state"], "SUCCEEDED", "{sql}: {answer}");
}

#[tokio::test]
async fn on_brickhouse_the_driver_reads_typed_rows_and_failed_statements() {
    let api = brickhouse_api();
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{api}/api/2.0/sql/warehouses"))
        .bearer_auth("brickhouse-admin")
        .json(&json!({
            "name": prdiff_tests::unique_name("prdiff"),
            "cluster_size": "2X-Small",
            "warehouse_type": "PRO",
            "enable_serverless_compute": true
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let warehouse_id = created["id"].as_str().expect("a warehouse id").to_owned();
    let table = prdiff_tests::unique_name("typed").to_ascii_lowercase();
    let relation = prdiff_shared::sql::Relation::new(Some("main"), Some("default"), &table);
    let quoted = prdiff_shared::sql::Databricks.relation(&relation);
    assert_eq!(quoted, format!("`main`.`default`.`{table}`"));
    brickhouse_sql(
        &http,
        &api,
        &warehouse_id,
        &format!(
            "CREATE TABLE {quoted} (id INT, big BIGINT, amount DECIMAL(12,2), ratio DOUBLE, \
             ok BOOLEAN, d DATE, note STRING) USING DELTA"
        ),
    )
    .await;
    brickhouse_sql(
        &http,
        &api,
        &warehouse_id,
        &format!(
            "INSERT INTO {quoted} VALUES (1, 9000000000, 10.50, 0.1, true, DATE '2024-01-02', 'a`b'), \
             (2, NULL, NULL, NULL, NULL, NULL, NULL)"
        ),
    )
    .await;

    let url: ::url::Url = api.parse().unwrap();
    let target = WarehouseUrl::Databricks(DatabricksTarget {
        host: url.host_str().unwrap().to_owned(),
        port: url.port().unwrap(),
        protocol: "http".into(),
        warehouse_id,
        catalog: Some("main".into()),
        schema: Some("default".into()),
        auth: DatabricksAuth::Token(Password::new("brickhouse-ignores-tokens")),
    });
    let wh = warehouse::connect(&target, &options(60)).await.unwrap();
    let rows = wh
        .query(&format!(
            "SELECT id, big, amount, ratio, ok, d, note FROM {quoted} ORDER BY id"
        ))
        .await
        .unwrap();
    let s = |v: &str| Some(v.to_owned());
    assert_eq!(
        rows,
        vec![
            vec![
                s("1"),
                s("9000000000"),
                s("10.50"),
                s("0.1"),
                s("true"),
                s("2024-01-02"),
                s("a`b")
            ],
            vec![s("2"), None, None, None, None, None, None],
        ]
    );
    // Under 5 s the driver submits with `wait_timeout=0s`: brickhouse answers PENDING and
    // the driver polls the statement until it is done.
    let polled = warehouse::connect(&target, &options(4)).await.unwrap();
    let again = polled
        .query(&format!(
            "SELECT id, big, amount, ratio, ok, d, note FROM {quoted} ORDER BY id"
        ))
        .await
        .unwrap();
    assert_eq!(again, rows);
    // The catalog and schema of the target resolve a one-part name.
    let rows = wh
        .query(&format!("SELECT count(*) AS n FROM `{table}`"))
        .await
        .unwrap();
    assert_eq!(rows, vec![vec![s("2")]]);

    let e = wh
        .query("SELECT id FROM `main`.`default`.`no_such_table`")
        .await
        .unwrap_err();
    assert!(
        matches!(&e, WarehouseError::Rejected { message }
            if message.contains("BAD_REQUEST") && message.contains("no_such_table")),
        "{e:?}"
    );
    // brickhouse's SQL subset, as docs/warehouses/databricks.md lists it: the diff's
    // constructs fail there (asserted, so a brickhouse that runs them is noticed).
    for sql in [
        format!("SELECT COUNT_IF(ok) FROM {quoted}"),
        format!("SELECT count(*) FROM {quoted} a FULL OUTER JOIN {quoted} b ON a.id = b.id"),
        format!("WITH x AS (SELECT id FROM {quoted}) SELECT count(*) FROM x"),
        format!("SELECT xxhash64(id, 1) FROM {quoted}"),
    ] {
        assert!(wh.query(&sql).await.is_err(), "brickhouse ran {sql}");
    }
}

/// `prdiff config check`'s privilege check on Databricks: Unity Catalog's
/// `information_schema` privilege views and owners, read through the Statement Execution
/// API (documented `StatementResponse` with JSON_ARRAY rows). A MODIFY grant to a group the
/// user belongs to and an owned schema are one warning each, with their REVOKE / ALTER.
#[tokio::test]
async fn config_check_warns_on_unity_catalog_write_grants_and_ownership() {
    use wiremock::matchers::body_string_contains;
    let server = MockServer::start().await;
    let answer = |id: &str, cols: Vec<Value>, rows: Vec<Vec<&str>>| {
        json!({
            "statement_id": id,
            "status": { "state": "SUCCEEDED" },
            "manifest": {
                "format": "JSON_ARRAY",
                "schema": { "column_count": cols.len(), "columns": cols },
                "total_chunk_count": 1, "total_row_count": rows.len(), "truncated": false
            },
            "result": { "chunk_index": 0, "row_offset": 0, "row_count": rows.len(), "data_array": rows }
        })
    };
    let three = || {
        vec![
            column("privilege_type", 0, "STRING", "STRING"),
            column("object", 1, "STRING", "STRING"),
            column("grantee", 2, "STRING", "STRING"),
        ]
    };
    for (marker, body) in [
        (
            "information_schema.table_privileges",
            answer(
                "s-t",
                three(),
                vec![vec!["MODIFY", "analytics.orders", "data-writers"]],
            ),
        ),
        (
            "information_schema.schemata",
            answer(
                "s-o",
                three(),
                vec![vec!["schema", "analytics", "ci@example.com"]],
            ),
        ),
        (
            "information_schema.catalog_privileges",
            answer("s-c", three(), vec![]),
        ),
        (
            "information_schema.schema_privileges",
            answer("s-s", three(), vec![]),
        ),
        ("information_schema.tables", answer("s-x", three(), vec![])),
        (
            "SELECT 1",
            answer("s-1", vec![column("1", 0, "INT", "INT")], vec![vec!["1"]]),
        ),
    ] {
        Mock::given(method("POST"))
            .and(path(STATEMENTS))
            .and(body_string_contains(marker))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .mount(&server)
            .await;
    }
    let source: DataSource = serde_json::from_value(json!({
        "id": "dbx",
        "kind": "databricks",
        "connection": {
            "host": "127.0.0.1", "port": server.address().port().to_string(),
            "protocol": "http", "http_path": "/sql/1.0/warehouses/wh-1234",
            "catalog": "main"
        },
        "secret": "prdiff/data-source/dbx"
    }))
    .unwrap();
    let name = prdiff_shared::config::SecretName::parse("prdiff/data-source/dbx").unwrap();
    let secrets = LocalSecrets::in_memory();
    secrets.insert(&name, "dapi-stored-token");
    let lines = apply::check_warehouse(&source, &secrets).await;
    assert!(lines[0].ok, "{lines:?}");
    let warnings: Vec<_> = lines.iter().filter(|l| l.warning).collect();
    assert_eq!(warnings.len(), 2, "{lines:?}");
    assert_eq!(warnings[0].what, "warehouse privilege MODIFY on table");
    assert!(
        warnings[0].detail.contains("granted to data-writers")
            && warnings[0]
                .detail
                .contains("REVOKE MODIFY ON TABLE `analytics`.`orders` FROM `data-writers`;"),
        "{}",
        warnings[0].detail
    );
    assert_eq!(warnings[1].what, "warehouse privilege owner of schemas");
    assert!(
        warnings[1]
            .detail
            .contains("ALTER SCHEMA `analytics` OWNER TO"),
        "{}",
        warnings[1].detail
    );
    // Every privilege query asks for the user's own grants and its groups'.
    for r in requests_to(&server, STATEMENTS).await {
        let sql = body(&r)["statement"].as_str().unwrap_or("").to_owned();
        if sql.contains("information_schema") {
            assert!(sql.contains("current_user()"), "{sql}");
        }
    }
}
