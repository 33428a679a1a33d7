//! Modified-node detection: the decision dbt-core 1.11's `state:modified` makes
//! (`StateSelectorMethod.check_modified_content` and `ParsedNode.same_contents`), with the
//! reason(s) recorded instead of a single yes/no.

use std::collections::{HashMap, HashSet};

use super::Reason;
use crate::manifest::{Manifest, Node};

/// Macros whose SQL changed, that are new, or that were removed (dbt's `_macros_modified`).
pub(crate) fn modified_macros<'a>(prod: &'a Manifest, pr: &'a Manifest) -> HashSet<&'a str> {
    let mut out: HashSet<&str> = pr
        .macros
        .iter()
        .filter(|(id, m)| {
            prod.macros
                .get(*id)
                .is_none_or(|old| old.sql_hash != m.sql_hash)
        })
        .map(|(id, _)| id.as_str())
        .collect();
    out.extend(
        prod.macros
            .keys()
            .filter(|id| !pr.macros.contains_key(*id))
            .map(String::as_str),
    );
    out
}

/// Whether a node's macros reach a modified macro, following `depends_on.macros`
/// transitively through the PR manifest. Answers are memoised per macro, so a project
/// with thousands of nodes calling the same adapter macros walks each macro once.
pub(crate) struct MacroReach<'a> {
    pr: &'a Manifest,
    modified: HashSet<&'a str>,
    memo: HashMap<&'a str, bool>,
}

impl<'a> MacroReach<'a> {
    pub(crate) fn new(prod: &'a Manifest, pr: &'a Manifest) -> Self {
        MacroReach {
            pr,
            modified: modified_macros(prod, pr),
            memo: HashMap::new(),
        }
    }

    pub(crate) fn node_uses_modified_macro(&mut self, node: &'a Node) -> bool {
        if self.modified.is_empty() {
            return false;
        }
        node.depends_on_macros.iter().any(|m| self.reaches(m))
    }

    fn reaches(&mut self, start: &'a str) -> bool {
        if let Some(&known) = self.memo.get(start) {
            return known;
        }
        // Iterative DFS: macro chains can be deep in large packages.
        let mut stack = vec![start];
        let mut seen: HashSet<&str> = HashSet::new();
        let mut found = false;
        while let Some(id) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            if self.modified.contains(id) || self.memo.get(id) == Some(&true) {
                found = true;
                break;
            }
            if self.memo.get(id) == Some(&false) {
                continue;
            }
            if let Some(m) = self.pr.macros.get(id) {
                stack.extend(m.depends_on.iter().map(String::as_str));
            }
        }
        if found {
            self.memo.insert(start, true);
        } else {
            // Nothing reachable from `start` is modified, so nothing reachable from any
            // macro on the way is either.
            for id in seen {
                self.memo.insert(id, false);
            }
        }
        found
    }
}

/// Why `new` differs from `old` in dbt's sense; empty when dbt would not select it.
pub(crate) fn reasons(old: Option<&Node>, new: &Node, macros_changed: bool) -> Vec<Reason> {
    let Some(old) = old else {
        return vec![Reason::New];
    };
    let mut out = Vec::new();
    if !same_body(old, new) {
        out.push(Reason::Body);
    }
    if old.unrendered_config_hash != new.unrendered_config_hash {
        out.push(Reason::Config);
    }
    if !same_persisted_description(old, new) {
        out.push(Reason::PersistedDescriptions);
    }
    if old.fqn != new.fqn {
        out.push(Reason::Fqn);
    }
    if old.unrendered_relation != new.unrendered_relation {
        out.push(Reason::Relation);
    }
    if is_model(old) && is_model(new) {
        if !same_contract(old, new) {
            out.push(Reason::Contract);
        }
        // ModelNode.same_ref_representation: these change how `ref` resolves downstream.
        if old.latest_version != new.latest_version
            || old.access != new.access
            || old.deprecation_date != new.deprecation_date
        {
            out.push(Reason::Ref);
        }
    }
    if macros_changed {
        out.push(Reason::Macros);
    }
    out
}

fn is_model(n: &Node) -> bool {
    n.resource_type == "model"
}

/// Seeds compare file checksums (a `path` checksum for seeds over dbt's size limit, so a
/// large seed only counts as changed when its path does); everything else compares raw code.
fn same_body(old: &Node, new: &Node) -> bool {
    if new.resource_type == "seed" {
        old.checksum == new.checksum
    } else {
        old.raw_code_hash == new.raw_code_hash
    }
}

/// Descriptions only matter when the new node persists them into the warehouse; a change
/// of the persist_docs setting itself is a config change.
fn same_persisted_description(old: &Node, new: &Node) -> bool {
    if new.config.persist_docs_relation && old.description_hash != new.description_hash {
        return false;
    }
    if new.config.persist_docs_columns {
        let descriptions = |n: &Node| -> HashMap<String, u64> {
            n.columns
                .iter()
                .map(|c| (c.name.clone(), c.description_hash))
                .collect()
        };
        if descriptions(old) != descriptions(new) {
            return false;
        }
    }
    true
}

/// dbt's `ModelNode.same_contract`: enabling a contract is a change, dropping one is a
/// (breaking) change, and an enforced contract changes when its checksum does.
fn same_contract(old: &Node, new: &Node) -> bool {
    match (old.contract.enforced, new.contract.enforced) {
        (false, false) => true,
        (false, true) | (true, false) => false,
        (true, true) => old.contract.checksum == new.contract.checksum,
    }
}
