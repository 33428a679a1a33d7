//! Step 5 of a diff, sampling: relations over the threshold are compared on a sample of
//! keys. Both sides keep the rows whose key hash falls in the same bucket range, so the
//! same keys are compared; the sample's counts are scaled to the exact row counts, each
//! with its interval. This module holds the arithmetic (sample sizes, intervals) and the
//! passes.
//!
//! # The formulas
//!
//! * `z` is the two-sided normal quantile of the confidence `c`: `z = Φ⁻¹(1 − (1 − c)/2)`
//!   (2.576 at 0.99).
//! * The quantity the tolerance `e` bounds is a *share*: of matched rows, the share that
//!   changed (overall and per column). A sample of `n` matched rows estimates a share `p` to
//!   within `±e` at confidence `c` when `n ≥ z² · p(1 − p) / e²`.
//! * `p` is not known in advance. The first pass (keys chosen by the same hash) takes
//!   enough keys for shares up to [`FIRST_PASS_PRIOR`] (`n = z² · 0.02 · 0.98 / e²`, about
//!   130 000 keys at ± 0.001 and 99 %), and at least [`PILOT_ROWS`]. Its size depends on the
//!   tolerance, not on the table: a pass costs a full scan per side whatever its size, and
//!   each key it keeps costs a little more on top.
//! * The first pass is the sample when every share it measured is within ± `e` at the
//!   confidence: both ends of its Wilson interval (below) lie within `e` of the estimate.
//!   Otherwise the largest share, taken at the upper end of its Wilson interval and capped
//!   at ½ (where `p(1 − p)` peaks), sizes a second pass. Its keys include the first pass's
//!   (the buckets nest); it is at least a quarter larger.
//! * Every reported share `x/n` comes with its Wilson score interval
//!   `(p̂ + z²/2n ± z·√(p̂(1−p̂)/n + z²/4n²)) / (1 + z²/n)`, which stays inside [0, 1] and
//!   behaves at 0 and 1 where the normal approximation does not.
//! * Counts are estimated as share × an exact total: rows only in prod = (sampled rows only
//!   in prod / sampled prod rows) × prod rows with a non-NULL key, and so on; changed rows =
//!   changed share × estimated matched rows. Their intervals scale the share's interval the
//!   same way.

use std::collections::BTreeMap;

use super::aggregates::{Aggregates, JoinAgg};
use super::exact::{Lane, carries_examples, run_join};
use super::examples::samples;
use super::query::{ComparePlan, JoinKind, SampleBucket, Side};
use super::result::pct;
use super::{
    ColumnDiff, DiffError, DiffRequest, DiffResult, KeyIssues, PerSide, SampleMethod, SampledInfo,
};
use crate::sql::Relation;
use crate::warehouse::Warehouse;

/// The fewest keys a first sampled pass takes (see the formulas above).
pub const PILOT_ROWS: f64 = 20_000.0;

/// The share the first pass is sized for: shares of changed rows up to this (and down
/// from 1 − this) settle in one pass. Most pull requests change a few rows of a model, or
/// all of a column; shares in between take a second pass.
pub const FIRST_PASS_PRIOR: f64 = 0.02;

/// Sampling settings of a CI configuration.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SamplingSettings {
    /// Tables with fewer rows than this (on both sides) are diffed exactly.
    pub threshold: u64,
    /// Half-width of the interval on every estimated share, in (0, 1).
    pub tolerance: f64,
    /// Confidence of those intervals, in (0, 1).
    pub confidence: f64,
}

/// Why sampling settings were refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SamplingError {
    #[error("sampling tolerance must be strictly between 0 and 1, got {0}")]
    Tolerance(f64),
    #[error("sampling confidence must be strictly between 0 and 1, got {0}")]
    Confidence(f64),
}

impl SamplingSettings {
    pub fn new(threshold: u64, tolerance: f64, confidence: f64) -> Result<Self, SamplingError> {
        if !(tolerance > 0.0 && tolerance < 1.0) {
            return Err(SamplingError::Tolerance(tolerance));
        }
        if !(confidence > 0.0 && confidence < 1.0) {
            return Err(SamplingError::Confidence(confidence));
        }
        Ok(SamplingSettings {
            threshold,
            tolerance,
            confidence,
        })
    }

    pub fn z(&self) -> f64 {
        z_for_confidence(self.confidence)
    }

    /// Matched rows needed so a share near `p` is within ± tolerance.
    pub fn rows_needed(&self, p: f64) -> f64 {
        let p = p.clamp(0.0, 0.5);
        // At p = 0 the formula asks for nothing; keep a floor that still sees rare changes.
        let p = p.max(self.tolerance / 2.0);
        let z = self.z();
        (z * z * p * (1.0 - p) / (self.tolerance * self.tolerance)).ceil()
    }
}

/// Whether `x` of `n` estimates its share within ± tolerance at the confidence: both ends
/// of the Wilson interval lie within the tolerance of `x/n`.
pub fn within_tolerance(x: u64, n: u64, s: &SamplingSettings) -> bool {
    if n == 0 {
        return false;
    }
    let p = x as f64 / n as f64;
    let (lo, hi) = wilson(x, n, s.z());
    p - lo <= s.tolerance && hi - p <= s.tolerance
}

/// `Φ⁻¹(1 − (1 − c)/2)`.
pub fn z_for_confidence(c: f64) -> f64 {
    normal_quantile(1.0 - (1.0 - c) / 2.0)
}

/// The standard normal quantile, by Acklam's rational approximation (relative error below
/// 1.15e-9 over (0, 1)). Twenty lines here beat a
/// statistics crate that would bring linear algebra into a Lambda binary.
pub fn normal_quantile(p: f64) -> f64 {
    assert!(p > 0.0 && p < 1.0, "quantile of {p}");
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.383_577_518_672_69e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let plow = 0.02425;
    if p < plow {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - plow {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    }
}

/// Wilson score interval of `x` successes in `n` trials at normal quantile `z`.
pub fn wilson(x: u64, n: u64, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let n = n as f64;
    let p = x as f64 / n;
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    ((center - half).max(0.0), (center + half).min(1.0))
}

/// One sampled pass over the keys in `bucket`: both sides' sampled rows joined as they
/// are ([`JoinKind::Carry`]), trusted when each side's rows in the join have distinct
/// keys (a duplicated key shows as more rows than keys); otherwise redone windowed, which
/// leaves duplicated keys out of matching and counts them.
pub(super) async fn sample_pass(
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

/// Runs the sampled diff; returns `false` when sampling would not save work (the caller
/// then diffs exactly).
pub(super) async fn sampled(
    wh: &dyn Warehouse,
    plan: &ComparePlan,
    req: &DiffRequest,
    nonnull: (u64, u64),
    early_pass: Option<(Aggregates, f64, SampleMethod)>,
    r: &mut DiffResult,
) -> Result<bool, DiffError> {
    let Some(s) = req.sampling else {
        return Ok(false);
    };
    let Some((agg, rate, method)) = settle_sample(wh, plan, req, &s, nonnull, early_pass).await?
    else {
        return Ok(false);
    };
    let matched_n = agg.int(JoinAgg::Matched)?;
    let accepted = super::renames::accept(plan, &agg, matched_n)?;
    let kind = match method {
        SampleMethod::Windowed => JoinKind::Windowed,
        SampleMethod::Joined => JoinKind::Plain,
    };
    let bucket = bucket_at(req.seed, rate);
    let extra =
        super::renames::extra_changed(wh, plan, kind, Some(bucket), &accepted, &mut r.notes)
            .await
            .min(matched_n);
    let intervals = fill_sampled(&agg, nonnull, extra, s.z(), r)?;
    let matched = r.matched.unwrap_or(0);
    let z = s.z();
    super::renames::apply(
        plan,
        &accepted,
        matched_n,
        |x| {
            let (lo, hi) = wilson(x, matched_n, z);
            let n = if matched_n == 0 {
                0
            } else {
                (x as f64 / matched_n as f64 * matched as f64).round() as u64
            };
            (n, Some((100.0 * lo, 100.0 * hi)))
        },
        r,
    );
    r.sampled = Some(SampledInfo {
        tolerance: s.tolerance,
        confidence: s.confidence,
        threshold: s.threshold,
        seed: req.seed,
        rate,
        rows_sampled: PerSide {
            prod: agg.int(JoinAgg::PIn)?,
            pr: agg.int(JoinAgg::QIn)?,
        },
        method,
        intervals,
    });
    r.samples = samples(wh, plan, req, &agg, carries_examples(wh, plan), None).await?;
    Ok(true)
}

/// The sample's pass, its rate and how it read its rows; `None` when sampling would not
/// save work.
///
/// The first pass (already run with the counts, or now) is the sample when every share it
/// estimates is already within ± tolerance at the confidence; otherwise its shares size a
/// larger second pass, whose keys include the first's.
async fn settle_sample(
    wh: &dyn Warehouse,
    plan: &ComparePlan,
    req: &DiffRequest,
    s: &SamplingSettings,
    nonnull: (u64, u64),
    early_pass: Option<(Aggregates, f64, SampleMethod)>,
) -> Result<Option<(Aggregates, f64, SampleMethod)>, DiffError> {
    let first_rate = first_pass_rate(req, s, nonnull.0.max(nonnull.1));
    if early_pass.is_none() && first_rate >= 0.5 {
        return Ok(None);
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
    if shares.iter().all(|x| within_tolerance(*x, matched, s)) {
        return Ok(Some((pilot, pilot_rate, pilot_method)));
    }
    // The share that decides the sample size: the largest of all, at its upper bound.
    let worst = shares
        .iter()
        .map(|x| wilson_hi(*x, matched, s.z()))
        .fold(0.0, f64::max);
    let p_in = pilot.int(JoinAgg::PIn)?.max(1) as f64;
    let matched_share = matched as f64 / p_in;
    let matched_est = (matched_share * nonnull.0 as f64).max(1.0);
    // At least a quarter more keys than the first pass: it was not enough.
    let rate = (s.rows_needed(worst) / matched_est).max(pilot_rate * 1.25);
    if rate >= 0.5 {
        return Ok(None);
    }
    let (agg, method) = pass(rate).await?;
    Ok(Some((agg, rate, method)))
}

/// Scales counts in the sample to the whole relation, keeping each figure's interval.
struct Scaler {
    z: f64,
    intervals: BTreeMap<String, (f64, f64)>,
}

impl Scaler {
    /// `x` of `n` sampled rows, as a count of `total` rows; its interval under `name`.
    fn scale(&mut self, x: u64, n: u64, total: u64, name: &str) -> u64 {
        let (lo, hi) = wilson(x, n, self.z);
        self.intervals.insert(
            name.to_owned(),
            ((lo * total as f64).floor(), (hi * total as f64).ceil()),
        );
        if n == 0 {
            0
        } else {
            (x as f64 / n as f64 * total as f64).round() as u64
        }
    }
}

/// One side's estimated key figures.
struct SideEstimate {
    /// Rows only on this side, with a duplicated key, and unmatchable: as counted in the
    /// sample, then as estimated.
    sampled: [u64; 3],
    estimated: [u64; 3],
    duplicate_keys: u64,
}

impl SideEstimate {
    fn new(
        sc: &mut Scaler,
        agg: &Aggregates,
        side: Side,
        n: u64,
        total: u64,
    ) -> Result<Self, DiffError> {
        let (only, dup_rows, dup_keys, unmatchable, name) = match side {
            Side::Prod => (
                JoinAgg::OnlyProd,
                JoinAgg::PDupRows,
                JoinAgg::PDupKeys,
                JoinAgg::PUnmatchable,
                "prod",
            ),
            Side::Pr => (
                JoinAgg::OnlyPr,
                JoinAgg::QDupRows,
                JoinAgg::QDupKeys,
                JoinAgg::QUnmatchable,
                "pr",
            ),
        };
        let sampled = [agg.int(only)?, agg.int(dup_rows)?, agg.int(unmatchable)?];
        Ok(SideEstimate {
            sampled,
            estimated: [
                sc.scale(sampled[0], n, total, &format!("exclusive.{name}")),
                sc.scale(sampled[1], n, total, &format!("duplicates.{name}")),
                sc.scale(sampled[2], n, total, &format!("unmatchable.{name}")),
            ],
            duplicate_keys: sc.scale(
                agg.int(dup_keys)?,
                n,
                total,
                &format!("duplicate_keys.{name}"),
            ),
        })
    }

    /// `rest` (the side's rows not matched) shared among its exclusive, duplicated and
    /// unmatchable rows in the sample's proportions: `[only here, duplicated, unmatchable]`.
    fn share(&self, rest: u64) -> [u64; 3] {
        share_out(rest, self.sampled, self.estimated)
    }
}

/// The result's figures estimated from the sample's aggregates; returns their intervals.
fn fill_sampled(
    agg: &Aggregates,
    nonnull: (u64, u64),
    extra_changed: u64,
    z: f64,
    r: &mut DiffResult,
) -> Result<BTreeMap<String, (f64, f64)>, DiffError> {
    let (sp, sq) = (agg.int(JoinAgg::PIn)?, agg.int(JoinAgg::QIn)?);
    let mut sc = Scaler {
        z,
        intervals: BTreeMap::new(),
    };
    let p = SideEstimate::new(&mut sc, agg, Side::Prod, sp, nonnull.0)?;
    let q = SideEstimate::new(&mut sc, agg, Side::Pr, sq, nonnull.1)?;
    let matched_n = agg.int(JoinAgg::Matched)?;
    let matched = sc.scale(matched_n, sp, nonnull.0, "matched");
    // Rows where only a renamed column differs are changed too (see `renames`).
    let changed_n = (agg.int(JoinAgg::Changed)? + extra_changed).min(matched_n);
    let changed = sc.scale(changed_n, matched_n, matched, "changed");
    let (lo, hi) = wilson(changed_n, matched_n, z);
    sc.intervals
        .insert("changed_pct".to_owned(), (100.0 * lo, 100.0 * hi));
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
    let [only_prod, dup_p, unm_p] = p.share(nonnull.0 - matched);
    let [only_pr, dup_q, unm_q] = q.share(nonnull.1 - matched);
    r.primary_key_issues.prod = KeyIssues {
        nulls: r.rows.prod - nonnull.0,
        duplicates: dup_p,
        duplicate_keys: p.duplicate_keys.min(dup_p / 2),
        unmatchable: unm_p,
    };
    r.primary_key_issues.pr = KeyIssues {
        nulls: r.rows.pr - nonnull.1,
        duplicates: dup_q,
        duplicate_keys: q.duplicate_keys.min(dup_q / 2),
        unmatchable: unm_q,
    };
    r.exclusive = Some(PerSide {
        prod: only_prod,
        pr: only_pr,
    });
    r.matched = Some(matched);
    r.changed = Some(changed.min(matched));
    r.unchanged = Some(matched - changed.min(matched));
    fill_sampled_columns(agg, matched_n, matched, z, &mut r.columns)?;
    Ok(sc.intervals)
}

/// Per compared column: its changed share in the sample, scaled to the estimated matched
/// rows, with the share's interval.
fn fill_sampled_columns(
    agg: &Aggregates,
    matched_n: u64,
    matched: u64,
    z: f64,
    columns: &mut [ColumnDiff],
) -> Result<(), DiffError> {
    for (i, c) in columns.iter_mut().enumerate() {
        let x = agg.int(JoinAgg::ChangedCol(i))?;
        let (lo, hi) = wilson(x, matched_n, z);
        c.changed_pct = Some(pct(x, matched_n).unwrap_or(0.0));
        c.changed = Some(if matched_n == 0 {
            0
        } else {
            (x as f64 / matched_n as f64 * matched as f64).round() as u64
        });
        c.changed_pct_interval = Some((100.0 * lo, 100.0 * hi));
    }
    Ok(())
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
pub(super) fn bucket_at(seed: u64, rate: f64) -> SampleBucket {
    const FULL: f64 = 4_294_967_296.0;
    SampleBucket {
        seed,
        threshold: (rate * FULL).ceil() as u64,
    }
}

/// The share of keys in a sampled diff's first pass over relations of `rows` rows: enough
/// keys that shares up to [`FIRST_PASS_PRIOR`] come out within the tolerance, and
/// at least the pilot (see the formulas above).
pub(super) fn first_pass_rate(req: &DiffRequest, s: &SamplingSettings, rows: u64) -> f64 {
    let rows = rows.max(1) as f64;
    let keys = (req.pilot_rows.max(100) as f64).max(s.rows_needed(FIRST_PASS_PRIOR));
    (keys / rows).min(1.0)
}

/// The larger of the catalog's row estimates of the two relations, when it has both.
pub(super) async fn estimated_rows(wh: &dyn Warehouse, plan: &ComparePlan) -> Option<u64> {
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
    wilson(x, n, z).1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_quantiles_match_the_tables() {
        assert!((z_for_confidence(0.95) - 1.959_963_985).abs() < 1e-6);
        assert!((z_for_confidence(0.99) - 2.575_829_304).abs() < 1e-6);
        assert!((normal_quantile(0.001) + 3.090_232_306).abs() < 1e-6);
        assert!((normal_quantile(0.5)).abs() < 1e-9);
    }

    #[test]
    fn sample_size_follows_the_formula() {
        let s = SamplingSettings::new(0, 0.01, 0.95).unwrap();
        // z² · 0.25 / 0.0001 = 9603.6 → 9604
        assert_eq!(s.rows_needed(0.5), 9604.0);
        assert_eq!(
            s.rows_needed(0.9),
            9604.0,
            "shares above ½ are as hard as ½"
        );
        assert!(s.rows_needed(0.01) < 400.0);
    }

    #[test]
    fn wilson_interval_contains_the_estimate_and_stays_in_bounds() {
        let z = z_for_confidence(0.95);
        let (lo, hi) = wilson(10, 100, z);
        assert!(lo < 0.1 && 0.1 < hi);
        assert!(
            (lo - 0.0552).abs() < 1e-3 && (hi - 0.1744).abs() < 1e-3,
            "{lo} {hi}"
        );
        let (lo, hi) = wilson(0, 50, z);
        assert_eq!(lo, 0.0);
        assert!(hi > 0.0 && hi < 0.1);
    }

    #[test]
    fn a_sample_is_precise_enough_when_both_ends_are_within_the_tolerance() {
        let s = SamplingSettings::new(0, 0.001, 0.99).unwrap();
        // 1.4 % of 130 000: z·√(p(1−p)/n) ≈ 0.00084.
        assert!(within_tolerance(1_820, 130_000, &s));
        // The same share of 50 000: ≈ 0.00135.
        assert!(!within_tolerance(700, 50_000, &s));
        // All or nothing changed settles quickly; an empty sample never does.
        assert!(within_tolerance(20_000, 20_000, &s));
        assert!(within_tolerance(0, 20_000, &s));
        assert!(!within_tolerance(0, 0, &s));
        // Half changed needs z²/4e² ≈ 1.66 M rows.
        assert!(!within_tolerance(500_000, 1_000_000, &s));
        assert!(within_tolerance(900_000, 1_800_000, &s));
    }

    #[test]
    fn bad_settings_are_refused() {
        assert_eq!(
            SamplingSettings::new(1, 0.0, 0.9),
            Err(SamplingError::Tolerance(0.0))
        );
        assert_eq!(
            SamplingSettings::new(1, 0.1, 1.0),
            Err(SamplingError::Confidence(1.0))
        );
    }
}
