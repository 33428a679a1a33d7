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

use hmac::{Hmac, KeyInit, Mac};
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
    let path = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/github/pull_request.opened.json"
    ));
    serde_json::from_slice(
        &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
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

fn pct(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)].as_secs_f64() * 1e6
}

/// Wall time of single steps (no status to check).
fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{name:<48} n={:<5} wall p50={:>6.1} µs p99={:>7.1} µs",
        samples.len(),
        pct(&samples, 0.50),
        pct(&samples, 0.99),
    );
}

/// Wall time and this thread's CPU time of each call: on a shared machine the wall p99 is
/// the scheduler's (a preempted call waits a whole time slice), the CPU p99 is the handler's.
fn report_cpu(name: &str, mut wall: Vec<Duration>, mut cpu: Vec<Duration>) {
    wall.sort();
    cpu.sort();
    println!(
        "{name:<48} n={:<5} wall p50={:>6.1} µs p99={:>7.1} µs | cpu p50={:>6.1} µs p99={:>6.1} µs",
        wall.len(),
        pct(&wall, 0.50),
        pct(&wall, 0.99),
        pct(&cpu, 0.50),
        pct(&cpu, 0.99),
    );
}

async fn run(name: &str, deps: &Deps, requests: Vec<WebhookRequest>, expect: u16) {
    let mut wall = Vec::with_capacity(requests.len());
    let mut cpu = Vec::with_capacity(requests.len());
    for req in &requests {
        let c = cpu_time::ThreadTime::now();
        let t = Instant::now();
        let resp = handle(req, deps).await;
        wall.push(t.elapsed());
        cpu.push(c.elapsed());
        assert_eq!(resp.status, expect, "{name}: {}", resp.body);
    }
    report_cpu(name, wall, cpu);
}

fn step(name: &str, mut f: impl FnMut()) {
    let mut samples = Vec::with_capacity(ITERATIONS);
    for _ in 0..ITERATIONS {
        let t = Instant::now();
        f();
        samples.push(t.elapsed());
    }
    report(name, samples);
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
                    // Distinct bodies per set: the handler refuses a body it has seen under
                    // another delivery id (a replay).
                    v["pull_request"]["title"] = format!("{prefix}-{i}").into();
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

        // Where the time goes: the steps of the accepted path, each alone.
        let body = serde_json::to_vec(&base).unwrap();
        let sig = sign(&body);
        let secret = prdiff_shared::secrets::SecretString::from(SECRET.to_owned());
        step("step: HMAC-SHA256 verify (28 KB body)", || {
            assert!(prdiff_shared::intake::verify_github_signature(
                &secret, &body, &sig
            ));
        });
        step("step: parse pull_request payload", || {
            prdiff_shared::intake::github::parse("pull_request", &body).unwrap();
        });
        let repo = RepoName::parse("Codertocat/Hello-World").unwrap();
        let mut samples = Vec::new();
        for _ in 0..ITERATIONS {
            let t = Instant::now();
            let c = d
                .configs
                .configs_for_repository(prdiff_shared::config::Provider::Github, &repo)
                .await
                .unwrap();
            samples.push(t.elapsed());
            assert_eq!(c.len(), 1);
        }
        report("step: configurations of the repository", samples);
        let mut samples = Vec::new();
        for i in 0..ITERATIONS {
            let t = Instant::now();
            assert!(
                d.runs
                    .claim_delivery(&format!("step-{i}"), Duration::from_secs(60))
                    .await
                    .unwrap()
            );
            samples.push(t.elapsed());
        }
        report("step: claim delivery (SQLite insert)", samples);
    });
}
