//! The aggregates of a diff query, by name: the query builders ([`super::query`]) write
//! each one under [`JoinAgg::alias`] and the passes read the row back through
//! [`Aggregates`] with the same value, so a name is written in one place and an aggregate
//! a query did not return is an error, never a zero.

use std::collections::HashMap;

use super::DiffError;
use crate::warehouse::Row;

/// One aggregate a diff query returns: the query builders name their output columns with
/// [`JoinAgg::alias`] and the engine reads the row back by the same value, so a name is
/// written in one place only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JoinAgg {
    /// Prod rows in the join (with a non-NULL key).
    PIn,
    /// PR rows in the join.
    QIn,
    /// Prod rows whose key is duplicated (windowed passes).
    PDupRows,
    /// PR rows whose key is duplicated (windowed passes).
    QDupRows,
    /// Duplicated prod key values (windowed passes).
    PDupKeys,
    /// Duplicated PR key values (windowed passes).
    QDupKeys,
    /// Unique prod keys whose PR counterpart is duplicated (windowed passes).
    PUnmatchable,
    /// Unique PR keys whose prod counterpart is duplicated (windowed passes).
    QUnmatchable,
    /// Rows only in prod.
    OnlyProd,
    /// Rows only in the PR.
    OnlyPr,
    /// Distinct keys only in prod (non-windowed passes).
    OnlyProdKeys,
    /// Distinct keys only in the PR (non-windowed passes).
    OnlyPrKeys,
    /// Distinct prod keys in the join (carrying passes).
    PKeys,
    /// Distinct PR keys in the join (carrying passes).
    QKeys,
    /// Rows matched on the key.
    Matched,
    /// Matched rows with any compared column changed.
    Changed,
    /// Example keys (or carried rows): least and greatest only in prod.
    ExOnlyProdMin,
    ExOnlyProdMax,
    /// Example keys (or carried rows): least and greatest only in the PR.
    ExOnlyPrMin,
    ExOnlyPrMax,
    /// Example keys (or carried rows): least and greatest changed.
    ExChangedMin,
    ExChangedMax,
    /// Matched rows where compared column `i` changed.
    ChangedCol(usize),
    /// Example key (or carried row) where compared column `i` changed.
    ExChangedCol(usize),
    /// Rows of one side (count and profile queries).
    RowCount,
    /// Rows of one side with a NULL in the key (count query).
    NullKeys,
    /// Rows of one side where compared column `i` is NULL (profile query).
    NullsCol(usize),
    /// Matched rows where rename candidate `j`'s old (prod) and new (PR) column differ.
    RenameDiffers(usize),
    /// Matched rows where rename candidate `j` differs and no compared column does.
    RenameOnly(usize),
    /// Matched rows where both columns of rename candidate `j` are NULL: no evidence either
    /// way, left out of its agreement.
    RenameBothNull(usize),
}

impl JoinAgg {
    /// The column alias the query gives this aggregate.
    pub fn alias(&self) -> String {
        match self {
            JoinAgg::PIn => "p_in".into(),
            JoinAgg::QIn => "q_in".into(),
            JoinAgg::PDupRows => "p_dup_rows".into(),
            JoinAgg::QDupRows => "q_dup_rows".into(),
            JoinAgg::PDupKeys => "p_dup_keys".into(),
            JoinAgg::QDupKeys => "q_dup_keys".into(),
            JoinAgg::PUnmatchable => "p_unmatchable".into(),
            JoinAgg::QUnmatchable => "q_unmatchable".into(),
            JoinAgg::OnlyProd => "only_prod".into(),
            JoinAgg::OnlyPr => "only_pr".into(),
            JoinAgg::OnlyProdKeys => "only_prod_keys".into(),
            JoinAgg::OnlyPrKeys => "only_pr_keys".into(),
            JoinAgg::PKeys => "p_keys".into(),
            JoinAgg::QKeys => "q_keys".into(),
            JoinAgg::Matched => "matched".into(),
            JoinAgg::Changed => "changed".into(),
            JoinAgg::ExOnlyProdMin => "ex_only_prod_min".into(),
            JoinAgg::ExOnlyProdMax => "ex_only_prod_max".into(),
            JoinAgg::ExOnlyPrMin => "ex_only_pr_min".into(),
            JoinAgg::ExOnlyPrMax => "ex_only_pr_max".into(),
            JoinAgg::ExChangedMin => "ex_changed_min".into(),
            JoinAgg::ExChangedMax => "ex_changed_max".into(),
            JoinAgg::ChangedCol(i) => format!("changed_{i}"),
            JoinAgg::ExChangedCol(i) => format!("ex_changed_{i}"),
            JoinAgg::RenameDiffers(j) => format!("rename_differs_{j}"),
            JoinAgg::RenameOnly(j) => format!("rename_only_{j}"),
            JoinAgg::RenameBothNull(j) => format!("rename_nulls_{j}"),
            JoinAgg::RowCount => "row_count".into(),
            JoinAgg::NullKeys => "null_keys".into(),
            JoinAgg::NullsCol(i) => format!("nulls_{i}"),
        }
    }
}

/// An aggregate query: its SQL and the aggregates of its one row, in select-list order.
#[derive(Debug, Clone)]
pub struct AggQuery {
    pub sql: String,
    pub aggs: Vec<JoinAgg>,
}

/// Named integer (or text) results of one aggregate row.
pub(super) struct Aggregates {
    pub(super) values: HashMap<JoinAgg, Option<String>>,
}

impl Aggregates {
    pub(super) fn new(names: &[JoinAgg], row: Option<Row>) -> Result<Self, DiffError> {
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

    pub(super) fn int(&self, agg: JoinAgg) -> Result<u64, DiffError> {
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

    pub(super) fn text(&self, agg: JoinAgg) -> Option<String> {
        self.values.get(&agg).cloned().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::{Aggregates, JoinAgg};
    use crate::diff::DiffError;

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
