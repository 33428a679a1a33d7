//! One SQS batch handler for every queue-fed Lambda (poller, diff runner, sync).
//!
//! The Lambda answers a batch with the ids of the records to deliver again
//! (`ReportBatchItemFailures`), so one bad record does not fail the others. What becomes
//! of a record whose handler failed is the error's [`Disposition`]:
//!
//! | disposition | answer | the record |
//! |---|---|---|
//! | [`Retry`](Disposition::Retry) | failed | delivered again after the visibility timeout |
//! | [`DeadLetter`](Disposition::DeadLetter) | failed | delivered again until the receive limit, then in the dead-letter queue (alarmed, replayable) |
//! | [`Drop`](Disposition::Drop) | done | removed: the same bytes would fail again, and the handler already ended what depended on it |

use std::fmt::{Debug, Display};
use std::future::Future;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};

/// What becomes of a record whose handler failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// A transient failure: deliver it again.
    Retry,
    /// An unreadable record: reported as failed so that it ends in the dead-letter queue.
    DeadLetter,
    /// A permanent failure the handler has dealt with (e.g. ended the run): removed.
    Drop,
}

/// An error of a record handler, and what it means for the record.
pub trait BatchError: Display {
    fn disposition(&self) -> Disposition;

    /// The handler logged this failure already: the batch notes it at debug level only,
    /// so one failure is one log line.
    fn already_logged(&self) -> bool {
        false
    }
}

/// One SQS record, as the handler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub id: String,
    pub body: String,
    /// SQS's delivery count of the record (`ApproximateReceiveCount`, 1 when absent).
    pub receives: u32,
}

/// Runs `handle` on each record of `event` in turn, and answers with the records to
/// deliver again. `kind` names the messages in the logs ("poll", "diff", "sync").
pub async fn handle_batch<T, E, F, Fut>(kind: &str, event: SqsEvent, handle: F) -> SqsBatchResponse
where
    T: Debug,
    E: BatchError,
    F: Fn(Record) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut response = SqsBatchResponse::default();
    for r in event.records {
        let record = Record {
            id: r.message_id.unwrap_or_default(),
            receives: r
                .attributes
                .get("ApproximateReceiveCount")
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(1),
            body: r.body.unwrap_or_default(),
        };
        let id = record.id.clone();
        match handle(record).await {
            Ok(outcome) => tracing::info!(message_id = %id, ?outcome, "{kind} handled"),
            Err(e) if e.already_logged() => {
                let disposition = e.disposition();
                tracing::debug!(message_id = %id, ?disposition, "{kind} failed (logged above)");
                if disposition != Disposition::Drop {
                    response.add_failure(id);
                }
            }
            Err(e) => match e.disposition() {
                Disposition::Retry => {
                    tracing::warn!(message_id = %id, error = %e, "{kind} failed; will be retried");
                    response.add_failure(id);
                }
                Disposition::DeadLetter => {
                    tracing::error!(message_id = %id, error = %e, "unreadable {kind} message; left for the dead-letter queue");
                    response.add_failure(id);
                }
                Disposition::Drop => {
                    tracing::error!(message_id = %id, error = %e, "{kind} message dropped");
                }
            },
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::sqs::SqsMessage;
    use std::sync::Mutex;

    #[derive(Debug)]
    struct Fails(Disposition);

    impl Display for Fails {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "failed: {:?}", self.0)
        }
    }

    impl BatchError for Fails {
        fn disposition(&self) -> Disposition {
            self.0
        }
    }

    fn event(records: &[(&str, &str, Option<&str>)]) -> SqsEvent {
        let mut e = SqsEvent::default();
        for (id, body, receives) in records {
            let mut m = SqsMessage::default();
            m.message_id = Some(id.to_string());
            m.body = Some(body.to_string());
            if let Some(n) = receives {
                m.attributes
                    .insert("ApproximateReceiveCount".into(), n.to_string());
            }
            e.records.push(m);
        }
        e
    }

    fn failed(resp: &SqsBatchResponse) -> Vec<&str> {
        resp.batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect()
    }

    #[tokio::test]
    async fn only_the_retryable_record_is_reported_failed_and_the_permanent_one_is_dropped() {
        let seen = Mutex::new(Vec::new());
        let resp = handle_batch(
            "test",
            event(&[
                ("m-good", "good", None),
                ("m-retry", "retry", Some("2")),
                ("m-permanent", "permanent", None),
            ]),
            |r: Record| {
                seen.lock().unwrap().push((r.id.clone(), r.receives));
                async move {
                    match r.body.as_str() {
                        "good" => Ok("done"),
                        "retry" => Err(Fails(Disposition::Retry)),
                        _ => Err(Fails(Disposition::Drop)),
                    }
                }
            },
        )
        .await;
        assert_eq!(failed(&resp), ["m-retry"]);
        assert_eq!(
            seen.into_inner().unwrap(),
            [
                ("m-good".to_owned(), 1),
                ("m-retry".to_owned(), 2),
                ("m-permanent".to_owned(), 1)
            ]
        );
    }

    #[tokio::test]
    async fn an_unreadable_record_is_reported_failed_to_reach_the_dead_letter_queue() {
        let resp = handle_batch(
            "test",
            event(&[("m-1", "{not json", None), ("m-2", "ok", None)]),
            |r: Record| async move {
                if r.body == "ok" {
                    Ok(())
                } else {
                    Err(Fails(Disposition::DeadLetter))
                }
            },
        )
        .await;
        assert_eq!(failed(&resp), ["m-1"]);
    }
}
