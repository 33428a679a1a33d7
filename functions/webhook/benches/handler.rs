//! Latency of `prdiff_webhook::handle` in-process: signature check, parse, configuration
//! lookup, delivery claim, gates, run record (superseding the previous one), pending status
//! and the poll message, on the in-process adapters (SQLite in memory, memory queue, memory
//! git host, memory secrets). Network adapters add their round trips on top; this measures
//! what the handler itself costs.
//!
//! Run: `cargo bench -p prdiff-webhook --no-default-features --bench handler`
//! (prints p50 / p99 / max per scenario; target p99 ≤ 5 ms).

use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use prdiff_shared::config::{
    CommitSha, ConfigFile, DataSourceId, RepoName, SecretName, SecretSource,
};
use prdiff_shared::githost::memory::MemoryGitHost;
use prdiff_shared::queue::memory::MemoryQueue;
use prdiff_shared::secrets::local::LocalSecrets;
use prdiff_shared::store::ConfigStore;
use prdiff_shared::store::embedded::EmbeddedStore;
use prdiff_webhook::{Deps, Settings, WebhookRequest, handle};
use sha2::Sha256;

const SECRET: &str = "bench-secret";
const ITERATIONS: usize = 5_000;

fn fixture() -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/github/pull_request.opened.json");
    serde_json::from_slice(
        &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn request(delivery: &str, body: Vec<u8>) -> WebhookRequest {
    let sig = sign(&body);
    WebhookRequest::new(
        [
            ("X-GitHub-Event", "pull_request"),
            ("X-GitHub-Delivery", delivery),
            ("X-Hub-Signature-256", sig.as_str()),
            ("Content-Type", "application/json"),
        ],
        body,
    )
}

async fn deps(extra: &str) -> Deps {
    let text = format!(
        r#"
[[ci_config]]
name = "bench"
data_source = "wh"
repository = {{ provider = "github", full_name = "Codertocat/Hello-World" }}
git_auth = {{ kind = "token", token = {{ secret = "t" }} }}
dbt_cloud = {{ access_url = "https://cloud.getdbt.com", account_id = 1, api_key = {{ secret = "k" }}, artifacts_job_id = 2, pr_job_id = 3 }}
{extra}
"#
    );
    let config = ConfigFile::parse(&text, &[DataSourceId::parse("wh").unwrap()])
        .unwrap()
        .ci_configs
        .remove(0)
        .map_secrets(|_, s| match s {
            SecretSource::Stored { secret } => Ok::<_, ()>(secret),
            _ => Err(()),
        })
        .unwrap();
    let store = Arc::new(EmbeddedStore::in_memory());
    store.put_all(&[], &[config]).await.unwrap();
    let secrets = Arc::new(LocalSecrets::in_memory());
    let name = SecretName::parse("prdiff/webhook-secret").unwrap();
    secrets.insert(&name, SECRET);
    let host = MemoryGitHost::new();
    host.set_branch_head(
        &RepoName::parse("Codertocat/Hello-World").unwrap(),
        "master",
        CommitSha::parse("f95f852bd8fca8fcc58a9a2d6c842781e32a215e").unwrap(),
    );
    Deps {
        configs: store.clone(),
        runs: store,
        secrets,
        hosts: Arc::new(host),
        poll_queue: Arc::new(MemoryQueue::new()),
        sync_queue: Arc::new(MemoryQueue::new()),
        settings: Settings::new(name),
    }
}

fn report(name: &str, mut samples: Vec<Duration>, expect: u16, statuses: &[u16]) {
    assert!(
        statuses.iter().all(|s| *s == expect),
        "{name}: unexpected status"
    );
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "{name:<42} n={:<6} p50={:>7.1} µs  p99={:>7.1} µs  max={:>8.1} µs",
        samples.len(),
        pct(0.50).as_secs_f64() * 1e6,
        pct(0.99).as_secs_f64() * 1e6,
        samples.last().unwrap().as_secs_f64() * 1e6,
    );
}

async fn run(name: &str, deps: &Deps, requests: Vec<WebhookRequest>, expect: u16) {
    let mut samples = Vec::with_capacity(requests.len());
    let mut statuses = Vec::with_capacity(requests.len());
    for req in &requests {
        let t = Instant::now();
        let resp = handle(req, deps).await;
        samples.push(t.elapsed());
        statuses.push(resp.status);
    }
    report(name, samples, expect, &statuses);
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let base = fixture();
        // Each delivery is a new commit on the PR: a 202 that supersedes the previous run.
        let make = |prefix: &str, n: usize| -> Vec<WebhookRequest> {
            (0..n)
                .map(|i| {
                    let mut v = base.clone();
                    v["pull_request"]["head"]["sha"] = format!("{i:040x}").into();
                    request(&format!("{prefix}-{i}"), serde_json::to_vec(&v).unwrap())
                })
                .collect()
        };
        let d = deps("").await;
        run("warm-up (discarded numbers)", &d, make("warm", 200), 202).await;
        run(
            "accepted: new commit, supersedes, queues poll",
            &d,
            make("acc", ITERATIONS),
            202,
        )
        .await;

        let gated = deps("require_label = { enabled = true }").await;
        run(
            "gated: required label missing",
            &gated,
            make("gate", ITERATIONS),
            200,
        )
        .await;

        let ignored = deps("files_to_ignore = \"docs/\\n\"").await;
        run(
            "files gate: changed files listed, not all ignored",
            &ignored,
            make("files", ITERATIONS),
            202,
        )
        .await;

        let dup = make("dup", 1).remove(0);
        assert_eq!(handle(&dup, &d).await.status, 202);
        let dups: Vec<WebhookRequest> = (0..ITERATIONS).map(|_| dup.clone()).collect();
        run("redelivery (after the first): duplicate", &d, dups, 200).await;

        let bad: Vec<WebhookRequest> = make("bad", ITERATIONS)
            .into_iter()
            .map(|mut r| {
                r.headers.insert(
                    "x-hub-signature-256".into(),
                    format!("sha256={}", "0".repeat(64)),
                );
                r
            })
            .collect();
        run("bad signature: 401", &d, bad, 401).await;
    });
}
