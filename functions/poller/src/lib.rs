//! The poller Lambda: SQS batch decoding. The use case itself is
//! [`prdiff_shared::app::poll`]; only the messages worth retrying are reported as batch
//! item failures ([`prdiff_shared::queue::batch`]).

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use prdiff_shared::queue::batch;

pub use prdiff_shared::app::poll::*;

/// Handles an SQS batch; failed retryable messages are reported for redelivery.
pub async fn handle_batch(event: SqsEvent, deps: &Deps) -> SqsBatchResponse {
    batch::handle_batch("poll", event, |r| async move {
        handle_message(&r.body, deps).await
    })
    .await
}
