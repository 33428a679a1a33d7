//! Merge gates: a model's merge policy, written next to the model in its dbt yaml
//! (`meta.prdiff.gates`, also read under `meta.datafold.datadiff.gates`), and its
//! evaluation against the model's diff.
//!
//! ```yaml
//! models:
//!   - name: orders
//!     meta:
//!       prdiff:
//!         gates:
//!           - changed_pct: {column: amount, max: 5}
//!           - rows_removed: {max: 0}
//!           - rows_added: {max_pct: 10}
//!           - no_key_issues: true
//!           - contract_types_unchanged: true
//! ```
//!
//! The yaml comes from the pull request: it is parsed into [`Gate`]s at plan time (a gate
//! that does not parse is left out with a warning naming the model and the gate) and never
//! reaches SQL. Every gate is evaluated from the [`DiffResult`] the diff already computed.

use serde::{Deserialize, Serialize};

use crate::diff::DiffResult;
use crate::manifest::Node;

/// The gate names prdiff understands.
pub const GATE_NAMES: [&str; 5] = [
    "changed_pct",
    "rows_removed",
    "rows_added",
    "no_key_issues",
    "contract_types_unchanged",
];

/// Bounds on a count of rows: an absolute number, a percentage of production's rows, or
/// both (both must hold).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowLimit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pct: Option<f64>,
}

/// One gate of a model's merge policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gate {
    /// At most `max` % of matched rows have a different value in `column`.
    ChangedPct { column: String, max: f64 },
    /// Rows only in production (removed by the PR).
    RowsRemoved(RowLimit),
    /// Rows only in the PR (added by it).
    RowsAdded(RowLimit),
    /// No NULL or duplicate key values on either side.
    NoKeyIssues,
    /// None of these contracted columns (dbt `contract: {enforced: true}` with a
    /// `data_type`) changes type or disappears.
    ContractTypesUnchanged { columns: Vec<String> },
}

/// A model's gates, and the problems met reading them (each names the model and gate).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GatePolicy {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<Gate>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

impl GatePolicy {
    pub fn is_empty(&self) -> bool {
        self.gates.is_empty() && self.problems.is_empty()
    }
}

/// One gate's verdict on a diff.
#[derive(Debug, Clone, PartialEq)]
pub struct GateOutcome {
    pub passed: bool,
    /// The gate's name ([`GATE_NAMES`]).
    pub gate: &'static str,
    /// What was measured against what, for people ("amount changed on 7.2 % of matched
    /// rows > 5 %"). Plain text with raw column names: escape before rendering.
    pub text: String,
}

impl Gate {
    pub fn name(&self) -> &'static str {
        match self {
            Gate::ChangedPct { .. } => "changed_pct",
            Gate::RowsRemoved(_) => "rows_removed",
            Gate::RowsAdded(_) => "rows_added",
            Gate::NoKeyIssues => "no_key_issues",
            Gate::ContractTypesUnchanged { .. } => "contract_types_unchanged",
        }
    }
}

/// Reads a node's gates: `meta.prdiff.gates` when present, else
/// `meta.datafold.datadiff.gates`, from the node's config meta and its own meta (its own
/// wins). `contract_types_unchanged` checks the columns of the PR node's enforced contract
/// and of production's (`prod`), so a contracted column the PR drops is still checked.
pub(crate) fn read(node: &Node, prod: Option<&Node>, warnings: &mut Vec<String>) -> GatePolicy {
    let id = &node.unique_id;
    let mut found: Option<(&'static str, &serde_json::Value)> = None;
    for meta in [&node.config.meta, &node.meta] {
        if let Some(g) = meta
            .get("datafold")
            .and_then(|d| d.get("datadiff"))
            .and_then(|d| d.get("gates"))
            && !matches!(found, Some(("meta.prdiff.gates", _)))
        {
            found = Some(("meta.datafold.datadiff.gates", g));
        }
        if let Some(p) = meta.get("prdiff") {
            match p.as_object() {
                Some(obj) => {
                    // `tolerance` is read with the other diff options (`plan::options`).
                    for k in obj
                        .keys()
                        .filter(|k| !matches!(k.as_str(), "gates" | "tolerance"))
                    {
                        warnings.push(format!(
                            "{id}: unknown key in meta.prdiff ignored: {k} (known: gates, tolerance)"
                        ));
                    }
                    if let Some(g) = obj.get("gates") {
                        found = Some(("meta.prdiff.gates", g));
                    }
                }
                None => warnings.push(format!(
                    "{id}: meta.prdiff must be a mapping (gates: [...]); ignored"
                )),
            }
        }
    }
    let mut policy = GatePolicy::default();
    let Some((path, value)) = found else {
        return policy;
    };
    let items: &[serde_json::Value] = match value {
        serde_json::Value::Array(a) => a,
        serde_json::Value::Null => &[],
        _ => {
            policy.problems.push(format!(
                "{path} must be a list of gates (e.g. `- rows_removed: {{max: 0}}`); ignored"
            ));
            warnings.extend(policy.problems.iter().map(|p| format!("{id}: {p}")));
            return policy;
        }
    };
    for (i, item) in items.iter().enumerate() {
        match parse_one(item, node, prod) {
            Ok(Some(g)) => policy.gates.push(g),
            Ok(None) => {}
            Err(why) => policy
                .problems
                .push(format!("{path}[{i}]: {why}; gate ignored")),
        }
    }
    warnings.extend(policy.problems.iter().map(|p| format!("{id}: {p}")));
    policy
}

/// One list item: a mapping with exactly one gate name. `Ok(None)`: a gate turned off
/// (`no_key_issues: false`).
fn parse_one(
    item: &serde_json::Value,
    node: &Node,
    prod: Option<&Node>,
) -> Result<Option<Gate>, String> {
    let obj = item
        .as_object()
        .filter(|o| o.len() == 1)
        .ok_or("each gate is a mapping with one gate name, e.g. `rows_removed: {max: 0}`")?;
    let (name, args) = obj.iter().next().expect("one entry");
    let flag = |args: &serde_json::Value| match args {
        serde_json::Value::Bool(b) => Ok(*b),
        _ => Err(format!("gate `{name}` takes true or false")),
    };
    match name.as_str() {
        "changed_pct" => {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Args {
                column: String,
                max: f64,
            }
            let a: Args = serde_json::from_value(args.clone()).map_err(|e| {
                format!("gate `changed_pct` takes {{column: <name>, max: <percent>}}: {e}")
            })?;
            if a.column.trim().is_empty() {
                return Err("gate `changed_pct` needs a column name".into());
            }
            if !(0.0..=100.0).contains(&a.max) {
                return Err("gate `changed_pct`: max is a percentage from 0 to 100".into());
            }
            Ok(Some(Gate::ChangedPct {
                column: a.column,
                max: a.max,
            }))
        }
        "rows_removed" | "rows_added" => {
            let limit: RowLimit = serde_json::from_value(args.clone()).map_err(|e| {
                format!("gate `{name}` takes {{max: <rows>}} and/or {{max_pct: <percent>}}: {e}")
            })?;
            if limit.max.is_none() && limit.max_pct.is_none() {
                return Err(format!("gate `{name}` needs max or max_pct"));
            }
            if limit.max_pct.is_some_and(|p| !(p >= 0.0 && p.is_finite())) {
                return Err(format!(
                    "gate `{name}`: max_pct is a percentage of 0 or more"
                ));
            }
            Ok(Some(if name == "rows_removed" {
                Gate::RowsRemoved(limit)
            } else {
                Gate::RowsAdded(limit)
            }))
        }
        "no_key_issues" => Ok(flag(args)?.then_some(Gate::NoKeyIssues)),
        "contract_types_unchanged" => {
            if !flag(args)? {
                return Ok(None);
            }
            let mut columns = contracted_columns(node);
            for c in prod.map(contracted_columns).unwrap_or_default() {
                if !columns.iter().any(|k| same(k, &c)) {
                    columns.push(c);
                }
            }
            if columns.is_empty() {
                return Err(
                    "gate `contract_types_unchanged`: the model has no enforced contract with \
                     column data types (`config: {contract: {enforced: true}}`)"
                        .into(),
                );
            }
            Ok(Some(Gate::ContractTypesUnchanged { columns }))
        }
        other => Err(format!(
            "unknown gate `{other}` (known: {})",
            GATE_NAMES.join(", ")
        )),
    }
}

/// The columns of an enforced contract that declare a `data_type`.
fn contracted_columns(node: &Node) -> Vec<String> {
    if !(node.config.contract_enforced || node.contract.enforced) {
        return Vec::new();
    }
    node.columns
        .iter()
        .filter(|c| c.data_type.as_deref().is_some_and(|t| !t.trim().is_empty()))
        .map(|c| c.name.clone())
        .collect()
}

/// A percentage for people: at most two decimals, no trailing zeros (`7.2`, `5.01`, `0`).
pub fn fmt_pct(p: f64) -> String {
    let s = format!("{:.2}", p);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.to_owned() }
}

fn rows(n: u64) -> String {
    format!(
        "{} {}",
        crate::report::format_count(n),
        if n == 1 { "row" } else { "rows" }
    )
}

fn same(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn fail(gate: &Gate, text: String) -> GateOutcome {
    GateOutcome {
        passed: false,
        gate: gate.name(),
        text,
    }
}

/// Evaluates one gate on a model's diff.
pub fn evaluate(gate: &Gate, r: &DiffResult) -> GateOutcome {
    let approx = if r.sampled.is_some() { "≈" } else { "" };
    match gate {
        Gate::ChangedPct { column, max } => {
            let Some(c) = r.columns.iter().find(|c| same(&c.name, column)) else {
                let why = if r.schema.removed.iter().any(|c| same(c, column)) {
                    "is removed in the PR"
                } else if r.schema.added.iter().any(|c| same(c, column)) {
                    "is new in the PR"
                } else if r.primary_key.iter().any(|c| same(c, column)) {
                    "is a key column"
                } else {
                    "is not among the compared columns"
                };
                return fail(
                    gate,
                    format!("column {column} {why}: changed_pct cannot be measured"),
                );
            };
            match (c.changed_pct, r.matched) {
                (Some(pct), _) => GateOutcome {
                    passed: pct <= *max,
                    gate: gate.name(),
                    text: format!(
                        "{} changed on {approx}{} % of matched rows {} {} %",
                        c.name,
                        fmt_pct(pct),
                        if pct <= *max { "≤" } else { ">" },
                        fmt_pct(*max)
                    ),
                },
                (None, Some(0)) => GateOutcome {
                    passed: true,
                    gate: gate.name(),
                    text: format!("{}: no matched rows to compare", c.name),
                },
                (None, _) => fail(
                    gate,
                    format!(
                        "{}: changed rows cannot be measured without a primary key",
                        c.name
                    ),
                ),
            }
        }
        Gate::RowsRemoved(limit) | Gate::RowsAdded(limit) => {
            let removed = matches!(gate, Gate::RowsRemoved(_));
            let what = if removed { "removed" } else { "added" };
            let Some(ex) = r.exclusive else {
                return fail(
                    gate,
                    format!("rows {what} cannot be measured without a primary key"),
                );
            };
            let n = if removed { ex.prod } else { ex.pr };
            let pct = if r.rows.prod > 0 {
                Some(n as f64 * 100.0 / r.rows.prod as f64)
            } else if n == 0 {
                Some(0.0)
            } else {
                None
            };
            let mut checks = Vec::new();
            let mut passed = true;
            if let Some(max) = limit.max {
                let ok = n <= max;
                passed &= ok;
                checks.push(format!("{} {}", if ok { "≤" } else { ">" }, fmt_n(max)));
            }
            if let Some(max_pct) = limit.max_pct {
                let ok = pct.is_some_and(|p| p <= max_pct);
                passed &= ok;
                checks.push(format!(
                    "{} {} %",
                    if ok { "≤" } else { ">" },
                    fmt_pct(max_pct)
                ));
            }
            let share = match pct {
                Some(p) => format!("{approx}{} % of production rows", fmt_pct(p)),
                None => "production has no rows".into(),
            };
            GateOutcome {
                passed,
                gate: gate.name(),
                text: format!("{approx}{} {what} ({share}) {}", rows(n), checks.join(", ")),
            }
        }
        Gate::NoKeyIssues => {
            if r.primary_key.is_empty() {
                return fail(gate, "the model has no primary key to check".into());
            }
            let mut parts = Vec::new();
            for (side, k) in [
                ("production", r.primary_key_issues.prod),
                ("PR", r.primary_key_issues.pr),
            ] {
                if k.nulls > 0 {
                    parts.push(format!("{} with a NULL key in {side}", rows(k.nulls)));
                }
                if k.duplicates > 0 {
                    parts.push(format!(
                        "{} with a duplicate key in {side}",
                        rows(k.duplicates)
                    ));
                }
            }
            GateOutcome {
                passed: parts.is_empty(),
                gate: gate.name(),
                text: if parts.is_empty() {
                    "no NULL or duplicate keys".into()
                } else {
                    parts.join("; ")
                },
            }
        }
        Gate::ContractTypesUnchanged { columns } => {
            let mut changes = Vec::new();
            for col in columns {
                if r.schema.removed.iter().any(|c| same(c, col)) {
                    changes.push(format!("{col} removed"));
                } else if let Some(name) = r.schema.type_changed.iter().find(|c| same(c, col)) {
                    match r.columns.iter().find(|c| same(&c.name, name)) {
                        Some(c) => changes.push(format!("{col} {} → {}", c.prod_type, c.pr_type)),
                        None => changes.push(format!("{col} changed type")),
                    }
                }
            }
            GateOutcome {
                passed: changes.is_empty(),
                gate: gate.name(),
                text: if changes.is_empty() {
                    match columns.len() {
                        1 => "1 contracted column keeps its type".to_owned(),
                        n => format!("{n} contracted columns keep their types"),
                    }
                } else {
                    format!("contracted column types changed: {}", changes.join(", "))
                },
            }
        }
    }
}

fn fmt_n(n: u64) -> String {
    crate::report::format_count(n)
}

/// Every gate's verdict on a model's diff, in the policy's order.
pub fn evaluate_all(policy: &GatePolicy, r: &DiffResult) -> Vec<GateOutcome> {
    policy.gates.iter().map(|g| evaluate(g, r)).collect()
}

#[cfg(test)]
mod tests;
