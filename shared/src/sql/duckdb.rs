//! DuckDB. SQL generation only for now: the `duckdb` crate's bundled build is too heavy
//! for the default build. <https://duckdb.org/docs/sql/introduction>

use super::{ColumnType, Dialect, TypeFamily};

#[derive(Debug, Clone, Copy, Default)]
pub struct DuckDb;

impl Dialect for DuckDb {
    fn name(&self) -> &'static str {
        "duckdb"
    }

    fn null_safe_ne(&self, a: &str, b: &str) -> String {
        format!("{a} IS DISTINCT FROM {b}")
    }

    /// <https://duckdb.org/docs/sql/query_syntax/filter>
    fn count_where(&self, cond: &str) -> String {
        format!("COUNT(*) FILTER (WHERE {cond})")
    }

    fn count_distinct_where(&self, expr: &str, cond: &str) -> String {
        format!("COUNT(DISTINCT {expr}) FILTER (WHERE {cond})")
    }

    fn extreme_where(&self, max: bool, expr: &str, cond: &str) -> String {
        format!(
            "{}({expr}) FILTER (WHERE {cond})",
            if max { "MAX" } else { "MIN" }
        )
    }

    fn double_type(&self) -> &'static str {
        "DOUBLE"
    }

    /// DuckDB's timestamps carry their precision in the type name.
    /// <https://duckdb.org/docs/sql/data_types/timestamp>
    fn timestamp_to_precision(&self, expr: &str, precision: u32, tz: bool) -> String {
        match (precision, tz) {
            (_, true) => format!("date_trunc('{}', {expr})", trunc_unit(precision)),
            (0, false) => format!("CAST({expr} AS TIMESTAMP_S)"),
            (1..=3, false) => format!("CAST({expr} AS TIMESTAMP_MS)"),
            _ => format!("CAST({expr} AS TIMESTAMP)"),
        }
    }

    /// <https://duckdb.org/docs/sql/functions/utility#hashvalue>: `hash` is a UBIGINT.
    fn hash_bucket(&self, key_text: &str, seed: u64) -> String {
        format!("(hash({key_text}, {seed}) % 4294967296)")
    }

    fn hash_bucket_int(&self, key: &str, seed: u64) -> String {
        format!("(hash(CAST({key} AS BIGINT), {seed}) % 4294967296)")
    }

    fn parse_type(&self, raw: &str) -> ColumnType {
        let upper = raw.trim().to_ascii_uppercase();
        let precision = match upper.as_str() {
            "TIMESTAMP_S" => Some(0),
            "TIMESTAMP_MS" => Some(3),
            "TIMESTAMP" | "DATETIME" => Some(6),
            "TIMESTAMP_NS" => Some(9),
            _ => None,
        };
        match precision {
            Some(p) => ColumnType {
                raw: raw.trim().to_owned(),
                family: TypeFamily::Timestamp {
                    precision: Some(p),
                    tz: false,
                },
            },
            None => ColumnType::parse_generic(raw),
        }
    }
}

pub(crate) fn trunc_unit(precision: u32) -> &'static str {
    match precision {
        0 => "second",
        1..=3 => "millisecond",
        _ => "microsecond",
    }
}
