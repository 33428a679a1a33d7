//! The poller Lambda: wiring only. Settings are read once, adapters built once
//! ([`prdiff_shared::wiring`]), then every SQS batch goes to [`prdiff_poller::handle_batch`].

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{LambdaEvent, service_fn};
use prdiff_poller::{Settings, handle_batch};
use prdiff_shared::settings::{FromEnv, PollerSettings};
use prdiff_shared::wiring::Backend;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    prdiff_shared::runtime::init_lambda_logs();
    let env = PollerSettings::from_env()?;
    let adapters = Backend::poller(&env).await.adapters()?;
    let deps = &adapters.poll(Settings {
        first_delay: env.poll_delay,
        ..Settings::default()
    })?;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<SqsBatchResponse, lambda_runtime::Error>(handle_batch(event.payload, deps).await)
    }))
    .await
}
