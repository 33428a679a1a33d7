//! From pull request to PR comment, end to end: real dbt (dbt-postgres) builds production
//! and PR schemas of `examples/e2e_shop` on the test cluster, a signed `pull_request`
//! webhook goes into the intake handler, and the poller and diff runner handlers are
//! driven with SQS-shaped events (the way Lambda's event source mapping calls them).
//! dbt Cloud is wiremock (the real HTTP client talks to it) serving run objects shaped like
//! the fixtures and the real artifacts dbt wrote; GitHub is wiremock too (the real GitHub
//! client: compare for the merge base, statuses, the sticky comment by its marker), keeping
//! the comments and statuses it received for the assertions.
//!
//! Known differences (PR `orders.sql` against production): order 1000 removed, orders
//! 1–50 have `amount` + 1, `customers` unchanged.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::sqs::SqsEvent;
use prdiff_shared::config::{
    CiConfig, ConfigFile, DataSource, DataSourceId, DataSourceKind, SecretName, SecretSource,
};
use prdiff_shared::dbtcloud::{Run, Trigger, status};
use prdiff_shared::githost::http::{HttpGitHosts, HttpSettings};
use prdiff_shared::githost::{CommitStatus, StatusState};
use prdiff_shared::messages::Message;
use prdiff_shared::queue::{Queue, QueueError};
use prdiff_shared::run::{RunId, RunState};
use prdiff_shared::secrets::local::LocalSecrets;
use prdiff_shared::sql::Relation;
use prdiff_shared::store::embedded::EmbeddedStore;
use prdiff_shared::store::{ConfigStore, RunStore};
use prdiff_shared::warehouse::WarehouseUrl;

use crate::webhook::{SECRET, github};

const HEAD: &str = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";
const BASE: &str = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e";
const NEWER_HEAD: &str = "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c";
const PR_NUMBER: u64 = 2;
const ACCOUNT: u64 = 1;
const ARTIFACTS_JOB: u64 = 2;

/// The PR job's id: per test process, so the PR schema (`dbt_cloud_pr_<job>_<pr>`, as dbt
/// Cloud names it) does not collide with another process's.
fn pr_job() -> u64 {
    1000 + u64::from(std::process::id() % 100_000)
}

/// What the two dbt builds left behind.
struct Built {
    prod_schema: String,
    pr_schema: String,
    prod_manifest: Vec<u8>,
    pr_manifest: Vec<u8>,
    pr_run_results: Vec<u8>,
}

fn dbt(project: &Path, schema: &str, target_path: &Path) {
    let url = WarehouseUrl::parse(&prdiff_tests::pg_url(), std::env::var("PGPASSWORD").ok())
        .expect("PRDIFF_TEST_PG_URL parses");
    let WarehouseUrl::Postgres {
        user,
        password,
        host,
        port,
        database,
        ..
    } = url
    else {
        panic!("the test cluster is PostgreSQL")
    };
    let bin = prdiff_tests::repo_root().join(".venv/bin/dbt");
    let out = std::process::Command::new(&bin)
        .args(["run", "--project-dir"])
        .arg(project)
        .arg("--profiles-dir")
        .arg(project)
        .arg("--target-path")
        .arg(target_path)
        .env("E2E_PG_HOST", host)
        .env("E2E_PG_PORT", port.to_string())
        .env("E2E_PG_USER", user)
        .env(
            "E2E_PG_PASSWORD",
            password.map(|p| p.expose().to_owned()).unwrap_or_default(),
        )
        .env("E2E_PG_DB", database)
        .env("E2E_SCHEMA", schema)
        .env("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{} cannot start ({e}): scripts/test.sh installs dbt-postgres into .venv",
                bin.display()
            )
        });
    assert!(
        out.status.success(),
        "dbt run failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name == "logs" {
            continue;
        }
        if path.is_dir() {
            copy_dir(&path, &to.join(&name));
        } else {
            std::fs::copy(&path, to.join(&name)).unwrap();
        }
    }
}

/// Builds production and the PR once per test process.
fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let src = prdiff_tests::repo_root().join("examples/e2e_shop");
        let prod_project = dir.join("prod");
        let pr_project = dir.join("pr");
        copy_dir(&src, &prod_project);
        copy_dir(&src, &pr_project);
        std::fs::write(
            pr_project.join("models/orders.sql"),
            "select g as id, (g % 100) + 1 as customer_id,\n  \
             case when g <= 50 then g * 10 + 1 else g * 10 end as amount\n\
             from generate_series(1, 1000) as g\nwhere g <> 1000\n",
        )
        .unwrap();
        let prod_schema = prdiff_tests::unique_name("e2e_prod");
        let pr_schema = format!("dbt_cloud_pr_{}_{PR_NUMBER}", pr_job());
        let (prod_target, pr_target) = (dir.join("prod_target"), dir.join("pr_target"));
        dbt(&prod_project, &prod_schema, &prod_target);
        dbt(&pr_project, &pr_schema, &pr_target);
        let read =
            |p: PathBuf| std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        Built {
            prod_schema,
            pr_schema,
            prod_manifest: read(prod_target.join("manifest.json")),
            pr_manifest: read(pr_target.join("manifest.json")),
            pr_run_results: read(pr_target.join("run_results.json")),
        }
    })
}

/// A queue that keeps what was sent, with its delay, for the test to deliver.
#[derive(Default)]
struct RecordingQueue {
    sent: Mutex<Vec<(Message, Duration)>>,
}

impl RecordingQueue {
    fn drain(&self) -> Vec<(Message, Duration)> {
        std::mem::take(&mut *self.sent.lock().unwrap())
    }
}

#[async_trait]
impl Queue for RecordingQueue {
    async fn send(&self, message: &Message, delay: Duration) -> Result<(), QueueError> {
        self.sent.lock().unwrap().push((message.clone(), delay));
        Ok(())
    }
}

/// An SQS event carrying `messages` as Lambda's event source mapping delivers them.
fn sqs_event(messages: &[Message], receive_count: u32) -> SqsEvent {
    let records: Vec<serde_json::Value> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            serde_json::json!({
                "messageId": format!("m-{i}-{}", rand::random::<u32>()),
                "receiptHandle": "rh",
                "body": m.to_json(),
                "attributes": {
                    "ApproximateReceiveCount": receive_count.to_string(),
                    "SentTimestamp": "1700000000000"
                },
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:eu-west-1:000000000000:prdiff-poll",
                "awsRegion": "eu-west-1"
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({ "Records": records })).unwrap()
}

fn config(name: &str, extra: &str) -> CiConfig {
    config_on("github", "Codertocat/Hello-World", name, extra)
}

/// The GitLab project of the merge request fixture.
const GITLAB_PROJECT: &str = "gitlabhq/gitlab-test";

fn config_on(provider: &str, repo: &str, name: &str, extra: &str) -> CiConfig {
    let text = format!(
        r#"
[[ci_config]]
name = "{name}"
data_source = "wh"
repository = {{ provider = "{provider}", full_name = "{repo}" }}
git_auth = {{ kind = "token", token = {{ secret = "prdiff/{name}/git-token" }} }}
dbt_cloud = {{ access_url = "https://ab123.us1.dbt.com", account_id = {ACCOUNT}, api_key = {{ secret = "prdiff/{name}/dbt-api-key" }}, artifacts_job_id = {ARTIFACTS_JOB}, pr_job_id = {job} }}
slim_ci = false
{extra}
"#,
        job = pr_job()
    );
    let file = ConfigFile::parse(&text, &[DataSourceId::parse("wh").unwrap()])
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    file.ci_configs
        .into_iter()
        .next()
        .unwrap()
        .map_secrets(|_, s| match s {
            SecretSource::Stored { secret } => Ok::<_, String>(secret),
            other => Err(format!("{other:?}")),
        })
        .unwrap()
}

/// Artifact bytes by (run, path).
type Artifacts = std::collections::HashMap<(u64, String), Vec<u8>>;

/// dbt Cloud's v2 API on wiremock, answering from runs and artifacts the test puts in.
#[derive(Clone, Default)]
struct FakeDbtCloud {
    runs: Arc<Mutex<std::collections::BTreeMap<u64, Run>>>,
    artifacts: Arc<Mutex<Artifacts>>,
}

impl FakeDbtCloud {
    fn put_run(&self, run: Run) {
        self.runs.lock().unwrap().insert(run.id, run);
    }

    fn put_artifact(&self, run: u64, path: &str, bytes: Vec<u8>) {
        self.artifacts
            .lock()
            .unwrap()
            .insert((run, path.to_owned()), bytes);
    }

    async fn serve(&self) -> wiremock::MockServer {
        use wiremock::matchers::{header, method, path_regex};
        let server = wiremock::MockServer::start().await;
        let runs = self.runs.clone();
        wiremock::Mock::given(method("GET"))
            .and(path_regex(r"^/api/v2/accounts/\d+/runs/$"))
            .and(header("authorization", "Token dbtc_test_key"))
            .respond_with(move |req: &wiremock::Request| {
                let q: std::collections::HashMap<String, String> =
                    req.url.query_pairs().into_owned().collect();
                assert_eq!(q.get("order_by").map(String::as_str), Some("-id"));
                let job: u64 = q["job_definition_id"].parse().unwrap();
                let limit: usize = q["limit"].parse().unwrap();
                let offset: usize = q["offset"].parse().unwrap();
                let page: Vec<Run> = runs
                    .lock()
                    .unwrap()
                    .values()
                    .rev()
                    .filter(|r| r.job_definition_id == Some(job))
                    .skip(offset)
                    .take(limit)
                    .cloned()
                    .collect();
                wiremock::ResponseTemplate::new(200).set_body_json(serde_json::json!({
                    "status": {"code": 200, "is_success": true, "user_message": "Success!", "developer_message": ""},
                    "data": page,
                    "extra": {"filters": {}, "order_by": "-id", "pagination": {"count": 0, "total_count": 0}}
                }))
            })
            .mount(&server)
            .await;
        let artifacts = self.artifacts.clone();
        wiremock::Mock::given(method("GET"))
            .and(path_regex(r"^/api/v2/accounts/\d+/runs/\d+/artifacts/.+$"))
            .and(header("authorization", "Token dbtc_test_key"))
            .respond_with(move |req: &wiremock::Request| {
                let parts: Vec<&str> = req.url.path().split('/').collect();
                // ["", "api", "v2", "accounts", a, "runs", id, "artifacts", path…]
                let run: u64 = parts[6].parse().unwrap();
                let path = parts[8..].join("/");
                match artifacts.lock().unwrap().get(&(run, path)) {
                    Some(bytes) => wiremock::ResponseTemplate::new(200).set_body_bytes(bytes.clone()),
                    None => wiremock::ResponseTemplate::new(404).set_body_json(serde_json::json!({
                        "status": {"code": 404, "is_success": false, "user_message": "Resource not found.", "developer_message": ""}
                    })),
                }
            })
            .mount(&server)
            .await;
        server
    }
}

type Comments = Arc<Mutex<Vec<(u64, String)>>>;
type Statuses = Arc<Mutex<Vec<(String, CommitStatus)>>>;
/// Check runs as GitHub keeps them: the create body, updated by each PATCH, with
/// `annotations` gathered across requests.
type CheckRuns = Arc<Mutex<Vec<serde_json::Value>>>;

/// A check run request applied to the kept check run `run` (as GitHub's "update a check
/// run" documents: fields replaced, `output.annotations` appended).
fn apply_check_run(run: &mut serde_json::Value, req: &serde_json::Value) {
    for (k, v) in req.as_object().unwrap() {
        if k == "output" {
            for (ok, ov) in v.as_object().unwrap() {
                if ok == "annotations" {
                    let a = run["annotations"].as_array_mut().unwrap();
                    a.extend(ov.as_array().unwrap().iter().cloned());
                } else {
                    run["output"][ok] = ov.clone();
                }
            }
        } else {
            run[k] = v.clone();
        }
    }
}

/// GitHub's check run object in a response (the recorded webhook fixture's shape) for the
/// kept `run`.
fn check_run_response(run: &serde_json::Value) -> serde_json::Value {
    let path = prdiff_tests::fixtures().join("github/check_run.created.json");
    let event: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut object = event["check_run"].clone();
    for k in ["id", "name", "head_sha", "status", "conclusion"] {
        object[k] = run[k].clone();
    }
    object
}

/// The comments (GitHub) or notes (GitLab) on one page: all of them on page 1, after
/// `first` when given; later pages are empty.
fn list_comments(
    comments: &Comments,
    req: &wiremock::Request,
    first: Option<serde_json::Value>,
) -> wiremock::ResponseTemplate {
    let page = req
        .url
        .query_pairs()
        .find(|(k, _)| k == "page")
        .map_or(1, |(_, v)| v.parse::<usize>().unwrap());
    let mut list: Vec<serde_json::Value> = Vec::new();
    if page == 1 {
        list.extend(first);
        list.extend(
            comments
                .lock()
                .unwrap()
                .iter()
                .map(|(id, body)| serde_json::json!({"id": id, "body": body, "system": false})),
        );
    }
    wiremock::ResponseTemplate::new(200).set_body_json(list)
}

/// A new comment (GitHub) or note (GitLab): kept, answered with its id.
fn new_comment(comments: &Comments, req: &wiremock::Request) -> wiremock::ResponseTemplate {
    let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    let mut c = comments.lock().unwrap();
    let id = 1000 + c.len() as u64;
    c.push((id, body["body"].as_str().unwrap().to_owned()));
    wiremock::ResponseTemplate::new(201).set_body_json(
        serde_json::json!({"id": id, "body": body["body"], "html_url": comment_url(id)}),
    )
}

/// A GitHub comment's `html_url` (GitLab's note answer has none; prdiff builds it).
fn comment_url(id: u64) -> String {
    format!("https://github.com/Codertocat/Hello-World/pull/{PR_NUMBER}#issuecomment-{id}")
}

/// An edit of the comment whose id ends the path.
fn edit_comment(comments: &Comments, req: &wiremock::Request) -> wiremock::ResponseTemplate {
    let id: u64 = req.url.path().rsplit('/').next().unwrap().parse().unwrap();
    let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    let mut c = comments.lock().unwrap();
    let slot = c
        .iter_mut()
        .find(|(i, _)| *i == id)
        .expect("edits an existing comment");
    slot.1 = body["body"].as_str().unwrap().to_owned();
    wiremock::ResponseTemplate::new(200).set_body_json(
        serde_json::json!({"id": id, "body": body["body"], "html_url": comment_url(id)}),
    )
}

/// A commit status for the sha ending the path; GitHub names the check `context`, GitLab
/// `name`, and GitLab's failure state is `failed`.
fn record_status(
    statuses: &Statuses,
    req: &wiremock::Request,
    name_field: &str,
) -> wiremock::ResponseTemplate {
    let sha = req.url.path().rsplit('/').next().unwrap().to_owned();
    let b: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    let state = match b["state"].as_str().unwrap() {
        "pending" => StatusState::Pending,
        "success" => StatusState::Success,
        "failure" | "failed" => StatusState::Failure,
        "error" => StatusState::Error,
        other => panic!("no status state {other:?}"),
    };
    let description = b["description"].as_str().unwrap().to_owned();
    assert!(description.chars().count() <= 140, "{description}");
    statuses.lock().unwrap().push((
        sha,
        CommitStatus {
            state,
            context: b[name_field].as_str().unwrap().to_owned(),
            description,
            target_url: b["target_url"].as_str().map(str::to_owned),
        },
    ));
    wiremock::ResponseTemplate::new(201).set_body_json(serde_json::json!({"id": 1}))
}

/// GitHub's REST API on wiremock: what prdiff calls, with the comments and statuses kept.
#[derive(Clone, Default)]
struct FakeGitHub {
    comments: Comments,
    statuses: Statuses,
    /// The PR's changed files (`GET /pulls/{n}/files`).
    files: Arc<Mutex<Vec<String>>>,
    /// The PR's commit messages, oldest first (`GET /pulls/{n}/commits`; GitLab
    /// `GET /merge_requests/:iid/commits`, newest first).
    commits: Arc<Mutex<Vec<String>>>,
    /// Check runs (GitHub App installs).
    check_runs: CheckRuns,
    /// Set: the App lacks `checks:write` and every check run request answers 403.
    checks_forbidden: Arc<std::sync::atomic::AtomicBool>,
    /// Check run requests answered 403.
    checks_denied: Arc<std::sync::atomic::AtomicUsize>,
}

/// GitHub's answer to an App without the permission a request needs (counted).
fn checks_forbidden(
    (flag, denied): &(
        Arc<std::sync::atomic::AtomicBool>,
        Arc<std::sync::atomic::AtomicUsize>,
    ),
) -> Option<wiremock::ResponseTemplate> {
    flag.load(std::sync::atomic::Ordering::SeqCst).then(|| {
        denied.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        wiremock::ResponseTemplate::new(403).set_body_json(serde_json::json!({
            "message": "Resource not accessible by integration",
            "documentation_url": "https://docs.github.com/rest/checks/runs#create-a-check-run",
            "status": "403"
        }))
    })
}

impl FakeGitHub {
    async fn serve(&self) -> wiremock::MockServer {
        use wiremock::matchers::{header, method, path, path_regex};
        use wiremock::{Mock, Request, ResponseTemplate};
        let server = wiremock::MockServer::start().await;
        let base = "/repos/Codertocat/Hello-World";
        Mock::given(method("GET"))
            .and(path_regex(r"^/repos/Codertocat/Hello-World/compare/.+$"))
            .and(header("authorization", "Bearer ghp_test"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "status": "ahead", "merge_base_commit": {"sha": BASE}, "commits": [], "files": []
            })))
            .mount(&server)
            .await;
        let files = self.files.clone();
        Mock::given(method("GET"))
            .and(path(format!("{base}/pulls/{PR_NUMBER}/files")))
            .and(header("authorization", "Bearer ghp_test"))
            .respond_with(move |_: &Request| {
                // GitHub's "list pull request files" entries (one page, no Link header).
                let entries: Vec<serde_json::Value> = files
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|f| {
                        serde_json::json!({
                            "sha": "bbcd538c8e72b8c175046e27cc8f907076331401",
                            "filename": f, "status": "modified",
                            "additions": 1, "deletions": 1, "changes": 2
                        })
                    })
                    .collect();
                ResponseTemplate::new(200).set_body_json(entries)
            })
            .mount(&server)
            .await;
        // The PR as GitHub's "get a pull request" shows it (open, no labels, at HEAD):
        // what an on-demand run reads.
        Mock::given(method("GET"))
            .and(path(format!("{base}/pulls/{PR_NUMBER}")))
            .and(header("authorization", "Bearer ghp_test"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "number": PR_NUMBER, "state": "open", "draft": false, "labels": [],
                "head": {"ref": "changes", "sha": HEAD},
                "base": {"ref": "master", "sha": BASE}
            })))
            .mount(&server)
            .await;
        // "Get repository permissions for a user": `Codertocat` administers the
        // repository, `reader` may only read it, anyone else is not a collaborator.
        Mock::given(method("GET"))
            .and(path_regex(
                r"^/repos/Codertocat/Hello-World/collaborators/[^/]+/permission$",
            ))
            .and(header("authorization", "Bearer ghp_test"))
            .respond_with(move |req: &Request| {
                let user = req.url.path().split('/').nth(5).unwrap().to_owned();
                let role = match user.as_str() {
                    "Codertocat" => "admin",
                    "reader" => "read",
                    _ => {
                        return ResponseTemplate::new(404)
                            .set_body_json(serde_json::json!({"message": "Not Found"}));
                    }
                };
                ResponseTemplate::new(200).set_body_json(serde_json::json!({
                    "permission": role, "role_name": role, "user": {"login": user}
                }))
            })
            .mount(&server)
            .await;
        let commits = self.commits.clone();
        Mock::given(method("GET"))
            .and(path(format!("{base}/pulls/{PR_NUMBER}/commits")))
            .and(header("authorization", "Bearer ghp_test"))
            .respond_with(move |_: &Request| {
                // Entries of GitHub's "list commits on a pull request" (a recorded answer,
                // its messages replaced; one page, no Link header).
                let recorded: Vec<serde_json::Value> = serde_json::from_slice(
                    &std::fs::read(prdiff_tests::fixtures().join(
                        "github/rest/pygithub-replay/PullRequest.testGetCommits.response0.get.200.json",
                    ))
                    .unwrap(),
                )
                .unwrap();
                let entries: Vec<serde_json::Value> = commits
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|m| {
                        let mut e = recorded[0].clone();
                        e["commit"]["message"] = m.as_str().into();
                        e
                    })
                    .collect();
                ResponseTemplate::new(200).set_body_json(entries)
            })
            .mount(&server)
            .await;
        let comments = self.comments.clone();
        Mock::given(method("GET"))
            .and(path(format!("{base}/issues/{PR_NUMBER}/comments")))
            .respond_with(move |req: &Request| list_comments(&comments, req, None))
            .mount(&server)
            .await;
        let comments = self.comments.clone();
        Mock::given(method("POST"))
            .and(path(format!("{base}/issues/{PR_NUMBER}/comments")))
            .respond_with(move |req: &Request| new_comment(&comments, req))
            .mount(&server)
            .await;
        let comments = self.comments.clone();
        Mock::given(method("PATCH"))
            .and(path_regex(
                r"^/repos/Codertocat/Hello-World/issues/comments/\d+$",
            ))
            .respond_with(move |req: &Request| edit_comment(&comments, req))
            .mount(&server)
            .await;
        let statuses = self.statuses.clone();
        Mock::given(method("POST"))
            .and(path_regex(
                r"^/repos/Codertocat/Hello-World/statuses/[0-9a-f]{40}$",
            ))
            .respond_with(move |req: &Request| record_status(&statuses, req, "context"))
            .mount(&server)
            .await;
        // A GitHub App's installation token (the shape of GitHub's response); the token is
        // the one the other mocks expect.
        Mock::given(method("POST"))
            .and(path_regex(r"^/app/installations/\d+/access_tokens$"))
            .respond_with(ResponseTemplate::new(201).set_body_json(serde_json::json!({
                "token": "ghp_test", "expires_at": "2099-01-01T00:00:00Z", "permissions": {}
            })))
            .mount(&server)
            .await;
        let runs = self.check_runs.clone();
        let forbidden = (self.checks_forbidden.clone(), self.checks_denied.clone());
        Mock::given(method("POST"))
            .and(path(format!("{base}/check-runs")))
            .and(header("authorization", "Bearer ghp_test"))
            .respond_with(move |req: &Request| {
                if let Some(denied) = checks_forbidden(&forbidden) {
                    return denied;
                }
                let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
                let mut runs = runs.lock().unwrap();
                let mut run = serde_json::json!({
                    "id": runs.len() as u64 + 1, "status": "queued", "conclusion": null,
                    "output": {}, "annotations": []
                });
                apply_check_run(&mut run, &body);
                let resp = check_run_response(&run);
                runs.push(run);
                ResponseTemplate::new(201).set_body_json(resp)
            })
            .mount(&server)
            .await;
        let runs = self.check_runs.clone();
        let forbidden = (self.checks_forbidden.clone(), self.checks_denied.clone());
        Mock::given(method("GET"))
            .and(path_regex(
                r"^/repos/Codertocat/Hello-World/commits/[0-9a-f]{40}/check-runs$",
            ))
            .respond_with(move |req: &Request| {
                let sha = req.url.path().split('/').nth(5).unwrap().to_owned();
                if let Some(denied) = checks_forbidden(&forbidden) {
                    return denied;
                }
                let name = req
                    .url
                    .query_pairs()
                    .find(|(k, _)| k == "check_name")
                    .map(|(_, v)| v.into_owned());
                let list: Vec<serde_json::Value> = runs
                    .lock()
                    .unwrap()
                    .iter()
                    .rev()
                    .filter(|r| r["head_sha"] == sha.as_str())
                    .filter(|r| name.as_deref().is_none_or(|n| r["name"] == n))
                    .map(check_run_response)
                    .collect();
                ResponseTemplate::new(200).set_body_json(
                    serde_json::json!({"total_count": list.len(), "check_runs": list}),
                )
            })
            .mount(&server)
            .await;
        let runs = self.check_runs.clone();
        let forbidden = (self.checks_forbidden.clone(), self.checks_denied.clone());
        Mock::given(method("PATCH"))
            .and(path_regex(
                r"^/repos/Codertocat/Hello-World/check-runs/\d+$",
            ))
            .respond_with(move |req: &Request| {
                let id: u64 = req.url.path().rsplit('/').next().unwrap().parse().unwrap();
                if let Some(denied) = checks_forbidden(&forbidden) {
                    return denied;
                }
                let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
                let annotations = body["output"]["annotations"].as_array().map_or(0, Vec::len);
                assert!(annotations <= 50, "GitHub takes 50 annotations per request");
                let mut runs = runs.lock().unwrap();
                match runs.iter_mut().find(|r| r["id"] == id) {
                    Some(run) => {
                        apply_check_run(run, &body);
                        ResponseTemplate::new(200).set_body_json(check_run_response(run))
                    }
                    None => ResponseTemplate::new(404)
                        .set_body_json(serde_json::json!({"message": "Not Found"})),
                }
            })
            .mount(&server)
            .await;
        server
    }

    /// GitLab's REST API (v4) for the same PR/MR: MR diffs and labels, merge base, commit
    /// statuses, notes (the sticky comment), kept in the same lists.
    async fn serve_gitlab(&self) -> wiremock::MockServer {
        use wiremock::matchers::{header, method, path, path_regex};
        use wiremock::{Mock, Request, ResponseTemplate};
        let server = wiremock::MockServer::start().await;
        let project = format!("/api/v4/projects/{}", GITLAB_PROJECT.replace('/', "%2F"));
        let mr = format!("{project}/merge_requests/{PR_NUMBER}");
        Mock::given(method("GET"))
            .and(path(format!("{project}/repository/merge_base")))
            .and(header("private-token", "glpat_test"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"id": BASE})))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(format!("{mr}/diffs")))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!([
                {"old_path": "models/orders.sql", "new_path": "models/orders.sql"}
            ])))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(mr.clone()))
            .and(header("private-token", "glpat_test"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "iid": PR_NUMBER, "labels": [], "state": "opened", "draft": false,
                "work_in_progress": false, "sha": HEAD,
                "source_branch": "changes", "target_branch": "master"
            })))
            .mount(&server)
            .await;
        // "Get a member of a project, including inherited members": user 1 is a
        // Maintainer (40), user 2 a Reporter (20), anyone else not a member.
        Mock::given(method("GET"))
            .and(path_regex(format!(r"^{project}/members/all/\d+$")))
            .and(header("private-token", "glpat_test"))
            .respond_with(|req: &Request| {
                let id: u64 = req.url.path().rsplit('/').next().unwrap().parse().unwrap();
                let level = match id {
                    1 => 40,
                    2 => 20,
                    _ => {
                        return ResponseTemplate::new(404)
                            .set_body_json(serde_json::json!({"message": "404 Not found"}));
                    }
                };
                ResponseTemplate::new(200).set_body_json(serde_json::json!({
                    "id": id, "username": format!("user{id}"), "state": "active",
                    "access_level": level
                }))
            })
            .mount(&server)
            .await;
        let commits = self.commits.clone();
        Mock::given(method("GET"))
            .and(path(format!("{mr}/commits")))
            .respond_with(move |_: &Request| {
                // GitLab's "get single merge request commits" entries, newest first.
                let entries: Vec<serde_json::Value> = commits
                    .lock()
                    .unwrap()
                    .iter()
                    .rev()
                    .map(|m| {
                        serde_json::json!({
                            "id": "ed899a2f4b50b4370feeea94676502b42383c746",
                            "short_id": "ed899a2f4b5",
                            "title": m.lines().next().unwrap_or(""),
                            "author_name": "example",
                            "author_email": "user@example.com",
                            "created_at": "2012-09-20T11:50:22+03:00",
                            "message": m
                        })
                    })
                    .collect();
                ResponseTemplate::new(200).set_body_json(entries)
            })
            .mount(&server)
            .await;
        let comments = self.comments.clone();
        Mock::given(method("GET"))
            .and(path(format!("{mr}/notes")))
            .respond_with(move |req: &Request| {
                // GitLab lists system notes ("added 1 commit") among the MR's notes.
                let system = serde_json::json!({"id": 1, "body": "added 1 commit", "system": true});
                list_comments(&comments, req, Some(system))
            })
            .mount(&server)
            .await;
        let comments = self.comments.clone();
        Mock::given(method("POST"))
            .and(path(format!("{mr}/notes")))
            .respond_with(move |req: &Request| new_comment(&comments, req))
            .mount(&server)
            .await;
        let comments = self.comments.clone();
        Mock::given(method("PUT"))
            .and(path_regex(format!(r"^{mr}/notes/\d+$")))
            .respond_with(move |req: &Request| {
                assert!(
                    !req.url.path().ends_with("/notes/1"),
                    "a system note is never edited"
                );
                edit_comment(&comments, req)
            })
            .mount(&server)
            .await;
        let statuses = self.statuses.clone();
        Mock::given(method("POST"))
            .and(path_regex(format!(r"^{project}/statuses/[0-9a-f]{{40}}$")))
            .respond_with(move |req: &Request| record_status(&statuses, req, "name"))
            .mount(&server)
            .await;
        server
    }

    fn comments(&self) -> Vec<(u64, String)> {
        self.comments.lock().unwrap().clone()
    }

    fn statuses(&self) -> Vec<(String, CommitStatus)> {
        self.statuses.lock().unwrap().clone()
    }

    fn check_runs(&self) -> Vec<serde_json::Value> {
        self.check_runs.lock().unwrap().clone()
    }
}

/// Everything wired: the three handlers over one store, fakes for the outside world.
struct Pipeline {
    webhook: prdiff_webhook::Deps,
    poller: prdiff_poller::Deps,
    differ: prdiff_diff::Deps,
    runs: Arc<dyn RunStore>,
    host: FakeGitHub,
    _github_server: wiremock::MockServer,
    dbt: FakeDbtCloud,
    _dbt_server: wiremock::MockServer,
    poll: Arc<RecordingQueue>,
    diffs: Arc<RecordingQueue>,
    /// The secrets every handler reads (the warehouse password, tokens).
    secrets: Arc<LocalSecrets>,
    /// The repository is on GitLab (merge request hooks, notes, GitLab statuses).
    gitlab: bool,
}

impl Pipeline {
    async fn embedded(config: &CiConfig) -> Self {
        let store = Arc::new(EmbeddedStore::in_memory());
        Self::over(store.clone(), store, config).await
    }

    async fn over(
        configs: Arc<dyn ConfigStore>,
        runs: Arc<dyn RunStore>,
        config: &CiConfig,
    ) -> Self {
        let dbt = FakeDbtCloud::default();
        let dbt_server = dbt.serve().await;
        let mut config = config.clone();
        config.dbt_cloud.access_url = url::Url::parse(&dbt_server.uri()).unwrap();
        let github = FakeGitHub::default();
        let gitlab = config.repository.provider == prdiff_shared::config::Provider::Gitlab;
        let github_server = if gitlab {
            github.serve_gitlab().await
        } else {
            github.serve().await
        };
        let api = if gitlab {
            format!("{}/api/v4", github_server.uri())
        } else {
            github_server.uri()
        };
        config.repository.api_base_url = Some(url::Url::parse(&api).unwrap());
        let config = &config;
        let url =
            WarehouseUrl::parse(&prdiff_tests::pg_url(), std::env::var("PGPASSWORD").ok()).unwrap();
        let WarehouseUrl::Postgres {
            user,
            password,
            host,
            port,
            database,
            ..
        } = url
        else {
            panic!("the test cluster is PostgreSQL")
        };
        let secrets = Arc::new(LocalSecrets::in_memory());
        let wh_secret = SecretName::parse("prdiff/wh/warehouse").unwrap();
        if let Some(p) = &password {
            secrets.insert(&wh_secret, p.expose());
        }
        let source = DataSource {
            id: DataSourceId::parse("wh").unwrap(),
            kind: DataSourceKind::Postgres,
            connection: [
                ("host".to_owned(), host),
                ("port".to_owned(), port.to_string()),
                ("database".to_owned(), database),
                ("user".to_owned(), user),
            ]
            .into_iter()
            .collect(),
            secret: password.is_some().then_some(wh_secret),
        };
        configs
            .put_all(&[source], std::slice::from_ref(config))
            .await
            .unwrap();
        let webhook_secret = SecretName::parse("prdiff/webhook-secret").unwrap();
        secrets.insert(&webhook_secret, SECRET);
        secrets.insert(&config.dbt_cloud.api_key, "dbtc_test_key");
        secrets.insert(
            &SecretName::parse(format!("prdiff/{}/git-token", config.name)).unwrap(),
            if gitlab { "glpat_test" } else { "ghp_test" },
        );
        let hosts = Arc::new(HttpGitHosts::new(secrets.clone(), HttpSettings::default()));
        let poll = Arc::new(RecordingQueue::default());
        let diffs = Arc::new(RecordingQueue::default());
        let sync = Arc::new(RecordingQueue::default());
        let webhook = prdiff_webhook::Deps {
            configs: configs.clone(),
            runs: runs.clone(),
            secrets: secrets.clone(),
            hosts: hosts.clone(),
            poll_queue: poll.clone(),
            sync_queue: sync,
            settings: prdiff_webhook::Settings::new(webhook_secret),
        };
        // Synced model metadata (owners, descriptions): empty unless a test stores some.
        let metadata: Arc<dyn prdiff_shared::metadata::MetadataStore> =
            Arc::new(prdiff_shared::metadata::embedded::EmbeddedMetadata::in_memory());
        let poller = prdiff_poller::Deps {
            configs: configs.clone(),
            runs: runs.clone(),
            secrets: secrets.clone(),
            hosts: hosts.clone(),
            dbt: Arc::new(prdiff_shared::dbtcloud::http::HttpDbtCloud::default()),
            poll_queue: poll.clone(),
            diff_queue: diffs.clone(),
            metadata: Some(metadata.clone()),
            settings: prdiff_poller::Settings::default(),
        };
        let differ = prdiff_diff::Deps {
            configs,
            runs: runs.clone(),
            secrets: secrets.clone(),
            hosts: hosts.clone(),
            metadata: Some(metadata),
            settings: prdiff_diff::Settings::default(),
        };
        Self {
            webhook,
            poller,
            differ,
            runs,
            host: github,
            _github_server: github_server,
            dbt,
            _dbt_server: dbt_server,
            poll,
            diffs,
            secrets,
            gitlab,
        }
    }

    /// Sends the signed `pull_request` webhook for `head`; returns the new run's id.
    async fn open_pr(&self, delivery: &str, head: &str) -> RunId {
        if self.gitlab {
            return self.open_mr(delivery, head).await;
        }
        let mut body: serde_json::Value = serde_json::from_slice(
            &std::fs::read(prdiff_tests::fixtures().join("github/pull_request.opened.json"))
                .unwrap(),
        )
        .unwrap();
        body["pull_request"]["head"]["sha"] = head.into();
        let req = github("pull_request", delivery, serde_json::to_vec(&body).unwrap());
        let resp = prdiff_webhook::handle(&req, &self.webhook).await;
        assert_eq!(resp.status, 202, "{}", resp.body);
        RunId::parse(resp.body["runs"][0]["run_id"].as_str().unwrap()).unwrap()
    }

    /// The GitLab merge request hook (the fixture, made MR `PR_NUMBER` at `head`), with
    /// the secret token; returns the new run's id.
    async fn open_mr(&self, key: &str, head: &str) -> RunId {
        let mut body: serde_json::Value = serde_json::from_slice(
            &std::fs::read(
                prdiff_tests::fixtures().join("gitlab/gitlab-docs.merge_request.open.json"),
            )
            .unwrap(),
        )
        .unwrap();
        body["object_attributes"]["iid"] = PR_NUMBER.into();
        body["object_attributes"]["last_commit"]["id"] = head.into();
        let req = prdiff_webhook::WebhookRequest::new(
            [
                ("X-Gitlab-Event", "Merge Request Hook"),
                ("Idempotency-Key", key),
                ("X-Gitlab-Token", SECRET),
                ("Content-Type", "application/json"),
            ],
            serde_json::to_vec(&body).unwrap(),
        );
        let resp = prdiff_webhook::handle(&req, &self.webhook).await;
        assert_eq!(resp.status, 202, "{}", resp.body);
        RunId::parse(resp.body["runs"][0]["run_id"].as_str().unwrap()).unwrap()
    }

    /// The PR job's run for `head` in `state`, serving the PR artifacts dbt wrote.
    fn pr_run(&self, id: u64, head: &str, state: u32, pr_run_results: Option<Vec<u8>>) {
        let b = built();
        self.dbt.put_run(Run {
            id,
            account_id: Some(ACCOUNT),
            job_definition_id: Some(pr_job()),
            status: state,
            git_sha: Some(head.into()),
            git_branch: Some("changes".into()),
            status_message: (state == status::ERROR)
                .then(|| "Database Error in model orders".into()),
            created_at: Some("2026-11-27 10:00:00.000000+00:00".into()),
            finished_at: None,
            artifacts_saved: None,
            href: Some(format!(
                "https://ab123.us1.dbt.com/deploy/1/projects/1/runs/{id}/"
            )),
            trigger: Some(Trigger {
                cause: Some("Triggered via GitHub PR".into()),
                git_sha: Some(head.into()),
                github_pull_request_id: (!self.gitlab).then_some(PR_NUMBER),
                gitlab_merge_request_id: self.gitlab.then_some(PR_NUMBER),
                schema_override: Some(b.pr_schema.clone()),
                ..Default::default()
            }),
        });
        self.dbt
            .put_artifact(id, "manifest.json", b.pr_manifest.clone());
        self.dbt.put_artifact(
            id,
            "run_results.json",
            pr_run_results.unwrap_or_else(|| b.pr_run_results.clone()),
        );
    }

    /// A successful artifacts-job run at `sha` serving the production manifest.
    fn prod_run(&self, id: u64, sha_: &str) {
        self.dbt.put_run(Run {
            id,
            account_id: Some(ACCOUNT),
            job_definition_id: Some(ARTIFACTS_JOB),
            status: status::SUCCESS,
            git_sha: Some(sha_.into()),
            git_branch: Some("master".into()),
            status_message: None,
            created_at: Some("2026-01-01T09:00:00Z".into()),
            finished_at: None,
            artifacts_saved: Some(true),
            href: None,
            trigger: None,
        });
        self.dbt
            .put_artifact(id, "manifest.json", built().prod_manifest.clone());
    }

    /// Delivers every queued poll message to the poller once.
    async fn deliver_polls(&self) -> Vec<prdiff_poller::PollOutcome> {
        let msgs: Vec<Message> = self.poll.drain().into_iter().map(|(m, _)| m).collect();
        let mut outcomes = Vec::new();
        for m in &msgs {
            outcomes.push(
                prdiff_poller::handle_message(&m.to_json(), &self.poller)
                    .await
                    .unwrap(),
            );
        }
        // And through the SQS entry point: nothing is left to retry.
        let resp = prdiff_poller::handle_batch(sqs_event(&[], 1), &self.poller).await;
        assert!(resp.batch_item_failures.is_empty());
        outcomes
    }

    /// Delivers the queued diff messages as one SQS batch; every message succeeds.
    async fn deliver_diffs(&self) -> Vec<Message> {
        let msgs: Vec<Message> = self.diffs.drain().into_iter().map(|(m, _)| m).collect();
        let resp = prdiff_diff::handle_batch(sqs_event(&msgs, 1), &self.differ).await;
        assert!(resp.batch_item_failures.is_empty(), "{resp:?}");
        msgs
    }

    fn comments(&self) -> Vec<String> {
        self.host
            .comments()
            .into_iter()
            .map(|(_, body)| body)
            .collect()
    }

    fn final_statuses(&self, head: &str) -> Vec<(StatusState, String)> {
        self.host
            .statuses()
            .into_iter()
            .filter(|(s, st)| s.as_str() == head && st.state != StatusState::Pending)
            .map(|(_, st)| (st.state, st.description))
            .collect()
    }
}

/// The report's table row of a model, split into cells.
fn row<'a>(comment: &'a str, model: &str) -> Vec<&'a str> {
    comment
        .lines()
        .find(|l| l.starts_with('|') && l.contains(model))
        .unwrap_or_else(|| panic!("no row for {model} in:\n{comment}"))
        .split('|')
        .map(str::trim)
        .collect()
}

async fn run_state(p: &Pipeline, id: &RunId) -> RunState {
    p.runs.get_run(id).await.unwrap().unwrap().state
}

/// `race`: the two models finish at the same time (on moto, whose conditional updates are
/// not isolated, they finish one after the other; the race itself runs on SQLite).
async fn happy_path(p: &Pipeline, race: bool) {
    let b = built();
    let run = p.open_pr("e2e-1", HEAD).await;
    p.prod_run(500, BASE);

    // The PR job has not started, then runs for two polls: the message comes back with a
    // growing delay and the comment says what prdiff waits for.
    let first = p.deliver_polls().await;
    assert!(matches!(
        first[..],
        [prdiff_poller::PollOutcome::Waiting { dbt_run: None, .. }]
    ));
    p.pr_run(900, HEAD, status::QUEUED, None);
    let mut delays = Vec::new();
    for _ in 0..2 {
        let queued = p.poll.sent.lock().unwrap().clone();
        delays.extend(queued.iter().map(|(_, d)| d.as_secs()));
        let out = p.deliver_polls().await;
        assert!(
            matches!(
                out[..],
                [prdiff_poller::PollOutcome::Waiting {
                    dbt_run: Some(900),
                    ..
                }]
            ),
            "{out:?}"
        );
        p.pr_run(900, HEAD, status::RUNNING, None);
    }
    // No finished run of the job to learn from: a minute between polls.
    assert!(delays.iter().all(|d| *d == 60), "{delays:?}");
    let waiting = p.comments();
    assert_eq!(waiting.len(), 1, "one sticky comment");
    assert!(
        waiting[0].contains("waiting for dbt Cloud run 900"),
        "{}",
        waiting[0]
    );
    assert!(waiting[0].contains("<!-- prdiff:shop -->"));

    // Done: planned and fanned out, one diff message per model.
    p.pr_run(900, HEAD, status::SUCCESS, None);
    let out = p.deliver_polls().await;
    assert_eq!(out, [prdiff_poller::PollOutcome::FannedOut { models: 2 }]);
    assert_eq!(run_state(p, &run).await, RunState::Diffing);
    assert!(p.poll.drain().is_empty(), "no more polls once fanned out");

    // The two models finish at the same time: exactly one report.
    let msgs: Vec<Message> = p.diffs.drain().into_iter().map(|(m, _)| m).collect();
    assert_eq!(msgs.len(), 2);
    let (body_a, body_c) = (msgs[0].to_json(), msgs[1].to_json());
    let (a, c) = if race {
        tokio::join!(
            prdiff_diff::handle_message(&body_a, 1, &p.differ),
            prdiff_diff::handle_message(&body_c, 1, &p.differ),
        )
    } else {
        let a = prdiff_diff::handle_message(&body_a, 1, &p.differ).await;
        (a, prdiff_diff::handle_message(&body_c, 1, &p.differ).await)
    };
    let published = [a.unwrap(), c.unwrap()]
        .iter()
        .filter(|o| **o == prdiff_diff::DiffOutcome::Published)
        .count();
    assert_eq!(published, 1, "one report, not two");
    assert_eq!(run_state(p, &run).await, RunState::Done);

    // A duplicate diff message changes nothing.
    let resp = prdiff_diff::handle_batch(sqs_event(&msgs[..1], 2), &p.differ).await;
    assert!(resp.batch_item_failures.is_empty());

    let comments = p.comments();
    assert_eq!(comments.len(), 1, "the sticky comment is edited, not added");
    let report = &comments[0];
    assert!(report.contains(&b.pr_schema), "{report}");
    // | model | rows prod → PR | added | removed | changed | columns changed | …
    let orders = row(report, "orders");
    assert_eq!(orders[2..6], ["1,000 → 999", "0", "1", "50"], "{orders:?}");
    assert_eq!(orders[6], "1", "one column (amount) changed: {orders:?}");
    let customers = row(report, "customers");
    assert_eq!(
        customers[2..6],
        ["100 → 100", "0", "0", "0"],
        "{customers:?}"
    );
    let statuses = p.final_statuses(HEAD);
    assert_eq!(statuses.len(), 1, "{statuses:?}");
    assert_eq!(statuses[0].0, StatusState::Success);
    assert_eq!(statuses[0].1, "prdiff: 2 models diffed, 1 with differences");
    assert!(statuses[0].1.chars().count() <= 140);
    let _ = &b.prod_schema;
}

#[tokio::test]
async fn a_pull_request_is_diffed_and_reported_once_on_the_embedded_adapters() {
    let p = Pipeline::embedded(&config("shop", "")).await;
    happy_path(&p, true).await;
}

#[tokio::test]
async fn a_second_push_supersedes_the_first_run_quietly() {
    let p = Pipeline::embedded(&config("shop", "")).await;
    let first = p.open_pr("e2e-s1", HEAD).await;
    let first_poll = p.poll.drain();
    let second = p.open_pr("e2e-s2", NEWER_HEAD).await;
    assert_eq!(run_state(&p, &first).await, RunState::Superseded);
    // The first run's poll arrives late: it ends without a word to the PR.
    for (m, _) in &first_poll {
        let out = prdiff_poller::handle_message(&m.to_json(), &p.poller)
            .await
            .unwrap();
        assert_eq!(
            out,
            prdiff_poller::PollOutcome::Closed(RunState::Superseded)
        );
    }
    // dbt Cloud cancelled the first commit's run; the second one is being waited for.
    p.pr_run(901, HEAD, status::CANCELLED, None);
    let out = p.deliver_polls().await;
    assert!(
        matches!(out[..], [prdiff_poller::PollOutcome::Waiting { .. }]),
        "{out:?}"
    );
    assert_eq!(run_state(&p, &second).await, RunState::WaitingForDbt);
    // The first commit's check ends, naming the commit that replaced it.
    assert_eq!(
        p.final_statuses(HEAD),
        [(
            StatusState::Failure,
            "prdiff: superseded by 0d1a26e".to_owned()
        )]
    );
    assert!(p.final_statuses(NEWER_HEAD).is_empty());
}

#[tokio::test]
async fn a_failed_dbt_run_fails_the_check_with_its_link() {
    let p = Pipeline::embedded(&config("shop", "")).await;
    let run = p.open_pr("e2e-f1", HEAD).await;
    p.pr_run(902, HEAD, status::ERROR, None);
    let out = p.deliver_polls().await;
    assert_eq!(
        out,
        [prdiff_poller::PollOutcome::DbtFailed { dbt_run: 902 }]
    );
    assert_eq!(run_state(&p, &run).await, RunState::Failed);
    let statuses = p.host.statuses();
    let last = &statuses.last().unwrap().1;
    assert_eq!(last.state, StatusState::Failure);
    assert!(
        last.description.contains("dbt Cloud run 902 failed"),
        "{last:?}"
    );
    // The check links to the comment, which links to the dbt Cloud run.
    let (id, comment) = p.host.comments().pop().unwrap();
    assert_eq!(last.target_url.as_deref(), Some(comment_url(id).as_str()));
    assert!(comment.contains("/runs/902/"), "{comment}");
}

#[tokio::test]
async fn with_status_reporting_off_a_failed_dbt_run_does_not_block_the_pr() {
    let p = Pipeline::embedded(&config("shop", "status_reporting = false")).await;
    p.open_pr("e2e-f2", HEAD).await;
    p.pr_run(903, HEAD, status::ERROR, None);
    p.deliver_polls().await;
    let statuses = p.final_statuses(HEAD);
    assert_eq!(statuses.len(), 1);
    assert_eq!(statuses[0].0, StatusState::Success);
    assert!(statuses[0].1.contains("not blocking"), "{statuses:?}");
}

#[tokio::test]
async fn without_an_artifacts_run_at_the_merge_base_the_newest_earlier_one_is_used_and_said() {
    let p = Pipeline::embedded(&config("shop", "")).await;
    p.open_pr("e2e-m1", HEAD).await;
    p.prod_run(501, NEWER_HEAD);
    p.pr_run(904, HEAD, status::SUCCESS, None);
    p.deliver_polls().await;
    p.deliver_diffs().await;
    let report = &p.comments()[0];
    assert!(
        report.contains("no artifacts run at the merge base f95f852"),
        "{report}"
    );
    assert!(report.contains("dbt Cloud run 501"), "{report}");
}

#[tokio::test]
async fn a_model_failing_in_the_warehouse_is_a_row_of_the_report_and_fails_the_check() {
    let p = Pipeline::embedded(&config("shop", "")).await;
    let run = p.open_pr("e2e-w1", HEAD).await;
    p.prod_run(502, BASE);
    // The PR run says it built `customers` into a relation that does not exist.
    let mut results: serde_json::Value = serde_json::from_slice(&built().pr_run_results).unwrap();
    for r in results["results"].as_array_mut().unwrap() {
        if r["unique_id"] == "model.e2e_shop.customers" {
            let rel = r["relation_name"]
                .as_str()
                .unwrap()
                .replace("customers", "customers_missing");
            r["relation_name"] = rel.into();
        }
    }
    p.pr_run(
        905,
        HEAD,
        status::SUCCESS,
        Some(serde_json::to_vec(&results).unwrap()),
    );
    p.deliver_polls().await;
    p.deliver_diffs().await;
    assert_eq!(run_state(&p, &run).await, RunState::Done);
    let report = &p.comments()[0];
    let customers = row(report, "customers").join("|");
    assert!(
        customers.contains("failed") && customers.contains("customers\\_missing"),
        "the warehouse's error is the model's row: {report}"
    );
    // A failed model fails the check (status reporting is on).
    let statuses = p.final_statuses(HEAD);
    assert_eq!(
        statuses,
        [(
            StatusState::Failure,
            "prdiff: 1 of 2 models failed, 1 with differences".to_owned()
        )]
    );
}

#[tokio::test]
async fn a_gitlab_merge_request_is_diffed_and_reported_once_as_a_note() {
    let p = Pipeline::embedded(&config_on("gitlab", GITLAB_PROJECT, "shop", "")).await;
    happy_path(&p, true).await;
    // The pending status and the final one went to GitLab under the configuration's name.
    let all = p.host.statuses();
    assert!(
        all.iter().all(|(_, st)| st.context == "prdiff/shop"),
        "{all:?}"
    );
    assert!(
        all.iter()
            .any(|(sha, st)| sha == HEAD && st.state == StatusState::Pending)
    );
    // The final status links to the note on the merge request page.
    let (note, _) = p.host.comments().pop().unwrap();
    let last = &all.last().unwrap().1;
    assert_eq!(
        last.target_url.as_deref(),
        Some(
            format!(
                "{}/{GITLAB_PROJECT}/-/merge_requests/{PR_NUMBER}#note_{note}",
                p._github_server.uri()
            )
            .as_str()
        )
    );
}

#[tokio::test]
async fn a_pull_request_is_diffed_and_reported_once_on_the_aws_adapters_against_moto() {
    let store = Arc::new(crate::stores::dynamo_store().await);
    let p = Pipeline::over(store.clone(), store, &config("shop", "")).await;
    happy_path(&p, false).await;
}

#[tokio::test]
async fn past_the_deadline_the_run_ends_with_a_clear_status() {
    let p = Pipeline::embedded(&config("shop", "")).await;
    let run = p.open_pr("e2e-d1", HEAD).await;
    let (msg, _) = p.poll.drain().pop().unwrap();
    let Message::Poll(mut poll) = msg else {
        panic!("a poll message")
    };
    poll.deadline_unix = 0;
    let out = prdiff_poller::handle_message(&Message::Poll(poll).to_json(), &p.poller)
        .await
        .unwrap();
    assert_eq!(out, prdiff_poller::PollOutcome::TimedOut);
    assert_eq!(run_state(&p, &run).await, RunState::Failed);
    let statuses = p.final_statuses(HEAD);
    assert_eq!(statuses.len(), 1);
    assert_eq!(statuses[0].0, StatusState::Failure);
    assert!(
        statuses[0].1.contains("no dbt Cloud run of job") && statuses[0].1.contains("deadline"),
        "{statuses:?}"
    );
    assert!(p.poll.drain().is_empty(), "not polled again");
}

#[tokio::test]
async fn an_artifacts_job_without_any_successful_run_ends_the_run_instead_of_retrying() {
    let p = Pipeline::embedded(&config("shop", "")).await;
    let run = p.open_pr("e2e-a1", HEAD).await;
    p.pr_run(906, HEAD, status::SUCCESS, None);
    let msgs: Vec<Message> = p.poll.drain().into_iter().map(|(m, _)| m).collect();
    let resp = prdiff_poller::handle_batch(sqs_event(&msgs, 1), &p.poller).await;
    assert!(
        resp.batch_item_failures.is_empty(),
        "not sent to the DLQ: {resp:?}"
    );
    assert_eq!(run_state(&p, &run).await, RunState::Failed);
    let statuses = p.final_statuses(HEAD);
    assert!(
        statuses[0]
            .1
            .contains("artifacts job 2 has no successful run"),
        "{statuses:?}"
    );
}

/// Many models finishing at once on each run store: each counts once, redeliveries count
/// not at all, and exactly one writer sees the last model. `concurrent: false` records
/// them one after another: moto does not isolate concurrent conditional updates (real
/// DynamoDB evaluates each condition atomically), so against moto a race would test moto.
async fn count_once(runs: Arc<dyn RunStore>, concurrent: bool) {
    let run = RunId::new();
    let item = |name: String| {
        let rel = Relation::parse(&format!("analytics.{name}")).unwrap();
        let req = prdiff_shared::diff::DiffRequest::new(rel.clone(), rel, vec!["id".into()]);
        prdiff_shared::run::WorkItem::from_request(&name, &req)
    };
    let models: Vec<(String, prdiff_shared::run::WorkItem)> = (0..12)
        .map(|i| (format!("model.shop.m{i:02}"), item(format!("m{i:02}"))))
        .collect();
    assert!(
        runs.put_fanout(
            &run,
            &prdiff_shared::run::FanOut {
                summary: Default::default(),
                models: models.clone(),
            },
        )
        .await
        .unwrap()
    );
    assert!(!runs.has_result(&run, &models[0].0).await.unwrap());
    let mut tasks = Vec::new();
    let mut outcomes = Vec::new();
    // Every model twice (a redelivery racing the original).
    for (m, _) in models.iter().chain(models.iter()) {
        let (runs, run, m) = (runs.clone(), run.clone(), m.clone());
        let record = async move {
            let failed = prdiff_shared::run::StoredOutcome::Error("x".into());
            runs.record_result(&run, &m, Some(&failed)).await.unwrap()
        };
        if concurrent {
            tasks.push(tokio::spawn(record));
        } else {
            outcomes.push(record.await);
        }
    }
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    assert_eq!(outcomes.iter().filter(|o| o.first).count(), 12);
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| o.first && o.remaining == 0)
            .count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(runs.results(&run).await.unwrap().len(), 12);
    for (m, _) in &models {
        assert!(runs.has_result(&run, m).await.unwrap(), "{m}");
    }
    assert!(
        !runs
            .has_result(&run, "model.shop.not_in_the_run")
            .await
            .unwrap()
    );
    assert!(
        !runs
            .put_fanout(
                &run,
                &prdiff_shared::run::FanOut {
                    summary: Default::default(),
                    models,
                },
            )
            .await
            .unwrap(),
        "the fan-out is written once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn results_finishing_together_are_counted_once_on_sqlite() {
    count_once(Arc::new(EmbeddedStore::in_memory()), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn results_recorded_twice_are_counted_once_on_dynamodb() {
    count_once(Arc::new(crate::stores::dynamo_store().await), false).await;
}

/// Waits (real time) until `done` holds; panics with `what` after `within`.
async fn eventually(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `prdiff serve`'s wiring over the pipeline's store (a file) and fakes, with fresh
/// queues on the same file: what a restarted process would open.
fn serve_services(p: &Pipeline, db: &Path) -> prdiff_serve::Services {
    prdiff_serve::Services {
        configs: p.webhook.configs.clone(),
        runs: p.runs.clone(),
        metadata: Arc::new(prdiff_shared::metadata::embedded::EmbeddedMetadata::open(db).unwrap()),
        secrets: p.webhook.secrets.clone(),
        hosts: p.webhook.hosts.clone(),
        dbt: p.poller.dbt.clone(),
        queues: prdiff_shared::queue::embedded::EmbeddedQueues::open(db).unwrap(),
    }
}

/// Sends a webhook request to a running `prdiff serve` at `addr`; answers its response.
async fn post_webhook(
    addr: impl std::fmt::Display,
    req: &prdiff_webhook::WebhookRequest,
) -> reqwest::Response {
    let mut post = reqwest::Client::new().post(format!("http://{addr}/webhook"));
    for (k, v) in &req.headers {
        post = post.header(k.as_str(), v.as_str());
    }
    post.body(req.body.clone()).send().await.unwrap()
}

/// Starts serve; returns its address, the stop switch and the task.
async fn start_serve(
    p: &Pipeline,
    db: &Path,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let mut settings = prdiff_serve::Settings::new(
        "127.0.0.1:0".parse().unwrap(),
        SecretName::parse("prdiff/webhook-secret").unwrap(),
    );
    settings.webhook.poll_delay = Duration::ZERO;
    settings.poller.first_delay = Duration::from_secs(1);
    settings.sync_tick = None;
    settings.shutdown_grace = Duration::from_secs(20);
    let server = prdiff_serve::Server::bind(serve_services(p, db), settings)
        .await
        .unwrap();
    let addr = server.local_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    (addr, tx, task)
}

#[tokio::test]
async fn through_prdiff_serve_a_pull_request_is_reported_once_even_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("prdiff.db");
    let store = Arc::new(EmbeddedStore::open(&db).unwrap());
    let p = Pipeline::over(store.clone(), store, &config("shop", "")).await;
    p.prod_run(500, BASE);
    p.pr_run(900, HEAD, status::RUNNING, None);

    // The signed webhook over HTTP, as GitHub sends it.
    let (addr, stop, task) = start_serve(&p, &db).await;
    let mut body: serde_json::Value = serde_json::from_slice(
        &std::fs::read(prdiff_tests::fixtures().join("github/pull_request.opened.json")).unwrap(),
    )
    .unwrap();
    body["pull_request"]["head"]["sha"] = HEAD.into();
    let req = github(
        "pull_request",
        "serve-1",
        serde_json::to_vec(&body).unwrap(),
    );
    let http = reqwest::Client::new();
    let mut post = http.post(format!("http://{addr}/webhook"));
    for (k, v) in &req.headers {
        post = post.header(k.as_str(), v.as_str());
    }
    let resp = post.body(req.body.clone()).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 202);

    // dbt Cloud is still running: the poller waits and says so on the PR.
    eventually("the waiting comment", Duration::from_secs(30), || {
        p.comments()
            .iter()
            .any(|c| c.contains("waiting for dbt Cloud run 900"))
    })
    .await;
    // Stopped while waiting: the delayed poll stays in the file.
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("serve stops within its grace period")
        .unwrap();
    let queues = prdiff_shared::queue::embedded::EmbeddedQueues::open(&db).unwrap();
    assert_eq!(queues.queue(prdiff_serve::POLL_QUEUE).len().unwrap(), 1);
    assert!(p.final_statuses(HEAD).is_empty());

    // dbt Cloud finishes while serve is down; the restarted process picks the poll up.
    p.pr_run(900, HEAD, status::SUCCESS, None);
    let (addr, stop, task) = start_serve(&p, &db).await;
    eventually("the final status", Duration::from_secs(60), || {
        !p.final_statuses(HEAD).is_empty()
    })
    .await;
    let health: serde_json::Value = http
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    stop.send(()).unwrap();
    task.await.unwrap();

    let comments = p.comments();
    assert_eq!(comments.len(), 1, "one sticky comment, edited in place");
    let orders = row(&comments[0], "orders");
    assert_eq!(orders[2..6], ["1,000 → 999", "0", "1", "50"], "{orders:?}");
    let customers = row(&comments[0], "customers");
    assert_eq!(
        customers[2..6],
        ["100 → 100", "0", "0", "0"],
        "{customers:?}"
    );
    let statuses = p.final_statuses(HEAD);
    assert_eq!(statuses.len(), 1, "{statuses:?}");
    assert_eq!(
        statuses[0],
        (
            StatusState::Success,
            "prdiff: 2 models diffed, 1 with differences".to_owned()
        )
    );
    assert_eq!(health["dead_letters"], 0, "{health}");
    for q in [
        prdiff_serve::POLL_QUEUE,
        prdiff_serve::DIFF_QUEUE,
        prdiff_serve::SYNC_QUEUE,
    ] {
        assert_eq!(queues.queue(q).len().unwrap(), 0, "queue {q} drained");
    }
}

/// The PR's run_results with `customers` built into `outside` (the PR relation is read
/// from run_results first).
fn malicious_pr_run_results(outside: &Relation) -> Vec<u8> {
    let mut rr: serde_json::Value = serde_json::from_slice(&built().pr_run_results).unwrap();
    for r in rr["results"].as_array_mut().unwrap() {
        if r["unique_id"] == "model.e2e_shop.customers" {
            r["relation_name"] = format!(
                "\"{}\".\"{}\"",
                outside.schema.as_deref().unwrap(),
                outside.name
            )
            .into();
        }
    }
    serde_json::to_vec(&rr).unwrap()
}

/// The PR's manifest as an attacker would shape it: `orders` with a filter that writes
/// large objects, `customers` pointed at a table outside the PR's schemas.
fn malicious_pr_manifest(outside: &Relation) -> Vec<u8> {
    let mut m: serde_json::Value = serde_json::from_slice(&built().pr_manifest).unwrap();
    let orders = &mut m["nodes"]["model.e2e_shop.orders"];
    let filter = serde_json::json!({"datafold": {"datadiff": {
        "filter": "lo_from_bytea(0, 'x'::bytea) > 0 OR set_config('default_transaction_read_only', 'off', false) = 'off'"
    }}});
    orders["meta"] = filter.clone();
    orders["config"]["meta"] = filter;
    let customers = &mut m["nodes"]["model.e2e_shop.customers"];
    customers["schema"] = outside.schema.clone().unwrap().into();
    customers["alias"] = outside.name.clone().into();
    customers["relation_name"] = format!(
        "\"{}\".\"{}\".\"{}\"",
        customers["database"].as_str().unwrap(),
        outside.schema.as_deref().unwrap(),
        outside.name
    )
    .into();
    serde_json::to_vec(&m).unwrap()
}

#[tokio::test]
async fn through_prdiff_serve_a_malicious_pr_manifest_gets_its_models_refused_and_the_warehouse_unchanged()
 {
    let admin = prdiff_tests::pg_client().await;
    let hr = prdiff_tests::unique_name("hr");
    admin
        .batch_execute(&format!(
            "CREATE SCHEMA {hr}; CREATE TABLE {hr}.customers AS
             SELECT g AS id, 'secret-' || g AS name FROM generate_series(1, 100) g"
        ))
        .await
        .unwrap();
    let large_objects = || async {
        prdiff_tests::pg_client()
            .await
            .query_one("SELECT count(*) FROM pg_largeobject_metadata", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    let before = large_objects().await;

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("prdiff.db");
    let store = Arc::new(EmbeddedStore::open(&db).unwrap());
    let p = Pipeline::over(store.clone(), store, &config("shop", "")).await;
    p.prod_run(500, BASE);
    let outside = Relation::new(None, Some(&hr), "customers");
    p.pr_run(
        900,
        HEAD,
        status::SUCCESS,
        Some(malicious_pr_run_results(&outside)),
    );
    p.dbt
        .put_artifact(900, "manifest.json", malicious_pr_manifest(&outside));

    let (addr, stop, task) = start_serve(&p, &db).await;
    let mut body: serde_json::Value = serde_json::from_slice(
        &std::fs::read(prdiff_tests::fixtures().join("github/pull_request.opened.json")).unwrap(),
    )
    .unwrap();
    body["pull_request"]["head"]["sha"] = HEAD.into();
    let req = github("pull_request", "evil-1", serde_json::to_vec(&body).unwrap());
    assert_eq!(post_webhook(addr, &req).await.status(), 202);
    eventually("the final status", Duration::from_secs(60), || {
        !p.final_statuses(HEAD).is_empty()
    })
    .await;
    stop.send(()).unwrap();
    task.await.unwrap();

    let comments = p.comments();
    assert_eq!(comments.len(), 1, "{comments:?}");
    // Markdown escapes `_` in the comment.
    let comment = &comments[0].replace("\\_", "_");
    let orders = row(comment, "`orders`");
    assert!(
        orders[2].starts_with("unsafe filter: function lo_from_bytea() is not allowed"),
        "{orders:?}"
    );
    let customers = row(comment, "`customers`");
    assert!(
        customers[2].starts_with("relation outside the PR's schemas"),
        "{customers:?}"
    );
    assert!(
        !comment.contains("secret-"),
        "no value of the outside table"
    );
    assert_eq!(large_objects().await, before, "no large object written");
}

/// What the pull request shows when a run ends in each way: the outcome rule, runs that
/// cannot complete, dbt Cloud timing.
mod ondemand;
mod outcomes;
