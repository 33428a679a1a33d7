//! Re-use across pushes: a model whose diff inputs did not change since an earlier run of
//! the same PR under the same configuration takes that run's result instead of being
//! diffed again.
//!
//! ```text
//! fan-out: work item + re-use key (sha256 of the diff inputs)
//!   → previous runs of the PR (newest first): the first with a result for the model
//!     decides: same key and a successful diff → re-used (copied into this run, counted
//!     once, no diff message); anything else → diffed
//! ```
//!
//! The key covers what decides a diff's result besides the data itself: the model's code
//! (dbt's file checksum, the hash of its SQL and of its configuration, and every macro it
//! calls), the same for every model, seed and snapshot upstream of it (transitively) and
//! the digests of the sources they read, the production dbt Cloud run whose manifest the
//! plan compared with, the whole [`DiffSpec`] (both relations, keys, filter, columns,
//! tolerance…), the configuration's sampling and data source, and prdiff's version. When
//! any part is unknown there is no key, and the model is diffed.
//!
//! The assumption: the PR side, rebuilt by dbt Cloud from the same code and upstream, holds
//! the same rows, and production did not change without a new production run.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use crate::config::Sampling;
use crate::diff::DiffSpec;
use crate::manifest::Manifest;
use crate::run::{CiRun, Reused, StoredOutcome, WorkItem};
use crate::store::{RunStore, StoreError};

/// How many earlier runs of a PR are looked at for a re-usable result.
pub const MAX_PREVIOUS_RUNS: usize = 20;

/// What a model's re-use key is made of.
#[derive(Debug, Clone, Copy)]
pub struct KeyInputs<'a> {
    /// The PR's manifest (the dbt Cloud PR run's).
    pub pr_manifest: &'a Manifest,
    pub unique_id: &'a str,
    /// The production dbt Cloud run whose manifest the plan compared with.
    pub prod_run_id: Option<u64>,
    pub spec: &'a DiffSpec,
    /// The configuration's sampling.
    pub sampling: &'a Sampling,
    /// The configuration's data source id.
    pub data_source: &'a str,
}

/// The re-use key of a model's diff: a sha256 (hex) over every input of its diff, or `None`
/// when one of them is unknown (the model, an upstream node or a macro missing from the
/// manifest, an empty checksum, no production run id).
pub fn reuse_key(i: &KeyInputs<'_>) -> Option<String> {
    let m = i.pr_manifest;
    let prod_run = i.prod_run_id?;
    m.nodes.get(i.unique_id)?;
    // The model and everything upstream of it, by unique id (sorted: order-independent).
    let mut nodes: BTreeMap<&str, String> = BTreeMap::new();
    let mut sources: BTreeMap<&str, u64> = BTreeMap::new();
    let mut macros: BTreeSet<&str> = BTreeSet::new();
    let mut todo: Vec<&str> = vec![i.unique_id];
    while let Some(id) = todo.pop() {
        if nodes.contains_key(id) || sources.contains_key(id) {
            continue;
        }
        if let Some(n) = m.nodes.get(id) {
            if n.checksum.1.is_empty() {
                return None;
            }
            nodes.insert(
                id,
                format!(
                    "{}|{}|{}|{:016x}|{:016x}|{:?}",
                    n.resource_type,
                    n.checksum.0,
                    n.checksum.1,
                    n.raw_code_hash,
                    n.unrendered_config_hash,
                    // The rendered configuration (materialization, unique key, …); prdiff's
                    // version is in the key, so its debug form is stable for the key's use.
                    n.config
                ),
            );
            todo.extend(n.depends_on_nodes.iter().map(String::as_str));
            macros.extend(n.depends_on_macros.iter().map(String::as_str));
        } else if let Some(s) = m.sources.get(id) {
            sources.insert(id, s.0);
        } else {
            return None;
        }
    }
    // Every macro called, transitively, with the hash of its SQL.
    let mut macro_hashes: BTreeMap<&str, u64> = BTreeMap::new();
    let mut todo: Vec<&str> = macros.into_iter().collect();
    while let Some(id) = todo.pop() {
        if macro_hashes.contains_key(id) {
            continue;
        }
        let mac = m.macros.get(id)?;
        macro_hashes.insert(id, mac.sql_hash);
        todo.extend(mac.depends_on.iter().map(String::as_str));
    }
    let canonical = serde_json::json!({
        "key": "prdiff-reuse-1",
        "prdiff": env!("CARGO_PKG_VERSION"),
        "model": i.unique_id,
        "nodes": nodes,
        "sources": sources,
        "macros": macro_hashes,
        "prod_run": prod_run,
        "spec": i.spec,
        "sampling": i.sampling,
        "data_source": i.data_source,
    });
    let bytes = serde_json::to_vec(&canonical).ok()?;
    Some(hex::encode(Sha256::digest(&bytes)))
}

/// The models of `work` whose result an earlier run of the PR can lend: unique id →
/// where it comes from. Only items with a key that diff (not counts) are looked up.
///
/// Earlier runs are followed through [`CiRun::previous`] (at most
/// [`MAX_PREVIOUS_RUNS`]), newest first; for each model the first run with a result
/// for it decides: re-used when that run's work item has the same key and the result is a
/// successful diff, never an error or a timeout.
pub async fn find_reusable(
    runs: &dyn RunStore,
    run: &CiRun,
    work: &[(String, WorkItem)],
) -> Result<BTreeMap<String, Reused>, StoreError> {
    let mut open: BTreeMap<&str, &str> = work
        .iter()
        .filter(|(_, w)| w.count.is_none())
        .filter_map(|(uid, w)| Some((uid.as_str(), w.reuse_key.as_deref()?)))
        .collect();
    let mut found = BTreeMap::new();
    let mut previous = run.previous.clone();
    let mut seen = BTreeSet::new();
    while let Some(id) = previous.take() {
        if open.is_empty() || seen.len() >= MAX_PREVIOUS_RUNS || !seen.insert(id.clone()) {
            break;
        }
        let Some(prev) = runs.get_run(&id).await? else {
            break;
        };
        if prev.config_id != run.config_id || prev.pr != run.pr {
            break;
        }
        previous = prev.previous.clone();
        let Some(summary) = runs.fanout_summary(&prev.id).await? else {
            continue;
        };
        let results = runs.results(&prev.id).await?;
        let mut decided = Vec::new();
        for (&uid, &key) in &open {
            let Some((_, outcome)) = results.iter().find(|(m, _)| m == uid) else {
                continue;
            };
            decided.push(uid);
            if !matches!(outcome, StoredOutcome::Ok(_)) {
                continue;
            }
            let Some(item) = runs.model_work(&prev.id, uid).await? else {
                continue;
            };
            if item.count.is_none() && item.reuse_key.as_deref() == Some(key) {
                let since = summary
                    .reused
                    .get(uid)
                    .map(|r| r.since.clone())
                    .unwrap_or_else(|| prev.head_sha.clone());
                found.insert(
                    uid.to_owned(),
                    Reused {
                        since,
                        run: prev.id.clone(),
                    },
                );
            }
        }
        for uid in decided {
            open.remove(uid);
        }
    }
    Ok(found)
}

/// The outcome a re-used model gets in the new run: the lending run's stored result, or an
/// error saying it is gone (never a silent gap in the run's accounting).
pub async fn lent_outcome(
    runs: &dyn RunStore,
    uid: &str,
    from: &Reused,
) -> Result<StoredOutcome, StoreError> {
    let results = runs.results(&from.run).await?;
    Ok(match results.into_iter().find(|(m, _)| m == uid) {
        Some((_, o @ StoredOutcome::Ok(_))) => o,
        _ => StoredOutcome::Error(format!(
            "the result re-used from run {} is no longer stored; push a commit to diff the model again",
            from.run
        )),
    })
}

#[cfg(test)]
mod tests;
