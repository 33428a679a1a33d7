//! An in-process dbt Cloud for `prdiff serve --offline`, tests and benchmarks: answers from
//! the accounts and jobs put in it, whatever the access URL and key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use secrecy::SecretString;

use super::{Account, DbtCloudApi, DbtCloudError, Job, Run};
use crate::config::{DbtAccountId, DbtJobId};
use crate::dbtcloud::DbtCloudConnector;

#[derive(Default)]
struct State {
    accounts: Vec<Account>,
    jobs: HashMap<u64, Vec<Job>>,
    /// Runs by id (any account).
    runs: std::collections::BTreeMap<u64, Run>,
    /// Artifacts by (run, path).
    artifacts: HashMap<(u64, String), Vec<u8>>,
}

/// dbt Cloud held in memory. Cheap to clone (shared state).
#[derive(Clone, Default)]
pub struct MemoryDbtCloud {
    state: Arc<Mutex<State>>,
}

impl MemoryDbtCloud {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an account with its jobs (`(id, name)` pairs).
    pub fn add_account(&self, id: u64, name: &str, jobs: &[(u64, &str)]) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.accounts.push(Account {
            id,
            name: name.to_owned(),
        });
        s.jobs.insert(
            id,
            jobs.iter()
                .map(|(j, n)| Job {
                    id: *j,
                    name: (*n).to_owned(),
                    project_id: None,
                    environment_id: None,
                })
                .collect(),
        );
    }
}

impl MemoryDbtCloud {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds or replaces a run (by id): tests move a run along by putting it again.
    pub fn put_run(&self, run: Run) {
        self.lock().runs.insert(run.id, run);
    }

    /// Stores an artifact of a run.
    pub fn put_artifact(&self, run: u64, path: &str, bytes: Vec<u8>) {
        self.lock().artifacts.insert((run, path.to_owned()), bytes);
    }
}

fn not_found(what: String) -> DbtCloudError {
    DbtCloudError::Http {
        status: 404,
        message: format!("{what} not found"),
        what,
    }
}

#[async_trait]
impl DbtCloudApi for MemoryDbtCloud {
    async fn accounts(&self) -> Result<Vec<Account>, DbtCloudError> {
        Ok(self
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .accounts
            .clone())
    }

    async fn jobs(&self, account: DbtAccountId) -> Result<Vec<Job>, DbtCloudError> {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.jobs
            .get(&account.get())
            .cloned()
            .ok_or(DbtCloudError::Http {
                status: 404,
                what: "jobs".into(),
                message: format!("account {account} not found"),
            })
    }

    async fn runs(
        &self,
        _account: DbtAccountId,
        job: DbtJobId,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<Run>, DbtCloudError> {
        let s = self.lock();
        Ok(s.runs
            .values()
            .rev()
            .filter(|r| r.job_definition_id == Some(job.get()))
            .skip(offset)
            .take(limit.min(100))
            .cloned()
            .collect())
    }

    async fn run(&self, account: DbtAccountId, run: u64) -> Result<Run, DbtCloudError> {
        self.lock()
            .runs
            .get(&run)
            .cloned()
            .ok_or_else(|| not_found(format!("run {run} in account {account}")))
    }

    async fn artifact(
        &self,
        account: DbtAccountId,
        run: u64,
        path: &str,
        _step: Option<u32>,
    ) -> Result<Vec<u8>, DbtCloudError> {
        self.lock()
            .artifacts
            .get(&(run, path.to_owned()))
            .cloned()
            .ok_or_else(|| not_found(format!("artifact {path} of run {run} in account {account}")))
    }
}

impl DbtCloudConnector for MemoryDbtCloud {
    fn connect(&self, _access_url: &url::Url, _key: SecretString) -> Box<dyn DbtCloudApi> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::apply::apply;
    use crate::secrets::local::LocalSecrets;
    use crate::store::ConfigStore;
    use crate::store::embedded::EmbeddedStore;

    #[tokio::test]
    async fn apply_checks_jobs_against_the_in_process_dbt_cloud() {
        let dbt = MemoryDbtCloud::new();
        dbt.add_account(1, "Jaffle Shop", &[(10, "prod"), (11, "ci")]);
        let store = EmbeddedStore::in_memory();
        let secrets = LocalSecrets::in_memory();
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
        secrets.insert(&crate::config::SecretName::parse("key").unwrap(), "dbtc");
        let dir = std::env::temp_dir();
        apply(&text, &dir, &store, &secrets, &dbt, true)
            .await
            .unwrap();
        assert_eq!(store.list_configs().await.unwrap().len(), 1);

        let bad = text
            .replace("pr_job_id = 11", "pr_job_id = 12")
            .replace("analytics-main", "other");
        let err = apply(&bad, &dir, &store, &secrets, &dbt, true)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("10 (prod), 11 (ci)"), "{err}");
        assert_eq!(store.list_configs().await.unwrap().len(), 1);
    }
}
