//! The manifest sync against moto (DynamoDB) and a wiremock dbt Cloud serving real
//! manifests from the shared fixtures and generated ones: what is stored, due-ness across
//! tick boundaries and after a gap, unchanged manifests, removed models, an outage, and a
//! 10 000-model manifest within a Lambda's budget.

use std::sync::Arc;
use std::time::Instant;

use prdiff_shared::app::sync::{SyncDeps, sync_config};
use prdiff_shared::config::CiConfig;
use prdiff_shared::dbtcloud::http::HttpDbtCloud;
use prdiff_shared::metadata::dynamodb::DynamoMetadata;
use prdiff_shared::metadata::{MetadataStore, report_metadata};
use prdiff_shared::secrets::local::LocalSecrets;
use prdiff_shared::store::ConfigStore;
use prdiff_shared::store::dynamodb::DynamoStore;
use serde_json::{Value, json};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::webhook::config;

const ACCOUNT: u64 = 1;
const ARTIFACTS_JOB: u64 = 2;

fn fixture_manifest() -> Vec<u8> {
    std::fs::read(
        prdiff_tests::fixtures().join("dbt_artifacts/manifests/dbt-core.state.v12.manifest.json"),
    )
    .unwrap()
}

/// A catalog giving `my_model`'s `id` column a warehouse type and adding one column.
fn catalog() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/catalog/v1.json"},
        "nodes": {"model.test.my_model": {"metadata": {"type": "VIEW"}, "columns": {
            "id": {"type": "integer", "index": 1, "name": "id", "comment": null},
            "loaded_at": {"type": "timestamp with time zone", "index": 2, "name": "loaded_at", "comment": null}
        }, "stats": {}, "unique_id": "model.test.my_model"}},
        "sources": {}, "errors": null
    }))
    .unwrap()
}

/// dbt Cloud on wiremock plus the stores on moto.
struct Env {
    dbt: MockServer,
    deps: SyncDeps,
    metadata: Arc<DynamoMetadata>,
    config: CiConfig,
    table: String,
}

impl Env {
    async fn new(extra: &str) -> Self {
        let dbt = MockServer::start().await;
        let name = prdiff_tests::unique_name("sync").replace('_', "-");
        let mut config = config(&name, "github", "acme/analytics", extra);
        config.dbt_cloud.access_url = dbt.uri().parse().unwrap();
        let sdk = crate::stores::moto().await;
        let table = prdiff_tests::unique_name("prdiff_sync");
        let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), &table);
        store.create_table().await.unwrap();
        store
            .put_all(&[], std::slice::from_ref(&config))
            .await
            .unwrap();
        let metadata = Arc::new(DynamoMetadata::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            &table,
        ));
        let secrets = LocalSecrets::in_memory();
        secrets.insert(&config.dbt_cloud.api_key, "dbtc_test_key");
        let deps = SyncDeps {
            configs: Arc::new(store),
            metadata: metadata.clone(),
            secrets: Arc::new(secrets),
            dbt: Arc::new(HttpDbtCloud::default()),
        };
        Self {
            dbt,
            deps,
            metadata,
            config,
            table,
        }
    }

    /// dbt Cloud's newest successful artifacts run is `run`, with these artifacts.
    async fn serve_run(&self, run: u64, manifest: Vec<u8>, catalog: Option<Vec<u8>>) {
        self.dbt.reset().await;
        let runs = json!({"status": {"code": 200, "is_success": true}, "data": [
            {"id": run + 1, "status": 20, "job_definition_id": ARTIFACTS_JOB, "git_sha": null},
            {"id": run, "status": 10, "job_definition_id": ARTIFACTS_JOB,
             "git_sha": "981c5cf1ba299e942c6c277c38c8dec9b0738dd0"}
        ]});
        Mock::given(method("GET"))
            .and(path(format!("/api/v2/accounts/{ACCOUNT}/runs/")))
            .and(query_param("job_definition_id", ARTIFACTS_JOB.to_string()))
            .respond_with(ResponseTemplate::new(200).set_body_json(runs))
            .mount(&self.dbt)
            .await;
        let base = format!("/api/v2/accounts/{ACCOUNT}/runs/{run}/artifacts");
        Mock::given(method("GET"))
            .and(path(format!("{base}/manifest.json")))
            .respond_with(ResponseTemplate::new(200).set_body_bytes(manifest))
            .mount(&self.dbt)
            .await;
        let catalog = match catalog {
            Some(c) => ResponseTemplate::new(200).set_body_bytes(c),
            None => ResponseTemplate::new(404).set_body_json(
                json!({"status": {"code": 404, "user_message": "The requested resource was not found."}}),
            ),
        };
        Mock::given(method("GET"))
            .and(path(format!("{base}/catalog.json")))
            .respond_with(catalog)
            .mount(&self.dbt)
            .await;
    }

    async fn sync(
        &self,
        now: u64,
    ) -> Result<prdiff_shared::app::sync::SyncOutcome, prdiff_shared::app::sync::SyncError> {
        sync_config(&self.deps, &self.config.name, now).await
    }

    /// A scheduled tick through the Lambda handler, as EventBridge sends it.
    async fn tick(&self, time: &str) -> Value {
        let event = json!({
            "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
            "detail-type": "Scheduled Event", "source": "aws.events", "account": "123456789012",
            "time": time, "region": "us-east-1",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/prdiff-sync-tick"], "detail": {}
        });
        prdiff_sync::handle(event, &self.deps).await.unwrap()
    }

    fn synced_names(tick: &Value) -> Vec<String> {
        tick["synced"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["config"].as_str().unwrap().to_owned())
            .collect()
    }
}

fn at(s: &str) -> u64 {
    prdiff_shared::dbtcloud::parse_timestamp(s).unwrap()
}

#[tokio::test]
async fn a_sync_stores_models_seeds_snapshots_and_sources_of_a_real_manifest_with_catalog_types() {
    let env = Env::new("").await;
    env.serve_run(100, fixture_manifest(), Some(catalog()))
        .await;
    let out = env.sync(at("2026-11-27T10:00:00Z")).await.unwrap();
    assert_eq!(out.run_id, 100);
    assert!(!out.unchanged);
    assert!(out.removed.is_empty());
    let mut added = out.added.clone();
    added.sort();
    assert_eq!(
        added,
        [
            "model.test.metricflow_time_spine",
            "model.test.my_model",
            "seed.test.my_seed",
            "snapshot.test.snapshot_seed",
            "source.test.my_source.my_table"
        ],
        "tests and analyses are not synced"
    );
    let m = env
        .metadata
        .models_named(&env.config.name, "my_model")
        .await
        .unwrap();
    assert_eq!(m.len(), 1);
    let m = &m[0];
    assert_eq!(m.description, "Example model");
    assert_eq!(m.materialization.as_deref(), Some("view"));
    assert!(m.relation.as_deref().unwrap().ends_with(".\"my_model\""));
    let cols: Vec<(&str, Option<&str>)> = m
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.data_type.as_deref()))
        .collect();
    assert_eq!(
        cols,
        [
            ("id", Some("integer")),
            ("loaded_at", Some("timestamp with time zone"))
        ]
    );
    // Found by unique id as well.
    let by_id = env
        .metadata
        .models_named(&env.config.name, "source.test.my_source.my_table")
        .await
        .unwrap();
    assert_eq!(by_id[0].description, "My table");
    let state = env.metadata.state(&env.config.name).await.unwrap().unwrap();
    assert_eq!(
        state.generated_at.as_deref(),
        Some("2025-10-02T16:48:38.578317Z")
    );
    assert_eq!(state.models, 5);
    assert_eq!(state.last_error, None);

    let report = report_metadata(
        env.metadata.as_ref(),
        &env.config.name,
        &["my_model".to_owned(), "not_synced".to_owned()],
    )
    .await;
    assert_eq!(report.len(), 1);
    assert_eq!(
        report["my_model"].description.as_deref(),
        Some("Example model")
    );
}

#[tokio::test]
async fn an_unchanged_or_merely_regenerated_manifest_writes_no_model() {
    let env = Env::new("").await;
    let manifest = fixture_manifest();
    env.serve_run(100, manifest.clone(), None).await;
    env.sync(at("2026-11-27T10:00:00Z")).await.unwrap();

    // Mark a stored item: any write of that model would replace the mark.
    let sdk = crate::stores::moto().await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let table = env.table.clone();
    ddb.update_item()
        .table_name(&table)
        .key("pk", s(format!("META#{}", env.config.name)))
        .key("sk", s("M#my_model#model.test.my_model"))
        .update_expression("SET marked = :m")
        .expression_attribute_values(":m", s("yes"))
        .send()
        .await
        .unwrap();

    // The same bytes (a newer run of the job) and then a regenerated manifest whose
    // generated_at and invocation_id changed but whose models did not.
    env.serve_run(101, manifest.clone(), None).await;
    let same = env.sync(at("2026-11-27T11:00:00Z")).await.unwrap();
    assert!(same.unchanged);
    let mut regenerated: Value = serde_json::from_slice(&manifest).unwrap();
    regenerated["metadata"]["generated_at"] = json!("2026-11-27T11:30:00.000000Z");
    regenerated["metadata"]["invocation_id"] = json!("a0000000-0000-0000-0000-000000000000");
    env.serve_run(102, serde_json::to_vec(&regenerated).unwrap(), None)
        .await;
    let regen = env.sync(at("2026-11-27T12:00:00Z")).await.unwrap();
    assert!(regen.unchanged);
    assert!(regen.added.is_empty() && regen.updated.is_empty() && regen.removed.is_empty());

    let item = ddb
        .get_item()
        .table_name(&table)
        .key("pk", s(format!("META#{}", env.config.name)))
        .key("sk", s("M#my_model#model.test.my_model"))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert!(item.contains_key("marked"), "the model item was rewritten");
    let state = env.metadata.state(&env.config.name).await.unwrap().unwrap();
    assert_eq!(state.run_id, Some(102));
    assert_eq!(state.last_success_at, Some(at("2026-11-27T12:00:00Z")));
}

#[tokio::test]
async fn a_model_removed_upstream_is_removed_and_a_changed_one_is_updated() {
    let env = Env::new("").await;
    let manifest = fixture_manifest();
    env.serve_run(100, manifest.clone(), None).await;
    env.sync(at("2026-11-27T10:00:00Z")).await.unwrap();

    let mut next: Value = serde_json::from_slice(&manifest).unwrap();
    next["nodes"]
        .as_object_mut()
        .unwrap()
        .remove("seed.test.my_seed")
        .unwrap();
    next["nodes"]["model.test.my_model"]["description"] = json!("Example model, now documented");
    env.serve_run(101, serde_json::to_vec(&next).unwrap(), None)
        .await;
    let out = env.sync(at("2026-11-27T11:00:00Z")).await.unwrap();
    assert_eq!(out.removed, ["seed.test.my_seed"]);
    assert_eq!(out.updated, ["model.test.my_model"]);
    assert!(out.added.is_empty());
    assert!(
        env.metadata
            .models_named(&env.config.name, "my_seed")
            .await
            .unwrap()
            .is_empty()
    );
    let digests = env.metadata.digests(&env.config.name).await.unwrap();
    assert_eq!(digests.len(), 4);
    let m = env
        .metadata
        .models_named(&env.config.name, "my_model")
        .await
        .unwrap();
    assert_eq!(m[0].description, "Example model, now documented");
}

#[tokio::test]
async fn a_dbt_cloud_outage_is_recorded_keeps_the_metadata_and_the_next_sync_succeeds() {
    let env = Env::new("").await;
    env.serve_run(100, fixture_manifest(), None).await;
    env.sync(at("2026-11-27T10:00:00Z")).await.unwrap();

    // dbt Cloud answers 500 to every attempt of the client (3), then recovers.
    let mut next: Value = serde_json::from_slice(&fixture_manifest()).unwrap();
    next["nodes"]["model.test.my_model"]["description"] = json!("Changed");
    env.serve_run(101, serde_json::to_vec(&next).unwrap(), None)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/api/v2/accounts/{ACCOUNT}/runs/")))
        .respond_with(ResponseTemplate::new(500).set_body_string("upstream unavailable"))
        .up_to_n_times(3)
        .with_priority(1)
        .mount(&env.dbt)
        .await;
    let err = env.sync(at("2026-11-27T11:00:00Z")).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let state = env.metadata.state(&env.config.name).await.unwrap().unwrap();
    let recorded = state.last_error.clone().unwrap();
    assert!(recorded.contains("500"), "{recorded}");
    assert!(!recorded.contains("dbtc_test_key"));
    assert_eq!(state.last_success_at, Some(at("2026-11-27T10:00:00Z")));
    let kept = env
        .metadata
        .models_named(&env.config.name, "my_model")
        .await
        .unwrap();
    assert_eq!(kept[0].description, "Example model");

    let out = env.sync(at("2026-11-27T11:15:00Z")).await.unwrap();
    assert_eq!(out.updated, ["model.test.my_model"]);
    let state = env.metadata.state(&env.config.name).await.unwrap().unwrap();
    assert_eq!(state.last_error, None);
}

#[tokio::test]
async fn a_revoked_key_is_recorded_and_a_push_message_for_it_is_not_retried() {
    let env = Env::new("").await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(json!({"status": {"code": 401, "user_message": "Invalid token."}})),
        )
        .mount(&env.dbt)
        .await;
    let body = prdiff_shared::messages::Message::Sync(prdiff_shared::messages::SyncMessage {
        config_id: env.config.name.clone(),
        reason: prdiff_shared::messages::SyncReason::Schedule,
    })
    .to_json();
    let event = json!({"Records": [
        {"messageId": "m-1", "body": body, "eventSource": "aws:sqs"},
        {"messageId": "m-2", "body": "{\"version\": 1, \"kind\": \"nope\"}", "eventSource": "aws:sqs"}
    ]});
    let resp = prdiff_sync::handle(event, &env.deps).await.unwrap();
    // The unreadable message goes back (to the DLQ eventually); the revoked key is
    // recorded and not retried by SQS — the schedule tries again.
    assert_eq!(
        resp,
        json!({"batchItemFailures": [{"itemIdentifier": "m-2"}]})
    );
    let state = env.metadata.state(&env.config.name).await.unwrap().unwrap();
    assert!(
        state.last_error.unwrap().contains("refused the API key"),
        "recorded on the configuration"
    );
}

#[tokio::test]
async fn a_push_syncs_the_pushed_commit_s_run_waiting_for_it_not_the_newest() {
    const PUSHED: &str = "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c";
    const NEWER: &str = "981c5cf1ba299e942c6c277c38c8dec9b0738dd0";
    let env = Env::new("").await;
    let runs = |pushed_status: u32| {
        json!({"status": {"code": 200, "is_success": true}, "data": [
            {"id": 303, "status": 10, "job_definition_id": ARTIFACTS_JOB, "git_sha": NEWER},
            {"id": 302, "status": pushed_status, "job_definition_id": ARTIFACTS_JOB, "git_sha": PUSHED}
        ]})
    };
    let serve = |status: u32| {
        let dbt = &env.dbt;
        let body = runs(status);
        async move {
            dbt.reset().await;
            Mock::given(method("GET"))
                .and(path(format!("/api/v2/accounts/{ACCOUNT}/runs/")))
                .respond_with(ResponseTemplate::new(200).set_body_json(body))
                .mount(dbt)
                .await;
            // Only the pushed commit's run has artifacts here: syncing any other fails.
            Mock::given(method("GET"))
                .and(path(format!(
                    "/api/v2/accounts/{ACCOUNT}/runs/302/artifacts/manifest.json"
                )))
                .respond_with(ResponseTemplate::new(200).set_body_bytes(fixture_manifest()))
                .mount(dbt)
                .await;
        }
    };
    let body = prdiff_shared::messages::Message::Sync(prdiff_shared::messages::SyncMessage {
        config_id: env.config.name.clone(),
        reason: prdiff_shared::messages::SyncReason::Push {
            sha: prdiff_shared::config::CommitSha::parse(PUSHED).unwrap(),
        },
    })
    .to_json();
    let event = json!({"Records": [{"messageId": "p-1", "body": body, "eventSource": "aws:sqs"}]});
    // The pushed commit's run is still running: the message comes back later.
    serve(3).await;
    let resp = prdiff_sync::handle(event.clone(), &env.deps).await.unwrap();
    assert_eq!(
        resp,
        json!({"batchItemFailures": [{"itemIdentifier": "p-1"}]})
    );
    let state = env.metadata.state(&env.config.name).await.unwrap().unwrap();
    assert!(
        state
            .last_error
            .unwrap()
            .contains(&format!("no finished run for commit {PUSHED}")),
        "recorded"
    );
    // Done: synced from that run, not from the newer commit's.
    serve(10).await;
    let resp = prdiff_sync::handle(event.clone(), &env.deps).await.unwrap();
    assert_eq!(resp, json!({"batchItemFailures": []}));
    let state = env.metadata.state(&env.config.name).await.unwrap().unwrap();
    assert_eq!(state.run_id, Some(302));
    assert_eq!(state.last_error, None);
    // A failed run of the pushed commit is recorded, not retried.
    serve(20).await;
    let resp = prdiff_sync::handle(event, &env.deps).await.unwrap();
    assert_eq!(resp, json!({"batchItemFailures": []}));
    let state = env.metadata.state(&env.config.name).await.unwrap().unwrap();
    assert!(state.last_error.unwrap().contains("did not succeed"));
}

#[tokio::test]
async fn a_schedule_is_due_across_its_tick_boundary_and_catches_up_once_after_a_gap() {
    let env = Env::new("sync_schedule = \"0 * * * *\"").await;
    env.serve_run(100, fixture_manifest(), None).await;
    let me = env.config.name.to_string();
    let ours = |tick: &Value| Env::synced_names(tick).contains(&me);

    assert!(
        ours(&env.tick("2026-11-27T10:45:00Z").await),
        "never synced: due"
    );
    assert!(
        !ours(&env.tick("2026-11-27T10:59:59Z").await),
        "before 11:00"
    );
    assert!(
        ours(&env.tick("2026-11-27T11:00:00Z").await),
        "11:00 passed"
    );
    assert!(!ours(&env.tick("2026-11-27T11:15:00Z").await));
    // Down from 11:15 to 15:07: four cron times missed, one sync.
    assert!(ours(&env.tick("2026-11-27T15:07:00Z").await));
    assert!(!ours(&env.tick("2026-11-27T15:22:00Z").await));
    assert!(!ours(&env.tick("2026-11-27T15:37:00Z").await));
    assert!(ours(&env.tick("2026-11-27T16:00:00Z").await));
    let state = env.metadata.state(&env.config.name).await.unwrap().unwrap();
    assert_eq!(state.last_success_at, Some(at("2026-11-27T16:00:00Z")));
}

#[tokio::test]
async fn a_ten_thousand_model_manifest_syncs_within_a_lambda_budget() {
    let env = Env::new("").await;
    let manifest = prdiff_sync::synthetic::manifest(10_000, "2026-11-27T09:00:00Z");
    let mb = manifest.len() as f64 / 1e6;
    env.serve_run(100, manifest, None).await;
    let started = Instant::now();
    let out = env.sync(at("2026-11-27T10:00:00Z")).await.unwrap();
    let first = started.elapsed();
    assert_eq!(out.added.len(), 10_000);
    let started = Instant::now();
    let again = env.sync(at("2026-11-27T11:00:00Z")).await.unwrap();
    let second = started.elapsed();
    assert!(again.unchanged);
    eprintln!(
        "10k models: manifest {mb:.1} MB, first sync {first:.1?}, unchanged sync {second:.1?}, peak RSS {} MB (whole test process: includes the generated manifest as a JSON tree and wiremock's copies; see docs/sync.md for the sync alone)",
        peak_rss_kb() / 1024
    );
    // A Lambda may run 15 minutes; the sync must leave room for slow dbt Cloud downloads.
    assert!(first.as_secs() < 300, "{first:?}");
    let m = env
        .metadata
        .models_named(&env.config.name, "model_9999")
        .await
        .unwrap();
    assert_eq!(m[0].columns.len(), 12);
    assert_eq!(m[0].materialization.as_deref(), Some("table"));
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn s(v: impl Into<String>) -> aws_sdk_dynamodb::types::AttributeValue {
    aws_sdk_dynamodb::types::AttributeValue::S(v.into())
}
