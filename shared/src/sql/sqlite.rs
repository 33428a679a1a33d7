//! SQLite, the embedded default. <https://www.sqlite.org/lang.html>
//!
//! SQLite has no schemas of its own: a relation's schema is an attached database
//! (`ATTACH 'prod.db' AS prod`), and a database part, if given, is ignored. It has no
//! hash function either: the prdiff SQLite driver registers `prdiff_hash32(text, seed)`.

use super::{Dialect, Relation};

#[derive(Debug, Clone, Copy, Default)]
pub struct Sqlite;

/// The scalar function the SQLite driver registers for sampling.
pub const HASH_FUNCTION: &str = "prdiff_hash32";

impl Dialect for Sqlite {
    /// A result row holds at most 2 000 columns (`SQLITE_MAX_COLUMN`): a pass returns about
    /// 20 aggregates and two per reported column.
    fn max_reported_columns(&self) -> Option<usize> {
        Some(900)
    }

    /// A `LIMIT` keeps SQLite from flattening the subquery into the aggregates above it
    /// (<https://sqlite.org/optoverview.html#flattening>), which would copy the row's
    /// test of every column into each of the group's aggregates: a 950-column model took
    /// minutes to prepare without it, seconds with it.
    fn column_group_fence(&self) -> &'static str {
        " LIMIT -1"
    }

    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn relation(&self, r: &Relation) -> String {
        match &r.schema {
            Some(s) => format!(
                "{}.{}",
                self.quote_identifier(s),
                self.quote_identifier(&r.name)
            ),
            None => self.quote_identifier(&r.name),
        }
    }

    /// <https://www.sqlite.org/lang_expr.html#isdf> (3.39+; the bundled SQLite is newer).
    fn null_safe_ne(&self, a: &str, b: &str) -> String {
        format!("{a} IS DISTINCT FROM {b}")
    }

    /// <https://www.sqlite.org/lang_aggfunc.html#aggfilter> (3.30+)
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

    /// `quote()` renders each value as an SQL literal, so the joined text is unambiguous.
    fn key_identity(&self, cols: &[String]) -> String {
        cols.iter()
            .map(|c| format!("quote({c})"))
            .collect::<Vec<_>>()
            .join(" || ',' || ")
    }

    fn bigint_type(&self) -> &'static str {
        "INTEGER"
    }

    fn text_type(&self) -> &'static str {
        "TEXT"
    }

    fn double_type(&self) -> &'static str {
        "REAL"
    }

    fn enforces_declared_precision(&self) -> bool {
        false
    }

    /// SQLite stores timestamps as ISO-8601 text: precision is cut, not rounded.
    fn timestamp_to_precision(&self, expr: &str, precision: u32, _tz: bool) -> String {
        let len = if precision == 0 { 19 } else { 20 + precision };
        format!("substr({expr}, 1, {len})")
    }

    fn timestamp_tz_to_utc(&self, expr: &str) -> String {
        format!("datetime({expr})")
    }

    fn timestamp_to_date(&self, expr: &str) -> String {
        format!("date({expr})")
    }

    fn unit_separator(&self) -> String {
        "char(31)".to_owned()
    }

    fn hash_bucket(&self, key_text: &str, seed: u64) -> String {
        format!("{HASH_FUNCTION}({key_text}, {})", seed & (i64::MAX as u64))
    }

    /// <https://www.sqlite.org/pragma.html#pragfunc>
    fn columns_query(&self, r: &Relation) -> String {
        let schema = r.schema.as_deref().unwrap_or("main");
        format!(
            "SELECT name, type FROM pragma_table_info({}, {}) ORDER BY cid",
            self.string_literal(&r.name),
            self.string_literal(schema)
        )
    }
}
