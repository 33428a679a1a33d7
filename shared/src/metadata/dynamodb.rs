//! The metadata store on the stack's DynamoDB table (the same table as the configuration
//! store; `pk`/`sk` strings).
//!
//! | item | pk | sk | attributes |
//! |---|---|---|---|
//! | sync state of a configuration | `META#<config>` | `STATE` | `body` (JSON) |
//! | one model | `META#<config>` | `M#<name>#<unique id>` | `uid`, `name`, `h` (hash), `parts` (N), `body` |
//! | overflow of a large model | `META#<config>` | `M#<name>#<unique id>#P<k>` | `body` (JSON array of columns) |
//!
//! One item per model keeps a changed model a single write, and the name in the sort key
//! finds a model by name with one `Query` (`begins_with`). DynamoDB items are limited to
//! 400 KB: descriptions are truncated when parsed, and a model still larger than
//! [`MAX_BODY`] (thousands of documented columns) has its columns split over overflow
//! items. Writes go 25 to a `BatchWriteItem`, a few batches at a time, and unprocessed
//! items are retried with backoff.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, PutRequest, WriteRequest};
use futures::{StreamExt, TryStreamExt};

use super::{ColumnMetadata, MetadataError, MetadataStore, ModelMetadata, StoredDigest, SyncState};
use crate::config::ConfigId;

/// Largest `body` written to one item; the rest of the 400 KB is keys and attributes.
pub const MAX_BODY: usize = 350_000;
/// DynamoDB's limit of requests per `BatchWriteItem`.
const BATCH: usize = 25;
/// Batches in flight at once.
const CONCURRENCY: usize = 4;
/// Attempts per batch while DynamoDB returns unprocessed items.
const ATTEMPTS: u32 = 8;

type Item = HashMap<String, AttributeValue>;

/// Model metadata on DynamoDB.
#[derive(Clone)]
pub struct DynamoMetadata {
    client: Client,
    table: String,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn backend<E>(e: SdkError<E, HttpResponse>) -> MetadataError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let e = crate::aws_error::classify("DynamoDB", e);
    MetadataError::Backend {
        retryable: e.retryable,
        source: Box::new(e),
    }
}

fn pk(config: &ConfigId) -> String {
    format!("META#{config}")
}

fn model_sk(name: &str, uid: &str) -> String {
    format!("M#{name}#{uid}")
}

fn part_sk(main: &str, k: u32) -> String {
    format!("{main}#P{k}")
}

fn str_attr<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn corrupt(key: &str, problem: impl Into<String>) -> MetadataError {
    MetadataError::Corrupt {
        key: key.to_owned(),
        source: problem.into().into(),
    }
}

/// The items one model is stored as: the main item, then overflow parts.
pub fn model_items(config: &ConfigId, m: &ModelMetadata) -> Result<Vec<Item>, MetadataError> {
    let main_sk = model_sk(&m.name, &m.unique_id);
    let hash = format!("{:016x}", m.content_hash());
    let mut body = serde_json::to_string(m).expect("metadata serializes");
    let mut parts: Vec<String> = Vec::new();
    if body.len() > MAX_BODY {
        let mut head = m.clone();
        let columns = std::mem::take(&mut head.columns);
        let mut chunk: Vec<&ColumnMetadata> = Vec::new();
        let mut size = 2;
        for c in &columns {
            let len = serde_json::to_string(c).expect("column serializes").len() + 1;
            if size + len > MAX_BODY && !chunk.is_empty() {
                parts.push(serde_json::to_string(&chunk).expect("columns serialize"));
                chunk.clear();
                size = 2;
            }
            size += len;
            chunk.push(c);
        }
        if !chunk.is_empty() {
            parts.push(serde_json::to_string(&chunk).expect("columns serialize"));
        }
        body = serde_json::to_string(&head).expect("metadata serializes");
        if body.len() > MAX_BODY {
            // Meta is free-form; a model whose meta alone is this large keeps a marker.
            head.meta = serde_json::Map::from_iter([(
                "prdiff_truncated".to_owned(),
                serde_json::Value::String("meta too large to store".into()),
            )]);
            body = serde_json::to_string(&head).expect("metadata serializes");
        }
        if body.len() > MAX_BODY || parts.iter().any(|p| p.len() > MAX_BODY) {
            return Err(MetadataError::TooLarge {
                unique_id: m.unique_id.clone(),
                bytes: body.len(),
            });
        }
    }
    let mut items = Vec::with_capacity(1 + parts.len());
    items.push(HashMap::from([
        ("pk".to_owned(), s(pk(config))),
        ("sk".to_owned(), s(&main_sk)),
        ("uid".to_owned(), s(&m.unique_id)),
        ("name".to_owned(), s(&m.name)),
        ("h".to_owned(), s(hash)),
        (
            "parts".to_owned(),
            AttributeValue::N(parts.len().to_string()),
        ),
        ("body".to_owned(), s(body)),
    ]));
    for (k, p) in parts.into_iter().enumerate() {
        items.push(HashMap::from([
            ("pk".to_owned(), s(pk(config))),
            ("sk".to_owned(), s(part_sk(&main_sk, k as u32))),
            ("body".to_owned(), s(p)),
        ]));
    }
    Ok(items)
}

impl DynamoMetadata {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn key(&self, config: &ConfigId, sk: String) -> Item {
        HashMap::from([("pk".to_owned(), s(pk(config))), ("sk".to_owned(), s(sk))])
    }

    /// Writes requests in batches of 25, [`CONCURRENCY`] at a time, retrying unprocessed
    /// items with exponential backoff.
    async fn batch_write(&self, requests: Vec<WriteRequest>) -> Result<(), MetadataError> {
        let mut batches: Vec<Vec<WriteRequest>> = Vec::new();
        let mut it = requests.into_iter().peekable();
        while it.peek().is_some() {
            batches.push(it.by_ref().take(BATCH).collect());
        }
        futures::stream::iter(batches)
            .map(|b| self.write_one_batch(b))
            .buffer_unordered(CONCURRENCY)
            .try_collect::<()>()
            .await
    }

    async fn write_one_batch(&self, mut batch: Vec<WriteRequest>) -> Result<(), MetadataError> {
        for attempt in 0..ATTEMPTS {
            let out = self
                .client
                .batch_write_item()
                .request_items(&self.table, batch)
                .send()
                .await
                .map_err(backend)?;
            let left = out
                .unprocessed_items
                .and_then(|mut m| m.remove(&self.table))
                .unwrap_or_default();
            if left.is_empty() {
                return Ok(());
            }
            batch = left;
            let ms = 50 * 2u64.pow(attempt) + u64::from(rand::random::<u8>() % 50);
            tokio::time::sleep(Duration::from_millis(ms.min(5_000))).await;
        }
        Err(MetadataError::Backend {
            retryable: true,
            source: format!(
                "{} items still unprocessed after {ATTEMPTS} BatchWriteItem attempts",
                batch.len()
            )
            .into(),
        })
    }

    async fn query(
        &self,
        config: &ConfigId,
        prefix: &str,
        projection: Option<&str>,
    ) -> Result<Vec<Item>, MetadataError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut q = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :p)")
                .expression_attribute_values(":pk", s(pk(config)))
                .expression_attribute_values(":p", s(prefix))
                .set_exclusive_start_key(start.take());
            if let Some(p) = projection {
                q = q
                    .projection_expression(p)
                    .expression_attribute_names("#n", "name");
            }
            let out = q.send().await.map_err(backend)?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(items),
            }
        }
    }

    fn delete(&self, config: &ConfigId, sk: String) -> WriteRequest {
        WriteRequest::builder()
            .delete_request(
                DeleteRequest::builder()
                    .set_key(Some(self.key(config, sk)))
                    .build()
                    .expect("delete request has a key"),
            )
            .build()
    }

    /// Builds a model from its main item and its overflow items.
    fn assemble(
        main: &Item,
        parts: &HashMap<String, &Item>,
    ) -> Result<ModelMetadata, MetadataError> {
        let sk = str_attr(main, "sk").unwrap_or_default();
        let body = str_attr(main, "body").ok_or_else(|| corrupt(sk, "no body"))?;
        let mut m: ModelMetadata =
            serde_json::from_str(body).map_err(|e| MetadataError::Corrupt {
                key: sk.to_owned(),
                source: Box::new(e),
            })?;
        let n: u32 = main
            .get("parts")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        for k in 0..n {
            let psk = part_sk(sk, k);
            let part = parts
                .get(&psk)
                .and_then(|i| str_attr(i, "body"))
                .ok_or_else(|| corrupt(&psk, "overflow item missing"))?;
            let cols: Vec<ColumnMetadata> =
                serde_json::from_str(part).map_err(|e| MetadataError::Corrupt {
                    key: psk.clone(),
                    source: Box::new(e),
                })?;
            m.columns.extend(cols);
        }
        Ok(m)
    }
}

#[async_trait]
impl MetadataStore for DynamoMetadata {
    async fn state(&self, config: &ConfigId) -> Result<Option<SyncState>, MetadataError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(self.key(config, "STATE".into())))
            .consistent_read(true)
            .send()
            .await
            .map_err(backend)?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let body = str_attr(&item, "body").ok_or_else(|| corrupt("STATE", "no body"))?;
        serde_json::from_str(body)
            .map(Some)
            .map_err(|e| MetadataError::Corrupt {
                key: format!("{}/STATE", pk(config)),
                source: Box::new(e),
            })
    }

    async fn put_state(&self, config: &ConfigId, state: &SyncState) -> Result<(), MetadataError> {
        let mut item = self.key(config, "STATE".into());
        item.insert(
            "body".into(),
            s(serde_json::to_string(state).expect("state serializes")),
        );
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn digests(
        &self,
        config: &ConfigId,
    ) -> Result<HashMap<String, StoredDigest>, MetadataError> {
        let items = self
            .query(config, "M#", Some("sk, uid, #n, h, parts"))
            .await?;
        let mut out = HashMap::with_capacity(items.len());
        for item in items {
            // Overflow items carry no hash.
            let Some(h) = str_attr(&item, "h") else {
                continue;
            };
            let sk = str_attr(&item, "sk").unwrap_or_default();
            let hash = u64::from_str_radix(h, 16).map_err(|e| MetadataError::Corrupt {
                key: sk.to_owned(),
                source: Box::new(e),
            })?;
            let uid = str_attr(&item, "uid").ok_or_else(|| corrupt(sk, "no uid"))?;
            let name = str_attr(&item, "name").unwrap_or_default();
            let parts = item
                .get("parts")
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            out.insert(
                uid.to_owned(),
                StoredDigest {
                    name: name.to_owned(),
                    hash,
                    parts,
                },
            );
        }
        Ok(out)
    }

    async fn put_models(
        &self,
        config: &ConfigId,
        models: &[ModelMetadata],
        old: &HashMap<String, StoredDigest>,
    ) -> Result<(), MetadataError> {
        let mut requests = Vec::with_capacity(models.len());
        for m in models {
            let items = model_items(config, m)?;
            let new_parts = (items.len() - 1) as u32;
            if let Some(o) = old.get(&m.unique_id) {
                let old_sk = model_sk(&o.name, &m.unique_id);
                if o.name != m.name {
                    requests.push(self.delete(config, old_sk.clone()));
                    for k in 0..o.parts {
                        requests.push(self.delete(config, part_sk(&old_sk, k)));
                    }
                } else {
                    for k in new_parts..o.parts {
                        requests.push(self.delete(config, part_sk(&old_sk, k)));
                    }
                }
            }
            for item in items {
                requests.push(
                    WriteRequest::builder()
                        .put_request(
                            PutRequest::builder()
                                .set_item(Some(item))
                                .build()
                                .expect("put request has an item"),
                        )
                        .build(),
                );
            }
        }
        self.batch_write(requests).await
    }

    async fn remove_models(
        &self,
        config: &ConfigId,
        models: &[(String, StoredDigest)],
    ) -> Result<(), MetadataError> {
        let mut requests = Vec::new();
        for (uid, d) in models {
            let sk = model_sk(&d.name, uid);
            for k in 0..d.parts {
                requests.push(self.delete(config, part_sk(&sk, k)));
            }
            requests.push(self.delete(config, sk));
        }
        self.batch_write(requests).await
    }

    async fn models_named(
        &self,
        config: &ConfigId,
        name: &str,
    ) -> Result<Vec<ModelMetadata>, MetadataError> {
        // A unique id (`model.pkg.orders.v2`, `source.pkg.raw.orders`) holds the name as one
        // of its segments after the package: try those.
        let looks_like_uid = super::SYNCED_TYPES
            .iter()
            .any(|t| name.strip_prefix(t).is_some_and(|r| r.starts_with('.')));
        let prefixes: Vec<String> = if looks_like_uid {
            name.split('.')
                .skip(2)
                .map(|seg| model_sk(seg, name))
                .collect()
        } else {
            vec![format!("M#{name}#")]
        };
        let mut out = Vec::new();
        for prefix in prefixes {
            let items = self.query(config, &prefix, None).await?;
            let parts: HashMap<String, &Item> = items
                .iter()
                .filter(|i| !i.contains_key("h"))
                .filter_map(|i| Some((str_attr(i, "sk")?.to_owned(), i)))
                .collect();
            for main in items.iter().filter(|i| i.contains_key("h")) {
                if looks_like_uid && str_attr(main, "uid") != Some(name) {
                    continue;
                }
                out.push(Self::assemble(main, &parts)?);
            }
            if !out.is_empty() {
                break;
            }
        }
        out.sort_by(|a, b| a.unique_id.cmp(&b.unique_id));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_with_thousands_of_long_column_descriptions_is_split_within_the_item_limit() {
        let mut m = ModelMetadata {
            unique_id: "model.shop.wide".into(),
            name: "wide".into(),
            resource_type: "model".into(),
            package_name: "shop".into(),
            relation: None,
            materialization: Some("table".into()),
            description: "x".repeat(100_000),
            columns: (0..3000)
                .map(|i| ColumnMetadata {
                    name: format!("column_{i}"),
                    description: "d".repeat(5_000),
                    data_type: Some("text".into()),
                })
                .collect(),
            tags: vec![],
            meta: Default::default(),
            owner: None,
            group: None,
        };
        m.truncate_texts();
        let config = ConfigId::parse("main").unwrap();
        let items = model_items(&config, &m).unwrap();
        assert!(items.len() > 1);
        for i in &items {
            assert!(str_attr(i, "body").unwrap().len() <= MAX_BODY);
        }
        let parts: HashMap<String, &Item> = items[1..]
            .iter()
            .map(|i| (str_attr(i, "sk").unwrap().to_owned(), i))
            .collect();
        let back = DynamoMetadata::assemble(&items[0], &parts).unwrap();
        assert_eq!(back, m);
        assert!(back.description.ends_with(super::super::TRUNCATED));
    }
}
