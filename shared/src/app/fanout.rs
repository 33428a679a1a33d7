//! Plan → work items: the fan-out the poller leaves in the run store for the diff runner.
//!
//! Reads: the plan of a CI run. Writes: a [`Summary`] (what the report needs besides the
//! per-model results) and one [`WorkItem`] per model to diff or count.

use crate::diff::{DiffRequest, SamplingSettings};
use crate::report;

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
        spec: crate::diff::DiffSpec::new(rel.clone(), rel, Vec::new()),
        count: Some(side),
        reuse_key: None,
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
            spec: req.spec.clone(),
            count: None,
            reuse_key: None,
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
        let mut req = DiffRequest::from_spec(self.spec.clone());
        req.sampling = sampling;
        req
    }
}

/// What a run diffs of its plan: a run started on demand diffs every planned model, or
/// only the ones it names; any other run is held to `max_models`.
pub fn apply_run_scope(
    config: &crate::config::CiConfig,
    on_demand: Option<&crate::run::OnDemand>,
    summary: &mut Summary,
    work: &mut Vec<(String, WorkItem)>,
) {
    match on_demand {
        None => apply_max_models(config, summary, work),
        Some(od) if od.models.is_empty() => {}
        Some(od) => keep_requested(&od.models, summary, work),
    }
}

/// The reason shown for a planned model a `/prdiff run <models>` command did not name.
pub const NOT_REQUESTED: &str = "not requested (the on-demand run named other models)";

/// Keeps the models named in `requested`: the others are listed as not requested and
/// get no work item (nor a row count); a name the plan does not have is said in a note.
pub fn keep_requested(
    requested: &[String],
    summary: &mut Summary,
    work: &mut Vec<(String, WorkItem)>,
) {
    let wanted = |name: &str| requested.iter().any(|r| r == name);
    let known: Vec<String> = summary
        .models
        .iter()
        .map(|(_, n)| n.clone())
        .chain(summary.skipped.iter().map(|(n, _)| n.clone()))
        .collect();
    let (keep, drop): (Vec<_>, Vec<_>) =
        summary.models.drain(..).partition(|(_, name)| wanted(name));
    summary.models = keep;
    let mut skipped: Vec<(String, String)> = drop
        .into_iter()
        .map(|(_, name)| (name, NOT_REQUESTED.to_owned()))
        .collect();
    skipped.append(&mut summary.skipped);
    summary.skipped = skipped;
    work.retain(|(_, item)| wanted(&item.name));
    summary.counted.retain(|c| wanted(&c.name));
    summary.gates.retain(|name, _| wanted(name));
    summary.downstream.retain(|name| wanted(name));
    for name in requested {
        if !known.contains(name) {
            summary.warnings.push(format!(
                "`{name}` was requested, but it is not among the models this pull request \
                 changes (or their downstream models): it was not diffed."
            ));
        }
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
    use crate::sql::Relation;
    fn scoped(on_demand: Option<crate::run::OnDemand>) -> (Summary, Vec<(String, WorkItem)>) {
        let item = |name: &str| {
            let rel = Relation::parse(&format!("analytics.{name}")).unwrap();
            WorkItem::from_request(name, &DiffRequest::new(rel.clone(), rel, vec![]))
        };
        let mut summary = Summary {
            models: vec![
                ("model.p.a".into(), "a".into()),
                ("model.p.b".into(), "b".into()),
            ],
            skipped: vec![("fresh".into(), "new model".into())],
            counted: vec![Counted {
                unique_id: "model.p.fresh".into(),
                name: "fresh".into(),
                side: CountSide::Pr,
            }],
            downstream: vec!["b".into()],
            ..Default::default()
        };
        let mut work = vec![
            ("model.p.a".to_owned(), item("a")),
            ("model.p.b".to_owned(), item("b")),
            ("model.p.fresh".to_owned(), item("fresh")),
        ];
        let config = crate::config::tests::stored_example(&[("max_models = 25", "max_models = 1")]);
        apply_run_scope(&config, on_demand.as_ref(), &mut summary, &mut work);
        (summary, work)
    }

    #[test]
    fn an_on_demand_run_ignores_max_models_and_keeps_only_the_models_it_names() {
        // Not on demand: over max_models (1), nothing is diffed.
        let (s, w) = scoped(None);
        assert!(w.is_empty() && s.over_max_models.is_some());
        // On demand without names: everything, max_models or not.
        let (s, w) = scoped(Some(crate::run::OnDemand {
            by: "trigger".into(),
            models: vec![],
        }));
        assert_eq!(w.len(), 3);
        assert_eq!(s.models.len(), 2);
        assert!(s.over_max_models.is_none());
        // Named: `b` only; `a` is listed as not requested, the new model is not counted,
        // and a name the plan lacks is a note.
        let (s, w) = scoped(Some(crate::run::OnDemand {
            by: "github:octocat".into(),
            models: vec!["b".into(), "ghost".into()],
        }));
        let names: Vec<&str> = w.iter().map(|(_, i)| i.name.as_str()).collect();
        assert_eq!(names, ["b"]);
        assert_eq!(s.models, [("model.p.b".to_owned(), "b".to_owned())]);
        assert_eq!(
            s.skipped,
            [
                ("a".to_owned(), NOT_REQUESTED.to_owned()),
                ("fresh".to_owned(), "new model".to_owned()),
            ]
        );
        assert!(s.counted.is_empty());
        assert_eq!(s.downstream, ["b"]);
        assert!(s.over_max_models.is_none());
        assert_eq!(s.warnings.len(), 1);
        assert!(
            s.warnings[0].contains("`ghost` was requested"),
            "{:?}",
            s.warnings
        );
    }

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
        req.include_columns = vec!["id".into(), "amount".into()];
        req.exclude_columns = vec!["loaded_at".into()];
        req.masked_columns = vec!["email".into()];
        req.tolerance = vec![(
            "amount".into(),
            crate::diff::Tolerance::new(Some(0.01), Some(0.001)).unwrap(),
        )];
        let item = WorkItem::from_request("orders", &req);
        let back: WorkItem = serde_json::from_str(&serde_json::to_string(&item).unwrap()).unwrap();
        let again = back.request(None);
        // The whole spec travels: no field is copied by hand, so none can be dropped.
        assert_eq!(again.spec, req.spec);
        assert_eq!(again.tolerance.len(), 1);
        assert_eq!(back, item);
    }

    #[test]
    fn a_work_item_stored_in_the_old_flat_shape_still_decodes_and_writes_the_same_shape() {
        let old = r#"{"name":"orders","prod":{"database":null,"schema":"analytics","name":"orders"},"pr":{"database":null,"schema":"dbt_cloud_pr_1_2","name":"orders"},"primary_key":["id"],"filter":"id > 0","include_columns":[],"exclude_columns":["loaded_at"],"masked_columns":["email"]}"#;
        let item: WorkItem = serde_json::from_str(old).unwrap();
        assert_eq!(item.name, "orders");
        assert_eq!(item.spec.prod, Relation::parse("analytics.orders").unwrap());
        assert_eq!(
            item.spec.pr,
            Relation::parse("dbt_cloud_pr_1_2.orders").unwrap()
        );
        assert_eq!(item.spec.primary_key, ["id"]);
        assert_eq!(item.spec.filter.as_deref(), Some("id > 0"));
        assert_eq!(item.spec.exclude_columns, ["loaded_at"]);
        assert_eq!(item.spec.masked_columns, ["email"]);
        assert_eq!(item.count, None);
        let again: serde_json::Value = serde_json::to_value(&item).unwrap();
        let old: serde_json::Value = serde_json::from_str(old).unwrap();
        assert_eq!(again, old, "the stored shape is unchanged");
        // A counted item with only the relations (every list and the filter defaulted).
        let counted = r#"{"name":"fresh","prod":{"database":null,"schema":"pr","name":"fresh"},"pr":{"database":null,"schema":"pr","name":"fresh"},"count":"pr"}"#;
        let item: WorkItem = serde_json::from_str(counted).unwrap();
        assert_eq!(item.count, Some(CountSide::Pr));
        assert!(item.spec.primary_key.is_empty() && item.spec.filter.is_none());
    }
}
