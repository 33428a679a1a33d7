//! From a planned model (which relations, key and options) to a diff request.

use std::sync::Arc;

use super::{DiffRequest, SamplingSettings};
use crate::manifest::Node;
use crate::plan::{IgnoreColumns, PlannedModel};

/// The tag (column tag, or column meta key set to true) that masks a column's values in
/// sample rows.
pub const PII_TAG: &str = "pii";

/// Columns of `node` tagged as PII (`tags: [pii]` or `meta: {pii: true}`).
pub fn pii_columns(node: &Node) -> Vec<String> {
    node.columns
        .iter()
        .filter(|c| {
            c.tags.iter().any(|t| t.eq_ignore_ascii_case(PII_TAG))
                || c.meta
                    .get(PII_TAG)
                    .is_some_and(|v| v.as_bool() == Some(true) || v.as_str() == Some("true"))
        })
        .map(|c| c.name.clone())
        .collect()
}

/// The diff request for a planned model, or `None` when the plan skips it. `pr_node` (the
/// PR manifest's node) supplies the PII tags; `ignore` the global ignore list.
pub fn request_for(
    model: &PlannedModel,
    pr_node: Option<&Node>,
    sampling: Option<SamplingSettings>,
    ignore: Option<IgnoreColumns>,
) -> Option<DiffRequest> {
    let (prod, pr) = (model.prod_relation.clone()?, model.pr_relation.clone()?);
    if model.skip_reason.is_some() {
        return None;
    }
    let mut req = DiffRequest::new(prod, pr, model.primary_key.clone());
    let o = &model.options;
    req.filter = o.filter.clone();
    req.include_columns = o.include_columns.clone();
    req.exclude_columns = o.exclude_columns.clone();
    req.masked_columns = pr_node.map(pii_columns).unwrap_or_default();
    req.sampling = sampling;
    if let Some(ig) = ignore {
        req.column_ignore = Some(Arc::new(move |c: &str| ig.is_ignored(c)));
    }
    Some(req)
}
