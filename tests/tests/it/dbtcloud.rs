//! The dbt Cloud v2 client against wiremock, answering with the shapes of the real
//! responses in `tests/fixtures/dbt_cloud`.

use prdiff_shared::config::{DbtAccountId, DbtJobId};
use prdiff_shared::dbtcloud::http::DbtCloudClient;
use prdiff_shared::dbtcloud::{DbtCloudApi, DbtCloudError, status};
use secrecy::SecretString;
use serde_json::Value;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn fixture(name: &str) -> Value {
    let p = prdiff_tests::fixtures().join("dbt_cloud").join(name);
    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
}

/// The fixture's run as a PR run with its trigger.
fn pr_run(id: u64, sha: &str, pr: u64) -> Value {
    let mut run = fixture("data-mie.run_get_response.json")["data"].clone();
    run["id"] = id.into();
    run["git_sha"] = sha.into();
    run["trigger"] = serde_json::json!({
        "id": 1, "cause": "Triggered via GitHub PR", "git_sha": sha,
        "github_pull_request_id": pr, "gitlab_merge_request_id": null,
        "schema_override": format!("dbt_cloud_pr_43167_{pr}")
    });
    run
}

fn envelope(data: Value) -> Value {
    serde_json::json!({
        "status": {"code": 200, "is_success": true, "user_message": "Success!", "developer_message": ""},
        "data": data
    })
}

fn client(server: &MockServer) -> DbtCloudClient {
    DbtCloudClient::new(
        DbtCloudClient::http_client(),
        &url::Url::parse(&server.uri()).unwrap(),
        SecretString::from("dbtc_key"),
    )
}

#[tokio::test]
async fn runs_of_a_job_are_listed_newest_first_with_their_triggers() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/accounts/123456/runs/"))
        .and(header("authorization", "Token dbtc_key"))
        .and(query_param("job_definition_id", "43167"))
        .and(query_param("order_by", "-id"))
        .and(query_param("include_related", r#"["trigger"]"#))
        .and(query_param("limit", "100"))
        .and(query_param("offset", "100"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(envelope(serde_json::json!([pr_run(
                7,
                "ec26c3e57ca3a959ca5aad62de7213c562f8c821",
                2
            )]))),
        )
        .expect(1)
        .mount(&server)
        .await;
    let runs = client(&server)
        .runs(
            DbtAccountId::new(123_456).unwrap(),
            DbtJobId::new(43_167).unwrap(),
            100,
            100,
        )
        .await
        .unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, status::SUCCESS);
    assert!(runs[0].is_for_pr(2));
    assert_eq!(
        runs[0].sha(),
        Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821")
    );
    // The fixture's `2021-12-07 10:32:24.326116+00:00`.
    assert_eq!(runs[0].created_unix(), Some(1_638_873_144));
}

#[tokio::test]
async fn a_rate_limit_is_waited_out_as_retry_after_asks_and_a_5xx_is_retried() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/accounts/1/runs/5/"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/accounts/1/runs/5/"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/accounts/1/runs/5/"))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(pr_run(5, "abc", 3))))
        .mount(&server)
        .await;
    let started = std::time::Instant::now();
    let run = client(&server)
        .run(DbtAccountId::new(1).unwrap(), 5)
        .await
        .unwrap();
    assert_eq!(run.id, 5);
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
}

#[tokio::test]
async fn a_missing_run_names_the_run_and_account_and_what_to_check() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(404).set_body_json(serde_json::json!({
            "status": {"code": 404, "is_success": false, "user_message": "Resource not found.", "developer_message": ""},
            "data": null
        })))
        .mount(&server)
        .await;
    let err = client(&server)
        .run(DbtAccountId::new(77).unwrap(), 9)
        .await
        .unwrap_err();
    assert!(!err.is_retryable());
    let text = err.to_string();
    assert!(text.contains("run 9 in account 77"), "{text}");
    assert!(text.contains("Resource not found."), "{text}");
    assert!(text.contains("check the account id, job id"), "{text}");
}

#[tokio::test]
async fn a_refused_key_says_what_was_being_read() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(403).set_body_json(serde_json::json!({
            "status": {"code": 403, "is_success": false, "user_message": "Forbidden", "developer_message": ""}
        })))
        .mount(&server)
        .await;
    let err = client(&server)
        .runs(
            DbtAccountId::new(5).unwrap(),
            DbtJobId::new(6).unwrap(),
            10,
            0,
        )
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        DbtCloudError::Unauthorized { status: 403, .. }
    ));
    assert!(
        err.to_string().contains("runs of job 6 in account 5"),
        "{err}"
    );
    assert!(!err.to_string().contains("dbtc_key"));
}

#[tokio::test]
async fn an_artifact_is_the_raw_file_of_the_step_asked_for() {
    let server = MockServer::start().await;
    let body = std::fs::read(
        prdiff_tests::fixtures().join("dbt_cloud/data-mie.run_get_artifact_response.json"),
    )
    .unwrap();
    Mock::given(method("GET"))
        .and(path(
            "/api/v2/accounts/1/runs/39214624/artifacts/run_results.json",
        ))
        .and(query_param("step", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(body.clone()))
        .mount(&server)
        .await;
    let got = client(&server)
        .artifact(
            DbtAccountId::new(1).unwrap(),
            39_214_624,
            "run_results.json",
            Some(2),
        )
        .await
        .unwrap();
    assert_eq!(got, body, "no envelope is taken off an artifact");
}
