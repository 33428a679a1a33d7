//! A lean reader of `manifest.json` and `catalog.json` for metadata: only the fields that
//! are stored are deserialized; compiled SQL, raw code, depends_on, macros, docs and every
//! other field are skipped by serde without being allocated. Fields a dbt version writes
//! as `null` or leaves out take their defaults.

use std::collections::HashMap;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, de::DeserializeOwned};

use super::{ColumnMetadata, ModelMetadata, SYNCED_TYPES};

/// Why an artifact could not be read for metadata. Never retryable: the bytes stay bad.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("manifest.json is not a valid dbt manifest")]
    Manifest(#[source] serde_json::Error),
    #[error("catalog.json is not a valid dbt catalog")]
    Catalog(#[source] serde_json::Error),
}

type JsonMap = serde_json::Map<String, serde_json::Value>;

fn null_default<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(
    d: D,
) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A JSON object read into a `Vec`, keeping the file's order (columns are in YAML order).
struct Ordered<T>(Vec<(String, T)>);

impl<T> Default for Ordered<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Ordered<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: DeserializeOwned> Visitor<'de> for V<T> {
            type Value = Ordered<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Ordered(Vec::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(m.size_hint().unwrap_or(0));
                while let Some((k, v)) = m.next_entry::<String, T>()? {
                    out.push((k, v));
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LeanMetadata {
    #[serde(deserialize_with = "null_default")]
    generated_at: String,
}

#[derive(Deserialize)]
struct LeanManifest {
    #[serde(default, deserialize_with = "null_default")]
    metadata: LeanMetadata,
    #[serde(default, deserialize_with = "null_default")]
    nodes: Ordered<LeanNode>,
    #[serde(default, deserialize_with = "null_default")]
    sources: Ordered<LeanNode>,
    #[serde(default, deserialize_with = "null_default")]
    groups: HashMap<String, LeanGroup>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LeanNode {
    #[serde(deserialize_with = "null_default")]
    unique_id: String,
    #[serde(deserialize_with = "null_default")]
    name: String,
    #[serde(deserialize_with = "null_default")]
    resource_type: String,
    #[serde(deserialize_with = "null_default")]
    package_name: String,
    database: Option<String>,
    schema: Option<String>,
    alias: Option<String>,
    /// Sources name their table here.
    identifier: Option<String>,
    relation_name: Option<String>,
    #[serde(deserialize_with = "null_default")]
    description: String,
    #[serde(deserialize_with = "null_default")]
    columns: Ordered<LeanColumn>,
    #[serde(deserialize_with = "null_default")]
    tags: Vec<String>,
    #[serde(deserialize_with = "null_default")]
    meta: JsonMap,
    group: Option<String>,
    #[serde(deserialize_with = "null_default")]
    config: LeanConfig,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LeanConfig {
    materialized: Option<String>,
    #[serde(deserialize_with = "null_default")]
    meta: JsonMap,
    group: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LeanColumn {
    #[serde(deserialize_with = "null_default")]
    name: String,
    #[serde(deserialize_with = "null_default")]
    description: String,
    data_type: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LeanGroup {
    #[serde(deserialize_with = "null_default")]
    name: String,
    #[serde(deserialize_with = "null_default")]
    owner: JsonMap,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LeanCatalog {
    #[serde(deserialize_with = "null_default")]
    nodes: HashMap<String, CatalogTable>,
    #[serde(deserialize_with = "null_default")]
    sources: HashMap<String, CatalogTable>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CatalogTable {
    #[serde(deserialize_with = "null_default")]
    columns: Ordered<CatalogColumn>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CatalogColumn {
    #[serde(rename = "type")]
    data_type: Option<String>,
    #[serde(deserialize_with = "null_default")]
    name: String,
}

/// What a manifest (and catalog) yield.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    /// `metadata.generated_at`.
    pub generated_at: Option<String>,
    /// Synced resources, sorted by unique id, long texts truncated.
    pub models: Vec<ModelMetadata>,
}

/// A string out of a `meta.owner` value: a string as is, `{name|email}` objects by name.
fn owner_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        serde_json::Value::Object(o) => o
            .get("name")
            .or_else(|| o.get("email"))
            .and_then(owner_text),
        serde_json::Value::Array(a) => {
            let names: Vec<String> = a.iter().filter_map(owner_text).collect();
            (!names.is_empty()).then(|| names.join(", "))
        }
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// Reads the metadata of every model, seed, snapshot and source.
pub fn parse(manifest: &[u8], catalog: Option<&[u8]>) -> Result<Parsed, ParseError> {
    let m: LeanManifest = serde_json::from_slice(manifest).map_err(ParseError::Manifest)?;
    let catalog: LeanCatalog = match catalog {
        Some(bytes) => serde_json::from_slice(bytes).map_err(ParseError::Catalog)?,
        None => LeanCatalog::default(),
    };
    let group_owner: HashMap<&str, String> = m
        .groups
        .values()
        .filter_map(|g| {
            let owner = g
                .owner
                .get("name")
                .or_else(|| g.owner.get("email"))
                .and_then(owner_text)?;
            Some((g.name.as_str(), owner))
        })
        .collect();
    let mut models = Vec::new();
    for (key, n) in m.nodes.0.into_iter().chain(m.sources.0) {
        if !SYNCED_TYPES.contains(&n.resource_type.as_str()) {
            continue;
        }
        let unique_id = if n.unique_id.is_empty() {
            key
        } else {
            n.unique_id
        };
        let mut meta = n.config.meta;
        // Node-level meta (YAML `meta:`) is the older spelling; config meta wins.
        for (k, v) in n.meta {
            meta.entry(k).or_insert(v);
        }
        let group = n.group.or(n.config.group);
        let owner = meta
            .get("owner")
            .and_then(owner_text)
            .or_else(|| group.as_deref().and_then(|g| group_owner.get(g).cloned()));
        let table = catalog
            .nodes
            .get(&unique_id)
            .or_else(|| catalog.sources.get(&unique_id));
        let mut columns: Vec<ColumnMetadata> = n
            .columns
            .0
            .into_iter()
            .map(|(k, c)| ColumnMetadata {
                name: if c.name.is_empty() { k } else { c.name },
                description: c.description,
                data_type: c.data_type.filter(|t| !t.is_empty()),
            })
            .collect();
        if let Some(t) = table {
            for (k, cc) in &t.columns.0 {
                let name = if cc.name.is_empty() { k } else { &cc.name };
                match columns
                    .iter_mut()
                    .find(|c| c.name.eq_ignore_ascii_case(name))
                {
                    Some(c) => c.data_type = cc.data_type.clone().or(c.data_type.take()),
                    None => columns.push(ColumnMetadata {
                        name: name.clone(),
                        description: String::new(),
                        data_type: cc.data_type.clone(),
                    }),
                }
            }
        }
        let relation = n.relation_name.filter(|r| !r.is_empty()).or_else(|| {
            let table = n.alias.or(n.identifier)?;
            let parts: Vec<String> = [n.database, n.schema, Some(table)]
                .into_iter()
                .flatten()
                .collect();
            Some(parts.join("."))
        });
        let materialization = match n.resource_type.as_str() {
            "model" | "snapshot" => n.config.materialized,
            _ => None,
        };
        let mut model = ModelMetadata {
            // Ephemeral models have no relation, whatever a dbt version writes.
            relation: if materialization.as_deref() == Some("ephemeral") {
                None
            } else {
                relation
            },
            unique_id,
            name: n.name,
            resource_type: n.resource_type,
            package_name: n.package_name,
            materialization,
            description: n.description,
            columns,
            tags: n.tags,
            meta,
            owner,
            group,
        };
        model.truncate_texts();
        models.push(model);
    }
    models.sort_by(|a, b| a.unique_id.cmp(&b.unique_id));
    Ok(Parsed {
        generated_at: Some(m.metadata.generated_at).filter(|g| !g.is_empty()),
        models,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"{
      "metadata": {"generated_at": "2025-10-02T16:48:38Z", "dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json"},
      "nodes": {
        "model.shop.orders": {"unique_id": "model.shop.orders", "name": "orders", "resource_type": "model",
          "package_name": "shop", "database": "db", "schema": "prod", "alias": "orders",
          "relation_name": "\"db\".\"prod\".\"orders\"", "description": "One row per order",
          "columns": {"order_id": {"name": "order_id", "description": "The key", "data_type": null},
                      "amount": {"name": "amount", "description": "", "data_type": "numeric"}},
          "tags": ["finance"], "meta": {}, "group": "finance",
          "config": {"materialized": "table", "meta": {"tier": 1}}, "raw_code": "select 1",
          "compiled_code": "select 1", "depends_on": {"nodes": []}},
        "model.shop.stg": {"unique_id": "model.shop.stg", "name": "stg", "resource_type": "model",
          "package_name": "shop", "relation_name": null, "description": null, "columns": null,
          "config": {"materialized": "ephemeral", "meta": {"owner": "ana@example.com"}}},
        "test.shop.not_null": {"unique_id": "test.shop.not_null", "name": "not_null", "resource_type": "test"}
      },
      "sources": {
        "source.shop.raw.payments": {"unique_id": "source.shop.raw.payments", "name": "payments",
          "resource_type": "source", "package_name": "shop", "database": "db", "schema": "raw",
          "identifier": "payments_v2", "description": "Raw payments", "columns": {}}
      },
      "groups": {"group.shop.finance": {"name": "finance", "owner": {"name": "Finance team", "email": "fin@example.com"}}}
    }"#;

    const CATALOG: &str = r#"{"nodes": {"model.shop.orders": {"columns": {
        "ORDER_ID": {"type": "integer", "index": 1, "name": "ORDER_ID"},
        "AMOUNT": {"type": "numeric(10,2)", "index": 2, "name": "AMOUNT"},
        "CREATED_AT": {"type": "timestamp", "index": 3, "name": "CREATED_AT"}}}}, "sources": {}}"#;

    #[test]
    fn models_sources_owners_and_catalog_types_are_read() {
        let p = parse(MANIFEST.as_bytes(), Some(CATALOG.as_bytes())).unwrap();
        assert_eq!(p.generated_at.as_deref(), Some("2025-10-02T16:48:38Z"));
        let ids: Vec<&str> = p.models.iter().map(|m| m.unique_id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "model.shop.orders",
                "model.shop.stg",
                "source.shop.raw.payments"
            ]
        );
        let orders = &p.models[0];
        assert_eq!(orders.owner.as_deref(), Some("Finance team"));
        assert_eq!(orders.materialization.as_deref(), Some("table"));
        assert_eq!(
            orders.relation.as_deref(),
            Some("\"db\".\"prod\".\"orders\"")
        );
        assert_eq!(orders.meta["tier"], 1);
        let cols: Vec<(&str, Option<&str>)> = orders
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.data_type.as_deref()))
            .collect();
        assert_eq!(
            cols,
            [
                ("order_id", Some("integer")),
                ("amount", Some("numeric(10,2)")),
                ("CREATED_AT", Some("timestamp"))
            ]
        );
        let stg = &p.models[1];
        assert_eq!(stg.owner.as_deref(), Some("ana@example.com"));
        assert_eq!(stg.relation, None);
        assert_eq!(p.models[2].relation.as_deref(), Some("db.raw.payments_v2"));
    }

    #[test]
    fn every_fixture_manifest_version_reads() {
        let dir = crate::test_fixtures().join("dbt_artifacts/manifests");
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut read = 0;
        for e in entries {
            let path = e.unwrap().path();
            let p = parse(&std::fs::read(&path).unwrap(), None)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(
                p.models.iter().any(|m| m.resource_type == "model"),
                "{}",
                path.display()
            );
            read += 1;
        }
        assert_eq!(read, 6, "the v7 to v12 manifests");
    }
}
