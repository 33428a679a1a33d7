//! The webhook intake Lambda: wiring only. Settings are read once, AWS clients built once,
//! then every request goes to [`prdiff_webhook::handle`].

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use lambda_runtime::{LambdaEvent, service_fn};
use prdiff_shared::config::SecretName;
use prdiff_shared::githost::{HttpGitHosts, HttpSettings};
use prdiff_shared::queue::sqs::SqsQueue;
use prdiff_shared::secrets::aws::SecretsManager;
use prdiff_shared::store::dynamodb::DynamoStore;
use prdiff_webhook::{Deps, Settings, WebhookRequest, handle};

/// Environment variables, read together so every missing one is reported at once.
struct Env {
    table: String,
    poll_queue_url: String,
    sync_queue_url: String,
    webhook_secret: SecretName,
    poll_delay: Option<u64>,
}

fn read_env() -> anyhow::Result<Env> {
    let mut missing = Vec::new();
    let mut var = |name: &'static str| {
        std::env::var(name).unwrap_or_else(|_| {
            missing.push(name);
            String::new()
        })
    };
    let table = var("PRDIFF_TABLE");
    let poll_queue_url = var("PRDIFF_POLL_QUEUE_URL");
    let sync_queue_url = var("PRDIFF_SYNC_QUEUE_URL");
    let secret = var("PRDIFF_WEBHOOK_SECRET_NAME");
    if !missing.is_empty() {
        anyhow::bail!("missing environment variables: {}", missing.join(", "));
    }
    Ok(Env {
        table,
        poll_queue_url,
        sync_queue_url,
        webhook_secret: SecretName::parse(secret)
            .map_err(anyhow::Error::msg)
            .context("PRDIFF_WEBHOOK_SECRET_NAME")?,
        poll_delay: std::env::var("PRDIFF_POLL_DELAY_SECONDS")
            .ok()
            .map(|v| v.parse())
            .transpose()
            .context("PRDIFF_POLL_DELAY_SECONDS")?,
    })
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_current_span(true)
        .without_time()
        .init();
    let env = read_env()?;
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
    if let Some(d) = env.poll_delay {
        settings.poll_delay = Duration::from_secs(d);
    }
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
