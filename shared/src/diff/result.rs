//! What a diff returns: [`DiffResult`] and its parts, as `--format json` prints them and
//! the run store keeps them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::sql::Relation;

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
    /// The tolerance the column was compared with, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<super::Tolerance>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SchemaDiff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub type_changed: Vec<String>,
    /// Columns removed and added whose values agree on nearly every matched row, or that
    /// the PR remapped: compared as one column (under its new name), and in neither
    /// `added` nor `removed`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub renamed: Vec<Renamed>,
}

/// A column the PR renamed, as the diff found it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Renamed {
    pub from: String,
    pub to: String,
    /// Matched rows on which the old and the new column agree, in % (rounded down to
    /// 0.01).
    pub agreement_pct: f64,
    /// The PR named the pair (a remapping directive) rather than the diff detecting it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub from_pr: bool,
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
    /// The bytes the diff's statements were estimated to scan before they ran (the row
    /// counts and the join, from BigQuery's dry runs); `None` where the warehouse gives no
    /// estimate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_estimate: Option<u64>,
    /// Where the changed rows concentrate: the top values of a few low-cardinality
    /// columns among them (see [`crate::diff`], step 6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concentration: Option<Concentration>,
}

/// Where the changed rows concentrate: per dimension column, its most frequent values
/// among the changed rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Concentration {
    /// Changed rows the shares are of: every changed row, or those in the key sample.
    pub changed_rows: u64,
    /// Share of keys read when the shares come from a key-hash sample (approximate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<f64>,
    /// `meta` (named in the model's yaml) or `auto` (chosen by prdiff).
    pub chosen: String,
    pub dimensions: Vec<Dimension>,
}

/// One dimension column's most frequent values among the changed rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dimension {
    pub column: String,
    /// Distinct values among the changed rows.
    pub distinct: u64,
    /// The most frequent values, most frequent first.
    pub top: Vec<DimensionValue>,
}

/// A value of a dimension column (as text; `None` is NULL) and the changed rows that have it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DimensionValue {
    pub value: Option<String>,
    pub rows: u64,
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
            bytes_estimate: None,
            concentration: None,
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

    /// The notes on duplicated and NULL keys, if the key issues have any.
    pub(super) fn key_issue_notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        let i = self.primary_key_issues;
        if i.prod.duplicates + i.pr.duplicates + i.prod.unmatchable + i.pr.unmatchable > 0 {
            let about = if self.sampled.is_some() {
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
        notes
    }
}

/// `x` as a percentage of `n`; `None` when `n` is 0.
pub(super) fn pct(x: u64, n: u64) -> Option<f64> {
    if n == 0 {
        None
    } else {
        Some(100.0 * x as f64 / n as f64)
    }
}
