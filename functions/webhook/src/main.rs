//! The webhook intake Lambda: wiring only. Settings are read once, AWS clients built once,
//! then every request goes to [`prdiff_webhook::handle`].

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use lambda_runtime::{LambdaEvent, service_fn};
use prdiff_shared::githost::http::{HttpGitHosts, HttpSettings};
use prdiff_shared::queue::sqs::SqsQueue;
use prdiff_shared::secrets::aws::SecretsManager;
use prdiff_shared::settings::{FromEnv, WebhookSettings};
use prdiff_shared::store::dynamodb::DynamoStore;
use prdiff_webhook::{Deps, FromHttpV2, IntoHttpV2, Settings, WebhookRequest, handle};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    prdiff_shared::runtime::init_lambda_logs();
    let env = WebhookSettings::from_env()?;
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
    let mut settings = Settings::new(env.webhook_secret);
    settings.poll_delay = env.poll_delay;
    settings.run_deadline = env.run_deadline;
    let deps = Deps {
        configs: store.clone(),
        runs: store,
        hosts: Arc::new(HttpGitHosts::new(secrets.clone(), HttpSettings::default())),
        secrets,
        poll_queue: Arc::new(SqsQueue::new(sqs.clone(), env.poll_queue_url)),
        sync_queue: Arc::new(SqsQueue::new(sqs, env.sync_queue_url)),
        settings,
    };
    let deps = &deps;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ApiGatewayV2httpRequest>| async move {
            let resp =
                match WebhookRequest::from_http_v2(event.payload, deps.settings.max_body_bytes) {
                    Ok(req) => handle(&req, deps).await,
                    Err(resp) => resp,
                };
            Ok::<ApiGatewayV2httpResponse, lambda_runtime::Error>(resp.into_http_v2())
        },
    ))
    .await
}
