//! GitHub and GitLab clients against wiremock serving the recorded REST fixtures.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use prdiff_shared::config::{CommitSha, RepoName};
use prdiff_shared::githost::github::{GitHub, GitHubAuth};
use prdiff_shared::githost::gitlab::GitLab;
use prdiff_shared::githost::http::{HttpSettings, http_client};
use prdiff_shared::githost::{CommitStatus, GitHost, GitHostError, StatusState};
use prdiff_shared::secrets::SecretString;
use serde_json::Value;
use wiremock::matchers::{body_partial_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const SHA: &str = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";

fn rest(name: &str) -> Value {
    let path = prdiff_tests::fixtures()
        .join("github/rest/pygithub-replay")
        .join(name);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn gitlab_fixture(name: &str) -> Value {
    let path = prdiff_tests::fixtures().join("gitlab").join(name);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn settings() -> HttpSettings {
    HttpSettings {
        max_rate_limit_wait: Duration::from_secs(2),
        attempts: 3,
        timeout: Duration::from_secs(5),
    }
}

fn repo() -> RepoName {
    RepoName::parse("octo/analytics").unwrap()
}

fn github(server: &MockServer) -> GitHub {
    GitHub::new(
        http_client(&settings()),
        settings(),
        Some(server.uri().parse().unwrap()),
        GitHubAuth::Token(SecretString::from("ghp_test".to_owned())),
    )
}

fn sha() -> CommitSha {
    CommitSha::parse(SHA).unwrap()
}

#[tokio::test]
async fn github_changed_files_follow_pages_and_include_renamed_paths() {
    let server = MockServer::start().await;
    let full_page: Vec<Value> = (0..100)
        .map(
            |i| serde_json::json!({ "filename": format!("models/m{i}.sql"), "status": "modified" }),
        )
        .collect();
    let mut last = rest("PullRequest.testGetFiles.response0.get.200.json");
    last[0]["previous_filename"] = "codegen/old.py".into();
    Mock::given(method("GET"))
        .and(path("/repos/octo/analytics/pulls/31/files"))
        .and(query_param("page", "1"))
        .and(header("authorization", "Bearer ghp_test"))
        .respond_with(ResponseTemplate::new(200).set_body_json(full_page))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/octo/analytics/pulls/31/files"))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(&last))
        .expect(1)
        .mount(&server)
        .await;
    let files = github(&server).changed_files(&repo(), 31).await.unwrap();
    assert_eq!(files.len(), 100 + 45 + 1);
    assert!(files.contains(&"codegen/old.py".to_owned()));
    assert!(files.contains(&"codegen/templates/GithubObject.py".to_owned()));
}

#[tokio::test]
async fn github_commit_messages_follow_pages_oldest_first() {
    let server = MockServer::start().await;
    let recorded = rest("PullRequest.testGetCommits.response0.get.200.json");
    let full_page: Vec<Value> = (0..100)
        .map(|i| {
            let mut c = recorded[0].clone();
            c["commit"]["message"] = format!("commit {i}").into();
            c
        })
        .collect();
    Mock::given(method("GET"))
        .and(path("/repos/octo/analytics/pulls/31/commits"))
        .and(query_param("page", "1"))
        .and(header("authorization", "Bearer ghp_test"))
        .respond_with(ResponseTemplate::new(200).set_body_json(full_page))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/octo/analytics/pulls/31/commits"))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(&recorded))
        .expect(1)
        .mount(&server)
        .await;
    let messages = github(&server).commit_messages(&repo(), 31).await.unwrap();
    assert_eq!(messages.len(), 103);
    assert_eq!(messages[0], "commit 0");
    assert_eq!(messages[100], "Improve test coverage");
    assert_eq!(
        messages[102],
        "Test (and implement) Issue.*_label*\n\nAnd this commit will be used to test PullRequests"
    );
}

#[tokio::test]
async fn github_merge_base_comes_from_compare() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("/repos/octo/analytics/compare/main...{SHA}")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(rest("Repository.testCompare.response0.get.200.json")),
        )
        .mount(&server)
        .await;
    let base = github(&server)
        .merge_base(&repo(), "main", &sha())
        .await
        .unwrap();
    assert_eq!(base.as_str(), "4303c5b90e2216d927155e9609436ccb8984c495");
}

#[tokio::test]
async fn github_status_descriptions_are_cut_to_140_characters() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/repos/octo/analytics/statuses/{SHA}")))
        .and(body_partial_json(
            serde_json::json!({"state": "failure", "context": "prdiff/main"}),
        ))
        .respond_with(ResponseTemplate::new(201).set_body_json(rest(
            "Commit.testCreateStatusWithAllParameters.response0.post.201.json",
        )))
        .expect(1)
        .mount(&server)
        .await;
    let status = CommitStatus {
        state: StatusState::Failure,
        context: "prdiff/main".into(),
        description: "x".repeat(300),
        target_url: Some("https://example.com/run".into()),
    };
    github(&server)
        .set_status(&repo(), &sha(), &status)
        .await
        .unwrap();
    let reqs = server.received_requests().await.unwrap();
    let body: Value = serde_json::from_slice(&reqs[0].body).unwrap();
    assert_eq!(body["description"].as_str().unwrap().chars().count(), 140);
    assert_eq!(body["target_url"], "https://example.com/run");
}

#[tokio::test]
async fn the_sticky_comment_is_created_once_then_edited_in_place() {
    let server = MockServer::start().await;
    let marker = "<!-- prdiff:main -->";
    // No comment carries the marker: create.
    Mock::given(method("GET"))
        .and(path("/repos/octo/analytics/issues/31/comments"))
        .respond_with(ResponseTemplate::new(200).set_body_json(rest(
            "PullRequest.testGetIssueComments.response0.get.200.json",
        )))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/octo/analytics/issues/31/comments"))
        .respond_with(ResponseTemplate::new(201).set_body_json(rest(
            "PullRequest.testCreateIssueComment.response0.post.201.json",
        )))
        .expect(1)
        .mount(&server)
        .await;
    let gh = github(&server);
    let created = gh
        .upsert_comment(&repo(), 31, marker, &format!("{marker}\nfirst"))
        .await
        .unwrap();
    assert!(created.created);
    assert_eq!(created.id, 8387331);

    // Now the list has our comment: edit it.
    let mut listed = rest("PullRequest.testGetIssueComments.response0.get.200.json");
    listed[0]["body"] = format!("{marker}\nfirst").into();
    Mock::given(method("GET"))
        .and(path("/repos/octo/analytics/issues/31/comments"))
        .respond_with(ResponseTemplate::new(200).set_body_json(listed))
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/repos/octo/analytics/issues/comments/8387331"))
        .and(body_partial_json(
            serde_json::json!({"body": format!("{marker}\nsecond")}),
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(rest("IssueComment.testEdit.response0.patch.200.json")),
        )
        .expect(1)
        .mount(&server)
        .await;
    let edited = gh
        .upsert_comment(&repo(), 31, marker, &format!("{marker}\nsecond"))
        .await
        .unwrap();
    assert!(!edited.created);
}

#[tokio::test]
async fn a_short_retry_after_is_waited_out() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/octo/analytics/issues/31/labels"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/octo/analytics/issues/31/labels"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!([{"name": "datafold"}])),
        )
        .mount(&server)
        .await;
    let started = std::time::Instant::now();
    let labels = github(&server).labels(&repo(), 31).await.unwrap();
    assert_eq!(labels, ["datafold"]);
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn an_exhausted_rate_limit_window_is_returned_as_retryable() {
    let server = MockServer::start().await;
    let reset = prdiff_shared::store::unix_now() + 600;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-reset", reset.to_string().as_str())
                .set_body_json(serde_json::json!({"message": "API rate limit exceeded"})),
        )
        .mount(&server)
        .await;
    let err = github(&server).labels(&repo(), 31).await.unwrap_err();
    match &err {
        GitHostError::RateLimited { retry_after } => {
            assert!(retry_after.as_secs() > 500, "{retry_after:?}")
        }
        other => panic!("{other:?}"),
    }
    assert!(err.is_retryable());
}

#[tokio::test]
async fn server_errors_are_retryable_and_not_found_is_not() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/octo/analytics/branches/main"))
        .respond_with(ResponseTemplate::new(502))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/octo/analytics/branches/gone"))
        .respond_with(
            ResponseTemplate::new(404)
                .set_body_json(serde_json::json!({"message": "Branch not found"})),
        )
        .mount(&server)
        .await;
    let gh = github(&server);
    assert!(
        gh.branch_head(&repo(), "main")
            .await
            .unwrap_err()
            .is_retryable()
    );
    let err = gh.branch_head(&repo(), "gone").await.unwrap_err();
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("Branch not found"), "{err}");
}

fn test_rsa_key() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("app.pem");
    let out = std::process::Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&key)
        .arg("2048")
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(key).unwrap()
}

/// Decodes the claims of a JWT without checking it (the test looks at what was sent).
fn jwt_claims(auth: &str) -> Value {
    let jwt = auth.strip_prefix("Bearer ").unwrap();
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[0])
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "RS256");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .unwrap(),
    )
    .unwrap()
}

async fn app_server(expires_at: &str) -> MockServer {
    let server = MockServer::start().await;
    let mut token = rest("GithubIntegration.testGetAccessToken.response0.post.201.json");
    token["expires_at"] = expires_at.into();
    Mock::given(method("POST"))
        .and(path("/api/v3/app/installations/30614431/access_tokens"))
        .respond_with(ResponseTemplate::new(201).set_body_json(token))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v3/repos/octo/analytics/issues/31/labels"))
        .and(header(
            "authorization",
            "Bearer ghs_1llwuELtXN5HDOB99XhpcTXdJxbOuF0ZlSmj",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!([])))
        .mount(&server)
        .await;
    server
}

fn app_client(server: &MockServer, pem: &[u8]) -> GitHub {
    GitHub::new(
        http_client(&settings()),
        settings(),
        // GitHub Enterprise Server style base URL.
        Some(format!("{}/api/v3", server.uri()).parse().unwrap()),
        GitHubAuth::app(12345, 30614431, pem).unwrap(),
    )
}

fn token_requests(reqs: &[Request]) -> Vec<&Request> {
    reqs.iter()
        .filter(|r| r.url.path().ends_with("/access_tokens"))
        .collect()
}

#[tokio::test]
async fn a_github_app_signs_a_jwt_and_reuses_the_installation_token_until_near_expiry() {
    let pem = test_rsa_key();
    let server = app_server("2099-01-01T00:00:00Z").await;
    let gh = app_client(&server, &pem);
    gh.labels(&repo(), 31).await.unwrap();
    gh.labels(&repo(), 31).await.unwrap();
    let reqs = server.received_requests().await.unwrap();
    let tokens = token_requests(&reqs);
    assert_eq!(tokens.len(), 1, "the installation token is cached");
    let claims = jwt_claims(
        tokens[0]
            .headers
            .get("authorization")
            .unwrap()
            .to_str()
            .unwrap(),
    );
    assert_eq!(claims["iss"], "12345");
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    assert!(exp - iat <= 600 && iat < prdiff_shared::store::unix_now());

    // The fixture's own expiry (2024) is past: every call fetches a fresh token.
    let server = app_server("2024-11-25T01:00:02Z").await;
    let gh = app_client(&server, &pem);
    gh.labels(&repo(), 31).await.unwrap();
    gh.labels(&repo(), 31).await.unwrap();
    assert_eq!(
        token_requests(&server.received_requests().await.unwrap()).len(),
        2
    );
}

#[tokio::test]
async fn a_github_app_key_that_is_not_rsa_pem_is_refused() {
    assert!(matches!(
        GitHubAuth::app(1, 2, b"not a key"),
        Err(GitHostError::Credentials(_))
    ));
}

// ---- GitLab ----

fn gitlab(server: &MockServer) -> GitLab {
    GitLab::new(
        http_client(&settings()),
        settings(),
        Some(format!("{}/api/v4", server.uri()).parse().unwrap()),
        SecretString::from("glpat-test".to_owned()),
    )
}

fn group_repo() -> RepoName {
    RepoName::parse("group/sub/project").unwrap()
}

const GL: &str = "/api/v4/projects/group%2Fsub%2Fproject";

#[tokio::test]
async fn gitlab_changed_files_come_from_the_mr_diffs() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("{GL}/merge_requests/1/diffs")))
        .and(header("private-token", "glpat-test"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(gitlab_fixture("go-gitlab.api.list_merge_request_diff.json")),
        )
        .mount(&server)
        .await;
    let files = gitlab(&server)
        .changed_files(&group_repo(), 1)
        .await
        .unwrap();
    assert_eq!(files, ["README", "VERSION"]);
}

#[tokio::test]
async fn gitlab_commit_messages_come_oldest_first() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("{GL}/merge_requests/1/commits")))
        .and(header("private-token", "glpat-test"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(gitlab_fixture("gitlab-docs.api.merge_request_commits.json")),
        )
        .mount(&server)
        .await;
    let messages = gitlab(&server)
        .commit_messages(&group_repo(), 1)
        .await
        .unwrap();
    assert_eq!(
        messages,
        [
            "Sanitize for network graph",
            "Replace sanitize with escape once"
        ]
    );
}

#[tokio::test]
async fn gitlab_merge_base_branch_head_and_labels() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("{GL}/repository/merge_base")))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "id": "1a0b36b3cdad1d2ee32457c102a8c0b7056fa863", "short_id": "1a0b36b3"
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{GL}/repository/branches/feature%2Fx")))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "name": "feature/x", "commit": { "id": SHA }
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{GL}/merge_requests/14656")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(gitlab_fixture("go-gitlab.api.get_merge_request.json")),
        )
        .mount(&server)
        .await;
    let gl = gitlab(&server);
    assert_eq!(
        gl.merge_base(&group_repo(), "main", &sha())
            .await
            .unwrap()
            .as_str(),
        "1a0b36b3cdad1d2ee32457c102a8c0b7056fa863"
    );
    let reqs = server.received_requests().await.unwrap();
    let q = reqs[0].url.query().unwrap();
    assert!(q.contains("refs%5B%5D=main") && q.contains(SHA), "{q}");
    assert_eq!(
        gl.branch_head(&group_repo(), "feature/x")
            .await
            .unwrap()
            .as_str(),
        SHA
    );
    let labels = gl.labels(&group_repo(), 14656).await.unwrap();
    assert!(labels.contains(&"backend".to_owned()));
}

#[tokio::test]
async fn gitlab_cannot_transition_on_a_repeated_state_counts_as_done() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("{GL}/statuses/{SHA}")))
        .and(body_partial_json(
            serde_json::json!({"state": "pending", "name": "prdiff/main"}),
        ))
        .respond_with(ResponseTemplate::new(400).set_body_json(serde_json::json!({
            "message": "Cannot transition status via :enqueue from :pending (Reasons: )"
        })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{GL}/statuses/{SHA}")))
        .and(body_partial_json(serde_json::json!({"state": "failed"})))
        .respond_with(ResponseTemplate::new(400).set_body_json(serde_json::json!({
            "message": "400 Bad request - state does not have a valid value"
        })))
        .mount(&server)
        .await;
    let gl = gitlab(&server);
    let mut status = CommitStatus {
        state: StatusState::Pending,
        context: "prdiff/main".into(),
        description: "waiting".into(),
        target_url: None,
    };
    gl.set_status(&group_repo(), &sha(), &status).await.unwrap();
    status.state = StatusState::Error;
    let err = gl
        .set_status(&group_repo(), &sha(), &status)
        .await
        .unwrap_err();
    assert!(
        matches!(err, GitHostError::Http { status: 400, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn gitlab_notes_are_created_then_edited_by_marker() {
    let server = MockServer::start().await;
    let marker = "<!-- prdiff:main -->";
    Mock::given(method("GET"))
        .and(path(format!("{GL}/merge_requests/5/notes")))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!([
            { "id": 301, "body": format!("{marker} old"), "system": false },
            { "id": 302, "body": "merged", "system": true }
        ])))
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path(format!("{GL}/merge_requests/5/notes/301")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({ "id": 301, "body": "new", "system": false })),
        )
        .expect(1)
        .mount(&server)
        .await;
    let r = gitlab(&server)
        .upsert_comment(&group_repo(), 5, marker, &format!("{marker} new"))
        .await
        .unwrap();
    assert_eq!((r.id, r.created), (301, false));
}

#[tokio::test]
async fn http_git_hosts_build_clients_from_configurations_and_secrets() {
    use prdiff_shared::githost::GitHosts;
    use prdiff_shared::githost::http::HttpGitHosts;
    use prdiff_shared::secrets::local::LocalSecrets;

    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/octo/analytics/issues/3/labels"))
        .and(header("authorization", "Bearer ghp_from_secrets"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!([{"name": "x"}])))
        .mount(&server)
        .await;
    let secrets = Arc::new(LocalSecrets::in_memory());
    let mut cfg = crate::webhook::config("main", "github", "octo/analytics", "");
    cfg.repository.api_base_url = Some(server.uri().parse().unwrap());
    secrets.insert(&cfg.secret_names()[1].clone(), "ghp_from_secrets");
    let hosts = HttpGitHosts::new(secrets, settings());
    let host = hosts.for_config(&cfg).await.unwrap();
    assert_eq!(host.labels(&repo(), 3).await.unwrap(), ["x"]);
}

#[tokio::test]
async fn the_webhook_with_the_real_github_client_asks_the_merge_base_and_sets_pending() {
    use prdiff_shared::githost::http::HttpGitHosts;
    use prdiff_shared::secrets::local::LocalSecrets;
    use prdiff_shared::store::RunStore;

    let server = MockServer::start().await;
    let head = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";
    Mock::given(method("GET"))
        .and(path(format!(
            "/repos/Codertocat/Hello-World/compare/master...{head}"
        )))
        .and(header("authorization", "Bearer ghp_hook"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(rest("Repository.testCompare.response0.get.200.json")),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!(
            "/repos/Codertocat/Hello-World/statuses/{head}"
        )))
        .and(body_partial_json(serde_json::json!({
            "state": "pending", "context": "prdiff/hello"
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(rest(
            "Commit.testCreateStatusWithAllParameters.response0.post.201.json",
        )))
        .expect(1)
        .mount(&server)
        .await;

    let mut cfg = crate::webhook::config("hello", "github", "Codertocat/Hello-World", "");
    cfg.repository.api_base_url = Some(server.uri().parse().unwrap());
    let mut h = crate::webhook::Harness::new(&[cfg.clone()]).await;
    let secrets = Arc::new(LocalSecrets::in_memory());
    secrets.insert(&cfg.secret_names()[1].clone(), "ghp_hook");
    h.deps.hosts = Arc::new(HttpGitHosts::new(secrets, settings()));

    let req = crate::webhook::github(
        "pull_request",
        "real-1",
        crate::webhook::fixture("github/pull_request.opened.json"),
    );
    let (status, body) = h.send(&req).await;
    assert_eq!(status, 202, "{body}");
    let run = h
        .store
        .current_run(
            &cfg.name,
            &prdiff_shared::run::PrKey {
                provider: prdiff_shared::config::Provider::Github,
                repository: RepoName::parse("Codertocat/Hello-World").unwrap(),
                number: 2,
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        run.base_sha.as_str(),
        "4303c5b90e2216d927155e9609436ccb8984c495"
    );
}

#[tokio::test]
async fn a_git_host_outage_answers_503_and_a_retry_is_processed() {
    use prdiff_shared::githost::http::HttpGitHosts;
    use prdiff_shared::secrets::local::LocalSecrets;

    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(rest("Repository.testCompare.response0.get.200.json")),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_body_json(serde_json::json!({"id": 1})))
        .mount(&server)
        .await;
    let mut cfg = crate::webhook::config("hello", "github", "Codertocat/Hello-World", "");
    cfg.repository.api_base_url = Some(server.uri().parse().unwrap());
    let mut h = crate::webhook::Harness::new(&[cfg.clone()]).await;
    let secrets = Arc::new(LocalSecrets::in_memory());
    secrets.insert(&cfg.secret_names()[1].clone(), "ghp_hook");
    h.deps.hosts = Arc::new(HttpGitHosts::new(secrets, settings()));
    let req = crate::webhook::github(
        "pull_request",
        "outage-1",
        crate::webhook::fixture("github/pull_request.opened.json"),
    );
    let (status, body) = h.send(&req).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["retryable"], true);
    assert!(h.poll.is_empty());
    // The claim was released: the host's retry of the same delivery goes through.
    let (status, body) = h.send(&req).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(h.poll.len(), 1);
}

fn octokit(name: &str) -> Value {
    let path = prdiff_tests::fixtures().join("github/rest").join(name);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[tokio::test]
async fn the_recorded_octokit_status_exchange_is_what_set_status_sends() {
    // octokit/fixtures' create-status scenario: the request body GitHub accepted, and its
    // 201 answer. Our request must carry the same fields.
    let recorded = octokit("octokit-fixtures.create-status.normalized.json");
    let exchange = &recorded[0];
    let server = MockServer::start().await;
    let sha = "0000000000000000000000000000000000000001";
    Mock::given(method("POST"))
        .and(path(format!(
            "/repos/octokit-fixture-org/create-status/statuses/{sha}"
        )))
        .and(body_partial_json(exchange["body"].clone()))
        .respond_with(ResponseTemplate::new(201).set_body_json(exchange["response"].clone()))
        .expect(1)
        .mount(&server)
        .await;
    let body = &exchange["body"];
    let status = CommitStatus {
        state: StatusState::Failure,
        context: body["context"].as_str().unwrap().into(),
        description: body["description"].as_str().unwrap().into(),
        target_url: body["target_url"].as_str().map(str::to_owned),
    };
    assert_eq!(body["state"], "failure");
    github(&server)
        .set_status(
            &RepoName::parse("octokit-fixture-org/create-status").unwrap(),
            &CommitSha::parse(sha).unwrap(),
            &status,
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_validation_failure_is_reported_with_githubs_message_and_not_retried() {
    let recorded = octokit("octokit-fixtures.errors-422.normalized.json");
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(422).set_body_json(recorded[0]["response"].clone()))
        .expect(1)
        .mount(&server)
        .await;
    let status = CommitStatus {
        state: StatusState::Pending,
        context: "prdiff/main".into(),
        description: "waiting".into(),
        target_url: None,
    };
    let err = github(&server)
        .set_status(&repo(), &sha(), &status)
        .await
        .unwrap_err();
    assert!(
        matches!(err, GitHostError::Http { status: 422, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("Validation Failed"));
    assert!(!err.is_retryable());
}

// GitHub Checks. Request and response shapes from GitHub's REST docs:
// create: https://docs.github.com/en/rest/checks/runs#create-a-check-run
// update: https://docs.github.com/en/rest/checks/runs#update-a-check-run
//   ("annotations … maximum of 50 … Each time you update the check run, annotations are
//   appended to the list of annotations that already exist")
// list for a ref: https://docs.github.com/en/rest/checks/runs#list-check-runs-for-a-git-reference
// The check run object is the one GitHub's `check_run` webhook carries (recorded fixture).

use prdiff_shared::githost::{AnnotationLevel, CheckAnnotation, CheckConclusion, CheckOutput};

fn check_run_object() -> Value {
    let path = prdiff_tests::fixtures().join("github/check_run.created.json");
    let event: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    event["check_run"].clone()
}

const CHECK_RUNS: &str = "/api/v3/repos/octo/analytics/check-runs";

fn check_output(annotations: usize) -> CheckOutput {
    CheckOutput {
        conclusion: CheckConclusion::Failure,
        title: "prdiff: 1 of 120 models failed, 3 with differences".into(),
        summary: "## prdiff · shop\n\nthe report".into(),
        annotations: (0..annotations)
            .map(|i| CheckAnnotation {
                path: format!("models/m{i}.sql"),
                level: if i == 0 {
                    AnnotationLevel::Failure
                } else {
                    AnnotationLevel::Notice
                },
                title: format!("m{i}: no differences"),
                message: "rows 10 → 10 · changed 0".into(),
            })
            .collect(),
    }
}

fn bodies(reqs: &[Request], verb: &str, path_end: &str) -> Vec<Value> {
    reqs.iter()
        .filter(|r| r.method.as_str() == verb && r.url.path().ends_with(path_end))
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

#[tokio::test]
async fn a_github_app_check_run_is_started_then_completed_with_annotations_in_batches_of_50() {
    let pem = test_rsa_key();
    let server = app_server("2099-01-01T00:00:00Z").await;
    let run = check_run_object();
    let id = run["id"].as_u64().unwrap();
    Mock::given(method("POST"))
        .and(path(CHECK_RUNS))
        .and(header(
            "authorization",
            "Bearer ghs_1llwuELtXN5HDOB99XhpcTXdJxbOuF0ZlSmj",
        ))
        .respond_with(ResponseTemplate::new(201).set_body_json(run.clone()))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!(
            "/api/v3/repos/octo/analytics/commits/{SHA}/check-runs"
        )))
        .and(query_param("check_name", "prdiff/shop"))
        .and(query_param("filter", "latest"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"total_count": 1, "check_runs": [run.clone()]})),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(format!("{CHECK_RUNS}/{id}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(run.clone()))
        .expect(3)
        .mount(&server)
        .await;
    let gh = app_client(&server, &pem);
    assert!(
        gh.start_check_run(&repo(), &sha(), "prdiff/shop")
            .await
            .unwrap()
    );
    let output = check_output(120);
    assert!(
        gh.complete_check_run(&repo(), &sha(), "prdiff/shop", &output)
            .await
            .unwrap()
    );
    let reqs = server.received_requests().await.unwrap();
    let created = bodies(&reqs, "POST", "/check-runs");
    assert_eq!(
        created,
        [serde_json::json!({"name": "prdiff/shop", "head_sha": SHA, "status": "in_progress"})]
    );
    let updates = bodies(&reqs, "PATCH", &format!("/check-runs/{id}"));
    assert_eq!(updates.len(), 3);
    assert_eq!(updates[0]["status"], "completed");
    assert_eq!(updates[0]["conclusion"], "failure");
    assert_eq!(updates[0]["output"]["title"], output.title);
    assert_eq!(updates[0]["output"]["summary"], output.summary);
    let batch_sizes: Vec<usize> = updates
        .iter()
        .map(|u| u["output"]["annotations"].as_array().unwrap().len())
        .collect();
    assert_eq!(batch_sizes, [50, 50, 20]);
    // Later batches only append annotations: the run stays as completed.
    assert!(updates[1].get("conclusion").is_none() && updates[1].get("status").is_none());
    assert_eq!(
        updates[0]["output"]["annotations"][0],
        serde_json::json!({
            "path": "models/m0.sql", "start_line": 1, "end_line": 1,
            "annotation_level": "failure", "title": "m0: no differences",
            "message": "rows 10 → 10 · changed 0"
        })
    );
    let paths: Vec<&str> = updates
        .iter()
        .flat_map(|u| u["output"]["annotations"].as_array().unwrap())
        .map(|a| a["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths.len(), 120);
    assert_eq!(paths[119], "models/m119.sql");
}

#[tokio::test]
async fn a_check_run_never_started_is_created_completed() {
    let pem = test_rsa_key();
    let server = app_server("2099-01-01T00:00:00Z").await;
    let run = check_run_object();
    Mock::given(method("GET"))
        .and(path(format!(
            "/api/v3/repos/octo/analytics/commits/{SHA}/check-runs"
        )))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"total_count": 0, "check_runs": []})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(CHECK_RUNS))
        .respond_with(ResponseTemplate::new(201).set_body_json(run))
        .expect(1)
        .mount(&server)
        .await;
    let gh = app_client(&server, &pem);
    let mut output = check_output(3);
    output.conclusion = CheckConclusion::Neutral;
    gh.complete_check_run(&repo(), &sha(), "prdiff/shop", &output)
        .await
        .unwrap();
    let reqs = server.received_requests().await.unwrap();
    let created = bodies(&reqs, "POST", "/check-runs");
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["name"], "prdiff/shop");
    assert_eq!(created[0]["head_sha"], SHA);
    assert_eq!(created[0]["status"], "completed");
    assert_eq!(created[0]["conclusion"], "neutral");
    assert_eq!(
        created[0]["output"]["annotations"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert!(bodies(&reqs, "PATCH", "").is_empty());
}

#[tokio::test]
async fn a_check_run_summary_is_kept_within_githubs_limit() {
    let pem = test_rsa_key();
    let server = app_server("2099-01-01T00:00:00Z").await;
    Mock::given(method("GET"))
        .and(path(format!(
            "/api/v3/repos/octo/analytics/commits/{SHA}/check-runs"
        )))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"total_count": 0, "check_runs": []})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(CHECK_RUNS))
        .respond_with(ResponseTemplate::new(201).set_body_json(check_run_object()))
        .mount(&server)
        .await;
    let mut output = check_output(0);
    output.summary = "é".repeat(70_000);
    app_client(&server, &pem)
        .complete_check_run(&repo(), &sha(), "prdiff/shop", &output)
        .await
        .unwrap();
    let reqs = server.received_requests().await.unwrap();
    let created = bodies(&reqs, "POST", "/check-runs");
    let summary = created[0]["output"]["summary"].as_str().unwrap();
    assert_eq!(summary.chars().count(), 65_535);
}

#[tokio::test]
async fn without_checks_write_the_403_carries_githubs_message_and_is_not_retried() {
    let pem = test_rsa_key();
    let server = app_server("2099-01-01T00:00:00Z").await;
    // GitHub's error body (https://docs.github.com/en/rest/using-the-rest-api/troubleshooting-the-rest-api#resource-not-accessible).
    Mock::given(method("POST"))
        .and(path(CHECK_RUNS))
        .respond_with(ResponseTemplate::new(403).set_body_json(serde_json::json!({
            "message": "Resource not accessible by integration",
            "documentation_url": "https://docs.github.com/rest/checks/runs#create-a-check-run",
            "status": "403"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let err = app_client(&server, &pem)
        .start_check_run(&repo(), &sha(), "prdiff/shop")
        .await
        .unwrap_err();
    assert!(
        matches!(err, GitHostError::Http { status: 403, .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("Resource not accessible by integration"),
        "{err}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn with_a_token_no_check_run_is_requested() {
    let server = MockServer::start().await;
    let gh = github(&server);
    assert!(
        !gh.start_check_run(&repo(), &sha(), "prdiff/shop")
            .await
            .unwrap()
    );
    assert!(
        !gh.complete_check_run(&repo(), &sha(), "prdiff/shop", &check_output(2))
            .await
            .unwrap()
    );
    assert!(server.received_requests().await.unwrap().is_empty());
}
