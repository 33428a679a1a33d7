//! Step 4 of a diff: example rows of each kind of difference (only in prod, only in the
//! PR, changed). A windowed or sampled pass carries them itself; after a plain exact pass
//! the example keys' rows are read from both sides. Values of masked columns are replaced
//! before they leave this module.

use std::collections::HashMap;

use super::aggregates::{Aggregates, JoinAgg};
use super::query::{ComparePlan, ExampleRow, Side};
use super::{DiffError, DiffRequest, SampleRow, SampleValue};
use crate::warehouse::{Row, Warehouse};

/// Exact diffs of tables this large (by the catalog's estimate) take their example rows
/// from a small keyed sample run beside the join (see [`super::diff`]): reading them by
/// key afterwards scans each side again (≈ 1.1 s at 10 M rows, 0.15–0.3 s at 1 M), while
/// the sample runs on the connection that is idle once the counts are done. Below this
/// size that scan costs a few tens of milliseconds.
pub(super) const EXAMPLE_SAMPLE_MIN_ROWS: u64 = 500_000;

/// Keys in that sample: enough to hold examples of any difference above a few in 10 000
/// rows; rarer kinds are read by key after the join.
pub(super) const EXAMPLE_SAMPLE_KEYS: f64 = 20_000.0;

/// Where an example row comes from.
#[derive(Debug, PartialEq, Eq)]
enum Example {
    /// Carried by a pass, in [`ExampleRow`]'s format.
    Carried(String),
    /// A key text whose rows are read from both sides.
    Key(String),
}

/// The example rows of a join pass: carried by the pass itself (a sample's, or a windowed
/// one), or read by key from both sides after a plain exact one. With `stand_in`, a
/// sample's carried rows replace the plain pass's examples wherever the sample has one of
/// the same aggregate; the rest are read by key. At most `sample_rows` per kind.
pub(super) async fn samples(
    wh: &dyn Warehouse,
    plan: &ComparePlan,
    req: &DiffRequest,
    agg: &Aggregates,
    carried: bool,
    stand_in: Option<&Aggregates>,
) -> Result<Vec<SampleRow>, DiffError> {
    if req.sample_rows == 0 {
        return Ok(Vec::new());
    }
    let wanted = wanted_examples(plan, req, agg, carried, stand_in);
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<String> = wanted
        .iter()
        .filter_map(|(_, w)| match w {
            Example::Key(k) => Some(k.clone()),
            Example::Carried(_) => None,
        })
        .collect();
    let (prod, pr) = read_by_key(wh, plan, &keys).await?;
    let rows = example_rows(plan, wanted, &prod, &pr);
    Ok(rows
        .into_iter()
        .map(|(kind, row)| masked_sample(plan, req, kind, row))
        .collect())
}

/// Each example aggregate, by kind: a row carried by a pass (this one's, or the stand-in
/// sample's for the same aggregate), or a key to read; distinct, at most `sample_rows` per
/// kind.
fn wanted_examples(
    plan: &ComparePlan,
    req: &DiffRequest,
    agg: &Aggregates,
    carried: bool,
    stand_in: Option<&Aggregates>,
) -> Vec<(&'static str, Example)> {
    let mut names = vec![
        ("only_prod", JoinAgg::ExOnlyProdMin),
        ("only_prod", JoinAgg::ExOnlyProdMax),
        ("only_pr", JoinAgg::ExOnlyPrMin),
        ("only_pr", JoinAgg::ExOnlyPrMax),
        ("changed", JoinAgg::ExChangedMin),
    ];
    names.extend((0..plan.columns.len()).map(|i| ("changed", JoinAgg::ExChangedCol(i))));
    names.push(("changed", JoinAgg::ExChangedMax));
    let mut wanted: Vec<(&'static str, Example)> = Vec::new();
    for (kind, name) in names {
        let Some(text) = agg.text(name) else {
            continue;
        };
        let example = match stand_in.and_then(|s| s.text(name)) {
            Some(row) => Example::Carried(row),
            None if carried => Example::Carried(text),
            None => Example::Key(text),
        };
        if !wanted.iter().any(|(_, w)| *w == example) {
            wanted.push((kind, example));
        }
    }
    let mut per_kind: HashMap<&str, usize> = HashMap::new();
    wanted.retain(|(kind, _)| {
        let n = per_kind.entry(kind).or_default();
        *n += 1;
        *n <= req.sample_rows
    });
    wanted
}

/// Rows by key text, per side: the rows of `keys` read from both sides, in one statement
/// each.
async fn read_by_key(
    wh: &dyn Warehouse,
    plan: &ComparePlan,
    keys: &[String],
) -> Result<(HashMap<String, Row>, HashMap<String, Row>), DiffError> {
    if keys.is_empty() {
        return Ok((HashMap::new(), HashMap::new()));
    }
    let d = wh.dialect();
    let limit = keys.len() * 2;
    let (ps, qs) = (
        plan.rows_by_key_query(d, Side::Prod, keys, limit),
        plan.rows_by_key_query(d, Side::Pr, keys, limit),
    );
    let (prod_rows, pr_rows) = futures::try_join!(wh.query(&ps), wh.query(&qs))?;
    let index = |rows: Vec<Row>| -> HashMap<String, Row> {
        rows.into_iter()
            .filter_map(|r| r.first().cloned().flatten().map(|k| (k, r)))
            .collect()
    };
    Ok((index(prod_rows), index(pr_rows)))
}

/// The wanted examples as rows: carried ones read back, keyed ones from the rows read.
fn example_rows(
    plan: &ComparePlan,
    wanted: Vec<(&'static str, Example)>,
    prod: &HashMap<String, Row>,
    pr: &HashMap<String, Row>,
) -> Vec<(&'static str, ExampleRow)> {
    let nk = plan.key.len();
    let nc = plan.columns.len();
    let mut rows = Vec::new();
    for (kind, example) in wanted {
        match example {
            Example::Carried(text) => match ExampleRow::parse(&text, nk, nc) {
                Some(row) => rows.push((kind, row)),
                // Only a warehouse whose text functions disagree with the format gets
                // here: an example row is worth a warning, not a failed diff.
                None => tracing::warn!(kind, "an example row could not be read back; left out"),
            },
            Example::Key(k) => {
                let (p, q) = (prod.get(&k), pr.get(&k));
                let Some(any) = p.or(q) else { continue };
                let side = |r: Option<&Row>| -> Vec<Option<String>> {
                    (0..nc)
                        .map(|i| r.and_then(|r| r[1 + nk + i].clone()))
                        .collect()
                };
                rows.push((
                    kind,
                    ExampleRow {
                        key: (0..nk).map(|i| any[1 + i].clone()).collect(),
                        prod: side(p),
                        pr: side(q),
                    },
                ));
            }
        }
    }
    rows
}

/// An example row as the result shows it: masked columns' values replaced, and for a
/// changed row only the columns that differ.
fn masked_sample(
    plan: &ComparePlan,
    req: &DiffRequest,
    kind: &'static str,
    row: ExampleRow,
) -> SampleRow {
    let masked = |name: &str| {
        req.masked_columns
            .iter()
            .any(|m| m.eq_ignore_ascii_case(name))
    };
    let mask = |name: &str, v: Option<String>| {
        if masked(name) {
            v.map(|_| "••••".to_owned())
        } else {
            v
        }
    };
    let key = plan
        .key
        .iter()
        .zip(row.key)
        .map(|(kc, v)| (kc.name.clone(), mask(&kc.name, v)))
        .collect();
    let mut values = Vec::new();
    for ((c, pv), qv) in plan.columns.iter().zip(row.prod).zip(row.pr) {
        if kind == "changed" && pv == qv {
            continue;
        }
        values.push(SampleValue {
            column: c.name.clone(),
            prod: mask(&c.name, pv),
            pr: mask(&c.name, qv),
        });
    }
    SampleRow { kind, key, values }
}
