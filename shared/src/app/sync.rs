//! Manifest sync: one sync of a configuration's model metadata, and which configurations
//! a tick syncs.
//!
//! Reads: the configuration and its dbt Cloud key, the artifacts job's production
//! manifest (and catalog). Writes: the metadata store and the configuration's sync state.
//!
//! Due-ness: a configuration with a `sync_schedule` is due when the first cron time after
//! its last successful sync has passed. After downtime that is one sync, however many
//! cron times were missed (the sync moves "last success" to now). A failed sync does not
//! move it, so the next tick retries.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;

use crate::config::{CiConfig, ConfigId, CronSchedule, DbtAccountId, DbtJobId};
use crate::dbtcloud::DbtCloudConnector;
use crate::dbtcloud::{DbtCloudApi, DbtCloudError, Run, status as run_status};
use crate::metadata::parse::{self, ParseError};
use crate::metadata::{MetadataError, MetadataStore, StoredDigest, SyncState};
use crate::secrets::{Secrets, SecretsError};
use crate::store::{ConfigStore, StoreError};

/// How many of the artifacts job's newest runs are searched for a successful one.
const RUNS_SEARCHED: usize = 300;

/// The newest successful run of the artifacts job, looking back [`RUNS_SEARCHED`] runs.
pub async fn latest_successful_run(
    api: &dyn DbtCloudApi,
    account: DbtAccountId,
    job: DbtJobId,
) -> Result<Option<Run>, DbtCloudError> {
    let mut offset = 0;
    while offset < RUNS_SEARCHED {
        let page = api.runs(account, job, 100, offset).await?;
        if let Some(run) = page.iter().find(|r| r.status == run_status::SUCCESS) {
            return Ok(Some(run.clone()));
        }
        if page.len() < 100 {
            break;
        }
        offset += page.len();
    }
    Ok(None)
}

/// The newest run of the artifacts job built at commit `sha` (any status).
pub async fn run_for_commit(
    api: &dyn DbtCloudApi,
    account: DbtAccountId,
    job: DbtJobId,
    sha: &str,
) -> Result<Option<Run>, DbtCloudError> {
    let mut offset = 0;
    while offset < RUNS_SEARCHED {
        let page = api.runs(account, job, 100, offset).await?;
        if let Some(run) = page
            .iter()
            .find(|r| r.sha().is_some_and(|s| s.eq_ignore_ascii_case(sha)))
        {
            return Ok(Some(run.clone()));
        }
        if page.len() < 100 {
            break;
        }
        offset += page.len();
    }
    Ok(None)
}

/// An artifact of a run, `None` when the run has no such file (dbt Cloud answers 404).
pub async fn artifact_if_present(
    api: &dyn DbtCloudApi,
    account: DbtAccountId,
    run: u64,
    path: &str,
) -> Result<Option<Vec<u8>>, DbtCloudError> {
    match api.artifact(account, run, path, None).await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(DbtCloudError::Http { status: 404, .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// What a sync uses: each port, nothing more.
#[derive(Clone)]
pub struct SyncDeps {
    pub configs: Arc<dyn ConfigStore>,
    pub metadata: Arc<dyn MetadataStore>,
    pub secrets: Arc<dyn Secrets>,
    pub dbt: Arc<dyn DbtCloudConnector>,
}

/// Why a sync failed. The message is what gets recorded on the configuration.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("configuration {0} does not exist")]
    UnknownConfig(ConfigId),
    #[error("reading the configuration failed")]
    Config(#[source] StoreError),
    #[error("reading the dbt Cloud API key failed")]
    Secret(#[source] SecretsError),
    #[error("dbt Cloud failed")]
    DbtCloud(#[source] DbtCloudError),
    #[error("artifacts job {job} has no successful run yet")]
    NoRun { job: DbtJobId },
    /// A sync on push waits for the artifacts job's run of the pushed commit.
    #[error("artifacts job {job} has no finished run for commit {sha} yet")]
    PushRunPending { job: DbtJobId, sha: String },
    #[error("run {run} of artifacts job {job} for commit {sha} did not succeed")]
    PushRunFailed {
        job: DbtJobId,
        run: u64,
        sha: String,
    },
    #[error("run {run} of the artifacts job has no manifest.json")]
    NoManifest { run: u64 },
    #[error("the artifacts job's manifest cannot be read")]
    Parse(#[source] ParseError),
    #[error("storing metadata failed")]
    Store(#[source] MetadataError),
}

impl SyncError {
    pub fn is_retryable(&self) -> bool {
        match self {
            SyncError::Config(e) => e.is_retryable(),
            SyncError::Secret(e) => e.is_retryable(),
            SyncError::DbtCloud(e) => e.is_retryable(),
            SyncError::Store(e) => e.is_retryable(),
            // A run may appear or be fixed later; the schedule retries anyway.
            SyncError::NoRun { .. } | SyncError::NoManifest { .. } => true,
            // Redelivered (with the queue's delay) until the run is there, then in the
            // dead-letter queue; the schedule syncs the newest run anyway.
            SyncError::PushRunPending { .. } => true,
            SyncError::UnknownConfig(_) | SyncError::Parse(_) | SyncError::PushRunFailed { .. } => {
                false
            }
        }
    }

    /// The message with every cause, for the configuration's state and the CLI.
    pub fn chain(&self) -> String {
        crate::error_chain(self)
    }
}

/// What one sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncOutcome {
    pub config: String,
    pub run_id: u64,
    /// Nothing changed since the last sync: nothing but the state was written.
    pub unchanged: bool,
    pub added: Vec<String>,
    pub updated: Vec<String>,
    pub removed: Vec<String>,
    /// Models stored after the sync.
    pub models: usize,
    pub generated_at: Option<String>,
}

/// Whether a configuration's schedule is due at `now` (unix seconds), given its last
/// successful sync. Never synced: due. A bad expression (cannot be stored) is never due.
pub fn is_due(schedule: &CronSchedule, last_success: Option<u64>, now: u64) -> bool {
    let Some(last) = last_success else {
        return true;
    };
    let Ok(cron) = croner::Cron::new(schedule.as_str())
        .with_seconds_optional()
        .parse()
    else {
        return false;
    };
    let Some(after) = chrono::DateTime::<chrono::Utc>::from_timestamp(last as i64, 0) else {
        return false;
    };
    match cron.find_next_occurrence(&after, false) {
        Ok(next) => next.timestamp() <= now as i64,
        Err(_) => false,
    }
}

fn hash_hex(bytes: &[&[u8]]) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for b in bytes {
        h.update(&(b.len() as u64).to_le_bytes());
        h.update(b);
    }
    format!("{:032x}", h.digest128())
}

/// Syncs one configuration by id, recording the outcome in its state.
pub async fn sync_config(
    deps: &SyncDeps,
    id: &ConfigId,
    now: u64,
) -> Result<SyncOutcome, SyncError> {
    sync_config_at(deps, id, now, None).await
}

/// [`sync_config`] from the artifacts job's run of commit `sha` (a push to the default
/// branch) instead of its newest successful run. While that run is missing or unfinished
/// the error is [`SyncError::PushRunPending`] (retryable: the queue delivers the message
/// again later, up to its receive limit).
pub async fn sync_config_at(
    deps: &SyncDeps,
    id: &ConfigId,
    now: u64,
    sha: Option<&str>,
) -> Result<SyncOutcome, SyncError> {
    let config = deps
        .configs
        .get_config(id)
        .await
        .map_err(SyncError::Config)?
        .ok_or_else(|| SyncError::UnknownConfig(id.clone()))?;
    sync_at(deps, &config, now, sha).await
}

/// Syncs one configuration, recording the outcome in its state: on failure the error is
/// recorded and stored models stay as they were.
pub async fn sync(deps: &SyncDeps, config: &CiConfig, now: u64) -> Result<SyncOutcome, SyncError> {
    sync_at(deps, config, now, None).await
}

/// [`sync`] from the run of commit `sha` when given (see [`sync_config_at`]).
pub async fn sync_at(
    deps: &SyncDeps,
    config: &CiConfig,
    now: u64,
    sha: Option<&str>,
) -> Result<SyncOutcome, SyncError> {
    let id = &config.name;
    let mut state = deps
        .metadata
        .state(id)
        .await
        .map_err(SyncError::Store)?
        .unwrap_or_default();
    state.last_attempt_at = Some(now);
    let result = sync_inner(deps, config, &mut state, sha).await;
    match &result {
        Ok(outcome) => {
            state.last_success_at = Some(now);
            state.last_error = None;
            tracing::info!(config = %id, run_id = outcome.run_id, unchanged = outcome.unchanged,
                added = outcome.added.len(), updated = outcome.updated.len(),
                removed = outcome.removed.len(), "metadata synced");
        }
        Err(e) => {
            state.last_error = Some(e.chain());
            tracing::warn!(config = %id, error = %e.chain(), retryable = e.is_retryable(), "metadata sync failed");
        }
    }
    let recorded = deps.metadata.put_state(id, &state).await;
    match (result, recorded) {
        (Ok(o), Ok(())) => Ok(o),
        (Ok(_), Err(e)) => Err(SyncError::Store(e)),
        (Err(e), _) => Err(e),
    }
}

async fn sync_inner(
    deps: &SyncDeps,
    config: &CiConfig,
    state: &mut SyncState,
    sha: Option<&str>,
) -> Result<SyncOutcome, SyncError> {
    let id = &config.name;
    let dbt_settings = &config.dbt_cloud;
    let key = deps
        .secrets
        .get(&dbt_settings.api_key)
        .await
        .map_err(SyncError::Secret)?;
    let api = deps.dbt.connect(&dbt_settings.access_url, key);
    let account = dbt_settings.account_id;
    let job = dbt_settings.artifacts_job_id;
    let run = match sha {
        None => latest_successful_run(api.as_ref(), account, job)
            .await
            .map_err(SyncError::DbtCloud)?
            .ok_or(SyncError::NoRun { job })?,
        Some(sha) => {
            let pending = || SyncError::PushRunPending {
                job,
                sha: sha.to_owned(),
            };
            let run = run_for_commit(api.as_ref(), account, job, sha)
                .await
                .map_err(SyncError::DbtCloud)?
                .ok_or_else(pending)?;
            match run.status {
                run_status::SUCCESS => run,
                run_status::ERROR | run_status::CANCELLED => {
                    return Err(SyncError::PushRunFailed {
                        job,
                        run: run.id,
                        sha: sha.to_owned(),
                    });
                }
                _ => return Err(pending()),
            }
        }
    };
    let manifest = artifact_if_present(api.as_ref(), account, run.id, "manifest.json")
        .await
        .map_err(SyncError::DbtCloud)?
        .ok_or(SyncError::NoManifest { run: run.id })?;
    let catalog = artifact_if_present(api.as_ref(), account, run.id, "catalog.json")
        .await
        .map_err(SyncError::DbtCloud)?;
    let mut outcome = SyncOutcome {
        config: id.to_string(),
        run_id: run.id,
        ..SyncOutcome::default()
    };
    let bytes_hash = hash_hex(&[&manifest, catalog.as_deref().unwrap_or_default()]);
    if state.bytes_hash.as_deref() == Some(bytes_hash.as_str()) {
        outcome.unchanged = true;
        outcome.models = state.models;
        outcome.generated_at = state.generated_at.clone();
        state.run_id = Some(run.id);
        return Ok(outcome);
    }
    let parsed = parse::parse(&manifest, catalog.as_deref()).map_err(SyncError::Parse)?;
    drop(manifest);
    drop(catalog);
    let hashes: Vec<u64> = parsed.models.iter().map(|m| m.content_hash()).collect();
    let content_hash = {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for (m, hash) in parsed.models.iter().zip(&hashes) {
            h.update(m.unique_id.as_bytes());
            h.update(&hash.to_le_bytes());
        }
        format!("{:032x}", h.digest128())
    };
    outcome.generated_at = parsed.generated_at.clone();
    outcome.models = parsed.models.len();
    if state.content_hash.as_deref() == Some(content_hash.as_str()) {
        outcome.unchanged = true;
    } else {
        let stored = deps.metadata.digests(id).await.map_err(SyncError::Store)?;
        let mut changed = Vec::new();
        let mut seen = HashSet::with_capacity(parsed.models.len());
        for (m, hash) in parsed.models.into_iter().zip(hashes) {
            seen.insert(m.unique_id.clone());
            match stored.get(&m.unique_id) {
                Some(d) if d.hash == hash => {}
                Some(_) => {
                    outcome.updated.push(m.unique_id.clone());
                    changed.push(m);
                }
                None => {
                    outcome.added.push(m.unique_id.clone());
                    changed.push(m);
                }
            }
        }
        let gone: Vec<(String, StoredDigest)> = stored
            .iter()
            .filter(|(uid, _)| !seen.contains(*uid))
            .map(|(uid, d)| (uid.clone(), d.clone()))
            .collect();
        let old: HashMap<String, StoredDigest> = stored;
        deps.metadata
            .put_models(id, &changed, &old)
            .await
            .map_err(SyncError::Store)?;
        deps.metadata
            .remove_models(id, &gone)
            .await
            .map_err(SyncError::Store)?;
        outcome.removed = gone.into_iter().map(|(uid, _)| uid).collect();
        outcome.removed.sort();
        outcome.unchanged =
            outcome.added.is_empty() && outcome.updated.is_empty() && outcome.removed.is_empty();
    }
    state.bytes_hash = Some(bytes_hash);
    state.content_hash = Some(content_hash);
    state.generated_at = parsed.generated_at;
    state.run_id = Some(run.id);
    state.models = outcome.models;
    Ok(outcome)
}

/// What a scheduled tick did.
#[derive(Debug, Default)]
pub struct TickOutcome {
    /// Configurations synced, with what each sync did or why it failed.
    pub synced: Vec<(ConfigId, Result<SyncOutcome, SyncError>)>,
    /// Configurations with a schedule that was not due.
    pub not_due: Vec<ConfigId>,
}

/// The scheduled tick: syncs, one after another (one manifest in memory at a time), every
/// configuration whose schedule is due. One configuration failing does not stop the others.
pub async fn tick(deps: &SyncDeps, now: u64) -> Result<TickOutcome, SyncError> {
    let mut configs = deps
        .configs
        .list_configs()
        .await
        .map_err(SyncError::Config)?;
    configs.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = TickOutcome::default();
    for config in configs {
        let Some(schedule) = &config.sync_schedule else {
            continue;
        };
        let last = match deps.metadata.state(&config.name).await {
            Ok(s) => s.and_then(|s| s.last_success_at),
            Err(e) => {
                out.synced
                    .push((config.name.clone(), Err(SyncError::Store(e))));
                continue;
            }
        };
        if !is_due(schedule, last, now) {
            out.not_due.push(config.name.clone());
            continue;
        }
        let result = sync(deps, &config, now).await;
        out.synced.push((config.name.clone(), result));
    }
    Ok(out)
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;
    use crate::config::{ConfigFile, SecretSource};
    use crate::dbtcloud::memory::MemoryDbtCloud;
    use crate::metadata::embedded::EmbeddedMetadata;
    use crate::secrets::local::LocalSecrets;
    use crate::store::embedded::EmbeddedStore;

    const MANIFEST: &str = r#"{"metadata": {"generated_at": "2026-11-27T09:00:00Z"}, "nodes": {
        "model.shop.orders": {"unique_id": "model.shop.orders", "name": "orders", "resource_type": "model",
            "description": "Orders", "config": {"materialized": "table", "meta": {"owner": "ana"}}},
        "seed.shop.countries": {"unique_id": "seed.shop.countries", "name": "countries", "resource_type": "seed"}
    }}"#;

    async fn in_process() -> (SyncDeps, MemoryDbtCloud, CiConfig) {
        let text = crate::config::tests::EXAMPLE
            .replace(
                "{ env = \"PRDIFF_WAREHOUSE_PASSWORD\" }",
                "{ secret = \"wh\" }",
            )
            .replace(
                "{ file = \"prdiff-app.private-key.pem\" }",
                "{ secret = \"app\" }",
            )
            .replace("{ env = \"DBT_CLOUD_API_KEY\" }", "{ secret = \"key\" }");
        let file = ConfigFile::parse(&text, &[]).unwrap();
        let config = file
            .ci_configs
            .into_iter()
            .next()
            .unwrap()
            .map_secrets(|_, s| match s {
                SecretSource::Stored { secret } => Ok(secret),
                other => Err(format!("{other:?}")),
            })
            .unwrap();
        let configs = EmbeddedStore::in_memory();
        configs
            .put_all(&[], std::slice::from_ref(&config))
            .await
            .unwrap();
        let secrets = LocalSecrets::in_memory();
        secrets.insert(&config.dbt_cloud.api_key, "key");
        let dbt = MemoryDbtCloud::new();
        let deps = SyncDeps {
            configs: Arc::new(configs),
            metadata: Arc::new(EmbeddedMetadata::in_memory()),
            secrets: Arc::new(secrets),
            dbt: Arc::new(dbt.clone()),
        };
        (deps, dbt, config)
    }

    fn put_run(dbt: &MemoryDbtCloud, config: &CiConfig, id: u64, manifest: &str) {
        dbt.put_run(
            serde_json::from_value(serde_json::json!({
                "id": id, "status": run_status::SUCCESS,
                "job_definition_id": config.dbt_cloud.artifacts_job_id.get()
            }))
            .unwrap(),
        );
        dbt.put_artifact(id, "manifest.json", manifest.as_bytes().to_vec());
    }

    #[tokio::test]
    async fn the_embedded_store_adds_updates_and_removes_through_the_in_process_dbt_cloud() {
        let (deps, dbt, config) = in_process().await;
        let err = sync(&deps, &config, 100).await.unwrap_err();
        assert!(matches!(err, SyncError::NoRun { .. }), "{err}");
        let state = deps.metadata.state(&config.name).await.unwrap().unwrap();
        assert!(state.last_error.unwrap().contains("no successful run"));

        put_run(&dbt, &config, 1, MANIFEST);
        let first = sync(&deps, &config, 200).await.unwrap();
        assert_eq!(first.added, ["model.shop.orders", "seed.shop.countries"]);
        let again = sync(&deps, &config, 300).await.unwrap();
        assert!(again.unchanged);

        let next = MANIFEST
            .replace("\"Orders\"", "\"All orders\"")
            .replace("seed.shop.countries", "seed.shop.regions")
            .replace("\"countries\"", "\"regions\"");
        put_run(&dbt, &config, 2, &next);
        let out = sync(&deps, &config, 400).await.unwrap();
        assert_eq!(out.added, ["seed.shop.regions"]);
        assert_eq!(out.updated, ["model.shop.orders"]);
        assert_eq!(out.removed, ["seed.shop.countries"]);
        let meta = crate::metadata::report_metadata(
            deps.metadata.as_ref(),
            &config.name,
            &["orders".to_owned(), "regions".to_owned()],
        )
        .await;
        assert_eq!(meta["orders"].owner.as_deref(), Some("ana"));
        assert_eq!(meta["orders"].description.as_deref(), Some("All orders"));
        assert!(!meta.contains_key("regions"), "no owner, no description");
    }

    fn at(s: &str) -> u64 {
        chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp() as u64
    }

    #[test]
    fn an_hourly_schedule_is_due_only_once_its_next_hour_has_passed() {
        let hourly = CronSchedule::parse("0 * * * *").unwrap();
        let last = Some(at("2026-11-27T10:00:30Z"));
        assert!(!is_due(&hourly, last, at("2026-11-27T10:45:00Z")));
        assert!(!is_due(&hourly, last, at("2026-11-27T10:59:59Z")));
        assert!(is_due(&hourly, last, at("2026-11-27T11:00:00Z")));
        assert!(is_due(&hourly, None, at("2026-11-27T10:45:00Z")));
    }

    #[test]
    fn after_downtime_a_schedule_catches_up_once() {
        let hourly = CronSchedule::parse("0 * * * *").unwrap();
        let now = at("2026-11-27T15:07:00Z");
        assert!(is_due(&hourly, Some(at("2026-11-27T10:00:00Z")), now));
        // The catch-up sync moved "last success" to now: the missed hours are not replayed.
        assert!(!is_due(&hourly, Some(now), at("2026-11-27T15:22:00Z")));
        assert!(is_due(&hourly, Some(now), at("2026-11-27T16:00:00Z")));
    }
}
