//! Relations (tables and views) named the way operators and dbt write them.
//!
//! A [`Relation`] holds the *unquoted* parts of a name. Quoting happens in exactly one
//! place, [`crate::sql::Dialect::quote_identifier`], when SQL is generated.

use std::fmt;

/// A table or view: `name`, `schema.name` or `database.schema.name`.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Relation {
    pub database: Option<String>,
    pub schema: Option<String>,
    pub name: String,
}

/// Why a relation string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelationError {
    #[error("relation is empty")]
    Empty,
    #[error("relation `{0}` has an empty part")]
    EmptyPart(String),
    #[error(
        "relation `{0}` has more than three parts (expected table, schema.table or database.schema.table)"
    )]
    TooManyParts(String),
    #[error("relation `{0}` has an unterminated quoted part")]
    Unterminated(String),
}

impl Relation {
    pub fn new(database: Option<&str>, schema: Option<&str>, name: &str) -> Self {
        Relation {
            database: database.map(str::to_owned),
            schema: schema.map(str::to_owned),
            name: name.to_owned(),
        }
    }

    /// Parses `table`, `schema.table` or `database.schema.table`. Parts may be quoted with
    /// double quotes or backticks (as dbt's `relation_name` is), in which case dots inside
    /// them are kept and a doubled quote stands for one quote character.
    pub fn parse(input: &str) -> Result<Self, RelationError> {
        Self::parse_folding(input, &|s: &str| s.to_owned())
    }

    /// [`Relation::parse`] for a warehouse: parts written without quotes are resolved the
    /// way the warehouse resolves unquoted identifiers
    /// ([`Dialect::fold_unquoted`](super::Dialect::fold_unquoted); Snowflake: upper
    /// case), quoted parts are kept exactly. dbt renders `relation_name` unquoted on
    /// Snowflake (`analytics.dbt_pr_12.orders` names `ANALYTICS.DBT_PR_12.ORDERS`).
    pub fn parse_for(input: &str, dialect: &dyn super::Dialect) -> Result<Self, RelationError> {
        Self::parse_folding(input, &|s: &str| dialect.fold_unquoted(s))
    }

    /// The relation with every part folded as `dialect` folds unquoted identifiers, for
    /// relations assembled from unquoted names (dbt's `database`, `schema`, `alias`).
    pub fn folded_for(&self, dialect: &dyn super::Dialect) -> Self {
        Relation {
            database: self.database.as_deref().map(|d| dialect.fold_unquoted(d)),
            schema: self.schema.as_deref().map(|s| dialect.fold_unquoted(s)),
            name: dialect.fold_unquoted(&self.name),
        }
    }

    fn parse_folding(input: &str, fold: &dyn Fn(&str) -> String) -> Result<Self, RelationError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(RelationError::Empty);
        }
        let mut parts: Vec<String> = Vec::new();
        let mut current = String::new();
        let mut chars = input.chars().peekable();
        let mut quoted_part = false;
        while let Some(c) = chars.next() {
            match c {
                '"' | '`' if current.is_empty() && !quoted_part => {
                    let quote = c;
                    let mut closed = false;
                    while let Some(d) = chars.next() {
                        if d == quote {
                            if chars.peek() == Some(&quote) {
                                chars.next();
                                current.push(quote);
                            } else {
                                closed = true;
                                break;
                            }
                        } else {
                            current.push(d);
                        }
                    }
                    if !closed {
                        return Err(RelationError::Unterminated(input.to_owned()));
                    }
                    quoted_part = true;
                }
                '.' => {
                    if current.is_empty() && !quoted_part {
                        return Err(RelationError::EmptyPart(input.to_owned()));
                    }
                    let part = std::mem::take(&mut current);
                    parts.push(if quoted_part { part } else { fold(&part) });
                    quoted_part = false;
                }
                _ => current.push(c),
            }
        }
        if current.is_empty() && !quoted_part {
            return Err(RelationError::EmptyPart(input.to_owned()));
        }
        parts.push(if quoted_part { current } else { fold(&current) });
        let mut it = parts.into_iter();
        match (it.next(), it.next(), it.next(), it.next()) {
            (Some(n), None, None, None) => Ok(Relation {
                database: None,
                schema: None,
                name: n,
            }),
            (Some(s), Some(n), None, None) => Ok(Relation {
                database: None,
                schema: Some(s),
                name: n,
            }),
            (Some(d), Some(s), Some(n), None) => Ok(Relation {
                database: Some(d),
                schema: Some(s),
                name: n,
            }),
            _ => Err(RelationError::TooManyParts(input.to_owned())),
        }
    }

    /// The parts that are present, outermost first.
    pub fn parts(&self) -> impl Iterator<Item = &str> {
        self.database
            .as_deref()
            .into_iter()
            .chain(self.schema.as_deref())
            .chain(std::iter::once(self.name.as_str()))
    }
}

impl fmt::Display for Relation {
    /// Unquoted, dot-joined: for messages and reports, never for SQL.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<&str> = self.parts().collect();
        f.write_str(&parts.join("."))
    }
}

impl std::str::FromStr for Relation {
    type Err = RelationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Relation::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_one_two_and_three_parts() {
        assert_eq!(
            Relation::parse("t").unwrap(),
            Relation::new(None, None, "t")
        );
        assert_eq!(
            Relation::parse("s.t").unwrap(),
            Relation::new(None, Some("s"), "t")
        );
        assert_eq!(
            Relation::parse("d.s.t").unwrap(),
            Relation::new(Some("d"), Some("s"), "t")
        );
    }

    #[test]
    fn quoted_parts_keep_dots_spaces_and_doubled_quotes() {
        let r = Relation::parse(r#""my db"."Sch.ema"."a ""q"" t""#).unwrap();
        assert_eq!(
            r,
            Relation::new(Some("my db"), Some("Sch.ema"), "a \"q\" t")
        );
        let r = Relation::parse("`proj`.`ds`.`tbl`").unwrap();
        assert_eq!(r, Relation::new(Some("proj"), Some("ds"), "tbl"));
    }

    #[test]
    fn bad_relations_are_refused_with_the_reason() {
        assert_eq!(Relation::parse(" "), Err(RelationError::Empty));
        assert!(matches!(
            Relation::parse("a..b"),
            Err(RelationError::EmptyPart(_))
        ));
        assert!(matches!(
            Relation::parse("a.b.c.d"),
            Err(RelationError::TooManyParts(_))
        ));
        assert!(matches!(
            Relation::parse("\"abc"),
            Err(RelationError::Unterminated(_))
        ));
    }

    #[test]
    fn snowflake_folds_unquoted_parts_to_upper_case_and_keeps_quoted_ones() {
        let sf = &crate::sql::Snowflake;
        assert_eq!(
            Relation::parse_for("analytics.dbt_pr_12.orders", sf).unwrap(),
            Relation::new(Some("ANALYTICS"), Some("DBT_PR_12"), "ORDERS")
        );
        assert_eq!(
            Relation::parse_for(r#"ANALYTICS."dbt_PR"."Mixed Case""#, sf).unwrap(),
            Relation::new(Some("ANALYTICS"), Some("dbt_PR"), "Mixed Case")
        );
        // Other warehouses keep what was written.
        assert_eq!(
            Relation::parse_for("Analytics.Orders", &crate::sql::Postgres).unwrap(),
            Relation::new(None, Some("Analytics"), "Orders")
        );
        assert_eq!(
            Relation::new(Some("db"), Some("s"), "t").folded_for(sf),
            Relation::new(Some("DB"), Some("S"), "T")
        );
    }

    #[test]
    fn display_is_dot_joined() {
        assert_eq!(Relation::parse("d.s.t").unwrap().to_string(), "d.s.t");
    }
}
