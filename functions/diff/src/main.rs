//! The diff-runner Lambda: wiring only. Settings are read once, adapters built once
//! ([`prdiff_shared::wiring`]), then every SQS batch goes to [`prdiff_diff::handle_batch`].
// The handler's future nests the warehouse drivers' (Snowflake's HTTP client included)
// deeper than the compiler's default layout depth of 128.
#![recursion_limit = "256"]

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{LambdaEvent, service_fn};
use prdiff_diff::{Settings, handle_batch};
use prdiff_shared::settings::{DiffSettings, FromEnv};
use prdiff_shared::wiring::Backend;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    prdiff_shared::runtime::init_lambda_logs();
    let env = DiffSettings::from_env()?;
    let adapters = Backend::diff(&env).await.adapters()?;
    let deps = &adapters.diff_run(Settings {
        model_timeout: env.model_timeout,
        ..Settings::default()
    });
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<SqsBatchResponse, lambda_runtime::Error>(handle_batch(event.payload, deps).await)
    }))
    .await
}
