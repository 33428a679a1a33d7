//! CI configurations and data sources: the operator's settings per repository.
//!
//! Every value is a newtype built by parsing, so a [`CiConfig`] that exists is valid: the
//! CLI refuses a bad file before anything is written, and a stored item that no longer
//! parses (hand-edited in DynamoDB) is reported instead of acted on.
//!
//! The same shapes serve two forms, told apart by the secret type parameter:
//! - the file an operator keeps in git ([`ConfigFile`], secrets as [`SecretSource`]: an
//!   environment variable, a file, or a name already in Secrets Manager), and
//! - the stored form ([`CiConfig`], [`DataSource`]: secrets only as [`SecretName`]s, so the
//!   configuration store never holds a secret value).

mod values;

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use values::{
    BaseCommitSelection, BranchName, CommitSha, ConfigId, CronSchedule, DataSourceId,
    DataSourceKind, DbtAccountId, DbtJobId, IgnorePatterns, Label, PrSchemaPattern, PrimaryKeyTag,
    Probability, Provider, RepoName, SecretName,
};

/// Where a secret value comes from in a configuration file. Files kept in git name the
/// secret's source, never the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum SecretSource {
    /// Read from this environment variable when the file is applied.
    Env { env: String },
    /// Read from this file (trailing newline trimmed) when the file is applied.
    File { file: PathBuf },
    /// Already in the secret store under this name; used as is.
    Stored { secret: SecretName },
}

/// A repository on a git host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repository {
    pub provider: Provider,
    /// `owner/name` on GitHub, `group/subgroup/project` on GitLab.
    pub full_name: RepoName,
    /// API root for GitHub Enterprise Server (`https://ghe.example.com/api/v3`) or
    /// self-managed GitLab (`https://gitlab.example.com/api/v4`); the public host when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_base_url: Option<url::Url>,
}

/// How prdiff authenticates to the git host for this repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum GitAuth<S> {
    /// A personal/project access token (GitHub fine-grained token, GitLab project token).
    Token { token: S },
    /// A GitHub App installation: JWT signed with the App's key → installation token.
    GithubApp {
        app_id: u64,
        installation_id: u64,
        private_key: S,
    },
}

/// The dbt Cloud side of a configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbtCloudSettings<S> {
    /// Base URL of the account (`https://ab123.us1.dbt.com`, or `https://cloud.getdbt.com`).
    pub access_url: url::Url,
    pub account_id: DbtAccountId,
    /// Service or user token; only ever in the secret store.
    pub api_key: S,
    /// The production job whose runs produce the base manifest (e.g. hourly `dbt compile`).
    pub artifacts_job_id: DbtJobId,
    /// The CI job that builds pull requests. Absent only when PRs are skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pr_job_id: Option<DbtJobId>,
}

/// Sampling settings: how precisely a sampled diff estimates its shares.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sampling {
    /// Accuracy of the estimated share of differing rows, in (0, 1).
    #[serde(default = "Sampling::default_tolerance")]
    pub tolerance: Probability,
    /// Confidence of that estimate, in (0, 1).
    #[serde(default = "Sampling::default_confidence")]
    pub confidence: Probability,
    /// Tables with fewer rows are diffed exactly; absent = the data source kind's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u64>,
}

impl Sampling {
    fn default_tolerance() -> Probability {
        Probability::new(0.001).expect("constant in range")
    }
    fn default_confidence() -> Probability {
        Probability::new(0.99).expect("constant in range")
    }
    /// The threshold in force for a data source of this kind.
    pub fn threshold_for(&self, kind: DataSourceKind) -> u64 {
        self.threshold
            .unwrap_or_else(|| kind.default_sampling_threshold())
    }

    /// The diff engine's settings for a data source of this kind. Cannot fail: tolerance
    /// and confidence were checked when the configuration was read ([`Probability`]).
    pub fn settings_for(&self, kind: DataSourceKind) -> crate::diff::SamplingSettings {
        crate::diff::SamplingSettings {
            threshold: self.threshold_for(kind),
            tolerance: self.tolerance.get(),
            confidence: self.confidence.get(),
        }
    }
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            tolerance: Self::default_tolerance(),
            confidence: Self::default_confidence(),
            threshold: None,
        }
    }
}

/// The required-label gate: when `enabled`, a PR runs only while `name` is on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequireLabel {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "RequireLabel::default_name")]
    pub name: Label,
}

impl RequireLabel {
    fn default_name() -> Label {
        Label::parse("datafold").expect("constant label")
    }
    /// The label a PR must carry, when the gate is on.
    pub fn required(&self) -> Option<&Label> {
        self.enabled.then_some(&self.name)
    }
}

impl Default for RequireLabel {
    fn default() -> Self {
        Self {
            enabled: false,
            name: Self::default_name(),
        }
    }
}

fn yes() -> bool {
    true
}

/// One CI configuration: a repository wired to a dbt Cloud account and a data source.
/// `S` is how secrets are held: [`SecretName`] when stored, [`SecretSource`] in a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CiConfigOf<S> {
    /// The operator's identifier of this configuration.
    pub name: ConfigId,
    pub repository: Repository,
    /// Id of a registered data source.
    pub data_source: DataSourceId,
    pub git_auth: GitAuth<S>,
    pub dbt_cloud: DbtCloudSettings<S>,
    /// No CI pipeline on pull requests (metadata sync still runs).
    #[serde(default)]
    pub skip_pull_requests: bool,
    #[serde(default)]
    pub primary_key_tag: PrimaryKeyTag,
    #[serde(default)]
    pub base_commit: BaseCommitSelection,
    /// A push to the default branch triggers a manifest sync.
    #[serde(default)]
    pub sync_on_push: bool,
    /// Cron expression evaluated by the scheduled sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_schedule: Option<CronSchedule>,
    /// .gitignore syntax, one pattern per line; a PR touching only these files is skipped.
    #[serde(default)]
    pub files_to_ignore: IgnorePatterns,
    /// On: errors report as failure. Off: errors report as success so PRs are never blocked.
    #[serde(default = "yes")]
    pub status_reporting: bool,
    /// On: diff only modified models (plus downstream when `diff_downstream`).
    #[serde(default = "yes")]
    pub slim_ci: bool,
    #[serde(default)]
    pub diff_downstream: bool,
    #[serde(default)]
    pub require_label: RequireLabel,
    #[serde(default)]
    pub sampling: Sampling,
    /// The schemas the PR job builds into; PR relations elsewhere are not diffed.
    #[serde(default)]
    pub pr_schema: PrSchemaPattern,
    /// When set, only PRs into this branch run; others are skipped with a success status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_branch: Option<BranchName>,
    /// On: NULL or duplicate keys on the PR side of a diffed model fail the run's status.
    #[serde(default)]
    pub fail_on_primary_key_issues: bool,
    /// The diff threshold: a run whose plan would diff more models than this diffs none
    /// and lists them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_models: Option<std::num::NonZeroU32>,
    /// GitHub App installs: a check run per configuration with the report's summary and
    /// per-model annotations, besides the status and comment (no effect with a token or
    /// on GitLab).
    #[serde(default = "yes")]
    pub github_checks: bool,
    /// On: a model whose diff inputs did not change since the PR's previous run (code,
    /// upstream, production run, diff settings) re-uses that run's result instead of
    /// being diffed again. Off: every run diffs every model.
    #[serde(default = "yes")]
    pub reuse_unchanged: bool,
}

/// A stored CI configuration (secrets by name only).
pub type CiConfig = CiConfigOf<SecretName>;

/// Which secret of a configuration or data source a value is; names the stored secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretRole {
    DbtApiKey,
    GitToken,
    GithubAppKey,
    Warehouse,
}

impl SecretRole {
    /// The last part of the secret's name: `prdiff/<config or data source>/<this>`.
    pub fn suffix(self) -> &'static str {
        match self {
            SecretRole::DbtApiKey => "dbt-api-key",
            SecretRole::GitToken => "git-token",
            SecretRole::GithubAppKey => "github-app-private-key",
            SecretRole::Warehouse => "warehouse",
        }
    }
}

impl<S> CiConfigOf<S> {
    /// The same configuration with each secret turned into a `T` by `f`.
    pub fn map_secrets<T, E>(
        self,
        mut f: impl FnMut(SecretRole, S) -> Result<T, E>,
    ) -> Result<CiConfigOf<T>, E> {
        let git_auth = match self.git_auth {
            GitAuth::Token { token } => GitAuth::Token {
                token: f(SecretRole::GitToken, token)?,
            },
            GitAuth::GithubApp {
                app_id,
                installation_id,
                private_key,
            } => GitAuth::GithubApp {
                app_id,
                installation_id,
                private_key: f(SecretRole::GithubAppKey, private_key)?,
            },
        };
        let d = self.dbt_cloud;
        let dbt_cloud = DbtCloudSettings {
            access_url: d.access_url,
            account_id: d.account_id,
            api_key: f(SecretRole::DbtApiKey, d.api_key)?,
            artifacts_job_id: d.artifacts_job_id,
            pr_job_id: d.pr_job_id,
        };
        Ok(CiConfigOf {
            name: self.name,
            repository: self.repository,
            data_source: self.data_source,
            git_auth,
            dbt_cloud,
            skip_pull_requests: self.skip_pull_requests,
            primary_key_tag: self.primary_key_tag,
            base_commit: self.base_commit,
            sync_on_push: self.sync_on_push,
            sync_schedule: self.sync_schedule,
            files_to_ignore: self.files_to_ignore,
            status_reporting: self.status_reporting,
            slim_ci: self.slim_ci,
            diff_downstream: self.diff_downstream,
            require_label: self.require_label,
            sampling: self.sampling,
            pr_schema: self.pr_schema,
            base_branch: self.base_branch,
            fail_on_primary_key_issues: self.fail_on_primary_key_issues,
            max_models: self.max_models,
            github_checks: self.github_checks,
            reuse_unchanged: self.reuse_unchanged,
        })
    }
}

impl<S> DataSourceOf<S> {
    /// The same data source with its secret turned into a `T` by `f`.
    pub fn map_secrets<T, E>(
        self,
        f: impl FnOnce(SecretRole, S) -> Result<T, E>,
    ) -> Result<DataSourceOf<T>, E> {
        Ok(DataSourceOf {
            id: self.id,
            kind: self.kind,
            connection: self.connection,
            secret: self
                .secret
                .map(|s| f(SecretRole::Warehouse, s))
                .transpose()?,
        })
    }
}

impl CiConfig {
    /// The commit status context for this configuration. One per configuration so two
    /// configurations of one repository do not overwrite each other's status.
    pub fn status_context(&self) -> String {
        format!("prdiff/{}", self.name)
    }

    /// The hidden marker that finds this configuration's sticky comment again.
    pub fn comment_marker(&self) -> String {
        format!("<!-- prdiff:{} -->", self.name)
    }

    /// Every secret name this configuration refers to.
    pub fn secret_names(&self) -> Vec<&SecretName> {
        // Keep in step with map_secrets: every secret field appears in both.
        let mut names = vec![&self.dbt_cloud.api_key];
        match &self.git_auth {
            GitAuth::Token { token } => names.push(token),
            GitAuth::GithubApp { private_key, .. } => names.push(private_key),
        }
        names
    }
}

/// A registered warehouse connection. Non-secret connection settings live here; the
/// password / key / token lives in the secret store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "S: Deserialize<'de>"))]
pub struct DataSourceOf<S> {
    pub id: DataSourceId,
    pub kind: DataSourceKind,
    /// Host, port, database, user, warehouse, project… as the driver for `kind` expects.
    #[serde(default)]
    pub connection: std::collections::BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<S>,
}

/// A stored data source.
pub type DataSource = DataSourceOf<SecretName>;

/// A configuration file as `prdiff config apply -f` reads it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default, rename = "data_source")]
    pub data_sources: Vec<DataSourceOf<SecretSource>>,
    #[serde(default, rename = "ci_config")]
    pub ci_configs: Vec<CiConfigOf<SecretSource>>,
}

/// A configuration value that was refused, with the field it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct FieldError {
    /// Where the value sits, e.g. `ci_config "main".sampling.tolerance`.
    pub field: String,
    pub problem: String,
}

/// Why a configuration file was refused. Never retryable: the file must change.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// TOML syntax, an unknown key, or a value whose type or range is wrong. toml's message
    /// quotes the offending line, which names the field.
    #[error("invalid configuration file: {0}")]
    Syntax(#[from] toml::de::Error),
    /// Checks across fields; all problems are reported together.
    #[error("invalid configuration: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
}

impl ConfigError {
    /// A bad file stays bad until edited.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

impl ConfigFile {
    /// Parses and validates a configuration file. `known_data_sources` are ids already
    /// registered, which configurations may refer to besides those in the file.
    pub fn parse(text: &str, known_data_sources: &[DataSourceId]) -> Result<Self, ConfigError> {
        let file: ConfigFile = toml::from_str(text)?;
        let problems = file.check(known_data_sources);
        if problems.is_empty() {
            Ok(file)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// Cross-field checks (single values were checked while parsing).
    fn check(&self, known_data_sources: &[DataSourceId]) -> Vec<FieldError> {
        let mut problems = Vec::new();
        let mut err = |field: String, problem: &str| {
            problems.push(FieldError {
                field,
                problem: problem.to_owned(),
            })
        };
        if self.data_sources.is_empty() && self.ci_configs.is_empty() {
            err(
                "file".into(),
                "holds no [[data_source]] and no [[ci_config]]",
            );
        }
        let mut sources = BTreeSet::new();
        for ds in &self.data_sources {
            if !sources.insert(ds.id.as_str()) {
                err(
                    format!("data_source \"{}\".id", ds.id),
                    "is defined twice in this file",
                );
            }
        }
        let mut names = BTreeSet::new();
        for c in &self.ci_configs {
            let at = |f: &str| format!("ci_config \"{}\".{f}", c.name);
            if !names.insert(c.name.as_str()) {
                err(at("name"), "is defined twice in this file");
            }
            if !sources.contains(c.data_source.as_str())
                && !known_data_sources.contains(&c.data_source)
            {
                err(
                    at("data_source"),
                    &format!(
                        "refers to data source \"{}\", which is neither in this file nor registered",
                        c.data_source
                    ),
                );
            }
            if !c.skip_pull_requests && c.dbt_cloud.pr_job_id.is_none() {
                err(
                    at("dbt_cloud.pr_job_id"),
                    "is required unless skip_pull_requests = true",
                );
            }
            if let GitAuth::GithubApp { .. } = c.git_auth
                && c.repository.provider != Provider::Github
            {
                err(
                    at("git_auth.kind"),
                    "github_app works only with provider = \"github\"",
                );
            }
        }
        problems
    }
}

#[cfg(test)]
pub(crate) mod tests;
