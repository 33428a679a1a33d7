//! Reading dbt `manifest.json` (schema v7–v12) and `run_results.json` (v4–v6).
//!
//! Production manifests of 50–200 MB are normal, so only what [`crate::plan`] needs is
//! kept: texts that are only ever compared (raw code, macro SQL, descriptions, unrendered
//! config) are reduced to a 64-bit hash while they are parsed, compiled SQL and every
//! field nobody reads are skipped without being allocated, and the file's bytes are
//! dropped as soon as the typed [`Manifest`] is built. Unknown fields are ignored and
//! missing optional fields take their defaults, so artifacts from dbt versions between
//! the ones tested keep working.

mod hashed;
mod raw;
mod scan;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::sql::Relation;

pub(crate) use raw::truthy as truthy_value;
pub use raw::{Column, Constraint, Contract, SourceDigest, TestMetadata};

/// Manifest schema versions this module reads.
pub const MANIFEST_VERSIONS: std::ops::RangeInclusive<u32> = 7..=12;
/// run_results schema versions this module reads.
pub const RUN_RESULTS_VERSIONS: std::ops::RangeInclusive<u32> = 4..=6;

/// Why an artifact could not be read. Every variant names the file (or the origin the
/// caller gave for bytes read from elsewhere, such as a dbt Cloud artifact URL).
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a valid dbt {kind}", path.display())]
    Json {
        path: PathBuf,
        kind: ArtifactKind,
        #[source]
        source: serde_json::Error,
    },
    #[error("{} is not a dbt {expected}: {found}", path.display())]
    WrongKind {
        path: PathBuf,
        expected: ArtifactKind,
        found: String,
    },
    #[error(
        "{} is a dbt {kind} of schema version v{version}, which prdiff does not read (supported: v{}–v{})",
        path.display(), supported.start(), supported.end()
    )]
    UnsupportedVersion {
        path: PathBuf,
        kind: ArtifactKind,
        version: u32,
        supported: std::ops::RangeInclusive<u32>,
    },
}

impl ArtifactError {
    /// Bad input is never worth retrying; an I/O error might be (a file still being written).
    pub fn is_retryable(&self) -> bool {
        matches!(self, ArtifactError::Read { .. })
    }
}

/// Which dbt artifact a file was expected to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactKind {
    Manifest,
    RunResults,
}

impl std::fmt::Display for ArtifactKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ArtifactKind::Manifest => "manifest.json",
            ArtifactKind::RunResults => "run_results.json",
        })
    }
}

/// The parts of a dbt manifest the planner reads.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// `vN` of `metadata.dbt_schema_version`.
    pub schema_version: u32,
    pub dbt_version: Option<String>,
    pub adapter_type: Option<String>,
    /// Enabled nodes by unique id (models, seeds, snapshots, tests, analyses, …).
    pub nodes: HashMap<String, Node>,
    /// Unique ids of disabled nodes (`disabled` in the manifest), with their resource type.
    pub disabled: HashMap<String, String>,
    /// Macros by unique id: the hash of their SQL and the macros they call.
    pub macros: HashMap<String, Macro>,
    /// Sources by unique id, each reduced to the hash of what dbt compares in
    /// `state:modified` (see [`SourceDigest`]).
    pub sources: HashMap<String, SourceDigest>,
    /// `child_map`: unique id → unique ids that depend on it.
    pub child_map: HashMap<String, Vec<String>>,
}

/// One node, reduced to what change detection, relations, keys and options need.
/// Deserialized straight from the JSON (through [`raw::RawNode`]) so no second copy of
/// the node map is ever built.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(from = "raw::RawNode")]
pub struct Node {
    pub unique_id: String,
    pub name: String,
    pub resource_type: String,
    pub package_name: String,
    pub database: Option<String>,
    pub schema: Option<String>,
    pub alias: Option<String>,
    pub relation_name: Option<String>,
    pub fqn: Vec<String>,
    pub version: Option<String>,
    pub latest_version: Option<String>,
    pub access: Option<String>,
    pub deprecation_date: Option<String>,
    /// Hash of `raw_code` (dbt's `same_body` for everything but seeds).
    pub raw_code_hash: u64,
    /// `checksum.name` and `checksum.checksum` (seeds compare these, `path` for large seeds).
    pub checksum: (String, String),
    pub description_hash: u64,
    /// Columns in the order the yaml declares them.
    pub columns: Vec<Column>,
    pub meta: serde_json::Map<String, serde_json::Value>,
    pub tags: Vec<String>,
    pub config: NodeConfig,
    /// Hash of `unrendered_config` without the keys dbt leaves out of config comparison.
    pub unrendered_config_hash: u64,
    /// `unrendered_config.database/schema/alias` (dbt's `same_database_representation`).
    pub unrendered_relation: [Option<String>; 3],
    pub contract: Contract,
    pub constraints: Vec<Constraint>,
    pub depends_on_nodes: Vec<String>,
    pub depends_on_macros: Vec<String>,
    /// Tests only: which test and on which column/model.
    pub test_metadata: Option<TestMetadata>,
    pub column_name: Option<String>,
    pub attached_node: Option<String>,
    /// The node's file in the dbt project (`models/…/x.sql`).
    pub original_file_path: Option<String>,
}

/// The rendered config values the planner reads.
#[derive(Debug, Clone, Default)]
pub struct NodeConfig {
    pub enabled: bool,
    pub materialized: Option<String>,
    pub persist_docs_relation: bool,
    pub persist_docs_columns: bool,
    pub unique_key: Vec<String>,
    pub meta: serde_json::Map<String, serde_json::Value>,
    pub contract_enforced: bool,
}

/// A macro: what `state:modified` compares (`macro_sql`) and what it follows (`depends_on.macros`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(from = "raw::RawMacro")]
pub struct Macro {
    pub sql_hash: u64,
    pub depends_on: Vec<String>,
}

impl Node {
    /// The relation dbt built this node into: `relation_name` when dbt recorded one,
    /// else `database.schema.alias` (falling back to the name), as dbt renders it.
    pub fn relation(&self) -> Option<Relation> {
        self.relation_in(None)
    }

    /// [`Node::relation`] as the manifest's warehouse resolves it: unquoted names folded
    /// the way it folds unquoted identifiers ([`Relation::parse_for`]; Snowflake: upper
    /// case).
    pub fn relation_in(&self, dialect: Option<&dyn crate::sql::Dialect>) -> Option<Relation> {
        if let Some(parsed) = self.relation_name.as_deref().and_then(|r| match dialect {
            Some(d) => Relation::parse_for(r, d).ok(),
            None => Relation::parse(r).ok(),
        }) {
            return Some(parsed);
        }
        if self.config.materialized.as_deref() == Some("ephemeral") {
            return None;
        }
        let name = self.alias.as_deref().unwrap_or(&self.name);
        let r = Relation::new(self.database.as_deref(), self.schema.as_deref(), name);
        Some(match dialect {
            Some(d) => r.folded_for(d),
            None => r,
        })
    }

    /// Models, seeds and snapshots: the nodes that become tables or views worth diffing.
    pub fn is_diffable_kind(&self) -> bool {
        matches!(self.resource_type.as_str(), "model" | "seed" | "snapshot")
    }

    pub fn is_ephemeral(&self) -> bool {
        self.config.materialized.as_deref() == Some("ephemeral")
    }
}

impl Manifest {
    /// The SQL dialect of the warehouse dbt built this manifest for
    /// (`metadata.adapter_type`), when prdiff knows it.
    pub fn dialect(&self) -> Option<&'static dyn crate::sql::Dialect> {
        self.adapter_type
            .as_deref()
            .and_then(crate::sql::dialect_by_name)
    }

    /// Reads a manifest file, streaming: the file is never held in memory whole, so
    /// peak memory is the typed manifest plus a 1 MB buffer (parsing from a reader is
    /// measured as fast as parsing a slice here, because most bytes are skipped).
    pub fn load(path: &Path) -> Result<Self, ArtifactError> {
        let file = std::fs::File::open(path).map_err(|source| ArtifactError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_reader(file, path)
    }

    /// Parses manifest bytes obtained elsewhere; `origin` names them in errors.
    pub fn from_slice(bytes: &[u8], origin: &Path) -> Result<Self, ArtifactError> {
        Self::from_reader(bytes, origin)
    }

    /// Parses a manifest from a reader without holding the whole text (see [`scan`]).
    pub fn from_reader(reader: impl std::io::Read, origin: &Path) -> Result<Self, ArtifactError> {
        let raw = scan::manifest(reader).map_err(|e| match e {
            scan::ScanError::Io(source) => ArtifactError::Read {
                path: origin.to_owned(),
                source,
            },
            scan::ScanError::Json(source) => ArtifactError::Json {
                path: origin.to_owned(),
                kind: ArtifactKind::Manifest,
                source,
            },
        })?;
        raw.into_manifest(origin)
    }
}

/// The parts of `run_results.json` the planner reads.
#[derive(Debug, Clone, Serialize)]
pub struct RunResults {
    pub schema_version: u32,
    /// By unique id (a node appears once per run).
    pub results: HashMap<String, RunResult>,
}

/// One node's outcome in a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub unique_id: String,
    /// `success`, `error`, `skipped`, `pass`, `fail`, `warn`, `runtime error`, …
    pub status: String,
    /// Present from run_results v5 (dbt 1.5+) for nodes with a relation.
    pub relation_name: Option<String>,
}

impl RunResults {
    pub fn load(path: &Path) -> Result<Self, ArtifactError> {
        let bytes = read(path)?;
        Self::from_slice(&bytes, path)
    }

    pub fn from_slice(bytes: &[u8], origin: &Path) -> Result<Self, ArtifactError> {
        let raw: raw::RawRunResults =
            serde_json::from_slice(bytes).map_err(|source| ArtifactError::Json {
                path: origin.to_owned(),
                kind: ArtifactKind::RunResults,
                source,
            })?;
        raw.into_run_results(origin)
    }

    pub fn get(&self, unique_id: &str) -> Option<&RunResult> {
        self.results.get(unique_id)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, ArtifactError> {
    std::fs::read(path).map_err(|source| ArtifactError::Read {
        path: path.to_owned(),
        source,
    })
}

/// `https://schemas.getdbt.com/dbt/manifest/v12.json` → (`manifest`, 12).
fn schema_kind_and_version(url: &str) -> Option<(&str, u32)> {
    let mut parts = url.trim_end_matches(".json").rsplit('/');
    let version = parts.next()?.strip_prefix('v')?.parse().ok()?;
    let kind = parts.next()?;
    Some((kind, version))
}

fn check_version(
    url: Option<&str>,
    origin: &Path,
    kind: ArtifactKind,
    supported: std::ops::RangeInclusive<u32>,
) -> Result<u32, ArtifactError> {
    let expected = match kind {
        ArtifactKind::Manifest => "manifest",
        ArtifactKind::RunResults => "run-results",
    };
    let Some(url) = url else {
        return Err(ArtifactError::WrongKind {
            path: origin.to_owned(),
            expected: kind,
            found: "it has no metadata.dbt_schema_version".into(),
        });
    };
    match schema_kind_and_version(url) {
        Some((k, version)) if k == expected => {
            if supported.contains(&version) {
                Ok(version)
            } else {
                Err(ArtifactError::UnsupportedVersion {
                    path: origin.to_owned(),
                    kind,
                    version,
                    supported,
                })
            }
        }
        Some((k, version)) => Err(ArtifactError::WrongKind {
            path: origin.to_owned(),
            expected: kind,
            found: format!("its schema is {k} v{version}"),
        }),
        None => Err(ArtifactError::WrongKind {
            path: origin.to_owned(),
            expected: kind,
            found: format!("unrecognised dbt_schema_version `{url}`"),
        }),
    }
}

#[cfg(test)]
mod tests;
