//! The JSON shapes of dbt's artifacts, reduced to the fields prdiff reads. Every field
//! has a default, so a field a dbt version omits (or writes as null) is not an error.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::hashed::{self, UnrenderedConfig};
use super::{
    ArtifactError, ArtifactKind, Macro, Manifest, Node, NodeConfig, RunResult, RunResults,
};

type JsonMap = serde_json::Map<String, serde_json::Value>;

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawMetadata {
    dbt_schema_version: Option<String>,
    dbt_version: Option<String>,
    adapter_type: Option<String>,
}

/// The manifest sections the planner reads; filled by [`super::scan`].
#[derive(Default)]
pub(super) struct RawManifest {
    pub(super) metadata: RawMetadata,
    pub(super) nodes: HashMap<String, Node>,
    pub(super) macros: HashMap<String, Macro>,
    pub(super) sources: HashMap<String, SourceDigest>,
    pub(super) disabled: HashMap<String, Vec<RawDisabled>>,
    pub(super) child_map: HashMap<String, Vec<String>>,
}

#[derive(Deserialize)]
pub(super) struct RawDisabled {
    #[serde(default)]
    resource_type: String,
}

/// What dbt-core 1.11 compares of a source (`SourceDefinition.same_contents`), hashed:
/// database and schema as rendered (`state_modified_compare_more_unrendered_values` is off
/// by default), identifier, fqn, quoting, freshness and `loaded_at_field`, external, and
/// the whole unrendered config (source configs exclude nothing from the comparison, so
/// `meta` counts, as dbt ≥ 1.10 writes it there). Descriptions and tags outside the config
/// do not count.
#[derive(Deserialize, Default)]
pub(crate) struct RawSource {
    #[serde(default)]
    database: serde_json::Value,
    #[serde(default)]
    schema: serde_json::Value,
    #[serde(default)]
    identifier: serde_json::Value,
    #[serde(default)]
    fqn: serde_json::Value,
    #[serde(default)]
    quoting: serde_json::Value,
    #[serde(default)]
    freshness: serde_json::Value,
    #[serde(default)]
    loaded_at_field: serde_json::Value,
    #[serde(default)]
    external: serde_json::Value,
    #[serde(default)]
    unrendered_config: serde_json::Value,
}

/// A source reduced to the hash of what makes it modified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(from = "RawSource")]
pub struct SourceDigest(pub u64);

impl From<RawSource> for SourceDigest {
    fn from(r: RawSource) -> Self {
        let mut canonical = Vec::new();
        for v in [
            &r.database,
            &r.schema,
            &r.identifier,
            &r.fqn,
            &r.quoting,
            &r.freshness,
            &r.loaded_at_field,
            &r.external,
            &r.unrendered_config,
        ] {
            hashed::write_canonical(v, &mut canonical);
            canonical.push(0);
        }
        SourceDigest(xxhash_rust::xxh3::xxh3_64(&canonical))
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct RawMacro {
    #[serde(default, deserialize_with = "hashed::text")]
    macro_sql: u64,
    #[serde(default, deserialize_with = "hashed::null_default")]
    depends_on: RawDependsOn,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawDependsOn {
    #[serde(deserialize_with = "hashed::null_default")]
    nodes: Vec<String>,
    #[serde(deserialize_with = "hashed::null_default")]
    macros: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawChecksum {
    name: String,
    checksum: String,
}

#[derive(Deserialize)]
pub(crate) struct RawNode {
    #[serde(default)]
    unique_id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    resource_type: String,
    #[serde(default)]
    package_name: String,
    #[serde(default)]
    database: Option<String>,
    #[serde(default)]
    schema: Option<String>,
    #[serde(default)]
    alias: Option<String>,
    #[serde(default)]
    relation_name: Option<String>,
    #[serde(default, deserialize_with = "hashed::null_default")]
    fqn: Vec<String>,
    #[serde(default, deserialize_with = "hashed::scalar_string")]
    version: Option<String>,
    #[serde(default, deserialize_with = "hashed::scalar_string")]
    latest_version: Option<String>,
    #[serde(default, deserialize_with = "hashed::scalar_string")]
    access: Option<String>,
    #[serde(default, deserialize_with = "hashed::scalar_string")]
    deprecation_date: Option<String>,
    #[serde(default, deserialize_with = "hashed::text")]
    raw_code: u64,
    #[serde(default, deserialize_with = "hashed::null_default")]
    checksum: RawChecksum,
    #[serde(default, deserialize_with = "hashed::text")]
    description: u64,
    #[serde(default, deserialize_with = "hashed::columns")]
    columns: Vec<Column>,
    #[serde(default, deserialize_with = "hashed::null_default")]
    meta: JsonMap,
    #[serde(default, deserialize_with = "hashed::string_or_list")]
    tags: Vec<String>,
    #[serde(default, deserialize_with = "hashed::null_default")]
    config: RawConfig,
    #[serde(default, deserialize_with = "hashed::unrendered_config")]
    unrendered_config: UnrenderedConfig,
    #[serde(default)]
    contract: Option<Contract>,
    #[serde(default, deserialize_with = "hashed::null_default")]
    constraints: Vec<Constraint>,
    #[serde(default, deserialize_with = "hashed::null_default")]
    depends_on: RawDependsOn,
    #[serde(default)]
    test_metadata: Option<TestMetadata>,
    #[serde(default)]
    column_name: Option<String>,
    #[serde(default)]
    attached_node: Option<String>,
    #[serde(default)]
    original_file_path: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    materialized: Option<String>,
    #[serde(default, deserialize_with = "hashed::null_default")]
    persist_docs: JsonMap,
    #[serde(default, deserialize_with = "hashed::string_or_list")]
    unique_key: Vec<String>,
    #[serde(default, deserialize_with = "hashed::null_default")]
    meta: JsonMap,
    #[serde(default)]
    contract: Option<RawContractConfig>,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            enabled: true,
            materialized: None,
            persist_docs: JsonMap::new(),
            unique_key: Vec::new(),
            meta: JsonMap::new(),
            contract: None,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawContractConfig {
    enforced: bool,
}

/// A column as the yaml documents it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Column {
    /// The column's `name` (its key in `columns` when the name is missing).
    #[serde(default)]
    pub name: String,
    #[serde(default, rename = "description", deserialize_with = "hashed::text")]
    pub description_hash: u64,
    #[serde(default)]
    pub data_type: Option<String>,
    #[serde(default, deserialize_with = "hashed::null_default")]
    pub constraints: Vec<Constraint>,
    #[serde(default, deserialize_with = "hashed::null_default")]
    pub meta: JsonMap,
    #[serde(default, deserialize_with = "hashed::string_or_list")]
    pub tags: Vec<String>,
}

/// A model or column constraint (`primary_key`, `not_null`, `unique`, …).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Constraint {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default, deserialize_with = "hashed::null_default")]
    pub columns: Vec<String>,
}

/// A node's contract: whether it is enforced and dbt's checksum of its columns and constraints.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Contract {
    #[serde(default)]
    pub enforced: bool,
    #[serde(default)]
    pub checksum: Option<String>,
}

/// Which generic test a test node runs, with its arguments.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TestMetadata {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default, deserialize_with = "hashed::null_default")]
    pub kwargs: JsonMap,
}

impl RawManifest {
    pub(super) fn into_manifest(self, origin: &Path) -> Result<Manifest, ArtifactError> {
        let schema_version = super::check_version(
            self.metadata.dbt_schema_version.as_deref(),
            origin,
            ArtifactKind::Manifest,
            super::MANIFEST_VERSIONS,
        )?;
        let mut nodes = self.nodes;
        for (id, node) in nodes.iter_mut() {
            if node.unique_id.is_empty() {
                node.unique_id = id.clone();
            }
        }
        let macros = self.macros;
        let disabled = self
            .disabled
            .into_iter()
            .map(|(id, versions)| {
                let kind = versions
                    .into_iter()
                    .next()
                    .map(|d| d.resource_type)
                    .unwrap_or_default();
                (id, kind)
            })
            .collect();
        Ok(Manifest {
            schema_version,
            dbt_version: self.metadata.dbt_version,
            adapter_type: self.metadata.adapter_type,
            nodes,
            disabled,
            macros,
            sources: self.sources,
            child_map: self.child_map,
        })
    }
}

impl From<RawMacro> for Macro {
    fn from(m: RawMacro) -> Self {
        Macro {
            sql_hash: m.macro_sql,
            depends_on: m.depends_on.macros,
        }
    }
}

impl From<RawNode> for Node {
    fn from(raw: RawNode) -> Self {
        raw.into_node()
    }
}

impl RawNode {
    fn into_node(self) -> Node {
        let persist = |k: &str| self.config.persist_docs.get(k).is_some_and(truthy);
        let contract_enforced = self.config.contract.as_ref().is_some_and(|c| c.enforced);
        let (persist_docs_relation, persist_docs_columns) =
            (persist("relation"), persist("columns"));
        let config = NodeConfig {
            enabled: self.config.enabled,
            materialized: self.config.materialized,
            persist_docs_relation,
            persist_docs_columns,
            unique_key: self.config.unique_key,
            meta: self.config.meta,
            contract_enforced,
        };
        let contract = self.contract.unwrap_or(Contract {
            enforced: contract_enforced,
            checksum: None,
        });
        Node {
            unique_id: self.unique_id,
            name: self.name,
            resource_type: self.resource_type,
            package_name: self.package_name,
            database: self.database,
            schema: self.schema,
            alias: self.alias,
            relation_name: self.relation_name,
            fqn: self.fqn,
            version: self.version,
            latest_version: self.latest_version,
            access: self.access,
            deprecation_date: self.deprecation_date,
            raw_code_hash: self.raw_code,
            checksum: (self.checksum.name, self.checksum.checksum),
            description_hash: self.description,
            columns: self.columns,
            meta: self.meta,
            tags: self.tags,
            config,
            unrendered_config_hash: self.unrendered_config.hash,
            unrendered_relation: self.unrendered_config.relation,
            contract,
            constraints: self.constraints,
            depends_on_nodes: self.depends_on.nodes,
            depends_on_macros: self.depends_on.macros,
            test_metadata: self.test_metadata,
            column_name: self.column_name,
            attached_node: self.attached_node,
            original_file_path: self.original_file_path,
        }
    }
}

/// Python truthiness for the JSON values dbt writes into flags such as `persist_docs`.
pub(crate) fn truthy(v: &serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

#[derive(Deserialize)]
pub(super) struct RawRunResults {
    #[serde(default, deserialize_with = "hashed::null_default")]
    metadata: RawMetadata,
    #[serde(default, deserialize_with = "hashed::null_default")]
    results: Vec<RawRunResult>,
}

#[derive(Deserialize)]
struct RawRunResult {
    #[serde(default)]
    unique_id: String,
    #[serde(default, deserialize_with = "hashed::scalar_string")]
    status: Option<String>,
    #[serde(default)]
    relation_name: Option<String>,
}

impl RawRunResults {
    pub(super) fn into_run_results(self, origin: &Path) -> Result<RunResults, ArtifactError> {
        let schema_version = super::check_version(
            self.metadata.dbt_schema_version.as_deref(),
            origin,
            ArtifactKind::RunResults,
            super::RUN_RESULTS_VERSIONS,
        )?;
        let results = self
            .results
            .into_iter()
            .map(|r| {
                let result = RunResult {
                    unique_id: r.unique_id.clone(),
                    status: r.status.unwrap_or_default(),
                    relation_name: r.relation_name,
                };
                (r.unique_id, result)
            })
            .collect();
        Ok(RunResults {
            schema_version,
            results,
        })
    }
}
