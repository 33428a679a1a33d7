//! The queue port: send a [`Message`] with a delay. Adapters: `sqs.rs` (SQS, per-message
//! `DelaySeconds`), `embedded.rs` (a durable SQLite queue with leases and dead letters, for
//! `prdiff serve`) and `memory.rs` (an in-process delay queue for tests).
//!
//! One queue value per destination (poll queue, diff queue, sync queue), so a handler is
//! handed exactly the queues it sends to.

#[cfg(feature = "lambda")]
pub mod batch;
#[cfg(feature = "sqlite")]
pub mod embedded;
pub mod memory;
#[cfg(feature = "aws")]
pub mod sqs;

use std::time::Duration;

use async_trait::async_trait;

use crate::messages::Message;

/// The longest delay SQS allows on one message; longer waits re-send.
pub const MAX_DELAY: Duration = Duration::from_secs(900);

/// Why a message could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue {queue} refused the message")]
    Send {
        queue: String,
        retryable: bool,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("queue {queue} failed to receive")]
    Receive {
        queue: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl QueueError {
    pub fn is_retryable(&self) -> bool {
        match self {
            QueueError::Send { retryable, .. } => *retryable,
            QueueError::Receive { .. } => true,
        }
    }
}

/// Sends messages to one queue.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Sends `message`, visible to consumers after `delay` (capped at [`MAX_DELAY`]).
    async fn send(&self, message: &Message, delay: Duration) -> Result<(), QueueError>;
}

/// A dead-letter queue, read without removing anything: its messages stay for replay.
#[async_trait]
pub trait DeadLetters: Send + Sync {
    /// The name shown in causes (`poll`, `diff`, `sync`).
    fn name(&self) -> &str;
    /// Bodies of the messages waiting there (as many as one look finds; a message seen
    /// before may be seen again).
    async fn peek_dead(&self) -> Result<Vec<String>, QueueError>;
}

/// `first × 2ⁿ`, capped at [`MAX_DELAY`]: the growing wait between re-polls and retries.
pub fn doubling_delay(first: Duration, n: u32) -> Duration {
    first
        .saturating_mul(2u32.saturating_pow(n.min(20)))
        .min(MAX_DELAY)
}

/// The delay actually applied: SQS takes whole seconds up to 900.
pub fn clamp_delay(delay: Duration) -> Duration {
    Duration::from_secs(delay.min(MAX_DELAY).as_secs())
}
