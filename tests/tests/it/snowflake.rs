//! The Snowflake driver's side of the connector REST protocol, against a scripted server
//! (wiremock): what the stand-in (fakesnow) does not exercise — key-pair login, statements
//! still running (`333333` and `getResultUrl`), result chunks with their headers, Arrow and
//! JSON chunks, the abort request on a client-side timeout and on a dropped call, the
//! session closed on drop, errors without secrets. The engine tests run the driver on
//! fakesnow.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::{Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use base64::Engine as _;
use prdiff_shared::warehouse::{self, ConnectOptions, WarehouseError, WarehouseUrl};
use serde_json::{Value, json};
use sha2::Digest;
use wiremock::matchers::{body_string_contains, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

fn url(server: &MockServer, auth: &str) -> WarehouseUrl {
    let port = server.address().port();
    WarehouseUrl::parse(
        &format!(
            "snowflake://{auth}@myorg-acme/ANALYTICS?warehouse=CI_WH&role=READER&host=127.0.0.1&port={port}&protocol=http"
        ),
        None,
    )
    .unwrap()
}

async fn login_ok(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/session/v1/login-request"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "success": true, "code": null, "message": null,
            "data": { "token": "session-token-1", "masterToken": "m" }
        })))
        .mount(server)
        .await;
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

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[tokio::test]
async fn key_pair_login_sends_a_jwt_the_registered_public_key_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let pkcs8 = dir.path().join("key.p8");
    let pkcs8_s = pkcs8.to_str().unwrap();
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        pkcs8_s,
    ]);
    // What Snowflake keeps (`ALTER USER … SET RSA_PUBLIC_KEY`) and fingerprints: the
    // public key's DER SubjectPublicKeyInfo, computed here by openssl.
    let public_pem = String::from_utf8(openssl(&["pkey", "-in", pkcs8_s, "-pubout"])).unwrap();
    let public_der = openssl(&["pkey", "-in", pkcs8_s, "-pubout", "-outform", "DER"]);
    let fingerprint = format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&public_der))
    );
    // The same key in PKCS#1 form ("BEGIN RSA PRIVATE KEY") must log in the same way.
    let pkcs1 = dir.path().join("key.pem");
    openssl(&[
        "pkey",
        "-in",
        pkcs8_s,
        "-traditional",
        "-out",
        pkcs1.to_str().unwrap(),
    ]);
    assert!(
        std::fs::read_to_string(&pkcs1)
            .unwrap()
            .contains("BEGIN RSA PRIVATE KEY")
    );

    for key in [&pkcs8, &pkcs1] {
        let server = MockServer::start().await;
        login_ok(&server).await;
        let port = server.address().port();
        let u = WarehouseUrl::parse(
            &format!(
                "snowflake://ci_user@myorg-acme/ANALYTICS?private_key_path={}&host=127.0.0.1&port={port}&protocol=http",
                key.display()
            ),
            None,
        )
        .unwrap();
        let wh = warehouse::connect(&u, &options(30)).await.unwrap();
        let logins = requests_to(&server, "/session/v1/login-request").await;
        assert_eq!(
            logins.len(),
            3,
            "one login per session the engine uses at once"
        );
        for login in &logins {
            let data = &body(login)["data"];
            assert_eq!(data["AUTHENTICATOR"], "SNOWFLAKE_JWT");
            assert_eq!(data["LOGIN_NAME"], "ci_user");
            assert_eq!(data["ACCOUNT_NAME"], "MYORG-ACME");
            assert!(data.get("PASSWORD").is_none(), "{data}");
            assert_eq!(
                data["SESSION_PARAMETERS"]["STATEMENT_TIMEOUT_IN_SECONDS"],
                30
            );
            let q: std::collections::HashMap<_, _> = login.url.query_pairs().collect();
            assert_eq!(q["databaseName"], "ANALYTICS");
            let token = data["TOKEN"].as_str().unwrap();
            let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
            validation.set_required_spec_claims(&["exp", "iss", "sub"]);
            let claims = jsonwebtoken::decode::<Value>(
                token,
                &jsonwebtoken::DecodingKey::from_rsa_pem(public_pem.as_bytes()).unwrap(),
                &validation,
            )
            .expect("signed RS256 by the user's key")
            .claims;
            assert_eq!(
                claims["iss"],
                format!("MYORG-ACME.CI_USER.{fingerprint}"),
                "{}",
                key.display()
            );
            assert_eq!(claims["sub"], "MYORG-ACME.CI_USER");
            let (iat, exp) = (
                claims["iat"].as_u64().unwrap(),
                claims["exp"].as_u64().unwrap(),
            );
            assert!(exp > iat && exp - iat <= 3600, "{claims}");
        }
        drop(wh);
    }
}

fn arrow_ipc(ids: Vec<i64>, labels: Vec<Option<&str>>) -> Vec<u8> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("ID", DataType::Int64, true),
        Field::new("LABEL", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(StringArray::from(labels)),
        ],
    )
    .unwrap();
    let mut out = Vec::new();
    let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut out, &schema).unwrap();
    w.write(&batch).unwrap();
    w.finish().unwrap();
    drop(w);
    out
}

#[tokio::test]
async fn running_statements_are_followed_and_every_chunk_is_read_with_its_headers() {
    let server = MockServer::start().await;
    login_ok(&server).await;
    let rowtype = json!([
        { "name": "ID", "type": "fixed", "scale": 0, "precision": 38 },
        { "name": "LABEL", "type": "text", "scale": null, "precision": null }
    ]);
    // JSON: still running at first; the result URL then gives an inline part and a chunk
    // that needs the chunk headers Snowflake named.
    Mock::given(method("POST"))
        .and(path("/queries/v1/query-request"))
        .and(body_string_contains("FROM json_side"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "success": true, "code": "333333", "message": "running",
            "data": { "getResultUrl": "/queries/01-json/result", "queryId": "01-json" }
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/queries/01-json/result"))
        .and(header(
            "authorization",
            "Snowflake Token=\"session-token-1\"",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "success": true,
            "data": {
                "queryResultFormat": "json",
                "rowtype": rowtype,
                "rowset": [["1", "a"], ["2", null]],
                "chunks": [{ "url": format!("{}/chunks/json-1", server.uri()), "rowCount": 2 }],
                "chunkHeaders": { "x-amz-server-side-encryption-customer-key": "k1" }
            }
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/chunks/json-1"))
        .and(header("x-amz-server-side-encryption-customer-key", "k1"))
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"["3","c;d"],["4","☃"]"#))
        .mount(&server)
        .await;
    // Arrow: an inline part and a chunk fetched with the qrmk's SSE-C headers.
    Mock::given(method("POST"))
        .and(path("/queries/v1/query-request"))
        .and(body_string_contains("FROM arrow_side"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "success": true,
            "data": {
                "queryResultFormat": "arrow",
                "rowtype": rowtype,
                "rowsetBase64": base64::engine::general_purpose::STANDARD
                    .encode(arrow_ipc(vec![10, 11], vec![Some("x"), None])),
                "chunks": [{ "url": format!("{}/chunks/arrow-1", server.uri()), "rowCount": 1 }],
                "qrmk": "qrmk-key"
            }
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/chunks/arrow-1"))
        .and(header(
            "x-amz-server-side-encryption-customer-algorithm",
            "AES256",
        ))
        .and(header(
            "x-amz-server-side-encryption-customer-key",
            "qrmk-key",
        ))
        .respond_with(
            ResponseTemplate::new(200).set_body_bytes(arrow_ipc(vec![12], vec![Some("z")])),
        )
        .mount(&server)
        .await;

    let wh = warehouse::connect(&url(&server, "u:pw"), &options(60))
        .await
        .unwrap();
    let s = |v: &str| Some(v.to_owned());
    assert_eq!(
        wh.query("SELECT id, label FROM json_side").await.unwrap(),
        vec![
            vec![s("1"), s("a")],
            vec![s("2"), None],
            vec![s("3"), s("c;d")],
            vec![s("4"), s("☃")]
        ]
    );
    assert_eq!(
        wh.query("SELECT id, label FROM arrow_side").await.unwrap(),
        vec![
            vec![s("10"), s("x")],
            vec![s("11"), None],
            vec![s("12"), s("z")]
        ]
    );
    // Each statement carried its request id, sequence number and timeout; chunk downloads
    // never carried the session token.
    let queries = requests_to(&server, "/queries/v1/query-request").await;
    assert_eq!(queries.len(), 2);
    for (i, q) in queries.iter().enumerate() {
        let b = body(q);
        assert_eq!(b["parameters"]["STATEMENT_TIMEOUT_IN_SECONDS"], 60);
        assert_eq!(b["asyncExec"], false);
        assert_eq!(b["sequenceId"], i as u64 + 1);
        assert!(
            q.url
                .query_pairs()
                .any(|(k, v)| k == "requestId" && v.len() == 36)
        );
        assert_eq!(
            q.headers.get("authorization").unwrap(),
            "Snowflake Token=\"session-token-1\""
        );
    }
    for chunk in ["/chunks/json-1", "/chunks/arrow-1"] {
        let got = requests_to(&server, chunk).await;
        assert_eq!(got.len(), 1, "{chunk}");
        assert!(got[0].headers.get("authorization").is_none(), "{chunk}");
    }
}

#[tokio::test]
async fn a_statement_past_its_timeout_is_aborted_on_the_server_by_its_request_id() {
    let server = MockServer::start().await;
    login_ok(&server).await;
    Mock::given(method("POST"))
        .and(path("/queries/v1/query-request"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_delay(Duration::from_secs(30))
                .set_body_json(json!({ "success": true, "data": {} })),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/queries/v1/abort-request"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "success": true })))
        .mount(&server)
        .await;
    let wh = warehouse::connect(&url(&server, "u:pw"), &options(1))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let e = wh.query("SELECT slow()").await.unwrap_err();
    assert!(matches!(e, WarehouseError::Timeout(_)), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the client gave up"
    );
    let abort = eventually(&server, "/queries/v1/abort-request").await;
    let query = requests_to(&server, "/queries/v1/query-request").await;
    let request_id = query[0]
        .url
        .query_pairs()
        .find(|(k, _)| k == "requestId")
        .unwrap()
        .1
        .into_owned();
    assert_eq!(body(&abort[0])["requestId"], request_id.as_str());
    assert_eq!(
        body(&query[0])["parameters"]["STATEMENT_TIMEOUT_IN_SECONDS"],
        1
    );
}

#[tokio::test]
async fn a_dropped_call_is_aborted_and_a_dropped_warehouse_closes_its_sessions() {
    let server = MockServer::start().await;
    login_ok(&server).await;
    Mock::given(method("POST"))
        .and(path("/queries/v1/query-request"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_delay(Duration::from_secs(30))
                .set_body_json(json!({ "success": true, "data": {} })),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/queries/v1/abort-request"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "success": true })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/session"))
        .and(query_param("delete", "true"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "success": true })))
        .mount(&server)
        .await;
    let wh = warehouse::connect(&url(&server, "u:pw"), &options(600))
        .await
        .unwrap();
    // The caller stops waiting long before the statement timeout.
    let gave_up = tokio::time::timeout(Duration::from_millis(300), wh.query("SELECT slow()")).await;
    assert!(gave_up.is_err());
    let abort = eventually(&server, "/queries/v1/abort-request").await;
    assert_eq!(abort.len(), 1);
    drop(wh);
    let close = eventually(&server, "/session").await;
    assert!(
        close
            .iter()
            .all(|r| r.headers.get("authorization").unwrap()
                == "Snowflake Token=\"session-token-1\"")
    );
}

#[tokio::test]
async fn errors_carry_snowflake_codes_and_never_the_password() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/session/v1/login-request"))
        .and(body_string_contains("right-password"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "success": true, "data": { "token": "t" }
        })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/session/v1/login-request"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "success": false, "code": "390100", "data": null,
            "message": "Incorrect username or password was specified."
        })))
        .mount(&server)
        .await;
    let e = match warehouse::connect(&url(&server, "u:wrong-password"), &options(60)).await {
        Err(e) => e,
        Ok(_) => panic!("a refused login connected"),
    };
    assert!(matches!(e, WarehouseError::Connect { .. }), "{e}");
    assert!(!e.is_retryable(), "refused credentials: {e}");
    let text = format!("{e} {e:?}");
    assert!(text.contains("390100"), "{text}");
    assert!(!text.contains("wrong-password"), "{text}");

    Mock::given(method("POST"))
        .and(path("/queries/v1/query-request"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "success": false, "code": "002003", "message":
                "SQL compilation error:\nObject 'ANALYTICS.PROD.NOPE' does not exist or not authorized.",
            "data": { "sqlState": "42S02", "errorCode": "002003" }
        })))
        .mount(&server)
        .await;
    let wh = warehouse::connect(&url(&server, "u:right-password"), &options(60))
        .await
        .unwrap();
    let e = wh.query("SELECT 1 FROM nope").await.unwrap_err();
    assert!(matches!(e, WarehouseError::Rejected { .. }), "{e}");
    assert!(
        e.to_string().contains("002003") && e.to_string().contains("42S02"),
        "{e}"
    );
    assert!(!format!("{e:?}").contains("right-password"));
}
