//! The webhook intake end to end in one process: real GitHub/GitLab payloads through
//! `prdiff_webhook::handle` with the in-process adapters (SQLite store in memory, memory
//! queue, memory git host, memory secrets).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use prdiff_shared::config::{
    CiConfig, CommitSha, ConfigFile, ConfigId, Provider, RepoName, SecretName,
};
use prdiff_shared::githost::StatusState;
use prdiff_shared::githost::memory::MemoryGitHost;
use prdiff_shared::messages::{Message, SyncReason};
use prdiff_shared::queue::memory::MemoryQueue;
use prdiff_shared::run::{PrKey, RunState};
use prdiff_shared::secrets::local::LocalSecrets;
use prdiff_shared::store::embedded::EmbeddedStore;
use prdiff_shared::store::{ConfigStore, RunStore};
use prdiff_webhook::{Deps, FromHttpV2, IntoHttpV2, Settings, WebhookRequest, handle};
use serde_json::Value;
use sha2::Sha256;

pub const SECRET: &str = "It's a Secret to Everybody";
const HEAD: &str = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";
const BASE: &str = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e";

/// A configuration for `provider:repo` with TOML edits applied, secrets named after it.
pub fn config(name: &str, provider: &str, repo: &str, extra: &str) -> CiConfig {
    let text = format!(
        r#"
[[ci_config]]
name = "{name}"
data_source = "wh"
repository = {{ provider = "{provider}", full_name = "{repo}" }}
git_auth = {{ kind = "token", token = {{ secret = "prdiff/{name}/git-token" }} }}
dbt_cloud = {{ access_url = "https://cloud.getdbt.com", account_id = 1, api_key = {{ secret = "prdiff/{name}/dbt-api-key" }}, artifacts_job_id = 2, pr_job_id = 3 }}
{extra}
"#
    );
    let file = ConfigFile::parse(
        &text,
        &[prdiff_shared::config::DataSourceId::parse("wh").unwrap()],
    )
    .unwrap_or_else(|e| panic!("{e}\n{text}"));
    file.ci_configs
        .into_iter()
        .next()
        .unwrap()
        .map_secrets(|_, s| match s {
            prdiff_shared::config::SecretSource::Stored { secret } => Ok::<_, String>(secret),
            other => Err(format!("{other:?}")),
        })
        .unwrap()
}

/// The in-process wiring, with handles on each fake.
pub struct Harness {
    pub deps: Deps,
    pub store: Arc<EmbeddedStore>,
    pub host: MemoryGitHost,
    pub poll: Arc<MemoryQueue>,
    pub sync: Arc<MemoryQueue>,
}

impl Harness {
    pub async fn new(configs: &[CiConfig]) -> Self {
        let store = Arc::new(EmbeddedStore::in_memory());
        store.put_all(&[], configs).await.unwrap();
        let secrets = Arc::new(LocalSecrets::in_memory());
        let secret_name = SecretName::parse("prdiff/webhook-secret").unwrap();
        secrets.insert(&secret_name, SECRET);
        let host = MemoryGitHost::new();
        for repo in [
            "Codertocat/Hello-World",
            "gitlabhq/gitlab-test",
            "test/woodpecker",
        ] {
            let repo = RepoName::parse(repo).unwrap();
            host.set_branch_head(&repo, "master", sha(BASE));
        }
        let poll = Arc::new(MemoryQueue::new());
        let sync = Arc::new(MemoryQueue::new());
        let deps = Deps {
            configs: store.clone(),
            runs: store.clone(),
            secrets,
            hosts: Arc::new(host.clone()),
            poll_queue: poll.clone(),
            sync_queue: sync.clone(),
            settings: Settings::new(secret_name),
        };
        Self {
            deps,
            store,
            host,
            poll,
            sync,
        }
    }

    pub async fn send(&self, req: &WebhookRequest) -> (u16, Value) {
        let resp = handle(req, &self.deps).await;
        (resp.status, resp.body)
    }

    /// Nothing was recorded, queued or reported on the git host.
    pub async fn assert_nothing_happened(&self) {
        assert!(self.poll.is_empty(), "poll queue");
        assert!(self.sync.is_empty(), "sync queue");
        assert!(self.host.statuses().is_empty(), "statuses");
        let key = gh_pr_key();
        for c in self.store.list_configs().await.unwrap() {
            assert_eq!(self.store.current_run(&c.name, &key).await.unwrap(), None);
        }
    }
}

pub fn sha(s: &str) -> CommitSha {
    CommitSha::parse(s).unwrap()
}

fn gh_pr_key() -> PrKey {
    PrKey {
        provider: Provider::Github,
        repository: RepoName::parse("Codertocat/Hello-World").unwrap(),
        number: 2,
    }
}

pub fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(prdiff_tests::fixtures().join(rel)).unwrap()
}

pub fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A signed GitHub delivery.
pub fn github(event: &str, delivery: &str, body: Vec<u8>) -> WebhookRequest {
    let sig = sign(&body);
    WebhookRequest::new(
        [
            ("X-GitHub-Event", event),
            ("X-GitHub-Delivery", delivery),
            ("X-Hub-Signature-256", sig.as_str()),
            ("Content-Type", "application/json"),
        ],
        body,
    )
}

fn gitlab(event: &str, key: &str, token: &str, body: Vec<u8>) -> WebhookRequest {
    WebhookRequest::new(
        [
            ("X-Gitlab-Event", event),
            ("Idempotency-Key", key),
            ("X-Gitlab-Token", token),
            ("Content-Type", "application/json"),
        ],
        body,
    )
}

fn edit(rel: &str, f: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&fixture(rel)).unwrap();
    f(&mut v);
    serde_json::to_vec(&v).unwrap()
}

fn hello(extra: &str) -> CiConfig {
    config("hello", "github", "Codertocat/Hello-World", extra)
}

#[tokio::test]
async fn an_opened_pull_request_records_a_run_sets_pending_and_queues_a_delayed_poll() {
    let h = Harness::new(&[hello("")]).await;
    let (status, body) = h
        .send(&github(
            "pull_request",
            "d-1",
            fixture("github/pull_request.opened.json"),
        ))
        .await;
    assert_eq!(status, 202, "{body}");
    let run_id = body["runs"][0]["run_id"].as_str().unwrap().to_owned();

    let run = h
        .store
        .current_run(&ConfigId::parse("hello").unwrap(), &gh_pr_key())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run.id.as_str(), run_id);
    assert_eq!(run.state, RunState::WaitingForDbt);
    assert_eq!(run.head_sha.as_str(), HEAD);
    assert_eq!(run.base_sha.as_str(), BASE);

    let statuses = h.host.statuses();
    assert_eq!(statuses.len(), 1);
    assert_eq!(statuses[0].1.as_str(), HEAD);
    assert_eq!(statuses[0].2.state, StatusState::Pending);
    assert_eq!(statuses[0].2.context, "prdiff/hello");

    // The poll message waits for its delay (60 s by default).
    assert_eq!(h.poll.len(), 1);
    assert!(h.poll.take_due().is_empty());
}

#[tokio::test]
async fn a_redelivery_changes_nothing() {
    let h = Harness::new(&[hello("")]).await;
    let req = github(
        "pull_request",
        "d-2",
        fixture("github/pull_request.opened.json"),
    );
    assert_eq!(h.send(&req).await.0, 202);
    let run = h
        .store
        .current_run(&ConfigId::parse("hello").unwrap(), &gh_pr_key())
        .await
        .unwrap();
    let (status, body) = h.send(&req).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("duplicate")));
    assert_eq!(h.poll.len(), 1);
    assert_eq!(h.host.statuses().len(), 1);
    let again = h
        .store
        .current_run(&ConfigId::parse("hello").unwrap(), &gh_pr_key())
        .await
        .unwrap();
    assert_eq!(run, again);
}

#[tokio::test]
async fn a_new_commit_supersedes_the_open_run_of_the_pr() {
    let h = Harness::new(&[hello("")]).await;
    let (_, first) = h
        .send(&github(
            "pull_request",
            "d-3",
            fixture("github/pull_request.opened.json"),
        ))
        .await;
    let newer = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let body = edit("github/pull_request.synchronize.json", |v| {
        v["pull_request"]["head"]["sha"] = newer.into();
    });
    let (status, second) = h.send(&github("pull_request", "d-4", body)).await;
    assert_eq!(status, 202, "{second}");
    assert_eq!(second["runs"][0]["superseded"], first["runs"][0]["run_id"]);
    let old = h
        .store
        .get_run(
            &prdiff_shared::run::RunId::parse(first["runs"][0]["run_id"].as_str().unwrap())
                .unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(old.state, RunState::Superseded);
    let current = h
        .store
        .current_run(&ConfigId::parse("hello").unwrap(), &gh_pr_key())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(current.head_sha.as_str(), newer);
    assert_eq!(h.poll.len(), 2);
}

#[tokio::test]
async fn the_same_head_from_another_event_does_not_start_a_second_run() {
    let h = Harness::new(&[hello("")]).await;
    h.send(&github(
        "pull_request",
        "d-5",
        fixture("github/pull_request.opened.json"),
    ))
    .await;
    let (status, body) = h
        .send(&github(
            "pull_request",
            "d-6",
            fixture("github/pull_request.reopened.json"),
        ))
        .await;
    assert_eq!(status, 202);
    assert_eq!(body["runs"][0]["already_running"], true);
    assert_eq!(h.poll.len(), 1);
}

#[tokio::test]
async fn closing_the_pull_request_cancels_its_open_run() {
    let h = Harness::new(&[hello("")]).await;
    h.send(&github(
        "pull_request",
        "d-7",
        fixture("github/pull_request.opened.json"),
    ))
    .await;
    let (status, body) = h
        .send(&github(
            "pull_request",
            "d-8",
            fixture("github/pull_request.closed.json"),
        ))
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("cancelled")),
        "{body}"
    );
    let run = h
        .store
        .current_run(&ConfigId::parse("hello").unwrap(), &gh_pr_key())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run.state, RunState::Cancelled);
}

#[tokio::test]
async fn gated_events_are_answered_200_with_the_reason_and_record_nothing() {
    let cases: [(&str, &str, &str); 3] = [
        (
            "require_label = { enabled = true }",
            "github/pull_request.opened.json",
            "`datafold`",
        ),
        (
            "skip_pull_requests = true",
            "github/pull_request.opened.json",
            "skips pull requests",
        ),
        (
            "",
            "github/pull_request.labeled.json",
            "labels start runs only",
        ),
    ];
    for (i, (extra, file, reason)) in cases.into_iter().enumerate() {
        let h = Harness::new(&[hello(extra)]).await;
        let (status, body) = h
            .send(&github("pull_request", &format!("g-{i}"), fixture(file)))
            .await;
        assert_eq!(status, 200, "{body}");
        assert!(body["reason"].as_str().unwrap().contains(reason), "{body}");
        h.assert_nothing_happened().await;
    }
    let h = Harness::new(&[hello("")]).await;
    let draft = edit("github/pull_request.opened.json", |v| {
        v["pull_request"]["draft"] = true.into()
    });
    let (status, body) = h.send(&github("pull_request", "g-draft", draft)).await;
    assert!(
        status == 200 && body["reason"].as_str().unwrap().contains("draft"),
        "{body}"
    );
    h.assert_nothing_happened().await;
}

#[tokio::test]
async fn adding_the_required_label_starts_the_run() {
    let h = Harness::new(&[hello("require_label = { enabled = true, name = \"bug\" }")]).await;
    let (status, body) = h
        .send(&github(
            "pull_request",
            "l-1",
            fixture("github/pull_request.labeled.json"),
        ))
        .await;
    assert_eq!(status, 202, "{body}");
}

#[tokio::test]
async fn a_pr_touching_only_ignored_files_gets_a_success_status_saying_so() {
    let h = Harness::new(&[hello("files_to_ignore = \"docs/\\n*.md\"")]).await;
    let repo = RepoName::parse("Codertocat/Hello-World").unwrap();
    h.host.set_files(&repo, 2, &["docs/a.html", "README.md"]);
    let (status, body) = h
        .send(&github(
            "pull_request",
            "i-1",
            fixture("github/pull_request.opened.json"),
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    let statuses = h.host.statuses();
    assert_eq!(statuses.len(), 1);
    assert_eq!(statuses[0].2.state, StatusState::Success);
    assert!(statuses[0].2.description.contains("files_to_ignore"));
    assert!(h.poll.is_empty());

    h.host
        .set_files(&repo, 2, &["README.md", "models/orders.sql"]);
    let body = edit("github/pull_request.synchronize.json", |v| {
        v["pull_request"]["head"]["sha"] = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb".into();
    });
    assert_eq!(h.send(&github("pull_request", "i-2", body)).await.0, 202);
}

#[tokio::test]
async fn latest_base_selection_uses_the_base_branch_head() {
    let h = Harness::new(&[hello("base_commit = \"latest\"")]).await;
    let repo = RepoName::parse("Codertocat/Hello-World").unwrap();
    let latest = "cccccccccccccccccccccccccccccccccccccccc";
    h.host.set_branch_head(&repo, "master", sha(latest));
    h.host.set_merge_base(&repo, &sha(HEAD), sha(BASE));
    assert_eq!(
        h.send(&github(
            "pull_request",
            "b-1",
            fixture("github/pull_request.opened.json")
        ))
        .await
        .0,
        202
    );
    let run = h
        .store
        .current_run(&ConfigId::parse("hello").unwrap(), &gh_pr_key())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run.base_sha.as_str(), latest);
}

#[tokio::test]
async fn a_push_to_the_default_branch_queues_a_sync_when_configured() {
    let h = Harness::new(&[hello("sync_on_push = true")]).await;
    let (status, body) = h
        .send(&github(
            "push",
            "p-1",
            fixture("github/push.with-new-branch.json"),
        ))
        .await;
    assert_eq!(status, 202, "{body}");
    let msgs = h.sync.take_due();
    assert!(matches!(&msgs[..], [Message::Sync(s)] if matches!(s.reason, SyncReason::Push { .. })));
    // A tag deletion is not a sync.
    let (status, body) = h
        .send(&github("push", "p-2", fixture("github/push.json")))
        .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ignored")));
    let h = Harness::new(&[hello("")]).await;
    let (status, _) = h
        .send(&github(
            "push",
            "p-3",
            fixture("github/push.with-new-branch.json"),
        ))
        .await;
    assert_eq!(status, 200);
    assert!(h.sync.is_empty());
}

#[tokio::test]
async fn ping_is_answered_pong() {
    let h = Harness::new(&[]).await;
    let (status, body) = h
        .send(&github("ping", "ping-1", fixture("github/ping.json")))
        .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("pong")));
}

// ---- bad input: each answered with the right status and nothing stored or queued ----

#[tokio::test]
async fn a_wrong_or_missing_signature_is_rejected_and_nothing_is_stored() {
    let h = Harness::new(&[hello("")]).await;
    let body = fixture("github/pull_request.opened.json");
    let mut req = github("pull_request", "s-1", body.clone());
    req.headers.insert(
        "x-hub-signature-256".into(),
        format!("sha256={}", "0".repeat(64)),
    );
    assert_eq!(h.send(&req).await.0, 401);
    req.headers.remove("x-hub-signature-256");
    assert_eq!(h.send(&req).await.0, 401);
    h.assert_nothing_happened().await;
    // Nothing stored includes the delivery id: the genuine delivery still goes through.
    assert_eq!(h.send(&github("pull_request", "s-1", body)).await.0, 202);
}

#[tokio::test]
async fn a_signature_over_a_reserialised_body_fails() {
    let h = Harness::new(&[hello("")]).await;
    let raw = fixture("github/pull_request.opened.json");
    let sig = sign(&raw);
    let v: Value = serde_json::from_slice(&raw).unwrap();
    let reserialised = serde_json::to_vec(&v).unwrap();
    assert_ne!(raw, reserialised);
    let mut req = github("pull_request", "s-2", reserialised);
    req.headers.insert("x-hub-signature-256".into(), sig);
    assert_eq!(h.send(&req).await.0, 401);
    h.assert_nothing_happened().await;
}

#[tokio::test]
async fn truncated_json_is_a_400_and_nothing_is_stored() {
    let h = Harness::new(&[hello("")]).await;
    let mut body = fixture("github/pull_request.opened.json");
    body.truncate(body.len() / 2);
    let (status, resp) = h.send(&github("pull_request", "t-1", body)).await;
    assert_eq!(status, 400);
    assert!(resp["error"].as_str().unwrap().contains("JSON"));
    h.assert_nothing_happened().await;
}

#[tokio::test]
async fn a_form_encoded_delivery_is_a_400_naming_the_content_type() {
    let h = Harness::new(&[hello("")]).await;
    let mut req = github(
        "pull_request",
        "c-1",
        fixture("github/pull_request.opened.json"),
    );
    req.headers.insert(
        "content-type".into(),
        "application/x-www-form-urlencoded".into(),
    );
    let (status, body) = h.send(&req).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("content type"));
    h.assert_nothing_happened().await;
}

#[tokio::test]
async fn a_thirty_megabyte_body_is_a_413() {
    let h = Harness::new(&[hello("")]).await;
    let body = vec![b' '; 30 * 1024 * 1024];
    let (status, _) = h.send(&github("pull_request", "big-1", body.clone())).await;
    assert_eq!(status, 413);
    // Through the Lambda event too (base64), refused before decoding.
    let mut ev = aws_lambda_events::apigw::ApiGatewayV2httpRequest::default();
    ev.is_base64_encoded = true;
    ev.body = Some(base64::engine::general_purpose::STANDARD.encode(&body));
    let resp = WebhookRequest::from_http_v2(ev, h.deps.settings.max_body_bytes).unwrap_err();
    assert_eq!(resp.status, 413);
    h.assert_nothing_happened().await;
}

#[tokio::test]
async fn an_unknown_event_is_ignored_with_a_reason() {
    let h = Harness::new(&[hello("")]).await;
    let (status, body) = h
        .send(&github(
            "issue_comment",
            "u-1",
            fixture("github/issue_comment.created.json"),
        ))
        .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ignored")));
    assert!(body["reason"].as_str().unwrap().contains("issue_comment"));
    h.assert_nothing_happened().await;
}

#[tokio::test]
async fn an_unknown_repository_is_ignored_and_nothing_is_stored() {
    let h = Harness::new(&[config("other", "github", "acme/other", "")]).await;
    let (status, body) = h
        .send(&github(
            "pull_request",
            "r-1",
            fixture("github/pull_request.opened.json"),
        ))
        .await;
    assert_eq!(status, 200);
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("unknown repository")
    );
    assert!(h.poll.is_empty() && h.host.statuses().is_empty());
    // The delivery id was not claimed either.
    assert!(
        h.store
            .claim_delivery("github:r-1", Duration::from_secs(60))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn payloads_with_missing_fields_are_400s_naming_the_field() {
    let h = Harness::new(&[hello("")]).await;
    let body = edit("github/pull_request.opened.json", |v| {
        v["pull_request"]["head"]
            .as_object_mut()
            .unwrap()
            .remove("sha");
    });
    let (status, resp) = h.send(&github("pull_request", "m-1", body)).await;
    assert_eq!(status, 400);
    assert!(
        resp["error"]
            .as_str()
            .unwrap()
            .contains("pull_request.head.sha"),
        "{resp}"
    );
    let body = edit("github/pull_request.opened.json", |v| {
        v.as_object_mut().unwrap().remove("repository");
    });
    assert_eq!(h.send(&github("pull_request", "m-2", body)).await.0, 400);
    h.assert_nothing_happened().await;
}

#[tokio::test]
async fn missing_event_or_delivery_headers_are_400s() {
    let h = Harness::new(&[hello("")]).await;
    let body = fixture("github/pull_request.opened.json");
    let req = WebhookRequest::new([("Content-Type", "application/json")], body.clone());
    assert_eq!(h.send(&req).await.0, 400);
    let mut req = github("pull_request", "x", body);
    req.headers.remove("x-github-delivery");
    assert_eq!(h.send(&req).await.0, 400);
    h.assert_nothing_happened().await;
}

// ---- GitLab ----

fn gitlab_config(extra: &str) -> CiConfig {
    config("gl", "gitlab", "gitlabhq/gitlab-test", extra)
}

#[tokio::test]
async fn a_gitlab_merge_request_with_the_right_token_starts_a_run() {
    let h = Harness::new(&[gitlab_config("")]).await;
    let body = fixture("gitlab/gitlab-docs.merge_request.open.json");
    let (status, resp) = h
        .send(&gitlab("Merge Request Hook", "k-1", SECRET, body.clone()))
        .await;
    assert_eq!(status, 202, "{resp}");
    // Redelivery with the same Idempotency-Key changes nothing.
    let (status, resp) = h
        .send(&gitlab("Merge Request Hook", "k-1", SECRET, body))
        .await;
    assert_eq!((status, resp["status"].as_str()), (200, Some("duplicate")));
    assert_eq!(h.poll.len(), 1);
}

#[tokio::test]
async fn a_gitlab_delivery_with_a_wrong_token_is_rejected() {
    let h = Harness::new(&[gitlab_config("")]).await;
    let body = fixture("gitlab/gitlab-docs.merge_request.open.json");
    assert_eq!(
        h.send(&gitlab("Merge Request Hook", "k-2", "nope", body.clone()))
            .await
            .0,
        401
    );
    let mut req = gitlab("Merge Request Hook", "k-2", SECRET, body);
    req.headers.remove("x-gitlab-token");
    assert_eq!(h.send(&req).await.0, 401);
    assert!(h.poll.is_empty() && h.host.statuses().is_empty());
}

#[tokio::test]
async fn a_gitlab_update_with_new_commits_supersedes_and_a_merge_cancels() {
    let woodpecker = config("wp", "gitlab", "test/woodpecker", "");
    let h = Harness::new(&[woodpecker]).await;
    let open = edit("gitlab/go-gitlab.service_merge_request.json", |v| {
        v["object_attributes"]["action"] = "open".into();
        v["object_attributes"]["last_commit"]["id"] =
            "dddddddddddddddddddddddddddddddddddddddd".into();
        v["object_attributes"]["oldrev"] = Value::Null;
    });
    assert_eq!(
        h.send(&gitlab("Merge Request Hook", "w-1", SECRET, open))
            .await
            .0,
        202
    );
    let update = fixture("gitlab/go-gitlab.service_merge_request.json");
    let (status, resp) = h
        .send(&gitlab("Merge Request Hook", "w-2", SECRET, update))
        .await;
    assert_eq!(status, 202, "{resp}");
    assert!(resp["runs"][0]["superseded"].is_string(), "{resp}");
    let merged = edit("gitlab/go-gitlab.service_merge_request.json", |v| {
        v["object_attributes"]["action"] = "merge".into();
    });
    let (status, resp) = h
        .send(&gitlab("Merge Request Hook", "w-3", SECRET, merged))
        .await;
    assert_eq!(
        (status, resp["status"].as_str()),
        (200, Some("cancelled")),
        "{resp}"
    );
}

#[tokio::test]
async fn a_gitlab_payload_missing_the_iid_is_a_400() {
    let h = Harness::new(&[config("ex", "gitlab", "exm-namespace/example-project", "")]).await;
    let body = fixture("gitlab/go-gitlab.group_merge_request.json");
    let (status, resp) = h
        .send(&gitlab("Merge Request Hook", "k-3", SECRET, body))
        .await;
    assert_eq!(status, 400);
    assert!(
        resp["error"]
            .as_str()
            .unwrap()
            .contains("object_attributes.iid")
    );
    assert!(h.poll.is_empty());
}

#[tokio::test]
async fn a_gitlab_push_to_the_default_branch_queues_a_sync() {
    let h = Harness::new(&[config(
        "di",
        "gitlab",
        "mike/diaspora",
        "sync_on_push = true",
    )])
    .await;
    let (status, _) = h
        .send(&gitlab(
            "Push Hook",
            "k-4",
            SECRET,
            fixture("gitlab/gitlab-docs.push.json"),
        ))
        .await;
    assert_eq!(status, 202);
    assert_eq!(h.sync.take_due().len(), 1);
}

#[tokio::test]
async fn a_lambda_event_with_a_base64_body_and_mixed_case_headers_is_handled() {
    let h = Harness::new(&[hello("")]).await;
    let body = fixture("github/pull_request.opened.json");
    let event = serde_json::json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/",
        "rawQueryString": "",
        "headers": {
            "X-GitHub-Event": "pull_request",
            "x-github-delivery": "lambda-1",
            "X-HUB-SIGNATURE-256": sign(&body),
            "content-type": "application/json; charset=utf-8"
        },
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc", "domainName": "abc.lambda-url.us-east-1.on.aws",
            "domainPrefix": "abc", "requestId": "r", "routeKey": "$default", "stage": "$default",
            "time": "27/Nov/2026:13:00:00 +0000", "timeEpoch": 1_795_000_000_000u64,
            "http": { "method": "POST", "path": "/", "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1", "userAgent": "GitHub-Hookshot/044aadd" }
        },
        "body": base64::engine::general_purpose::STANDARD.encode(&body),
        "isBase64Encoded": true
    });
    let event: aws_lambda_events::apigw::ApiGatewayV2httpRequest =
        serde_json::from_value(event).unwrap();
    let req = WebhookRequest::from_http_v2(event, h.deps.settings.max_body_bytes).unwrap();
    let resp = handle(&req, &h.deps).await;
    assert_eq!(resp.status, 202, "{}", resp.body);
    let http = resp.into_http_v2();
    assert_eq!(http.status_code, 202);
}

#[test]
fn the_github_docs_hmac_test_vector_verifies_from_its_fixture() {
    let v: Value =
        serde_json::from_slice(&fixture("github/hmac-test-vector.github-docs.json")).unwrap();
    let secret =
        prdiff_shared::secrets::SecretString::from(v["secret"].as_str().unwrap().to_owned());
    let payload = v["payload"].as_str().unwrap().as_bytes();
    let header = v["X-Hub-Signature-256"].as_str().unwrap();
    assert!(prdiff_shared::intake::verify_github_signature(
        &secret, payload, header
    ));
    assert!(!prdiff_shared::intake::verify_github_signature(
        &secret,
        b"Hello, World!\n",
        header
    ));
    assert_eq!(sign_with(v["secret"].as_str().unwrap(), payload), header);
}

fn sign_with(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

// ---- Replays, racing deliveries, an empty secret (payloads written here, not fixtures) ----

/// A GitHub `pull_request` delivery body for PR 2 of Codertocat/Hello-World at `HEAD`;
/// `sender` makes otherwise identical events' bodies differ, as real ones do.
fn gh_pr_body(action: &str, base_ref: &str, sender: u64) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "action": action,
        "number": 2,
        "repository": { "full_name": "Codertocat/Hello-World", "default_branch": "master" },
        "pull_request": {
            "head": { "sha": HEAD, "ref": "changes" },
            "base": { "sha": BASE, "ref": base_ref },
            "draft": false,
            "labels": [],
        },
        "sender": { "id": sender },
    }))
    .unwrap()
}

fn gl_mr_body() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "object_kind": "merge_request",
        "project": { "path_with_namespace": "gitlabhq/gitlab-test", "default_branch": "master" },
        "object_attributes": {
            "iid": 1,
            "action": "open",
            "last_commit": { "id": HEAD },
            "source_branch": "ms-viewport",
            "target_branch": "master",
        },
    }))
    .unwrap()
}

#[tokio::test]
async fn a_github_delivery_replayed_under_a_new_delivery_id_starts_nothing() {
    let h = Harness::new(&[hello("")]).await;
    let body = gh_pr_body("opened", "master", 1);
    let (status, first) = h.send(&github("pull_request", "orig", body.clone())).await;
    assert_eq!(status, 202, "{first}");
    // The captured bytes again, under a delivery id never seen: the signature is valid.
    let (status, replay) = h.send(&github("pull_request", "forged", body)).await;
    assert_eq!(
        (status, replay["status"].as_str()),
        (200, Some("duplicate"))
    );
    assert!(
        replay["reason"]
            .as_str()
            .unwrap()
            .contains("another delivery id"),
        "{replay}"
    );
    assert_eq!(h.poll.len(), 1);
    assert_eq!(h.host.statuses().len(), 1);
    // A different event for the same head is still read (and finds the run).
    let (status, other) = h
        .send(&github(
            "pull_request",
            "other",
            gh_pr_body("reopened", "master", 2),
        ))
        .await;
    assert_eq!(status, 202, "{other}");
    assert_eq!(other["runs"][0]["already_running"], true);
    assert_eq!(other["runs"][0]["run_id"], first["runs"][0]["run_id"]);
    assert_eq!((h.poll.len(), h.host.statuses().len()), (1, 1));
}

#[tokio::test]
async fn a_gitlab_delivery_replayed_under_a_new_idempotency_key_or_event_uuid_starts_nothing() {
    let h = Harness::new(&[gitlab_config("")]).await;
    let (status, resp) = h
        .send(&gitlab("Merge Request Hook", "key-1", SECRET, gl_mr_body()))
        .await;
    assert_eq!(status, 202, "{resp}");
    let (status, resp) = h
        .send(&gitlab("Merge Request Hook", "key-2", SECRET, gl_mr_body()))
        .await;
    assert_eq!((status, resp["status"].as_str()), (200, Some("duplicate")));
    let mut by_uuid = gitlab("Merge Request Hook", "-", SECRET, gl_mr_body());
    by_uuid.headers.remove("idempotency-key");
    by_uuid
        .headers
        .insert("x-gitlab-event-uuid".into(), "uuid-3".into());
    let (status, resp) = h.send(&by_uuid).await;
    assert_eq!((status, resp["status"].as_str()), (200, Some("duplicate")));
    assert_eq!((h.poll.len(), h.host.statuses().len()), (1, 1));
}

#[tokio::test]
async fn a_failed_delivery_gives_back_its_id_and_body_claims_so_the_retry_goes_through() {
    let h = Harness::new(&[hello("")]).await;
    // No head known for `develop` yet: the merge base cannot be found.
    let req = github(
        "pull_request",
        "retry-1",
        gh_pr_body("opened", "develop", 1),
    );
    let (status, resp) = h.send(&req).await;
    assert!(status >= 500, "{status} {resp}");
    h.host.set_branch_head(
        &RepoName::parse("Codertocat/Hello-World").unwrap(),
        "develop",
        sha(BASE),
    );
    let (status, resp) = h.send(&req).await;
    assert_eq!(status, 202, "{resp}");
    assert_eq!((h.poll.len(), h.host.statuses().len()), (1, 1));
}

#[tokio::test]
async fn a_run_another_delivery_is_still_starting_is_left_to_it_until_that_one_fails() {
    use prdiff_shared::run::{CiRun, RunId};
    let h = Harness::new(&[hello("")]).await;
    let config = ConfigId::parse("hello").unwrap();
    // Another delivery recorded the run and holds its intake (posting the status, say).
    let run = CiRun {
        id: RunId::new(),
        config_id: config.clone(),
        pr: gh_pr_key(),
        head_sha: sha(HEAD),
        base_sha: sha(BASE),
        base_branch: "master".into(),
        state: RunState::Received,
        reason: None,
        created_at: 0,
        updated_at: 0,
        on_demand: None,
        previous: None,
        remap: Vec::new(),
    };
    h.store.start_run(&run).await.unwrap();
    let intake = prdiff_webhook::intake_claim(&run.id);
    assert!(
        h.store
            .claim_delivery(&intake, Duration::from_secs(300))
            .await
            .unwrap()
    );
    let (status, resp) = h
        .send(&github(
            "pull_request",
            "late-1",
            gh_pr_body("opened", "master", 1),
        ))
        .await;
    assert_eq!(status, 202, "{resp}");
    assert_eq!(resp["runs"][0]["already_running"], true, "{resp}");
    assert_eq!(resp["runs"][0]["run_id"], run.id.as_str());
    assert!(h.host.statuses().is_empty() && h.poll.is_empty());
    // That delivery failed and gave its claim back: the next one finishes the run.
    h.store.release_delivery(&intake).await.unwrap();
    let (status, resp) = h
        .send(&github(
            "pull_request",
            "late-2",
            gh_pr_body("reopened", "master", 2),
        ))
        .await;
    assert_eq!(status, 202, "{resp}");
    assert_eq!(resp["runs"][0]["run_id"], run.id.as_str());
    assert_ne!(resp["runs"][0]["already_running"], true, "{resp}");
    assert_eq!((h.poll.len(), h.host.statuses().len()), (1, 1));
    let current = h.store.current_run(&config, &gh_pr_key()).await.unwrap();
    assert_eq!(current.unwrap().state, RunState::WaitingForDbt);
}

#[tokio::test]
async fn an_empty_webhook_secret_refuses_every_delivery() {
    for value in ["", " \n"] {
        let h = Harness::new(&[hello(""), gitlab_config("")]).await;
        let secrets = Arc::new(LocalSecrets::in_memory());
        secrets.insert(&h.deps.settings.webhook_secret, value);
        let mut deps = h.deps.clone();
        deps.secrets = secrets;
        let body = gh_pr_body("opened", "master", 1);
        // Signed with the empty key, as anyone could.
        let mut gh = github("pull_request", "e-1", body.clone());
        gh.headers
            .insert("x-hub-signature-256".into(), sign_with(value, &body));
        // GitLab's token is the secret itself: an empty header would match.
        let gl = gitlab("Merge Request Hook", "e-2", value, gl_mr_body());
        for req in [gh, gl] {
            let resp = handle(&req, &deps).await;
            assert_eq!(resp.status, 500, "{}", resp.body);
            assert_eq!(resp.body["error"], "the webhook secret is empty");
        }
        h.assert_nothing_happened().await;
    }
}
