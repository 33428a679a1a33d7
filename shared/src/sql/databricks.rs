//! Databricks SQL (through the SQL Statement Execution API).
//! <https://docs.databricks.com/en/sql/language-manual/index.html>

use super::{Dialect, Relation, quote_doubling};

#[derive(Debug, Clone, Copy, Default)]
pub struct Databricks;

impl Dialect for Databricks {
    fn name(&self) -> &'static str {
        "databricks"
    }

    fn quote_identifier(&self, ident: &str) -> String {
        quote_doubling(ident, '`', '`')
    }

    /// A backslash escapes inside a Databricks SQL literal (and a doubled quote would end
    /// it), so the backslash and the quote are both escaped with one.
    /// <https://docs.databricks.com/en/sql/language-manual/data-types/string-type.html>
    fn string_literal(&self, s: &str) -> String {
        format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
    }

    /// <https://docs.databricks.com/en/sql/language-manual/functions/eqnullsafe.html>
    fn null_safe_ne(&self, a: &str, b: &str) -> String {
        format!("NOT ({a} <=> {b})")
    }

    /// <https://docs.databricks.com/en/sql/language-manual/functions/count_if.html>
    fn count_where(&self, cond: &str) -> String {
        format!("COUNT_IF({cond})")
    }

    fn key_identity(&self, cols: &[String]) -> String {
        format!("STRUCT({})", cols.join(", "))
    }

    fn text_type(&self) -> &'static str {
        "STRING"
    }

    fn double_type(&self) -> &'static str {
        "DOUBLE"
    }

    fn real_type(&self) -> &'static str {
        "FLOAT"
    }

    fn timestamp_to_precision(&self, expr: &str, precision: u32, _tz: bool) -> String {
        format!(
            "date_trunc('{}', {expr})",
            super::duckdb::trunc_unit(precision).to_ascii_uppercase()
        )
    }

    fn timestamp_tz_to_utc(&self, expr: &str) -> String {
        format!("to_utc_timestamp({expr}, 'UTC')")
    }

    /// <https://docs.databricks.com/en/sql/language-manual/functions/xxhash64.html>
    fn hash_bucket(&self, key_text: &str, seed: u64) -> String {
        format!(
            "(xxhash64({key_text}, {}) & 4294967295)",
            seed & (i64::MAX as u64)
        )
    }

    /// Unity Catalog's `full_data_type` keeps precision and scale (`decimal(10,2)`).
    fn columns_query(&self, r: &Relation) -> String {
        let mut conds = vec![format!("table_name = {}", self.string_literal(&r.name))];
        if let Some(s) = &r.schema {
            conds.push(format!("table_schema = {}", self.string_literal(s)));
        }
        let catalog = match &r.database {
            Some(d) => format!("{}.information_schema.columns", self.quote_identifier(d)),
            None => "information_schema.columns".to_owned(),
        };
        format!(
            "SELECT column_name, full_data_type FROM {catalog} WHERE {} ORDER BY ordinal_position",
            conds.join(" AND ")
        )
    }

    /// <https://docs.databricks.com/en/sql/language-manual/parameters/statement_timeout.html>
    fn statement_setup(&self, statement_timeout_ms: u64) -> Vec<String> {
        vec![format!(
            "SET STATEMENT_TIMEOUT = {}",
            statement_timeout_ms.div_ceil(1000)
        )]
    }
}
