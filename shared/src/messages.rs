//! Every message that travels on a queue, in one place, as versioned JSON.
//!
//! The wire form is `{"version": 1, "kind": "poll", ...fields}`. A consumer that reads a
//! version it does not know fails the message (it goes to the DLQ) instead of guessing;
//! a new field that old consumers may ignore does not need a new version.
//!
//! Flow: the webhook sends [`PollMessage`] (poll queue) → the poller re-sends it with a
//! growing delay until dbt Cloud is done, then fans out one [`DiffMessage`] per model
//! (diff queue). Pushes to the default branch and the schedule send [`SyncMessage`].

use serde::{Deserialize, Serialize};

use crate::config::{CommitSha, ConfigId};
use crate::run::RunId;

/// The version this build writes and reads.
pub const MESSAGE_VERSION: u32 = 1;

/// A queue message with its version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub version: u32,
    #[serde(flatten)]
    pub message: Message,
}

/// What a message asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Message {
    Poll(PollMessage),
    Diff(DiffMessage),
    Sync(SyncMessage),
}

/// Look for the dbt Cloud run of a CI run; sent by the webhook, re-sent by the poller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollMessage {
    pub run_id: RunId,
    pub config_id: ConfigId,
    /// The PR head commit the dbt Cloud run must have built.
    pub head_sha: CommitSha,
    /// 0 for the webhook's message; the poller increments it when it re-sends.
    pub attempt: u32,
    /// Unix seconds after which the poller gives up and fails the run.
    pub deadline_unix: u64,
    /// The waiting text the sticky comment shows since the previous poll: the comment is
    /// edited only when the text changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shown: Option<String>,
    /// Polls so far that found the finished run's artifacts not ready (not saved yet, 404,
    /// or not JSON): retried a few times before the run fails.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub artifact_waits: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Diff one model of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffMessage {
    pub run_id: RunId,
    pub config_id: ConfigId,
    /// dbt `unique_id` of the model (`model.jaffle_shop.orders`).
    pub model: String,
    pub attempt: u32,
}

/// Refresh the stored model metadata of a configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncMessage {
    pub config_id: ConfigId,
    pub reason: SyncReason,
}

/// Why a sync was asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "trigger", rename_all = "snake_case")]
pub enum SyncReason {
    /// A push to the default branch (`sync_on_push`).
    Push { sha: CommitSha },
    /// The EventBridge schedule.
    Schedule,
}

/// A message body that cannot be used. Not retryable: the same bytes fail again.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("message is not valid JSON of a known kind")]
    Malformed(#[source] serde_json::Error),
    #[error("message version {0} is not supported (this build reads {MESSAGE_VERSION})")]
    UnsupportedVersion(u32),
}

impl MessageError {
    pub fn is_retryable(&self) -> bool {
        false
    }
}

impl Message {
    /// The JSON body to put on the queue.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&Envelope {
            version: MESSAGE_VERSION,
            message: self.clone(),
        })
        .expect("messages serialize")
    }

    /// Reads a queue body, refusing versions this build does not know.
    pub fn from_json(body: &str) -> Result<Self, MessageError> {
        #[derive(Deserialize)]
        struct VersionOnly {
            version: u32,
        }
        let v: VersionOnly = serde_json::from_str(body).map_err(MessageError::Malformed)?;
        if v.version != MESSAGE_VERSION {
            return Err(MessageError::UnsupportedVersion(v.version));
        }
        let env: Envelope = serde_json::from_str(body).map_err(MessageError::Malformed)?;
        Ok(env.message)
    }

    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Poll(_) => "poll",
            Message::Diff(_) => "diff",
            Message::Sync(_) => "sync",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll() -> Message {
        Message::Poll(PollMessage {
            run_id: RunId::parse("run_0000018f2c3a9b00_1a2b3c4d").unwrap(),
            config_id: ConfigId::parse("main").unwrap(),
            head_sha: CommitSha::parse("ec26c3e57ca3a959ca5aad62de7213c562f8c821").unwrap(),
            attempt: 0,
            deadline_unix: 1_700_000_000,
            shown: None,
            artifact_waits: 0,
        })
    }

    #[test]
    fn a_poll_message_has_a_stable_wire_form() {
        let json: serde_json::Value = serde_json::from_str(&poll().to_json()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "version": 1, "kind": "poll", "run_id": "run_0000018f2c3a9b00_1a2b3c4d",
                "config_id": "main", "head_sha": "ec26c3e57ca3a959ca5aad62de7213c562f8c821",
                "attempt": 0, "deadline_unix": 1_700_000_000u64
            })
        );
    }

    #[test]
    fn every_kind_round_trips() {
        let sync = Message::Sync(SyncMessage {
            config_id: ConfigId::parse("main").unwrap(),
            reason: SyncReason::Push {
                sha: CommitSha::parse("0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c").unwrap(),
            },
        });
        let diff = Message::Diff(DiffMessage {
            run_id: RunId::parse("run_1").unwrap(),
            config_id: ConfigId::parse("main").unwrap(),
            model: "model.jaffle_shop.orders".into(),
            attempt: 2,
        });
        for m in [poll(), sync, diff] {
            assert_eq!(Message::from_json(&m.to_json()).unwrap(), m);
        }
    }

    #[test]
    fn an_unknown_version_is_refused() {
        let body = poll().to_json().replace("\"version\":1", "\"version\":2");
        assert!(matches!(
            Message::from_json(&body),
            Err(MessageError::UnsupportedVersion(2))
        ));
    }

    #[test]
    fn a_body_with_a_bad_sha_is_refused() {
        let body = poll().to_json().replace("ec26c3e5", "zz");
        assert!(matches!(
            Message::from_json(&body),
            Err(MessageError::Malformed(_))
        ));
    }
}
