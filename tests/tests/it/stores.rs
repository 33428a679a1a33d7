//! The store, queue and secret adapters against moto (DynamoDB, SQS, Secrets Manager in
//! server mode, started by scripts/test.sh) and the embedded SQLite store. The same
//! contract checks run against both store adapters.

use std::sync::Arc;
use std::time::Duration;

use prdiff_shared::config::{CiConfig, ConfigId, Provider, RepoName, SecretName};
use prdiff_shared::diff::{DiffRequest, DiffResult, PerSide};
use prdiff_shared::messages::{Message, SyncMessage, SyncReason};
use prdiff_shared::queue::Queue;
use prdiff_shared::queue::sqs::SqsQueue;
use prdiff_shared::run::{
    CiRun, CountSide, Counted, FanOut, PrKey, Reused, RunId, RunState, StartOutcome, StoredOutcome,
    Summary, WorkItem,
};
use prdiff_shared::secrets::aws::SecretsManager;
use prdiff_shared::secrets::{ExposeSecret, SecretString, Secrets, SecretsError};
use prdiff_shared::sql::Relation;
use prdiff_shared::store::dynamodb::DynamoStore;
use prdiff_shared::store::embedded::EmbeddedStore;
use prdiff_shared::store::{ConfigStore, RunStore, StoreError, unix_now};

use crate::webhook::{config, sha};

/// SDK configuration pointing at moto with dummy credentials.
pub async fn moto() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(prdiff_tests::aws_endpoint())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "moto",
        ))
        .load()
        .await
}

pub async fn dynamo_store() -> DynamoStore {
    let cfg = moto().await;
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&cfg),
        prdiff_tests::unique_name("prdiff"),
    );
    store.create_table().await.unwrap();
    store
}

fn pr(number: u64) -> PrKey {
    PrKey {
        provider: Provider::Github,
        repository: RepoName::parse("acme/analytics").unwrap(),
        number,
    }
}

fn run(number: u64, head: &str) -> CiRun {
    CiRun {
        id: RunId::new(),
        config_id: ConfigId::parse("main").unwrap(),
        pr: pr(number),
        head_sha: sha(head),
        base_sha: sha("f95f852bd8fca8fcc58a9a2d6c842781e32a215e"),
        base_branch: "main".into(),
        state: RunState::Received,
        reason: None,
        created_at: unix_now(),
        updated_at: unix_now(),
        on_demand: None,
        previous: None,
        remap: Vec::new(),
    }
}

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

async fn config_store_contract(store: &dyn ConfigStore) {
    let a = config("alpha", "github", "acme/analytics", "");
    let b = config("beta", "gitlab", "group/sub/proj", "sync_on_push = true");
    store.put_all(&[], &[a.clone(), b.clone()]).await.unwrap();
    assert_eq!(
        store
            .get_config(&ConfigId::parse("alpha").unwrap())
            .await
            .unwrap(),
        Some(a.clone())
    );
    let names: Vec<String> = store
        .list_configs()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name.to_string())
        .collect();
    assert_eq!(names, ["alpha", "beta"]);
    let for_repo: Vec<CiConfig> = store
        .configs_for_repository(
            Provider::Github,
            &RepoName::parse("ACME/Analytics").unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(for_repo, vec![a]);
    assert!(
        store
            .delete_config(&ConfigId::parse("beta").unwrap())
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_config(&ConfigId::parse("beta").unwrap())
            .await
            .unwrap()
    );
    assert_eq!(store.list_configs().await.unwrap().len(), 1);
}

/// `concurrent`: start the racing runs at once. moto applies `TransactWriteItems` without
/// isolation (a cancelled transaction restores a snapshot of the table, losing writes made
/// meanwhile by other requests), so against moto the starts run one after another and the
/// true race is exercised on SQLite; DynamoDB itself makes transactions atomic.
async fn run_store_contract(store: Arc<dyn RunStore>, concurrent: bool) {
    // Delivery claims: once, until released.
    assert!(
        store
            .claim_delivery("github:d1", Duration::from_secs(60))
            .await
            .unwrap()
    );
    assert!(
        !store
            .claim_delivery("github:d1", Duration::from_secs(60))
            .await
            .unwrap()
    );
    store.release_delivery("github:d1").await.unwrap();
    assert!(
        store
            .claim_delivery("github:d1", Duration::from_secs(60))
            .await
            .unwrap()
    );
    // An expired claim is free again even before the item is removed.
    assert!(
        store
            .claim_delivery("github:d2", Duration::ZERO)
            .await
            .unwrap()
    );
    assert!(
        store
            .claim_delivery("github:d2", Duration::from_secs(60))
            .await
            .unwrap()
    );

    // Several keys at once (a delivery's id and body hash): all or none.
    let ttl = Duration::from_secs(60);
    let keys = |ks: &[&str]| ks.iter().map(|k| k.to_string()).collect::<Vec<_>>();
    assert_eq!(
        store
            .claim_deliveries(&keys(&["github:d3", "body#github#aa"]), ttl)
            .await
            .unwrap(),
        None
    );
    // A new id with a body already claimed (a replay): refused, naming the held key, and
    // the new id is not left claimed.
    assert_eq!(
        store
            .claim_deliveries(&keys(&["github:d4", "body#github#aa"]), ttl)
            .await
            .unwrap(),
        Some(1)
    );
    assert_eq!(
        store
            .claim_deliveries(&keys(&["github:d3", "body#github#bb"]), ttl)
            .await
            .unwrap(),
        Some(0)
    );
    assert!(store.claim_delivery("github:d4", ttl).await.unwrap());
    assert!(store.claim_delivery("body#github#bb", ttl).await.unwrap());
    store
        .release_deliveries(&keys(&["github:d3", "body#github#aa"]))
        .await
        .unwrap();
    assert_eq!(
        store
            .claim_deliveries(&keys(&["github:d3", "body#github#aa"]), ttl)
            .await
            .unwrap(),
        None
    );
    // Expired claims are free again, as for one key.
    assert_eq!(
        store
            .claim_deliveries(&keys(&["github:d5", "body#github#cc"]), Duration::ZERO)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .claim_deliveries(&keys(&["github:d6", "body#github#cc"]), ttl)
            .await
            .unwrap(),
        None
    );

    // Start, same-head no-op, supersede.
    let first = run(1, A);
    assert_eq!(
        store.start_run(&first).await.unwrap(),
        StartOutcome::Started { superseded: None }
    );
    let dup = run(1, A);
    assert!(
        matches!(store.start_run(&dup).await.unwrap(), StartOutcome::AlreadyOpen(r) if r.id == first.id)
    );
    assert_eq!(store.get_run(&dup.id).await.unwrap(), None);
    let second = run(1, B);
    assert_eq!(
        store.start_run(&second).await.unwrap(),
        StartOutcome::Started {
            superseded: Some(first.id.clone())
        }
    );
    assert_eq!(
        store.get_run(&first.id).await.unwrap().unwrap().state,
        RunState::Superseded
    );
    let current = store
        .current_run(&first.config_id, &pr(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(current.id, second.id);

    // The PR description's remapping directives are kept with the run.
    let mut with_remap = run(2, A);
    with_remap.remap = vec![prdiff_shared::diff::remap::Remap {
        from: "legacy_code".into(),
        to: "code".into(),
        glob: Some("orders_*".into()),
    }];
    store.start_run(&with_remap).await.unwrap();
    assert_eq!(
        store.get_run(&with_remap.id).await.unwrap().unwrap().remap,
        with_remap.remap
    );

    // Transitions are conditional on the state the caller saw.
    let moved = store
        .transition(
            &second.id,
            RunState::Received,
            RunState::WaitingForDbt,
            None,
        )
        .await
        .unwrap();
    assert_eq!(moved.state, RunState::WaitingForDbt);
    assert!(matches!(
        store
            .transition(
                &second.id,
                RunState::Received,
                RunState::WaitingForDbt,
                None
            )
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store
            .transition(&second.id, RunState::WaitingForDbt, RunState::Done, None)
            .await,
        Err(StoreError::InvalidTransition { .. })
    ));
    let failed = store
        .transition(
            &second.id,
            RunState::WaitingForDbt,
            RunState::Failed,
            Some("dbt run errored"),
        )
        .await
        .unwrap();
    assert_eq!(failed.reason.as_deref(), Some("dbt run errored"));
    assert!(matches!(
        store
            .transition(&second.id, RunState::Failed, RunState::Cancelled, None)
            .await,
        Err(StoreError::InvalidTransition { .. })
    ));

    // Racing starts for one PR: exactly one ends current, every other one is superseded.
    let heads: Vec<String> = (0..5).map(|i| format!("{i}").repeat(40)).collect();
    let runs: Vec<CiRun> = heads.iter().map(|h| run(7, h)).collect();
    let results = if concurrent {
        futures_join(store.clone(), runs.clone()).await
    } else {
        let mut out = Vec::new();
        for r in &runs {
            out.push(store.start_run(r).await);
        }
        out
    };
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let current = store
        .current_run(&runs[0].config_id, &pr(7))
        .await
        .unwrap()
        .unwrap();
    assert!(!current.state.is_final());
    for r in &runs {
        let stored = store
            .get_run(&r.id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("run {} missing; outcomes {results:?}", r.id));
        if stored.id != current.id {
            assert_eq!(stored.state, RunState::Superseded, "{}", stored.id);
        }
    }
}

async fn futures_join(
    store: Arc<dyn RunStore>,
    runs: Vec<CiRun>,
) -> Vec<Result<StartOutcome, StoreError>> {
    let tasks: Vec<_> = runs
        .into_iter()
        .map(|r| {
            let store = store.clone();
            tokio::spawn(async move { store.start_run(&r).await })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test]
async fn the_dynamodb_config_store_writes_lists_and_deletes() {
    config_store_contract(&dynamo_store().await).await;
}

#[tokio::test]
async fn the_dynamodb_run_store_keeps_the_state_machine_and_settles_races() {
    run_store_contract(Arc::new(dynamo_store().await), false).await;
}

#[tokio::test]
async fn the_embedded_config_store_writes_lists_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    config_store_contract(&EmbeddedStore::open(&dir.path().join("prdiff.db")).unwrap()).await;
}

#[tokio::test]
async fn the_embedded_run_store_keeps_the_state_machine_and_settles_races() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("prdiff.db")).unwrap();
    run_store_contract(Arc::new(store), true).await;
    // The file keeps what was written.
    let again = EmbeddedStore::open(&dir.path().join("prdiff.db")).unwrap();
    assert!(
        again
            .current_run(&ConfigId::parse("main").unwrap(), &pr(1))
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn a_corrupt_stored_configuration_is_reported_not_used() {
    let store = dynamo_store().await;
    let cfg = moto().await;
    let client = aws_sdk_dynamodb::Client::new(&cfg);
    let table = store.table().to_owned();
    client
        .put_item()
        .table_name(&table)
        .item(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S("CONFIG".into()),
        )
        .item(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S("broken".into()),
        )
        .item(
            "body",
            aws_sdk_dynamodb::types::AttributeValue::S(
                "{\"name\": \"broken\", \"sampling\": {\"tolerance\": 2}}".into(),
            ),
        )
        .send()
        .await
        .unwrap();
    let store = DynamoStore::new(client, table);
    assert!(matches!(
        store.get_config(&ConfigId::parse("broken").unwrap()).await,
        Err(StoreError::Corrupt { .. })
    ));
}

pub async fn sqs_queue() -> SqsQueue {
    let cfg = moto().await;
    let client = aws_sdk_sqs::Client::new(&cfg);
    let url = client
        .create_queue()
        .queue_name(prdiff_tests::unique_name("prdiff-poll"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    SqsQueue::new(client, url)
}

fn sync_message(name: &str) -> Message {
    Message::Sync(SyncMessage {
        config_id: ConfigId::parse(name).unwrap(),
        reason: SyncReason::Schedule,
    })
}

#[tokio::test]
async fn an_sqs_message_is_not_visible_before_its_delay() {
    let q = sqs_queue().await;
    q.send(&sync_message("delayed"), Duration::from_secs(3))
        .await
        .unwrap();
    q.send(&sync_message("now"), Duration::ZERO).await.unwrap();
    let first = q.receive(10, Duration::ZERO).await.unwrap();
    let kinds: Vec<Message> = first
        .iter()
        .map(|b| Message::from_json(b).unwrap())
        .collect();
    assert_eq!(kinds, vec![sync_message("now")]);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let later = q.receive(10, Duration::from_secs(1)).await.unwrap();
    assert_eq!(
        later
            .iter()
            .map(|b| Message::from_json(b).unwrap())
            .collect::<Vec<_>>(),
        vec![sync_message("delayed")]
    );
}

#[tokio::test]
async fn sqs_delays_over_fifteen_minutes_are_capped_not_refused() {
    let q = sqs_queue().await;
    q.send(&sync_message("capped"), Duration::from_secs(7200))
        .await
        .unwrap();
    assert!(q.receive(10, Duration::ZERO).await.unwrap().is_empty());
}

#[tokio::test]
async fn secrets_manager_creates_updates_reads_and_caches_secrets() {
    let cfg = moto().await;
    let client = aws_sdk_secretsmanager::Client::new(&cfg);
    let name = SecretName::parse(prdiff_tests::unique_name("prdiff/test/dbt-api-key")).unwrap();
    let fresh = SecretsManager::new(client.clone(), Duration::ZERO);
    fresh
        .put(&name, SecretString::from("v1".to_owned()))
        .await
        .unwrap();
    assert_eq!(fresh.get(&name).await.unwrap().expose_secret(), "v1");
    fresh
        .put(&name, SecretString::from("v2".to_owned()))
        .await
        .unwrap();
    assert_eq!(fresh.get(&name).await.unwrap().expose_secret(), "v2");

    // A cached reader keeps its value within the TTL, even after a rotation elsewhere.
    let cached = SecretsManager::new(client.clone(), Duration::from_secs(300));
    assert_eq!(cached.get(&name).await.unwrap().expose_secret(), "v2");
    fresh
        .put(&name, SecretString::from("v3".to_owned()))
        .await
        .unwrap();
    assert_eq!(cached.get(&name).await.unwrap().expose_secret(), "v2");
    assert_eq!(fresh.get(&name).await.unwrap().expose_secret(), "v3");

    let missing = SecretName::parse("prdiff/does-not-exist").unwrap();
    let err = fresh.get(&missing).await.unwrap_err();
    assert!(matches!(err, SecretsError::NotFound(_)), "{err}");
    assert!(!format!("{err:?}").contains("v3"));
}

#[tokio::test]
async fn the_webhook_on_the_aws_adapters_records_the_run_and_delays_the_poll() {
    use prdiff_shared::githost::memory::MemoryGitHost;
    use prdiff_webhook::{Deps, Settings, handle};

    let cfg = moto().await;
    let store = Arc::new(dynamo_store().await);
    let hello = config("hello", "github", "Codertocat/Hello-World", "");
    store
        .put_all(&[], std::slice::from_ref(&hello))
        .await
        .unwrap();
    let secrets = Arc::new(SecretsManager::new(
        aws_sdk_secretsmanager::Client::new(&cfg),
        Duration::from_secs(300),
    ));
    let secret_name =
        SecretName::parse(prdiff_tests::unique_name("prdiff/webhook-secret")).unwrap();
    secrets
        .put(
            &secret_name,
            SecretString::from(crate::webhook::SECRET.to_owned()),
        )
        .await
        .unwrap();
    let host = MemoryGitHost::new();
    host.set_branch_head(
        &RepoName::parse("Codertocat/Hello-World").unwrap(),
        "master",
        sha("f95f852bd8fca8fcc58a9a2d6c842781e32a215e"),
    );
    let poll = Arc::new(sqs_queue().await);
    let mut settings = Settings::new(secret_name);
    settings.poll_delay = Duration::from_secs(2);
    let deps = Deps {
        configs: store.clone(),
        runs: store.clone(),
        secrets,
        hosts: Arc::new(host),
        poll_queue: poll.clone(),
        sync_queue: Arc::new(sqs_queue().await),
        settings,
    };
    let req = crate::webhook::github(
        "pull_request",
        "aws-1",
        crate::webhook::fixture("github/pull_request.opened.json"),
    );
    let resp = handle(&req, &deps).await;
    assert_eq!(resp.status, 202, "{}", resp.body);
    assert_eq!(handle(&req, &deps).await.body["status"], "duplicate");
    assert!(poll.receive(10, Duration::ZERO).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let bodies = poll.receive(10, Duration::from_secs(1)).await.unwrap();
    assert_eq!(bodies.len(), 1);
    let Message::Poll(m) = Message::from_json(&bodies[0]).unwrap() else {
        panic!("{}", bodies[0])
    };
    let run = store.get_run(&m.run_id).await.unwrap().unwrap();
    assert_eq!(run.state, RunState::WaitingForDbt);
    assert_eq!(run.config_id, hello.name);
}

#[tokio::test]
async fn a_missing_table_is_a_permanent_error_that_keeps_the_service_message() {
    let cfg = moto().await;
    let table = prdiff_tests::unique_name("prdiff_missing");
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&cfg), table.clone());
    let err = store
        .get_config(&ConfigId::parse("main").unwrap())
        .await
        .unwrap_err();
    assert!(!err.is_retryable(), "{err:?}");
    let text = prdiff_shared::error_chain(&err);
    assert!(
        text.contains("DynamoDB: ResourceNotFoundException: Requested resource not found"),
        "{text}"
    );
    let metadata = prdiff_shared::metadata::dynamodb::DynamoMetadata::new(
        aws_sdk_dynamodb::Client::new(&cfg),
        table,
    );
    let err =
        prdiff_shared::metadata::MetadataStore::state(&metadata, &ConfigId::parse("main").unwrap())
            .await
            .unwrap_err();
    assert!(!err.is_retryable(), "{err:?}");
    assert!(
        prdiff_shared::error_chain(&err).contains("Requested resource not found"),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_missing_queue_is_a_permanent_send_error_naming_the_queue() {
    let cfg = moto().await;
    let client = aws_sdk_sqs::Client::new(&cfg);
    let url = format!(
        "{}/123456789012/{}",
        prdiff_tests::aws_endpoint(),
        prdiff_tests::unique_name("prdiff-absent")
    );
    let err = SqsQueue::new(client, url.clone())
        .send(&sync_message("x"), Duration::ZERO)
        .await
        .unwrap_err();
    assert!(!err.is_retryable(), "{err:?}");
    let text = prdiff_shared::error_chain(&err);
    assert!(text.contains(&url) && text.contains("SQS: "), "{text}");
    assert!(text.contains("does not exist"), "{text}");
}

/// A fan-out summary, a work item and a result as the adapters stored them before the run
/// store was typed: items written then still load.
const LEGACY_SUMMARY: &str = r#"{"dbt_run_id":42,"dbt_run_url":"https://cloud.getdbt.com/deploy/1/projects/2/runs/42","base_note":null,"models":[["model.shop.orders","orders"]],"skipped":[["fresh","new model"]],"downstream":["orders"],"warnings":[],"counted":[{"unique_id":"model.shop.fresh","name":"fresh","side":"pr"}],"materializations":{}}"#;
const LEGACY_WORK: &str = r#"{"name":"orders","prod":{"database":null,"schema":"analytics","name":"orders"},"pr":{"database":null,"schema":"dbt_cloud_pr_1_2","name":"orders"},"primary_key":["id"],"filter":"id > 0","include_columns":[],"exclude_columns":["loaded_at"],"masked_columns":["email"]}"#;
const LEGACY_RESULT: &str = r#"{"error":"relation \"dbt_cloud_pr_1_2.orders\" does not exist"}"#;

/// Reads the legacy records written under `run` through the port.
async fn legacy_records_load(store: &dyn RunStore, run: &RunId) {
    let summary = store.fanout_summary(run).await.unwrap().unwrap();
    assert_eq!(summary.dbt_run_id, Some(42));
    assert_eq!(
        summary.models,
        [("model.shop.orders".to_owned(), "orders".to_owned())]
    );
    assert_eq!(summary.counted[0].side, CountSide::Pr);
    assert!(summary.gates.is_empty() && summary.over_max_models.is_none());
    let work = store
        .model_work(run, "model.shop.orders")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        work.spec.pr,
        Relation::parse("dbt_cloud_pr_1_2.orders").unwrap()
    );
    assert_eq!(work.spec.filter.as_deref(), Some("id > 0"));
    assert_eq!(work.spec.exclude_columns, ["loaded_at"]);
    assert_eq!(work.spec.masked_columns, ["email"]);
    assert_eq!(work.count, None);
    // Written before re-use existed: no key, so never re-used.
    assert_eq!(work.reuse_key, None);
    assert!(summary.reused.is_empty() && summary.prod_run_id.is_none());
    assert_eq!(
        store.results(run).await.unwrap(),
        [(
            "model.shop.orders".to_owned(),
            StoredOutcome::Error("relation \"dbt_cloud_pr_1_2.orders\" does not exist".into())
        )]
    );
}

/// A fan-out with a diffed and a counted model, and both kinds of result.
fn typed_fanout() -> (FanOut, Vec<(String, StoredOutcome)>) {
    let prod = Relation::parse("analytics.orders").unwrap();
    let pr = Relation::parse("dbt_cloud_pr_1_2.orders").unwrap();
    let mut req = DiffRequest::new(prod.clone(), pr.clone(), vec!["id".into()]);
    req.filter = Some("status <> 'test'".into());
    req.include_columns = vec!["id".into(), "amount".into()];
    let fresh = Relation::parse("dbt_cloud_pr_1_2.fresh").unwrap();
    let mut counted = WorkItem::from_request(
        "fresh",
        &DiffRequest::new(fresh.clone(), fresh.clone(), vec![]),
    );
    counted.count = Some(CountSide::Pr);
    let summary = Summary {
        dbt_run_id: Some(7),
        models: vec![("model.shop.orders".into(), "orders".into())],
        skipped: vec![("fresh".into(), "new model".into())],
        counted: vec![Counted {
            unique_id: "model.shop.fresh".into(),
            name: "fresh".into(),
            side: CountSide::Pr,
        }],
        prod_run_id: Some(500),
        reused: [(
            "model.shop.customers".to_owned(),
            Reused {
                since: sha("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
                run: RunId::new(),
            },
        )]
        .into_iter()
        .collect(),
        ..Default::default()
    };
    let mut orders = WorkItem::from_request("orders", &req);
    orders.reuse_key = Some("9f".repeat(32));
    let fanout = FanOut {
        summary,
        models: vec![
            ("model.shop.fresh".into(), counted),
            ("model.shop.orders".into(), orders),
        ],
    };
    let results = vec![
        (
            "model.shop.fresh".to_owned(),
            StoredOutcome::Ok(Box::new(DiffResult::counted(
                &fresh,
                &fresh,
                PerSide { prod: 0, pr: 12 },
            ))),
        ),
        (
            "model.shop.orders".to_owned(),
            StoredOutcome::Error("timed out after 600 s".into()),
        ),
    ];
    (fanout, results)
}

/// What goes in through the port comes back equal.
async fn typed_records_round_trip(store: &dyn RunStore) {
    let run = RunId::new();
    let (fanout, results) = typed_fanout();
    assert!(store.put_fanout(&run, &fanout).await.unwrap());
    assert_eq!(
        store.fanout_summary(&run).await.unwrap().as_ref(),
        Some(&fanout.summary)
    );
    for (model, work) in &fanout.models {
        assert_eq!(
            store.model_work(&run, model).await.unwrap().as_ref(),
            Some(work)
        );
    }
    assert_eq!(
        store.model_work(&run, "model.shop.other").await.unwrap(),
        None
    );
    for (i, (model, outcome)) in results.iter().enumerate() {
        let recorded = store
            .record_result(&run, model, Some(outcome))
            .await
            .unwrap();
        assert!(recorded.first);
        assert_eq!(recorded.remaining, (results.len() - i - 1) as u64);
    }
    // A redelivery counting a stored result writes nothing and is not first.
    let again = store
        .record_result(&run, "model.shop.orders", None)
        .await
        .unwrap();
    assert!(!again.first);
    assert_eq!(again.remaining, 0);
    assert_eq!(store.results(&run).await.unwrap(), results);
}

/// A record that does not decode is a `Corrupt` error naming the run and the field.
fn assert_names_run_and_field(e: StoreError, run: &RunId, field: &str) {
    match &e {
        StoreError::Corrupt { key, .. } => {
            assert!(key.contains(run.as_str()) && key.contains(field), "{key}")
        }
        other => panic!("expected a corrupt-item error, got {other:?}"),
    }
    let text = e.to_string();
    assert!(
        text.contains(run.as_str()) && text.contains(field),
        "{text}"
    );
}

#[tokio::test]
async fn the_embedded_run_store_loads_fanouts_and_results_written_before_it_was_typed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prdiff.db");
    let store = EmbeddedStore::open(&path).unwrap();
    let (run, broken) = (RunId::new(), RunId::new());
    {
        let db = rusqlite::Connection::open(&path).unwrap();
        let fanout = "INSERT INTO run_fanouts (run_id, total, summary) VALUES (?1, 1, ?2)";
        let work = "INSERT INTO run_work (run_id, model, body) VALUES (?1, ?2, ?3)";
        let result = "INSERT INTO run_results (run_id, model, body) VALUES (?1, ?2, ?3)";
        let orders = "model.shop.orders";
        db.execute(fanout, (run.as_str(), LEGACY_SUMMARY)).unwrap();
        db.execute(work, (run.as_str(), orders, LEGACY_WORK))
            .unwrap();
        db.execute(result, (run.as_str(), orders, LEGACY_RESULT))
            .unwrap();
        // A summary missing a required field, a work item and a result that are not JSON.
        db.execute(fanout, (broken.as_str(), r#"{"models":[]}"#))
            .unwrap();
        db.execute(work, (broken.as_str(), orders, "{")).unwrap();
        db.execute(result, (broken.as_str(), orders, "not json"))
            .unwrap();
    }
    legacy_records_load(&store, &run).await;
    let e = store.fanout_summary(&broken).await.unwrap_err();
    assert_names_run_and_field(e, &broken, "fan-out summary");
    let e = store
        .model_work(&broken, "model.shop.orders")
        .await
        .unwrap_err();
    assert_names_run_and_field(e, &broken, "work item of model.shop.orders");
    let e = store.results(&broken).await.unwrap_err();
    assert_names_run_and_field(e, &broken, "result of model.shop.orders");
}

#[tokio::test]
async fn the_embedded_run_store_round_trips_typed_fanouts_and_results() {
    typed_records_round_trip(&EmbeddedStore::in_memory()).await;
}

#[tokio::test]
async fn the_dynamodb_run_store_loads_fanouts_and_results_written_before_it_was_typed() {
    use aws_sdk_dynamodb::types::AttributeValue::{N, S};
    let store = dynamo_store().await;
    let client = aws_sdk_dynamodb::Client::new(&moto().await);
    let (run, broken) = (RunId::new(), RunId::new());
    let put = |run: &RunId, sk: &str, attr: &str, json: &str| {
        client
            .put_item()
            .table_name(store.table())
            .item("pk", S(format!("RUN#{run}")))
            .item("sk", S(sk.into()))
            .item("total", N("1".into()))
            .item(attr, S(json.into()))
            .send()
    };
    put(&run, "FANOUT", "summary", LEGACY_SUMMARY)
        .await
        .unwrap();
    put(&run, "WORK#model.shop.orders", "body", LEGACY_WORK)
        .await
        .unwrap();
    put(&run, "RESULT#model.shop.orders", "body", LEGACY_RESULT)
        .await
        .unwrap();
    put(&broken, "FANOUT", "summary", r#"{"models":[]}"#)
        .await
        .unwrap();
    put(&broken, "WORK#model.shop.orders", "body", "{")
        .await
        .unwrap();
    put(&broken, "RESULT#model.shop.orders", "not_body", "{}")
        .await
        .unwrap();
    legacy_records_load(&store, &run).await;
    let e = store.fanout_summary(&broken).await.unwrap_err();
    assert_names_run_and_field(e, &broken, "fan-out summary");
    let e = store
        .model_work(&broken, "model.shop.orders")
        .await
        .unwrap_err();
    assert_names_run_and_field(e, &broken, "work item of model.shop.orders");
    let e = store.results(&broken).await.unwrap_err();
    assert_names_run_and_field(e, &broken, "result of model.shop.orders");
}

/// A run records the PR's run that was current when it started, and a later push finds a
/// stored result with the same re-use key through it (never one from another PR).
async fn previous_runs_lend_results(store: &dyn RunStore) {
    use prdiff_shared::app::reuse::{find_reusable, lent_outcome};
    let number = rand::random::<u32>() as u64;
    let first = run(number, "1111111111111111111111111111111111111111");
    assert!(matches!(
        store.start_run(&first).await.unwrap(),
        StartOutcome::Started { superseded: None }
    ));
    let first = store.get_run(&first.id).await.unwrap().unwrap();
    assert_eq!(first.previous, None);
    let (mut fanout, _) = typed_fanout();
    fanout.summary.reused.clear();
    let key = "ab".repeat(32);
    for (_, w) in &mut fanout.models {
        w.reuse_key = Some(key.clone());
    }
    store.put_fanout(&first.id, &fanout).await.unwrap();
    let diffed = StoredOutcome::Ok(Box::new(DiffResult::counted(
        &Relation::parse("analytics.orders").unwrap(),
        &Relation::parse("dbt_cloud_pr_1_2.orders").unwrap(),
        PerSide { prod: 3, pr: 4 },
    )));
    store
        .record_result(&first.id, "model.shop.orders", Some(&diffed))
        .await
        .unwrap();
    // The run is open (received): the next push supersedes it and names it.
    let second = run(number, "2222222222222222222222222222222222222222");
    let superseded = Some(first.id.clone());
    assert_eq!(
        store.start_run(&second).await.unwrap(),
        StartOutcome::Started { superseded }
    );
    let second = store.get_run(&second.id).await.unwrap().unwrap();
    assert_eq!(second.previous.as_ref(), Some(&first.id));
    let work = fanout.models.clone();
    let found = find_reusable(store, &second, &work).await.unwrap();
    // The counted item is never re-used; the diffed one is, since the first push.
    assert_eq!(found.keys().collect::<Vec<_>>(), ["model.shop.orders"]);
    let lent = &found["model.shop.orders"];
    assert_eq!(lent.since, first.head_sha);
    assert_eq!(lent.run, first.id);
    assert_eq!(
        lent_outcome(store, "model.shop.orders", lent)
            .await
            .unwrap(),
        diffed
    );
    // Another key, or another PR's run, lends nothing.
    let mut other = work.clone();
    other[1].1.reuse_key = Some("cd".repeat(32));
    assert!(
        find_reusable(store, &second, &other)
            .await
            .unwrap()
            .is_empty()
    );
    let stranger = run(number + 1, "3333333333333333333333333333333333333333");
    store.start_run(&stranger).await.unwrap();
    let mut stranger = store.get_run(&stranger.id).await.unwrap().unwrap();
    assert_eq!(stranger.previous, None);
    stranger.previous = Some(first.id.clone());
    assert!(
        find_reusable(store, &stranger, &work)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn the_embedded_run_store_links_a_push_to_the_previous_run_for_re_use() {
    previous_runs_lend_results(&EmbeddedStore::in_memory()).await;
}

#[tokio::test]
async fn the_dynamodb_run_store_links_a_push_to_the_previous_run_for_re_use() {
    previous_runs_lend_results(&dynamo_store().await).await;
}

#[tokio::test]
async fn the_dynamodb_run_store_round_trips_typed_fanouts_and_results() {
    typed_records_round_trip(&dynamo_store().await).await;
}
