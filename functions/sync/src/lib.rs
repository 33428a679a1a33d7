//! The manifest sync Lambda: keeps each configuration's model metadata fresh.
//!
//! Two triggers reach [`handle`]:
//! - the EventBridge schedule (a fixed tick, e.g. every 15 minutes): every configuration
//!   whose own `sync_schedule` is due since its last successful sync is synced, one after
//!   another ([`prdiff_shared::app::sync::tick`]);
//! - SQS sync messages (the webhook sends one per push to the default branch when
//!   `sync_on_push` is on): that configuration is synced. The answer is an
//!   `SqsBatchResponse`: a message whose sync failed for a retryable reason is reported
//!   as failed so SQS delivers it again; a malformed body is reported as failed too (it
//!   ends in the DLQ); a sync that can never succeed (unknown configuration) is dropped.
//!
//! A failed sync records its error on the configuration's sync state and leaves the
//! stored metadata in place.

// `synthetic` builds a dbt node with one `json!`, deeper than the default limit.
#![recursion_limit = "256"]

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use prdiff_shared::app::sync::{self, SyncError};
use prdiff_shared::messages::Message;
use prdiff_shared::queue::batch::{self, BatchError, Disposition};
use prdiff_shared::store::unix_now;
use serde_json::{Value, json};
use tracing::Instrument;

pub use prdiff_shared::app::publish::{Lifecycle, lifecycle_tick};
pub use prdiff_shared::app::sync::SyncDeps as Deps;

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

/// [`handle`], with the run sweep on each scheduled tick (the Lambda's wiring).
pub async fn handle_with_lifecycle(
    event: Value,
    deps: &Deps,
    lifecycle: &Lifecycle,
) -> Result<Value, HandlerError> {
    if event.get("Records").is_some() {
        return handle(event, deps).await;
    }
    let eb: EventBridgeEvent = serde_json::from_value(event).map_err(HandlerError::UnknownEvent)?;
    let now = eb
        .time
        .map(|t| t.timestamp().max(0) as u64)
        .unwrap_or_else(unix_now);
    // The sweep runs first: a failing sync must not keep PRs pending.
    let swept = lifecycle_tick(lifecycle, now)
        .instrument(tracing::info_span!("run_sweep", now))
        .await;
    let mut out = handle_schedule(eb, deps).await?;
    out["runs"] = swept;
    Ok(out)
}

/// A batch of sync messages, one sync each.
pub async fn handle_sqs(event: SqsEvent, deps: &Deps, now: u64) -> SqsBatchResponse {
    batch::handle_batch("sync", event, |r| async move {
        let msg = match Message::from_json(&r.body) {
            Ok(Message::Sync(msg)) => msg,
            Ok(other) => return Err(SyncMessageError::WrongKind(other.kind())),
            Err(e) => return Err(SyncMessageError::Unreadable(e)),
        };
        let span = tracing::info_span!("sync", config = %msg.config_id, message_id = %r.id);
        // A push syncs the pushed commit's artifacts run, the schedule the newest.
        let sha = match &msg.reason {
            prdiff_shared::messages::SyncReason::Push { sha } => Some(sha.as_str()),
            prdiff_shared::messages::SyncReason::Schedule => None,
        };
        sync::sync_config_at(deps, &msg.config_id, now, sha)
            .instrument(span)
            .await
            .map_err(SyncMessageError::Sync)
    })
    .await
}

/// Why a sync message failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncMessageError {
    #[error("unreadable sync message: {0}")]
    Unreadable(prdiff_shared::messages::MessageError),
    #[error("not a sync message (kind {0})")]
    WrongKind(&'static str),
    #[error("{}", .0.chain())]
    Sync(SyncError),
}

impl BatchError for SyncMessageError {
    fn disposition(&self) -> Disposition {
        match self {
            SyncMessageError::Unreadable(_) | SyncMessageError::WrongKind(_) => {
                Disposition::DeadLetter
            }
            // Recorded on the configuration already; only retry what may pass later.
            SyncMessageError::Sync(e) if e.is_retryable() => Disposition::Retry,
            SyncMessageError::Sync(_) => Disposition::Drop,
        }
    }

    fn already_logged(&self) -> bool {
        // The sync logs its own failure; an unknown configuration is found before it runs.
        matches!(self, SyncMessageError::Sync(e) if !matches!(e, SyncError::UnknownConfig(_) | SyncError::Config(_)))
    }
}

/// Synthetic manifests for tests and the benchmark: `n` models shaped like dbt 1.10
/// output (v12 config keys, raw and compiled SQL, documented columns, dependencies), about
/// 6 KB of JSON per model, like production manifests.
pub mod synthetic {
    use serde_json::{Value, json};

    /// A v12 manifest of `n` models named `model_<i>`, generated at `generated_at`.
    pub fn manifest(n: usize, generated_at: &str) -> Vec<u8> {
        let mut nodes = serde_json::Map::with_capacity(n);
        let mut child_map = serde_json::Map::with_capacity(n);
        for i in 0..n {
            let uid = format!("model.big.model_{i}");
            let parents: Vec<String> = (1..=3)
                .filter(|d| i >= *d)
                .map(|d| format!("model.big.model_{}", i - d))
                .collect();
            let columns: serde_json::Map<String, Value> = (0..12)
                .map(|c| {
                    let name = format!("column_{c}");
                    (name.clone(), json!({
                        "name": name, "description": format!("Column {c} of model {i}: what it holds, where it comes from and how it is computed."),
                        "meta": {}, "data_type": if c % 3 == 0 { Value::from("bigint") } else { Value::Null },
                        "constraints": [], "quote": null, "config": {"meta": {}, "tags": []}, "tags": [],
                        "granularity": null, "doc_blocks": []
                    }))
                })
                .collect();
            let raw = format!(
                "with source as (\n  select * from {{{{ ref('model_{}') }}}}\n),\nrenamed as (\n  select\n{}\n  from source\n)\nselect * from renamed\n",
                i.saturating_sub(1),
                (0..12)
                    .map(|c| format!("    column_{c} as column_{c}"))
                    .collect::<Vec<_>>()
                    .join(",\n")
            );
            let raw = raw.repeat(3);
            let compiled = raw
                .replace("{{ ref(", "\"analytics\".\"prod\".\"")
                .replace("') }}", "\"");
            let config = json!({"enabled": true, "alias": null, "schema": null, "database": null, "tags": ["nightly"],
                    "meta": if i % 2 == 0 { json!({"owner": format!("team-{}", i % 7)}) } else { json!({}) },
                    "group": null, "materialized": if i % 5 == 0 { "incremental" } else { "table" },
                    "incremental_strategy": null, "batch_size": null, "lookback": 1, "begin": null,
                    "persist_docs": {}, "post-hook": [], "pre-hook": [], "quoting": {}, "column_types": {},
                    "full_refresh": null, "unique_key": null, "on_schema_change": "ignore",
                    "on_configuration_change": "apply", "grants": {}, "packages": [],
                    "docs": {"show": true, "node_color": null}, "contract": {"enforced": false, "alias_types": true},
                    "event_time": null, "concurrent_batches": null, "access": "protected", "freshness": null});
            nodes.insert(uid.clone(), json!({
                "database": "analytics", "schema": "prod", "name": format!("model_{i}"),
                "resource_type": "model", "package_name": "big",
                "path": format!("marts/model_{i}.sql"), "original_file_path": format!("models/marts/model_{i}.sql"),
                "unique_id": uid, "fqn": ["big", "marts", format!("model_{i}")], "alias": format!("model_{i}"),
                "checksum": {"name": "sha256", "checksum": format!("{:064x}", i)},
                "config": config,
                "tags": ["nightly"], "description": format!("Model {i}: one row per entity, rebuilt nightly from upstream models."),
                "columns": columns, "meta": {}, "group": null,
                "docs": {"show": true, "node_color": null}, "patch_path": "big://models/marts/schema.yml",
                "build_path": null, "unrendered_config": {"materialized": "table"}, "created_at": 1_700_000_000.0,
                "relation_name": format!("\"analytics\".\"prod\".\"model_{i}\""),
                "raw_code": raw, "doc_blocks": [], "language": "sql", "refs": [], "sources": [], "metrics": [],
                "functions": [], "depends_on": {"macros": [], "nodes": parents},
                "compiled_path": format!("target/compiled/big/models/marts/model_{i}.sql"),
                "compiled": true, "compiled_code": compiled, "extra_ctes_injected": true, "extra_ctes": [],
                "contract": {"enforced": false, "alias_types": true, "checksum": null},
                "access": "protected", "constraints": [], "version": null, "latest_version": null,
                "deprecation_date": null, "primary_key": ["column_0"], "time_spine": null
            }));
            child_map.insert(
                uid,
                json!(
                    (1..=3)
                        .filter(|d| i + d < n)
                        .map(|d| format!("model.big.model_{}", i + d))
                        .collect::<Vec<_>>()
                ),
            );
        }
        serde_json::to_vec(&json!({
            "metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json",
                "dbt_version": "1.10.0", "generated_at": generated_at, "adapter_type": "postgres"},
            "nodes": nodes, "sources": {}, "macros": {}, "docs": {}, "exposures": {}, "metrics": {},
            "groups": {}, "selectors": {}, "disabled": {}, "parent_map": {}, "child_map": child_map,
            "group_map": {}, "saved_queries": {}, "semantic_models": {}, "unit_tests": {}
        }))
        .expect("manifest serializes")
    }
}
