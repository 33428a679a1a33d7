//! From a planned model (which relations, key and options) to a diff request.

use std::sync::Arc;

use super::{DiffRequest, SamplingSettings};
use crate::manifest::Node;
use crate::plan::{IgnoreColumns, PlannedModel};
use crate::sql::filter::{UnsafeFilter, parse_filter};
use crate::sql::{Dialect, Relation};

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
    req.tolerance = o.tolerance.iter().map(|(c, t)| (c.clone(), *t)).collect();
    req.dimensions = o.dimensions.clone();
    req.masked_columns = pr_node.map(pii_columns).unwrap_or_default();
    req.sampling = sampling;
    if let Some(ig) = ignore {
        req.column_ignore = Some(Arc::new(move |c: &str| ig.is_ignored(c)));
    }
    Some(req)
}

/// The schemas one pull request's relations may be in: [`crate::config::PrSchemaPattern`]
/// filled in for the PR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrSchemas {
    prefix: String,
}

impl PrSchemas {
    /// `prefix`, as the PR job names schemas (e.g. `dbt_cloud_pr_123_45`).
    pub fn new(prefix: impl Into<String>) -> Self {
        PrSchemas {
            prefix: prefix.into(),
        }
    }

    /// Whether `relation`'s schema is the prefix, or the prefix followed by `_` and a
    /// custom schema suffix; without regard to case (Snowflake folds names to upper case).
    pub fn contains(&self, relation: &Relation) -> bool {
        let Some(schema) = relation.schema.as_deref() else {
            return false;
        };
        let (schema, prefix) = (schema.to_lowercase(), self.prefix.to_lowercase());
        match schema.strip_prefix(&prefix) {
            Some("") => true,
            Some(rest) => rest.len() > 1 && rest.starts_with('_'),
            None => false,
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

/// Why a model the plan selected is not diffed after all: what the pull request controls
/// (its filter, where its relation is) failed a check. Shown as the model's row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("{0}")]
    UnsafeFilter(UnsafeFilter),
    #[error(
        "relation outside the PR's schemas ({relation} is not in {prefix} or {prefix}_<custom schema>)"
    )]
    OutsidePrSchemas { relation: String, prefix: String },
}

/// Checks what the pull request controls in `req` before anything is sent: the filter
/// ([`parse_filter`] in `dialect`) and, with `pr_schemas`, that the PR relation is inside
/// the PR's own schemas. The production relation comes from the production manifest.
pub fn check_request(
    req: &DiffRequest,
    dialect: &dyn Dialect,
    pr_schemas: Option<&PrSchemas>,
) -> Result<(), Refused> {
    if let Some(s) = pr_schemas
        && !s.contains(&req.pr)
    {
        return Err(Refused::OutsidePrSchemas {
            relation: req.pr.to_string(),
            prefix: s.prefix().to_owned(),
        });
    }
    if let Some(f) = &req.filter {
        parse_filter(dialect, f).map_err(Refused::UnsafeFilter)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::Postgres;

    #[test]
    fn pr_schemas_take_the_prefix_and_custom_suffixes_only() {
        let s = PrSchemas::new("dbt_cloud_pr_12_34");
        let inside = |schema: Option<&str>| s.contains(&Relation::new(None, schema, "t"));
        assert!(inside(Some("dbt_cloud_pr_12_34")));
        assert!(inside(Some("DBT_CLOUD_PR_12_34_MARTS")));
        assert!(inside(Some("dbt_cloud_pr_12_34_staging")));
        assert!(!inside(Some("dbt_cloud_pr_12_345")), "another PR");
        assert!(!inside(Some("dbt_cloud_pr_12_34_")));
        assert!(!inside(Some("hr")));
        assert!(!inside(Some("analytics")));
        assert!(!inside(None));
    }

    #[test]
    fn a_request_outside_the_pr_schemas_or_with_an_unsafe_filter_is_refused() {
        let pr_schemas = PrSchemas::new("dbt_cloud_pr_1_2");
        let mut req = DiffRequest::new(
            Relation::new(None, Some("analytics"), "orders"),
            Relation::new(None, Some("hr"), "salaries"),
            vec!["id".into()],
        );
        let refused = check_request(&req, &Postgres, Some(&pr_schemas)).unwrap_err();
        assert!(matches!(refused, Refused::OutsidePrSchemas { .. }));
        assert!(refused.to_string().contains("hr.salaries"), "{refused}");

        req.pr = Relation::new(None, Some("dbt_cloud_pr_1_2"), "orders");
        assert_eq!(check_request(&req, &Postgres, Some(&pr_schemas)), Ok(()));
        req.filter = Some("nextval('s') > 0".into());
        let refused = check_request(&req, &Postgres, Some(&pr_schemas)).unwrap_err();
        assert!(
            refused
                .to_string()
                .starts_with("unsafe filter: function nextval()"),
            "{refused}"
        );
    }
}
