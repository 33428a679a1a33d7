//! A durable queue on SQLite for `prdiff serve`: SQS's semantics in one process, kept in
//! the same database file as the embedded store, so delayed polls and pending diffs
//! survive a restart.
//!
//! - [`Queue::send`] stores the message with its due time (delay capped like SQS's).
//! - [`EmbeddedQueue::receive`] leases the oldest due message for a visibility timeout and
//!   counts the delivery (SQS's `ApproximateReceiveCount`).
//! - The consumer then [`acks`](EmbeddedQueue::ack) it (deleted),
//!   [`retries`](EmbeddedQueue::retry) it after a delay, or moves it to the dead letters
//!   with the reason ([`EmbeddedQueue::dead_letter`]). A consumer that dies mid-message
//!   leaves the lease to expire, and the message is delivered again.
//! - At start, the single process that owns the file [`releases`](EmbeddedQueues::release_leases)
//!   the leases of its previous life, so a restart does not wait out visibility timeouts.
//!
//! Times are wall-clock Unix milliseconds (they must mean the same after a restart),
//! read through a replaceable clock so tests can move time.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};
use tokio::sync::Notify;

use super::{Queue, QueueError, clamp_delay};
use crate::localdb::LocalDb;
use crate::messages::Message;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS queue_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    body TEXT NOT NULL,
    sent_at INTEGER NOT NULL,
    visible_at INTEGER NOT NULL,
    leased_until INTEGER,
    receives INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS queue_messages_due ON queue_messages (queue, visible_at);
CREATE TABLE IF NOT EXISTS queue_dead_letters (
    id INTEGER PRIMARY KEY,
    queue TEXT NOT NULL,
    body TEXT NOT NULL,
    sent_at INTEGER NOT NULL,
    failed_at INTEGER NOT NULL,
    receives INTEGER NOT NULL,
    reason TEXT NOT NULL);
";

/// Milliseconds since the Unix epoch.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

fn system_clock() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A clock tests can set and advance.
#[derive(Clone, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    pub fn at(ms: u64) -> Self {
        Self(Arc::new(AtomicU64::new(ms)))
    }

    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn clock(&self) -> Clock {
        let at = self.0.clone();
        Arc::new(move || at.load(Ordering::SeqCst))
    }
}

/// The queues of one database file.
#[derive(Clone)]
pub struct EmbeddedQueues {
    db: Arc<LocalDb>,
    clock: Clock,
    notify: Arc<Notify>,
}

/// One named queue of an [`EmbeddedQueues`].
#[derive(Clone)]
pub struct EmbeddedQueue {
    queues: EmbeddedQueues,
    name: String,
}

/// A leased message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: i64,
    pub body: String,
    /// 1 on the first delivery.
    pub receives: u32,
}

/// A message that was given up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: i64,
    pub queue: String,
    pub body: String,
    pub receives: u32,
    pub reason: String,
}

fn receive_error(queue: &str, e: rusqlite::Error) -> QueueError {
    QueueError::Receive {
        queue: queue.to_owned(),
        source: Box::new(e),
    }
}

impl EmbeddedQueues {
    /// Opens (creating if needed) the queue tables in a database file.
    pub fn open(path: &Path) -> Result<Self, QueueError> {
        let db = LocalDb::open(path, SCHEMA).map_err(|e| receive_error("(open)", e))?;
        Ok(Self::from_db(db, Arc::new(system_clock)))
    }

    /// A private in-memory database with the given clock.
    pub fn in_memory(clock: Clock) -> Self {
        Self::from_db(LocalDb::in_memory(SCHEMA), clock)
    }

    fn from_db(db: LocalDb, clock: Clock) -> Self {
        Self {
            db: Arc::new(db),
            clock,
            notify: Arc::new(Notify::new()),
        }
    }

    /// The queue called `name` (`poll`, `diff`, `sync`).
    pub fn queue(&self, name: &str) -> EmbeddedQueue {
        EmbeddedQueue {
            queues: self.clone(),
            name: name.to_owned(),
        }
    }

    /// Makes every leased message deliverable now: the leases of a previous process on
    /// this file. Only the process that owns the file may call it. Returns how many.
    pub fn release_leases(&self) -> Result<usize, QueueError> {
        self.db
            .lock()
            .execute(
                "UPDATE queue_messages SET leased_until = NULL WHERE leased_until IS NOT NULL",
                [],
            )
            .map_err(|e| receive_error("(all)", e))
    }

    /// Messages given up on, oldest first.
    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>, QueueError> {
        let conn = self.db.lock();
        let mut stmt = conn
            .prepare(
                "SELECT id, queue, body, receives, reason FROM queue_dead_letters ORDER BY failed_at, id",
            )
            .map_err(|e| receive_error("(dead letters)", e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(DeadLetter {
                    id: r.get(0)?,
                    queue: r.get(1)?,
                    body: r.get(2)?,
                    receives: r.get(3)?,
                    reason: r.get(4)?,
                })
            })
            .map_err(|e| receive_error("(dead letters)", e))?;
        rows.collect::<Result<_, _>>()
            .map_err(|e| receive_error("(dead letters)", e))
    }

    /// Puts a dead letter back on its queue, due now, with its receive count reset, in one
    /// transaction. `false` when there is no dead letter with that id.
    pub fn replay_dead_letter(&self, id: i64) -> Result<bool, QueueError> {
        let now = (self.clock)() as i64;
        let mut conn = self.db.lock();
        let err = |e| receive_error("(dead letters)", e);
        let tx = conn.transaction().map_err(err)?;
        let moved = tx
            .execute(
                "INSERT INTO queue_messages (queue, body, sent_at, visible_at)
                 SELECT queue, body, sent_at, ?2 FROM queue_dead_letters WHERE id = ?1",
                params![id, now],
            )
            .map_err(err)?;
        tx.execute("DELETE FROM queue_dead_letters WHERE id = ?1", params![id])
            .map_err(err)?;
        tx.commit().map_err(err)?;
        drop(conn);
        self.notify.notify_waiters();
        Ok(moved == 1)
    }

    /// Resolves when a message is sent or retried through these queues (this process).
    /// Create it (and `enable` it) before looking at a queue, so a send in between counts.
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }
}

impl EmbeddedQueue {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file's queues this one belongs to.
    pub fn queues(&self) -> &EmbeddedQueues {
        &self.queues
    }

    fn now(&self) -> u64 {
        (self.queues.clock)()
    }

    fn err(&self, e: rusqlite::Error) -> QueueError {
        receive_error(&self.name, e)
    }

    /// Leases the oldest due message for `visibility`, or `None` when nothing is due.
    pub fn receive(&self, visibility: Duration) -> Result<Option<Delivery>, QueueError> {
        let now = self.now() as i64;
        let until = now + visibility.as_millis() as i64;
        let conn = self.queues.db.lock();
        // One statement: two consumers cannot lease the same message.
        conn.query_row(
            "UPDATE queue_messages SET leased_until = ?3, receives = receives + 1
             WHERE id = (SELECT id FROM queue_messages
                         WHERE queue = ?1 AND visible_at <= ?2
                           AND (leased_until IS NULL OR leased_until <= ?2)
                         ORDER BY visible_at, id LIMIT 1)
             RETURNING id, body, receives",
            params![self.name, now, until],
            |r| {
                Ok(Delivery {
                    id: r.get(0)?,
                    body: r.get(1)?,
                    receives: r.get(2)?,
                })
            },
        )
        .optional()
        .map_err(|e| self.err(e))
    }

    /// How long until a message becomes deliverable: zero when one is due, `None` when the
    /// queue is empty.
    pub fn next_due_in(&self) -> Result<Option<Duration>, QueueError> {
        let now = self.now() as i64;
        let at: Option<i64> = self
            .queues
            .db
            .lock()
            .query_row(
                "SELECT MIN(MAX(visible_at, COALESCE(leased_until, 0))) FROM queue_messages
                 WHERE queue = ?1",
                params![self.name],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        Ok(at.map(|at| Duration::from_millis((at - now).max(0) as u64)))
    }

    /// Done with a message: it is deleted.
    pub fn ack(&self, d: &Delivery) -> Result<(), QueueError> {
        self.queues
            .db
            .lock()
            .execute("DELETE FROM queue_messages WHERE id = ?1", params![d.id])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Delivers the message again after `delay` (a failed attempt).
    pub fn retry(&self, d: &Delivery, delay: Duration) -> Result<(), QueueError> {
        let at = self.now() as i64 + delay.as_millis() as i64;
        self.queues
            .db
            .lock()
            .execute(
                "UPDATE queue_messages SET leased_until = NULL, visible_at = ?2 WHERE id = ?1",
                params![d.id, at],
            )
            .map_err(|e| self.err(e))?;
        self.queues.notify.notify_waiters();
        Ok(())
    }

    /// Gives up on a message: moved to the dead letters with `reason`, in one transaction.
    pub fn dead_letter(&self, d: &Delivery, reason: &str) -> Result<(), QueueError> {
        let now = self.now() as i64;
        let mut conn = self.queues.db.lock();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        tx.execute(
            "INSERT INTO queue_dead_letters (id, queue, body, sent_at, failed_at, receives, reason)
             SELECT id, queue, body, sent_at, ?2, receives, ?3 FROM queue_messages WHERE id = ?1",
            params![d.id, now, reason],
        )
        .map_err(|e| self.err(e))?;
        tx.execute("DELETE FROM queue_messages WHERE id = ?1", params![d.id])
            .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    /// Messages waiting or in flight.
    pub fn len(&self) -> Result<usize, QueueError> {
        let n: i64 = self
            .queues
            .db
            .lock()
            .query_row(
                "SELECT COUNT(*) FROM queue_messages WHERE queue = ?1",
                params![self.name],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        Ok(n as usize)
    }

    pub fn is_empty(&self) -> Result<bool, QueueError> {
        Ok(self.len()? == 0)
    }
}

#[async_trait]
impl Queue for EmbeddedQueue {
    async fn send(&self, message: &Message, delay: Duration) -> Result<(), QueueError> {
        let now = self.now() as i64;
        let at = now + clamp_delay(delay).as_millis() as i64;
        self.queues
            .db
            .lock()
            .execute(
                "INSERT INTO queue_messages (queue, body, sent_at, visible_at) VALUES (?1, ?2, ?3, ?4)",
                params![self.name, message.to_json(), now, at],
            )
            .map_err(|e| QueueError::Send {
                queue: self.name.clone(),
                retryable: crate::localdb::is_busy(&e),
                source: Box::new(e),
            })?;
        self.queues.notify.notify_waiters();
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

    const LEASE: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn delayed_messages_wait_their_turn_and_queues_are_separate() {
        let clock = ManualClock::at(1_000_000);
        let qs = EmbeddedQueues::in_memory(clock.clock());
        let (a, b) = (qs.queue("poll"), qs.queue("diff"));
        a.send(&msg("later"), Duration::from_secs(30))
            .await
            .unwrap();
        a.send(&msg("now"), Duration::ZERO).await.unwrap();
        b.send(&msg("other"), Duration::ZERO).await.unwrap();
        let first = a.receive(LEASE).unwrap().unwrap();
        assert_eq!(Message::from_json(&first.body).unwrap(), msg("now"));
        assert_eq!(first.receives, 1);
        assert_eq!(a.receive(LEASE).unwrap(), None, "the other is not due");
        assert_eq!(a.next_due_in().unwrap(), Some(Duration::from_secs(30)));
        clock.advance(Duration::from_secs(30));
        let later = a.receive(LEASE).unwrap().unwrap();
        assert_eq!(Message::from_json(&later.body).unwrap(), msg("later"));
        let other = b.receive(LEASE).unwrap().unwrap();
        assert_eq!(Message::from_json(&other.body).unwrap(), msg("other"));
    }

    #[tokio::test]
    async fn an_unacknowledged_message_comes_back_after_its_lease_and_counts_receives() {
        let clock = ManualClock::at(5_000);
        let qs = EmbeddedQueues::in_memory(clock.clock());
        let q = qs.queue("diff");
        q.send(&msg("m"), Duration::ZERO).await.unwrap();
        let d1 = q.receive(LEASE).unwrap().unwrap();
        assert_eq!(q.receive(LEASE).unwrap(), None, "leased");
        clock.advance(LEASE);
        let d2 = q.receive(LEASE).unwrap().unwrap();
        assert_eq!((d2.id, d2.receives), (d1.id, 2));
        q.retry(&d2, Duration::from_secs(10)).unwrap();
        assert_eq!(q.receive(LEASE).unwrap(), None);
        clock.advance(Duration::from_secs(10));
        let d3 = q.receive(LEASE).unwrap().unwrap();
        assert_eq!(d3.receives, 3);
        q.ack(&d3).unwrap();
        assert!(q.is_empty().unwrap());
        assert_eq!(q.next_due_in().unwrap(), None);
    }

    #[tokio::test]
    async fn dead_letters_keep_the_body_and_reason() {
        let qs = EmbeddedQueues::in_memory(ManualClock::at(1).clock());
        let q = qs.queue("poll");
        q.send(&msg("bad"), Duration::ZERO).await.unwrap();
        let d = q.receive(LEASE).unwrap().unwrap();
        q.dead_letter(&d, "unreadable").unwrap();
        assert!(q.is_empty().unwrap());
        let dead = qs.dead_letters().unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(
            (dead[0].queue.as_str(), dead[0].reason.as_str()),
            ("poll", "unreadable")
        );
        assert_eq!(Message::from_json(&dead[0].body).unwrap(), msg("bad"));

        assert!(qs.replay_dead_letter(dead[0].id).unwrap());
        assert!(qs.dead_letters().unwrap().is_empty());
        let again = q.receive(LEASE).unwrap().unwrap();
        assert_eq!(Message::from_json(&again.body).unwrap(), msg("bad"));
        assert_eq!(again.receives, 1, "a replay starts its count again");
        assert!(
            !qs.replay_dead_letter(dead[0].id).unwrap(),
            "gone once replayed"
        );
    }

    #[tokio::test]
    async fn messages_and_delays_survive_reopening_the_file_and_leases_are_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        {
            let qs = EmbeddedQueues::open(&path).unwrap();
            let q = qs.queue("poll");
            q.send(&msg("delayed"), Duration::from_secs(600))
                .await
                .unwrap();
            q.send(&msg("in-flight"), Duration::ZERO).await.unwrap();
            assert!(q.receive(Duration::from_secs(900)).unwrap().is_some());
        }
        let qs = EmbeddedQueues::open(&path).unwrap();
        let q = qs.queue("poll");
        assert_eq!(q.len().unwrap(), 2);
        assert_eq!(
            q.receive(LEASE).unwrap(),
            None,
            "still leased, still delayed"
        );
        assert_eq!(qs.release_leases().unwrap(), 1);
        let d = q.receive(LEASE).unwrap().unwrap();
        assert_eq!(Message::from_json(&d.body).unwrap(), msg("in-flight"));
        assert_eq!(d.receives, 2);
        q.ack(&d).unwrap();
        let due = q.next_due_in().unwrap().unwrap();
        assert!(
            due > Duration::from_secs(590) && due <= Duration::from_secs(600),
            "{due:?}"
        );
    }

    #[tokio::test]
    async fn two_consumers_never_lease_the_same_message() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        let a = EmbeddedQueues::open(&path).unwrap();
        let b = EmbeddedQueues::open(&path).unwrap();
        for i in 0..50 {
            a.queue("diff")
                .send(&msg(&format!("m{i}")), Duration::ZERO)
                .await
                .unwrap();
        }
        let take = |qs: EmbeddedQueues| {
            std::thread::spawn(move || {
                let q = qs.queue("diff");
                let mut ids = Vec::new();
                while let Some(d) = q.receive(LEASE).unwrap() {
                    ids.push(d.id);
                }
                ids
            })
        };
        let (ta, tb) = (take(a), take(b));
        let mut all: Vec<i64> = ta.join().unwrap();
        all.extend(tb.join().unwrap());
        all.sort_unstable();
        let n = all.len();
        all.dedup();
        assert_eq!((n, all.len()), (50, 50));
    }
}
