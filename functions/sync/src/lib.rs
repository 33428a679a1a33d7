//! The manifest sync Lambda: keeps each configuration's model metadata fresh.
//!
//! Two triggers reach [`handle`]:
//! - the EventBridge schedule (a fixed tick, e.g. every 15 minutes): every configuration
//!   whose own `sync_schedule` is due since its last successful sync is synced, one after
//!   another ([`prdiff_shared::metadata::sync::tick`]);
//! - SQS sync messages (the webhook sends one per push to the default branch when
//!   `sync_on_push` is on): that configuration is synced. The answer is an
//!   `SqsBatchResponse`: a message whose sync failed for a retryable reason is reported
//!   as failed so SQS delivers it again; a malformed body is reported as failed too (it
//!   ends in the DLQ); a sync that can never succeed (unknown configuration) is dropped.
//!
//! A failed sync records its error on the configuration's sync state and leaves the
//! stored metadata in place.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use prdiff_shared::messages::Message;
use prdiff_shared::metadata::sync::{self, SyncError};
use prdiff_shared::store::unix_now;
use serde_json::{Value, json};
use tracing::Instrument;

pub use prdiff_shared::metadata::sync::SyncDeps as Deps;

/// Why an invocation failed as a whole (only unknown events and the tick's listing of
/// configurations can; per-configuration failures are recorded and reported).
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("the event is neither an SQS batch nor an EventBridge event")]
    UnknownEvent(#[source] serde_json::Error),
    #[error("the scheduled sync could not list configurations")]
    Tick(#[source] SyncError),
}

impl HandlerError {
    pub fn is_retryable(&self) -> bool {
        match self {
            HandlerError::UnknownEvent(_) => false,
            HandlerError::Tick(e) => e.is_retryable(),
        }
    }

    /// A stable name for the Lambda error type.
    pub fn error_type(&self) -> &'static str {
        match self {
            HandlerError::UnknownEvent(_) => "UnknownEvent",
            HandlerError::Tick(_) => "TickFailed",
        }
    }
}

/// Any event the function receives: an SQS batch (`Records`) or an EventBridge event.
pub async fn handle(event: Value, deps: &Deps) -> Result<Value, HandlerError> {
    if event.get("Records").is_some() {
        let sqs: SqsEvent = serde_json::from_value(event).map_err(HandlerError::UnknownEvent)?;
        let resp = handle_sqs(sqs, deps, unix_now()).await;
        return Ok(serde_json::to_value(resp).expect("batch response serializes"));
    }
    let eb: EventBridgeEvent = serde_json::from_value(event).map_err(HandlerError::UnknownEvent)?;
    handle_schedule(eb, deps).await
}

/// The scheduled tick. `now` is the event's time (so a late delivery judges due-ness as of
/// the tick), or the clock when the event has none.
pub async fn handle_schedule(event: EventBridgeEvent, deps: &Deps) -> Result<Value, HandlerError> {
    let now = event
        .time
        .map(|t| t.timestamp().max(0) as u64)
        .unwrap_or_else(unix_now);
    let span = tracing::info_span!("scheduled_sync", now);
    let out = sync::tick(deps, now)
        .instrument(span)
        .await
        .map_err(HandlerError::Tick)?;
    let synced: Vec<Value> = out
        .synced
        .iter()
        .map(|(id, r)| match r {
            Ok(o) => json!({
                "config": id.as_str(), "ok": true, "unchanged": o.unchanged,
                "added": o.added.len(), "updated": o.updated.len(), "removed": o.removed.len(),
            }),
            Err(e) => json!({ "config": id.as_str(), "ok": false, "error": e.chain() }),
        })
        .collect();
    let not_due: Vec<&str> = out.not_due.iter().map(|c| c.as_str()).collect();
    Ok(json!({ "synced": synced, "not_due": not_due }))
}

/// A batch of sync messages, one sync each.
pub async fn handle_sqs(event: SqsEvent, deps: &Deps, now: u64) -> SqsBatchResponse {
    let mut failures = Vec::new();
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let fail = match Message::from_json(record.body.as_deref().unwrap_or_default()) {
            Ok(Message::Sync(msg)) => {
                let span = tracing::info_span!("sync", config = %msg.config_id, message_id = %id);
                match sync::sync_config(deps, &msg.config_id, now)
                    .instrument(span)
                    .await
                {
                    Ok(_) => false,
                    // Recorded on the configuration already; only retry what may pass later.
                    Err(e) => e.is_retryable(),
                }
            }
            Ok(other) => {
                tracing::error!(message_id = %id, kind = other.kind(), "not a sync message");
                true
            }
            Err(e) => {
                tracing::error!(message_id = %id, error = %e, "unreadable sync message");
                true
            }
        };
        if fail {
            let mut f = BatchItemFailure::default();
            f.item_identifier = id;
            failures.push(f);
        }
    }
    let mut resp = SqsBatchResponse::default();
    resp.batch_item_failures = failures;
    resp
}
