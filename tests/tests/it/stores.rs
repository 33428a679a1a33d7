//! The store, queue and secret adapters against moto (DynamoDB, SQS, Secrets Manager in
//! server mode, started by scripts/test.sh) and the embedded SQLite store. The same
//! contract checks run against both store adapters.

use std::sync::Arc;
use std::time::Duration;

use prdiff_shared::config::{CiConfig, ConfigId, Provider, RepoName, SecretName};
use prdiff_shared::messages::{Message, SyncMessage, SyncReason};
use prdiff_shared::queue::Queue;
use prdiff_shared::queue::sqs::SqsQueue;
use prdiff_shared::run::{CiRun, PrKey, RunId, RunState, StartOutcome};
use prdiff_shared::secrets::aws::SecretsManager;
use prdiff_shared::secrets::{ExposeSecret, SecretString, Secrets, SecretsError};
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
