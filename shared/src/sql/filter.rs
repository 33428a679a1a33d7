//! Per-model filters, parsed and checked before they reach any SQL.
//!
//! A filter comes from the pull request's own dbt yaml (`meta.datafold.datadiff.filter`)
//! or from the CLI's `--filter`: whoever opens a pull request writes it. It is therefore
//! parsed with sqlparser in the warehouse's dialect as exactly one boolean expression and
//! checked against an allow-list: column names, literals, comparison, boolean, arithmetic
//! and string operators, `CASE`, `IN (list)`, `BETWEEN`, `LIKE`, casts to plain scalar
//! types and a small set of pure scalar functions ([`ALLOWED_FUNCTIONS`]). Everything
//! else is refused with the reason: subqueries, `EXISTS`, qualified names, any other
//! function (`set_config`, `nextval`, `lo_*`, `pg_*`, `dblink*`, `pg_sleep`,
//! `query_to_xml`, …), window and aggregate syntax, placeholders, casts to other types.
//!
//! What goes into the diff SQL is the parsed expression written back by sqlparser
//! ([`SafeFilter::sql`]), never the raw text; it must parse back to the same tree. On
//! BigQuery, its string literals are then written in GoogleSQL's own quoting
//! (`'O\'Brien'`, not sqlparser's `'O''Brien'`, which GoogleSQL refuses).

use std::borrow::Borrow;
use std::fmt;

use sqlparser::ast::{
    BinaryOperator, CaseWhen, CastKind, DataType, Expr, Function, FunctionArg, FunctionArgExpr,
    FunctionArgumentList, FunctionArguments, Ident, UnaryOperator, Value,
};
use sqlparser::dialect as sp;
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};

use super::Dialect;

/// The longest filter accepted, in bytes.
pub const MAX_FILTER_LEN: usize = 4096;

/// How deeply a filter may nest (sqlparser's recursion limit while parsing).
const MAX_DEPTH: usize = 40;

/// Scalar functions a filter may call: pure (no side effects, no access to other tables
/// or the session), by their unqualified, lower-case name.
pub const ALLOWED_FUNCTIONS: &[&str] = &[
    // NULL handling and conditionals
    "coalesce",
    "nullif",
    "ifnull",
    "nvl",
    "nvl2",
    "iff",
    "if",
    "greatest",
    "least",
    // numbers
    "abs",
    "ceil",
    "ceiling",
    "floor",
    "round",
    "trunc",
    "truncate",
    "mod",
    "power",
    "pow",
    "sqrt",
    "sign",
    "ln",
    "log",
    "exp",
    // text
    "lower",
    "upper",
    "length",
    "len",
    "char_length",
    "character_length",
    "octet_length",
    "trim",
    "ltrim",
    "rtrim",
    "btrim",
    "substr",
    "substring",
    "left",
    "right",
    "replace",
    "concat",
    "concat_ws",
    "strpos",
    "starts_with",
    "startswith",
    "ends_with",
    "endswith",
    "contains",
    "lpad",
    "rpad",
    "split_part",
    "reverse",
    "initcap",
    // dates and times
    "current_date",
    "current_timestamp",
    "current_time",
    "localtimestamp",
    "localtime",
    "now",
    "getdate",
    "sysdate",
    "date",
    "date_trunc",
    "date_part",
    "datepart",
    "date_add",
    "dateadd",
    "date_sub",
    "datediff",
    "date_diff",
    "timestamp_trunc",
    "timestampadd",
    "timestampdiff",
    "to_date",
    "to_timestamp",
    "to_char",
    "make_date",
    "year",
    "month",
    "day",
    "dayofweek",
];

/// Scalar types a filter may cast to (the type's name before any `(…)`, lower case).
const ALLOWED_CAST_TYPES: &[&str] = &[
    "smallint",
    "int",
    "integer",
    "bigint",
    "tinyint",
    "int2",
    "int4",
    "int8",
    "int64",
    "numeric",
    "decimal",
    "dec",
    "number",
    "real",
    "float",
    "float4",
    "float8",
    "float64",
    "double",
    "double precision",
    "text",
    "varchar",
    "character varying",
    "char",
    "character",
    "nvarchar",
    "bpchar",
    "string",
    "date",
    "time",
    "timestamp",
    "timestamptz",
    "timestamp with time zone",
    "timestamp without time zone",
    "timestamp_ntz",
    "timestamp_ltz",
    "timestamp_tz",
    "datetime",
    "interval",
    "boolean",
    "bool",
];

/// A filter that passed the checks: the expression as sqlparser writes it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafeFilter {
    sql: String,
}

impl SafeFilter {
    /// The expression to put in a `WHERE` clause (wrap it in parentheses).
    pub fn sql(&self) -> &str {
        &self.sql
    }
}

impl fmt::Display for SafeFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.sql)
    }
}

/// Why a filter was refused. The text names the construct, not the whole filter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsafe filter: {reason}")]
pub struct UnsafeFilter {
    pub reason: String,
}

fn refuse(reason: impl Into<String>) -> UnsafeFilter {
    UnsafeFilter {
        reason: reason.into(),
    }
}

/// The sqlparser dialect for one of prdiff's dialects.
pub(crate) fn parser_dialect(d: &dyn Dialect) -> Box<dyn sp::Dialect> {
    match d.name() {
        "postgres" => Box::new(sp::PostgreSqlDialect {}),
        "redshift" => Box::new(sp::RedshiftSqlDialect {}),
        "sqlite" => Box::new(sp::SQLiteDialect {}),
        "duckdb" => Box::new(sp::DuckDbDialect {}),
        "snowflake" => Box::new(sp::SnowflakeDialect {}),
        "bigquery" => Box::new(sp::BigQueryDialect {}),
        "databricks" => Box::new(sp::DatabricksDialect {}),
        _ => Box::new(sp::AnsiDialect {}),
    }
}

/// Parses `raw` as one boolean expression in `dialect`'s SQL and checks it against the
/// allow-list. The result is what sqlparser writes back, which parses to the same tree.
pub fn parse_filter(dialect: &dyn Dialect, raw: &str) -> Result<SafeFilter, UnsafeFilter> {
    if raw.trim().is_empty() {
        return Err(refuse("the filter is empty"));
    }
    if raw.len() > MAX_FILTER_LEN {
        return Err(refuse(format!(
            "the filter is {} bytes long; at most {MAX_FILTER_LEN} are accepted",
            raw.len()
        )));
    }
    if dialect.name() == "databricks" && raw.contains('\\') {
        // Databricks reads a backslash inside '…' as an escape; sqlparser's Databricks
        // dialect does not, so the check could see a different string than the warehouse
        // (`'x\' AND y = '…'` is one literal there, two here).
        return Err(refuse("a backslash is not accepted in a Databricks filter"));
    }
    let sp_dialect = parser_dialect(dialect);
    let expr = parse_one(sp_dialect.as_ref(), raw)?;
    check(&expr, dialect)?;
    let sql = expr.to_string();
    // What is written back must mean what was checked.
    match parse_one(sp_dialect.as_ref(), &sql) {
        Ok(again) if again == expr => {}
        _ => {
            return Err(refuse(
                "the filter cannot be written back to SQL unchanged (an unusual literal or name?)",
            ));
        }
    }
    if dialect.name() == "databricks" && has_quote_in_string(sp_dialect.as_ref(), &sql)? {
        // sqlparser writes the quote doubled (`'O''Brien'`), which Databricks reads as two
        // adjacent strings joined (`OBrien`): the filter would select other rows.
        return Err(refuse(
            "a quote inside a string is not accepted in a Databricks filter (Databricks would \
             read 'O''Brien' as two strings joined)",
        ));
    }
    if dialect.name() == "bigquery" {
        let sql = with_dialect_literals(dialect, sp_dialect.as_ref(), &sql)?;
        return Ok(SafeFilter { sql });
    }
    Ok(SafeFilter { sql })
}

/// `sql` with every string literal written by the dialect ([`Dialect::string_literal`])
/// and everything else as it is. sqlparser writes a quote inside a string doubled
/// (`'O''Brien'`), which GoogleSQL reads as two adjacent literals and refuses; BigQuery's
/// own form is `'O\'Brien'`. Its double-quoted strings become single-quoted ones, which
/// GoogleSQL reads alike. The result must tokenize to the same tokens (a double-quoted
/// string standing for the same single-quoted one), so it parses to the same expression.
fn with_dialect_literals(
    d: &dyn Dialect,
    sp_dialect: &dyn sp::Dialect,
    sql: &str,
) -> Result<String, UnsafeFilter> {
    let cannot =
        || refuse("the filter's strings cannot be written in this warehouse's quoting unchanged");
    let tokens = Tokenizer::new(sp_dialect, sql)
        .tokenize_with_location()
        .map_err(|_| cannot())?;
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(sql.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    // A location (line and column from 1, in characters) as a byte offset into `sql`.
    let offset = |loc: sqlparser::tokenizer::Location| -> Option<usize> {
        let start = *line_starts.get(usize::try_from(loc.line).ok()?.checked_sub(1)?)?;
        sql[start..]
            .char_indices()
            .map(|(i, _)| start + i)
            .chain(std::iter::once(sql.len()))
            .nth(usize::try_from(loc.column).ok()?.checked_sub(1)?)
    };
    let mut out = String::with_capacity(sql.len() + 8);
    let mut copied = 0;
    for t in &tokens {
        let (Token::SingleQuotedString(v) | Token::DoubleQuotedString(v)) = &t.token else {
            continue;
        };
        let (start, end) = offset(t.span.start)
            .zip(offset(t.span.end))
            .filter(|(s, e)| copied <= *s && s < e)
            .ok_or_else(cannot)?;
        out.push_str(&sql[copied..start]);
        out.push_str(&d.string_literal(v));
        copied = end;
    }
    out.push_str(&sql[copied..]);
    let meaning = |text: &str| -> Result<Vec<Token>, UnsafeFilter> {
        Ok(Tokenizer::new(sp_dialect, text)
            .tokenize()
            .map_err(|_| cannot())?
            .into_iter()
            .filter(|t| !matches!(t, Token::Whitespace(_)))
            .map(|t| match t {
                Token::DoubleQuotedString(v) => Token::SingleQuotedString(v),
                other => other,
            })
            .collect())
    };
    if meaning(&out)? != meaning(sql)? || parse_one(sp_dialect, &out).is_err() {
        return Err(cannot());
    }
    Ok(out)
}

/// Whether a string literal of `sql` holds a single quote.
fn has_quote_in_string(sp_dialect: &dyn sp::Dialect, sql: &str) -> Result<bool, UnsafeFilter> {
    let tokens = Tokenizer::new(sp_dialect, sql)
        .tokenize()
        .map_err(|_| refuse("the filter cannot be read back as SQL tokens"))?;
    Ok(tokens.iter().any(|t| {
        matches!(t, Token::SingleQuotedString(v) | Token::DoubleQuotedString(v) if v.contains('\''))
    }))
}

fn parse_one(dialect: &dyn sp::Dialect, sql: &str) -> Result<Expr, UnsafeFilter> {
    let syntax = |e: sqlparser::parser::ParserError| {
        refuse(format!(
            "not a single SQL expression in this warehouse's dialect: {e}"
        ))
    };
    // sqlparser's recursion limit does not count `NOT` chains: bound them before parsing
    // (the tokenizer does not recurse).
    let tokens = Tokenizer::new(dialect, sql).tokenize().map_err(|e| {
        refuse(format!(
            "not a single SQL expression in this warehouse's dialect: {e}"
        ))
    })?;
    let nots = tokens
        .iter()
        .filter(|t| matches!(t, Token::Word(w) if w.keyword == Keyword::NOT))
        .count();
    if nots > MAX_DEPTH {
        return Err(refuse(format!(
            "the filter has {nots} NOTs; at most {MAX_DEPTH} are accepted"
        )));
    }
    let mut parser = Parser::new(dialect)
        .with_recursion_limit(MAX_DEPTH)
        .try_with_sql(sql)
        .map_err(syntax)?;
    let expr = parser.parse_expr().map_err(syntax)?;
    match parser.peek_token().token {
        Token::EOF => Ok(expr),
        Token::SemiColon => Err(refuse(
            "a filter is one expression: `;` and a second statement are not allowed",
        )),
        other => Err(refuse(format!(
            "a filter is one expression; unexpected `{other}` after it"
        ))),
    }
}

fn check(e: &Expr, d: &dyn Dialect) -> Result<(), UnsafeFilter> {
    match e {
        Expr::Identifier(id) => check_ident(id, d),
        Expr::CompoundIdentifier(parts) => Err(qualified_name(parts)),
        Expr::Value(v) => check_value(&v.value),
        Expr::TypedString { data_type, value } => {
            check_type(data_type)?;
            check_value(&value.value)
        }
        Expr::Nested(inner)
        | Expr::IsNull(inner)
        | Expr::IsNotNull(inner)
        | Expr::IsTrue(inner)
        | Expr::IsNotTrue(inner)
        | Expr::IsFalse(inner)
        | Expr::IsNotFalse(inner)
        | Expr::IsUnknown(inner)
        | Expr::IsNotUnknown(inner) => check(inner, d),
        Expr::IsDistinctFrom(a, b) | Expr::IsNotDistinctFrom(a, b) => check_each([a, b], d),
        Expr::UnaryOp { op, expr } => match op {
            UnaryOperator::Not | UnaryOperator::Minus | UnaryOperator::Plus => check(expr, d),
            other => Err(refuse(format!(
                "operator `{other}` is not allowed in a filter"
            ))),
        },
        Expr::BinaryOp { left, op, right } => check_binary_op(left, op, right, d),
        Expr::InList { expr, list, .. } => {
            check(expr, d)?;
            check_each(list, d)
        }
        Expr::Between {
            expr, low, high, ..
        } => check_each([expr, low, high], d),
        Expr::Like {
            expr,
            pattern,
            escape_char,
            ..
        }
        | Expr::ILike {
            expr,
            pattern,
            escape_char,
            ..
        } => {
            check_each([expr, pattern], d)?;
            escape_char.as_ref().map_or(Ok(()), check_value)
        }
        Expr::Tuple(items) => check_each(items, d),
        Expr::Case {
            operand,
            conditions,
            else_result,
            ..
        } => check_case(operand.as_deref(), conditions, else_result.as_deref(), d),
        Expr::Cast {
            kind,
            expr,
            data_type,
            format,
        } => check_cast(kind, expr, data_type, format.is_some(), d),
        Expr::AtTimeZone {
            timestamp,
            time_zone,
        } => check_each([timestamp, time_zone], d),
        Expr::Extract { expr, .. } | Expr::Ceil { expr, .. } | Expr::Floor { expr, .. } => {
            check(expr, d)
        }
        Expr::Position { expr, r#in } => check_each([expr, r#in], d),
        Expr::Substring {
            expr,
            substring_from,
            substring_for,
            ..
        } => {
            check(expr, d)?;
            check_each([substring_from, substring_for].into_iter().flatten(), d)
        }
        Expr::Trim {
            expr,
            trim_what,
            trim_characters,
            ..
        } => {
            check(expr, d)?;
            check_each(trim_what, d)?;
            check_each(trim_characters.iter().flatten(), d)
        }
        Expr::Interval(i) => check(&i.value, d),
        Expr::Function(f) => check_function(f, d),
        Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => {
            Err(refuse("subqueries are not allowed in a filter"))
        }
        other => Err(refuse(format!(
            "`{}` is not allowed in a filter (an expression of kind {})",
            shorten(&other.to_string()),
            expr_kind(other)
        ))),
    }
}

/// Checks each expression in turn.
fn check_each<'a, E: Borrow<Expr> + 'a>(
    es: impl IntoIterator<Item = &'a E>,
    d: &dyn Dialect,
) -> Result<(), UnsafeFilter> {
    es.into_iter().try_for_each(|e| check(e.borrow(), d))
}

fn qualified_name(parts: &[Ident]) -> UnsafeFilter {
    refuse(format!(
        "qualified name `{}`: a filter names its model's own columns only",
        parts
            .iter()
            .map(|p| p.value.as_str())
            .collect::<Vec<_>>()
            .join(".")
    ))
}

fn check_binary_op(
    left: &Expr,
    op: &BinaryOperator,
    right: &Expr,
    d: &dyn Dialect,
) -> Result<(), UnsafeFilter> {
    use BinaryOperator as B;
    match op {
        B::Plus
        | B::Minus
        | B::Multiply
        | B::Divide
        | B::Modulo
        | B::StringConcat
        | B::Gt
        | B::Lt
        | B::GtEq
        | B::LtEq
        | B::Eq
        | B::NotEq
        | B::And
        | B::Or => {
            check(left, d)?;
            check(right, d)
        }
        other => Err(refuse(format!(
            "operator `{other}` is not allowed in a filter"
        ))),
    }
}

fn check_case(
    operand: Option<&Expr>,
    conditions: &[CaseWhen],
    else_result: Option<&Expr>,
    d: &dyn Dialect,
) -> Result<(), UnsafeFilter> {
    if let Some(o) = operand {
        check(o, d)?;
    }
    for c in conditions {
        check(&c.condition, d)?;
        check(&c.result, d)?;
    }
    else_result.map_or(Ok(()), |e| check(e, d))
}

fn check_cast(
    kind: &CastKind,
    expr: &Expr,
    data_type: &DataType,
    has_format: bool,
    d: &dyn Dialect,
) -> Result<(), UnsafeFilter> {
    if has_format {
        return Err(refuse("CAST … FORMAT is not allowed in a filter"));
    }
    match kind {
        CastKind::Cast | CastKind::TryCast | CastKind::SafeCast | CastKind::DoubleColon => {}
    }
    check_type(data_type)?;
    check(expr, d)
}

/// A function call: an allowed pure scalar function, called plainly.
fn check_function(f: &Function, d: &dyn Dialect) -> Result<(), UnsafeFilter> {
    let name = allowed_function_name(f)?;
    if f.filter.is_some()
        || f.over.is_some()
        || f.null_treatment.is_some()
        || !f.within_group.is_empty()
        || !matches!(f.parameters, FunctionArguments::None)
        || f.uses_odbc_syntax
    {
        return Err(refuse(format!(
            "function {name}(): window, aggregate and parameter syntax is not allowed in a filter"
        )));
    }
    match &f.args {
        FunctionArguments::None => Ok(()),
        FunctionArguments::Subquery(_) => Err(refuse(format!(
            "function {name}(): subqueries are not allowed in a filter"
        ))),
        FunctionArguments::List(list) => check_function_args(&name, list, d),
    }
}

/// The function's name, lower-cased, if it is unqualified, unquoted and allowed.
fn allowed_function_name(f: &Function) -> Result<String, UnsafeFilter> {
    let name = match f.name.0.as_slice() {
        [part] => match part.as_ident() {
            Some(id) if id.quote_style.is_none() => id.value.to_ascii_lowercase(),
            _ => return Err(refuse(format!("function name {} is not allowed", f.name))),
        },
        _ => {
            return Err(refuse(format!(
                "function {}: qualified function names are not allowed in a filter",
                f.name
            )));
        }
    };
    if !ALLOWED_FUNCTIONS.contains(&name.as_str()) {
        return Err(refuse(format!(
            "function {name}() is not allowed in a filter (only pure scalar functions such as coalesce, nullif, lower, upper, trim, substr, round, abs, date_trunc are)"
        )));
    }
    Ok(name)
}

fn check_function_args(
    name: &str,
    list: &FunctionArgumentList,
    d: &dyn Dialect,
) -> Result<(), UnsafeFilter> {
    if list.duplicate_treatment.is_some() || !list.clauses.is_empty() {
        return Err(refuse(format!(
            "function {name}(): DISTINCT, ORDER BY and other argument clauses are not allowed in a filter"
        )));
    }
    for arg in &list.args {
        match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => check(e, d)?,
            _ => {
                return Err(refuse(format!(
                    "function {name}(): only plain arguments are allowed in a filter"
                )));
            }
        }
    }
    Ok(())
}

fn check_ident(id: &Ident, d: &dyn Dialect) -> Result<(), UnsafeFilter> {
    let quote = d.quote_identifier("").chars().next();
    match id.quote_style {
        None => Ok(()),
        Some(q) if Some(q) == quote => Ok(()),
        Some(q) => Err(refuse(format!(
            "identifier quoted with {q} is not this warehouse's identifier quote"
        ))),
    }
}

fn check_value(v: &Value) -> Result<(), UnsafeFilter> {
    match v {
        Value::Number(..)
        | Value::SingleQuotedString(_)
        | Value::DoubleQuotedString(_)
        | Value::EscapedStringLiteral(_)
        | Value::NationalStringLiteral(_)
        | Value::Boolean(_)
        | Value::Null => Ok(()),
        Value::Placeholder(p) => Err(refuse(format!(
            "placeholder {p} is not allowed in a filter"
        ))),
        other => Err(refuse(format!(
            "literal {} is not allowed in a filter (use a plain 'string' or number)",
            shorten(&other.to_string())
        ))),
    }
}

fn check_type(t: &DataType) -> Result<(), UnsafeFilter> {
    let text = t.to_string().to_ascii_lowercase();
    let base = text.split('(').next().unwrap_or("").trim();
    if ALLOWED_CAST_TYPES.contains(&base) {
        Ok(())
    } else {
        Err(refuse(format!(
            "type {} is not allowed in a filter (only numbers, text, dates, times, timestamps, intervals and booleans)",
            shorten(&text)
        )))
    }
}

fn shorten(s: &str) -> String {
    const MAX: usize = 60;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push('…');
        out
    }
}

fn expr_kind(e: &Expr) -> &'static str {
    match e {
        Expr::CompoundFieldAccess { .. } | Expr::JsonAccess { .. } => "field access",
        Expr::SimilarTo { .. } | Expr::RLike { .. } => "regular expression",
        Expr::AnyOp { .. } | Expr::AllOp { .. } => "ANY/ALL",
        Expr::Array(_) | Expr::Map(_) | Expr::Struct { .. } | Expr::Dictionary(_) => {
            "composite literal"
        }
        Expr::Collate { .. } => "COLLATE",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::all_dialects;
    use crate::sql::{Postgres, Snowflake};

    fn ok(d: &dyn Dialect, raw: &str) -> String {
        parse_filter(d, raw)
            .unwrap_or_else(|e| panic!("{} refused {raw:?}: {e}", d.name()))
            .sql
    }

    fn refused(d: &dyn Dialect, raw: &str) -> String {
        match parse_filter(d, raw) {
            Ok(f) => panic!("{} accepted {raw:?} as {}", d.name(), f.sql),
            Err(e) => e.reason,
        }
    }

    #[test]
    fn a_backslash_cannot_split_a_literal_between_check_and_warehouse() {
        let raw = "k = 'x\\' AND y = ') OR 1 = 1 --'";
        let d = crate::sql::Databricks;
        assert!(refused(&d, raw).contains("backslash"));
        // Where sqlparser reads backslash escapes as the warehouse does, it sees the
        // payload the warehouse would: `'x\' AND y = '` is one string, then `) OR …`.
        for d in [
            &Snowflake as &dyn Dialect,
            &crate::sql::BigQuery,
            &crate::sql::Redshift,
        ] {
            assert!(refused(d, raw).contains("unexpected"), "{}", d.name());
        }
    }

    #[test]
    fn ordinary_filters_pass_in_every_dialect_and_are_written_back() {
        for d in all_dialects() {
            assert_eq!(ok(d, "x > 0"), "x > 0");
            assert_eq!(
                ok(d, "  status  =  'paid' and amount>=10  "),
                "status = 'paid' AND amount >= 10"
            );
            ok(
                d,
                "coalesce(deleted, false) = false AND lower(country) IN ('fr', 'de')",
            );
            ok(
                d,
                "created_at >= '2024-01-01' AND id BETWEEN 1 AND 1000 OR name LIKE 'a%'",
            );
            ok(
                d,
                "NOT (a IS NULL) AND CASE WHEN a > 1 THEN 1 ELSE 0 END = 1",
            );
            ok(
                d,
                "CAST(amount AS DECIMAL(12, 2)) > 1.5 AND nullif(code, '') IS NOT NULL",
            );
            ok(d, "-a + b * 2 - c / 3 <> 0");
        }
        assert_eq!(ok(&Postgres, "amount::numeric > 1"), "amount::NUMERIC > 1");
        assert_eq!(
            ok(&Postgres, "created_at > current_date - interval '30 days'"),
            "created_at > current_date - INTERVAL '30 days'"
        );
        assert_eq!(
            ok(&Postgres, "\"Weird \"\"col\" = 1"),
            "\"Weird \"\"col\" = 1"
        );
        ok(
            &Snowflake,
            "iff(a > 1, true, false) AND to_date(d) >= dateadd(day, -7, current_date())",
        );
    }

    #[test]
    fn what_the_attacks_used_is_refused() {
        let d = &Postgres;
        for (raw, says) in [
            ("lo_from_bytea(0,'x'::bytea) > 0", "lo_from_bytea"),
            (
                "set_config('default_transaction_read_only','off', false) = 'off'",
                "set_config",
            ),
            (
                "set_config('statement_timeout','0', false) IS NOT NULL",
                "set_config",
            ),
            ("nextval('s') > 0", "nextval"),
            ("pg_sleep(10) IS NULL", "pg_sleep"),
            ("pg_notify('c', 'x') IS NULL", "pg_notify"),
            ("txid_current() > 0", "txid_current"),
            ("dblink_exec('x', 'y') = ''", "dblink_exec"),
            (
                "query_to_xml('select 1', true, true, '') IS NOT NULL",
                "query_to_xml",
            ),
            ("pg_catalog.lower(x) = 'a'", "qualified"),
            ("\"lower\"(x) = 'a'", "lower"),
            ("id IN (SELECT id FROM hr.salaries)", "subquer"),
            (
                "EXISTS (SELECT 1 FROM hr.salaries WHERE salary > 100000)",
                "subquer",
            ),
            ("(SELECT count(*) FROM hr.salaries) > 0", "subquer"),
            (
                "lower((SELECT name FROM hr.salaries LIMIT 1)) = 'a'",
                "subquer",
            ),
            ("x > 0; DROP TABLE t", ";"),
            ("x > 0) OR (1 = 1", "unexpected"),
            ("x > 0 -- comment\n", ""),
            ("hr.salaries.amount > 0", "qualified name"),
            ("'pg_authid'::regclass IS NOT NULL", "regclass"),
            ("x > $1", "placeholder"),
            ("count(*) > 0", "count"),
            ("sum(x) OVER () > 0", "sum"),
            ("coalesce(x, 0) FILTER (WHERE y) > 0", ""),
            ("x ~ '^(a+)+$'", "operator"),
            ("x SIMILAR TO 'a%'", "regular expression"),
            ("x = ANY(ARRAY[1,2])", "ANY"),
            ("$$x$$ = x", "literal"),
            ("", "empty"),
        ] {
            if raw == "x > 0 -- comment\n" {
                // A comment is dropped by parsing: accepted, written back without it.
                assert_eq!(ok(d, raw), "x > 0");
                continue;
            }
            if raw == "coalesce(x, 0) FILTER (WHERE y) > 0" {
                let _ = refused(d, raw);
                continue;
            }
            let reason = refused(d, raw);
            assert!(
                reason.to_lowercase().contains(&says.to_lowercase()),
                "{raw:?}: reason {reason:?} does not mention {says:?}"
            );
        }
    }

    #[test]
    fn bigquery_filters_write_strings_with_backslash_escapes() {
        let d = &crate::sql::BigQuery;
        assert_eq!(ok(d, "name = 'O''Brien'"), r"name = 'O\'Brien'");
        assert_eq!(ok(d, r"name = 'O\'Brien'"), r"name = 'O\'Brien'");
        assert_eq!(ok(d, "name = \"it's\""), r"name = 'it\'s'");
        assert_eq!(
            ok(
                d,
                r"a = 'x' OR b IN ('x', 'y''z') AND c = DATE '2024-01-01'"
            ),
            r"a = 'x' OR b IN ('x', 'y\'z') AND c = DATE '2024-01-01'"
        );
        assert_eq!(ok(d, "`we'ird` = 'a''b'"), r"`we'ird` = 'a\'b'");
        // sqlparser writes a string's backslash back unescaped, which would read as an
        // escape: such a filter is refused, as before.
        assert!(refused(d, r"a = 'back\\slash'").contains("written back"));
        assert_eq!(ok(d, "x = 1"), "x = 1");
        assert_eq!(
            ok(d, "lower(s) = 'é''ü'\n AND t = ''"),
            r"lower(s) = 'é\'ü' AND t = ''"
        );
        // Other dialects keep sqlparser's doubled quote, which they read.
        assert_eq!(ok(&Postgres, "name = 'O''Brien'"), "name = 'O''Brien'");
        // Databricks would read the doubled quote as two strings joined: refused there.
        let d = &crate::sql::Databricks;
        assert!(refused(d, "name = 'O''Brien'").contains("quote inside a string"));
        assert!(refused(d, "name = \"it's\"").contains("quote inside a string"));
        assert_eq!(ok(d, "name = 'OBrien'"), "name = 'OBrien'");
    }

    #[test]
    fn every_dialect_refuses_subqueries_and_unknown_functions() {
        for d in all_dialects() {
            refused(d, "id IN (SELECT id FROM other)");
            refused(d, "sleep(5) = 0");
            refused(d, "system$wait(10) IS NULL");
            refused(d, "x > 1; select 1");
        }
    }

    #[test]
    fn long_or_deep_filters_are_refused_without_panicking() {
        let long = format!("x = '{}'", "a".repeat(MAX_FILTER_LEN));
        assert!(refused(&Postgres, &long).contains("bytes long"));
        let deep = format!("{}x{}", "(".repeat(500), ")".repeat(500));
        refused(&Postgres, &deep);
        let deep_not = format!("{}x", "NOT ".repeat(500));
        assert!(refused(&Postgres, &deep_not).contains("NOTs"));
        let ors: Vec<String> = (0..400).map(|i| format!("a={i}")).collect();
        ok(&Postgres, &ors.join(" OR "));
        refused(&Postgres, &format!("{}1", "- ".repeat(1000)));
    }
}
