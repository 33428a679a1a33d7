//! Snowflake. <https://docs.snowflake.com/en/sql-reference>
//!
//! Snowflake upper-cases unquoted identifiers; prdiff always quotes, so relation names
//! that reach it unquoted (dbt renders `relation_name` without quotes on Snowflake) are
//! folded to upper case first ([`Dialect::fold_unquoted`], applied by
//! [`Relation::parse_for`]). Column names come from the catalog, as stored; key and
//! column names from PR yaml are matched case-insensitively by the engine.

use super::{Dialect, Relation};

#[derive(Debug, Clone, Copy, Default)]
pub struct Snowflake;

impl Dialect for Snowflake {
    fn name(&self) -> &'static str {
        "snowflake"
    }

    /// A backslash starts an escape sequence inside `'…'`: it is written `\\`, a quote
    /// `\'` and NUL `\0`; everything else (newlines included) stands as it is.
    /// <https://docs.snowflake.com/en/sql-reference/data-types-text#escape-sequences-in-single-quoted-string-constants>
    fn string_literal(&self, s: &str) -> String {
        let mut out = String::with_capacity(s.len() + 2);
        out.push('\'');
        for c in s.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\'' => out.push_str("\\'"),
                '\0' => out.push_str("\\0"),
                c => out.push(c),
            }
        }
        out.push('\'');
        out
    }

    /// Unquoted identifiers are stored and resolved in upper case.
    /// <https://docs.snowflake.com/en/sql-reference/identifiers-syntax#unquoted-identifiers>
    fn fold_unquoted(&self, ident: &str) -> String {
        ident.to_ascii_uppercase()
    }

    fn null_safe_ne(&self, a: &str, b: &str) -> String {
        format!("{a} IS DISTINCT FROM {b}")
    }

    /// <https://docs.snowflake.com/en/sql-reference/functions/count_if>
    fn count_where(&self, cond: &str) -> String {
        format!("COUNT_IF({cond})")
    }

    /// An array of the key's values as JSON. Each value goes in as a VARIANT, which is
    /// what ARRAY_CONSTRUCT makes of it anyway; spelled out, stand-ins that build typed
    /// lists (fakesnow over DuckDB) accept keys of mixed types too.
    /// <https://docs.snowflake.com/en/sql-reference/functions/array_construct>
    fn key_identity(&self, cols: &[String]) -> String {
        let values: Vec<String> = cols.iter().map(|c| format!("TO_VARIANT({c})")).collect();
        format!("TO_JSON(ARRAY_CONSTRUCT({}))", values.join(", "))
    }

    fn double_type(&self) -> &'static str {
        "DOUBLE"
    }

    /// Every Snowflake float is double precision.
    fn real_type(&self) -> &'static str {
        "DOUBLE"
    }

    /// Snowflake truncates fractional seconds when it stores into a coarser column; so
    /// does `DATE_TRUNC`, which keeps the value's own type.
    /// <https://docs.snowflake.com/en/sql-reference/functions/date_trunc>
    fn timestamp_to_precision(&self, expr: &str, precision: u32, _tz: bool) -> String {
        format!(
            "DATE_TRUNC('{}', {expr})",
            super::duckdb::trunc_unit(precision)
        )
    }

    /// <https://docs.snowflake.com/en/sql-reference/functions/convert_timezone>
    fn timestamp_tz_to_utc(&self, expr: &str) -> String {
        format!("CAST(CONVERT_TIMEZONE('UTC', {expr}) AS TIMESTAMP_NTZ)")
    }

    /// <https://docs.snowflake.com/en/sql-reference/functions/hash>: signed 64-bit.
    fn hash_bucket(&self, key_text: &str, seed: u64) -> String {
        format!("BITAND(HASH({key_text}, {seed}), 4294967295)")
    }

    /// `data_type` alone says `NUMBER` and `TIMESTAMP_NTZ`: add scale and precision. The
    /// documentation calls `DATETIME_PRECISION` "not applicable for Snowflake", so a NULL
    /// there leaves the type without a precision (a NULL in `||` would blank the whole
    /// type). <https://docs.snowflake.com/en/sql-reference/info-schema/columns>
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
            "SELECT column_name, data_type || CASE \
             WHEN data_type = 'NUMBER' THEN '(' || numeric_precision || ',' || numeric_scale || ')' \
             WHEN data_type LIKE 'TIMESTAMP%' THEN COALESCE('(' || datetime_precision || ')', '') \
             ELSE '' END FROM {catalog} WHERE {} ORDER BY ordinal_position",
            conds.join(" AND ")
        )
    }

    /// <https://docs.snowflake.com/en/sql-reference/parameters#statement-timeout-in-seconds>
    fn statement_setup(&self, statement_timeout_ms: u64) -> Vec<String> {
        vec![format!(
            "ALTER SESSION SET STATEMENT_TIMEOUT_IN_SECONDS = {}",
            statement_timeout_ms.div_ceil(1000)
        )]
    }
}
