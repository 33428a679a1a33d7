//! SQS: the message JSON as the body, the delay as `DelaySeconds`.

use std::time::Duration;

use crate::aws_error::classify;
use async_trait::async_trait;
use aws_sdk_sqs::Client;

use super::{Queue, QueueError, clamp_delay};
use crate::messages::Message;

/// One SQS queue, by URL.
#[derive(Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
}

impl SqsQueue {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Receives up to `max` messages (long-polling up to `wait`), deleting them: for
    /// `prdiff serve --aws` style consumers and tests. Lambda consumers get their batch
    /// from the event source mapping instead.
    pub async fn receive(&self, max: i32, wait: Duration) -> Result<Vec<String>, QueueError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, 10))
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .send()
            .await
            .map_err(|e| QueueError::Receive {
                queue: self.url.clone(),
                source: Box::new(classify("SQS", e)),
            })?;
        let mut bodies = Vec::new();
        for m in out.messages.unwrap_or_default() {
            if let Some(handle) = m.receipt_handle() {
                self.client
                    .delete_message()
                    .queue_url(&self.url)
                    .receipt_handle(handle)
                    .send()
                    .await
                    .map_err(|e| QueueError::Receive {
                        queue: self.url.clone(),
                        source: Box::new(classify("SQS", e)),
                    })?;
            }
            bodies.extend(m.body);
        }
        Ok(bodies)
    }
}

impl SqsQueue {
    /// Reads up to `max` messages without deleting them: each stays in the queue and is
    /// visible again after `hold`. A dead-letter queue is read this way, so its messages
    /// are kept for replay.
    pub async fn peek(&self, max: i32, hold: Duration) -> Result<Vec<String>, QueueError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, 10))
            .visibility_timeout(hold.as_secs().min(43_200) as i32)
            .send()
            .await
            .map_err(|e| QueueError::Receive {
                queue: self.url.clone(),
                source: Box::new(classify("SQS", e)),
            })?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| m.body)
            .collect())
    }
}

/// A dead-letter queue on SQS, with the name its causes use.
pub struct SqsDeadLetters {
    pub name: String,
    pub queue: SqsQueue,
}

#[async_trait]
impl super::DeadLetters for SqsDeadLetters {
    fn name(&self) -> &str {
        &self.name
    }

    /// Up to ten receives of ten messages, each held out of sight for two minutes (so one
    /// look does not see a message twice) and then visible again, still in the queue.
    async fn peek_dead(&self) -> Result<Vec<String>, QueueError> {
        let mut bodies = Vec::new();
        for _ in 0..10 {
            let got = self.queue.peek(10, Duration::from_secs(120)).await?;
            if got.is_empty() {
                break;
            }
            bodies.extend(got);
        }
        Ok(bodies)
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, message: &Message, delay: Duration) -> Result<(), QueueError> {
        let delay = clamp_delay(delay);
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(message.to_json())
            .delay_seconds(delay.as_secs() as i32)
            .send()
            .await
            .map_err(|e| {
                let e = classify("SQS", e);
                QueueError::Send {
                    queue: self.url.clone(),
                    retryable: e.retryable,
                    source: Box::new(e),
                }
            })?;
        tracing::debug!(queue = %self.url, kind = message.kind(), delay_s = delay.as_secs(), "message sent");
        Ok(())
    }
}
