//! Which models a pull request changes, and how to diff each one.
//!
//! [`plan`] compares the PR run's manifest (and run_results) with production's and
//! returns one [`PlannedModel`] per model considered: whether it is diffed or skipped
//! and why, both relations, the primary key and the rule that found it, and the
//! Datafold-compatible per-model options. It does no I/O: the caller loads the artifacts
//! with [`crate::manifest`] (from disk, dbt Cloud or S3) and renders the result.
//!
//! Modified means what dbt-core 1.11's `state:modified` means (see [`Reason`]);
//! downstream is the closure over the PR manifest's `child_map`.

mod keys;
mod modified;
mod options;

use std::collections::{HashMap, HashSet, VecDeque};

use serde::Serialize;

use crate::manifest::{Manifest, Node, RunResults};
use crate::sql::Relation;

pub use keys::{KeySource, NO_KEY_HINT};
pub use options::{
    IgnoreColumns, IgnorePatternError, KNOWN_KEYS, ModelOptions, SlimDiff, column_is_compared,
};

/// The JSON format version of [`Plan`]; bumped on incompatible changes.
pub const PLAN_FORMAT_VERSION: u32 = 1;

/// The CI configuration settings that shape a plan.
#[derive(Debug, Clone)]
pub struct PlanSettings {
    /// On: diff modified models (plus downstream ones when `downstream` is on).
    /// Off: diff every model the PR run built.
    pub slim_ci: bool,
    /// "Diff downstream": with Slim CI, also diff models downstream of modified ones.
    pub downstream: bool,
    /// The tag (column meta key or column tag) that marks primary key columns.
    pub primary_key_tag: String,
    /// Columns to ignore in every model.
    pub ignore_columns: IgnoreColumns,
}

impl Default for PlanSettings {
    fn default() -> Self {
        PlanSettings {
            slim_ci: false,
            downstream: false,
            primary_key_tag: "primary-key".to_owned(),
            ignore_columns: IgnoreColumns::default(),
        }
    }
}

/// What [`plan`] reads.
#[derive(Debug, Clone, Copy)]
pub struct PlanInputs<'a> {
    pub prod: &'a Manifest,
    pub pr: &'a Manifest,
    /// The PR run's results; without them every planned model is assumed built.
    pub pr_run_results: Option<&'a RunResults>,
    pub settings: &'a PlanSettings,
}

/// The plan for one pull request.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// [`PLAN_FORMAT_VERSION`].
    pub version: u32,
    pub slim_ci: bool,
    pub downstream: bool,
    /// Models in topological order, then by name.
    pub models: Vec<PlannedModel>,
    /// Sources dbt's `state:modified` selects (new, or a changed definition: relation,
    /// quoting, freshness, external, config such as `meta`), sorted. Never diffed
    /// themselves; the models reading them are downstream.
    pub modified_sources: Vec<String>,
    /// Problems that did not stop planning (unknown option keys, missing run_results, …).
    pub warnings: Vec<String>,
}

impl Plan {
    pub fn to_diff(&self) -> impl Iterator<Item = &PlannedModel> {
        self.models.iter().filter(|m| m.action == Action::Diff)
    }
}

/// One model considered for the diff.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedModel {
    pub unique_id: String,
    pub name: String,
    /// `model`, `seed` or `snapshot`.
    pub resource_type: String,
    pub action: Action,
    /// Why the model was selected; empty only for removed models.
    pub reasons: Vec<Reason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip_reason: Option<SkipReason>,
    pub prod_relation: Option<Relation>,
    pub pr_relation: Option<Relation>,
    pub primary_key: Vec<String>,
    pub primary_key_source: Option<KeySource>,
    /// How to declare a key, when none was found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_key_hint: Option<&'static str>,
    pub options: ModelOptions,
    /// Selected only because it is downstream of a modified model.
    pub downstream: bool,
    /// The model's materialization when production and the PR differ (`table` → `view`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub materialization_change: Option<MaterializationChange>,
}

/// A model materialized one way in production and another in the PR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct MaterializationChange {
    pub prod: String,
    pub pr: String,
}

impl MaterializationChange {
    /// The change between two nodes' `config.materialized`, if both name one and they
    /// differ.
    pub fn between(prod: &Node, pr: &Node) -> Option<Self> {
        let (a, b) = (
            prod.config.materialized.as_deref()?.trim(),
            pr.config.materialized.as_deref()?.trim(),
        );
        (!a.eq_ignore_ascii_case(b)).then(|| MaterializationChange {
            prod: a.to_owned(),
            pr: b.to_owned(),
        })
    }

    /// The change in words, for reports.
    pub fn text(&self) -> String {
        format!(
            "materialized as `{}` in production and as `{}` in this PR",
            self.prod, self.pr
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Diff,
    Skip,
}

/// Why a model was selected. All but `downstream` and `built` are parts of dbt's
/// `state:modified` decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Not in the production manifest.
    New,
    /// Raw code changed (seeds: file checksum).
    Body,
    /// Unrendered config changed; model-level `meta` counts, tags do not.
    Config,
    /// Descriptions changed on a model that persists docs to the warehouse.
    PersistedDescriptions,
    /// The node moved (its fully qualified name changed).
    Fqn,
    /// Unrendered database, schema or alias changed.
    Relation,
    /// The enforced contract changed, or was turned on or off.
    Contract,
    /// `latest_version`, `access` or `deprecation_date` changed.
    Ref,
    /// A macro the node calls changed, directly or through other macros.
    Macros,
    /// Downstream of a modified node.
    Downstream,
    /// Slim CI off: the PR run built it.
    Built,
}

/// Why a considered model is not diffed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// New in the PR: there is nothing in production to compare with.
    NewModel,
    /// In production, deleted or renamed in the PR.
    Removed,
    /// In production, disabled in the PR.
    Disabled,
    /// Ephemeral models have no relation.
    Ephemeral,
    /// Ephemeral in production: there is no production relation.
    EphemeralInProd,
    /// The PR run did not build it.
    NotBuilt,
    /// The PR run failed to build it.
    Error,
    /// The PR run skipped it (an upstream failure).
    Skipped,
    /// `never_diff: true` in its options.
    NeverDiff,
}

/// Plans the diff of a pull request. Pure: reads the manifests, returns the plan.
pub fn plan(inputs: &PlanInputs<'_>) -> Plan {
    let PlanInputs {
        prod,
        pr,
        pr_run_results,
        settings,
    } = *inputs;
    let mut warnings = Vec::new();
    if pr_run_results.is_none() {
        warnings.push(
            "no PR run_results: every planned model is assumed to have been built by the PR run"
                .to_owned(),
        );
    }

    // 1. What dbt's state:modified selects, with reasons.
    let mut macros = modified::MacroReach::new(prod, pr);
    let mut modified: HashMap<&str, Vec<Reason>> = HashMap::new();
    for (id, node) in &pr.nodes {
        if !node.is_diffable_kind() {
            continue;
        }
        let macro_changed = macros.node_uses_modified_macro(node);
        let reasons = modified::reasons(prod.nodes.get(id), node, macro_changed);
        if !reasons.is_empty() {
            modified.insert(id.as_str(), reasons);
        }
    }

    // Sources are selected too (dbt's `state:modified` lists them); they are not diffed,
    // but what reads them is downstream.
    let mut modified_sources: Vec<&str> = pr
        .sources
        .iter()
        .filter(|(id, digest)| prod.sources.get(*id) != Some(digest))
        .map(|(id, _)| id.as_str())
        .collect();
    modified_sources.sort_unstable();

    // 2. Downstream closure over child_map (through any node kind, as dbt's `+` does).
    let downstream = downstream_closure(
        pr,
        modified
            .keys()
            .copied()
            .chain(modified_sources.iter().copied()),
    );

    // 3. Candidates: Slim CI takes the modified models (and the downstream ones it is asked
    //    for); without Slim CI, every diffable model the PR run built.
    let mut candidates: Vec<(&str, Vec<Reason>, bool)> = Vec::new();
    if settings.slim_ci {
        for (id, reasons) in &modified {
            candidates.push((id, reasons.clone(), false));
        }
        for id in &downstream {
            let Some(node) = pr.nodes.get(*id) else {
                continue;
            };
            if !node.is_diffable_kind() {
                continue;
            }
            let wanted = settings.downstream
                || options::read(node, &mut Vec::new()).slim_diff
                    == Some(SlimDiff::DiffWhenDownstream);
            if wanted {
                candidates.push((id, vec![Reason::Downstream], true));
            }
        }
    } else {
        let built: Vec<&str> = match pr_run_results {
            Some(rr) => rr.results.keys().map(String::as_str).collect(),
            None => pr.nodes.keys().map(String::as_str).collect(),
        };
        let mut seen: HashSet<&str> = HashSet::new();
        for id in built.into_iter().chain(modified.keys().copied()) {
            let Some(node) = pr.nodes.get(id) else {
                continue;
            };
            if !node.is_diffable_kind() || !node.config.enabled || !seen.insert(id) {
                continue;
            }
            let mut reasons = modified.get(id).cloned().unwrap_or_default();
            let is_downstream = reasons.is_empty() && downstream.contains(id);
            if reasons.is_empty() {
                reasons.push(if is_downstream {
                    Reason::Downstream
                } else {
                    Reason::Built
                });
            }
            candidates.push((id, reasons, is_downstream));
        }
    }

    let tests = keys::TestIndex::new(pr);
    let mut models: Vec<PlannedModel> = candidates
        .into_iter()
        .filter_map(|(id, reasons, is_downstream)| {
            let node = pr.nodes.get(id)?;
            Some(plan_model(
                node,
                prod.nodes.get(id),
                (prod.dialect(), pr.dialect()),
                reasons,
                is_downstream,
                pr_run_results,
                &tests,
                settings,
                &mut warnings,
            ))
        })
        .collect();

    // 4. Removed and disabled models are always listed, never diffed.
    for (id, old) in &prod.nodes {
        if !old.is_diffable_kind() || pr.nodes.contains_key(id) {
            continue;
        }
        let skip = if pr.disabled.contains_key(id) {
            SkipReason::Disabled
        } else {
            SkipReason::Removed
        };
        models.push(PlannedModel {
            unique_id: id.clone(),
            name: old.name.clone(),
            resource_type: old.resource_type.clone(),
            action: Action::Skip,
            reasons: Vec::new(),
            skip_reason: Some(skip),
            prod_relation: old.relation_in(prod.dialect()),
            pr_relation: None,
            primary_key: Vec::new(),
            primary_key_source: None,
            primary_key_hint: None,
            options: ModelOptions::default(),
            downstream: false,
            materialization_change: None,
        });
    }

    // 5. Stable order: topological (depth in the DAG), then name, then unique id.
    let wanted: Vec<&str> = models.iter().map(|m| m.unique_id.as_str()).collect();
    let depth_pr = depths(pr, &wanted);
    let depth_prod = depths(prod, &wanted);
    // Depths are looked up once per model, not once per comparison.
    let mut keyed: Vec<(u32, PlannedModel)> = models
        .into_iter()
        .map(|m| {
            let id = m.unique_id.as_str();
            let d = depth_pr
                .get(id)
                .or(depth_prod.get(id))
                .copied()
                .unwrap_or(0);
            (d, m)
        })
        .collect();
    keyed.sort_by(|(da, a), (db, b)| (da, &a.name, &a.unique_id).cmp(&(db, &b.name, &b.unique_id)));
    let models: Vec<PlannedModel> = keyed.into_iter().map(|(_, m)| m).collect();
    warnings.sort();
    warnings.dedup();

    Plan {
        version: PLAN_FORMAT_VERSION,
        slim_ci: settings.slim_ci,
        downstream: settings.downstream,
        models,
        modified_sources: modified_sources.into_iter().map(str::to_owned).collect(),
        warnings,
    }
}

/// dbt's snapshot bookkeeping columns (their default names). They record when each build
/// ran, so they differ between any two builds of the same data and are never compared.
const SNAPSHOT_META_COLUMNS: [&str; 4] = [
    "dbt_scd_id",
    "dbt_updated_at",
    "dbt_valid_from",
    "dbt_valid_to",
];

/// A production snapshot keeps history while a PR build holds the current versions only:
/// compare the current versions (`dbt_valid_to is null`) on the snapshot's `unique_key`,
/// without the bookkeeping columns. A `filter` in the snapshot's own options wins.
fn snapshot_defaults(options: &mut ModelOptions) {
    if options.filter.is_none() {
        options.filter = Some("dbt_valid_to is null".to_owned());
    }
    for c in SNAPSHOT_META_COLUMNS {
        if !options
            .exclude_columns
            .iter()
            .any(|e| e.eq_ignore_ascii_case(c))
        {
            options.exclude_columns.push(c.to_owned());
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn plan_model(
    node: &Node,
    old: Option<&Node>,
    (prod_dialect, pr_dialect): (
        Option<&'static dyn crate::sql::Dialect>,
        Option<&'static dyn crate::sql::Dialect>,
    ),
    reasons: Vec<Reason>,
    is_downstream: bool,
    run_results: Option<&RunResults>,
    tests: &keys::TestIndex<'_>,
    settings: &PlanSettings,
    warnings: &mut Vec<String>,
) -> PlannedModel {
    let mut options = options::read(node, warnings);
    options.gates = crate::gates::read(node, old, warnings);
    options.tolerance = options::read_tolerance(node, warnings);
    if let Some(dims) = options::read_dimensions(node, warnings) {
        options.dimensions = dims;
    }
    if node.resource_type == "snapshot" {
        snapshot_defaults(&mut options);
    }
    let (primary_key, primary_key_source) =
        match keys::discover(node, tests, &settings.primary_key_tag) {
            Some((k, s)) => (k, Some(s)),
            None => (Vec::new(), None),
        };
    options.ignored_columns = node
        .columns
        .iter()
        .map(|c| c.name.as_str())
        .filter(|c| {
            settings.ignore_columns.is_ignored(c)
                && !primary_key.iter().any(|k| k.eq_ignore_ascii_case(c))
        })
        .map(str::to_owned)
        .collect();

    let result = run_results.and_then(|rr| rr.get(&node.unique_id));
    let pr_relation = result
        .and_then(|r| r.relation_name.as_deref())
        .and_then(|r| match pr_dialect {
            Some(d) => Relation::parse_for(r, d).ok(),
            None => Relation::parse(r).ok(),
        })
        .or_else(|| node.relation_in(pr_dialect));
    let pr_relation = if node.is_ephemeral() {
        None
    } else {
        pr_relation
    };
    let prod_relation = old
        .filter(|o| !o.is_ephemeral())
        .and_then(|o| o.relation_in(prod_dialect));

    let skip_reason = if old.is_none() {
        Some(SkipReason::NewModel)
    } else if node.is_ephemeral() {
        Some(SkipReason::Ephemeral)
    } else if old.is_some_and(Node::is_ephemeral) {
        Some(SkipReason::EphemeralInProd)
    } else if options.never_diff {
        Some(SkipReason::NeverDiff)
    } else {
        match (run_results, result) {
            (None, _) => None,
            (Some(_), None) => Some(SkipReason::NotBuilt),
            (Some(_), Some(r)) => match r.status.as_str() {
                "success" | "pass" | "warn" | "fail" => None,
                "skipped" => Some(SkipReason::Skipped),
                _ => Some(SkipReason::Error),
            },
        }
    };

    PlannedModel {
        unique_id: node.unique_id.clone(),
        name: node.name.clone(),
        resource_type: node.resource_type.clone(),
        action: if skip_reason.is_some() {
            Action::Skip
        } else {
            Action::Diff
        },
        reasons,
        skip_reason,
        prod_relation,
        pr_relation,
        primary_key_hint: primary_key_source.is_none().then_some(NO_KEY_HINT),
        primary_key,
        primary_key_source,
        options,
        downstream: is_downstream,
        materialization_change: old.and_then(|o| MaterializationChange::between(o, node)),
    }
}

/// Every node reachable from `roots` through `child_map`, without the roots themselves.
fn downstream_closure<'a>(
    pr: &'a Manifest,
    roots: impl Iterator<Item = &'a str>,
) -> HashSet<&'a str> {
    let roots: HashSet<&str> = roots.collect();
    let mut seen: HashSet<&str> = HashSet::new();
    let mut queue: VecDeque<&str> = roots.iter().copied().collect();
    while let Some(id) = queue.pop_front() {
        for child in pr.child_map.get(id).into_iter().flatten() {
            if seen.insert(child.as_str()) {
                queue.push_back(child.as_str());
            }
        }
    }
    seen.retain(|id| !roots.contains(id));
    seen
}

/// Longest path from a root to each of `wanted` (and their ancestors) over
/// `depends_on.nodes`; sources and other ids outside `nodes` count as depth 0. Only the
/// ancestors of planned models are walked, each once, so a PR touching a few models in a
/// 10 000-model project stays cheap and one touching all of them stays linear.
fn depths<'a>(m: &'a Manifest, wanted: &[&str]) -> HashMap<&'a str, u32> {
    const IN_PROGRESS: u32 = u32::MAX;
    let mut depth: HashMap<&'a str, u32> = HashMap::with_capacity(wanted.len() * 2);
    let mut stack: Vec<(&'a str, &'a Node, usize)> = Vec::new();
    for start in wanted {
        let Some((start, node)) = m.nodes.get_key_value(*start) else {
            continue;
        };
        if depth.contains_key(start.as_str()) {
            continue;
        }
        depth.insert(start.as_str(), IN_PROGRESS);
        stack.push((start.as_str(), node, 0));
        // Iterative post-order DFS: each frame walks its parents by index; a parent still
        // IN_PROGRESS would be a cycle (invalid in dbt) and counts as depth 0.
        while let Some((id, node, next)) = stack.pop() {
            if let Some(parent) = node.depends_on_nodes.get(next) {
                stack.push((id, node, next + 1));
                if let Some((pid, pnode)) = m.nodes.get_key_value(parent.as_str())
                    && !depth.contains_key(pid.as_str())
                {
                    depth.insert(pid.as_str(), IN_PROGRESS);
                    stack.push((pid.as_str(), pnode, 0));
                }
                continue;
            }
            let d = node
                .depends_on_nodes
                .iter()
                .filter_map(|p| depth.get(p.as_str()))
                .filter(|d| **d != IN_PROGRESS)
                .map(|d| d + 1)
                .max()
                .unwrap_or(0);
            depth.insert(id, d);
        }
    }
    depth
}

#[cfg(test)]
mod tests;
