//! Both store ports on one DynamoDB table (single-table design).
//!
//! Key schema: partition key `pk` (S), sort key `sk` (S); TTL attribute `expires_at`.
//!
//! | item | pk | sk | attributes |
//! |---|---|---|---|
//! | CI configuration | `CONFIG` | name | `body` (JSON) |
//! | data source | `DATASOURCE` | id | `body` |
//! | CI run | `RUN#<id>` | `RUN` | `state`, `body` |
//! | current run of a PR | `SLOT#<config>#<provider>#<repo>#<n>` | `SLOT` | `run_id` |
//! | delivery claim | `DELIVERY#<key>` | `DELIVERY` | `expires_at` (N, TTL) |
//! | fan-out of a run | `RUN#<id>` | `FANOUT` | `total` (N), `summary`, `done` (SS of models) |
//! | work item of a model | `RUN#<id>` | `WORK#<model>` | `body` |
//! | result of a model | `RUN#<id>` | `RESULT#<model>` | `body` |
//!
//! A model counts as done by adding it to the fan-out's `done` set under the condition
//! that it is not there yet: one `UpdateItem`, so a redelivered diff message cannot count
//! twice and exactly one writer sees the set reach `total`.
//!
//! Configurations share one partition so listing them is one Query; there are tens, not
//! millions. Races between deliveries are settled by condition expressions and
//! `TransactWriteItems`, never by read-then-write alone.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, Put,
    ScalarAttributeType, TimeToLiveSpecification, TransactWriteItem,
};

use super::{ConfigStore, RunStore, StoreError, decode_run_field, encode_run_field, unix_now};
use crate::config::{CiConfig, ConfigId, DataSource, DataSourceId};
use crate::run::{
    CiRun, FanOut, PrKey, RecordOutcome, RunId, RunState, StartOutcome, StoredOutcome, Summary,
    WorkItem, check_transition,
};

/// How often `start_run` re-reads and retries after losing a race. Races are between
/// deliveries of one PR (a handful at most), so a few jittered retries settle them.
const START_ATTEMPTS: usize = 8;

/// Configuration store and run store on DynamoDB.
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

type Item = HashMap<String, AttributeValue>;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn backend<E>(e: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let e = crate::aws_error::classify("DynamoDB", e);
    StoreError::Backend {
        retryable: e.retryable,
        source: Box::new(e),
    }
}

fn body_of<T: serde::de::DeserializeOwned>(key: &str, item: &Item) -> Result<T, StoreError> {
    let corrupt = |source: Box<dyn std::error::Error + Send + Sync>| StoreError::Corrupt {
        key: key.to_owned(),
        source,
    };
    let body = item
        .get("body")
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| corrupt("item has no string attribute `body`".into()))?;
    serde_json::from_str(body).map_err(|e| corrupt(Box::new(e)))
}

/// Decodes the JSON string attribute `attr` of a run's item; `field` names it in errors.
fn json_field<T: serde::de::DeserializeOwned>(
    id: &RunId,
    item: &Item,
    attr: &str,
    field: &str,
) -> Result<T, StoreError> {
    match item.get(attr).and_then(|v| v.as_s().ok()) {
        Some(json) => decode_run_field(id, field, json),
        None => Err(StoreError::Corrupt {
            key: format!("{field} of run {id}"),
            source: format!("item has no string attribute `{attr}`").into(),
        }),
    }
}

fn encode<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("store items serialize")
}

fn run_pk(id: &str) -> String {
    format!("RUN#{id}")
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// The table this store uses.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table with its TTL (for `prdiff serve --aws`, tests and first deploys
    /// outside SAM); an existing table is left as it is.
    pub async fn create_table(&self) -> Result<(), StoreError> {
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .expect("key schema")
        };
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute definition")
        };
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key("pk", KeyType::Hash))
            .key_schema(key("sk", KeyType::Range))
            .attribute_definitions(attr("pk"))
            .attribute_definitions(attr("sk"))
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_resource_in_use_exception()) =>
            {
                return Ok(());
            }
            Err(e) => return Err(backend(e)),
        }
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name("expires_at")
                    .enabled(true)
                    .build()
                    .expect("ttl spec"),
            )
            .send()
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(backend)?;
        Ok(out.item)
    }

    async fn query_partition(&self, pk: &str) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(pk))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(backend)?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(items),
            }
        }
    }

    /// The JSON body of one item, if it exists (`sk` names it in errors).
    async fn get_body<T: serde::de::DeserializeOwned>(
        &self,
        pk: &str,
        sk: &str,
    ) -> Result<Option<T>, StoreError> {
        match self.get(pk, sk).await? {
            Some(item) => Ok(Some(body_of(sk, &item)?)),
            None => Ok(None),
        }
    }

    /// The JSON bodies of every item in a partition.
    async fn list_bodies<T: serde::de::DeserializeOwned>(
        &self,
        pk: &str,
    ) -> Result<Vec<T>, StoreError> {
        self.query_partition(pk)
            .await?
            .iter()
            .map(|i| body_of(pk, i))
            .collect()
    }

    async fn delete(&self, pk: &str, sk: &str) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(backend)?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }

    async fn read_run(&self, id: &str) -> Result<Option<CiRun>, StoreError> {
        // Errors name the run, not its sort key.
        match self.get(&run_pk(id), "RUN").await? {
            Some(item) => Ok(Some(body_of(id, &item)?)),
            None => Ok(None),
        }
    }

    fn run_item(run: &CiRun) -> Item {
        HashMap::from([
            ("pk".to_owned(), s(run_pk(run.id.as_str()))),
            ("sk".to_owned(), s("RUN")),
            ("state".to_owned(), s(run.state.as_str())),
            ("body".to_owned(), s(encode(run))),
        ])
    }

    fn put(&self, item: Item) -> aws_sdk_dynamodb::types::builders::PutBuilder {
        Put::builder().table_name(&self.table).set_item(Some(item))
    }

    /// One attempt of `start_run`; `Ok(None)` when a condition failed (raced).
    async fn try_start_run(&self, run: &CiRun) -> Result<Option<StartOutcome>, StoreError> {
        let slot = run.pr.slot(&run.config_id);
        let slot_pk = format!("SLOT#{slot}");
        let current_id = self
            .get(&slot_pk, "SLOT")
            .await?
            .and_then(|i| i.get("run_id").and_then(|v| v.as_s().ok()).cloned());
        let old = match &current_id {
            Some(id) => self.read_run(id).await?,
            None => None,
        };
        let mut writes = Vec::with_capacity(3);
        let mut superseded = None;
        if let Some(mut old) = old.filter(|o| !o.state.is_final()) {
            if old.head_sha == run.head_sha && old.base_sha == run.base_sha {
                return Ok(Some(StartOutcome::AlreadyOpen(Box::new(old))));
            }
            let was = old.state;
            old.state = RunState::Superseded;
            old.reason = Some(format!(
                "superseded by {} (run {})",
                run.head_sha
                    .as_str()
                    .get(..7)
                    .unwrap_or(run.head_sha.as_str()),
                run.id
            ));
            old.updated_at = unix_now();
            writes.push(
                TransactWriteItem::builder()
                    .put(
                        self.put(Self::run_item(&old))
                            .condition_expression("#st = :was")
                            .expression_attribute_names("#st", "state")
                            .expression_attribute_values(":was", s(was.as_str()))
                            .build()
                            .expect("put"),
                    )
                    .build(),
            );
            superseded = Some(old.id);
        }
        writes.push(
            TransactWriteItem::builder()
                .put(
                    self.put(Self::run_item(run))
                        .condition_expression("attribute_not_exists(pk)")
                        .build()
                        .expect("put"),
                )
                .build(),
        );
        let slot_item = HashMap::from([
            ("pk".to_owned(), s(&slot_pk)),
            ("sk".to_owned(), s("SLOT")),
            ("run_id".to_owned(), s(run.id.as_str())),
        ]);
        let slot_put = match &current_id {
            Some(id) => self
                .put(slot_item)
                .condition_expression("run_id = :cur")
                .expression_attribute_values(":cur", s(id)),
            None => self
                .put(slot_item)
                .condition_expression("attribute_not_exists(pk)"),
        };
        writes.push(
            TransactWriteItem::builder()
                .put(slot_put.build().expect("put"))
                .build(),
        );
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(writes))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Some(StartOutcome::Started { superseded })),
            Err(e) => {
                if let Some(TransactWriteItemsError::TransactionCanceledException(c)) =
                    e.as_service_error()
                {
                    let raced = c.cancellation_reasons().iter().any(|r| {
                        matches!(
                            r.code(),
                            Some("ConditionalCheckFailed" | "TransactionConflict")
                        )
                    });
                    if raced {
                        return Ok(None);
                    }
                }
                Err(backend(e))
            }
        }
    }
}

#[async_trait]
impl ConfigStore for DynamoStore {
    async fn put_all(
        &self,
        sources: &[DataSource],
        configs: &[CiConfig],
    ) -> Result<(), StoreError> {
        let mut writes = Vec::new();
        for ds in sources {
            let item = HashMap::from([
                ("pk".to_owned(), s("DATASOURCE")),
                ("sk".to_owned(), s(ds.id.as_str())),
                ("body".to_owned(), s(encode(ds))),
            ]);
            writes.push(
                TransactWriteItem::builder()
                    .put(self.put(item).build().expect("put"))
                    .build(),
            );
        }
        for c in configs {
            let item = HashMap::from([
                ("pk".to_owned(), s("CONFIG")),
                ("sk".to_owned(), s(c.name.as_str())),
                ("body".to_owned(), s(encode(c))),
            ]);
            writes.push(
                TransactWriteItem::builder()
                    .put(self.put(item).build().expect("put"))
                    .build(),
            );
        }
        if writes.is_empty() {
            return Ok(());
        }
        if writes.len() > 100 {
            return Err(StoreError::Conflict(
                "one apply may write at most 100 items (DynamoDB transaction limit)".into(),
            ));
        }
        self.client
            .transact_write_items()
            .set_transact_items(Some(writes))
            .send()
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn get_config(&self, id: &ConfigId) -> Result<Option<CiConfig>, StoreError> {
        self.get_body("CONFIG", id.as_str()).await
    }

    async fn list_configs(&self) -> Result<Vec<CiConfig>, StoreError> {
        self.list_bodies("CONFIG").await
    }

    async fn get_data_source(&self, id: &DataSourceId) -> Result<Option<DataSource>, StoreError> {
        self.get_body("DATASOURCE", id.as_str()).await
    }

    async fn list_data_sources(&self) -> Result<Vec<DataSource>, StoreError> {
        self.list_bodies("DATASOURCE").await
    }

    async fn delete_config(&self, id: &ConfigId) -> Result<bool, StoreError> {
        self.delete("CONFIG", id.as_str()).await
    }

    async fn delete_data_source(&self, id: &DataSourceId) -> Result<bool, StoreError> {
        self.delete("DATASOURCE", id.as_str()).await
    }
}

#[async_trait]
impl RunStore for DynamoStore {
    async fn claim_delivery(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        let now = unix_now();
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("DELIVERY#{key}")))
            .item("sk", s("DELIVERY"))
            .item(
                "expires_at",
                AttributeValue::N((now + ttl.as_secs()).to_string()),
            )
            // DynamoDB deletes expired items lazily (up to days later): an expired claim
            // still present counts as free.
            .condition_expression("attribute_not_exists(pk) OR expires_at <= :now")
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(backend(e)),
        }
    }

    async fn release_delivery(&self, key: &str) -> Result<(), StoreError> {
        self.delete(&format!("DELIVERY#{key}"), "DELIVERY").await?;
        Ok(())
    }

    async fn claim_deliveries(
        &self,
        keys: &[String],
        ttl: Duration,
    ) -> Result<Option<usize>, StoreError> {
        if let [key] = keys {
            return Ok((!self.claim_delivery(key, ttl).await?).then_some(0));
        }
        if keys.is_empty() {
            return Ok(None);
        }
        let now = unix_now();
        // One transaction, each put conditional as in `claim_delivery`: all or none.
        let writes = keys
            .iter()
            .map(|key| {
                let item = HashMap::from([
                    ("pk".to_owned(), s(format!("DELIVERY#{key}"))),
                    ("sk".to_owned(), s("DELIVERY")),
                    (
                        "expires_at".to_owned(),
                        AttributeValue::N((now + ttl.as_secs()).to_string()),
                    ),
                ]);
                TransactWriteItem::builder()
                    .put(
                        self.put(item)
                            .condition_expression("attribute_not_exists(pk) OR expires_at <= :now")
                            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
                            .build()
                            .expect("put"),
                    )
                    .build()
            })
            .collect();
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(writes))
            .send()
            .await;
        match result {
            Ok(_) => Ok(None),
            Err(e) => {
                if let Some(TransactWriteItemsError::TransactionCanceledException(c)) =
                    e.as_service_error()
                {
                    let reasons = c.cancellation_reasons();
                    if let Some(held) = reasons
                        .iter()
                        .position(|r| r.code() == Some("ConditionalCheckFailed"))
                    {
                        return Ok(Some(held));
                    }
                    if reasons
                        .iter()
                        .any(|r| r.code() == Some("TransactionConflict"))
                    {
                        return Err(StoreError::Conflict(
                            "another request was claiming the same delivery".into(),
                        ));
                    }
                }
                Err(backend(e))
            }
        }
    }

    async fn start_run(&self, run: &CiRun) -> Result<StartOutcome, StoreError> {
        for attempt in 0..START_ATTEMPTS {
            if let Some(outcome) = self.try_start_run(run).await? {
                return Ok(outcome);
            }
            // Jitter so racing writers do not collide again in lockstep.
            let ms = 10 * (attempt as u64 + 1) + u64::from(rand::random::<u8>() % 20);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        Err(StoreError::Conflict(format!(
            "could not record run {} after {START_ATTEMPTS} attempts: the PR's runs keep changing",
            run.id
        )))
    }

    async fn get_run(&self, id: &RunId) -> Result<Option<CiRun>, StoreError> {
        self.read_run(id.as_str()).await
    }

    /// A Scan of the run items in an open state (the scheduled sweep, every few minutes):
    /// it reads the whole table, so its cost grows with the stored runs and results.
    async fn open_runs(&self) -> Result<Vec<CiRun>, StoreError> {
        let mut runs = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("sk = :run AND #state IN (:r, :w, :d)")
                .expression_attribute_names("#state", "state")
                .expression_attribute_values(":run", s("RUN"))
                .expression_attribute_values(":r", s(RunState::Received.as_str()))
                .expression_attribute_values(":w", s(RunState::WaitingForDbt.as_str()))
                .expression_attribute_values(":d", s(RunState::Diffing.as_str()))
                .projection_expression("#pk, #body")
                .expression_attribute_names("#pk", "pk")
                .expression_attribute_names("#body", "body")
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(backend)?;
            for item in out.items.unwrap_or_default() {
                let id = item
                    .get("pk")
                    .and_then(|v| v.as_s().ok())
                    .map(|pk| pk.trim_start_matches("RUN#").to_owned())
                    .unwrap_or_default();
                runs.push(body_of::<CiRun>(&id, &item)?);
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        runs.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(runs)
    }

    async fn current_run(
        &self,
        config: &ConfigId,
        pr: &PrKey,
    ) -> Result<Option<CiRun>, StoreError> {
        let slot = self
            .get(&format!("SLOT#{}", pr.slot(config)), "SLOT")
            .await?;
        match slot.and_then(|i| i.get("run_id").and_then(|v| v.as_s().ok()).cloned()) {
            Some(id) => self.read_run(&id).await,
            None => Ok(None),
        }
    }

    async fn transition(
        &self,
        id: &RunId,
        from: RunState,
        to: RunState,
        reason: Option<&str>,
    ) -> Result<CiRun, StoreError> {
        let mut run = self
            .read_run(id.as_str())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("run {id}")))?;
        check_transition(&run, from, to)?;
        run.state = to;
        run.reason = reason.map(str::to_owned).or(run.reason);
        run.updated_at = unix_now();
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Self::run_item(&run)))
            .condition_expression("#st = :from")
            .expression_attribute_names("#st", "state")
            .expression_attribute_values(":from", s(from.as_str()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(run),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::Conflict(format!(
                    "run {id} left {from} while moving to {to}"
                )))
            }
            Err(e) => Err(backend(e)),
        }
    }

    async fn put_fanout(&self, id: &RunId, fanout: &FanOut) -> Result<bool, StoreError> {
        let pk = run_pk(id.as_str());
        // Work items first (idempotent overwrites), the fan-out last and conditionally: a
        // poller that dies in between leaves nothing a redelivery would skip.
        for (model, work) in &fanout.models {
            self.client
                .put_item()
                .table_name(&self.table)
                .item("pk", s(&pk))
                .item("sk", s(format!("WORK#{model}")))
                .item("body", s(encode_run_field(work)))
                .send()
                .await
                .map_err(backend)?;
        }
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(&pk))
            .item("sk", s("FANOUT"))
            .item("total", AttributeValue::N(fanout.models.len().to_string()))
            .item("summary", s(encode_run_field(&fanout.summary)))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(backend(e)),
        }
    }

    async fn fanout_summary(&self, id: &RunId) -> Result<Option<Summary>, StoreError> {
        let item = self.get(&run_pk(id.as_str()), "FANOUT").await?;
        item.map(|i| json_field(id, &i, "summary", "fan-out summary"))
            .transpose()
    }

    async fn model_work(&self, id: &RunId, model: &str) -> Result<Option<WorkItem>, StoreError> {
        let item = self
            .get(&run_pk(id.as_str()), &format!("WORK#{model}"))
            .await?;
        item.map(|i| json_field(id, &i, "body", &format!("work item of {model}")))
            .transpose()
    }

    async fn record_result(
        &self,
        id: &RunId,
        model: &str,
        outcome: Option<&StoredOutcome>,
    ) -> Result<RecordOutcome, StoreError> {
        let pk = run_pk(id.as_str());
        if let Some(outcome) = outcome {
            let stored = self
                .client
                .put_item()
                .table_name(&self.table)
                .item("pk", s(&pk))
                .item("sk", s(format!("RESULT#{model}")))
                .item("body", s(encode_run_field(outcome)))
                .condition_expression("attribute_not_exists(pk)")
                .send()
                .await;
            match stored {
                Ok(_) => {}
                // Stored by an earlier delivery; counting below decides whether it counted.
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|se| se.is_conditional_check_failed_exception()) => {}
                Err(e) => return Err(backend(e)),
            }
        }
        let remaining = |item: &Item| -> Result<u64, StoreError> {
            let total = item
                .get("total")
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse::<u64>().ok())
                .ok_or_else(|| StoreError::Corrupt {
                    key: format!("{pk}/FANOUT"),
                    source: "fan-out has no numeric `total`".into(),
                })?;
            let done = item
                .get("done")
                .and_then(|v| v.as_ss().ok())
                .map_or(0, |v| v.len() as u64);
            Ok(total.saturating_sub(done))
        };
        let counted = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&pk))
            .key("sk", s("FANOUT"))
            .update_expression("ADD done :m")
            .condition_expression("attribute_exists(pk) AND NOT contains(done, :model)")
            .expression_attribute_values(":m", AttributeValue::Ss(vec![model.to_owned()]))
            .expression_attribute_values(":model", s(model))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await;
        match counted {
            Ok(out) => Ok(RecordOutcome {
                first: true,
                remaining: remaining(&out.attributes.unwrap_or_default())?,
            }),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                let item = self
                    .get(&pk, "FANOUT")
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("fan-out of run {id}")))?;
                Ok(RecordOutcome {
                    first: false,
                    remaining: remaining(&item)?,
                })
            }
            Err(e) => Err(backend(e)),
        }
    }

    async fn results(&self, id: &RunId) -> Result<Vec<(String, StoredOutcome)>, StoreError> {
        let items = self.query_partition(&run_pk(id.as_str())).await?;
        let mut out = Vec::new();
        for i in &items {
            let Some(model) = i
                .get("sk")
                .and_then(|v| v.as_s().ok())
                .and_then(|sk| sk.strip_prefix("RESULT#"))
            else {
                continue;
            };
            let outcome = json_field(id, i, "body", &format!("result of {model}"))?;
            out.push((model.to_owned(), outcome));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    async fn has_result(&self, id: &RunId, model: &str) -> Result<bool, StoreError> {
        Ok(self
            .get(&run_pk(id.as_str()), &format!("RESULT#{model}"))
            .await?
            .is_some())
    }
}
