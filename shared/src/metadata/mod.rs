//! Model metadata synced from the production manifest: descriptions,
//! columns, tags, meta, owners, materializations and relations of every model, seed,
//! snapshot and source, kept per configuration so reports can name owners and describe
//! the models a PR touches.
//!
//! ```text
//! tick / push → due? (cron since last success) → latest successful artifacts run
//!   → manifest.json (+ catalog.json) → unchanged? (byte hash, then content hash) → stop
//!   → parse (lean) → per-model hashes vs stored → write changed, remove vanished → state
//! ```
//!
//! - [`parse`]: a lean manifest/catalog reader of its own (the planner's [`crate::manifest`]
//!   keeps only hashes of descriptions; this one keeps the texts and nothing else).
//! - [`sync`]: due-ness and the sync itself, over the [`crate::dbtcloud::DbtCloudApi`] port.
//! - Adapters of [`MetadataStore`]: `dynamodb.rs` (Lambda), `embedded.rs` (SQLite/memory).
//!
//! A failed sync records its error in the configuration's [`SyncState`] and leaves the
//! stored models as they were; the next tick retries.

#[cfg(feature = "aws")]
pub mod dynamodb;
#[cfg(feature = "sqlite")]
pub mod embedded;
pub mod parse;

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::config::ConfigId;

/// Longest model description kept; longer ones end with [`TRUNCATED`].
pub const MAX_DESCRIPTION: usize = 4_000;
/// Longest column description kept.
pub const MAX_COLUMN_DESCRIPTION: usize = 1_000;
/// Marker appended to a truncated text.
pub const TRUNCATED: &str = " … [truncated by prdiff]";

/// What is stored of one model, seed, snapshot or source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMetadata {
    /// dbt `unique_id` (`model.jaffle_shop.orders`, `source.jaffle_shop.raw.orders`).
    pub unique_id: String,
    pub name: String,
    /// `model`, `seed`, `snapshot` or `source`.
    pub resource_type: String,
    pub package_name: String,
    /// The relation as dbt renders it (`"db"."schema"."orders"`); none for ephemeral models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub materialization: Option<String>,
    #[serde(default)]
    pub description: String,
    /// In the manifest's (YAML) order, then catalog-only columns in catalog order.
    #[serde(default)]
    pub columns: Vec<ColumnMetadata>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub meta: serde_json::Map<String, serde_json::Value>,
    /// `meta.owner`, else the owner of the model's group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// One column of a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnMetadata {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// From catalog.json when the run had one, else the YAML `data_type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_type: Option<String>,
}

impl ModelMetadata {
    /// A 64-bit hash of everything stored, to tell changed models from unchanged ones.
    pub fn content_hash(&self) -> u64 {
        xxhash_rust::xxh3::xxh3_64(&serde_json::to_vec(self).expect("metadata serializes"))
    }

    /// Cuts long descriptions (with [`TRUNCATED`]) so one model stays a small item.
    pub fn truncate_texts(&mut self) {
        truncate(&mut self.description, MAX_DESCRIPTION);
        for c in &mut self.columns {
            truncate(&mut c.description, MAX_COLUMN_DESCRIPTION);
        }
    }
}

/// Cuts `s` to at most `max` bytes (on a char boundary), marker included.
pub fn truncate(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut end = max.saturating_sub(TRUNCATED.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push_str(TRUNCATED);
}

/// Where a configuration's sync stands: what was last stored, and the last failure.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncState {
    /// Unix seconds of the last sync that succeeded (stored or found nothing changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<u64>,
    /// Unix seconds of the last attempt, successful or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_at: Option<u64>,
    /// Why the last attempt failed; cleared by the next success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Hash of the manifest and catalog bytes last stored (skips even parsing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_hash: Option<String>,
    /// Hash of the metadata last stored (a regenerated but equal manifest writes nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,
    /// `metadata.generated_at` of the manifest the stored models come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated_at: Option<String>,
    /// The dbt Cloud run the manifest came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<u64>,
    /// How many models are stored.
    #[serde(default)]
    pub models: usize,
}

/// What the store knows of a stored model without reading it whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDigest {
    pub name: String,
    pub hash: u64,
    /// Extra items the model was split into (DynamoDB only; 0 elsewhere).
    pub parts: u32,
}

/// Why a metadata store call failed.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// A stored item no longer parses.
    #[error("stored metadata item {key} is corrupt")]
    Corrupt {
        key: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// One model is too large to store even split (thousands of columns with huge meta).
    #[error("model {unique_id} is too large to store ({bytes} bytes after truncation)")]
    TooLarge { unique_id: String, bytes: usize },
    /// The backend failed (network, throttling, unprocessed items left after retries).
    #[error("metadata store backend failed")]
    Backend {
        retryable: bool,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl MetadataError {
    pub fn is_retryable(&self) -> bool {
        match self {
            MetadataError::Backend { retryable, .. } => *retryable,
            MetadataError::Corrupt { .. } | MetadataError::TooLarge { .. } => false,
        }
    }
}

/// Model metadata per configuration, and each configuration's [`SyncState`].
#[async_trait]
pub trait MetadataStore: Send + Sync {
    async fn state(&self, config: &ConfigId) -> Result<Option<SyncState>, MetadataError>;
    async fn put_state(&self, config: &ConfigId, state: &SyncState) -> Result<(), MetadataError>;
    /// Every stored model of a configuration: unique id → digest.
    async fn digests(
        &self,
        config: &ConfigId,
    ) -> Result<HashMap<String, StoredDigest>, MetadataError>;
    /// Creates or replaces models (`digests` are the stored ones, so stale parts go too).
    async fn put_models(
        &self,
        config: &ConfigId,
        models: &[ModelMetadata],
        old: &HashMap<String, StoredDigest>,
    ) -> Result<(), MetadataError>;
    /// Removes models by unique id, with every item they were split into.
    async fn remove_models(
        &self,
        config: &ConfigId,
        models: &[(String, StoredDigest)],
    ) -> Result<(), MetadataError>;
    /// The models (and sources) with this name; usually one.
    async fn models_named(
        &self,
        config: &ConfigId,
        name: &str,
    ) -> Result<Vec<ModelMetadata>, MetadataError>;
}

/// The resource types whose metadata is synced.
pub const SYNCED_TYPES: [&str; 4] = ["model", "seed", "snapshot", "source"];

/// Owners and descriptions of the named models, for the report. Names without stored
/// metadata are left out; when a name is shared (a model and a source), the model wins.
/// A store failure leaves the report without metadata rather than failing it.
pub async fn report_metadata(
    store: &dyn MetadataStore,
    config: &ConfigId,
    model_names: &[String],
) -> BTreeMap<String, crate::report::ModelMeta> {
    use futures::StreamExt;
    let found: Vec<(String, Option<ModelMetadata>)> =
        futures::stream::iter(model_names.iter().cloned())
            .map(|name| async move {
                let models = match store.models_named(config, &name).await {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(config = %config, model = %name, error = %e, "metadata lookup failed");
                        Vec::new()
                    }
                };
                let best = models.into_iter().min_by_key(|m| {
                    SYNCED_TYPES
                        .iter()
                        .position(|t| *t == m.resource_type)
                        .unwrap_or(SYNCED_TYPES.len())
                });
                (name, best)
            })
            .buffer_unordered(8)
            .collect()
            .await;
    found
        .into_iter()
        .filter_map(|(name, m)| {
            let m = m?;
            let description = Some(m.description).filter(|d| !d.trim().is_empty());
            if m.owner.is_none() && description.is_none() {
                return None;
            }
            let meta = crate::report::ModelMeta {
                owner: m.owner,
                description,
            };
            Some((name, meta))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_description_is_cut_on_a_char_boundary_and_marked() {
        let mut s = "é".repeat(3000);
        truncate(&mut s, MAX_DESCRIPTION);
        assert!(s.len() <= MAX_DESCRIPTION);
        assert!(s.ends_with(TRUNCATED));
        let mut short = "short".to_owned();
        truncate(&mut short, 10);
        assert_eq!(short, "short");
    }
}
