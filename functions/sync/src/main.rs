//! The manifest sync Lambda: wiring only. Settings are read once, adapters built once
//! ([`prdiff_shared::wiring`]), then every event goes to [`prdiff_sync::handle`].

use std::time::Duration;

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use prdiff_shared::error_chain as chain;
use prdiff_shared::settings::{FromEnv, SyncSettings};
use prdiff_shared::wiring::Backend;
use prdiff_sync::{HandlerError, handle_with_lifecycle};
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

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    prdiff_shared::runtime::init_lambda_logs();
    let env = SyncSettings::from_env()?;
    let adapters = Backend::sync(&env).await.adapters()?;
    let deps = &adapters.sync();
    let lifecycle = &adapters.lifecycle(env.run_deadline + Duration::from_secs(300));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        handle_with_lifecycle(event.payload, deps, lifecycle)
            .await
            .map_err(Failure)
    }))
    .await
}
