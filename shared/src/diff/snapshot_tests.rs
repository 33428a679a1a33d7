//! Every generated query, for every dialect: snapshot-tested (insta) and parsed back with
//! sqlparser so a dialect edit that breaks SQL fails here, before any warehouse sees it.

use sqlparser::ast::{Expr, SelectItem, SetExpr, Statement};
use sqlparser::dialect as sp;
use sqlparser::parser::Parser;

use super::DiffRequest;
use super::query::{AggQuery, ComparePlan, JoinKind, SampleBucket, Side};
use super::resolve::resolve_request;
use crate::sql::{Dialect, Relation, all_dialects};

fn parser_dialect(name: &str) -> Box<dyn sp::Dialect> {
    match name {
        "postgres" => Box::new(sp::PostgreSqlDialect {}),
        "redshift" => Box::new(sp::RedshiftSqlDialect {}),
        "sqlite" => Box::new(sp::SQLiteDialect {}),
        "duckdb" => Box::new(sp::DuckDbDialect {}),
        "snowflake" => Box::new(sp::SnowflakeDialect {}),
        "bigquery" => Box::new(sp::BigQueryDialect {}),
        // sqlparser's Databricks dialect reads no backslash escapes inside '…', which
        // Databricks SQL does (and `Dialect::string_literal` writes); MySQL's lexes
        // strings and backticks as Databricks does.
        "databricks" => Box::new(sp::MySqlDialect {}),
        other => panic!("no sqlparser dialect for {other}"),
    }
}

/// A plan that exercises every fragment: a composite key with a type change, hostile
/// identifiers, every normalisation, a filter.
fn plan_for(d: &dyn Dialect) -> ComparePlan {
    let t = |s: &str| d.parse_type(s);
    let prod = vec![
        ("order id".to_owned(), t("integer")),
        ("Region".to_owned(), t("varchar(20)")),
        ("select".to_owned(), t("numeric(12,4)")),
        ("amount \"usd\"".to_owned(), t("double precision")),
        ("ts".to_owned(), t("timestamp(6) without time zone")),
        ("is_active".to_owned(), t("boolean")),
        ("note".to_owned(), t("text")),
        ("dropped".to_owned(), t("integer")),
    ];
    let pr = vec![
        ("order id".to_owned(), t("bigint")),
        ("Region".to_owned(), t("text")),
        ("select".to_owned(), t("numeric(12,2)")),
        ("amount \"usd\"".to_owned(), t("numeric(10,2)")),
        ("ts".to_owned(), t("timestamp(3) without time zone")),
        ("is_active".to_owned(), t("boolean")),
        ("note".to_owned(), t("integer")),
        ("added".to_owned(), t("date")),
    ];
    let req = DiffRequest::new(
        Relation::new(Some("analytics"), Some("prod"), "Orders"),
        Relation::new(Some("analytics"), Some("dbt_cloud_pr_12_34"), "Orders"),
        vec!["order id".to_owned(), "Region".to_owned()],
    );
    let filter = crate::sql::filter::parse_filter(d, "is_active = TRUE").expect("a safe filter");
    resolve_request(d, &req, Some(&filter), &prod, &pr)
        .expect("resolves")
        .plan
}

/// A plan with tolerant columns: a float with an absolute bound, exact numerics of
/// different scales with both bounds, and a text column whose tolerance is refused.
fn tolerance_resolved(d: &dyn Dialect) -> super::resolve::Resolved {
    let t = |s: &str| d.parse_type(s);
    let prod = vec![
        ("id".to_owned(), t("integer")),
        ("amount".to_owned(), t("double precision")),
        ("price".to_owned(), t("numeric(12,4)")),
        ("label".to_owned(), t("text")),
    ];
    let mut pr = prod.clone();
    pr[2].1 = t("numeric(12,2)");
    let mut req = DiffRequest::new(
        Relation::new(None, Some("prod"), "t"),
        Relation::new(None, Some("pr"), "t"),
        vec!["id".to_owned()],
    );
    let tol = |a, r| super::Tolerance::new(a, r).expect("valid bounds");
    req.tolerance = vec![
        ("AMOUNT".to_owned(), tol(Some(0.01), None)),
        ("price".to_owned(), tol(Some(0.005), Some(1e-4))),
        ("label".to_owned(), tol(Some(1.0), None)),
        ("missing".to_owned(), tol(Some(1.0), None)),
    ];
    resolve_request(d, &req, None, &prod, &pr).expect("resolves")
}

/// A plan with rename candidates: an integer renamed to a decimal (normalised) and a
/// hostile text name renamed.
fn renames_plan(d: &dyn Dialect) -> ComparePlan {
    let t = |s: &str| d.parse_type(s);
    let prod = vec![
        ("id".to_owned(), t("integer")),
        ("old_amount".to_owned(), t("integer")),
        ("Old \"Note\"".to_owned(), t("text")),
        ("v".to_owned(), t("integer")),
        ("w".to_owned(), t("text")),
    ];
    let pr = vec![
        ("id".to_owned(), t("integer")),
        ("new_amount".to_owned(), t("numeric(12,2)")),
        ("new note".to_owned(), t("varchar(10)")),
        ("v".to_owned(), t("integer")),
        ("w".to_owned(), t("text")),
    ];
    let req = DiffRequest::new(
        Relation::new(None, Some("prod"), "t"),
        Relation::new(None, Some("pr"), "t"),
        vec!["id".to_owned()],
    );
    let plan = resolve_request(d, &req, None, &prod, &pr)
        .expect("resolves")
        .plan;
    assert_eq!(plan.renames.len(), 2, "{}", d.name());
    plan
}

fn queries(d: &dyn Dialect) -> Vec<(&'static str, String)> {
    let mut all = fixed_queries(d);
    let renames = renames_plan(d);
    all.push(("join_renames", renames.join_query(d, JoinKind::Plain, None)));
    all.push((
        "join_renames_windowed",
        renames.join_query(d, JoinKind::Windowed, None),
    ));
    all.push((
        "renamed_only",
        renames.renamed_only_query(d, JoinKind::Plain, None, &[0, 1]),
    ));
    all.push((
        "renamed_only_sampled_windowed",
        renames.renamed_only_query(
            d,
            JoinKind::Windowed,
            Some(SampleBucket {
                seed: 7,
                threshold: 42_949_673,
            }),
            &[0, 1],
        ),
    ));
    let tol = tolerance_resolved(d).plan;
    all.push(("join_tolerance", tol.join_query(d, JoinKind::Plain, None)));
    all.push((
        "join_tolerance_windowed",
        tol.join_query(d, JoinKind::Windowed, None),
    ));
    let plan = plan_for(d);
    let dims: Vec<usize> = (0..plan.columns.len().min(2)).collect();
    let bucket = Some(SampleBucket {
        seed: 7,
        threshold: 42_949_673,
    });
    all.push((
        "concentration",
        plan.concentration_query(d, JoinKind::Plain, None, &dims, 3),
    ));
    all.push((
        "concentration_sampled",
        plan.concentration_query(d, JoinKind::Plain, bucket, &dims, 3),
    ));
    all.push((
        "concentration_windowed",
        plan.concentration_query(d, JoinKind::Windowed, None, &dims[..1], 3),
    ));
    if let Some(q) = d.row_estimate_query(&Relation::new(Some("analytics"), Some("prod"), "Orders"))
    {
        all.push(("row_estimate", q));
    }
    all
}

fn fixed_queries(d: &dyn Dialect) -> Vec<(&'static str, String)> {
    let plan = plan_for(d);
    let mut single = plan.clone();
    single.key.truncate(1);
    single.integer_key = true;
    single.whole_number_key = true;
    let bucket = Some(SampleBucket {
        seed: 7,
        threshold: 42_949_673,
    });
    vec![
        (
            "columns",
            d.columns_query(&Relation::new(Some("analytics"), Some("prod"), "Orders")),
        ),
        (
            "columns_no_schema",
            d.columns_query(&Relation::new(None, None, "Orders")),
        ),
        ("count", plan.count_query(d, Side::Prod)),
        ("profile", plan.profile_query(d, Side::Pr)),
        ("join", plan.join_query(d, JoinKind::Plain, None)),
        (
            "join_windowed",
            plan.join_query(d, JoinKind::Windowed, None),
        ),
        ("join_sampled", plan.join_query(d, JoinKind::Carry, bucket)),
        (
            "join_sampled_windowed",
            plan.join_query(d, JoinKind::Windowed, bucket),
        ),
        (
            "join_sampled_integer_key",
            single.join_query(d, JoinKind::Carry, bucket),
        ),
        (
            "rows_by_key",
            plan.rows_by_key_query(
                d,
                Side::Prod,
                &["1\u{1f}EU".to_owned(), "2\u{1f}it's".to_owned()],
                10,
            ),
        ),
        (
            "rows_by_integer_key",
            single.rows_by_key_query(d, Side::Pr, &["1".to_owned(), "2".to_owned()], 4),
        ),
    ]
}

#[test]
fn every_query_of_every_dialect_matches_its_snapshot() {
    for d in all_dialects() {
        for (name, sql) in queries(d) {
            insta::assert_snapshot!(format!("{}__{}", d.name(), name), sql);
        }
    }
}

#[test]
fn every_query_of_every_dialect_parses_back_as_one_statement() {
    for d in all_dialects() {
        let pd = parser_dialect(d.name());
        for (name, sql) in queries(d) {
            let parsed = Parser::parse_sql(pd.as_ref(), &sql)
                .unwrap_or_else(|e| panic!("{} {name} does not parse: {e}\n{sql}", d.name()));
            assert_eq!(parsed.len(), 1, "{} {name}: one statement", d.name());
        }
        for stmt in d.statement_setup(5_000) {
            Parser::parse_sql(pd.as_ref(), &stmt)
                .unwrap_or_else(|e| panic!("{} setup `{stmt}`: {e}", d.name()));
        }
    }
}

/// The aliases of the outermost select list of `sql`, in order.
fn select_aliases(pd: &dyn sp::Dialect, sql: &str) -> Vec<String> {
    let parsed = Parser::parse_sql(pd, sql).unwrap_or_else(|e| panic!("{e}\n{sql}"));
    let Statement::Query(q) = &parsed[0] else {
        panic!("not a query: {sql}")
    };
    let SetExpr::Select(s) = q.body.as_ref() else {
        panic!("not a select: {sql}")
    };
    s.projection
        .iter()
        .map(|item| match item {
            SelectItem::ExprWithAlias { alias, .. } => alias.value.clone(),
            other => panic!("an aggregate without an alias: {other}"),
        })
        .collect()
}

#[test]
fn the_aggregates_a_query_names_are_its_select_list_in_order() {
    for d in all_dialects() {
        let pd = parser_dialect(d.name());
        let plan = plan_for(d);
        let bucket = Some(SampleBucket {
            seed: 7,
            threshold: 42_949_673,
        });
        let mut plans = vec![plan.clone(), renames_plan(d)];
        plans.extend(plan.column_groups(Some(1)).expect("one column per group"));
        plans.extend(
            renames_plan(d)
                .column_groups(Some(1))
                .expect("one column per group"),
        );
        let mut named: Vec<(String, AggQuery)> = vec![
            ("count".into(), plan.count_query_named(d, Side::Prod)),
            ("profile".into(), plan.profile_query_named(d, Side::Pr)),
        ];
        for (g, p) in plans.iter().enumerate() {
            for (kind, b) in [
                (JoinKind::Plain, None),
                (JoinKind::Windowed, None),
                (JoinKind::Carry, bucket),
                (JoinKind::Windowed, bucket),
            ] {
                named.push((
                    format!("join {kind:?} group {g}"),
                    p.join_query_named(d, kind, b),
                ));
            }
        }
        for (name, q) in named {
            let expected: Vec<String> = q.aggs.iter().map(|a| a.alias()).collect();
            assert_eq!(
                select_aliases(pd.as_ref(), &q.sql),
                expected,
                "{} {name}",
                d.name()
            );
            let mut distinct = expected.clone();
            distinct.sort();
            distinct.dedup();
            assert_eq!(distinct.len(), expected.len(), "{} {name}", d.name());
        }
    }
}

#[test]
fn identifiers_are_quoted_so_hostile_names_survive() {
    for d in all_dialects() {
        let pd = parser_dialect(d.name());
        for ident in [
            "select",
            "Mixed Case",
            "with space",
            "a\"quote",
            "back`tick",
            "dot.ted",
        ] {
            if d.name() == "bigquery" && ident.contains('`') {
                // GoogleSQL escapes a backtick in a quoted identifier with a backslash;
                // sqlparser's tokenizer does not read that escape, so check the text.
                assert_eq!(d.quote_identifier(ident), "`back\\`tick`");
                continue;
            }
            let sql = format!(
                "SELECT {} FROM {}",
                d.quote_identifier(ident),
                d.relation(&Relation::new(None, Some("my schema"), ident))
            );
            let parsed = Parser::parse_sql(pd.as_ref(), &sql)
                .unwrap_or_else(|e| panic!("{} `{ident}`: {e}\n{sql}", d.name()));
            // The parser reads the quoted name back as exactly the original identifier.
            let Statement::Query(q) = &parsed[0] else {
                panic!("not a query")
            };
            let SetExpr::Select(s) = q.body.as_ref() else {
                panic!("not a select")
            };
            let SelectItem::UnnamedExpr(Expr::Identifier(id)) = &s.projection[0] else {
                panic!("not an identifier: {sql}")
            };
            assert_eq!(id.value, ident, "{}: {sql}", d.name());
        }
    }
}

#[test]
fn a_whole_number_key_is_looked_up_by_number_and_any_other_by_text() {
    let d = crate::sql::dialect_by_name("snowflake").expect("snowflake dialect");
    let req = DiffRequest::new(
        Relation::new(None, Some("PROD"), "T"),
        Relation::new(None, Some("PR"), "T"),
        vec!["id".to_owned()],
    );
    let keys = ["1".to_owned(), "20".to_owned()];
    let lookup = |key_type: &str| {
        let cols = vec![
            ("ID".to_owned(), d.parse_type(key_type)),
            ("V".to_owned(), d.parse_type("TEXT")),
        ];
        let plan = resolve_request(d, &req, None, &cols, &cols)
            .expect("resolves")
            .plan;
        // Sampling's integer hash is for integer types only: NUMBER(38,0) can exceed it.
        assert!(!plan.integer_key || key_type == "INTEGER", "{key_type}");
        plan.rows_by_key_query(d, Side::Pr, &keys, 4)
    };
    // Snowflake's integers are NUMBER(38,0).
    for by_number in ["NUMBER(38,0)", "INTEGER"] {
        let sql = lookup(by_number);
        assert!(sql.contains("WHERE s.k0 IN (1, 20)"), "{by_number}: {sql}");
    }
    for by_text in ["NUMBER(12,2)", "NUMBER", "TEXT"] {
        let sql = lookup(by_text);
        assert!(sql.contains("IN ('1', '20')"), "{by_text}: {sql}");
    }
    // A key text that is not a 64-bit integer falls back to text.
    let cols = vec![("ID".to_owned(), d.parse_type("NUMBER(38,0)"))];
    let plan = resolve_request(d, &req, None, &cols, &cols)
        .expect("resolves")
        .plan;
    let big = ["99999999999999999999".to_owned()];
    let sql = plan.rows_by_key_query(d, Side::Pr, &big, 2);
    assert!(sql.contains("IN ('99999999999999999999')"), "{sql}");
}

#[test]
fn tolerance_applies_to_compared_numeric_columns_and_notes_the_rest() {
    for d in all_dialects() {
        let r = tolerance_resolved(d);
        let tol: Vec<(&str, bool)> = r
            .plan
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.tolerance.is_some()))
            .collect();
        assert_eq!(
            tol,
            [("amount", true), ("price", true), ("label", false)],
            "{}",
            d.name()
        );
        assert_eq!(
            r.columns[0].tolerance.map(|t| t.label()).as_deref(),
            Some("±0.01")
        );
        let notes = r.notes.join("\n");
        assert!(
            notes.contains("tolerance for `label` ignored: the column is not numeric"),
            "{notes}"
        );
        assert!(
            notes.contains("tolerance for `missing` ignored: no such column"),
            "{notes}"
        );
        // The bound enters the SQL only as the dialect's rendering of the parsed number.
        let sql = r.plan.join_query(d, JoinKind::Plain, None);
        assert!(sql.contains("<= 1E-2"), "{}: {sql}", d.name());
        assert!(sql.contains("<= 1E-4 * ABS("), "{}: {sql}", d.name());
    }
}
