//! Primary key discovery: the first rule that finds a key wins, and the plan records which
//! rule it was so an operator can tell why prdiff joined on those columns.

use std::collections::HashMap;

use serde::Serialize;

use crate::manifest::{Manifest, Node};

/// The rule that found a model's primary key, in the order the rules are tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeySource {
    /// Model meta names it: `meta: {primary_key: id}` (also `primary-key` or the configured tag).
    ModelMeta,
    /// Columns whose meta carries the tag: `meta: {primary-key: true}`.
    ColumnMeta,
    /// Columns tagged with the tag: `tags: [primary-key]`.
    ColumnTags,
    /// A `unique` test on a column or on an expression of columns (`a || '-' || b`, `concat(a, b)`).
    UniqueTest,
    /// `dbt_utils.unique_combination_of_columns`.
    UniqueCombinationTest,
    /// The incremental `unique_key` config.
    UniqueKeyConfig,
    /// A `primary_key` constraint (model or column level).
    PrimaryKeyConstraint,
}

/// How to declare a key, for models where no rule found one.
pub const NO_KEY_HINT: &str = "no primary key found: add `meta: {primary-key: true}` to the key column(s) \
(or the configured primary key tag), a `unique` test, or `config: {meta: {primary_key: <column>}}` on the model; \
until then only schema, row counts and column profiles are compared";

/// Generic tests by the model they test, built once per plan.
pub(crate) struct TestIndex<'a> {
    by_model: HashMap<&'a str, Vec<&'a Node>>,
}

impl<'a> TestIndex<'a> {
    pub(crate) fn new(manifest: &'a Manifest) -> Self {
        let mut by_model: HashMap<&str, Vec<&Node>> = HashMap::new();
        for node in manifest.nodes.values() {
            if node.resource_type != "test" || !node.config.enabled || node.test_metadata.is_none()
            {
                continue;
            }
            let target = node
                .attached_node
                .as_deref()
                .or(match node.depends_on_nodes.as_slice() {
                    [only] => Some(only.as_str()),
                    _ => None,
                });
            if let Some(target) = target {
                by_model.entry(target).or_default().push(node);
            }
        }
        for tests in by_model.values_mut() {
            tests.sort_by(|a, b| a.unique_id.cmp(&b.unique_id));
        }
        TestIndex { by_model }
    }
}

/// Finds `node`'s primary key; `tag` is the configured primary key tag (`primary-key` by default).
pub(crate) fn discover(
    node: &Node,
    tests: &TestIndex<'_>,
    tag: &str,
) -> Option<(Vec<String>, KeySource)> {
    from_model_meta(node, tag)
        .map(|k| (k, KeySource::ModelMeta))
        .or_else(|| {
            let cols: Vec<String> = node
                .columns
                .iter()
                .filter(|c| c.meta.get(tag).is_some_and(crate::manifest::truthy_value))
                .map(|c| c.name.clone())
                .collect();
            (!cols.is_empty()).then_some((cols, KeySource::ColumnMeta))
        })
        .or_else(|| {
            let cols: Vec<String> = node
                .columns
                .iter()
                .filter(|c| c.tags.iter().any(|t| t == tag))
                .map(|c| c.name.clone())
                .collect();
            (!cols.is_empty()).then_some((cols, KeySource::ColumnTags))
        })
        .or_else(|| from_tests(node, tests))
        .or_else(|| {
            let cols: Vec<String> = node
                .config
                .unique_key
                .iter()
                .flat_map(|k| key_expression_columns(k))
                .collect();
            (!cols.is_empty()).then_some((cols, KeySource::UniqueKeyConfig))
        })
        .or_else(|| from_constraints(node).map(|k| (k, KeySource::PrimaryKeyConstraint)))
}

fn from_model_meta(node: &Node, tag: &str) -> Option<Vec<String>> {
    let names = ["primary_key", "primary-key", tag];
    for meta in [&node.config.meta, &node.meta] {
        for name in names {
            let cols: Vec<String> = match meta.get(name) {
                Some(serde_json::Value::String(s)) => {
                    s.split(',').map(|c| c.trim().to_owned()).collect()
                }
                Some(serde_json::Value::Array(items)) => items
                    .iter()
                    .filter_map(|v| v.as_str().map(|s| s.trim().to_owned()))
                    .collect(),
                _ => continue,
            };
            let cols: Vec<String> = cols.into_iter().filter(|c| !c.is_empty()).collect();
            if !cols.is_empty() {
                return Some(cols);
            }
        }
    }
    None
}

/// Single-column `unique` tests beat expressions and combinations; among equals the test
/// with the smallest unique id wins so the answer never depends on map order.
fn from_tests(node: &Node, tests: &TestIndex<'_>) -> Option<(Vec<String>, KeySource)> {
    let mut candidates: Vec<(Vec<String>, KeySource)> = Vec::new();
    for test in tests
        .by_model
        .get(node.unique_id.as_str())
        .into_iter()
        .flatten()
    {
        let Some(meta) = &test.test_metadata else {
            continue;
        };
        match meta.name.as_str() {
            "unique" => {
                let expr = meta
                    .kwargs
                    .get("column_name")
                    .and_then(|v| v.as_str())
                    .or(test.column_name.as_deref());
                if let Some(expr) = expr {
                    let cols = key_expression_columns(expr);
                    if !cols.is_empty() {
                        candidates.push((cols, KeySource::UniqueTest));
                    }
                }
            }
            "unique_combination_of_columns" => {
                let cols: Vec<String> = meta
                    .kwargs
                    .get("combination_of_columns")
                    .and_then(|v| v.as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str())
                            .flat_map(key_expression_columns)
                            .collect()
                    })
                    .unwrap_or_default();
                if !cols.is_empty() {
                    candidates.push((cols, KeySource::UniqueCombinationTest));
                }
            }
            _ => {}
        }
    }
    candidates
        .into_iter()
        .enumerate()
        .min_by_key(|(i, (cols, _))| (cols.len(), *i))
        .map(|(_, c)| c)
}

fn from_constraints(node: &Node) -> Option<Vec<String>> {
    if let Some(c) = node
        .constraints
        .iter()
        .find(|c| c.kind == "primary_key" && !c.columns.is_empty())
    {
        return Some(c.columns.clone());
    }
    let cols: Vec<String> = node
        .columns
        .iter()
        .filter(|c| c.constraints.iter().any(|k| k.kind == "primary_key"))
        .map(|c| c.name.clone())
        .collect();
    (!cols.is_empty()).then_some(cols)
}

/// SQL words that appear in key expressions but are not columns.
const NOT_COLUMNS: &[&str] = &[
    "as",
    "cast",
    "varchar",
    "text",
    "string",
    "char",
    "int",
    "integer",
    "bigint",
    "date",
    "timestamp",
    "null",
    "and",
    "or",
    "not",
    "is",
    "coalesce",
    "concat",
    "concat_ws",
    "md5",
    "lower",
    "upper",
    "trim",
];

/// The columns of a key expression: `id` → [id]; `a || '-' || b`, `concat(a, '-', b)`,
/// `cast(a as varchar) || b` → [a, b]. Quoted identifiers keep their case and spaces;
/// string literals, function names and type names are dropped.
pub(crate) fn key_expression_columns(expr: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    let mut after_as = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            i += 1;
            while i < chars.len() {
                if chars[i] == '\'' {
                    if chars.get(i + 1) == Some(&'\'') {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            i += 1;
        } else if c == '"' || c == '`' || c == '[' {
            let close = if c == '[' { ']' } else { c };
            let start = i + 1;
            i += 1;
            while i < chars.len() && chars[i] != close {
                i += 1;
            }
            let ident: String = chars[start..i.min(chars.len())].iter().collect();
            i += 1;
            if !after_as && !ident.is_empty() && !out.contains(&ident) {
                out.push(ident);
            }
            after_as = false;
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            let is_call = chars.get(j) == Some(&'(');
            let is_qualifier = chars.get(j) == Some(&'.');
            let lower = word.to_ascii_lowercase();
            if lower == "as" {
                after_as = true;
                continue;
            }
            if !is_call
                && !is_qualifier
                && !after_as
                && !NOT_COLUMNS.contains(&lower.as_str())
                && !out.contains(&word)
            {
                out.push(word);
            }
            after_as = false;
        } else {
            if !c.is_whitespace() && c != '(' {
                after_as = false;
            }
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::key_expression_columns as cols;

    #[test]
    fn a_plain_column_is_its_own_key() {
        assert_eq!(cols("customer_id"), ["customer_id"]);
    }

    #[test]
    fn concatenations_of_columns_become_composite_keys() {
        assert_eq!(
            cols("order_date || '-' || amount"),
            ["order_date", "amount"]
        );
        assert_eq!(cols("concat(a, '|', b)"), ["a", "b"]);
        assert_eq!(
            cols("concat_ws('-', cast(a as varchar), \"B c\")"),
            ["a", "B c"]
        );
    }

    #[test]
    fn string_literals_with_quotes_are_not_columns() {
        assert_eq!(cols("a || 'it''s' || b"), ["a", "b"]);
    }
}
