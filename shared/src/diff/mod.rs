//! The model diff: production relation vs PR relation, inside the warehouse.
//!
//! # How a diff runs
//!
//! 1. **Catalog.** Both relations' columns and declared types; unknown relations and
//!    missing key columns are input errors. Schema changes (added, removed, type changed)
//!    fall out of the two lists. Columns present on both sides are compared, after the
//!    dialect's normalisation when their types differ (see [`crate::sql::Dialect`]).
//! 2. **Counts and the join, together.** A cheap scan per side counts rows and NULL keys
//!    while one pass over `prod FULL OUTER JOIN pr ON key` (rows with a NULL key left out:
//!    they cannot match) counts everything else: rows only in prod, only in the PR,
//!    matched, changed, per-column changes and a few example keys
//!    ([`query::ComparePlan::join_query`]).
//! 3. **Duplicates first.** The join's counts are trusted only if every row appears in it
//!    exactly once (join rows per side equal the side's rows with a non-NULL key) and
//!    exclusive keys are distinct. Otherwise the pass is redone *windowed*: keys duplicated on a side are left
//!    out of matching and reported, so duplicates never inflate a count. Every row is then
//!    accounted for once: `rows = null keys + duplicated-key rows + only here + matched`.
//! 4. **Samples.** A windowed or sampled pass returns its example rows itself; after a
//!    plain exact pass the example keys' rows are read from both sides (values of masked
//!    columns are replaced before they leave this module).
//! 5. **Sampling** (tables over the threshold): see [`sampling`] for the sizes. Both sides
//!    keep the rows whose key hash falls in the same bucket range, so the same keys are
//!    compared. A sampled pass joins those rows as they are ([`JoinKind::Carry`]) and counts
//!    each side's distinct keys in the same statement: more rows than keys on a side means
//!    a duplicated key, and only then is the pass redone windowed ([`SampleMethod`]).
//!
//! Nothing but aggregates and a bounded number of sample rows ever leaves the warehouse.

pub mod from_plan;
pub mod query;
pub mod sampling;

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::sql::filter::{SafeFilter, UnsafeFilter, parse_filter};
use crate::sql::{ColumnType, Dialect, Relation, TypeFamily};
use crate::warehouse::{Row, Warehouse, WarehouseError};
use query::{
    AggQuery, CompareColumn, ComparePlan, JoinAgg, JoinKind, KeyColumn, SampleBucket, Side,
};
pub use sampling::SamplingSettings;

/// A predicate naming columns never to compare (the global "columns to ignore" list).
pub type ColumnIgnore = std::sync::Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// What to diff and how.
#[derive(Clone)]
pub struct DiffRequest {
    pub prod: Relation,
    pub pr: Relation,
    /// Key columns; empty = no row matching (schema, row counts and NULL profile only).
    pub primary_key: Vec<String>,
    /// A SQL boolean expression applied to both sides, as written in the PR's yaml or on
    /// the command line: [`diff`] checks it with [`parse_filter`] and uses only what that
    /// writes back.
    pub filter: Option<String>,
    /// Compare only these columns (keys are always kept); empty = all.
    pub include_columns: Vec<String>,
    /// Never compare these columns (keys are never excluded).
    pub exclude_columns: Vec<String>,
    /// Values of these columns are masked in sample rows.
    pub masked_columns: Vec<String>,
    /// `None`: always exact.
    pub sampling: Option<SamplingSettings>,
    /// Sample rows per kind (only in prod, only in PR, changed) in the result.
    pub sample_rows: usize,
    /// Seed of the key hash used for sampling.
    pub seed: u64,
    /// The fewest keys a first sampled pass takes (see [`sampling`]).
    pub pilot_rows: u64,
    /// Columns matching this are not compared (keys always are).
    pub column_ignore: Option<ColumnIgnore>,
    /// Exact diffs of relations at least this large (by the catalog's estimate) take their
    /// example rows from a small keyed sample run beside the join.
    pub example_sample_min_rows: u64,
    /// How to give a model without a key one, in the caller's terms (the configured key
    /// tag in CI, `--pk` in the CLI): appended to the result's "no primary key" note.
    pub no_key_hint: Option<String>,
}

impl std::fmt::Debug for DiffRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiffRequest")
            .field("prod", &self.prod)
            .field("pr", &self.pr)
            .field("primary_key", &self.primary_key)
            .field("filter", &self.filter)
            .field("include_columns", &self.include_columns)
            .field("exclude_columns", &self.exclude_columns)
            .field("sampling", &self.sampling)
            .finish_non_exhaustive()
    }
}

impl DiffRequest {
    pub fn new(prod: Relation, pr: Relation, primary_key: Vec<String>) -> Self {
        DiffRequest {
            prod,
            pr,
            primary_key,
            filter: None,
            include_columns: Vec::new(),
            exclude_columns: Vec::new(),
            masked_columns: Vec::new(),
            sampling: None,
            sample_rows: 5,
            seed: 0,
            pilot_rows: sampling::PILOT_ROWS as u64,
            column_ignore: None,
            example_sample_min_rows: EXAMPLE_SAMPLE_MIN_ROWS,
            no_key_hint: None,
        }
    }
}

/// The note of a result without a key (followed by the request's `no_key_hint`).
pub const NO_KEY_NOTE: &str = "no primary key: rows were not matched; only the schema, row counts and column profiles were compared.";

/// Why a diff could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error("relation {relation} ({side}) does not exist or has no columns visible to this user")]
    UnknownRelation {
        side: &'static str,
        relation: String,
    },
    #[error(
        "key column `{column}` is not in {side} relation {relation} (its columns: {available})"
    )]
    MissingKeyColumn {
        side: &'static str,
        relation: String,
        column: String,
        available: String,
    },
    #[error("column `{column}` named in include_columns is in neither relation")]
    UnknownIncludedColumn { column: String },
    #[error("the key is empty after resolving column names")]
    EmptyKey,
    /// The filter failed [`parse_filter`]'s checks: the model is not diffed.
    #[error(transparent)]
    UnsafeFilter(#[from] UnsafeFilter),
    #[error("the warehouse rejected a query prdiff generated: {source}")]
    Rejected {
        #[source]
        source: WarehouseError,
    },
    /// As `Rejected`, for a request with a filter (the filter is part of every query).
    #[error("the warehouse rejected a diff query, which includes the model's filter: {source}")]
    RejectedWithFilter {
        #[source]
        source: WarehouseError,
    },
    #[error(transparent)]
    Warehouse(WarehouseError),
    #[error("unexpected result from the warehouse: {0}")]
    Protocol(String),
}

impl DiffError {
    /// Input problems (exit code 2 in the CLI, a "fix your config" row in reports).
    pub fn is_input_error(&self) -> bool {
        matches!(
            self,
            DiffError::UnknownRelation { .. }
                | DiffError::MissingKeyColumn { .. }
                | DiffError::UnknownIncludedColumn { .. }
                | DiffError::EmptyKey
                | DiffError::UnsafeFilter(_)
                | DiffError::Rejected { .. }
                | DiffError::RejectedWithFilter { .. }
        )
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, DiffError::Warehouse(e) if e.is_retryable())
    }
}

impl From<WarehouseError> for DiffError {
    fn from(e: WarehouseError) -> Self {
        match e {
            WarehouseError::Rejected { .. } => DiffError::Rejected { source: e },
            other => DiffError::Warehouse(other),
        }
    }
}

/// Row counts per side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerSide {
    pub prod: u64,
    pub pr: u64,
}

/// Key problems on one side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyIssues {
    /// Rows with a NULL in any key column: they cannot be matched.
    pub nulls: u64,
    /// Rows whose key value occurs more than once on this side (every copy counts).
    pub duplicates: u64,
    /// Distinct key values that occur more than once.
    pub duplicate_keys: u64,
    /// Rows whose key is unique here but occurs more than once on the other side: they
    /// cannot be matched either.
    pub unmatchable: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyIssuesPerSide {
    pub prod: KeyIssues,
    pub pr: KeyIssues,
}

/// A compared column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnDiff {
    pub name: String,
    pub prod_type: String,
    pub pr_type: String,
    /// Matched rows whose value differs (an estimate when sampled).
    pub changed: Option<u64>,
    /// `changed` as a percentage of matched rows.
    pub changed_pct: Option<f64>,
    /// The interval of `changed_pct` when sampled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed_pct_interval: Option<(f64, f64)>,
    /// Rows where the value is NULL, per side (only for models without a key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nulls: Option<PerSide>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaDiff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub type_changed: Vec<String>,
}

/// One differing row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SampleRow {
    /// `changed`, `only_prod` or `only_pr`.
    pub kind: &'static str,
    /// Key column → value.
    pub key: BTreeMap<String, Option<String>>,
    /// Compared columns in table order (for `changed`: only the columns that differ).
    pub values: Vec<SampleValue>,
}

/// One column of a sample row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleValue {
    pub column: String,
    pub prod: Option<String>,
    pub pr: Option<String>,
}

/// How a sampled diff was sampled, and the intervals of its estimates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampledInfo {
    pub tolerance: f64,
    pub confidence: f64,
    pub threshold: u64,
    pub seed: u64,
    /// Share of keys sampled.
    pub rate: f64,
    pub rows_sampled: PerSide,
    /// How the sample's rows were read.
    #[serde(default)]
    pub method: SampleMethod,
    /// Interval per estimated figure: `exclusive.prod`, `exclusive.pr`, `matched`,
    /// `changed`, `changed_pct`.
    pub intervals: BTreeMap<String, (f64, f64)>,
}

/// How a sampled pass read its rows (see [`crate::diff`], step 5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleMethod {
    /// Both sides' sampled rows joined as they are: no key in the sample is duplicated.
    #[default]
    Joined,
    /// Duplicate keys in the sample: each side kept one row per key, carrying how many
    /// rows share it, so duplicates are counted and never matched.
    Windowed,
}

/// The result of a model diff; `--format json` prints it (schema `version: 1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiffResult {
    pub version: u32,
    pub prod: String,
    pub pr: String,
    pub rows: PerSide,
    pub primary_key: Vec<String>,
    pub primary_key_issues: KeyIssuesPerSide,
    /// Rows only in prod / only in the PR (rows with NULL or duplicated keys excluded).
    pub exclusive: Option<PerSide>,
    pub matched: Option<u64>,
    pub changed: Option<u64>,
    pub unchanged: Option<u64>,
    pub columns: Vec<ColumnDiff>,
    pub schema: SchemaDiff,
    /// `false`, or how the figures were sampled.
    #[serde(
        serialize_with = "serialize_sampled",
        deserialize_with = "deserialize_sampled"
    )]
    pub sampled: Option<SampledInfo>,
    pub samples: Vec<SampleRow>,
    /// Things a reader should know (duplicates left out, columns not found, no key).
    pub notes: Vec<String>,
}

fn serialize_sampled<S: serde::Serializer>(
    v: &Option<SampledInfo>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        None => s.serialize_bool(false),
        Some(info) => info.serialize(s),
    }
}

/// Reads back what [`serialize_sampled`] wrote: `false` or the sampling details.
fn deserialize_sampled<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<SampledInfo>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Flag(bool),
        Info(Box<SampledInfo>),
    }
    match Either::deserialize(d)? {
        Either::Flag(false) => Ok(None),
        Either::Flag(true) => Err(serde::de::Error::custom(
            "`sampled` is false or the sampling details",
        )),
        Either::Info(info) => Ok(Some(*info)),
    }
}

/// Stored results are read back (the diff runner's report); `kind` is one of three names.
impl<'de> Deserialize<'de> for SampleRow {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            kind: String,
            key: BTreeMap<String, Option<String>>,
            values: Vec<SampleValue>,
        }
        let w = Wire::deserialize(d)?;
        let kind = ["changed", "only_prod", "only_pr"]
            .into_iter()
            .find(|k| *k == w.kind)
            .ok_or_else(|| {
                serde::de::Error::custom(format!("unknown sample row kind {:?}", w.kind))
            })?;
        Ok(SampleRow {
            kind,
            key: w.key,
            values: w.values,
        })
    }
}

impl DiffResult {
    /// The result of counting one relation (a model new in the PR or removed by it): its
    /// rows, and nothing compared.
    pub fn counted(prod: &Relation, pr: &Relation, rows: PerSide) -> Self {
        DiffResult {
            version: 1,
            prod: prod.to_string(),
            pr: pr.to_string(),
            rows,
            primary_key: Vec::new(),
            primary_key_issues: KeyIssuesPerSide::default(),
            exclusive: None,
            matched: None,
            changed: None,
            unchanged: None,
            columns: Vec::new(),
            schema: SchemaDiff::default(),
            sampled: None,
            samples: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Whether anything differs at all.
    pub fn has_differences(&self) -> bool {
        let s = &self.schema;
        !(s.added.is_empty() && s.removed.is_empty() && s.type_changed.is_empty())
            || self.rows.prod != self.rows.pr
            || self.exclusive.is_some_and(|e| e.prod > 0 || e.pr > 0)
            || self.changed.is_some_and(|c| c > 0)
    }
}

/// Looks `name` up in `cols`: exact match first, then a unique case-insensitive match
/// (warehouses that upper-case unquoted names).
fn resolve<'a>(cols: &'a [(String, ColumnType)], name: &str) -> Option<&'a (String, ColumnType)> {
    cols.iter().find(|(n, _)| n == name).or_else(|| {
        let mut it = cols.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name));
        match (it.next(), it.next()) {
            (Some(c), None) => Some(c),
            _ => None,
        }
    })
}

async fn columns(
    wh: &dyn Warehouse,
    rel: &Relation,
    side: &'static str,
) -> Result<Vec<(String, ColumnType)>, DiffError> {
    let d = wh.dialect();
    let rows = match wh.columns(rel).await? {
        Some(cols) => cols
            .into_iter()
            .map(|(n, t)| vec![Some(n), Some(t)])
            .collect(),
        None => wh.query(&d.columns_query(rel)).await?,
    };
    if rows.is_empty() {
        return Err(DiffError::UnknownRelation {
            side,
            relation: rel.to_string(),
        });
    }
    rows.into_iter()
        .map(
            |r| match (r.first().cloned().flatten(), r.get(1).cloned().flatten()) {
                (Some(name), ty) => Ok((name, d.parse_type(ty.as_deref().unwrap_or("")))),
                _ => Err(DiffError::Protocol(
                    "catalog row without a column name".into(),
                )),
            },
        )
        .collect()
}

/// Named integer (or text) results of one aggregate row.
struct Aggregates {
    values: HashMap<JoinAgg, Option<String>>,
}

impl Aggregates {
    fn new(names: &[JoinAgg], row: Option<Row>) -> Result<Self, DiffError> {
        let row =
            row.ok_or_else(|| DiffError::Protocol("an aggregate query returned no row".into()))?;
        if row.len() != names.len() {
            return Err(DiffError::Protocol(format!(
                "expected {} aggregates, got {}",
                names.len(),
                row.len()
            )));
        }
        Ok(Aggregates {
            values: names.iter().copied().zip(row).collect(),
        })
    }

    fn int(&self, agg: JoinAgg) -> Result<u64, DiffError> {
        // An aggregate the query did not compute is a bug in the engine, never a zero; a
        // NULL (a SUM over no rows) is a zero.
        let v = self
            .values
            .get(&agg)
            .ok_or_else(|| DiffError::Protocol(format!("no aggregate named {}", agg.alias())))?
            .clone()
            .unwrap_or_else(|| "0".into());
        // SQLite may return a REAL for SUM; integers only ever come back whole.
        v.parse::<u64>()
            .or_else(|_| v.parse::<f64>().map(|f| f as u64))
            .map_err(|_| {
                DiffError::Protocol(format!("aggregate {} is not a count: {v}", agg.alias()))
            })
    }

    fn text(&self, agg: JoinAgg) -> Option<String> {
        self.values.get(&agg).cloned().flatten()
    }
}

/// Where a statement runs: on the diff's critical path, or beside a longer one (see
/// [`Warehouse::query_beside`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    Critical,
    Beside,
}

async fn ask(wh: &dyn Warehouse, sql: &str, lane: Lane) -> Result<Vec<Row>, DiffError> {
    Ok(match lane {
        Lane::Critical => wh.query(sql).await?,
        Lane::Beside => wh.query_beside(sql).await?,
    })
}

/// One join pass. A model wider than the warehouse's select lists allow
/// ([`Dialect::max_reported_columns`]) is joined once per column group, one group after
/// the other; every group's pass counts the same rows (and each tests every column for
/// `changed`), so the merged aggregates read as one pass over every column.
async fn run_join(
    wh: &dyn Warehouse,
    plan: &ComparePlan,
    kind: JoinKind,
    bucket: Option<SampleBucket>,
    lane: Lane,
) -> Result<Aggregates, DiffError> {
    let Some(groups) = plan.column_groups(wh.dialect().max_reported_columns()) else {
        let q = plan.join_query_named(wh.dialect(), kind, bucket);
        let mut rows = ask(wh, &q.sql, lane).await?;
        return Aggregates::new(&q.aggs, rows.pop());
    };
    let mut merged: Option<Aggregates> = None;
    for g in &groups {
        let q = g.join_query_named(wh.dialect(), kind, bucket);
        let mut rows = ask(wh, &q.sql, lane).await?;
        let agg = Aggregates::new(&q.aggs, rows.pop())?;
        match &mut merged {
            None => merged = Some(agg),
            Some(m) => {
                if m.int(JoinAgg::Matched)? != agg.int(JoinAgg::Matched)?
                    || m.int(JoinAgg::Changed)? != agg.int(JoinAgg::Changed)?
                {
                    return Err(DiffError::Protocol(
                        "column groups of one pass counted different rows".into(),
                    ));
                }
                m.values.extend(agg.values.into_iter().filter(|(k, _)| {
                    matches!(k, JoinAgg::ChangedCol(_) | JoinAgg::ExChangedCol(_))
                }));
            }
        }
    }
    merged.ok_or_else(|| DiffError::Protocol("no column group".into()))
}

/// Whether a pass over `plan` carries its example rows (see [`JoinKind::Carry`]): not in
/// column groups, whose examples are read by key.
fn carries_examples(wh: &dyn Warehouse, plan: &ComparePlan) -> bool {
    plan.column_groups(wh.dialect().max_reported_columns())
        .is_none()
}

/// The exact join's kind: carrying its example rows where reading them by key afterwards
/// would scan both relations again ([`crate::sql::Dialect::exact_join_carries_examples`]).
fn exact_kind(wh: &dyn Warehouse, plan: &ComparePlan) -> JoinKind {
    if wh.dialect().exact_join_carries_examples() && carries_examples(wh, plan) {
        JoinKind::Carry
    } else {
        JoinKind::Plain
    }
}

/// Whether a plain pass's counts can be trusted: every row it was given appears in it
/// exactly once (`rows` per side: the rows with a non-NULL key) and exclusive keys are
/// distinct. Otherwise some key is duplicated and the pass must be redone windowed.
fn plain_pass_is_clean(agg: &Aggregates, rows: (u64, u64)) -> Result<bool, DiffError> {
    Ok(agg.int(JoinAgg::PIn)? == rows.0
        && agg.int(JoinAgg::QIn)? == rows.1
        && agg.int(JoinAgg::OnlyProd)? == agg.int(JoinAgg::OnlyProdKeys)?
        && agg.int(JoinAgg::OnlyPr)? == agg.int(JoinAgg::OnlyPrKeys)?)
}

/// One sampled pass over the keys in `bucket`: both sides' sampled rows joined as they
/// are ([`JoinKind::Carry`]), trusted when each side's rows in the join have distinct
/// keys (a duplicated key shows as more rows than keys); otherwise redone windowed, which
/// leaves duplicated keys out of matching and counts them.
async fn sample_pass(
    wh: &dyn Warehouse,
    plan: &ComparePlan,
    bucket: SampleBucket,
    lane: Lane,
) -> Result<(Aggregates, SampleMethod), DiffError> {
    let agg = run_join(wh, plan, JoinKind::Carry, Some(bucket), lane).await?;
    if agg.int(JoinAgg::PIn)? == agg.int(JoinAgg::PKeys)?
        && agg.int(JoinAgg::QIn)? == agg.int(JoinAgg::QKeys)?
    {
        return Ok((agg, SampleMethod::Joined));
    }
    tracing::info!(prod = %plan.prod, "duplicate keys in the sample: redoing it windowed");
    Ok((
        run_join(wh, plan, JoinKind::Windowed, Some(bucket), lane).await?,
        SampleMethod::Windowed,
    ))
}

async fn run_counts(
    wh: &dyn Warehouse,
    plan: &ComparePlan,
    side: Side,
    lane: Lane,
) -> Result<(u64, u64), DiffError> {
    let AggQuery { sql, aggs } = plan.count_query_named(wh.dialect(), side);
    let mut rows = ask(wh, &sql, lane).await?;
    let a = Aggregates::new(&aggs, rows.pop())?;
    Ok((
        a.int(JoinAgg::RowCount)?,
        if plan.key.is_empty() {
            0
        } else {
            a.int(JoinAgg::NullKeys)?
        },
    ))
}

/// Resolves the request against both catalogs.
struct Resolved {
    plan: ComparePlan,
    key_names: Vec<String>,
    columns: Vec<ColumnDiff>,
    schema: SchemaDiff,
    notes: Vec<String>,
}

fn resolve_request(
    d: &dyn Dialect,
    req: &DiffRequest,
    filter: Option<&SafeFilter>,
    prod_cols: &[(String, ColumnType)],
    pr_cols: &[(String, ColumnType)],
) -> Result<Resolved, DiffError> {
    let mut notes = Vec::new();
    let mut schema = SchemaDiff::default();
    for (n, _) in prod_cols {
        if !pr_cols.iter().any(|(m, _)| m == n) {
            schema.removed.push(n.clone());
        }
    }
    for (n, _) in pr_cols {
        if !prod_cols.iter().any(|(m, _)| m == n) {
            schema.added.push(n.clone());
        }
    }
    let mut key = Vec::new();
    let mut key_names = Vec::new();
    let mut key_types = Vec::new();
    for k in &req.primary_key {
        let avail = |cols: &[(String, ColumnType)]| {
            cols.iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let p = resolve(prod_cols, k).ok_or_else(|| DiffError::MissingKeyColumn {
            side: "prod",
            relation: req.prod.to_string(),
            column: k.clone(),
            available: avail(prod_cols),
        })?;
        let q = resolve(pr_cols, k).ok_or_else(|| DiffError::MissingKeyColumn {
            side: "PR",
            relation: req.pr.to_string(),
            column: k.clone(),
            available: avail(pr_cols),
        })?;
        let (pq, qq) = (d.quote_identifier(&p.0), d.quote_identifier(&q.0));
        key.push(KeyColumn {
            name: p.0.clone(),
            prod_expr: d.normalise(&pq, &p.1, &q.1),
            pr_expr: d.normalise(&qq, &q.1, &p.1),
            prod_joined: d.normalise(&format!("{}.{pq}", query::PROD_ALIAS), &p.1, &q.1),
            pr_joined: d.normalise(&format!("{}.{qq}", query::PR_ALIAS), &q.1, &p.1),
        });
        key_names.push(p.0.clone());
        key_types.push((p.1.family, q.1.family));
    }
    let integer_key = key.len() == 1 && key_types[0] == (TypeFamily::Integer, TypeFamily::Integer);
    let whole = |f: TypeFamily| {
        matches!(
            f,
            TypeFamily::Integer | TypeFamily::Decimal { scale: Some(0) }
        )
    };
    let whole_number_key = key.len() == 1 && whole(key_types[0].0) && whole(key_types[0].1);

    let mut included: Option<Vec<String>> = None;
    if !req.include_columns.is_empty() {
        let mut v = Vec::new();
        for c in &req.include_columns {
            match resolve(prod_cols, c).or_else(|| resolve(pr_cols, c)) {
                Some((n, _)) => v.push(n.clone()),
                None => return Err(DiffError::UnknownIncludedColumn { column: c.clone() }),
            }
        }
        included = Some(v);
    }
    let mut excluded = Vec::new();
    for c in &req.exclude_columns {
        match resolve(prod_cols, c).or_else(|| resolve(pr_cols, c)) {
            Some((n, _)) if key_names.contains(n) => notes.push(format!(
                "`{n}` is a key column and is always compared (exclude_columns ignored for it)"
            )),
            Some((n, _)) => excluded.push(n.clone()),
            None => notes.push(format!(
                "exclude_columns names `{c}`, which is in neither relation"
            )),
        }
    }

    let mut columns = Vec::new();
    let mut compare = Vec::new();
    for (name, pt) in prod_cols {
        let Some((_, qt)) = pr_cols.iter().find(|(n, _)| n == name) else {
            continue;
        };
        if !pt.same_as(qt) {
            schema.type_changed.push(name.clone());
        }
        if key_names.contains(name)
            || excluded.contains(name)
            || req.column_ignore.as_ref().is_some_and(|f| f(name))
        {
            continue;
        }
        if included.as_ref().is_some_and(|inc| !inc.contains(name)) {
            continue;
        }
        let q = d.quote_identifier(name);
        let (raw_p, raw_q) = (
            format!("{}.{q}", query::PROD_ALIAS),
            format!("{}.{q}", query::PR_ALIAS),
        );
        let (prod_joined, pr_joined) = (d.normalise(&raw_p, pt, qt), d.normalise(&raw_q, qt, pt));
        let exact_numbers =
            |t: &ColumnType| matches!(t.family, TypeFamily::Integer | TypeFamily::Decimal { .. });
        // Both sides normalise to the same value function of the raw value (round to the
        // coarser scale, or widen to BIGINT): equal raw values cannot differ once
        // normalised. See `CompareColumn::raw_joined`.
        let raw_joined = (exact_numbers(pt)
            && exact_numbers(qt)
            && (prod_joined != raw_p || pr_joined != raw_q))
            .then(|| (raw_p.clone(), raw_q.clone()));
        compare.push(CompareColumn {
            name: name.clone(),
            prod_expr: d.normalise(&q, pt, qt),
            pr_expr: d.normalise(&q, qt, pt),
            prod_joined,
            pr_joined,
            raw_joined,
        });
        columns.push(ColumnDiff {
            name: name.clone(),
            prod_type: pt.raw.clone(),
            pr_type: qt.raw.clone(),
            changed: None,
            changed_pct: None,
            changed_pct_interval: None,
            nulls: None,
        });
    }
    Ok(Resolved {
        plan: ComparePlan {
            prod: req.prod.clone(),
            pr: req.pr.clone(),
            key,
            columns: compare,
            filter: filter.map(|f| f.sql().to_owned()),
            integer_key,
            group: None,
            whole_number_key,
        },
        key_names,
        columns,
        schema,
        notes,
    })
}

/// The rows of one relation: for models new in the PR or removed by it, which have no
/// counterpart to diff against. A relation with no columns visible is unknown, as in
/// [`diff`].
pub async fn count_rows(wh: &dyn Warehouse, rel: &Relation) -> Result<u64, DiffError> {
    columns(wh, rel, "counted").await?;
    let plan = ComparePlan {
        prod: rel.clone(),
        pr: rel.clone(),
        key: Vec::new(),
        columns: Vec::new(),
        filter: None,
        integer_key: false,
        group: None,
        whole_number_key: false,
    };
    Ok(run_counts(wh, &plan, Side::Prod, Lane::Critical).await?.0)
}

/// Runs the diff described by `req` on `wh`.
pub async fn diff(wh: &dyn Warehouse, req: &DiffRequest) -> Result<DiffResult, DiffError> {
    match diff_unlabelled(wh, req).await {
        Err(DiffError::Rejected { source }) if req.filter.is_some() => {
            Err(DiffError::RejectedWithFilter { source })
        }
        other => other,
    }
}

async fn diff_unlabelled(wh: &dyn Warehouse, req: &DiffRequest) -> Result<DiffResult, DiffError> {
    let d = wh.dialect();
    // The filter is PR input: checked before anything reaches the warehouse.
    let filter = req
        .filter
        .as_deref()
        .map(|f| parse_filter(d, f))
        .transpose()?;
    let (prod_cols, pr_cols) =
        futures::try_join!(columns(wh, &req.prod, "prod"), columns(wh, &req.pr, "PR"))?;
    let Resolved {
        plan,
        key_names,
        mut columns,
        schema,
        mut notes,
    } = resolve_request(d, req, filter.as_ref(), &prod_cols, &pr_cols)?;
    let mut result = DiffResult {
        version: 1,
        prod: req.prod.to_string(),
        pr: req.pr.to_string(),
        rows: PerSide::default(),
        primary_key: key_names,
        primary_key_issues: KeyIssuesPerSide::default(),
        exclusive: None,
        matched: None,
        changed: None,
        unchanged: None,
        columns: Vec::new(),
        schema,
        sampled: None,
        samples: Vec::new(),
        notes: Vec::new(),
    };

    if plan.key.is_empty() {
        profile(wh, &plan, &mut result, &mut columns).await?;
        result.columns = columns;
        notes.push(match &req.no_key_hint {
            Some(hint) => format!("{NO_KEY_NOTE} {hint}"),
            None => NO_KEY_NOTE.to_owned(),
        });
        result.notes = notes;
        return Ok(result);
    }

    // Exact counts per side (cheap scans). Sampling needs them to decide whether to sample
    // and to scale its estimates. Beside the join (or a sampled pass) the two count scans
    // run one after the other. Beside an exact join they also run without parallel
    // workers: the join is the critical path, ten times longer, and keeps the other
    // processors. A sampled pass is as short as the counts: both may use what the
    // warehouse offers. Alone, they run side by side.
    let plan_ref = &plan;
    let counts_beside = |lane: Lane| async move {
        let p = run_counts(wh, plan_ref, Side::Prod, lane).await?;
        let q = run_counts(wh, plan_ref, Side::Pr, lane).await?;
        Ok::<_, DiffError>((p, q))
    };
    let counts = async {
        futures::try_join!(
            run_counts(wh, plan_ref, Side::Prod, Lane::Critical),
            run_counts(wh, plan_ref, Side::Pr, Lane::Critical)
        )
    };
    // The catalog's row estimate (PostgreSQL after ANALYZE) plans what runs beside the
    // counts when the warehouse runs statements side by side: a sampled diff's first pass
    // (no exact counts needed first), or an exact diff's example sample. No reported figure
    // comes from it.
    let estimate = if wh.parallelism() >= 2 && (req.sampling.is_some() || req.sample_rows > 0) {
        estimated_rows(wh, &plan).await
    } else {
        None
    };
    let early_rate = req
        .sampling
        .zip(estimate)
        .filter(|(s, n)| *n >= s.threshold)
        .map(|(s, n)| first_pass_rate(req, &s, n))
        .filter(|r| *r < 0.5);
    // On a large table the second connection, idle once the counts are done, also runs a
    // small keyed sample: its carried rows stand in for the exact join's example rows,
    // which would otherwise cost a scan of each side after the join.
    let stand_in_rate = estimate
        .filter(|n| {
            req.sampling.is_none()
                && req.sample_rows > 0
                && *n >= req.example_sample_min_rows
                && carries_examples(wh, &plan)
        })
        .map(|n| EXAMPLE_SAMPLE_KEYS / n as f64);
    let (((prod_rows, prod_nulls), (pr_rows, pr_nulls)), early_join, early_pass, stand_in) = if req
        .sampling
        .is_none()
        && wh.parallelism() >= 2
    {
        let beside = async {
            let c = counts_beside(Lane::Beside).await?;
            let Some(rate) = stand_in_rate else {
                return Ok((c, None));
            };
            match sample_pass(wh, &plan, bucket_at(req.seed, rate), Lane::Beside).await {
                Ok((agg, _)) => Ok((c, Some(agg))),
                Err(e) => {
                    tracing::warn!(error = %e, "the example sample failed; reading examples by key");
                    Ok::<_, DiffError>((c, None))
                }
            }
        };
        let join = run_join(wh, &plan, exact_kind(wh, &plan), None, Lane::Critical);
        let ((c, stand_in), j) = futures::try_join!(beside, join)?;
        (c, Some(j), None, stand_in)
    } else if let Some(rate) = early_rate {
        let pass = sample_pass(wh, &plan, bucket_at(req.seed, rate), Lane::Critical);
        let (c, (j, method)) = futures::try_join!(counts_beside(Lane::Critical), pass)?;
        (c, None, Some((j, rate, method)), None)
    } else {
        (counts.await?, None, None, None)
    };
    result.rows = PerSide {
        prod: prod_rows,
        pr: pr_rows,
    };

    let sampling = req
        .sampling
        .filter(|s| prod_rows.max(pr_rows) >= s.threshold);
    let done = match sampling {
        Some(_) => {
            sampled(
                wh,
                &plan,
                req,
                (prod_rows - prod_nulls, pr_rows - pr_nulls),
                early_pass,
                &mut result,
                &mut columns,
            )
            .await?
        }
        None => false,
    };
    if !done {
        let agg = match early_join {
            Some(j) => j,
            None => run_join(wh, &plan, exact_kind(wh, &plan), None, Lane::Critical).await?,
        };
        // The join sees rows without NULL keys only.
        let clean = plain_pass_is_clean(&agg, (prod_rows - prod_nulls, pr_rows - pr_nulls))?;
        let agg = if clean {
            agg
        } else {
            tracing::info!(prod = %req.prod, "duplicate keys found: redoing the join without them");
            run_join(wh, &plan, JoinKind::Windowed, None, Lane::Critical).await?
        };
        fill_exact(&agg, (prod_nulls, pr_nulls), &mut result, &mut columns)?;
        let stand_in = stand_in.as_ref().filter(|_| clean);
        let carried =
            (!clean || exact_kind(wh, &plan) == JoinKind::Carry) && carries_examples(wh, &plan);
        result.samples = samples(wh, &plan, req, &agg, carried, stand_in).await?;
    }
    let i = result.primary_key_issues;
    if i.prod.duplicates + i.pr.duplicates + i.prod.unmatchable + i.pr.unmatchable > 0 {
        let about = if result.sampled.is_some() {
            " (estimated from the sample)"
        } else {
            ""
        };
        notes.push(format!(
            "duplicate keys{about}: {} prod rows ({} keys) and {} PR rows ({} keys) share a key with another row and were left out of row matching; {} prod and {} PR rows have a key duplicated on the other side",
            i.prod.duplicates, i.prod.duplicate_keys, i.pr.duplicates, i.pr.duplicate_keys, i.prod.unmatchable, i.pr.unmatchable
        ));
    }
    if i.prod.nulls + i.pr.nulls > 0 {
        notes.push(format!(
            "NULL keys: {} prod rows and {} PR rows have a NULL key and cannot be matched",
            i.prod.nulls, i.pr.nulls
        ));
    }
    result.columns = columns;
    result.notes = notes;
    Ok(result)
}

fn pct(x: u64, n: u64) -> Option<f64> {
    if n == 0 {
        None
    } else {
        Some(100.0 * x as f64 / n as f64)
    }
}

fn fill_exact(
    agg: &Aggregates,
    nulls: (u64, u64),
    r: &mut DiffResult,
    columns: &mut [ColumnDiff],
) -> Result<(), DiffError> {
    r.primary_key_issues = KeyIssuesPerSide {
        prod: KeyIssues {
            nulls: nulls.0,
            duplicates: agg.int(JoinAgg::PDupRows)?,
            duplicate_keys: agg.int(JoinAgg::PDupKeys)?,
            unmatchable: agg.int(JoinAgg::PUnmatchable)?,
        },
        pr: KeyIssues {
            nulls: nulls.1,
            duplicates: agg.int(JoinAgg::QDupRows)?,
            duplicate_keys: agg.int(JoinAgg::QDupKeys)?,
            unmatchable: agg.int(JoinAgg::QUnmatchable)?,
        },
    };
    let matched = agg.int(JoinAgg::Matched)?;
    let changed = agg.int(JoinAgg::Changed)?;
    r.exclusive = Some(PerSide {
        prod: agg.int(JoinAgg::OnlyProd)?,
        pr: agg.int(JoinAgg::OnlyPr)?,
    });
    r.matched = Some(matched);
    r.changed = Some(changed);
    r.unchanged = Some(matched - changed);
    for (i, c) in columns.iter_mut().enumerate() {
        let n = agg.int(JoinAgg::ChangedCol(i))?;
        c.changed = Some(n);
        c.changed_pct = Some(pct(n, matched).unwrap_or(0.0));
    }
    Ok(())
}

async fn profile(
    wh: &dyn Warehouse,
    plan: &ComparePlan,
    r: &mut DiffResult,
    columns: &mut [ColumnDiff],
) -> Result<(), DiffError> {
    let d = wh.dialect();
    let (ps, qs) = (
        plan.profile_query_named(d, Side::Prod),
        plan.profile_query_named(d, Side::Pr),
    );
    let (mut p, mut q) = futures::try_join!(wh.query(&ps.sql), wh.query(&qs.sql))?;
    let p = Aggregates::new(&ps.aggs, p.pop())?;
    let q = Aggregates::new(&qs.aggs, q.pop())?;
    r.rows = PerSide {
        prod: p.int(JoinAgg::RowCount)?,
        pr: q.int(JoinAgg::RowCount)?,
    };
    for (i, c) in columns.iter_mut().enumerate() {
        c.nulls = Some(PerSide {
            prod: p.int(JoinAgg::NullsCol(i))?,
            pr: q.int(JoinAgg::NullsCol(i))?,
        });
    }
    Ok(())
}

/// Runs the sampled diff; returns `false` when sampling would not save work (the caller
/// then diffs exactly).
///
/// The first pass (already run with the counts, or now) is the sample when every share it
/// estimates is already within ± tolerance at the confidence; otherwise its shares size a
/// larger second pass, whose keys include the first's.
async fn sampled(
    wh: &dyn Warehouse,
    plan: &ComparePlan,
    req: &DiffRequest,
    nonnull: (u64, u64),
    early_pass: Option<(Aggregates, f64, SampleMethod)>,
    r: &mut DiffResult,
    columns: &mut [ColumnDiff],
) -> Result<bool, DiffError> {
    let Some(s) = req.sampling else {
        return Ok(false);
    };
    let z = s.z();
    let first_rate = first_pass_rate(req, &s, nonnull.0.max(nonnull.1));
    if early_pass.is_none() && first_rate >= 0.5 {
        return Ok(false);
    }
    let pass = |rate: f64| sample_pass(wh, plan, bucket_at(req.seed, rate), Lane::Critical);
    let (pilot, pilot_rate, pilot_method) = match early_pass {
        Some(p) => p,
        None => {
            let (agg, method) = pass(first_rate).await?;
            (agg, first_rate, method)
        }
    };
    let (matched, changed) = (pilot.int(JoinAgg::Matched)?, pilot.int(JoinAgg::Changed)?);
    let mut shares = vec![changed];
    for i in 0..plan.columns.len() {
        shares.push(pilot.int(JoinAgg::ChangedCol(i))?);
    }
    let precise = shares
        .iter()
        .all(|x| sampling::within_tolerance(*x, matched, &s));
    let (agg, rate, method) = if precise {
        (pilot, pilot_rate, pilot_method)
    } else {
        // The share that decides the sample size: the largest of all, at its upper bound.
        let worst = shares
            .iter()
            .map(|x| wilson_hi(*x, matched, z))
            .fold(0.0, f64::max);
        let p_in = pilot.int(JoinAgg::PIn)?.max(1) as f64;
        let matched_share = matched as f64 / p_in;
        let matched_est = (matched_share * nonnull.0 as f64).max(1.0);
        // At least a quarter more keys than the first pass: it was not enough.
        let rate = (s.rows_needed(worst) / matched_est).max(pilot_rate * 1.25);
        if rate >= 0.5 {
            return Ok(false);
        }
        let (agg, method) = pass(rate).await?;
        (agg, rate, method)
    };

    let sp = agg.int(JoinAgg::PIn)?;
    let sq = agg.int(JoinAgg::QIn)?;
    let mut intervals = BTreeMap::new();
    let scale = |x: u64,
                 n: u64,
                 total: u64,
                 name: &str,
                 intervals: &mut BTreeMap<String, (f64, f64)>|
     -> u64 {
        let (lo, hi) = sampling::wilson(x, n, z);
        intervals.insert(
            name.to_owned(),
            ((lo * total as f64).floor(), (hi * total as f64).ceil()),
        );
        if n == 0 {
            0
        } else {
            (x as f64 / n as f64 * total as f64).round() as u64
        }
    };
    let only_prod = scale(
        agg.int(JoinAgg::OnlyProd)?,
        sp,
        nonnull.0,
        "exclusive.prod",
        &mut intervals,
    );
    let only_pr = scale(
        agg.int(JoinAgg::OnlyPr)?,
        sq,
        nonnull.1,
        "exclusive.pr",
        &mut intervals,
    );
    let matched_n = agg.int(JoinAgg::Matched)?;
    let matched = scale(matched_n, sp, nonnull.0, "matched", &mut intervals);
    let dup_p = scale(
        agg.int(JoinAgg::PDupRows)?,
        sp,
        nonnull.0,
        "duplicates.prod",
        &mut intervals,
    );
    let dup_q = scale(
        agg.int(JoinAgg::QDupRows)?,
        sq,
        nonnull.1,
        "duplicates.pr",
        &mut intervals,
    );
    let changed_n = agg.int(JoinAgg::Changed)?;
    let changed = scale(changed_n, matched_n, matched, "changed", &mut intervals);
    let (lo, hi) = sampling::wilson(changed_n, matched_n, z);
    intervals.insert("changed_pct".to_owned(), (100.0 * lo, 100.0 * hi));

    let dup_keys_p = scale(
        agg.int(JoinAgg::PDupKeys)?,
        sp,
        nonnull.0,
        "duplicate_keys.prod",
        &mut intervals,
    );
    let dup_keys_q = scale(
        agg.int(JoinAgg::QDupKeys)?,
        sq,
        nonnull.1,
        "duplicate_keys.pr",
        &mut intervals,
    );
    let unm_p = scale(
        agg.int(JoinAgg::PUnmatchable)?,
        sp,
        nonnull.0,
        "unmatchable.prod",
        &mut intervals,
    );
    let unm_q = scale(
        agg.int(JoinAgg::QUnmatchable)?,
        sq,
        nonnull.1,
        "unmatchable.pr",
        &mut intervals,
    );
    // The estimates above scale each side's parts by its own sample, and `matched` by
    // prod's: with duplicate keys on one side the two samples differ in make-up, and the
    // parts would not add up to the side's rows. The reported figures are made to add up:
    // `matched` (the mean of both sides' estimates, at most either side's rows), then each
    // side's rest shared among its exclusive, duplicated and unmatchable rows in the
    // sample's proportions.
    let matched_q = if sq == 0 {
        0
    } else {
        (matched_n as f64 / sq as f64 * nonnull.1 as f64).round() as u64
    };
    let matched = matched.midpoint(matched_q).min(nonnull.0).min(nonnull.1);
    let [only_prod, dup_p, unm_p] = share_out(
        nonnull.0 - matched,
        [
            agg.int(JoinAgg::OnlyProd)?,
            agg.int(JoinAgg::PDupRows)?,
            agg.int(JoinAgg::PUnmatchable)?,
        ],
        [only_prod, dup_p, unm_p],
    );
    let [only_pr, dup_q, unm_q] = share_out(
        nonnull.1 - matched,
        [
            agg.int(JoinAgg::OnlyPr)?,
            agg.int(JoinAgg::QDupRows)?,
            agg.int(JoinAgg::QUnmatchable)?,
        ],
        [only_pr, dup_q, unm_q],
    );
    r.primary_key_issues.prod = KeyIssues {
        nulls: r.rows.prod - nonnull.0,
        duplicates: dup_p,
        duplicate_keys: dup_keys_p.min(dup_p / 2),
        unmatchable: unm_p,
    };
    r.primary_key_issues.pr = KeyIssues {
        nulls: r.rows.pr - nonnull.1,
        duplicates: dup_q,
        duplicate_keys: dup_keys_q.min(dup_q / 2),
        unmatchable: unm_q,
    };
    r.exclusive = Some(PerSide {
        prod: only_prod,
        pr: only_pr,
    });
    r.matched = Some(matched);
    r.changed = Some(changed.min(matched));
    r.unchanged = Some(matched - changed.min(matched));
    for (i, c) in columns.iter_mut().enumerate() {
        let x = agg.int(JoinAgg::ChangedCol(i))?;
        let (lo, hi) = sampling::wilson(x, matched_n, z);
        c.changed_pct = Some(pct(x, matched_n).unwrap_or(0.0));
        c.changed = Some(if matched_n == 0 {
            0
        } else {
            (x as f64 / matched_n as f64 * matched as f64).round() as u64
        });
        c.changed_pct_interval = Some((100.0 * lo, 100.0 * hi));
    }
    r.sampled = Some(SampledInfo {
        tolerance: s.tolerance,
        confidence: s.confidence,
        threshold: s.threshold,
        seed: req.seed,
        rate,
        rows_sampled: PerSide { prod: sp, pr: sq },
        method,
        intervals,
    });
    r.samples = samples(wh, plan, req, &agg, carries_examples(wh, plan), None).await?;
    Ok(true)
}

/// `total` shared out in proportion to `weights` (largest remainders; exact integers that
/// add up to `total`). With all weights zero, `fallback` (the independent estimates) sets
/// the proportions, and failing that the first part takes everything.
fn share_out(total: u64, weights: [u64; 3], fallback: [u64; 3]) -> [u64; 3] {
    let w = if weights.iter().any(|w| *w > 0) {
        weights
    } else if fallback.iter().any(|w| *w > 0) {
        fallback
    } else {
        [1, 0, 0]
    };
    let sum: u64 = w.iter().sum();
    let exact: Vec<f64> = w
        .iter()
        .map(|x| *x as f64 * total as f64 / sum as f64)
        .collect();
    let mut out = [0u64; 3];
    for (o, e) in out.iter_mut().zip(&exact) {
        *o = e.floor() as u64;
    }
    let mut left = total - out.iter().sum::<u64>();
    let mut order: Vec<usize> = (0..3).collect();
    order.sort_by(|a, b| {
        let ra = exact[*a] - exact[*a].floor();
        let rb = exact[*b] - exact[*b].floor();
        rb.total_cmp(&ra)
    });
    for i in order {
        if left == 0 {
            break;
        }
        if w[i] > 0 {
            out[i] += 1;
            left -= 1;
        }
    }
    out
}

/// The key-hash bucket range holding a share `rate` of the keys.
fn bucket_at(seed: u64, rate: f64) -> SampleBucket {
    const FULL: f64 = 4_294_967_296.0;
    SampleBucket {
        seed,
        threshold: (rate * FULL).ceil() as u64,
    }
}

/// Exact diffs of tables this large (by the catalog's estimate) take their example rows
/// from a small keyed sample run beside the join (see [`diff`]): reading them by key
/// afterwards scans each side again (≈ 1.1 s at 10 M rows, 0.15–0.3 s at 1 M), while the
/// sample runs on the connection that is idle once the counts are done. Below this size
/// that scan costs a few tens of milliseconds.
const EXAMPLE_SAMPLE_MIN_ROWS: u64 = 500_000;

/// Keys in that sample: enough to hold examples of any difference above a few in 10 000
/// rows; rarer kinds are read by key after the join.
const EXAMPLE_SAMPLE_KEYS: f64 = 20_000.0;

/// The share of keys in a sampled diff's first pass over relations of `rows` rows: enough
/// keys that shares up to [`sampling::FIRST_PASS_PRIOR`] come out within the tolerance, and
/// at least the pilot (see [`sampling`]).
fn first_pass_rate(req: &DiffRequest, s: &SamplingSettings, rows: u64) -> f64 {
    let rows = rows.max(1) as f64;
    let keys = (req.pilot_rows.max(100) as f64).max(s.rows_needed(sampling::FIRST_PASS_PRIOR));
    (keys / rows).min(1.0)
}

/// The larger of the catalog's row estimates of the two relations, when it has both.
async fn estimated_rows(wh: &dyn Warehouse, plan: &ComparePlan) -> Option<u64> {
    let d = wh.dialect();
    let one = |rel: &Relation| {
        let sql = d.row_estimate_query(rel);
        async move {
            let rows = match sql {
                Some(sql) => wh.query(&sql).await,
                None => return None,
            };
            match rows {
                Ok(rows) => rows
                    .first()
                    .and_then(|r| r.first().cloned().flatten())
                    .and_then(|v| v.parse::<i64>().ok())
                    .filter(|n| *n > 0)
                    .map(|n| n as u64),
                Err(e) => {
                    tracing::warn!(error = %e, "row estimate failed; counting first");
                    None
                }
            }
        }
    };
    let (p, q) = futures::join!(one(&plan.prod), one(&plan.pr));
    Some(p?.max(q?))
}

fn wilson_hi(x: u64, n: u64, z: f64) -> f64 {
    sampling::wilson(x, n, z).1
}

/// Where an example row comes from.
#[derive(Debug, PartialEq, Eq)]
enum Example {
    /// Carried by a pass, in [`query::ExampleRow`]'s format.
    Carried(String),
    /// A key text whose rows are read from both sides.
    Key(String),
}

/// The example rows of a join pass: carried by the pass itself (a sample's, or a windowed
/// one), or read by key from both sides after a plain exact one. With `stand_in`, a
/// sample's carried rows replace the plain pass's examples wherever the sample has one of
/// the same aggregate; the rest are read by key. At most `sample_rows` per kind.
async fn samples(
    wh: &dyn Warehouse,
    plan: &ComparePlan,
    req: &DiffRequest,
    agg: &Aggregates,
    carried: bool,
    stand_in: Option<&Aggregates>,
) -> Result<Vec<SampleRow>, DiffError> {
    if req.sample_rows == 0 {
        return Ok(Vec::new());
    }
    // Each example aggregate, by kind: a row carried by a pass (this one's, or the stand-in
    // sample's for the same aggregate), or a key to read.
    let mut names = vec![
        ("only_prod", JoinAgg::ExOnlyProdMin),
        ("only_prod", JoinAgg::ExOnlyProdMax),
        ("only_pr", JoinAgg::ExOnlyPrMin),
        ("only_pr", JoinAgg::ExOnlyPrMax),
        ("changed", JoinAgg::ExChangedMin),
    ];
    names.extend((0..plan.columns.len()).map(|i| ("changed", JoinAgg::ExChangedCol(i))));
    names.push(("changed", JoinAgg::ExChangedMax));
    let mut wanted: Vec<(&'static str, Example)> = Vec::new();
    for (kind, name) in names {
        let Some(text) = agg.text(name) else {
            continue;
        };
        let example = match stand_in.and_then(|s| s.text(name)) {
            Some(row) => Example::Carried(row),
            None if carried => Example::Carried(text),
            None => Example::Key(text),
        };
        if !wanted.iter().any(|(_, w)| *w == example) {
            wanted.push((kind, example));
        }
    }
    // At most `sample_rows` per kind.
    let mut per_kind: HashMap<&str, usize> = HashMap::new();
    wanted.retain(|(kind, _)| {
        let n = per_kind.entry(kind).or_default();
        *n += 1;
        *n <= req.sample_rows
    });
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let nk = plan.key.len();
    let nc = plan.columns.len();
    // Per example: kind, key values, prod values, PR values.
    let mut rows: Vec<(&'static str, query::ExampleRow)> = Vec::new();
    // Keys to read: from both sides, in one statement each.
    let keys: Vec<String> = wanted
        .iter()
        .filter_map(|(_, w)| match w {
            Example::Key(k) => Some(k.clone()),
            Example::Carried(_) => None,
        })
        .collect();
    let (prod, pr) = if keys.is_empty() {
        (HashMap::new(), HashMap::new())
    } else {
        let d = wh.dialect();
        let limit = keys.len() * 2;
        let (ps, qs) = (
            plan.rows_by_key_query(d, Side::Prod, &keys, limit),
            plan.rows_by_key_query(d, Side::Pr, &keys, limit),
        );
        let (prod_rows, pr_rows) = futures::try_join!(wh.query(&ps), wh.query(&qs))?;
        let index = |rows: Vec<Row>| -> HashMap<String, Row> {
            rows.into_iter()
                .filter_map(|r| r.first().cloned().flatten().map(|k| (k, r)))
                .collect()
        };
        (index(prod_rows), index(pr_rows))
    };
    for (kind, example) in wanted {
        match example {
            Example::Carried(text) => match query::ExampleRow::parse(&text, nk, nc) {
                Some(row) => rows.push((kind, row)),
                // Only a warehouse whose text functions disagree with the format gets
                // here: an example row is worth a warning, not a failed diff.
                None => tracing::warn!(kind, "an example row could not be read back; left out"),
            },
            Example::Key(k) => {
                let (p, q) = (prod.get(&k), pr.get(&k));
                let Some(any) = p.or(q) else { continue };
                let side = |r: Option<&Row>| -> Vec<Option<String>> {
                    (0..nc)
                        .map(|i| r.and_then(|r| r[1 + nk + i].clone()))
                        .collect()
                };
                rows.push((
                    kind,
                    query::ExampleRow {
                        key: (0..nk).map(|i| any[1 + i].clone()).collect(),
                        prod: side(p),
                        pr: side(q),
                    },
                ));
            }
        }
    }
    let masked = |name: &str| {
        req.masked_columns
            .iter()
            .any(|m| m.eq_ignore_ascii_case(name))
    };
    let mask = |name: &str, v: Option<String>| {
        if masked(name) {
            v.map(|_| "••••".to_owned())
        } else {
            v
        }
    };
    let mut out = Vec::new();
    for (kind, row) in rows {
        let key = plan
            .key
            .iter()
            .zip(row.key)
            .map(|(kc, v)| (kc.name.clone(), mask(&kc.name, v)))
            .collect();
        let mut values = Vec::new();
        for ((c, pv), qv) in plan.columns.iter().zip(row.prod).zip(row.pr) {
            if kind == "changed" && pv == qv {
                continue;
            }
            values.push(SampleValue {
                column: c.name.clone(),
                prod: mask(&c.name, pv),
                pr: mask(&c.name, qv),
            });
        }
        out.push(SampleRow { kind, key, values });
    }
    Ok(out)
}

#[cfg(test)]
mod snapshot_tests;

#[cfg(test)]
mod aggregate_tests {
    use super::{Aggregates, DiffError, JoinAgg};

    #[test]
    fn an_aggregate_the_query_did_not_return_is_an_error_not_zero() {
        let row = vec![Some("7".to_owned()), None, Some("3.0".to_owned())];
        let agg = Aggregates::new(
            &[JoinAgg::Matched, JoinAgg::Changed, JoinAgg::ChangedCol(2)],
            Some(row),
        )
        .expect("three names, three values");
        assert_eq!(agg.int(JoinAgg::Matched).expect("read"), 7);
        // NULL is a SUM over no rows; a whole REAL is SQLite's SUM.
        assert_eq!(agg.int(JoinAgg::Changed).expect("read"), 0);
        assert_eq!(agg.int(JoinAgg::ChangedCol(2)).expect("read"), 3);
        for missing in [JoinAgg::ChangedCol(1), JoinAgg::OnlyProd] {
            match agg.int(missing) {
                Err(DiffError::Protocol(m)) => assert!(m.contains(&missing.alias()), "{m}"),
                other => panic!("{missing:?}: {other:?}"),
            }
        }
        assert!(Aggregates::new(&[JoinAgg::Matched], Some(vec![])).is_err());
    }
}
