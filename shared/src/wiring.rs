//! Wiring: the one place that turns a backend into adapters and adapters into each use
//! case's dependencies. Every binary follows the same line: settings → [`Backend`] →
//! [`Adapters`] → the use case's `Deps` (from the `Adapters` method named after it).
//!
//! | backend | stores and metadata | secrets | queues |
//! |---|---|---|---|
//! | [`Backend::Aws`] | one DynamoDB table | Secrets Manager | SQS, by URL |
//! | [`Backend::Embedded`] | one SQLite file | environment + a secrets directory | named queues in the same file |
//! | [`Backend::Memory`] | SQLite in memory | in memory | in-process delay queues |
//!
//! Git hosts and dbt Cloud are reached over HTTP on every backend. Nothing here calls an
//! adapter: building a client performs no AWS action.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::app::{diff_run, intake, poll, publish, sync};
use crate::dbtcloud::DbtCloudConnector;
use crate::dbtcloud::http::HttpDbtCloud;
use crate::githost::GitHosts;
use crate::githost::http::{HttpGitHosts, HttpSettings};
use crate::metadata::MetadataStore;
use crate::queue::{DeadLetters, Queue};
use crate::secrets::Secrets;
use crate::store::{ConfigStore, RunStore};

/// The names of the queues inside an embedded database file.
pub const POLL_QUEUE: &str = "poll";
pub const DIFF_QUEUE: &str = "diff";
pub const SYNC_QUEUE: &str = "sync";

/// How long the Lambdas reuse a secret read from Secrets Manager.
pub const LAMBDA_SECRET_TTL: Duration = Duration::from_secs(300);

/// Where a binary keeps its state.
pub enum Backend {
    /// The deployed stack: DynamoDB, SQS and Secrets Manager.
    #[cfg(feature = "aws")]
    Aws(Box<AwsBackend>),
    /// One SQLite file (store, metadata and queues) and a secrets directory, as
    /// `prdiff serve` uses.
    #[cfg(feature = "sqlite")]
    Embedded { db: PathBuf, secrets_dir: PathBuf },
    /// Everything in memory, for tests.
    #[cfg(feature = "sqlite")]
    Memory,
}

/// The deployed stack's resources. Queue URLs a binary does not use stay `None`.
#[cfg(feature = "aws")]
pub struct AwsBackend {
    /// Region, credentials and endpoint (`AWS_ENDPOINT_URL` included), loaded the usual way.
    pub config: aws_config::SdkConfig,
    pub table: String,
    pub poll_queue_url: Option<String>,
    pub diff_queue_url: Option<String>,
    pub sync_queue_url: Option<String>,
    /// The dead-letter queues, with the names their causes use.
    pub dead_letter_queues: Vec<(String, String)>,
    /// How long a secret read from Secrets Manager is reused.
    pub secret_ttl: Duration,
}

#[cfg(feature = "aws")]
impl AwsBackend {
    /// The table, AWS settings loaded from the environment, no queues, secrets re-read on
    /// every use.
    pub async fn load(table: impl Into<String>) -> Self {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Self {
            config,
            table: table.into(),
            poll_queue_url: None,
            diff_queue_url: None,
            sync_queue_url: None,
            dead_letter_queues: Vec::new(),
            secret_ttl: Duration::ZERO,
        }
    }
}

#[cfg(feature = "aws")]
impl Backend {
    /// The webhook Lambda's backend: the table, the poll and sync queues.
    pub async fn webhook(s: &crate::settings::WebhookSettings) -> Self {
        let mut aws = AwsBackend::load(&s.table).await;
        aws.poll_queue_url = Some(s.poll_queue_url.clone());
        aws.sync_queue_url = Some(s.sync_queue_url.clone());
        aws.secret_ttl = LAMBDA_SECRET_TTL;
        Self::Aws(Box::new(aws))
    }

    /// The poller Lambda's backend: the table, the poll and diff queues.
    pub async fn poller(s: &crate::settings::PollerSettings) -> Self {
        let mut aws = AwsBackend::load(&s.table).await;
        aws.poll_queue_url = Some(s.poll_queue_url.clone());
        aws.diff_queue_url = Some(s.diff_queue_url.clone());
        aws.secret_ttl = LAMBDA_SECRET_TTL;
        Self::Aws(Box::new(aws))
    }

    /// The diff-runner Lambda's backend: the table only.
    pub async fn diff(s: &crate::settings::DiffSettings) -> Self {
        let mut aws = AwsBackend::load(&s.table).await;
        aws.secret_ttl = LAMBDA_SECRET_TTL;
        Self::Aws(Box::new(aws))
    }

    /// The sync Lambda's backend: the table and the dead-letter queues it watches.
    pub async fn sync(s: &crate::settings::SyncSettings) -> Self {
        let mut aws = AwsBackend::load(&s.table).await;
        aws.dead_letter_queues = s
            .dead_letter_queues
            .iter()
            .map(|(name, url)| ((*name).to_owned(), url.clone()))
            .collect();
        aws.secret_ttl = LAMBDA_SECRET_TTL;
        Self::Aws(Box::new(aws))
    }
}

/// Why adapters could not be built, or a use case's dependencies are not all there.
#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    #[error("cannot open {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error("the {0} queue is not configured for this binary")]
    MissingQueue(&'static str),
}

/// The queues a backend provides; a binary that does not use one leaves it `None`.
#[derive(Clone, Default)]
pub struct Queues {
    pub poll: Option<Arc<dyn Queue>>,
    pub diff: Option<Arc<dyn Queue>>,
    pub sync: Option<Arc<dyn Queue>>,
    pub dead_letters: Vec<Arc<dyn DeadLetters>>,
}

/// Every adapter a use case may need, built once per process. Fields are public so a
/// test can swap one (a fake git host, say) before handing out dependencies.
#[derive(Clone)]
pub struct Adapters {
    pub configs: Arc<dyn ConfigStore>,
    pub runs: Arc<dyn RunStore>,
    pub metadata: Arc<dyn MetadataStore>,
    pub secrets: Arc<dyn Secrets>,
    pub hosts: Arc<dyn GitHosts>,
    pub dbt: Arc<dyn DbtCloudConnector>,
    pub queues: Queues,
    /// The embedded backend's queues themselves (consumers lease from them).
    #[cfg(feature = "sqlite")]
    pub embedded_queues: Option<crate::queue::embedded::EmbeddedQueues>,
}

impl Backend {
    /// Builds the adapters. The embedded backend opens (creating) its database file.
    pub fn adapters(&self) -> Result<Adapters, WiringError> {
        match self {
            #[cfg(feature = "aws")]
            Self::Aws(aws) => Ok(aws_adapters(aws)),
            #[cfg(feature = "sqlite")]
            Self::Embedded { db, secrets_dir } => embedded_adapters(db, secrets_dir),
            #[cfg(feature = "sqlite")]
            Self::Memory => Ok(memory_adapters()),
        }
    }
}

impl Adapters {
    /// Adapters over the given stores and secrets, with HTTP git hosts and dbt Cloud.
    pub fn with(
        configs: Arc<dyn ConfigStore>,
        runs: Arc<dyn RunStore>,
        metadata: Arc<dyn MetadataStore>,
        secrets: Arc<dyn Secrets>,
        queues: Queues,
    ) -> Self {
        Self {
            configs,
            runs,
            metadata,
            hosts: Arc::new(HttpGitHosts::new(secrets.clone(), HttpSettings::default())),
            secrets,
            dbt: Arc::new(HttpDbtCloud::default()),
            queues,
            #[cfg(feature = "sqlite")]
            embedded_queues: None,
        }
    }

    fn queue(
        q: &Option<Arc<dyn Queue>>,
        name: &'static str,
    ) -> Result<Arc<dyn Queue>, WiringError> {
        q.clone().ok_or(WiringError::MissingQueue(name))
    }

    /// The webhook intake's dependencies (needs the poll and sync queues).
    pub fn intake(&self, settings: intake::Settings) -> Result<intake::Deps, WiringError> {
        Ok(intake::Deps {
            configs: self.configs.clone(),
            runs: self.runs.clone(),
            secrets: self.secrets.clone(),
            hosts: self.hosts.clone(),
            poll_queue: Self::queue(&self.queues.poll, POLL_QUEUE)?,
            sync_queue: Self::queue(&self.queues.sync, SYNC_QUEUE)?,
            settings,
        })
    }

    /// The poller's dependencies (needs the poll and diff queues).
    pub fn poll(&self, settings: poll::Settings) -> Result<poll::Deps, WiringError> {
        Ok(poll::Deps {
            configs: self.configs.clone(),
            runs: self.runs.clone(),
            secrets: self.secrets.clone(),
            hosts: self.hosts.clone(),
            dbt: self.dbt.clone(),
            poll_queue: Self::queue(&self.queues.poll, POLL_QUEUE)?,
            diff_queue: Self::queue(&self.queues.diff, DIFF_QUEUE)?,
            metadata: Some(self.metadata.clone()),
            settings,
        })
    }

    /// The diff runner's dependencies.
    pub fn diff_run(&self, settings: diff_run::Settings) -> diff_run::Deps {
        diff_run::Deps {
            configs: self.configs.clone(),
            runs: self.runs.clone(),
            secrets: self.secrets.clone(),
            hosts: self.hosts.clone(),
            metadata: Some(self.metadata.clone()),
            settings,
        }
    }

    /// The manifest sync's dependencies.
    pub fn sync(&self) -> sync::SyncDeps {
        sync::SyncDeps {
            configs: self.configs.clone(),
            metadata: self.metadata.clone(),
            secrets: self.secrets.clone(),
            dbt: self.dbt.clone(),
        }
    }

    /// What ends overdue and dead-lettered runs: runs past `deadline` are ended.
    pub fn lifecycle(&self, deadline: Duration) -> publish::Lifecycle {
        publish::Lifecycle {
            configs: self.configs.clone(),
            runs: self.runs.clone(),
            hosts: self.hosts.clone(),
            dead_letters: self.queues.dead_letters.clone(),
            deadline,
        }
    }
}

#[cfg(feature = "aws")]
fn aws_adapters(aws: &AwsBackend) -> Adapters {
    use crate::metadata::dynamodb::DynamoMetadata;
    use crate::queue::sqs::{SqsDeadLetters, SqsQueue};
    use crate::secrets::aws::SecretsManager;
    use crate::store::dynamodb::DynamoStore;
    let dynamo = aws_sdk_dynamodb::Client::new(&aws.config);
    let sqs = aws_sdk_sqs::Client::new(&aws.config);
    let store = Arc::new(DynamoStore::new(dynamo.clone(), aws.table.clone()));
    let sqs_queue = |url: &Option<String>| {
        url.as_ref()
            .map(|u| Arc::new(SqsQueue::new(sqs.clone(), u.clone())) as Arc<dyn Queue>)
    };
    let queues = Queues {
        poll: sqs_queue(&aws.poll_queue_url),
        diff: sqs_queue(&aws.diff_queue_url),
        sync: sqs_queue(&aws.sync_queue_url),
        dead_letters: aws
            .dead_letter_queues
            .iter()
            .map(|(name, url)| {
                Arc::new(SqsDeadLetters {
                    name: name.clone(),
                    queue: SqsQueue::new(sqs.clone(), url.clone()),
                }) as Arc<dyn DeadLetters>
            })
            .collect(),
    };
    Adapters::with(
        store.clone(),
        store,
        Arc::new(DynamoMetadata::new(dynamo, aws.table.clone())),
        Arc::new(SecretsManager::new(
            aws_sdk_secretsmanager::Client::new(&aws.config),
            aws.secret_ttl,
        )),
        queues,
    )
}

#[cfg(feature = "sqlite")]
fn embedded_adapters(
    db: &std::path::Path,
    secrets_dir: &std::path::Path,
) -> Result<Adapters, WiringError> {
    use crate::metadata::embedded::EmbeddedMetadata;
    use crate::queue::embedded::EmbeddedQueues;
    use crate::secrets::local::LocalSecrets;
    use crate::store::embedded::EmbeddedStore;
    let open_err = |e: &dyn std::error::Error| WiringError::Open {
        path: db.to_owned(),
        message: crate::error_chain(e),
    };
    let store = Arc::new(EmbeddedStore::open(db).map_err(|e| open_err(&e))?);
    let metadata = Arc::new(EmbeddedMetadata::open(db).map_err(|e| open_err(&e))?);
    let embedded = EmbeddedQueues::open(db).map_err(|e| open_err(&e))?;
    let named = |name| Some(Arc::new(embedded.queue(name)) as Arc<dyn Queue>);
    let queues = Queues {
        poll: named(POLL_QUEUE),
        diff: named(DIFF_QUEUE),
        sync: named(SYNC_QUEUE),
        dead_letters: Vec::new(),
    };
    let mut adapters = Adapters::with(
        store.clone(),
        store,
        metadata,
        Arc::new(LocalSecrets::with_env_and_dir(Some(secrets_dir.to_owned()))),
        queues,
    );
    adapters.embedded_queues = Some(embedded);
    Ok(adapters)
}

#[cfg(feature = "sqlite")]
fn memory_adapters() -> Adapters {
    use crate::metadata::embedded::EmbeddedMetadata;
    use crate::queue::memory::MemoryQueue;
    use crate::secrets::local::LocalSecrets;
    use crate::store::embedded::EmbeddedStore;
    let store = Arc::new(EmbeddedStore::in_memory());
    let queue = || Some(Arc::new(MemoryQueue::new()) as Arc<dyn Queue>);
    Adapters::with(
        store.clone(),
        store,
        Arc::new(EmbeddedMetadata::in_memory()),
        Arc::new(LocalSecrets::in_memory()),
        Queues {
            poll: queue(),
            diff: queue(),
            sync: queue(),
            dead_letters: Vec::new(),
        },
    )
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;
    use crate::config::SecretName;

    #[tokio::test]
    async fn the_memory_backend_hands_every_use_case_its_queues() {
        let a = Backend::Memory.adapters().unwrap();
        let secret = SecretName::parse("prdiff/webhook").unwrap();
        assert!(a.intake(intake::Settings::new(secret)).is_ok());
        assert!(a.poll(poll::Settings::default()).is_ok());
        assert!(a.diff_run(diff_run::Settings::default()).metadata.is_some());
        assert!(a.lifecycle(Duration::from_secs(1)).dead_letters.is_empty());
    }

    #[test]
    fn a_use_case_whose_queue_is_missing_is_refused_by_name() {
        let mut a = Backend::Memory.adapters().unwrap();
        a.queues.diff = None;
        let err = a.poll(poll::Settings::default()).err().unwrap();
        assert_eq!(
            err.to_string(),
            "the diff queue is not configured for this binary"
        );
    }

    #[test]
    fn the_embedded_backend_shares_one_file_between_its_adapters() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("prdiff.db");
        let backend = Backend::Embedded {
            db: db.clone(),
            secrets_dir: dir.path().join("secrets"),
        };
        let a = backend.adapters().unwrap();
        assert!(db.exists());
        let queues = a.embedded_queues.as_ref().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let msg = crate::messages::Message::Sync(crate::messages::SyncMessage {
                config_id: crate::config::ConfigId::parse("shop").unwrap(),
                reason: crate::messages::SyncReason::Schedule,
            });
            a.queues
                .poll
                .as_ref()
                .unwrap()
                .send(&msg, Duration::ZERO)
                .await
        })
        .unwrap();
        assert_eq!(queues.queue(POLL_QUEUE).len().unwrap(), 1);
        assert_eq!(queues.queue(DIFF_QUEUE).len().unwrap(), 0);
    }
}
