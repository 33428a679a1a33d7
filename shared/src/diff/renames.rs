//! Rename detection: a column removed in the PR and one added whose values agree on at
//! least [`MIN_AGREEMENT_PCT`] % of matched rows (those where either holds a value) are
//! reported as a rename and compared as one column.
//!
//! When the schema has both removed and added columns, [`candidates`] pairs them (same
//! type family, at most [`MAX_CANDIDATES`] pairs) and the join pass that counts everything
//! else also counts, per pair, the matched rows where the two differ
//! ([`JoinAgg::RenameDiffers`]) and those where nothing else differs
//! ([`JoinAgg::RenameOnly`]), so a rename costs no extra pass. A sampled diff judges the
//! pairs on its sample. Only when several pairs are accepted does one follow-up statement
//! count the rows where only renamed columns differ, each once.

use super::aggregates::{Aggregates, JoinAgg};
use super::exact::{Lane, ask};
use super::query::{ComparePlan, JoinKind, RenameCandidate, SampleBucket};
use super::resolve::compare_pair;
use super::{ColumnDiff, DiffError, DiffResult, Renamed};
use crate::sql::{ColumnType, Dialect, TypeFamily};
use crate::warehouse::Warehouse;

/// The most removed/added pairs one diff tests.
pub const MAX_CANDIDATES: usize = 10;
/// The least share of matched rows (in %) on which a pair must agree to be a rename.
pub const MIN_AGREEMENT_PCT: f64 = 99.0;

/// Types whose values can be the same after a rename: same family (all numerics count as
/// one), or the same declared type.
fn compatible(a: &ColumnType, b: &ColumnType) -> bool {
    let kind = |t: &ColumnType| match t.family {
        TypeFamily::Integer | TypeFamily::Decimal { .. } | TypeFamily::Float { .. } => 0,
        TypeFamily::Boolean => 1,
        TypeFamily::Text => 2,
        TypeFamily::Date => 3,
        TypeFamily::Timestamp { .. } => 4,
        TypeFamily::Time => 5,
        TypeFamily::Other => 6,
    };
    if kind(a) == 6 || kind(b) == 6 {
        return a.raw.eq_ignore_ascii_case(&b.raw);
    }
    kind(a) == kind(b)
}

/// The pairs to test: every removed column against every added one of a compatible type,
/// in table order, at most [`MAX_CANDIDATES`]. `compared` says whether a column name may be
/// compared at all (not excluded, ignored or left out by `include_columns`).
pub(super) fn candidates(
    d: &dyn Dialect,
    removed: &[(String, ColumnType)],
    added: &[(String, ColumnType)],
    compared: impl Fn(&str) -> bool,
) -> Vec<RenameCandidate> {
    let mut out = Vec::new();
    for (from, pt) in removed.iter().filter(|(n, _)| compared(n)) {
        for (to, qt) in added.iter().filter(|(n, _)| compared(n)) {
            if out.len() == MAX_CANDIDATES {
                return out;
            }
            if compatible(pt, qt) {
                out.push(RenameCandidate {
                    from: from.clone(),
                    to: to.clone(),
                    prod_type: pt.raw.clone(),
                    pr_type: qt.raw.clone(),
                    column: compare_pair(d, from, to, pt, qt),
                });
            }
        }
    }
    out
}

/// A pair found to be a rename, with its counts over the matched rows of the pass.
pub(super) struct Accepted {
    index: usize,
    differs: u64,
    only: u64,
    agreement_pct: f64,
}

/// The pairs that agree on at least [`MIN_AGREEMENT_PCT`] % of the `matched` rows where
/// either column holds a value (rows where both are NULL are no evidence), best first; a
/// column takes part in one rename at most.
pub(super) fn accept(
    plan: &ComparePlan,
    agg: &Aggregates,
    matched: u64,
) -> Result<Vec<Accepted>, DiffError> {
    if matched == 0 {
        return Ok(Vec::new());
    }
    let mut all = Vec::new();
    for index in 0..plan.renames.len() {
        // Rows where both columns are NULL say nothing about a rename: two unrelated
        // columns that are NULL everywhere would otherwise "agree" on every row.
        let both_null = agg.int(JoinAgg::RenameBothNull(index))?.min(matched);
        let informative = matched - both_null;
        if informative == 0 {
            continue;
        }
        let differs = agg.int(JoinAgg::RenameDiffers(index))?.min(informative);
        let agreement_pct = 100.0 * (informative - differs) as f64 / informative as f64;
        if agreement_pct >= MIN_AGREEMENT_PCT {
            all.push(Accepted {
                index,
                differs,
                only: agg.int(JoinAgg::RenameOnly(index))?,
                agreement_pct,
            });
        }
    }
    all.sort_by(|a, b| b.agreement_pct.total_cmp(&a.agreement_pct));
    let mut taken: Vec<Accepted> = Vec::new();
    for a in all {
        let c = &plan.renames[a.index];
        let clash = taken.iter().any(|t| {
            let o = &plan.renames[t.index];
            o.from == c.from || o.to == c.to
        });
        if !clash {
            taken.push(a);
        }
    }
    Ok(taken)
}

/// Rows where only accepted renamed columns differ: matched rows the pass did not count
/// as changed but are. With one rename, the pass's count. With several, one follow-up
/// statement over the same join (`kind`, `bucket`) counts each such row once
/// ([`ComparePlan::renamed_only_query`]); should it fail, the sum of the pass's counts,
/// where a row with two differing renamed columns counts twice, and a note says so.
pub(super) async fn extra_changed(
    wh: &dyn Warehouse,
    plan: &ComparePlan,
    kind: JoinKind,
    bucket: Option<SampleBucket>,
    accepted: &[Accepted],
    notes: &mut Vec<String>,
) -> u64 {
    let sum = accepted.iter().map(|a| a.only).sum();
    if accepted.len() < 2 {
        return sum;
    }
    let renamed: Vec<usize> = accepted.iter().map(|a| a.index).collect();
    let sql = plan.renamed_only_query(wh.dialect(), kind, bucket, &renamed);
    let rows = ask(wh, &sql, Lane::Critical).await;
    let count = rows.ok().and_then(|rows| {
        rows.first()?
            .first()?
            .as_deref()?
            .trim()
            .parse::<u64>()
            .ok()
    });
    match count {
        Some(n) => n,
        None => {
            tracing::warn!("rows where only renamed columns differ could not be counted once each");
            notes.push(
                "several columns were renamed: a row where only renamed columns differ may be counted once per such column in `changed`".into(),
            );
            sum
        }
    }
}

/// Writes the accepted renames into the result: the pair leaves the added and removed
/// lists for `schema.renamed`, and joins the compared columns under its new name, its
/// changed count the rows where the two disagree. `scale` turns a count of the pass's
/// `matched_n` matched rows into the reported count and its interval (sampled passes).
pub(super) fn apply(
    plan: &ComparePlan,
    accepted: &[Accepted],
    matched_n: u64,
    scale: impl Fn(u64) -> (u64, Option<(f64, f64)>),
    r: &mut DiffResult,
) {
    for a in accepted {
        let c = &plan.renames[a.index];
        r.schema.removed.retain(|n| n != &c.from);
        r.schema.added.retain(|n| n != &c.to);
        r.schema.renamed.push(Renamed {
            from: c.from.clone(),
            to: c.to.clone(),
            agreement_pct: (a.agreement_pct * 100.0).floor() / 100.0,
            from_pr: false,
        });
        let (changed, interval) = scale(a.differs);
        r.columns.push(ColumnDiff {
            name: c.to.clone(),
            prod_type: c.prod_type.clone(),
            pr_type: c.pr_type.clone(),
            changed: Some(changed),
            changed_pct: Some(100.0 * a.differs as f64 / matched_n.max(1) as f64),
            changed_pct_interval: interval,
            nulls: None,
            tolerance: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::DiffRequest;
    use crate::diff::resolve::resolve_request;
    use crate::sql::{Postgres, Relation};

    fn plan(prod: &[(&str, &str)], pr: &[(&str, &str)]) -> ComparePlan {
        let d = &Postgres;
        let cat = |c: &[(&str, &str)]| -> Vec<(String, ColumnType)> {
            c.iter()
                .map(|(n, t)| (n.to_string(), d.parse_type(t)))
                .collect()
        };
        let req = DiffRequest::new(
            Relation::new(None, Some("p"), "t"),
            Relation::new(None, Some("q"), "t"),
            vec!["id".into()],
        );
        resolve_request(d, &req, None, &cat(prod), &cat(pr))
            .expect("resolves")
            .plan
    }

    #[test]
    fn candidates_pair_compatible_types_only_and_are_capped() {
        let p = plan(
            &[("id", "integer"), ("a", "integer"), ("b", "text")],
            &[
                ("id", "integer"),
                ("x", "numeric(12,2)"),
                ("y", "varchar(5)"),
                ("z", "date"),
            ],
        );
        let pairs: Vec<(&str, &str)> = p
            .renames
            .iter()
            .map(|r| (r.from.as_str(), r.to.as_str()))
            .collect();
        assert_eq!(pairs, [("a", "x"), ("b", "y")]);

        fn cols(prefix: &str, ty: &str) -> Vec<(String, String)> {
            let mut c = vec![("id".to_owned(), "integer".to_owned())];
            c.extend((0..6).map(|i| (format!("{prefix}{i}"), ty.to_owned())));
            c
        }
        fn strs(v: &[(String, String)]) -> Vec<(&str, &str)> {
            v.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect()
        }
        let (pv, qv) = (cols("o", "integer"), cols("n", "bigint"));
        assert_eq!(plan(&strs(&pv), &strs(&qv)).renames.len(), MAX_CANDIDATES);
        // Without removed or added columns there is nothing to test.
        assert!(plan(&strs(&pv), &strs(&pv)).renames.is_empty());
    }

    #[test]
    fn the_best_agreeing_pairs_win_and_each_column_is_renamed_once() {
        let p = plan(
            &[("id", "integer"), ("a", "integer"), ("b", "integer")],
            &[("id", "integer"), ("x", "integer"), ("y", "integer")],
        );
        // Pairs in order: a→x, a→y, b→x, b→y.
        let names: Vec<JoinAgg> = (0..4)
            .flat_map(|j| {
                [
                    JoinAgg::RenameDiffers(j),
                    JoinAgg::RenameOnly(j),
                    JoinAgg::RenameBothNull(j),
                ]
            })
            .collect();
        // Of 1 000 matched rows: a→x 5 differ (99.5 %), a→y 1 (99.9 %), b→x 500, b→y 0.
        let row = ["5", "2", "0", "1", "1", "0", "500", "0", "0", "0", "0", "0"]
            .iter()
            .map(|v| Some(v.to_string()))
            .collect();
        let agg = Aggregates::new(&names, Some(row)).expect("one row");
        let got = accept(&p, &agg, 1000).expect("reads");
        let pairs: Vec<(&str, &str, f64)> = got
            .iter()
            .map(|a| {
                let c = &p.renames[a.index];
                (c.from.as_str(), c.to.as_str(), a.agreement_pct)
            })
            .collect();
        // b→y (100 %) first; a→y shares y; a→x (99.5 %) is next; b→x is below 99 %.
        assert_eq!(pairs, [("b", "y", 100.0), ("a", "x", 99.5)]);
        assert_eq!(got.iter().map(|a| a.only).sum::<u64>(), 2);
        assert!(accept(&p, &agg, 0).expect("reads").is_empty());
    }

    #[test]
    fn rows_where_both_columns_are_null_are_no_evidence_of_a_rename() {
        let p = plan(
            &[("id", "integer"), ("a", "integer")],
            &[("id", "integer"), ("x", "integer")],
        );
        let names = [
            JoinAgg::RenameDiffers(0),
            JoinAgg::RenameOnly(0),
            JoinAgg::RenameBothNull(0),
        ];
        let agg = |differs: u64, both_null: u64| {
            let row = [differs, 0, both_null]
                .iter()
                .map(|v| Some(v.to_string()))
                .collect();
            Aggregates::new(&names, Some(row)).expect("one row")
        };
        // Two columns NULL on every matched row: no rename.
        assert!(accept(&p, &agg(0, 1000), 1000).unwrap().is_empty());
        // NULL on 990 rows, and 5 of the other 10 differ: 50 %, no rename (counted over
        // every matched row it would have been 99.5 %).
        assert!(accept(&p, &agg(5, 990), 1000).unwrap().is_empty());
        // NULL on 500 rows, the other 500 all agree: a rename at 100 %.
        let got = accept(&p, &agg(0, 500), 1000).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].agreement_pct, 100.0);
    }
}
