//! The poller Lambda: SQS batch decoding. The use case itself is
//! [`prdiff_shared::app::poll`]; only the messages worth retrying are reported as batch
//! item failures.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};

pub use prdiff_shared::app::poll::*;

/// Handles an SQS batch; failed retryable messages are reported for redelivery.
pub async fn handle_batch(event: SqsEvent, deps: &Deps) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let body = record.body.as_deref().unwrap_or("");
        match handle_message(body, deps).await {
            Ok(outcome) => tracing::info!(message_id = %id, ?outcome, "poll handled"),
            Err(e) if e.is_retryable() => {
                tracing::warn!(message_id = %id, error = %e, "poll failed; will be retried");
                response.add_failure(id);
            }
            Err(e @ (PollError::Message(_) | PollError::WrongKind(_))) => {
                // Unreadable: reported as failed so that, after the queue's receive limit,
                // it waits in the dead-letter queue (alarmed, replayable).
                tracing::error!(message_id = %id, error = %e, "unreadable poll message; left for the dead-letter queue");
                response.add_failure(id);
            }
            Err(e) => {
                // Nothing to retry: the same bytes fail again. The run (if any) has been
                // ended by handle_message.
                tracing::error!(message_id = %id, error = %e, "poll message dropped");
            }
        }
    }
    response
}
