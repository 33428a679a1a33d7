//! An in-process delay queue. Time is tokio's, so tests can pause the clock and advance it.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Queue, QueueError, clamp_delay};
use crate::messages::Message;

/// Messages become receivable at their due time, oldest due first.
#[derive(Default)]
pub struct MemoryQueue {
    items: Mutex<VecDeque<(Instant, Message)>>,
    notify: Notify,
}

impl MemoryQueue {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(Instant, Message)>> {
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes every message that is due now, without waiting.
    pub fn take_due(&self) -> Vec<Message> {
        let now = Instant::now();
        let mut items = self.lock();
        let (due, later): (Vec<_>, Vec<_>) = items.drain(..).partition(|(at, _)| *at <= now);
        items.extend(later);
        due.into_iter().map(|(_, m)| m).collect()
    }

    /// Waits for the next message to become due and takes it.
    pub async fn receive(&self) -> Message {
        loop {
            let next_due = {
                let mut items = self.lock();
                let now = Instant::now();
                if let Some(pos) = items.iter().position(|(at, _)| *at <= now) {
                    return items.remove(pos).expect("position is in range").1;
                }
                items.iter().map(|(at, _)| *at).min()
            };
            match next_due {
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = self.notify.notified() => {}
                    }
                }
                None => self.notify.notified().await,
            }
        }
    }

    /// Messages waiting, due or not.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn send(&self, message: &Message, delay: Duration) -> Result<(), QueueError> {
        let at = Instant::now() + clamp_delay(delay);
        self.lock().push_back((at, message.clone()));
        self.notify.notify_waiters();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigId;
    use crate::messages::{SyncMessage, SyncReason};

    fn msg(name: &str) -> Message {
        Message::Sync(SyncMessage {
            config_id: ConfigId::parse(name).unwrap(),
            reason: SyncReason::Schedule,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_delayed_message_is_not_due_before_its_delay() {
        let q = MemoryQueue::new();
        q.send(&msg("later"), Duration::from_secs(30))
            .await
            .unwrap();
        q.send(&msg("now"), Duration::ZERO).await.unwrap();
        assert_eq!(q.take_due(), vec![msg("now")]);
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(q.take_due().is_empty());
        assert_eq!(q.receive().await, msg("later"));
        assert!(q.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn delays_are_capped_at_fifteen_minutes() {
        let q = MemoryQueue::new();
        q.send(&msg("capped"), Duration::from_secs(3600))
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(900)).await;
        assert_eq!(q.take_due(), vec![msg("capped")]);
    }
}
