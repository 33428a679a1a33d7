//! The manifest sync Lambda: wiring only. Settings are read once, AWS clients built once,
//! then every event goes to [`prdiff_sync::handle`].

use std::sync::Arc;
use std::time::Duration;

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use prdiff_shared::config::apply::HttpDbtCloud;
use prdiff_shared::metadata::dynamodb::DynamoMetadata;
use prdiff_shared::secrets::aws::SecretsManager;
use prdiff_shared::store::dynamodb::DynamoStore;
use prdiff_sync::{Deps, HandlerError, handle};
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
    let table = prdiff_shared::runtime::required("PRDIFF_TABLE")?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let dynamo = aws_sdk_dynamodb::Client::new(&aws);
    let deps = Deps {
        configs: Arc::new(DynamoStore::new(dynamo.clone(), table.clone())),
        metadata: Arc::new(DynamoMetadata::new(dynamo, table)),
        secrets: Arc::new(SecretsManager::new(
            aws_sdk_secretsmanager::Client::new(&aws),
            Duration::from_secs(300),
        )),
        dbt: Arc::new(HttpDbtCloud::default()),
    };
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        handle(event.payload, deps).await.map_err(Failure)
    }))
    .await
}
