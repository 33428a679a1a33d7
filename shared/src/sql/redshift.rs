//! Amazon Redshift: PostgreSQL 8 heritage without `FILTER`, `IS DISTINCT FROM` or row
//! values. <https://docs.aws.amazon.com/redshift/latest/dg/c_SQL_reference.html>

use super::postgres::{pg_columns_query, seed_i63};
use super::{Dialect, Relation};

#[derive(Debug, Clone, Copy, Default)]
pub struct Redshift;

impl Dialect for Redshift {
    /// As on PostgreSQL, whose limit on select lists (1 664 entries) Redshift keeps.
    fn max_reported_columns(&self) -> Option<usize> {
        Some(800)
    }

    fn name(&self) -> &'static str {
        "redshift"
    }

    /// No row values in Redshift: the composite key's text (columns joined by U+001F)
    /// stands for it. Keys whose text contains U+001F could collide; dbt keys do not.
    fn key_identity(&self, cols: &[String]) -> String {
        self.key_text(cols)
    }

    /// A backslash escapes inside a Redshift literal (its `QUOTE_LITERAL` doubles both
    /// quotes and backslashes), so both are doubled.
    /// <https://docs.aws.amazon.com/redshift/latest/dg/r_QUOTE_LITERAL.html>
    fn string_literal(&self, s: &str) -> String {
        format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
    }

    fn text_type(&self) -> &'static str {
        "VARCHAR(65535)"
    }

    /// <https://docs.aws.amazon.com/redshift/latest/dg/r_FNV_HASH.html>
    fn hash_bucket(&self, key_text: &str, seed: u64) -> String {
        format!("(FNV_HASH({key_text}, {}) & 4294967295)", seed_i63(seed))
    }

    fn columns_query(&self, r: &Relation) -> String {
        pg_columns_query(self, r)
    }

    /// <https://docs.aws.amazon.com/redshift/latest/dg/r_statement_timeout.html>,
    /// <https://docs.aws.amazon.com/redshift/latest/dg/r_SET.html> (`LOCAL`: this transaction)
    fn statement_setup(&self, statement_timeout_ms: u64) -> Vec<String> {
        vec![format!(
            "SET LOCAL statement_timeout TO {statement_timeout_ms}"
        )]
    }
}
