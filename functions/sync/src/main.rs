//! The manifest sync Lambda: wiring only. Settings are read once, AWS clients built once,
//! then every event goes to [`prdiff_sync::handle`].

use std::sync::Arc;
use std::time::Duration;

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use prdiff_shared::dbtcloud::http::HttpDbtCloud;
use prdiff_shared::githost::http::{HttpGitHosts, HttpSettings};
use prdiff_shared::metadata::dynamodb::DynamoMetadata;
use prdiff_shared::queue::DeadLetters;
use prdiff_shared::queue::sqs::{SqsDeadLetters, SqsQueue};
use prdiff_shared::secrets::aws::SecretsManager;
use prdiff_shared::settings::{FromEnv, SyncSettings};
use prdiff_shared::store::dynamodb::DynamoStore;
use prdiff_sync::{Deps, HandlerError, Lifecycle, handle_with_lifecycle};
use serde_json::Value;

/// A handler failure as Lambda reports it: a stable error type and the message.
#[derive(Debug)]
struct Failure(HandlerError);

impl From<Failure> for Diagnostic {
    fn from(f: Failure) -> Self {
        Diagnostic {
            error_type: f.0.error_type().into(),
            error_message: chain(&f.0),
        }
    }
}

use prdiff_shared::error_chain as chain;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    prdiff_shared::runtime::init_lambda_logs();
    let env = SyncSettings::from_env()?;
    let table = env.table;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let dynamo = aws_sdk_dynamodb::Client::new(&aws);
    let store = Arc::new(DynamoStore::new(dynamo.clone(), table.clone()));
    let secrets = Arc::new(SecretsManager::new(
        aws_sdk_secretsmanager::Client::new(&aws),
        Duration::from_secs(300),
    ));
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let mut dead_letters: Vec<Arc<dyn DeadLetters>> = Vec::new();
    for (name, url) in env.dead_letter_queues {
        dead_letters.push(Arc::new(SqsDeadLetters {
            name: name.to_owned(),
            queue: SqsQueue::new(sqs.clone(), url),
        }));
    }
    let deadline = env.run_deadline + Duration::from_secs(300);
    let lifecycle = Lifecycle {
        configs: store.clone(),
        runs: store.clone(),
        hosts: Arc::new(HttpGitHosts::new(secrets.clone(), HttpSettings::default())),
        dead_letters,
        deadline,
    };
    let deps = Deps {
        configs: store,
        metadata: Arc::new(DynamoMetadata::new(dynamo, table)),
        secrets,
        dbt: Arc::new(HttpDbtCloud::default()),
    };
    let (deps, lifecycle) = (&deps, &lifecycle);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        handle_with_lifecycle(event.payload, deps, lifecycle)
            .await
            .map_err(Failure)
    }))
    .await
}
