//! Sampling arithmetic: sample sizes and confidence intervals.
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
