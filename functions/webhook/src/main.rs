//! The webhook intake Lambda: wiring only. Settings are read once, adapters built once
//! ([`prdiff_shared::wiring`]), then every request goes to [`prdiff_webhook::handle`].

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use lambda_runtime::{LambdaEvent, service_fn};
use prdiff_shared::settings::{FromEnv, WebhookSettings};
use prdiff_shared::wiring::Backend;
use prdiff_webhook::{FromHttpV2, IntoHttpV2, Settings, WebhookRequest, handle};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    prdiff_shared::runtime::init_lambda_logs();
    let env = WebhookSettings::from_env()?;
    let adapters = Backend::webhook(&env).await.adapters()?;
    let mut settings = Settings::new(env.webhook_secret);
    settings.trigger_token = env.trigger_token;
    settings.poll_delay = env.poll_delay;
    settings.run_deadline = env.run_deadline;
    let deps = &adapters.intake(settings)?;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ApiGatewayV2httpRequest>| async move {
            let is_trigger = prdiff_webhook::is_trigger_path(event.payload.raw_path.as_deref());
            let method = event.payload.request_context.http.method.clone();
            if let Some(refused) = is_trigger
                .then(|| prdiff_webhook::trigger_method_refused(method.as_str()))
                .flatten()
            {
                return Ok(refused.into_http_v2());
            }
            let resp =
                match WebhookRequest::from_http_v2(event.payload, deps.settings.max_body_bytes) {
                    Ok(req) if is_trigger => prdiff_webhook::trigger(&req, deps).await,
                    Ok(req) => handle(&req, deps).await,
                    Err(resp) => resp,
                };
            Ok::<ApiGatewayV2httpResponse, lambda_runtime::Error>(resp.into_http_v2())
        },
    ))
    .await
}
