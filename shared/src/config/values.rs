//! The value newtypes of a configuration. Each is built by `parse`/`new`, and serde goes
//! through the same constructor, so a value read back from a store is checked again.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Declares a string newtype whose only constructor is `parse` with the given check.
macro_rules! string_newtype {
    ($(#[$doc:meta])* $name:ident, $what:literal, |$s:ident| $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Checks and wraps the value.
            pub fn parse(value: impl Into<String>) -> Result<Self, String> {
                let $s: String = value.into();
                let problem: Option<String> = $check;
                match problem {
                    None => Ok(Self($s)),
                    Some(p) => Err(format!("{} {:?}: {}", $what, $s, p)),
                }
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                Self::parse(s)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

fn identifier_problem(s: &str) -> Option<String> {
    let ok_chars = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if s.is_empty() || s.len() > 64 {
        Some("must be 1 to 64 characters".into())
    } else if !ok_chars || !s.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        Some("use letters, digits, '-', '_' and '.', starting with a letter or digit".into())
    } else {
        None
    }
}

string_newtype!(
    /// The operator's identifier of a CI configuration (`analytics-main`).
    ConfigId, "configuration name", |s| identifier_problem(&s)
);

string_newtype!(
    /// The identifier of a registered data source.
    DataSourceId, "data source id", |s| identifier_problem(&s)
);

string_newtype!(
    /// A repository's full name: `owner/name` (GitHub) or `group/sub/project` (GitLab).
    RepoName, "repository name", |s| {
        let parts: Vec<&str> = s.split('/').collect();
        if parts.len() < 2 || parts.iter().any(|p| p.is_empty()) {
            Some("must look like owner/name".into())
        } else if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            Some("must not contain whitespace".into())
        } else {
            None
        }
    }
);

string_newtype!(
    /// The name (or ARN) of a secret in the secret store. Never the value.
    SecretName, "secret name", |s| {
        if s.is_empty() || s.len() > 2048 {
            Some("must be 1 to 2048 characters".into())
        } else if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            Some("must not contain whitespace".into())
        } else {
            None
        }
    }
);

string_newtype!(
    /// A PR label. GitHub allows up to 50 characters; GitLab more, so only emptiness is refused.
    Label, "label", |s| {
        if s.trim().is_empty() { Some("must not be empty".into()) } else { None }
    }
);

string_newtype!(
    /// A branch name as the git host sends it for a pull request's base (`main`,
    /// `release/2.0`), without `refs/heads/`. Checked against git's ref-name rules.
    BranchName, "branch name", |s| {
        if s.is_empty() || s.len() > 255 {
            Some("must be 1 to 255 characters".into())
        } else if s.starts_with("refs/") {
            Some("give the branch name without `refs/heads/`".into())
        } else if s.chars().any(|c| c.is_whitespace() || c.is_control() || "~^:?*[\\".contains(c))
            || s.contains("..")
            || s.contains("@{")
            || s.contains("//")
            || s.starts_with(['/', '.', '-'])
            || s.ends_with(['/', '.'])
            || s.ends_with(".lock")
        {
            Some("is not a valid git branch name".into())
        } else {
            None
        }
    }
);

string_newtype!(
    /// A full 40-hex (SHA-1) or 64-hex (SHA-256) commit id, lower-cased.
    CommitSha, "commit sha", |s| {
        let hex = s.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
        if (s.len() == 40 || s.len() == 64) && hex { None } else { Some("must be 40 or 64 lower-case hex digits".into()) }
    }
);

/// The dbt tag (or column `meta` key) that marks primary-key columns.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PrimaryKeyTag(String);

impl PrimaryKeyTag {
    pub fn parse(s: impl Into<String>) -> Result<Self, String> {
        let s = s.into();
        if s.trim().is_empty() {
            Err("primary key tag must not be empty".into())
        } else {
            Ok(Self(s))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for PrimaryKeyTag {
    fn default() -> Self {
        Self("primary-key".into())
    }
}

impl TryFrom<String> for PrimaryKeyTag {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(s)
    }
}

impl From<PrimaryKeyTag> for String {
    fn from(v: PrimaryKeyTag) -> String {
        v.0
    }
}

/// The git host a repository lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Github,
    Gitlab,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Github => "github",
            Provider::Gitlab => "gitlab",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which base commit a PR is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BaseCommitSelection {
    /// The commit the PR branched from: only the PR's own changes show.
    #[default]
    MergeBase,
    /// The latest commit of the base branch: also shows what landed since branching.
    Latest,
}

/// The warehouse behind a data source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataSourceKind {
    Postgres,
    Redshift,
    Sqlite,
    Duckdb,
    Snowflake,
    Bigquery,
    Databricks,
}

impl DataSourceKind {
    /// The name used in configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Redshift => "redshift",
            Self::Sqlite => "sqlite",
            Self::Duckdb => "duckdb",
            Self::Snowflake => "snowflake",
            Self::Bigquery => "bigquery",
            Self::Databricks => "databricks",
        }
    }

    /// The SQL dialect of this kind of warehouse.
    pub fn dialect(self) -> &'static dyn crate::sql::Dialect {
        use crate::sql;
        match self {
            Self::Postgres => &sql::Postgres,
            Self::Redshift => &sql::Redshift,
            Self::Sqlite => &sql::Sqlite,
            Self::Duckdb => &sql::DuckDb,
            Self::Snowflake => &sql::Snowflake,
            Self::Bigquery => &sql::BigQuery,
            Self::Databricks => &sql::Databricks,
        }
    }

    /// Rows below which a table is diffed exactly. Local and self-hosted engines scan a
    /// million rows in seconds; cloud warehouses bill per scan, so they sample earlier
    /// relative to their speed only past five million rows.
    pub fn default_sampling_threshold(self) -> u64 {
        match self {
            Self::Postgres | Self::Redshift | Self::Sqlite | Self::Duckdb => 1_000_000,
            Self::Snowflake | Self::Bigquery | Self::Databricks => 5_000_000,
        }
    }
}

/// The schemas a pull request's relations must be in: a name prefix with the placeholders
/// `{job_id}` (the dbt Cloud PR job) and `{pr_number}` (the PR or MR number). A relation
/// is inside when its schema is the prefix itself or the prefix, `_` and a custom schema
/// suffix (dbt's `generate_schema_name`), compared without regard to case. The default is
/// dbt Cloud's own naming for CI runs, `dbt_cloud_pr_{job_id}_{pr_number}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PrSchemaPattern(String);

impl PrSchemaPattern {
    pub const DEFAULT: &'static str = "dbt_cloud_pr_{job_id}_{pr_number}";

    pub fn parse(s: impl Into<String>) -> Result<Self, String> {
        let s = s.into();
        let rest = s.replace("{job_id}", "").replace("{pr_number}", "");
        if !s.contains("{pr_number}") {
            Err(format!(
                "pr_schema {s:?} must contain {{pr_number}}: without it one pull request could read another's schemas"
            ))
        } else if rest.contains(['{', '}', '.', '"', '`', '*', '%'])
            || rest.chars().any(char::is_whitespace)
        {
            Err(format!(
                "pr_schema {s:?} is a schema name prefix: letters, digits, `_`, `$`, `-` and the placeholders {{job_id}} and {{pr_number}} only"
            ))
        } else {
            Ok(Self(s))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The prefix for one pull request.
    pub fn prefix(&self, job_id: Option<u64>, pr_number: u64) -> String {
        let job = job_id.map_or_else(|| "{job_id}".to_owned(), |j| j.to_string());
        self.0
            .replace("{job_id}", &job)
            .replace("{pr_number}", &pr_number.to_string())
    }
}

impl Default for PrSchemaPattern {
    fn default() -> Self {
        Self(Self::DEFAULT.into())
    }
}

impl TryFrom<String> for PrSchemaPattern {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(s)
    }
}

impl From<PrSchemaPattern> for String {
    fn from(v: PrSchemaPattern) -> String {
        v.0
    }
}

/// A dbt Cloud account id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct DbtAccountId(u64);

/// A dbt Cloud job id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct DbtJobId(u64);

macro_rules! id_newtype {
    ($name:ident, $what:literal) => {
        impl $name {
            /// Ids are positive; 0 is what an unset field turns into.
            pub fn new(id: u64) -> Result<Self, String> {
                if id == 0 {
                    Err(concat!($what, " must be a positive integer").into())
                } else {
                    Ok(Self(id))
                }
            }
            pub fn get(self) -> u64 {
                self.0
            }
        }
        impl TryFrom<u64> for $name {
            type Error = String;
            fn try_from(v: u64) -> Result<Self, String> {
                Self::new(v)
            }
        }
        impl From<$name> for u64 {
            fn from(v: $name) -> u64 {
                v.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}
id_newtype!(DbtAccountId, "dbt Cloud account id");
id_newtype!(DbtJobId, "dbt Cloud job id");

/// A number strictly between 0 and 1 (sampling tolerance and confidence).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Probability(f64);

impl Probability {
    pub fn new(v: f64) -> Result<Self, String> {
        if v > 0.0 && v < 1.0 {
            Ok(Self(v))
        } else {
            Err(format!("must be strictly between 0 and 1, got {v}"))
        }
    }
    pub fn get(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for Probability {
    type Error = String;
    fn try_from(v: f64) -> Result<Self, String> {
        Self::new(v)
    }
}

impl From<Probability> for f64 {
    fn from(v: Probability) -> f64 {
        v.0
    }
}

/// croner searches for a next time up to the year 5000; this is 401 years before that.
const CRON_PROBE_YEAR: i32 = 4599;

/// A cron expression (5 fields, or 6 with seconds), checked by parsing it and by finding
/// a time it matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CronSchedule(String);

impl CronSchedule {
    pub fn parse(s: impl Into<String>) -> Result<Self, String> {
        let s = s.into();
        let cron = croner::Cron::new(&s)
            .with_seconds_optional()
            .parse()
            .map_err(|e| format!("cron expression {s:?} does not parse: {e}"))?;
        // An expression can parse and still never match (`0 0 30 2 *`; `0 0 * * 7L`, which
        // croner 2.2 never matches although `0L` works). The scheduled sync would never
        // run it, and would search day by day up to the year 5000, where croner gives up,
        // on every tick. The calendar repeats every 400 years, so a search over croner's
        // last 400 years finds a time for every expression that has one, at a bounded cost.
        let probe = chrono::NaiveDate::from_ymd_opt(CRON_PROBE_YEAR, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .expect("a valid constant date")
            .and_utc();
        if cron.find_next_occurrence(&probe, true).is_err() {
            return Err(format!("cron expression {s:?} never matches a date"));
        }
        Ok(Self(s))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CronSchedule {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(s)
    }
}

impl From<CronSchedule> for String {
    fn from(v: CronSchedule) -> String {
        v.0
    }
}

/// Files to ignore, in .gitignore syntax: one pattern per line, `#` comments, `!` negates,
/// a trailing `/` matches directories only, a pattern without a `/` (other than a trailing
/// one) matches a file or directory name at any depth, and the last matching line decides.
///
/// Two rules follow Datafold's files-to-ignore rather than git (docs/configuration-ignore.md):
/// `*` and `?` also match `/` (so `dbt/*.md` matches `dbt/models/docs.md`), and a negated
/// line re-includes a file even when one of its parent directories is excluded (git cannot
/// re-include below an excluded directory). Each line is one `globset` glob; a line matches
/// a path when it matches the path or one of its parent directories.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IgnorePatterns {
    text: String,
    rules: Vec<IgnoreRule>,
}

#[derive(Clone)]
struct IgnoreRule {
    glob: globset::GlobMatcher,
    negated: bool,
    /// A trailing `/`: the line matches directories (parents of a changed file) only.
    dir_only: bool,
    /// No `/` in the line (other than a trailing one): matched against each name.
    basename: bool,
}

impl IgnoreRule {
    /// Parses one line; `None` for blank lines and comments.
    fn parse(line: &str) -> Result<Option<Self>, String> {
        let mut line = trim_unescaped_trailing_spaces(line);
        if line.is_empty() || line.starts_with('#') {
            return Ok(None);
        }
        let negated = line.starts_with('!');
        // `!` negates; a backslash escapes a leading `!` or `#`.
        if negated || line.starts_with("\\!") || line.starts_with("\\#") {
            line = &line[1..];
        }
        let dir_only = line.ends_with('/') && !line.ends_with("\\/");
        let line = line.strip_suffix('/').filter(|_| dir_only).unwrap_or(line);
        let basename = !line.contains('/');
        let pattern = line.strip_prefix('/').unwrap_or(line);
        if pattern.is_empty() {
            return Err("the pattern is empty".into());
        }
        let glob = globset::GlobBuilder::new(pattern)
            .literal_separator(false)
            .backslash_escape(true)
            .build()
            .map_err(|e| e.kind().to_string())?
            .compile_matcher();
        Ok(Some(Self {
            glob,
            negated,
            dir_only,
            basename,
        }))
    }

    /// Whether the line matches `path` (a file) or one of its parent directories.
    fn matches(&self, path: &str) -> bool {
        let mut candidates = Vec::new();
        for (i, c) in path.char_indices() {
            if c == '/' {
                candidates.push(&path[..i]);
            }
        }
        if !self.dir_only {
            candidates.push(path);
        }
        candidates.into_iter().any(|candidate| {
            let subject = if self.basename {
                candidate.rsplit('/').next().unwrap_or(candidate)
            } else {
                candidate
            };
            self.glob.is_match(subject)
        })
    }
}

/// Git ignores trailing spaces unless the last one is escaped with a backslash.
fn trim_unescaped_trailing_spaces(line: &str) -> &str {
    let trimmed = line.trim_end_matches(' ');
    if trimmed.ends_with('\\') && trimmed.len() < line.len() {
        &line[..trimmed.len() + 1]
    } else {
        trimmed
    }
}

impl IgnorePatterns {
    pub fn parse(text: impl Into<String>) -> Result<Self, String> {
        let text = text.into();
        let mut rules = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let rule = IgnoreRule::parse(line.trim_end_matches('\r'))
                .map_err(|e| format!("files_to_ignore line {}: {e}", n + 1))?;
            rules.extend(rule);
        }
        Ok(Self { text, rules })
    }

    /// True when no pattern is set (the gate is off).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether `path` (repository-relative, `/`-separated) is ignored: the last line that
    /// matches it, directly or through one of its parent directories, decides.
    pub fn is_ignored(&self, path: &str) -> bool {
        let path = path.trim_start_matches('/');
        self.rules
            .iter()
            .rev()
            .find(|r| r.matches(path))
            .is_some_and(|r| !r.negated)
    }

    /// Whether every one of `paths` is ignored (false for an empty list: a PR that changes
    /// nothing is not "all ignored").
    pub fn all_ignored<'a>(&self, paths: impl IntoIterator<Item = &'a str>) -> bool {
        let mut any = false;
        for p in paths {
            any = true;
            if !self.is_ignored(p) {
                return false;
            }
        }
        any
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl Default for IgnorePatterns {
    fn default() -> Self {
        Self::parse("").expect("empty pattern list")
    }
}

impl fmt::Debug for IgnorePatterns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("IgnorePatterns").field(&self.text).finish()
    }
}

impl PartialEq for IgnorePatterns {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl TryFrom<String> for IgnorePatterns {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(s)
    }
}

impl From<IgnorePatterns> for String {
    fn from(v: IgnorePatterns) -> String {
        v.text
    }
}
