//! Column types as the catalogs name them, reduced to the families the normalisation
//! contract (see [`crate::sql::Dialect`]) needs.

use super::Dialect;

/// What prdiff needs to know of a column type to compare values across a type change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "family")]
pub enum TypeFamily {
    Integer,
    /// Fixed-point; `scale` is `None` for an unconstrained `numeric`.
    Decimal {
        scale: Option<u32>,
    },
    Float {
        double: bool,
    },
    Boolean,
    Text,
    Date,
    /// `precision` is the number of fractional-second digits when declared.
    Timestamp {
        precision: Option<u32>,
        tz: bool,
    },
    Time,
    Other,
}

/// A column type: the catalog's text and its family.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ColumnType {
    pub raw: String,
    pub family: TypeFamily,
}

fn args(s: &str) -> Vec<u32> {
    match (s.find('('), s.rfind(')')) {
        (Some(a), Some(b)) if b > a => s[a + 1..b]
            .split(',')
            .filter_map(|x| x.trim().parse().ok())
            .collect(),
        _ => Vec::new(),
    }
}

impl ColumnType {
    /// Families from the type names common to the SQL warehouses prdiff supports.
    pub fn parse_generic(raw: &str) -> ColumnType {
        let lower = raw.trim().to_ascii_lowercase();
        let base = lower.split('(').next().unwrap_or("").trim();
        let a = args(&lower);
        let family = match base {
            "smallint" | "integer" | "int" | "bigint" | "int2" | "int4" | "int8" | "tinyint"
            | "byteint" | "int64" | "hugeint" | "ubigint" | "uinteger" | "usmallint"
            | "utinyint" | "long" | "short" | "smallserial" | "serial" | "bigserial" => {
                TypeFamily::Integer
            }
            "numeric" | "decimal" | "number" | "bignumeric" | "dec" => TypeFamily::Decimal {
                scale: if a.len() >= 2 {
                    Some(a[1])
                } else if a.len() == 1 {
                    Some(0)
                } else {
                    None
                },
            },
            "real" | "float4" | "float"
                if base != "float" || a.first().is_some_and(|p| *p <= 24) =>
            {
                TypeFamily::Float { double: false }
            }
            "double precision" | "double" | "float8" | "float" | "float64" => {
                TypeFamily::Float { double: true }
            }
            "boolean" | "bool" => TypeFamily::Boolean,
            "text" | "varchar" | "character varying" | "char" | "character" | "string"
            | "bpchar" | "nvarchar" | "nchar" | "clob" | "name" => TypeFamily::Text,
            "date" => TypeFamily::Date,
            "time" | "time without time zone" | "time with time zone" | "timetz" => {
                TypeFamily::Time
            }
            _ if base.starts_with("timestamp") || base == "datetime" => {
                let tz = lower.contains("with time zone")
                    || base == "timestamptz"
                    || base.ends_with("_tz")
                    || base == "timestamp_ltz";
                TypeFamily::Timestamp {
                    precision: a.first().copied(),
                    tz,
                }
            }
            _ => TypeFamily::Other,
        };
        ColumnType {
            raw: raw.trim().to_owned(),
            family,
        }
    }

    /// Whether two sides' types are the same for comparison purposes (text equal, ignoring
    /// case and surrounding space).
    pub fn same_as(&self, other: &ColumnType) -> bool {
        self.raw.eq_ignore_ascii_case(&other.raw)
    }

    fn scale(&self) -> Option<u32> {
        match self.family {
            TypeFamily::Integer => Some(0),
            TypeFamily::Decimal { scale } => scale,
            _ => None,
        }
    }
}

/// The normalisation contract, written once for every dialect: see [`Dialect`].
pub(super) fn normalise<D: Dialect + ?Sized>(
    d: &D,
    expr: &str,
    own: &ColumnType,
    other: &ColumnType,
) -> String {
    use TypeFamily::*;
    // No equality operator on either side: both compare as canonical text.
    if let Some(text) = d.text_for_comparison(expr, own) {
        return text;
    }
    if d.text_for_comparison(expr, other).is_some() {
        return d.cast_to_text(expr);
    }
    if own.same_as(other) {
        return expr.to_owned();
    }
    match (own.family, other.family) {
        (Integer, Integer) => d.cast(expr, d.bigint_type()),
        (Integer | Decimal { .. }, Integer | Decimal { .. }) => {
            normalise_exact_numbers(d, expr, own, other)
        }
        (Float { double: a }, Float { double: b }) => {
            if a && b {
                d.cast(expr, d.double_type())
            } else {
                d.cast(expr, d.real_type())
            }
        }
        (Float { .. }, Integer | Decimal { .. }) | (Integer | Decimal { .. }, Float { .. }) => {
            let as_double = d.cast(expr, d.double_type());
            match own.scale().or(other.scale()) {
                Some(s) => d.round(&as_double, s),
                None => as_double,
            }
        }
        (
            Timestamp {
                precision: p1,
                tz: tz1,
            },
            Timestamp {
                precision: p2,
                tz: tz2,
            },
        ) => normalise_timestamps(d, expr, (p1, tz1), (p2, tz2)),
        (Timestamp { tz, .. }, Date) => {
            let e = if tz {
                d.timestamp_tz_to_utc(expr)
            } else {
                expr.to_owned()
            };
            d.timestamp_to_date(&e)
        }
        (Date, Timestamp { .. }) => expr.to_owned(),
        (Text, Text) => d.cast_to_text(expr),
        (Boolean, Boolean) => expr.to_owned(),
        _ => d.cast_to_text(expr),
    }
}

/// Integers and decimals of different declared types: rounded to the coarser scale.
fn normalise_exact_numbers<D: Dialect + ?Sized>(
    d: &D,
    expr: &str,
    own: &ColumnType,
    other: &ColumnType,
) -> String {
    match (own.scale(), other.scale()) {
        // Already at the coarser scale: a warehouse that enforces the declared scale
        // holds nothing finer, so rounding would change nothing (and costs a
        // function call per row).
        (Some(a), b)
            if b.is_none_or(|b| a <= b)
                && matches!(own.family, TypeFamily::Decimal { .. })
                && d.enforces_declared_precision() =>
        {
            expr.to_owned()
        }
        (Some(a), Some(b)) => d.round(expr, a.min(b)),
        (Some(s), None) | (None, Some(s)) => d.round(expr, s),
        // Both unconstrained decimals: compare by exact value.
        (None, None) => expr.to_owned(),
    }
}

/// Timestamps of different declared types, each as `(precision, with time zone)`: both
/// in UTC without a zone when only one has one, and at the coarser precision.
fn normalise_timestamps<D: Dialect + ?Sized>(
    d: &D,
    expr: &str,
    (p1, tz1): (Option<u32>, bool),
    (p2, tz2): (Option<u32>, bool),
) -> String {
    let mut e = expr.to_owned();
    let mut tz = tz1;
    if tz1 != tz2 {
        if tz1 {
            e = d.timestamp_tz_to_utc(&e);
        }
        tz = false;
    }
    // Cast the finer side to the coarser precision; an undeclared precision is
    // the warehouse's default (the finest) and always yields to a declared one.
    match (p1, p2) {
        (Some(a), Some(b)) if a > b => d.timestamp_to_precision(&e, b, tz),
        (None, Some(b)) => d.timestamp_to_precision(&e, b, tz),
        // A warehouse that does not enforce declared precision may hold finer
        // values in the coarser column: cut both sides.
        (Some(a), Some(b)) if !d.enforces_declared_precision() => {
            d.timestamp_to_precision(&e, a.min(b), tz)
        }
        (Some(a), None) if !d.enforces_declared_precision() => d.timestamp_to_precision(&e, a, tz),
        _ => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fam(s: &str) -> TypeFamily {
        ColumnType::parse_generic(s).family
    }

    #[test]
    fn catalog_type_names_map_to_families() {
        assert_eq!(fam("integer"), TypeFamily::Integer);
        assert_eq!(fam("BIGINT"), TypeFamily::Integer);
        assert_eq!(fam("numeric(12,4)"), TypeFamily::Decimal { scale: Some(4) });
        assert_eq!(fam("NUMBER(38,0)"), TypeFamily::Decimal { scale: Some(0) });
        assert_eq!(fam("numeric"), TypeFamily::Decimal { scale: None });
        assert_eq!(fam("real"), TypeFamily::Float { double: false });
        assert_eq!(fam("double precision"), TypeFamily::Float { double: true });
        assert_eq!(fam("FLOAT"), TypeFamily::Float { double: true });
        assert_eq!(fam("character varying(20)"), TypeFamily::Text);
        assert_eq!(
            fam("timestamp(3) without time zone"),
            TypeFamily::Timestamp {
                precision: Some(3),
                tz: false
            }
        );
        assert_eq!(
            fam("timestamp with time zone"),
            TypeFamily::Timestamp {
                precision: None,
                tz: true
            }
        );
        assert_eq!(
            fam("TIMESTAMP_NTZ(9)"),
            TypeFamily::Timestamp {
                precision: Some(9),
                tz: false
            }
        );
        assert_eq!(fam("jsonb"), TypeFamily::Other);
    }
}
