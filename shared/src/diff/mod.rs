//! The model diff: production relation vs PR relation, inside the warehouse.
//!
//! # How a diff runs
//!
//! ```text
//! DiffRequest ── filter checked (parse_filter)
//!     │
//!     ▼
//! resolve    both catalogs ─▶ ComparePlan (key, compared columns, normalised
//!     │      expressions) + schema changes
//!     ▼
//! exact      row counts ∥ plain join pass ──duplicated key?──▶ windowed join pass
//!     │      (no key: a NULL profile per column instead)
//!     │   or, over the sampling threshold:
//!     │  sampled  row counts ∥ first sampled pass ──imprecise?──▶ a larger pass
//!     ▼
//! examples   carried by the pass, or read by key from both sides; masked
//!     ▼
//! concentration  top values of a few columns among the changed rows (one small statement)
//!     ▼
//! result     DiffResult, with notes on NULL and duplicated keys
//! ```
//!
//! 1. **Resolve** ([`resolve`]). Both relations' columns and declared types; unknown
//!    relations and missing key columns are input errors. Schema changes (added, removed,
//!    type changed) fall out of the two lists. Columns present on both sides are compared,
//!    after the dialect's normalisation when their types differ (see
//!    [`crate::sql::Dialect`]).
//! 2. **Counts and the join, together** ([`exact`]). A cheap scan per side counts rows and
//!    NULL keys while one pass over `prod FULL OUTER JOIN pr ON key` (rows with a NULL key
//!    left out: they cannot match) counts everything else: rows only in prod, only in the
//!    PR, matched, changed, per-column changes and a few example keys
//!    ([`query::ComparePlan::join_query`]).
//! 3. **Duplicates first.** The join's counts are trusted only if every row appears in it
//!    exactly once (join rows per side equal the side's rows with a non-NULL key) and
//!    exclusive keys are distinct. Otherwise the pass is redone *windowed*: keys
//!    duplicated on a side are left out of matching and reported, so duplicates never
//!    inflate a count. Every row is then accounted for once:
//!    `rows = null keys + duplicated-key rows + only here + matched`.
//! 4. **Examples** ([`examples`]). A windowed or sampled pass returns its example rows
//!    itself; after a plain exact pass the example keys' rows are read from both sides
//!    (values of masked columns are replaced before they leave this module).
//! 5. **Sampling** (tables over the threshold; [`sampled`] has the sizes). Both sides keep
//!    the rows whose key hash falls in the same bucket range, so the same keys are
//!    compared. A sampled pass joins those rows as they are ([`query::JoinKind::Carry`]) and
//!    counts each side's distinct keys in the same statement: more rows than keys on a
//!    side means a duplicated key, and only then is the pass redone windowed
//!    ([`SampleMethod`]).
//!
//! 6. **Where the change concentrates** ([`concentration`]). When rows changed, one small
//!    statement after the join counts, among the changed rows, the values of up to three
//!    low-cardinality columns (the model's `dimensions`, or unchanged text, boolean and
//!    date columns with the fewest distinct values); on large relations over a key-hash
//!    sample of the changed rows.
//!
//! The figures land in a [`DiffResult`] ([`result`]). Nothing but aggregates and a
//! bounded number of sample rows ever leaves the warehouse.
//!
//! # Where the SQL is
//!
//! Every statement is built in [`query`] from a [`query::ComparePlan`] and a
//! [`crate::sql::Dialect`], apart from the steps that run them: one plan exercises every
//! builder, so each statement is snapshot-tested for every dialect and parsed back without
//! a warehouse, and the builders share their fragments (a side's filtered select, the
//! sample bucket). The aggregates a statement returns are named once, in [`aggregates`].

mod aggregates;
mod concentration;
mod estimate;
mod exact;
mod examples;
pub mod from_plan;
pub mod query;
pub mod remap;
mod renames;
mod resolve;
mod result;
pub mod sampled;
pub mod tolerance;

use crate::sql::Relation;
use crate::sql::filter::{UnsafeFilter, parse_filter};
use crate::warehouse::{Warehouse, WarehouseError};
use query::{ComparePlan, Side};
pub use result::{
    ColumnDiff, Concentration, DiffResult, Dimension, DimensionValue, KeyIssues, KeyIssuesPerSide,
    PerSide, Renamed, SampleMethod, SampleRow, SampleValue, SampledInfo, SchemaDiff,
};
pub use sampled::SamplingSettings;
pub use tolerance::Tolerance;

/// A predicate naming columns never to compare (the global "columns to ignore" list).
pub type ColumnIgnore = std::sync::Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// What to diff: the part of a [`DiffRequest`] the poller decides and the diff runner
/// executes. It travels whole (as JSON inside the run store's work item), so a field added
/// here reaches the diff runner without being copied by hand. Fields added later carry
/// `#[serde(default)]` so that work items stored before still decode.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DiffSpec {
    pub prod: Relation,
    pub pr: Relation,
    /// Key columns; empty = no row matching (schema, row counts and NULL profile only).
    #[serde(default)]
    pub primary_key: Vec<String>,
    /// A SQL boolean expression applied to both sides, as written in the PR's yaml or on
    /// the command line: [`diff`] checks it with [`parse_filter`] and uses only what that
    /// writes back.
    #[serde(default)]
    pub filter: Option<String>,
    /// Compare only these columns (keys are always kept); empty = all.
    #[serde(default)]
    pub include_columns: Vec<String>,
    /// Never compare these columns (keys are never excluded).
    #[serde(default)]
    pub exclude_columns: Vec<String>,
    /// Values of these columns are masked in sample rows.
    #[serde(default)]
    pub masked_columns: Vec<String>,
    /// Numeric columns compared with a tolerance, by name (see [`Tolerance`]). A name
    /// that is not a compared numeric column gets a note in the result.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerance: Vec<(String, Tolerance)>,
    /// Columns whose values among the changed rows the result reports (where the change
    /// concentrates); empty = chosen automatically.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dimensions: Vec<String>,
    /// Columns the PR says it renamed (prod's name → the PR's name), compared as one
    /// column when prod has the old name and the PR the new one (see [`remap`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remap: Vec<remap::ColumnRemap>,
}

impl DiffSpec {
    /// Both relations and the key; every other setting empty.
    pub fn new(prod: Relation, pr: Relation, primary_key: Vec<String>) -> Self {
        DiffSpec {
            prod,
            pr,
            primary_key,
            filter: None,
            include_columns: Vec::new(),
            exclude_columns: Vec::new(),
            masked_columns: Vec::new(),
            tolerance: Vec::new(),
            dimensions: Vec::new(),
            remap: Vec::new(),
        }
    }
}

/// What to diff ([`DiffSpec`], reached through `Deref`: `req.prod`, `req.filter`…) and how
/// this process runs it (sampling, sample sizes, the ignore predicate, hints).
#[derive(Clone)]
pub struct DiffRequest {
    pub spec: DiffSpec,
    /// `None`: always exact.
    pub sampling: Option<SamplingSettings>,
    /// Sample rows per kind (only in prod, only in PR, changed) in the result.
    pub sample_rows: usize,
    /// Seed of the key hash used for sampling.
    pub seed: u64,
    /// The fewest keys a first sampled pass takes (see [`sampled`]).
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
            .field("spec", &self.spec)
            .field("sampling", &self.sampling)
            .finish_non_exhaustive()
    }
}

impl DiffRequest {
    pub fn new(prod: Relation, pr: Relation, primary_key: Vec<String>) -> Self {
        Self::from_spec(DiffSpec::new(prod, pr, primary_key))
    }

    /// The request that runs `spec` with this process's defaults (exact, 5 sample rows).
    pub fn from_spec(spec: DiffSpec) -> Self {
        DiffRequest {
            spec,
            sampling: None,
            sample_rows: 5,
            seed: 0,
            pilot_rows: sampled::PILOT_ROWS as u64,
            column_ignore: None,
            example_sample_min_rows: examples::EXAMPLE_SAMPLE_MIN_ROWS,
            no_key_hint: None,
        }
    }
}

impl std::ops::Deref for DiffRequest {
    type Target = DiffSpec;
    fn deref(&self) -> &DiffSpec {
        &self.spec
    }
}

impl std::ops::DerefMut for DiffRequest {
    fn deref_mut(&mut self) -> &mut DiffSpec {
        &mut self.spec
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
    /// A statement's dry-run estimate is over the data source's limit on billed bytes: the
    /// model is not diffed, and no statement ran.
    #[error(
        "a dry run estimates that one of this diff's statements would scan {} ({} bytes), more than the data source's maximum_bytes_billed of {} ({} bytes): nothing was run or billed; raise maximum_bytes_billed or narrow the model with a filter",
        crate::report::format_bytes(*estimate),
        crate::report::format_count(*estimate),
        crate::report::format_bytes(*limit),
        crate::report::format_count(*limit)
    )]
    OverBytesLimit { estimate: u64, limit: u64 },
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
                | DiffError::OverBytesLimit { .. }
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

/// The rows of one relation: for models new in the PR or removed by it, which have no
/// counterpart to diff against. A relation with no columns visible is unknown, as in
/// [`diff`].
pub async fn count_rows(wh: &dyn Warehouse, rel: &Relation) -> Result<u64, DiffError> {
    resolve::columns(wh, rel, "counted").await?;
    let plan = ComparePlan {
        prod: rel.clone(),
        pr: rel.clone(),
        key: Vec::new(),
        columns: Vec::new(),
        filter: None,
        integer_key: false,
        group: None,
        whole_number_key: false,
        renames: Vec::new(),
    };
    Ok(
        exact::run_counts(wh, &plan, Side::Prod, exact::Lane::Critical)
            .await?
            .0,
    )
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
    // The filter is PR input: checked before anything reaches the warehouse.
    let filter = req
        .filter
        .as_deref()
        .map(|f| parse_filter(wh.dialect(), f))
        .transpose()?;
    let resolve::Resolved {
        plan,
        key_names,
        columns,
        schema,
        mut notes,
    } = resolve::resolve_relations(wh, req, filter.as_ref()).await?;
    let mut result = DiffResult::counted(&req.prod, &req.pr, PerSide::default());
    result.primary_key = key_names;
    result.schema = schema;
    result.columns = columns;
    // Before any statement runs: the warehouse's estimate of what the diff will scan, and
    // its limit on billed bytes checked against it.
    result.bytes_estimate = estimate::scan_estimate(wh, &plan).await?;

    if plan.key.is_empty() {
        exact::profile(wh, &plan, &mut result).await?;
        notes.push(match &req.no_key_hint {
            Some(hint) => format!("{NO_KEY_NOTE} {hint}"),
            None => NO_KEY_NOTE.to_owned(),
        });
        result.notes = notes;
        remapped_agreement(&mut result);
        return Ok(result);
    }

    let first = exact::counts_and_first_pass(wh, &plan, req).await?;
    let counts = first.counts;
    result.rows = counts.rows;
    let sampling = req
        .sampling
        .filter(|s| counts.rows.prod.max(counts.rows.pr) >= s.threshold);
    let done = match sampling {
        Some(_) => {
            sampled::sampled(wh, &plan, req, counts.nonnull(), first.sample, &mut result).await?
        }
        None => false,
    };
    if !done {
        exact::exact_pass(
            wh,
            &plan,
            req,
            &counts,
            first.join,
            first.stand_in,
            &mut result,
        )
        .await?;
    }
    concentration::concentration(wh, &plan, req, &mut result).await?;
    notes.append(&mut result.notes);
    notes.extend(result.key_issue_notes());
    result.notes = notes;
    remapped_agreement(&mut result);
    Ok(result)
}

/// The agreement of each pair the PR remapped: the share of matched rows on which its
/// column did not change (left at 0 when rows were not matched).
fn remapped_agreement(result: &mut DiffResult) {
    for rn in result.schema.renamed.iter_mut().filter(|r| r.from_pr) {
        if let Some(pct) = result
            .columns
            .iter()
            .find(|c| c.name == rn.to)
            .and_then(|c| c.changed_pct)
        {
            rn.agreement_pct = ((100.0 - pct) * 100.0).floor() / 100.0;
        }
    }
}

#[cfg(test)]
mod snapshot_tests;
