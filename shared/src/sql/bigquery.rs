//! BigQuery (GoogleSQL, through the REST API).
//! <https://cloud.google.com/bigquery/docs/reference/standard-sql/lexical>
//!
//! A relation is `project.dataset.table`: the schema part is the dataset.

use std::fmt::Write as _;

use super::{Dialect, Relation};

#[derive(Debug, Clone, Copy, Default)]
pub struct BigQuery;

impl Dialect for BigQuery {
    fn name(&self) -> &'static str {
        "bigquery"
    }

    /// A backslash starts an escape sequence inside `'…'`, a doubled quote is not a quote,
    /// and a raw newline may not appear: the backslash, the quote and every control
    /// character are escaped (`\n`, `\r`, `\t`, `\a`, `\b`, `\f`, others `\xhh`).
    /// <https://cloud.google.com/bigquery/docs/reference/standard-sql/lexical#escape_sequences>
    fn string_literal(&self, s: &str) -> String {
        let mut out = String::with_capacity(s.len() + 2);
        out.push('\'');
        for c in s.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\'' => out.push_str("\\'"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{7}' => out.push_str("\\a"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                // Unicode's control characters (Cc) all lie below U+0100.
                c if c.is_control() => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c => out.push(c),
            }
        }
        out.push('\'');
        out
    }

    /// Backticks; a backtick or backslash inside is escaped with a backslash.
    fn quote_identifier(&self, ident: &str) -> String {
        let mut out = String::with_capacity(ident.len() + 2);
        out.push('`');
        for c in ident.chars() {
            if c == '`' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('`');
        out
    }

    fn null_safe_ne(&self, a: &str, b: &str) -> String {
        format!("{a} IS DISTINCT FROM {b}")
    }

    /// <https://cloud.google.com/bigquery/docs/reference/standard-sql/aggregate_functions#countif>
    fn count_where(&self, cond: &str) -> String {
        format!("COUNTIF({cond})")
    }

    fn key_identity(&self, cols: &[String]) -> String {
        format!("TO_JSON_STRING(STRUCT({}))", cols.join(", "))
    }

    fn bigint_type(&self) -> &'static str {
        "INT64"
    }

    fn text_type(&self) -> &'static str {
        "STRING"
    }

    fn double_type(&self) -> &'static str {
        "FLOAT64"
    }

    fn real_type(&self) -> &'static str {
        "FLOAT64"
    }

    /// BigQuery timestamps are always microseconds: truncate to the coarser unit.
    fn timestamp_to_precision(&self, expr: &str, precision: u32, _tz: bool) -> String {
        let unit = match precision {
            0 => "SECOND",
            1..=3 => "MILLISECOND",
            _ => "MICROSECOND",
        };
        format!("TIMESTAMP_TRUNC({expr}, {unit})")
    }

    fn timestamp_tz_to_utc(&self, expr: &str) -> String {
        format!("DATETIME({expr}, 'UTC')")
    }

    fn concat(&self, parts: &[String]) -> String {
        format!("CONCAT({})", parts.join(", "))
    }

    fn unit_separator(&self) -> String {
        "CODE_POINTS_TO_STRING([31])".to_owned()
    }

    /// <https://cloud.google.com/bigquery/docs/reference/standard-sql/hash_functions#farm_fingerprint>
    fn hash_bucket(&self, key_text: &str, seed: u64) -> String {
        format!(
            "(FARM_FINGERPRINT(CONCAT({}, {key_text})) & 4294967295)",
            self.string_literal(&seed.to_string())
        )
    }

    /// A query processes (and bills) every referenced column of a table whole: reading
    /// example rows by key would cost another full scan of both relations.
    fn exact_join_carries_examples(&self) -> bool {
        true
    }

    fn columns_query(&self, r: &Relation) -> String {
        let mut scope = Vec::new();
        if let Some(d) = &r.database {
            scope.push(self.quote_identifier(d));
        }
        if let Some(s) = &r.schema {
            scope.push(self.quote_identifier(s));
        }
        scope.push("INFORMATION_SCHEMA.COLUMNS".to_owned());
        format!(
            "SELECT column_name, data_type FROM {} WHERE table_name = {} ORDER BY ordinal_position",
            scope.join("."),
            self.string_literal(&r.name)
        )
    }
}
