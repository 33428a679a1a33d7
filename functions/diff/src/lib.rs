//! The diff-runner Lambda: SQS batch decoding. The use case itself is
//! [`prdiff_shared::app::diff_run`]; only the messages worth retrying are reported as batch
//! item failures.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};

pub use prdiff_shared::app::diff_run::*;

/// Handles an SQS batch; failed retryable messages are reported for redelivery.
pub async fn handle_batch(event: SqsEvent, deps: &Deps) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let receives = record
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(1);
        let body = record.body.as_deref().unwrap_or("");
        match handle_message(body, receives, deps).await {
            Ok(outcome) => tracing::info!(message_id = %id, ?outcome, "diff handled"),
            Err(e) if e.is_retryable() => {
                tracing::warn!(message_id = %id, error = %e, "diff failed; will be retried");
                response.add_failure(id);
            }
            Err(e @ (DiffRunError::Message(_) | DiffRunError::WrongKind(_))) => {
                // Unreadable: reported as failed so that, after the queue's receive limit,
                // it waits in the dead-letter queue (alarmed, replayable).
                tracing::error!(message_id = %id, error = %e, "unreadable diff message; left for the dead-letter queue");
                response.add_failure(id);
            }
            Err(e) => tracing::error!(message_id = %id, error = %e, "diff message dropped"),
        }
    }
    response
}
