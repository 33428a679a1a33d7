//! Plan → work items: the fan-out the poller leaves in the run store for the diff runner.
//!
//! Reads: the plan of a CI run. Writes: a [`Summary`] (what the report needs besides the
//! per-model results) and one [`WorkItem`] per model to diff or count.

use crate::diff::{DiffRequest, SamplingSettings};
use crate::report;
#[cfg(test)]
use crate::sql::Relation;

pub use crate::run::{CountSide, Counted, StoredOutcome, Summary, WorkItem};

/// The work item that counts a new or removed model's rows, or `None` when the plan skips
/// the model for another reason or has no relation to count. A new model's relation must
/// be in the PR's schemas (`pr_schemas`), like every relation a PR names.
pub fn count_item(
    m: &crate::plan::PlannedModel,
    pr_schemas: Option<&crate::diff::from_plan::PrSchemas>,
) -> Option<(WorkItem, Counted)> {
    use crate::plan::SkipReason;
    let (side, rel) = match m.skip_reason? {
        SkipReason::NewModel => (CountSide::Pr, m.pr_relation.clone()?),
        SkipReason::Removed => (CountSide::Prod, m.prod_relation.clone()?),
        _ => return None,
    };
    if side == CountSide::Pr && pr_schemas.is_some_and(|s| !s.contains(&rel)) {
        return None;
    }
    let item = WorkItem {
        name: m.name.clone(),
        prod: rel.clone(),
        pr: rel,
        primary_key: Vec::new(),
        filter: None,
        include_columns: Vec::new(),
        exclude_columns: Vec::new(),
        masked_columns: Vec::new(),
        count: Some(side),
    };
    let counted = Counted {
        unique_id: m.unique_id.clone(),
        name: m.name.clone(),
        side,
    };
    Some((item, counted))
}

/// A counted model's line: the skip reason and its rows (or why they could not be counted).
pub fn counted_reason(reason: &str, side: CountSide, outcome: Result<u64, &str>) -> String {
    let side = match side {
        CountSide::Pr => "in the PR",
        CountSide::Prod => "in production",
    };
    match outcome {
        Ok(n) => format!("{reason} · {} rows {side}", report::format_count(n)),
        Err(e) => format!("{reason} · rows {side} not counted: {e}"),
    }
}

impl WorkItem {
    pub fn from_request(name: &str, req: &DiffRequest) -> Self {
        Self {
            name: name.to_owned(),
            prod: req.prod.clone(),
            pr: req.pr.clone(),
            primary_key: req.primary_key.clone(),
            filter: req.filter.clone(),
            include_columns: req.include_columns.clone(),
            exclude_columns: req.exclude_columns.clone(),
            masked_columns: req.masked_columns.clone(),
            count: None,
        }
    }

    /// How a CI model gets a key: what the planner reads, with the configuration's key tag.
    pub fn no_key_hint(primary_key_tag: &str) -> String {
        format!(
            "To match rows, mark the key column(s) with the primary key tag `{tag}` (column \
             `meta: {{{tag}: true}}` or `tags: [{tag}]`), name them in the model's \
             `meta: {{primary_key: <column>}}`, or add a `unique` test.",
            tag = primary_key_tag
        )
    }

    /// The request, with the configuration's sampling.
    pub fn request(&self, sampling: Option<SamplingSettings>) -> DiffRequest {
        let mut req =
            DiffRequest::new(self.prod.clone(), self.pr.clone(), self.primary_key.clone());
        req.filter = self.filter.clone();
        req.include_columns = self.include_columns.clone();
        req.exclude_columns = self.exclude_columns.clone();
        req.masked_columns = self.masked_columns.clone();
        req.sampling = sampling;
        req
    }
}

/// The diff threshold: when the plan has more models to diff than the configuration's
/// `max_models`, none is diffed. Every work item is dropped (row counts of new and removed
/// models too), the models to diff head the list of models not diffed, and the summary
/// records the threshold for the report and the status.
pub fn apply_max_models(
    config: &crate::config::CiConfig,
    summary: &mut Summary,
    work: &mut Vec<(String, WorkItem)>,
) {
    let Some(max) = config.max_models else {
        return;
    };
    let models = summary.models.len();
    if models <= max.get() as usize {
        return;
    }
    summary.over_max_models = Some(crate::report::OverMaxModels {
        models,
        max: max.get(),
    });
    let mut skipped: Vec<(String, String)> = summary
        .models
        .drain(..)
        .map(|(_, name)| (name, format!("over max_models ({})", max.get())))
        .collect();
    skipped.append(&mut summary.skipped);
    summary.skipped = skipped;
    summary.counted.clear();
    summary.gates.clear();
    work.clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn a_stored_outcome_round_trips_through_json() {
        let err = StoredOutcome::Error("relation does not exist".into());
        let json = serde_json::to_string(&err).unwrap();
        assert_eq!(json, r#"{"error":"relation does not exist"}"#);
        assert_eq!(serde_json::from_str::<StoredOutcome>(&json).unwrap(), err);
    }

    #[test]
    fn a_work_item_keeps_the_request_it_was_made_from() {
        let mut req = DiffRequest::new(
            Relation::parse("analytics.orders").unwrap(),
            Relation::parse("dbt_cloud_pr_1_2.orders").unwrap(),
            vec!["id".into()],
        );
        req.filter = Some("id > 0".into());
        req.masked_columns = vec!["email".into()];
        let item = WorkItem::from_request("orders", &req);
        let back: WorkItem = serde_json::from_str(&serde_json::to_string(&item).unwrap()).unwrap();
        let again = back.request(None);
        assert_eq!(again.pr, req.pr);
        assert_eq!(again.filter, req.filter);
        assert_eq!(again.masked_columns, req.masked_columns);
    }
}
