//! The diff-runner Lambda: wiring only. Settings are read once, AWS clients built once,
//! then every SQS batch goes to [`prdiff_diff::handle_batch`].
// The handler's future nests the warehouse drivers' (Snowflake's HTTP client included)
// deeper than the compiler's default layout depth of 128.
#![recursion_limit = "256"]

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{LambdaEvent, service_fn};
use prdiff_diff::{Deps, Settings, handle_batch};
use prdiff_shared::githost::http::{HttpGitHosts, HttpSettings};
use prdiff_shared::secrets::aws::SecretsManager;
use prdiff_shared::settings::{DiffSettings, FromEnv};
use prdiff_shared::store::dynamodb::DynamoStore;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    prdiff_shared::runtime::init_lambda_logs();
    let env = DiffSettings::from_env()?;
    let settings = Settings {
        model_timeout: env.model_timeout,
        ..Settings::default()
    };
    let table = env.table;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let dynamo = aws_sdk_dynamodb::Client::new(&aws);
    let metadata = Arc::new(prdiff_shared::metadata::dynamodb::DynamoMetadata::new(
        dynamo.clone(),
        table.clone(),
    ));
    let store = Arc::new(DynamoStore::new(dynamo, table));
    let secrets = Arc::new(SecretsManager::new(
        aws_sdk_secretsmanager::Client::new(&aws),
        Duration::from_secs(300),
    ));
    let deps = Deps {
        configs: store.clone(),
        runs: store,
        hosts: Arc::new(HttpGitHosts::new(secrets.clone(), HttpSettings::default())),
        secrets,
        metadata: Some(metadata),
        settings,
    };
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<SqsBatchResponse, lambda_runtime::Error>(handle_batch(event.payload, deps).await)
    }))
    .await
}
