//! The poller Lambda: wiring only. Settings are read once, AWS clients built once, then
//! every SQS batch goes to [`prdiff_poller::handle_batch`].

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{LambdaEvent, service_fn};
use prdiff_poller::{Deps, Settings, handle_batch};
use prdiff_shared::dbtcloud::http::HttpDbtCloud;
use prdiff_shared::githost::http::{HttpGitHosts, HttpSettings};
use prdiff_shared::queue::sqs::SqsQueue;
use prdiff_shared::secrets::aws::SecretsManager;
use prdiff_shared::settings::{FromEnv, PollerSettings};
use prdiff_shared::store::dynamodb::DynamoStore;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    prdiff_shared::runtime::init_lambda_logs();
    let env = PollerSettings::from_env()?;
    let settings = Settings {
        first_delay: env.poll_delay,
        ..Settings::default()
    };
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let store = Arc::new(DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&aws),
        env.table,
    ));
    let secrets = Arc::new(SecretsManager::new(
        aws_sdk_secretsmanager::Client::new(&aws),
        Duration::from_secs(300),
    ));
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let deps = Deps {
        configs: store.clone(),
        runs: store,
        hosts: Arc::new(HttpGitHosts::new(secrets.clone(), HttpSettings::default())),
        secrets,
        dbt: Arc::new(HttpDbtCloud::default()),
        poll_queue: Arc::new(SqsQueue::new(sqs.clone(), env.poll_queue_url)),
        diff_queue: Arc::new(SqsQueue::new(sqs, env.diff_queue_url)),
        settings,
    };
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<SqsBatchResponse, lambda_runtime::Error>(handle_batch(event.payload, deps).await)
    }))
    .await
}
