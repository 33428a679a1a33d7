//! Per-column numeric tolerance: two values of a numeric column closer than a bound are
//! not a change.
//!
//! A bound is parsed from the PR's yaml (`meta.prdiff.tolerance`) or the command line into
//! `f64`s and checked (finite, not negative) before it is used; the SQL carries it only as
//! the dialect's rendering of that number ([`crate::sql::Dialect::numeric_literal`]),
//! never as text from the yaml.

use serde::{Deserialize, Serialize};

use crate::sql::Dialect;

/// How far apart two values of a column may be and still count as unchanged. With both
/// bounds, either suffices.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Tolerance {
    /// `|a − b| <= absolute`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub absolute: Option<f64>,
    /// `|a − b| <= relative × max(|a|, |b|)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relative: Option<f64>,
}

fn bound(name: &str, v: f64) -> Result<f64, String> {
    if !v.is_finite() {
        return Err(format!("{name} must be a finite number"));
    }
    if v < 0.0 {
        return Err(format!("{name} must not be negative"));
    }
    Ok(v)
}

impl Tolerance {
    /// Checks both bounds: finite, not negative, at least one given.
    pub fn new(absolute: Option<f64>, relative: Option<f64>) -> Result<Tolerance, String> {
        if absolute.is_none() && relative.is_none() {
            return Err("give `absolute`, `relative` or both".into());
        }
        Ok(Tolerance {
            absolute: absolute.map(|v| bound("absolute", v)).transpose()?,
            relative: relative.map(|v| bound("relative", v)).transpose()?,
        })
    }

    /// A tolerance as written in yaml: `{absolute: 0.01}`, `{relative: 0.001}` or both.
    /// Only numbers are accepted (a quoted number is refused, as is any other key).
    pub fn from_json(v: &serde_json::Value) -> Result<Tolerance, String> {
        let map = v
            .as_object()
            .ok_or("must be a mapping such as {absolute: 0.01} or {relative: 0.001}")?;
        let (mut absolute, mut relative) = (None, None);
        for (k, v) in map {
            let slot = match k.as_str() {
                "absolute" => &mut absolute,
                "relative" => &mut relative,
                other => {
                    return Err(format!(
                        "unknown key `{other}` (expected absolute, relative)"
                    ));
                }
            };
            *slot = Some(v.as_f64().ok_or_else(|| format!("{k} must be a number"))?);
        }
        Tolerance::new(absolute, relative)
    }

    /// A tolerance on the command line: `COLUMN=BOUNDS`, where `BOUNDS` is `ABS`,
    /// `rel=R` or `ABS,rel=R` (`abs=ABS` is accepted for `ABS`).
    pub fn parse_arg(arg: &str) -> Result<(String, Tolerance), String> {
        let (column, bounds) = arg.split_once('=').ok_or_else(|| {
            format!("`{arg}`: expected COLUMN=ABS, COLUMN=rel=R or COLUMN=ABS,rel=R")
        })?;
        let column = column.trim();
        if column.is_empty() {
            return Err(format!("`{arg}`: no column name"));
        }
        let (mut absolute, mut relative) = (None, None);
        for part in bounds.split(',') {
            let (slot, num) = match part.trim().split_once('=') {
                Some(("rel" | "relative", n)) => (&mut relative, n),
                Some(("abs" | "absolute", n)) => (&mut absolute, n),
                Some((k, _)) => return Err(format!("`{arg}`: unknown bound `{k}` (abs, rel)")),
                None => (&mut absolute, part),
            };
            let v: f64 = num
                .trim()
                .parse()
                .map_err(|_| format!("`{arg}`: `{}` is not a number", num.trim()))?;
            *slot = Some(v);
        }
        let t = Tolerance::new(absolute, relative).map_err(|e| format!("`{arg}`: {e}"))?;
        Ok((column.to_owned(), t))
    }

    /// How reports show it: `±0.01`, `±0.001 relative`, `±0.005 or ±0.0001 relative`.
    pub fn label(&self) -> String {
        let parts: Vec<String> = [
            self.absolute.map(|a| format!("±{a}")),
            self.relative.map(|r| format!("±{r} relative")),
        ]
        .into_iter()
        .flatten()
        .collect();
        parts.join(" or ")
    }

    /// Whether two non-NULL values `a` and `b` are within the bound, as SQL. With a NaN on
    /// either side every comparison is false, so NaN against a number stays a change.
    pub(crate) fn within_sql(&self, d: &dyn Dialect, a: &str, b: &str) -> String {
        let diff = format!("ABS({a} - {b})");
        let mut terms = Vec::new();
        if let Some(abs) = self.absolute {
            terms.push(format!("{diff} <= {}", d.numeric_literal(abs)));
        }
        if let Some(rel) = self.relative {
            // `<= r × max(|a|, |b|)` without GREATEST, which SQLite lacks.
            let r = d.numeric_literal(rel);
            terms.push(format!("{diff} <= {r} * ABS({a})"));
            terms.push(format!("{diff} <= {r} * ABS({b})"));
        }
        terms.join(" OR ")
    }

    /// Whether `a` and `b` differ beyond the bound, given `ne`, the exact null-safe
    /// difference of the two: NULL against a value and NaN against a number are changes,
    /// NULL against NULL (and whatever the exact test finds equal) is not.
    pub(crate) fn differs_sql(&self, d: &dyn Dialect, ne: &str, a: &str, b: &str) -> String {
        format!(
            "({ne} AND NOT ({a} IS NOT NULL AND {b} IS NOT NULL AND ({})))",
            self.within_sql(d, a, b)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_bounds_must_be_finite_non_negative_numbers() {
        let t = Tolerance::from_json(&json!({"absolute": 0.01})).unwrap();
        assert_eq!(t.absolute, Some(0.01));
        assert_eq!(t.relative, None);
        let t = Tolerance::from_json(&json!({"absolute": 0.005, "relative": 1e-4})).unwrap();
        assert_eq!((t.absolute, t.relative), (Some(0.005), Some(1e-4)));
        for bad in [
            json!({"absolute": "0.01"}),
            json!({"absolute": -1}),
            json!({"relative": "1; DROP TABLE x"}),
            json!({"absolut": 0.1}),
            json!({}),
            json!(0.01),
            json!({"absolute": null}),
        ] {
            assert!(Tolerance::from_json(&bad).is_err(), "{bad}");
        }
        assert!(Tolerance::new(Some(f64::INFINITY), None).is_err());
        assert!(Tolerance::new(None, Some(f64::NAN)).is_err());
    }

    #[test]
    fn command_line_bounds_parse_and_refuse_what_is_not_a_number() {
        let (c, t) = Tolerance::parse_arg("amount=0.01").unwrap();
        assert_eq!(
            (c.as_str(), t.absolute, t.relative),
            ("amount", Some(0.01), None)
        );
        let (_, t) = Tolerance::parse_arg("ratio=rel=0.001").unwrap();
        assert_eq!((t.absolute, t.relative), (None, Some(0.001)));
        let (_, t) = Tolerance::parse_arg("price=0.005,rel=0.0001").unwrap();
        assert_eq!((t.absolute, t.relative), (Some(0.005), Some(0.0001)));
        for bad in [
            "amount",
            "=0.1",
            "amount=x",
            "amount=-1",
            "amount=inf",
            "a=foo=1",
        ] {
            assert!(Tolerance::parse_arg(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn labels_name_each_bound() {
        assert_eq!(Tolerance::new(Some(0.01), None).unwrap().label(), "±0.01");
        assert_eq!(
            Tolerance::new(Some(0.005), Some(0.0001)).unwrap().label(),
            "±0.005 or ±0.0001 relative"
        );
    }
}
