//! PostgreSQL. <https://www.postgresql.org/docs/current/sql-syntax-lexical.html>

use super::{ColumnType, Dialect, Relation};

/// PostgreSQL 12+.
#[derive(Debug, Clone, Copy, Default)]
pub struct Postgres;

/// Seeds are passed to PostgreSQL's `bigint` hash functions: keep them non-negative.
pub(crate) fn seed_i63(seed: u64) -> u64 {
    seed & (i64::MAX as u64)
}

/// The catalog query PostgreSQL and Redshift share: `format_type` gives the declared type
/// with its modifiers (`numeric(12,4)`, `timestamp(3) without time zone`), which
/// `information_schema` spreads over several columns.
pub(crate) fn pg_columns_query(d: &dyn Dialect, r: &Relation) -> String {
    let string_literal = |s: &str| d.string_literal(s);
    let mut conds = vec![
        format!("c.relname = {}", string_literal(&r.name)),
        "a.attnum > 0".to_owned(),
        "NOT a.attisdropped".to_owned(),
    ];
    match &r.schema {
        Some(s) => conds.push(format!("n.nspname = {}", string_literal(s))),
        None => conds.push("pg_catalog.pg_table_is_visible(c.oid)".to_owned()),
    }
    if let Some(db) = &r.database {
        // A PostgreSQL session sees one database: any other name is an unknown relation.
        conds.push(format!(
            "pg_catalog.current_database() = {}",
            string_literal(db)
        ));
    }
    format!(
        "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) \
         FROM pg_catalog.pg_attribute a \
         JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE {} ORDER BY a.attnum",
        conds.join(" AND ")
    )
}

impl Dialect for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }

    /// <https://www.postgresql.org/docs/current/functions-comparison.html>
    fn null_safe_ne(&self, a: &str, b: &str) -> String {
        format!("{a} IS DISTINCT FROM {b}")
    }

    /// <https://www.postgresql.org/docs/current/sql-expressions.html#SYNTAX-AGGREGATES>:
    /// `FILTER` skips rows before they reach the aggregate, which matters for `DISTINCT`
    /// (only the filtered rows are sorted).
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

    fn text_type(&self) -> &'static str {
        "TEXT"
    }

    /// `OFFSET 0` stops the planner from pulling a subquery up, so its computed columns are
    /// evaluated once per row instead of once per aggregate that reads them.
    fn optimization_fence(&self) -> &'static str {
        " OFFSET 0"
    }

    /// `round(double precision, int)` does not exist: round as `numeric`, which rounds
    /// half away from zero exactly like storing into `numeric(p, s)` does.
    fn round(&self, expr: &str, scale: u32) -> String {
        format!("ROUND(CAST({expr} AS NUMERIC), {scale})")
    }

    fn timestamp_to_precision(&self, expr: &str, precision: u32, tz: bool) -> String {
        let zone = if tz { " WITH TIME ZONE" } else { "" };
        format!("CAST({expr} AS TIMESTAMP({precision}){zone})")
    }

    /// `hashtextextended` is PostgreSQL's own 64-bit text hash (11+), much cheaper than
    /// `md5`. <https://www.postgresql.org/docs/current/functions-info.html>
    fn hash_bucket(&self, key_text: &str, seed: u64) -> String {
        format!(
            "(hashtextextended({key_text}, {}) & 4294967295)",
            seed_i63(seed)
        )
    }

    /// `bucket / threshold = 0`, the same rows as `bucket < threshold` (both are
    /// non-negative integers), written as an equality for the planner's sake. With no
    /// statistics on the expression it guesses a third of the rows for `<` and 0.5 % for
    /// `=`: the third made a sampled join over 10 M rows look costly enough to compile with
    /// full LLVM optimisation, 1.9 s of compiling for a 2.5 s statement.
    /// <https://www.postgresql.org/docs/current/row-estimation-examples.html>
    fn bucket_below(&self, bucket: &str, threshold: u64) -> String {
        format!("{bucket} / {threshold} = 0")
    }

    fn hash_bucket_int(&self, key: &str, seed: u64) -> String {
        format!(
            "(hashint8extended(CAST({key} AS BIGINT), {}) & 4294967295)",
            seed_i63(seed)
        )
    }

    fn columns_query(&self, r: &Relation) -> String {
        pg_columns_query(self, r)
    }

    /// "target lists can have at most 1664 entries": a pass returns about 20 aggregates
    /// and two per reported column.
    fn max_reported_columns(&self) -> Option<usize> {
        Some(800)
    }

    /// Types without an equality operator (no default b-tree operator class), and arrays
    /// of them: compared as text. `json` goes through `jsonb` first, so key order and
    /// white space do not count as differences (as for a `jsonb` column).
    /// <https://www.postgresql.org/docs/current/datatype-json.html>
    fn text_for_comparison(&self, expr: &str, ty: &ColumnType) -> Option<String> {
        let lower = ty.raw.trim().to_ascii_lowercase();
        let (base, array) = match lower.strip_suffix("[]") {
            Some(b) => (b.trim(), true),
            None => (lower.as_str(), false),
        };
        const NO_EQUALITY: [&str; 10] = [
            "json", "xml", "point", "line", "lseg", "box", "path", "polygon", "circle", "jsonpath",
        ];
        if !NO_EQUALITY.contains(&base) {
            return None;
        }
        Some(if base == "json" && !array {
            format!("CAST(CAST({expr} AS JSONB) AS TEXT)")
        } else {
            self.cast_to_text(expr)
        })
    }

    /// `pg_class.reltuples`, kept by `ANALYZE` and autovacuum; -1 (or 0 before 14) when the
    /// table was never analysed, which the engine treats as unknown.
    /// <https://www.postgresql.org/docs/current/catalog-pg-class.html>
    fn row_estimate_query(&self, r: &Relation) -> Option<String> {
        let mut conds = vec![
            format!("c.relname = {}", self.string_literal(&r.name)),
            "c.relkind IN ('r', 'p', 'm')".to_owned(),
        ];
        match &r.schema {
            Some(s) => conds.push(format!("n.nspname = {}", self.string_literal(s))),
            None => conds.push("pg_catalog.pg_table_is_visible(c.oid)".to_owned()),
        }
        Some(format!(
            "SELECT CAST(c.reltuples AS BIGINT) FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE {}",
            conds.join(" AND ")
        ))
    }

    fn parse_type(&self, raw: &str) -> ColumnType {
        ColumnType::parse_generic(raw)
    }

    /// <https://www.postgresql.org/docs/current/runtime-config-client.html#GUC-STATEMENT-TIMEOUT>
    ///
    /// JIT's LLVM optimisation and inlining start at 5× PostgreSQL's default planner cost
    /// (<https://www.postgresql.org/docs/current/runtime-config-query.html#GUC-JIT-OPTIMIZE-ABOVE-COST>).
    /// Their compile time grows with the expressions, and a diff statement carries dozens
    /// of aggregates (5–10× a usual query's): a sampled pass over 10 M rows (planner cost
    /// 1.8 M, 200 k rows kept) spent 3.6 s of 7.9 s compiling, while the exact join over the
    /// same tables (cost 3.1 M, every row through the expressions) still gains from it.
    fn statement_setup(&self, statement_timeout_ms: u64) -> Vec<String> {
        vec![
            format!("SET LOCAL statement_timeout = {statement_timeout_ms}"),
            // Literals double quotes only (`Dialect::string_literal`): a backslash must be an
            // ordinary character, whatever the server or role default says.
            "SET LOCAL standard_conforming_strings = on".to_owned(),
            "SET LOCAL jit_optimize_above_cost = 2500000".to_owned(),
            "SET LOCAL jit_inline_above_cost = 2500000".to_owned(),
        ]
    }
}
