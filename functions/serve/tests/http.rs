//! `prdiff serve`'s endpoint over real TCP on 127.0.0.1: slow clients are dropped, the
//! connection cap holds, a replayed delivery starts nothing, and deliveries of one head
//! arriving together post one pending status and no 5xx. The store and queues are the real
//! SQLite file; the git host is in memory (behind a little latency, as a real one has).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hmac::{Hmac, KeyInit, Mac};
use prdiff_serve::{Database, HttpLimits, POLL_QUEUE, ServeError, Server, Settings};
use prdiff_shared::config::{
    CiConfig, CommitSha, ConfigFile, ConfigId, DataSourceId, Provider, RepoName, SecretName,
    SecretSource,
};
use prdiff_shared::githost::StatusState;
use prdiff_shared::githost::memory::MemoryGitHost;
use prdiff_shared::githost::{CommentRef, CommitStatus, GitHost, GitHostError, GitHosts};
use prdiff_shared::run::{PrKey, RunState};
use prdiff_shared::secrets::local::LocalSecrets;
use serde_json::{Value, json};
use sha2::Sha256;

const SECRET: &str = "serve-test-secret";
const REPO: &str = "acme/analytics";
const HEAD: &str = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";
const BASE: &str = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e";

fn secret_name() -> SecretName {
    SecretName::parse("prdiff/webhook-secret").unwrap()
}

fn config() -> CiConfig {
    let text = format!(
        r#"
[[ci_config]]
name = "shop"
data_source = "wh"
repository = {{ provider = "github", full_name = "{REPO}" }}
git_auth = {{ kind = "token", token = {{ secret = "prdiff/shop/git-token" }} }}
dbt_cloud = {{ access_url = "https://cloud.getdbt.com", account_id = 1, api_key = {{ secret = "prdiff/shop/dbt-api-key" }}, artifacts_job_id = 2, pr_job_id = 3 }}
require_label = {{ enabled = true, name = "data" }}
"#
    );
    ConfigFile::parse(&text, &[DataSourceId::parse("wh").unwrap()])
        .unwrap()
        .ci_configs
        .into_iter()
        .next()
        .unwrap()
        .map_secrets(|_, s| match s {
            SecretSource::Stored { secret } => Ok::<_, String>(secret),
            other => Err(format!("{other:?}")),
        })
        .unwrap()
}

/// The memory git host, each call made a little slow like a real host's.
#[derive(Clone)]
struct SlowHost {
    inner: MemoryGitHost,
    latency: Duration,
}

#[async_trait]
impl GitHosts for SlowHost {
    async fn for_config(&self, _config: &CiConfig) -> Result<Arc<dyn GitHost>, GitHostError> {
        Ok(Arc::new(self.clone()))
    }
}

#[async_trait]
impl GitHost for SlowHost {
    async fn changed_files(&self, repo: &RepoName, n: u64) -> Result<Vec<String>, GitHostError> {
        tokio::time::sleep(self.latency).await;
        self.inner.changed_files(repo, n).await
    }
    async fn commit_messages(&self, repo: &RepoName, n: u64) -> Result<Vec<String>, GitHostError> {
        tokio::time::sleep(self.latency).await;
        self.inner.commit_messages(repo, n).await
    }
    async fn merge_base(
        &self,
        repo: &RepoName,
        base: &str,
        head: &CommitSha,
    ) -> Result<CommitSha, GitHostError> {
        tokio::time::sleep(self.latency).await;
        self.inner.merge_base(repo, base, head).await
    }
    async fn branch_head(&self, repo: &RepoName, branch: &str) -> Result<CommitSha, GitHostError> {
        tokio::time::sleep(self.latency).await;
        self.inner.branch_head(repo, branch).await
    }
    async fn set_status(
        &self,
        repo: &RepoName,
        sha: &CommitSha,
        status: &CommitStatus,
    ) -> Result<(), GitHostError> {
        tokio::time::sleep(self.latency).await;
        self.inner.set_status(repo, sha, status).await
    }
    async fn upsert_comment(
        &self,
        repo: &RepoName,
        number: u64,
        marker: &str,
        body: &str,
    ) -> Result<CommentRef, GitHostError> {
        self.inner.upsert_comment(repo, number, marker, body).await
    }
    async fn labels(&self, repo: &RepoName, number: u64) -> Result<Vec<String>, GitHostError> {
        self.inner.labels(repo, number).await
    }
    async fn pull_request(
        &self,
        repo: &RepoName,
        number: u64,
    ) -> Result<prdiff_shared::githost::PullRequest, GitHostError> {
        tokio::time::sleep(self.latency).await;
        self.inner.pull_request(repo, number).await
    }
    async fn can_write(
        &self,
        repo: &RepoName,
        author: &prdiff_shared::intake::Author,
    ) -> Result<bool, GitHostError> {
        tokio::time::sleep(self.latency).await;
        self.inner.can_write(repo, author).await
    }
}

/// A running server on a fresh database file.
struct Running {
    addr: SocketAddr,
    host: MemoryGitHost,
    db: Database,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Running {
    async fn start(limits: HttpLimits) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Database::open(&dir.path().join("prdiff.db"), None).unwrap();
        let secrets = Arc::new(LocalSecrets::in_memory());
        secrets.insert(&secret_name(), SECRET);
        let host = MemoryGitHost::new();
        let repo = RepoName::parse(REPO).unwrap();
        host.set_branch_head(&repo, "main", CommitSha::parse(BASE).unwrap());
        db.services.secrets = secrets;
        db.services.hosts = Arc::new(SlowHost {
            inner: host.clone(),
            latency: Duration::from_millis(20),
        });
        db.services.configs.put_all(&[], &[config()]).await.unwrap();
        let mut settings = Settings::new("127.0.0.1:0".parse().unwrap(), secret_name());
        settings.http = limits;
        settings.sync_tick = None;
        settings.shutdown_grace = Duration::from_secs(5);
        let server = Server::bind(db.services.clone(), settings).await.unwrap();
        let addr = server.local_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            host,
            db,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap();
    }

    fn pending_statuses(&self) -> usize {
        self.host
            .statuses()
            .iter()
            .filter(|(_, sha, s)| sha.as_str() == HEAD && s.state == StatusState::Pending)
            .count()
    }
}

fn limits(header_s: f64, body_s: f64, max_connections: usize) -> HttpLimits {
    HttpLimits {
        header_timeout: Duration::from_secs_f64(header_s),
        body_timeout: Duration::from_secs_f64(body_s),
        max_connections,
    }
}

/// A `pull_request` payload for the PR's head; `extra` makes deliveries' bodies differ
/// the way distinct events' do.
fn pr_body(action: &str, extra: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "action": action,
        "number": 7,
        "label": { "name": "data" },
        "repository": { "full_name": REPO, "default_branch": "main" },
        "pull_request": {
            "head": { "sha": HEAD, "ref": "feature" },
            "base": { "sha": BASE, "ref": "main" },
            "draft": false,
            "labels": [{ "name": "data" }],
        },
        "sender": { "id": extra },
    }))
    .unwrap()
}

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The bytes of a signed GitHub delivery.
fn delivery(delivery_id: &str, body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST /webhook HTTP/1.1\r\nhost: prdiff\r\nconnection: close\r\n\
         content-type: application/json\r\nx-github-event: pull_request\r\n\
         x-github-delivery: {delivery_id}\r\nx-hub-signature-256: {}\r\n\
         content-length: {}\r\n\r\n",
        sign(body),
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

/// Sends one request on a new connection and reads the answer to the end.
async fn exchange(addr: SocketAddr, request: Vec<u8>) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(&request).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Blocking client side of a connection the test keeps open, with a generous read timeout
/// so that a server that never closes fails the test instead of hanging it.
fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

/// Reads until the server closes the connection; panics if it does not within the
/// client's read timeout. Returns what was read.
fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return out,
            Err(e) => panic!("the server kept the connection open: {e}"),
        }
    }
}

/// Whether the server has closed this connection (an end of stream is waiting).
fn closed_by_server(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1];
    let closed = matches!((&*s).read(&mut buf), Ok(0))
        || matches!((&*s).read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset);
    s.set_nonblocking(false).unwrap();
    closed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sending_half_a_header_is_disconnected_after_the_header_timeout() {
    let header_timeout = Duration::from_secs(1);
    let server = Running::start(limits(1.0, 30.0, 16)).await;
    let addr = server.addr;
    let (half, idle) = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut half = connect(addr);
        half.write_all(b"POST /webhook HTTP/1.1\r\nhost: prdiff\r\nx-github-ev")
            .unwrap();
        let mut idle = connect(addr);
        let from_half = read_until_closed(&mut half);
        let from_idle = read_until_closed(&mut idle);
        assert!(started.elapsed() >= header_timeout);
        (from_half, from_idle)
    })
    .await
    .unwrap();
    // Dropped without an answer: the request never started.
    assert!(half.is_empty(), "{}", String::from_utf8_lossy(&half));
    assert!(idle.is_empty(), "{}", String::from_utf8_lossy(&idle));

    // A keep-alive connection idle after its request is closed the same way.
    let (status, after) = tokio::task::spawn_blocking(move || {
        let mut s = connect(addr);
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: prdiff\r\n\r\n")
            .unwrap();
        let raw = read_until_closed(&mut s);
        (parse_response(&raw).0, raw.len())
    })
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert!(after > 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_does_not_arrive_within_the_body_timeout_is_a_408_and_the_end() {
    let server = Running::start(limits(30.0, 1.0, 16)).await;
    let addr = server.addr;
    let raw = tokio::task::spawn_blocking(move || {
        let mut s = connect(addr);
        let body = pr_body("opened", 1);
        let mut req = delivery("slow-1", &body);
        // Headers and the first ten bytes of the body, then nothing.
        req.truncate(req.len() - body.len() + 10);
        s.write_all(&req).unwrap();
        read_until_closed(&mut s)
    })
    .await
    .unwrap();
    let (status, body) = parse_response(&raw);
    assert_eq!(status, 408, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("did not arrive"),
        "{body}"
    );
    // Nothing was claimed or started for the delivery.
    assert_eq!(server.pending_statuses(), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_wait_until_a_slot_frees() {
    let cap = 3;
    let server = Running::start(limits(1.0, 30.0, cap)).await;
    let addr = server.addr;
    let (idle, health) = tokio::task::spawn_blocking(move || {
        // Five idle connections: three are served (and time out), two wait their turn.
        let idle: Vec<TcpStream> = (0..5).map(|_| connect(addr)).collect();
        let mut probe = connect(addr);
        probe
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: prdiff\r\nconnection: close\r\n\r\n")
            .unwrap();
        let raw = read_until_closed(&mut probe);
        (idle, parse_response(&raw))
    })
    .await
    .unwrap();
    let (status, health) = health;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["max_connections"], cap);
    let open = health["connections"].as_u64().unwrap();
    assert!(open >= 1 && open <= cap as u64, "{health}");
    // The probe was answered only once the first idle connections had been let go.
    let closed = idle.iter().take(3).filter(|s| closed_by_server(s)).count();
    assert_eq!(closed, 3, "the probe was served before a slot was free");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_delivery_replayed_under_a_new_delivery_id_starts_nothing() {
    let server = Running::start(HttpLimits::default()).await;
    let body = pr_body("opened", 1);
    let (status, first) = exchange(server.addr, delivery("orig-1", &body)).await;
    assert_eq!(status, 202, "{first}");
    let (status, replay) = exchange(server.addr, delivery("forged-2", &body)).await;
    assert_eq!(status, 200, "{replay}");
    assert_eq!(replay["status"], "duplicate");
    assert!(
        replay["reason"]
            .as_str()
            .unwrap()
            .contains("another delivery id"),
        "{replay}"
    );
    assert_eq!(server.pending_statuses(), 1);
    assert_eq!(
        server.db.services.queues.queue(POLL_QUEUE).len().unwrap(),
        1
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_of_one_head_arriving_together_post_one_pending_status_and_no_5xx() {
    const N: u64 = 150;
    let server = Running::start(HttpLimits::default()).await;
    let actions = ["opened", "labeled", "synchronize", "reopened"];
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let body = pr_body(actions[(i % 4) as usize], i);
            let req = delivery(&format!("burst-{i}"), &body);
            tokio::spawn(exchange(server.addr, req))
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    let not_2xx: Vec<_> = answers
        .iter()
        .filter(|(s, _)| !(200..300).contains(s))
        .collect();
    assert!(not_2xx.is_empty(), "{} not 2xx: {not_2xx:?}", not_2xx.len());
    let started = answers
        .iter()
        .filter(|(_, b)| b["runs"][0]["run_id"].is_string())
        .filter(|(_, b)| b["runs"][0]["already_running"] != true)
        .count();
    assert_eq!(started, 1, "runs started by more than one delivery");
    assert_eq!(server.pending_statuses(), 1, "{:?}", server.host.statuses());
    assert_eq!(
        server.db.services.queues.queue(POLL_QUEUE).len().unwrap(),
        1
    );
    let run = server
        .db
        .services
        .runs
        .current_run(
            &ConfigId::parse("shop").unwrap(),
            &PrKey {
                provider: Provider::Github,
                repository: RepoName::parse(REPO).unwrap(),
                number: 7,
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run.state, RunState::WaitingForDbt);
    // Every answer names that one run.
    for (_, b) in &answers {
        assert_eq!(b["runs"][0]["run_id"], run.id.as_str(), "{b}");
    }
    server.stop().await;
}

#[tokio::test]
async fn an_empty_or_blank_webhook_secret_is_refused_like_a_missing_one() {
    for value in ["", "  \n"] {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Database::open(&dir.path().join("prdiff.db"), None).unwrap();
        let secrets = Arc::new(LocalSecrets::in_memory());
        secrets.insert(&secret_name(), value);
        db.services.secrets = secrets;
        let settings = Settings::new("127.0.0.1:0".parse().unwrap(), secret_name());
        match Server::bind(db.services.clone(), settings).await {
            Err(e @ ServeError::WebhookSecret { .. }) => {
                let text = e.to_string();
                assert!(text.contains("prdiff/webhook-secret"), "{text}");
                assert!(text.contains("empty"), "{text}");
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("started with the webhook secret {value:?}"),
        }
    }
}
