//! Webhook deliveries: header handling, signature checks and the GitHub / GitLab payload
//! parsers, then the whole handler (`prdiff_webhook::handle`) on the in-process adapters
//! (SQLite store in memory, memory queues, memory git host, memory secrets): no network.
//!
//! Input: header lines (`Name: value`), an empty line, then the raw body, as a delivery
//! is sent. Without an empty line the whole input is the body and no header is set.
//! When the input carries no `X-Hub-Signature-256` / `X-Gitlab-Token`, the right one is
//! added, so the fuzzer gets past the signature check to the parsers and gates; a header
//! it does give is passed as is (and must then be refused unless it is correct).
//! The request reaches the handler the way the Lambda gets it: an API Gateway v2 event
//! with the body base64-encoded, read by `WebhookRequest::from_http_v2` (header names and
//! values HTTP would not carry are dropped). The raw input is also handed to
//! `from_http_v2` as if it were the base64 text, for its decoding and size check.
//! The pseudo-header `Fuzz-Config: gated` swaps the default configurations for ones with
//! every gate on (required label, files to ignore, latest base, skip pull requests).

#![no_main]

use std::sync::{Arc, OnceLock};

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use aws_lambda_events::http::{HeaderName, HeaderValue};
use base64::Engine;

use hmac::{Hmac, KeyInit, Mac};
use libfuzzer_sys::fuzz_target;
use prdiff_shared::config::{
    CiConfig, CommitSha, ConfigFile, DataSourceId, RepoName, SecretName, SecretSource,
};
use prdiff_shared::githost::memory::MemoryGitHost;
use prdiff_shared::intake::{self, HostEvent};
use prdiff_shared::queue::memory::MemoryQueue;
use prdiff_shared::secrets::SecretString;
use prdiff_shared::secrets::local::LocalSecrets;
use prdiff_shared::store::ConfigStore;
use prdiff_shared::store::embedded::EmbeddedStore;
use prdiff_webhook::{Deps, FromHttpV2, Settings, WebhookRequest, handle};
use sha2::Sha256;

const SECRET: &str = "It's a Secret to Everybody";
/// The handler's default limit (`Settings::new`).
const MAX_BODY: usize = 5 * 1024 * 1024;
const BASE: &str = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e";
/// Repositories of the seed payloads: deliveries for them reach the gates and the store.
const REPOS: [(&str, &str); 4] = [
    ("github", "Codertocat/Hello-World"),
    ("gitlab", "gitlabhq/gitlab-test"),
    ("gitlab", "awesome_space/awesome_project"),
    ("gitlab", "mike/diaspora"),
];

fn configs(gated: bool) -> Vec<CiConfig> {
    let extra = if gated {
        "skip_pull_requests = false\nbase_commit = \"latest\"\nfiles_to_ignore = \"*.md\\ndocs/\\n!docs/keep.md\"\nrequire_label = { enabled = true, name = \"datafold\" }\n"
    } else {
        "sync_on_push = true\n"
    };
    let mut text = String::new();
    for (i, (provider, repo)) in REPOS.iter().enumerate() {
        text.push_str(&format!(
            r#"
[[ci_config]]
name = "c{i}"
data_source = "wh"
repository = {{ provider = "{provider}", full_name = "{repo}" }}
git_auth = {{ kind = "token", token = {{ secret = "prdiff/c{i}/git-token" }} }}
dbt_cloud = {{ access_url = "https://cloud.getdbt.com", account_id = 1, api_key = {{ secret = "prdiff/c{i}/dbt-api-key" }}, artifacts_job_id = 2, pr_job_id = 3 }}
{extra}
"#
        ));
    }
    ConfigFile::parse(&text, &[DataSourceId::parse("wh").unwrap()])
        .unwrap()
        .ci_configs
        .into_iter()
        .map(|c| {
            c.map_secrets(|_, s| match s {
                SecretSource::Stored { secret } => Ok::<_, ()>(secret),
                _ => Err(()),
            })
            .unwrap()
        })
        .collect()
}

struct Fixed {
    rt: tokio::runtime::Runtime,
    plain: Vec<CiConfig>,
    gated: Vec<CiConfig>,
    secret_name: SecretName,
    secret: SecretString,
}

fn fixed() -> &'static Fixed {
    static FIXED: OnceLock<Fixed> = OnceLock::new();
    FIXED.get_or_init(|| Fixed {
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap(),
        plain: configs(false),
        gated: configs(true),
        secret_name: SecretName::parse("prdiff/webhook-secret").unwrap(),
        secret: SecretString::from(SECRET.to_owned()),
    })
}

/// Fresh adapters per input, so an input's outcome never depends on the ones before it
/// (a crash reproduces from its file alone).
async fn deps(f: &Fixed, configs: &[CiConfig]) -> Deps {
    let store = Arc::new(EmbeddedStore::in_memory());
    store.put_all(&[], configs).await.unwrap();
    let secrets = Arc::new(LocalSecrets::in_memory());
    secrets.insert(&f.secret_name, SECRET);
    let host = MemoryGitHost::new();
    for (_, repo) in REPOS {
        let repo = RepoName::parse(repo).unwrap();
        for branch in ["master", "main"] {
            host.set_branch_head(&repo, branch, CommitSha::parse(BASE).unwrap());
        }
        host.set_files(&repo, 1, &["README.md", "docs/a.md"]);
        host.set_files(&repo, 2, &["models/a.sql"]);
    }
    Deps {
        configs: store.clone(),
        runs: store,
        secrets,
        hosts: Arc::new(host),
        poll_queue: Arc::new(MemoryQueue::new()),
        sync_queue: Arc::new(MemoryQueue::new()),
        settings: Settings::new(f.secret_name.clone()),
    }
}

fn split(data: &[u8]) -> (Vec<(String, String)>, &[u8]) {
    let Some(at) = data.windows(2).position(|w| w == b"\n\n") else {
        return (Vec::new(), data);
    };
    let headers = String::from_utf8_lossy(&data[..at])
        .lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            Some((name.trim().to_owned(), value.trim().to_owned()))
        })
        .collect();
    (headers, &data[at + 2..])
}

fn github_signature(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Invariants of a parsed event that the handler relies on.
fn check_event(event: &HostEvent, provider: prdiff_shared::config::Provider) {
    match event {
        HostEvent::PullRequest(pr) => assert_eq!(pr.provider, provider),
        HostEvent::Push(push) => assert_eq!(push.provider, provider),
        HostEvent::PrClosed { provider: p, .. } => assert_eq!(*p, provider),
        HostEvent::Command(c) => {
            assert_eq!(c.provider, provider);
            // Accepted model names are dbt names only: nothing else reaches the plan.
            if let Ok(models) = &c.models {
                assert!(models
                    .iter()
                    .all(|m| prdiff_shared::intake::command::is_model_name(m)));
            }
        }
        HostEvent::Ping | HostEvent::NotHandled(_) => return,
    }
    // The handler `expect`s this for every event that is not Ping / NotHandled.
    assert!(event.repository().is_some());
}

fuzz_target!(|data: &[u8]| {
    let f = fixed();
    let (mut headers, body) = split(data);
    let has = |headers: &[(String, String)], name: &str| {
        headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name))
    };
    let gated = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("fuzz-config") && v == "gated");

    // The pure steps, whatever the headers say.
    let github_event = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-github-event"))
        .map_or("pull_request", |(_, v)| v.as_str());
    let gitlab_event = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-gitlab-event"))
        .map_or("Merge Request Hook", |(_, v)| v.as_str());
    if let Ok(e) = intake::github::parse(github_event, body) {
        check_event(&e, prdiff_shared::config::Provider::Github);
    }
    if let Ok(e) = intake::gitlab::parse(gitlab_event, body) {
        check_event(&e, prdiff_shared::config::Provider::Gitlab);
    }
    for (k, v) in &headers {
        if k.eq_ignore_ascii_case("x-hub-signature-256") {
            let ok = intake::verify_github_signature(&f.secret, body, v);
            // Hex digits of either case decode to the same bytes.
            let right = github_signature(body);
            assert_eq!(
                ok,
                v.eq_ignore_ascii_case(&right) && v.starts_with("sha256=")
            );
        }
        if k.eq_ignore_ascii_case("x-gitlab-token") {
            assert_eq!(intake::verify_gitlab_token(&f.secret, v), v == SECRET);
        }
    }

    // The handler, signed correctly unless the input signs itself.
    if has(&headers, "x-github-event") && !has(&headers, "x-hub-signature-256") {
        headers.push(("X-Hub-Signature-256".into(), github_signature(body)));
    }
    if has(&headers, "x-gitlab-event") && !has(&headers, "x-gitlab-token") {
        headers.push(("X-Gitlab-Token".into(), SECRET.into()));
    }
    let mut event = ApiGatewayV2httpRequest::default();
    for (k, v) in &headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            event.headers.append(name, value);
        }
    }
    event.is_base64_encoded = true;
    let mut garbled = event.clone();
    event.body = Some(base64::engine::general_purpose::STANDARD.encode(body));
    let req = WebhookRequest::from_http_v2(event, MAX_BODY).expect("valid base64 of a small body");
    assert_eq!(req.body, body);
    // The input itself as the base64 text: decoded, refused as too large, or not base64.
    garbled.body = Some(String::from_utf8_lossy(data).into_owned());
    for max in [0, 16, MAX_BODY] {
        if let Ok(r) = WebhookRequest::from_http_v2(garbled.clone(), max) {
            assert!(r.body.len() <= max + 3 || max == MAX_BODY);
        }
    }
    let configs = if gated { &f.gated } else { &f.plain };
    let resp = f.rt.block_on(async {
        let deps = deps(f, configs).await;
        handle(&req, &deps).await
    });
    assert!((200..600).contains(&resp.status), "status {}", resp.status);
    assert!(resp.body.is_object(), "{}", resp.body);
    // Nothing is accepted unless the delivery is authentic (whatever the fuzzer signed).
    if (200..300).contains(&resp.status) {
        let authentic = match (req.header("x-github-event"), req.header("x-gitlab-event")) {
            (Some(_), _) => req
                .header("x-hub-signature-256")
                .is_some_and(|s| intake::verify_github_signature(&f.secret, body, s)),
            (None, Some(_)) => req.header("x-gitlab-token") == Some(SECRET),
            (None, None) => false,
        };
        assert!(authentic, "{} for an unauthentic delivery", resp.status);
    }
});
