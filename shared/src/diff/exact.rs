//! Steps 2 and 3 of a diff: the row counts per side and the full join pass over both
//! relations (`prod FULL OUTER JOIN pr ON key`), redone windowed when a key is duplicated;
//! and, for a model without a key, the profile that stands in for the join.
//!
//! What runs beside the counts is chosen here too: the exact join itself when the
//! warehouse runs statements side by side, or a sampled diff's first pass
//! ([`super::sampled`]), and on a large table a small keyed sample whose rows stand in
//! for the exact pass's examples ([`super::examples`]).

use super::aggregates::{AggQuery, Aggregates, JoinAgg};
use super::examples::{self, EXAMPLE_SAMPLE_KEYS};
use super::query::{ComparePlan, JoinKind, SampleBucket, Side};
use super::result::pct;
use super::sampled::{self, bucket_at, sample_pass};
use super::{
    DiffError, DiffRequest, DiffResult, KeyIssues, KeyIssuesPerSide, PerSide, SampleMethod,
};
use crate::warehouse::{Row, Warehouse};

/// Exact row counts per side, and rows with a NULL in the key.
#[derive(Debug, Clone, Copy)]
pub(super) struct Counts {
    pub(super) rows: PerSide,
    pub(super) nulls: (u64, u64),
}

impl Counts {
    fn new(((prod, prod_nulls), (pr, pr_nulls)): ((u64, u64), (u64, u64))) -> Self {
        Counts {
            rows: PerSide { prod, pr },
            nulls: (prod_nulls, pr_nulls),
        }
    }

    /// Rows with a non-NULL key per side: the rows a join sees.
    pub(super) fn nonnull(&self) -> (u64, u64) {
        (self.rows.prod - self.nulls.0, self.rows.pr - self.nulls.1)
    }
}

/// The counts, and what ran beside them.
pub(super) struct FirstPasses {
    pub(super) counts: Counts,
    /// The exact plain join.
    pub(super) join: Option<Aggregates>,
    /// A sampled diff's first pass, its rate and how it read its rows.
    pub(super) sample: Option<(Aggregates, f64, SampleMethod)>,
    /// The small keyed sample whose carried rows stand in for the join's examples.
    pub(super) stand_in: Option<Aggregates>,
}

/// Exact counts per side (cheap scans), and what runs beside them. Sampling needs the
/// counts to decide whether to sample and to scale its estimates. Beside the join (or a
/// sampled pass) the two count scans run one after the other. Beside an exact join they
/// also run without parallel workers: the join is the critical path, ten times longer, and
/// keeps the other processors. A sampled pass is as short as the counts: both may use
/// what the warehouse offers. Alone, they run side by side.
pub(super) async fn counts_and_first_pass(
    wh: &dyn Warehouse,
    plan: &ComparePlan,
    req: &DiffRequest,
) -> Result<FirstPasses, DiffError> {
    let (early_rate, stand_in_rate) = rates_beside_counts(wh, plan, req).await;
    if req.sampling.is_none() && wh.parallelism() >= 2 {
        let beside = async {
            let c = counts_in_turn(wh, plan, Lane::Beside).await?;
            let stand_in = match stand_in_rate {
                Some(rate) => stand_in_sample(wh, plan, bucket_at(req.seed, rate)).await,
                None => None,
            };
            Ok::<_, DiffError>((c, stand_in))
        };
        let join = run_join(wh, plan, exact_kind(wh, plan), None, Lane::Critical);
        let ((counts, stand_in), join) = futures::try_join!(beside, join)?;
        return Ok(FirstPasses {
            counts: Counts::new(counts),
            join: Some(join),
            sample: None,
            stand_in,
        });
    }
    let (counts, sample) = if let Some(rate) = early_rate {
        let pass = sample_pass(wh, plan, bucket_at(req.seed, rate), Lane::Critical);
        let (c, (j, method)) = futures::try_join!(counts_in_turn(wh, plan, Lane::Critical), pass)?;
        (c, Some((j, rate, method)))
    } else {
        let counts = futures::try_join!(
            run_counts(wh, plan, Side::Prod, Lane::Critical),
            run_counts(wh, plan, Side::Pr, Lane::Critical)
        )?;
        (counts, None)
    };
    Ok(FirstPasses {
        counts: Counts::new(counts),
        join: None,
        sample,
        stand_in: None,
    })
}

/// Both sides' counts, one after the other.
async fn counts_in_turn(
    wh: &dyn Warehouse,
    plan: &ComparePlan,
    lane: Lane,
) -> Result<((u64, u64), (u64, u64)), DiffError> {
    let p = run_counts(wh, plan, Side::Prod, lane).await?;
    let q = run_counts(wh, plan, Side::Pr, lane).await?;
    Ok((p, q))
}

/// The example sample beside an exact join; a failure only costs reading examples by key.
async fn stand_in_sample(
    wh: &dyn Warehouse,
    plan: &ComparePlan,
    bucket: SampleBucket,
) -> Option<Aggregates> {
    match sample_pass(wh, plan, bucket, Lane::Beside).await {
        Ok((agg, _)) => Some(agg),
        Err(e) => {
            tracing::warn!(error = %e, "the example sample failed; reading examples by key");
            None
        }
    }
}

/// The key shares of what may run beside the counts: a sampled diff's first pass, and an
/// exact diff's example sample. The catalog's row estimate (PostgreSQL after ANALYZE)
/// plans them when the warehouse runs statements side by side; no reported figure comes
/// from it.
async fn rates_beside_counts(
    wh: &dyn Warehouse,
    plan: &ComparePlan,
    req: &DiffRequest,
) -> (Option<f64>, Option<f64>) {
    let estimate = if wh.parallelism() >= 2 && (req.sampling.is_some() || req.sample_rows > 0) {
        sampled::estimated_rows(wh, plan).await
    } else {
        None
    };
    let early_rate = req
        .sampling
        .zip(estimate)
        .filter(|(s, n)| *n >= s.threshold)
        .map(|(s, n)| sampled::first_pass_rate(req, &s, n))
        .filter(|r| *r < 0.5);
    // On a large table the second connection, idle once the counts are done, also runs a
    // small keyed sample: its carried rows stand in for the exact join's example rows,
    // which would otherwise cost a scan of each side after the join.
    let stand_in_rate = estimate
        .filter(|n| {
            req.sampling.is_none()
                && req.sample_rows > 0
                && *n >= req.example_sample_min_rows
                && carries_examples(wh, plan)
        })
        .map(|n| EXAMPLE_SAMPLE_KEYS / n as f64);
    (early_rate, stand_in_rate)
}

/// The exact diff: the plain join (already run beside the counts, or now), redone
/// windowed when a key is duplicated, then its example rows.
pub(super) async fn exact_pass(
    wh: &dyn Warehouse,
    plan: &ComparePlan,
    req: &DiffRequest,
    counts: &Counts,
    early_join: Option<Aggregates>,
    stand_in: Option<Aggregates>,
    r: &mut DiffResult,
) -> Result<(), DiffError> {
    let agg = match early_join {
        Some(j) => j,
        None => run_join(wh, plan, exact_kind(wh, plan), None, Lane::Critical).await?,
    };
    // The join sees rows without NULL keys only.
    let clean = plain_pass_is_clean(&agg, counts.nonnull())?;
    let agg = if clean {
        agg
    } else {
        tracing::info!(prod = %req.prod, "duplicate keys found: redoing the join without them");
        run_join(wh, plan, JoinKind::Windowed, None, Lane::Critical).await?
    };
    fill_exact(&agg, counts.nulls, r)?;
    let matched = r.matched.unwrap_or(0);
    let accepted = super::renames::accept(plan, &agg, matched)?;
    if !accepted.is_empty() {
        let kind = if clean {
            JoinKind::Plain
        } else {
            JoinKind::Windowed
        };
        let extra =
            super::renames::extra_changed(wh, plan, kind, None, &accepted, &mut r.notes).await;
        let changed = (r.changed.unwrap_or(0) + extra).min(matched);
        r.changed = Some(changed);
        r.unchanged = Some(matched - changed);
        super::renames::apply(plan, &accepted, matched, |x| (x, None), r);
    }
    let stand_in = stand_in.as_ref().filter(|_| clean);
    let carried = (!clean || exact_kind(wh, plan) == JoinKind::Carry) && carries_examples(wh, plan);
    r.samples = examples::samples(wh, plan, req, &agg, carried, stand_in).await?;
    Ok(())
}

/// Where a statement runs: on the diff's critical path, or beside a longer one (see
/// [`Warehouse::query_beside`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lane {
    Critical,
    Beside,
}

pub(super) async fn ask(wh: &dyn Warehouse, sql: &str, lane: Lane) -> Result<Vec<Row>, DiffError> {
    Ok(match lane {
        Lane::Critical => wh.query(sql).await?,
        Lane::Beside => wh.query_beside(sql).await?,
    })
}

/// One join pass. A model wider than the warehouse's select lists allow
/// ([`Dialect::max_reported_columns`]) is joined once per column group, one group after
/// the other; every group's pass counts the same rows (and each tests every column for
/// `changed`), so the merged aggregates read as one pass over every column.
pub(super) async fn run_join(
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
pub(super) fn carries_examples(wh: &dyn Warehouse, plan: &ComparePlan) -> bool {
    plan.column_groups(wh.dialect().max_reported_columns())
        .is_none()
}

/// The exact join's kind: carrying its example rows where reading them by key afterwards
/// would scan both relations again ([`crate::sql::Dialect::exact_join_carries_examples`]).
pub(super) fn exact_kind(wh: &dyn Warehouse, plan: &ComparePlan) -> JoinKind {
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

pub(super) async fn run_counts(
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

fn fill_exact(agg: &Aggregates, nulls: (u64, u64), r: &mut DiffResult) -> Result<(), DiffError> {
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
    for (i, c) in r.columns.iter_mut().enumerate() {
        let n = agg.int(JoinAgg::ChangedCol(i))?;
        c.changed = Some(n);
        c.changed_pct = Some(pct(n, matched).unwrap_or(0.0));
    }
    Ok(())
}

/// The profile of a model without a key: rows and NULLs per compared column, per side.
pub(super) async fn profile(
    wh: &dyn Warehouse,
    plan: &ComparePlan,
    r: &mut DiffResult,
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
    for (i, c) in r.columns.iter_mut().enumerate() {
        c.nulls = Some(PerSide {
            prod: p.int(JoinAgg::NullsCol(i))?,
            pr: q.int(JoinAgg::NullsCol(i))?,
        });
    }
    Ok(())
}
