//! SQL generation: relations, column types, the dialect trait and one file per warehouse.
//!
//! The diff engine ([`crate::diff`]) never writes warehouse-specific SQL itself: it asks a
//! [`Dialect`] for every fragment that differs between warehouses. The trait carries
//! ANSI defaults; each dialect file overrides only what its warehouse does differently and
//! links to the vendor documentation for it.
//!
//! Identifiers are quoted in exactly one place: [`Dialect::quote_identifier`] (and
//! [`Dialect::relation`], which calls it for every part).

mod bigquery;
mod databricks;
mod duckdb;
pub mod filter;
#[cfg(test)]
mod literal_tests;
mod postgres;
mod redshift;
mod relation;
mod snowflake;
pub(crate) mod sqlite;
mod types;

pub use bigquery::BigQuery;
pub use databricks::Databricks;
pub use duckdb::DuckDb;
pub use postgres::Postgres;
pub use redshift::Redshift;
pub use relation::{Relation, RelationError};
pub use snowflake::Snowflake;
pub use sqlite::Sqlite;
pub use types::{ColumnType, TypeFamily};

/// Every dialect prdiff generates SQL for, for tests and for lookup by name.
pub fn all_dialects() -> Vec<&'static dyn Dialect> {
    vec![
        &Postgres,
        &Redshift,
        &Sqlite,
        &DuckDb,
        &Snowflake,
        &BigQuery,
        &Databricks,
    ]
}

/// Looks a dialect up by its [`Dialect::name`].
pub fn dialect_by_name(name: &str) -> Option<&'static dyn Dialect> {
    all_dialects().into_iter().find(|d| d.name() == name)
}

/// Quotes `ident` with `open`/`close`, doubling any embedded closing quote: the ANSI rule
/// that PostgreSQL, SQLite, DuckDB, Snowflake, Redshift and Databricks share.
pub(crate) fn quote_doubling(ident: &str, open: char, close: char) -> String {
    let mut out = String::with_capacity(ident.len() + 2);
    out.push(open);
    for c in ident.chars() {
        if c == close {
            out.push(close);
        }
        out.push(c);
    }
    out.push(close);
    out
}

/// A string literal the ANSI way: embedded single quotes doubled, every other character
/// as it is. Right only where a backslash is an ordinary character inside `'…'`; callers
/// use [`Dialect::string_literal`], which picks the warehouse's rule.
fn doubled_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// What differs between warehouses when prdiff generates SQL.
///
/// # Normalisation contract
///
/// When a column's type differs between production and the PR, both sides are rewritten by
/// [`Dialect::normalise_pair`] before comparison, so that equal values compare equal:
///
/// | prod type vs PR type | both sides become |
/// |---|---|
/// | identical type text | compared as they are |
/// | integer vs integer (any width) | cast to the dialect's 64-bit integer |
/// | decimal/integer vs decimal (scale s₁, s₂) | `ROUND(x, min(s₁, s₂))`: compared by value at the coarser scale (integers have scale 0; an unconstrained `numeric` has no scale and yields to the other side's) |
/// | float vs float | cast to the narrower float (`REAL` when either side is single precision, else double) |
/// | float vs decimal(s) | both cast to double and rounded to s |
/// | timestamp(p₁) vs timestamp(p₂) | the finer side cast to the coarser precision, the way the warehouse itself stores a value into the coarser type (PostgreSQL rounds; SQLite text timestamps are truncated) |
/// | timestamp with vs without time zone | both as timestamps without time zone in UTC |
/// | date vs timestamp | the timestamp side cast to date |
/// | text vs text (varchar(n), char(n), text, string) | both cast to the dialect's text type and compared exactly: case, leading and trailing whitespace all count (PostgreSQL's `char(n)` drops its pad spaces when cast to text) |
/// | boolean vs boolean | compared as booleans |
/// | anything else (a change of type family, e.g. integer → text) | both cast to text and compared as text |
///
/// NULL against a value is a difference; NULL against NULL is not
/// ([`Dialect::null_safe_ne`]).
pub trait Dialect: Send + Sync + std::fmt::Debug {
    /// A short lowercase name: `postgres`, `sqlite`, …
    fn name(&self) -> &'static str;

    /// The one place identifiers are quoted. Always quotes, so reserved words, mixed case,
    /// spaces and embedded quotes all survive.
    fn quote_identifier(&self, ident: &str) -> String {
        quote_doubling(ident, '"', '"')
    }

    /// `s` as a string literal that reads back as exactly `s` and cannot end early, however
    /// hostile `s` is: the one place values (relation names from a manifest, key values
    /// from a PR's tables) become SQL text. By default single quotes are doubled (the ANSI
    /// rule: PostgreSQL with `standard_conforming_strings`, SQLite, DuckDB); dialects where
    /// a backslash escapes inside `'…'` override it.
    fn string_literal(&self, s: &str) -> String {
        doubled_literal(s)
    }

    /// An identifier written without quotes, as the warehouse resolves it. prdiff always
    /// quotes what it generates, so names that reach it unquoted (dbt's `relation_name`
    /// on Snowflake) are folded here first. By default kept as written.
    fn fold_unquoted(&self, ident: &str) -> String {
        ident.to_owned()
    }

    /// A relation as SQL: every present part quoted.
    fn relation(&self, r: &Relation) -> String {
        r.parts()
            .map(|p| self.quote_identifier(p))
            .collect::<Vec<_>>()
            .join(".")
    }

    /// `a` and `b` differ, treating NULL as a value: NULL vs value differs, NULL vs NULL
    /// does not. Must be TRUE or FALSE/NULL-as-false inside `CASE WHEN`.
    fn null_safe_ne(&self, a: &str, b: &str) -> String {
        format!(
            "({a} <> {b} OR ({a} IS NULL AND {b} IS NOT NULL) OR ({a} IS NOT NULL AND {b} IS NULL))"
        )
    }

    /// Number of rows for which `cond` holds, never NULL.
    fn count_where(&self, cond: &str) -> String {
        format!("COALESCE(SUM(CASE WHEN {cond} THEN 1 ELSE 0 END), 0)")
    }

    /// Number of distinct values of `expr` over the rows where `cond` holds.
    fn count_distinct_where(&self, expr: &str, cond: &str) -> String {
        format!("COUNT(DISTINCT CASE WHEN {cond} THEN {expr} END)")
    }

    /// `MIN` (or `MAX` with `max`) of `expr` over the rows where `cond` holds.
    fn extreme_where(&self, max: bool, expr: &str, cond: &str) -> String {
        let f = if max { "MAX" } else { "MIN" };
        format!("{f}(CASE WHEN {cond} THEN {expr} END)")
    }

    /// One value standing for a whole (composite) key, for `COUNT(DISTINCT …)`.
    /// Only called with two or more columns, none of them NULL.
    fn key_identity(&self, cols: &[String]) -> String {
        format!("ROW({})", cols.join(", "))
    }

    /// A finite number as an SQL numeric literal, in scientific notation (`1E-2`), which
    /// every supported warehouse reads as a number whatever its magnitude. The one way a
    /// number from the PR's yaml (a parsed `f64`, never its text) enters SQL.
    fn numeric_literal(&self, v: f64) -> String {
        debug_assert!(v.is_finite());
        format!("{v:E}")
    }

    /// The boolean constant false.
    fn false_literal(&self) -> &'static str {
        "FALSE"
    }

    /// The type name used for 64-bit integers in casts.
    fn bigint_type(&self) -> &'static str {
        "BIGINT"
    }

    /// The type name used for unbounded text in casts.
    fn text_type(&self) -> &'static str {
        "VARCHAR"
    }

    /// The type name used for double-precision floats in casts.
    fn double_type(&self) -> &'static str {
        "DOUBLE PRECISION"
    }

    /// The type name used for single-precision floats in casts.
    fn real_type(&self) -> &'static str {
        "REAL"
    }

    fn cast(&self, expr: &str, ty: &str) -> String {
        format!("CAST({expr} AS {ty})")
    }

    fn cast_to_text(&self, expr: &str) -> String {
        self.cast(expr, self.text_type())
    }

    /// The most compared columns one diff pass reports on, for warehouses that limit a
    /// select list (each reported column adds two aggregates); a wider model is diffed in
    /// column groups. `None`: no limit.
    fn max_reported_columns(&self) -> Option<usize> {
        None
    }

    /// Whether an exact diff's join carries its example rows up through the join instead
    /// of reading them by key afterwards. Where a read by key scans (and bills) every
    /// compared column of both relations again, as on BigQuery, carrying costs less.
    fn exact_join_carries_examples(&self) -> bool {
        false
    }

    /// For a column type the warehouse cannot compare with `=` (PostgreSQL's `json`,
    /// `xml` and geometric types), the canonical text `expr` is compared as; `None` for
    /// types with an equality operator.
    fn text_for_comparison(&self, _expr: &str, _ty: &ColumnType) -> Option<String> {
        None
    }

    /// A query returning one number, the catalog's estimate of the relation's rows, or
    /// `None` where the warehouse keeps none. Only ever sizes a sample's first pass (so it
    /// can run beside the exact counts); no reported figure comes from it.
    fn row_estimate_query(&self, _r: &Relation) -> Option<String> {
        None
    }

    /// The number of characters (Unicode code points) of a text expression.
    fn char_length(&self, expr: &str) -> String {
        format!("LENGTH({expr})")
    }

    /// Rounds a numeric expression to `scale` decimal places, half away from zero.
    fn round(&self, expr: &str, scale: u32) -> String {
        format!("ROUND({expr}, {scale})")
    }

    /// Casts a timestamp to `precision` fractional digits, the way the warehouse would
    /// store it into a column of that precision.
    fn timestamp_to_precision(&self, expr: &str, precision: u32, tz: bool) -> String {
        let ty = if tz {
            "TIMESTAMP WITH TIME ZONE"
        } else {
            "TIMESTAMP"
        };
        format!("CAST({expr} AS {ty}({precision}))")
    }

    /// Whether a column holds values only at its declared precision and scale (SQLite's
    /// declared types are affinities: it stores whatever it is given).
    fn enforces_declared_precision(&self) -> bool {
        true
    }

    /// A timestamp with time zone as a timestamp without, in UTC.
    fn timestamp_tz_to_utc(&self, expr: &str) -> String {
        format!("CAST({expr} AT TIME ZONE 'UTC' AS TIMESTAMP)")
    }

    fn timestamp_to_date(&self, expr: &str) -> String {
        self.cast(expr, "DATE")
    }

    /// Concatenation of text expressions, for hashing composite keys.
    fn concat(&self, parts: &[String]) -> String {
        parts.join(" || ")
    }

    /// The text of a key for hashing: one column's text, or every column's text joined by
    /// a separator that does not occur in numbers or dates (U+001F, the unit separator).
    fn key_text(&self, cols: &[String]) -> String {
        if cols.len() == 1 {
            return self.cast_to_text(&cols[0]);
        }
        let mut parts = Vec::with_capacity(cols.len() * 2);
        for (i, c) in cols.iter().enumerate() {
            if i > 0 {
                parts.push(self.unit_separator());
            }
            parts.push(self.cast_to_text(c));
        }
        self.concat(&parts)
    }

    /// A one-character string literal holding U+001F.
    fn unit_separator(&self) -> String {
        "CHR(31)".to_owned()
    }

    /// An integer expression uniformly distributed over `[0, 2^32)`, a deterministic
    /// function of the key's text and `seed`. Both sides of a diff use the same expression,
    /// so a key is sampled on both or on neither.
    fn hash_bucket(&self, key_text: &str, seed: u64) -> String;

    /// `bucket < threshold`, for a bucket of [`Dialect::hash_bucket`] (in `[0, 2³²)`) and a
    /// threshold in `[1, 2³²]`: the predicate that keeps a sample's keys.
    fn bucket_below(&self, bucket: &str, threshold: u64) -> String {
        format!("{bucket} < {threshold}")
    }

    /// The same as [`Dialect::hash_bucket`] for a single 64-bit integer key, where the
    /// warehouse has a faster integer hash. Must agree across both sides only, not with
    /// `hash_bucket`.
    fn hash_bucket_int(&self, key: &str, seed: u64) -> String {
        self.hash_bucket(&self.cast_to_text(key), seed)
    }

    /// `SELECT name, type FROM <catalog> WHERE <relation>` ordered by column position: the
    /// query that lists a relation's columns and their declared types.
    fn columns_query(&self, r: &Relation) -> String {
        let mut conds = vec![format!("table_name = {}", self.string_literal(&r.name))];
        if let Some(s) = &r.schema {
            conds.push(format!("table_schema = {}", self.string_literal(s)));
        }
        if let Some(d) = &r.database {
            conds.push(format!("table_catalog = {}", self.string_literal(d)));
        }
        let catalog = match &r.database {
            Some(d) => format!("{}.information_schema.columns", self.quote_identifier(d)),
            None => "information_schema.columns".to_owned(),
        };
        format!(
            "SELECT column_name, data_type FROM {catalog} WHERE {} ORDER BY ordinal_position",
            conds.join(" AND ")
        )
    }

    /// Parses a type name as the catalog returns it.
    fn parse_type(&self, raw: &str) -> ColumnType {
        ColumnType::parse_generic(raw)
    }

    /// `SELECT … LIMIT n`.
    fn limit(&self, select: &str, n: usize) -> String {
        format!("{select} LIMIT {n}")
    }

    /// Appended to a derived table whose computed columns must be evaluated once per row
    /// rather than inlined into every expression that uses them.
    fn optimization_fence(&self) -> &'static str {
        ""
    }

    /// [`Dialect::optimization_fence`] for the passes of a wide model's column groups
    /// (whose rows carry one test of every column).
    fn column_group_fence(&self) -> &'static str {
        self.optimization_fence()
    }

    /// Settings for one statement, e.g. its timeout. Drivers with transactions (PostgreSQL,
    /// Redshift) run them as `SET LOCAL` inside the statement's own read-only transaction,
    /// so nothing a statement does to the session outlives it.
    fn statement_setup(&self, _statement_timeout_ms: u64) -> Vec<String> {
        Vec::new()
    }

    /// Rewrites `expr` (a column of type `own`) so it compares with the other side's
    /// column of type `other` per the normalisation contract above.
    fn normalise(&self, expr: &str, own: &ColumnType, other: &ColumnType) -> String {
        types::normalise(self, expr, own, other)
    }
}
