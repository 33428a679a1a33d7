//! Step 6 of a diff: where the changed rows concentrate. For a few low-cardinality columns
//! (the model's `dimensions`, or chosen here), the most frequent values among the changed
//! rows, from one small statement after the join ([`ComparePlan::concentration_query`]).
//! On large relations it reads a key-hash sample of the changed rows, so its cost stays
//! small beside the join's.

use super::exact::{Lane, ask};
use super::query::{ComparePlan, JoinKind};
use super::result::{Concentration, Dimension, DimensionValue};
use super::sampled::bucket_at;
use super::{DiffError, DiffRequest, DiffResult};
use crate::sql::{Dialect, TypeFamily};
use crate::warehouse::Warehouse;

/// At most this many dimensions are reported.
pub(super) const MAX_DIMENSIONS: usize = 3;

/// A column chosen automatically must have at most this many distinct values among the
/// changed rows.
pub(super) const MAX_DISTINCT: u64 = 20;

/// Values kept per dimension.
const TOP: usize = 3;

/// Columns tested when choosing automatically (the first ones in table order).
const MAX_CANDIDATES: usize = 8;

/// Relations with at least this many rows (the larger side) read a key-hash sample of
/// their changed rows rather than all of them.
pub(super) const SAMPLE_MIN_ROWS: u64 = 500_000;

/// The changed rows such a sample aims at: shares within about ±3 percentage points
/// (95 %), whatever the table's size. The statement's cost on a sampled relation is mostly
/// reading both sides; fewer changed rows keep its join and grouping small.
pub(super) const SAMPLE_CHANGED_ROWS: f64 = 1_000.0;

/// The dimensions of a diff, by index in the plan's compared columns, and how they were
/// chosen. Masked columns are never dimensions.
fn choose(
    d: &dyn Dialect,
    plan: &ComparePlan,
    req: &DiffRequest,
    r: &DiffResult,
    notes: &mut Vec<String>,
) -> (Vec<usize>, bool) {
    let masked = |name: &str| {
        req.masked_columns
            .iter()
            .any(|m| m.eq_ignore_ascii_case(name))
    };
    if !req.dimensions.is_empty() {
        let mut dims = Vec::new();
        for name in &req.dimensions {
            let found = plan
                .columns
                .iter()
                .position(|c| c.name == *name)
                .or_else(|| {
                    plan.columns
                        .iter()
                        .position(|c| c.name.eq_ignore_ascii_case(name))
                });
            match found {
                Some(i) if masked(&plan.columns[i].name) => {}
                Some(i) if !dims.contains(&i) && dims.len() < MAX_DIMENSIONS => dims.push(i),
                Some(_) => {}
                None => notes.push(format!(
                    "dimension `{name}` is not a compared column of both relations; not reported"
                )),
            }
        }
        return (dims, true);
    }
    let low_cardinality_type = |raw: &str| {
        matches!(
            d.parse_type(raw).family,
            TypeFamily::Text | TypeFamily::Boolean | TypeFamily::Date
        )
    };
    let dims = plan
        .columns
        .iter()
        .enumerate()
        .filter(|(i, c)| {
            let Some(col) = r.columns.get(*i).filter(|col| col.name == c.name) else {
                return false;
            };
            !masked(&c.name)
                && col.changed == Some(0)
                && low_cardinality_type(&col.prod_type)
                && low_cardinality_type(&col.pr_type)
        })
        .map(|(i, _)| i)
        .take(MAX_CANDIDATES)
        .collect();
    (dims, false)
}

/// The key share to read for `changed` changed rows among `rows` (the larger side):
/// `None` (every row) below [`SAMPLE_MIN_ROWS`] or when the sample would hold most keys.
fn sample_rate(rows: u64, changed: u64) -> Option<f64> {
    if rows < SAMPLE_MIN_ROWS || changed == 0 {
        return None;
    }
    let rate = SAMPLE_CHANGED_ROWS / changed as f64;
    (rate < 0.5).then_some(rate)
}

/// Where the changed rows of `r` concentrate, when it has any and a dimension applies.
/// A sampled diff reads its own sample's keys; an exact one on a large table a key-hash
/// sample of its own (see [`sample_rate`]). A failure costs only the line in the report.
pub(super) async fn concentration(
    wh: &dyn Warehouse,
    plan: &ComparePlan,
    req: &DiffRequest,
    r: &mut DiffResult,
) -> Result<(), DiffError> {
    let changed = r.changed.unwrap_or(0);
    if changed == 0 || plan.columns.is_empty() {
        return Ok(());
    }
    let d = wh.dialect();
    let mut notes = Vec::new();
    let (dims, named) = choose(d, plan, req, r, &mut notes);
    r.notes.append(&mut notes);
    if dims.is_empty() {
        return Ok(());
    }
    let i = r.primary_key_issues;
    let duplicates = i.prod.duplicates + i.pr.duplicates + i.prod.unmatchable + i.pr.unmatchable;
    let kind = if duplicates > 0 {
        JoinKind::Windowed
    } else {
        JoinKind::Plain
    };
    let rate = match &r.sampled {
        Some(s) => Some((s.seed, s.rate)),
        None => sample_rate(r.rows.prod.max(r.rows.pr), changed).map(|rate| (req.seed, rate)),
    };
    let bucket = rate.map(|(seed, rate)| bucket_at(seed, rate));
    let sql = plan.concentration_query(d, kind, bucket, &dims, TOP);
    let rows = match ask(wh, &sql, Lane::Critical).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "the concentration of changes could not be computed");
            return Ok(());
        }
    };
    let mut found = read(plan, &dims, rows)?;
    let changed_rows = found.iter().map(|(_, total)| *total).max().unwrap_or(0);
    if changed_rows == 0 {
        return Ok(());
    }
    if !named {
        keep_concentrated(&mut found);
    }
    if found.is_empty() {
        return Ok(());
    }
    r.concentration = Some(Concentration {
        changed_rows,
        sample_rate: rate.map(|(_, rate)| rate),
        chosen: if named { "meta" } else { "auto" }.to_owned(),
        dimensions: found.into_iter().map(|(dim, _)| dim).collect(),
    });
    Ok(())
}

/// Of the automatically chosen columns, those whose changed rows do concentrate, fewest
/// distinct values first (table order among equals), at most [`MAX_DIMENSIONS`]: at most
/// [`MAX_DISTINCT`] distinct values, at least two changed rows a value on average, and a
/// top value holding more than one row. A column whose every changed row has a value of
/// its own (names, e-mails on a small diff) says nothing about where changes are.
fn keep_concentrated(found: &mut Vec<(Dimension, u64)>) {
    found.retain(|(dim, total)| {
        dim.distinct <= MAX_DISTINCT
            && dim.distinct * 2 <= *total
            && dim.top.first().is_some_and(|v| v.rows > 1)
    });
    found.sort_by_key(|(dim, _)| dim.distinct);
    found.truncate(MAX_DIMENSIONS);
}

/// The statement's rows `(i, v, n, nd, total)` as dimensions, in `dims` order, each with
/// the changed rows it counted.
fn read(
    plan: &ComparePlan,
    dims: &[usize],
    rows: Vec<crate::warehouse::Row>,
) -> Result<Vec<(Dimension, u64)>, DiffError> {
    let bad = || DiffError::Protocol("unexpected row from the concentration statement".into());
    let int = |v: Option<&Option<String>>| -> Result<u64, DiffError> {
        v.and_then(|v| v.as_deref())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(bad)
    };
    let mut out: Vec<(Dimension, u64)> = dims
        .iter()
        .map(|&i| {
            (
                Dimension {
                    column: plan.columns[i].name.clone(),
                    distinct: 0,
                    top: Vec::new(),
                },
                0,
            )
        })
        .collect();
    for row in rows {
        let pos = usize::try_from(int(row.first())?).map_err(|_| bad())?;
        let (dim, total) = out.get_mut(pos).ok_or_else(bad)?;
        dim.top.push(DimensionValue {
            value: row.get(1).cloned().flatten(),
            rows: int(row.get(2))?,
        });
        dim.distinct = int(row.get(3))?;
        *total = int(row.get(4))?;
    }
    out.retain(|(dim, _)| !dim.top.is_empty());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dim(column: &str, distinct: u64, top: &[u64]) -> Dimension {
        Dimension {
            column: column.into(),
            distinct,
            top: top
                .iter()
                .enumerate()
                .map(|(i, &rows)| DimensionValue {
                    value: Some(format!("v{i}")),
                    rows,
                })
                .collect(),
        }
    }

    #[test]
    fn only_columns_whose_changed_rows_share_values_are_kept() {
        let mut found = vec![
            // 12 changed rows, 12 names: every row a value of its own.
            (dim("first_name", 12, &[1, 1, 1]), 12),
            // 7 values over 12 rows: more than half as many values as rows.
            (dim("city", 7, &[4, 2, 1]), 12),
            (dim("region", 3, &[9, 2, 1]), 12),
            (dim("channel", 2, &[10, 2]), 12),
            // 21 values: too many to be a dimension, however many rows.
            (dim("store", 21, &[400, 300, 200]), 5_000),
            (dim("status", 4, &[2, 2, 2]), 8),
            (dim("plan", 5, &[3000, 1000, 500]), 5_000),
        ];
        keep_concentrated(&mut found);
        let kept: Vec<&str> = found.iter().map(|(d, _)| d.column.as_str()).collect();
        assert_eq!(kept, ["channel", "region", "status"]);

        // A value holding one row is no concentration, even among few values.
        let mut found = vec![(dim("flag", 2, &[1, 1]), 4)];
        keep_concentrated(&mut found);
        assert!(found.is_empty());
    }

    #[test]
    fn large_relations_read_a_sample_of_their_changed_rows() {
        assert_eq!(sample_rate(100_000, 5_000), None, "small table: every row");
        assert_eq!(sample_rate(1_000_000, 0), None);
        assert_eq!(
            sample_rate(1_000_000, (SAMPLE_CHANGED_ROWS * 1.5) as u64),
            None,
            "a sample would hold most keys"
        );
        assert!(sample_rate(1_000_000, (SAMPLE_CHANGED_ROWS * 2.5) as u64).is_some());
        let rate = sample_rate(1_000_000, 14_100).expect("sampled");
        assert!((rate * 14_100.0 - SAMPLE_CHANGED_ROWS).abs() < 1e-6);
    }
}
