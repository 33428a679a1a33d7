//! Configuration apply and check: `prdiff config apply` and `check` as library functions,
//! so the CLI stays thin and the tests drive the same code against moto, the embedded
//! store and a fake dbt Cloud.
//!
//! Reads: the TOML file, secret values (env/file), dbt Cloud (accounts, jobs), the
//! warehouse (check). Writes: secrets, data sources and configurations.
//!
//! apply: parse and validate every field → read secret values (env/file) → confirm the
//! dbt Cloud account and jobs with the key → only then write the secrets and, in one
//! transaction, the data sources and configurations. Any failed check writes nothing.

use std::path::Path;
use std::time::Duration;

use secrecy::SecretString;

use crate::config::{
    CiConfig, ConfigError, ConfigFile, ConfigId, DataSource, DataSourceId, FieldError, SecretName,
    SecretRole, SecretSource,
};
use crate::dbtcloud::{DbtCloudConnector, DbtCloudError};
use crate::secrets::{Secrets, SecretsError};
use crate::store::{ConfigStore, StoreError};
use crate::warehouse::{self, ConnectOptions, PrivilegeScope};

/// What apply wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    pub data_sources: Vec<DataSourceId>,
    pub configs: Vec<ConfigId>,
    /// Secrets written to the secret store (names only).
    pub secrets_written: Vec<SecretName>,
}

/// Why apply or check stopped.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Values that are well-formed but wrong: unset variables, unknown accounts or jobs.
    #[error("invalid configuration: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    #[error("dbt Cloud could not be asked about configuration {config}")]
    DbtCloud {
        config: ConfigId,
        #[source]
        source: DbtCloudError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
}

impl ApplyError {
    /// Usage errors (the file must change) versus failures worth retrying.
    pub fn is_retryable(&self) -> bool {
        match self {
            ApplyError::Config(_) | ApplyError::Invalid(_) => false,
            ApplyError::DbtCloud { source, .. } => source.is_retryable(),
            ApplyError::Store(e) => e.is_retryable(),
            ApplyError::Secrets(e) => e.is_retryable(),
        }
    }

    /// True when the operator's input is at fault (exit code 2).
    pub fn is_usage(&self) -> bool {
        matches!(self, ApplyError::Config(_) | ApplyError::Invalid(_))
    }
}

/// The name a configuration's secret is stored under.
pub fn config_secret_name(config: &ConfigId, role: SecretRole) -> SecretName {
    SecretName::parse(format!("prdiff/config/{config}/{}", role.suffix()))
        .expect("config ids make valid secret names")
}

/// The name a data source's secret is stored under.
pub fn data_source_secret_name(id: &DataSourceId) -> SecretName {
    SecretName::parse(format!("prdiff/data-source/{id}/warehouse"))
        .expect("data source ids make valid secret names")
}

/// A secret as apply will hold it: a value to write, or a name already stored.
enum Resolved {
    Value(SecretName, SecretString),
    Stored(SecretName),
}

impl Resolved {
    fn name(&self) -> &SecretName {
        match self {
            Resolved::Value(n, _) | Resolved::Stored(n) => n,
        }
    }
}

fn resolve(
    source: SecretSource,
    target: SecretName,
    field: String,
    base_dir: &Path,
    problems: &mut Vec<FieldError>,
) -> Resolved {
    let mut fail = |problem: String| {
        problems.push(FieldError {
            field: field.clone(),
            problem,
        });
        Resolved::Stored(target.clone())
    };
    match source {
        SecretSource::Stored { secret } => Resolved::Stored(secret),
        SecretSource::Env { env } => match std::env::var(&env) {
            Ok(v) if !v.is_empty() => Resolved::Value(target, SecretString::from(v)),
            _ => fail(format!("environment variable {env} is not set")),
        },
        SecretSource::File { file } => {
            let path = base_dir.join(&file);
            match std::fs::read_to_string(&path) {
                Ok(v) if !v.trim().is_empty() => Resolved::Value(
                    target,
                    SecretString::from(v.trim_end_matches(['\r', '\n']).to_owned()),
                ),
                Ok(_) => fail(format!("file {} is empty", path.display())),
                Err(e) => fail(format!("cannot read {}: {e}", path.display())),
            }
        }
    }
}

/// Applies a configuration file. `base_dir` resolves relative `file = ...` secret paths.
pub async fn apply(
    text: &str,
    base_dir: &Path,
    store: &dyn ConfigStore,
    secrets: &dyn Secrets,
    dbt: &dyn DbtCloudConnector,
    check_dbt_cloud: bool,
) -> Result<ApplyReport, ApplyError> {
    let known: Vec<DataSourceId> = store
        .list_data_sources()
        .await?
        .into_iter()
        .map(|d| d.id)
        .collect();
    let file = ConfigFile::parse(text, &known)?;
    let mut problems = Vec::new();
    let mut to_write: Vec<(SecretName, SecretString)> = Vec::new();
    let keep = |r: Resolved, to_write: &mut Vec<(SecretName, SecretString)>| {
        let name = r.name().clone();
        if let Resolved::Value(n, v) = r {
            to_write.push((n, v));
        }
        name
    };

    let mut sources: Vec<DataSource> = Vec::new();
    for ds in file.data_sources {
        let id = ds.id.clone();
        if !crate::warehouse::has_driver(ds.kind.as_str()) {
            problems.push(FieldError {
                field: format!("data_source \"{id}\".kind"),
                problem: format!(
                    "this build of prdiff has no driver for {} (builds with one: {}); a run would fail every model",
                    ds.kind.as_str(),
                    crate::warehouse::DRIVERS.join(", ")
                ),
            });
        }
        let stored = ds
            .map_secrets(|_, s| {
                let r = resolve(
                    s,
                    data_source_secret_name(&id),
                    format!("data_source \"{id}\".secret"),
                    base_dir,
                    &mut problems,
                );
                Ok::<_, std::convert::Infallible>(keep(r, &mut to_write))
            })
            .expect("infallible");
        if stored.secret.is_none() && stored.kind == crate::config::DataSourceKind::Snowflake {
            problems.push(FieldError {
                field: format!("data_source \"{id}\".secret"),
                problem:
                    "a snowflake data source needs a secret (the password or a PEM private key)"
                        .into(),
            });
        }
        if stored.secret.is_none() && stored.kind == crate::config::DataSourceKind::Databricks {
            problems.push(FieldError {
                field: format!("data_source \"{id}\".secret"),
                problem: "a databricks data source needs a secret (a personal access token, or the OAuth client secret with `client_id`)".into(),
            });
        }
        for problem in crate::warehouse::source::data_source_problems(&stored) {
            problems.push(FieldError {
                field: format!("data_source \"{id}\""),
                problem,
            });
        }
        sources.push(stored);
    }

    let mut configs: Vec<CiConfig> = Vec::new();
    let mut dbt_keys: Vec<Option<SecretString>> = Vec::new();
    for c in file.ci_configs {
        let name = c.name.clone();
        let mut dbt_key = None;
        let stored = c
            .map_secrets(|role, s| {
                let field = match role {
                    SecretRole::DbtApiKey => "dbt_cloud.api_key",
                    SecretRole::GitToken => "git_auth.token",
                    SecretRole::GithubAppKey => "git_auth.private_key",
                    SecretRole::Warehouse => "secret",
                };
                let r = resolve(
                    s,
                    config_secret_name(&name, role),
                    format!("ci_config \"{name}\".{field}"),
                    base_dir,
                    &mut problems,
                );
                if role == SecretRole::DbtApiKey
                    && let Resolved::Value(_, v) = &r
                {
                    dbt_key = Some(v.clone());
                }
                // A GitHub App key that does not parse would fail every delivery later.
                if role == SecretRole::GithubAppKey
                    && let Resolved::Value(_, v) = &r
                    && let Err(e) = jsonwebtoken::EncodingKey::from_rsa_pem(
                        secrecy::ExposeSecret::expose_secret(v).as_bytes(),
                    )
                {
                    problems.push(FieldError {
                        field: format!("ci_config \"{name}\".git_auth.private_key"),
                        problem: format!("not an RSA private key in PEM form: {e}"),
                    });
                }
                Ok::<_, std::convert::Infallible>(keep(r, &mut to_write))
            })
            .expect("infallible");
        configs.push(stored);
        dbt_keys.push(dbt_key);
    }
    if !problems.is_empty() {
        return Err(ApplyError::Invalid(problems));
    }

    if check_dbt_cloud {
        for (config, key) in configs.iter().zip(dbt_keys) {
            let key = match key {
                Some(k) => k,
                None => secrets.get(&config.dbt_cloud.api_key).await?,
            };
            problems.extend(check_dbt_cloud_ids(config, key, dbt).await?);
        }
        if !problems.is_empty() {
            return Err(ApplyError::Invalid(problems));
        }
    }

    let mut secrets_written = Vec::new();
    for (name, value) in to_write {
        secrets.put(&name, value).await?;
        secrets_written.push(name);
    }
    store.put_all(&sources, &configs).await?;
    tracing::info!(
        configs = configs.len(),
        data_sources = sources.len(),
        secrets = secrets_written.len(),
        "configuration applied"
    );
    Ok(ApplyReport {
        data_sources: sources.into_iter().map(|d| d.id).collect(),
        configs: configs.into_iter().map(|c| c.name).collect(),
        secrets_written,
    })
}

/// Confirms that the key sees the account and both jobs; the problems name the fields and
/// list what the key can see instead.
pub async fn check_dbt_cloud_ids(
    config: &CiConfig,
    key: SecretString,
    dbt: &dyn DbtCloudConnector,
) -> Result<Vec<FieldError>, ApplyError> {
    let at = |f: &str| format!("ci_config \"{}\".{f}", config.name);
    let client = dbt.connect(&config.dbt_cloud.access_url, key);
    let wrap = |source: DbtCloudError| ApplyError::DbtCloud {
        config: config.name.clone(),
        source,
    };
    let accounts = match client.accounts().await {
        Ok(a) => a,
        Err(DbtCloudError::Unauthorized { message, .. }) => {
            return Ok(vec![FieldError {
                field: at("dbt_cloud.api_key"),
                problem: format!("dbt Cloud refused the key: {message}"),
            }]);
        }
        Err(e) => return Err(wrap(e)),
    };
    let account = config.dbt_cloud.account_id;
    if !accounts.iter().any(|a| a.id == account.get()) {
        let seen = accounts
            .iter()
            .map(|a| format!("{} ({})", a.id, a.name))
            .collect::<Vec<_>>()
            .join(", ");
        return Ok(vec![FieldError {
            field: at("dbt_cloud.account_id"),
            problem: format!(
                "account {account} is not visible to this key; it sees: {}",
                if seen.is_empty() {
                    "no accounts"
                } else {
                    &seen
                }
            ),
        }]);
    }
    let jobs = client.jobs(account).await.map_err(wrap)?;
    let listing = || {
        let mut s = jobs
            .iter()
            .take(25)
            .map(|j| format!("{} ({})", j.id, j.name))
            .collect::<Vec<_>>()
            .join(", ");
        if jobs.len() > 25 {
            s.push_str(&format!(", … {} more", jobs.len() - 25));
        }
        if s.is_empty() {
            s = "no jobs".into();
        }
        s
    };
    let mut problems = Vec::new();
    let mut want = vec![(
        "dbt_cloud.artifacts_job_id",
        config.dbt_cloud.artifacts_job_id,
    )];
    if let Some(pr) = config.dbt_cloud.pr_job_id {
        want.push(("dbt_cloud.pr_job_id", pr));
    }
    for (field, id) in want {
        if !jobs.iter().any(|j| j.id == id.get()) {
            problems.push(FieldError {
                field: at(field),
                problem: format!(
                    "job {id} is not in account {account}; jobs the key sees: {}",
                    listing()
                ),
            });
        }
    }
    Ok(problems)
}

/// One line of `prdiff config check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckLine {
    pub what: String,
    /// False: the configuration cannot work as it is (the check fails).
    pub ok: bool,
    /// Works, but should change (a warehouse role that can write); the check still passes.
    pub warning: bool,
    pub detail: String,
}

impl CheckLine {
    fn new(what: impl Into<String>, ok: bool, detail: impl Into<String>) -> Self {
        CheckLine {
            what: what.into(),
            ok,
            warning: false,
            detail: detail.into(),
        }
    }

    fn warning(what: impl Into<String>, detail: impl Into<String>) -> Self {
        CheckLine {
            warning: true,
            ..CheckLine::new(what, true, detail)
        }
    }
}

/// Checks a stored configuration: its data source exists, every secret reads, dbt Cloud
/// confirms the account and jobs and, with `check_warehouse`, the warehouse accepts the
/// stored credentials and the role cannot write ([`check_warehouse`]). `None` when there
/// is no such configuration.
pub async fn check(
    id: &ConfigId,
    store: &dyn ConfigStore,
    secrets: &dyn Secrets,
    dbt: &dyn DbtCloudConnector,
    check_warehouse: bool,
) -> Result<Option<Vec<CheckLine>>, ApplyError> {
    let Some(config) = store.get_config(id).await? else {
        return Ok(None);
    };
    let mut lines = Vec::new();
    let ds = store.get_data_source(&config.data_source).await?;
    let ds_problems = ds
        .as_ref()
        .map(crate::warehouse::source::data_source_problems)
        .unwrap_or_default();
    lines.push(CheckLine::new(
        "data source",
        ds.is_some() && ds_problems.is_empty(),
        match &ds {
            Some(d) if ds_problems.is_empty() => format!("{} ({})", d.id, d.kind.as_str()),
            Some(d) => format!("{} ({}): {}", d.id, d.kind.as_str(), ds_problems.join("; ")),
            None => format!("{} is not registered", config.data_source),
        },
    ));
    let mut dbt_key = None;
    for name in config.secret_names() {
        let got = secrets.get(name).await;
        lines.push(CheckLine::new(
            format!("secret {name}"),
            got.is_ok(),
            match &got {
                Ok(_) => "readable".into(),
                Err(e) => e.to_string(),
            },
        ));
        if name == &config.dbt_cloud.api_key {
            dbt_key = got.ok();
        }
    }
    if let Some(key) = dbt_key {
        match check_dbt_cloud_ids(&config, key, dbt).await {
            Ok(problems) => {
                lines.push(CheckLine::new(
                    "dbt Cloud account and jobs",
                    problems.is_empty(),
                    if problems.is_empty() {
                        format!(
                            "account {} sees jobs {} and {}",
                            config.dbt_cloud.account_id,
                            config.dbt_cloud.artifacts_job_id,
                            config
                                .dbt_cloud
                                .pr_job_id
                                .map_or("(no PR job)".to_owned(), |j| j.to_string())
                        )
                    } else {
                        problems
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; ")
                    },
                ));
            }
            Err(e) => lines.push(CheckLine::new(
                "dbt Cloud account and jobs",
                false,
                format!("{e}: {}", e.source_chain()),
            )),
        }
    }
    if check_warehouse && let Some(ds) = &ds {
        lines.extend(self::check_warehouse(ds, secrets).await);
    }
    Ok(Some(lines))
}

/// How long each statement of the warehouse check may run.
const CHECK_STATEMENT_TIMEOUT: Duration = Duration::from_secs(60);

/// Connects to a data source with its stored secret, runs `SELECT 1`, and asks the catalog
/// which write or administrative rights the role holds (PostgreSQL, Redshift and Snowflake; see
/// [`crate::warehouse::privilege_warnings`]). A connection that fails is a failed line
/// carrying the warehouse's own error; each right the role should not have is a warning.
pub async fn check_warehouse(source: &DataSource, secrets: &dyn Secrets) -> Vec<CheckLine> {
    const CONNECTION: &str = "warehouse connection";
    let fail = |detail: String| vec![CheckLine::new(CONNECTION, false, detail)];
    let secret = match &source.secret {
        None => None,
        Some(name) => match secrets.get(name).await {
            Ok(v) => Some(secrecy::ExposeSecret::expose_secret(&v).to_owned()),
            Err(e) => return fail(format!("secret {name}: {e}")),
        },
    };
    let url = match crate::warehouse::source::warehouse_url(source, secret) {
        Ok(u) => u,
        Err(e) => return fail(e.to_string()),
    };
    // The SQLite driver opens every file read-only and refuses a missing one (without a
    // main file, a URL with attached files reads them through an in-memory main database).
    let options = ConnectOptions {
        statement_timeout: CHECK_STATEMENT_TIMEOUT,
    };
    let wh = match warehouse::connect(&url, &options).await {
        Ok(w) => w,
        Err(e) => return fail(crate::error_chain(&e)),
    };
    match wh.query("SELECT 1").await {
        Ok(rows) if rows == [vec![Some("1".to_owned())]] => {}
        Ok(rows) => return fail(format!("{url}: SELECT 1 returned {rows:?}")),
        Err(e) => return fail(format!("{url}: SELECT 1: {}", crate::error_chain(&e))),
    }
    let mut lines = vec![CheckLine::new(
        CONNECTION,
        true,
        format!("{url}: connected, SELECT 1 ran"),
    )];
    let kind = source.kind.as_str();
    if !warehouse::privileges_checked(kind) {
        lines.push(CheckLine::new(
            "warehouse privileges",
            true,
            format!(
                "not checked for {kind}: docs/warehouse-privileges.md says how to \
                 make its access read-only"
            ),
        ));
        return lines;
    }
    match warehouse::privilege_warnings_as(kind, wh.as_ref(), &PrivilegeScope::AllSchemas).await {
        Ok(warnings) if warnings.is_empty() => lines.push(CheckLine::new(
            "warehouse privileges",
            true,
            warehouse::privileges_ok_text(kind),
        )),
        Ok(warnings) => lines.extend(warnings.into_iter().map(|w| {
            CheckLine::warning(
                format!("warehouse privilege {}", w.privilege),
                format!("{}; revoke: {}", w.detail, w.revoke),
            )
        })),
        Err(e) if kind == "snowflake" => lines.push(CheckLine::warning(
            "warehouse privileges",
            format!("could not read grants: {}", crate::error_chain(&e)),
        )),
        Err(e) => lines.push(CheckLine::warning(
            "warehouse privileges",
            format!("could not be read: {}", crate::error_chain(&e)),
        )),
    }
    lines
}

trait SourceChain {
    fn source_chain(&self) -> String;
}

impl<E: std::error::Error> SourceChain for E {
    /// The causes below this error, joined (the error's own text is printed by the caller).
    fn source_chain(&self) -> String {
        let mut out = Vec::new();
        let mut cur = self.source();
        while let Some(e) = cur {
            out.push(e.to_string());
            cur = e.source();
        }
        out.join(": ")
    }
}
