//! Per-model diff options in Datafold's dbt form, `meta: {datafold: {datadiff: {...}}}`,
//! and the global list of columns to ignore.

use std::path::Path;

use serde::Serialize;

use crate::manifest::Node;

/// Keys of `meta.datafold.datadiff` prdiff understands; others are reported, not fatal.
pub const KNOWN_KEYS: [&str; 8] = [
    "filter",
    "include_columns",
    "exclude_columns",
    "never_diff",
    "time_column",
    "slim_diff",
    "gates",
    "dimensions",
];

/// One model's diff options.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ModelOptions {
    /// A SQL predicate applied to both sides before comparing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// When not empty, only these columns (and the key) are compared.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub include_columns: Vec<String>,
    /// Columns never compared (the key is compared regardless).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exclude_columns: Vec<String>,
    /// The model is listed but never diffed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub never_diff: bool,
    /// The column time-based sampling and filters use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_column: Option<String>,
    /// Slim CI behaviour for this model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slim_diff: Option<SlimDiff>,
    /// Documented columns the global ignore list removes from the comparison (never key columns).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignored_columns: Vec<String>,
    /// The model's merge gates (`meta.prdiff.gates`, or `meta.datafold.datadiff.gates`).
    #[serde(skip_serializing_if = "crate::gates::GatePolicy::is_empty")]
    pub gates: crate::gates::GatePolicy,
    /// Numeric columns compared with a tolerance (`meta.prdiff.tolerance`).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub tolerance: std::collections::BTreeMap<String, crate::diff::Tolerance>,
    /// Columns whose values among the changed rows the report shows
    /// (`meta.prdiff.dimensions`, or `meta.datafold.datadiff.dimensions`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dimensions: Vec<String>,
}

/// Datafold's `slim_diff` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SlimDiff {
    /// Diff this model in Slim CI whenever it is downstream of a modified model,
    /// even when "diff downstream" is off.
    DiffWhenDownstream,
}

/// Reads a node's options: config meta first (folder-level `+meta` lands there), then the
/// node's own meta on top, key by key. Problems become warnings naming the model and key.
pub(crate) fn read(node: &Node, warnings: &mut Vec<String>) -> ModelOptions {
    let mut merged = serde_json::Map::new();
    for meta in [&node.config.meta, &node.meta] {
        if let Some(dd) = meta
            .get("datafold")
            .and_then(|d| d.get("datadiff"))
            .and_then(|d| d.as_object())
        {
            for (k, v) in dd {
                merged.insert(k.clone(), v.clone());
            }
        }
    }
    let mut opts = ModelOptions::default();
    let mut unknown: Vec<&str> = Vec::new();
    let id = &node.unique_id;
    for (key, value) in &merged {
        match key.as_str() {
            "filter" => match value {
                serde_json::Value::String(s) if !s.trim().is_empty() => opts.filter = Some(s.clone()),
                serde_json::Value::Null => {}
                _ => warnings.push(format!("{id}: meta.datafold.datadiff.filter must be a SQL predicate string; ignored")),
            },
            "include_columns" => opts.include_columns = string_list(value, id, key, warnings),
            "exclude_columns" => opts.exclude_columns = string_list(value, id, key, warnings),
            "never_diff" => match value {
                serde_json::Value::Bool(b) => opts.never_diff = *b,
                _ => warnings.push(format!("{id}: meta.datafold.datadiff.never_diff must be true or false; ignored")),
            },
            "time_column" => match value {
                serde_json::Value::String(s) if !s.trim().is_empty() => opts.time_column = Some(s.clone()),
                _ => warnings.push(format!("{id}: meta.datafold.datadiff.time_column must be a column name; ignored")),
            },
            "slim_diff" => match value.as_str() {
                Some("diff_when_downstream") => opts.slim_diff = Some(SlimDiff::DiffWhenDownstream),
                _ => warnings.push(format!(
                    "{id}: meta.datafold.datadiff.slim_diff {value} is not understood (expected \"diff_when_downstream\"); ignored"
                )),
            },
            // Read with `meta.prdiff.gates` by `crate::gates::read`.
            "gates" => {}
            "dimensions" => opts.dimensions = string_list(value, id, key, warnings),
            other => unknown.push(other),
        }
    }
    if !unknown.is_empty() {
        warnings.push(format!(
            "{id}: unknown key(s) in meta.datafold.datadiff ignored: {} (known: {})",
            unknown.join(", "),
            KNOWN_KEYS.join(", ")
        ));
    }
    opts
}

/// Reads `meta.prdiff.tolerance` (config meta first, then the node's own meta on top,
/// column by column): `{column: {absolute: x, relative: y}}`. Each bound is parsed as a
/// number and checked; a bad entry becomes a warning naming the model and column and is
/// left out (the column is then compared exactly). Whether the column exists and is
/// numeric is only known from the catalog: the diff notes it there.
pub(crate) fn read_tolerance(
    node: &Node,
    warnings: &mut Vec<String>,
) -> std::collections::BTreeMap<String, crate::diff::Tolerance> {
    let mut merged = serde_json::Map::new();
    for meta in [&node.config.meta, &node.meta] {
        match meta.get("prdiff").and_then(|p| p.get("tolerance")) {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Object(cols)) => {
                for (k, v) in cols {
                    merged.insert(k.clone(), v.clone());
                }
            }
            Some(_) => warnings.push(format!(
                "{}: meta.prdiff.tolerance must map column names to {{absolute: …, relative: …}}; ignored",
                node.unique_id
            )),
        }
    }
    let mut out = std::collections::BTreeMap::new();
    for (column, value) in merged {
        if column.trim().is_empty() {
            continue;
        }
        match crate::diff::Tolerance::from_json(&value) {
            Ok(t) => {
                out.insert(column, t);
            }
            Err(e) => warnings.push(format!(
                "{}: meta.prdiff.tolerance.{column}: {e}; the column is compared exactly",
                node.unique_id
            )),
        }
    }
    out
}

/// Reads `meta.prdiff.dimensions` (config meta first, the node's own meta on top): the
/// columns whose values among the changed rows the report shows. `None` when neither
/// meta sets it.
pub(crate) fn read_dimensions(node: &Node, warnings: &mut Vec<String>) -> Option<Vec<String>> {
    let mut out = None;
    for meta in [&node.config.meta, &node.meta] {
        if let Some(v) = meta.get("prdiff").and_then(|p| p.get("dimensions")) {
            let mut w = Vec::new();
            let list = string_list(v, &node.unique_id, "dimensions", &mut w);
            // The shared helper names Datafold's block; this list is prdiff's own.
            warnings.extend(
                w.into_iter()
                    .map(|m| m.replace("meta.datafold.datadiff.", "meta.prdiff.")),
            );
            out = Some(list.into_iter().filter(|c| !c.trim().is_empty()).collect());
        }
    }
    out
}

fn string_list(
    value: &serde_json::Value,
    id: &str,
    key: &str,
    warnings: &mut Vec<String>,
) -> Vec<String> {
    match value {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(items) if items.iter().all(|v| v.is_string()) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        serde_json::Value::Null => Vec::new(),
        _ => {
            warnings.push(format!(
                "{id}: meta.datafold.datadiff.{key} must be a list of column names; ignored"
            ));
            Vec::new()
        }
    }
}

/// A refused ignore-columns pattern.
#[derive(Debug, thiserror::Error)]
#[error("invalid ignore-columns pattern on line {line}: `{pattern}`")]
pub struct IgnorePatternError {
    pub line: usize,
    pub pattern: String,
    #[source]
    pub source: ignore::Error,
}

/// Columns to ignore in every model, in .gitignore syntax (one pattern per line, `#`
/// comments, `!` negation, later lines override earlier ones), matched case-insensitively
/// because warehouses disagree on the case of column names. Key columns are never ignored.
#[derive(Debug, Clone, Default)]
pub struct IgnoreColumns {
    matcher: Option<ignore::gitignore::Gitignore>,
}

impl IgnoreColumns {
    pub fn parse(text: &str) -> Result<Self, IgnorePatternError> {
        let mut builder = ignore::gitignore::GitignoreBuilder::new("/");
        builder
            .case_insensitive(true)
            .map_err(|source| IgnorePatternError {
                line: 0,
                pattern: String::new(),
                source,
            })?;
        let mut any = false;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            builder
                .add_line(None, line)
                .map_err(|source| IgnorePatternError {
                    line: i + 1,
                    pattern: line.to_owned(),
                    source,
                })?;
            any = true;
        }
        if !any {
            return Ok(IgnoreColumns::default());
        }
        let matcher = builder.build().map_err(|source| IgnorePatternError {
            line: 0,
            pattern: text.to_owned(),
            source,
        })?;
        Ok(IgnoreColumns {
            matcher: Some(matcher),
        })
    }

    /// Whether the list ignores `column` (before the key exception).
    pub fn is_ignored(&self, column: &str) -> bool {
        match &self.matcher {
            None => false,
            Some(m) => m.matched(Path::new(column), false).is_ignore(),
        }
    }
}

/// Whether the diff compares `column` of a model with these options and key: key columns
/// always; otherwise the column must be in `include_columns` (when given), not in
/// `exclude_columns`, and not matched by the global ignore list. Names compare
/// case-insensitively.
pub fn column_is_compared(
    options: &ModelOptions,
    primary_key: &[String],
    ignore: &IgnoreColumns,
    column: &str,
) -> bool {
    let eq = |a: &String| a.eq_ignore_ascii_case(column);
    if primary_key.iter().any(eq) {
        return true;
    }
    if !options.include_columns.is_empty() && !options.include_columns.iter().any(eq) {
        return false;
    }
    if options.exclude_columns.iter().any(eq) {
        return false;
    }
    !ignore.is_ignored(column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignore_list_uses_gitignore_globs_negation_and_last_match_wins() {
        let ig =
            IgnoreColumns::parse("# audit columns\n_loaded_at\n*_etl_*\n!keep_etl_x\n").unwrap();
        assert!(ig.is_ignored("_loaded_at"));
        assert!(ig.is_ignored("_LOADED_AT"));
        assert!(ig.is_ignored("a_etl_b"));
        assert!(!ig.is_ignored("keep_etl_x"));
        assert!(!ig.is_ignored("amount"));
    }

    #[test]
    fn key_columns_are_compared_even_when_ignored_or_excluded() {
        let ig = IgnoreColumns::parse("*id\n").unwrap();
        let opts = ModelOptions {
            exclude_columns: vec!["ID".into()],
            ..Default::default()
        };
        let key = vec!["id".to_owned()];
        assert!(column_is_compared(&opts, &key, &ig, "id"));
        assert!(!column_is_compared(&opts, &key, &ig, "customer_id"));
        assert!(column_is_compared(&opts, &key, &ig, "amount"));
    }

    #[test]
    fn include_columns_narrow_the_comparison_to_the_listed_columns() {
        let opts = ModelOptions {
            include_columns: vec!["amount".into()],
            ..Default::default()
        };
        let ig = IgnoreColumns::default();
        assert!(column_is_compared(&opts, &[], &ig, "AMOUNT"));
        assert!(!column_is_compared(&opts, &[], &ig, "status"));
    }

    #[test]
    fn an_empty_ignore_list_ignores_nothing() {
        assert!(
            !IgnoreColumns::parse("\n# nothing\n")
                .unwrap()
                .is_ignored("x")
        );
    }
}
