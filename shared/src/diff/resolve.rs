//! Step 1 of a diff: both relations' columns and declared types from the catalog, the
//! request resolved against them (key columns, included and excluded columns, the
//! dialect's normalisation where types differ) into a [`ComparePlan`], and the schema
//! changes that fall out of the two lists.

use super::query::{self, CompareColumn, ComparePlan, KeyColumn};
use super::{ColumnDiff, DiffError, DiffRequest, SchemaDiff};
use crate::sql::filter::SafeFilter;
use crate::sql::{ColumnType, Dialect, Relation, TypeFamily};
use crate::warehouse::Warehouse;

/// A relation's columns and their declared types, in table order.
type Catalog = [(String, ColumnType)];

/// Looks `name` up in `cols`: exact match first, then a unique case-insensitive match
/// (warehouses that upper-case unquoted names).
fn resolve<'a>(cols: &'a Catalog, name: &str) -> Option<&'a (String, ColumnType)> {
    cols.iter().find(|(n, _)| n == name).or_else(|| {
        let mut it = cols.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name));
        match (it.next(), it.next()) {
            (Some(c), None) => Some(c),
            _ => None,
        }
    })
}

/// The columns of `rel` and their types, from the catalog; a relation with no columns
/// visible is unknown. The one place the engine reads a catalog.
pub(super) async fn columns(
    wh: &dyn Warehouse,
    rel: &Relation,
    side: &'static str,
) -> Result<Vec<(String, ColumnType)>, DiffError> {
    let d = wh.dialect();
    let rows = wh.columns(rel).await?;
    if rows.is_empty() {
        return Err(DiffError::UnknownRelation {
            side,
            relation: rel.to_string(),
        });
    }
    rows.into_iter()
        .map(
            |r| match (r.first().cloned().flatten(), r.get(1).cloned().flatten()) {
                (Some(name), ty) => Ok((name, d.parse_type(ty.as_deref().unwrap_or("")))),
                _ => Err(DiffError::Protocol(
                    "catalog row without a column name".into(),
                )),
            },
        )
        .collect()
}

/// The request resolved against both catalogs.
pub(super) struct Resolved {
    pub(super) plan: ComparePlan,
    pub(super) key_names: Vec<String>,
    pub(super) columns: Vec<ColumnDiff>,
    pub(super) schema: SchemaDiff,
    pub(super) notes: Vec<String>,
}

/// Reads both catalogs and resolves `req` against them.
pub(super) async fn resolve_relations(
    wh: &dyn Warehouse,
    req: &DiffRequest,
    filter: Option<&SafeFilter>,
) -> Result<Resolved, DiffError> {
    let (prod_cols, pr_cols) =
        futures::try_join!(columns(wh, &req.prod, "prod"), columns(wh, &req.pr, "PR"))?;
    resolve_request(wh.dialect(), req, filter, &prod_cols, &pr_cols)
}

pub(super) fn resolve_request(
    d: &dyn Dialect,
    req: &DiffRequest,
    filter: Option<&SafeFilter>,
    prod_cols: &Catalog,
    pr_cols: &Catalog,
) -> Result<Resolved, DiffError> {
    let mut schema = added_and_removed(prod_cols, pr_cols);
    let key = resolve_key(d, req, prod_cols, pr_cols)?;
    let included = included_columns(req, prod_cols, pr_cols)?;
    let (excluded, notes) = excluded_columns(req, &key.names, prod_cols, pr_cols);
    let mut columns = Vec::new();
    let mut compare = Vec::new();
    for (name, pt) in prod_cols {
        let Some((_, qt)) = pr_cols.iter().find(|(n, _)| n == name) else {
            continue;
        };
        if !pt.same_as(qt) {
            schema.type_changed.push(name.clone());
        }
        let left_out = key.names.contains(name)
            || excluded.contains(name)
            || req.column_ignore.as_ref().is_some_and(|f| f(name))
            || included.as_ref().is_some_and(|inc| !inc.contains(name));
        if left_out {
            continue;
        }
        compare.push(compare_column(d, name, pt, qt));
        columns.push(ColumnDiff {
            name: name.clone(),
            prod_type: pt.raw.clone(),
            pr_type: qt.raw.clone(),
            changed: None,
            changed_pct: None,
            changed_pct_interval: None,
            nulls: None,
            tolerance: None,
        });
    }
    let mut notes = notes;
    let left_out = |name: &str| {
        key.names.iter().any(|k| k == name)
            || excluded.iter().any(|e| e == name)
            || req.column_ignore.as_ref().is_some_and(|f| f(name))
    };
    apply_remaps(
        d,
        req,
        prod_cols,
        pr_cols,
        left_out,
        included.as_deref(),
        &mut Pairs {
            schema: &mut schema,
            compare: &mut compare,
            columns: &mut columns,
            notes: &mut notes,
        },
    );
    apply_tolerance(
        req,
        prod_cols,
        pr_cols,
        &mut compare,
        &mut columns,
        &mut notes,
    );
    // Rename candidates: only a keyed diff matches rows to compare them on.
    let renames = if key.columns.is_empty() {
        Vec::new()
    } else {
        let only = |cols: &Catalog, names: &[String]| -> Vec<(String, ColumnType)> {
            cols.iter()
                .filter(|(n, _)| names.contains(n))
                .cloned()
                .collect()
        };
        let compared = |name: &str| {
            !excluded.iter().any(|e| e == name)
                && !req.column_ignore.as_ref().is_some_and(|f| f(name))
                && included
                    .as_ref()
                    .is_none_or(|inc| inc.iter().any(|i| i == name))
        };
        super::renames::candidates(
            d,
            &only(prod_cols, &schema.removed),
            &only(pr_cols, &schema.added),
            compared,
        )
    };
    Ok(Resolved {
        plan: ComparePlan {
            prod: req.prod.clone(),
            pr: req.pr.clone(),
            key: key.columns,
            columns: compare,
            filter: filter.map(|f| f.sql().to_owned()),
            integer_key: key.integer,
            group: None,
            whole_number_key: key.whole_number,
            renames,
        },
        key_names: key.names,
        columns,
        schema,
        notes,
    })
}

/// Columns only in prod (removed) and only in the PR (added); type changes are found
/// while the common columns are resolved.
fn added_and_removed(prod_cols: &Catalog, pr_cols: &Catalog) -> SchemaDiff {
    let mut schema = SchemaDiff::default();
    for (n, _) in prod_cols {
        if !pr_cols.iter().any(|(m, _)| m == n) {
            schema.removed.push(n.clone());
        }
    }
    for (n, _) in pr_cols {
        if !prod_cols.iter().any(|(m, _)| m == n) {
            schema.added.push(n.clone());
        }
    }
    schema
}

/// The key, resolved on both sides.
struct ResolvedKey {
    columns: Vec<KeyColumn>,
    /// Key column names as prod spells them.
    names: Vec<String>,
    /// A single integer column on both sides.
    integer: bool,
    /// A single whole-number column (integer or decimal of scale 0) on both sides.
    whole_number: bool,
}

fn resolve_key(
    d: &dyn Dialect,
    req: &DiffRequest,
    prod_cols: &Catalog,
    pr_cols: &Catalog,
) -> Result<ResolvedKey, DiffError> {
    let mut key = Vec::new();
    let mut names = Vec::new();
    let mut families = Vec::new();
    for k in &req.primary_key {
        let p = key_column_on(prod_cols, k, "prod", &req.prod)?;
        let q = key_column_on(pr_cols, k, "PR", &req.pr)?;
        let (pq, qq) = (d.quote_identifier(&p.0), d.quote_identifier(&q.0));
        key.push(KeyColumn {
            name: p.0.clone(),
            prod_expr: d.normalise(&pq, &p.1, &q.1),
            pr_expr: d.normalise(&qq, &q.1, &p.1),
            prod_joined: d.normalise(&format!("{}.{pq}", query::PROD_ALIAS), &p.1, &q.1),
            pr_joined: d.normalise(&format!("{}.{qq}", query::PR_ALIAS), &q.1, &p.1),
        });
        names.push(p.0.clone());
        families.push((p.1.family, q.1.family));
    }
    let whole = |f: TypeFamily| {
        matches!(
            f,
            TypeFamily::Integer | TypeFamily::Decimal { scale: Some(0) }
        )
    };
    let single = key.len() == 1;
    Ok(ResolvedKey {
        integer: single && families[0] == (TypeFamily::Integer, TypeFamily::Integer),
        whole_number: single && whole(families[0].0) && whole(families[0].1),
        columns: key,
        names,
    })
}

/// Key column `name` on one side, or the error naming the columns there are.
fn key_column_on<'a>(
    cols: &'a Catalog,
    name: &str,
    side: &'static str,
    relation: &Relation,
) -> Result<&'a (String, ColumnType), DiffError> {
    resolve(cols, name).ok_or_else(|| DiffError::MissingKeyColumn {
        side,
        relation: relation.to_string(),
        column: name.to_owned(),
        available: cols
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// `include_columns` resolved (`None`: all columns); a name in neither relation is an
/// error.
fn included_columns(
    req: &DiffRequest,
    prod_cols: &Catalog,
    pr_cols: &Catalog,
) -> Result<Option<Vec<String>>, DiffError> {
    if req.include_columns.is_empty() {
        return Ok(None);
    }
    let mut v = Vec::new();
    for c in &req.include_columns {
        match resolve(prod_cols, c).or_else(|| resolve(pr_cols, c)) {
            Some((n, _)) => v.push(n.clone()),
            None => return Err(DiffError::UnknownIncludedColumn { column: c.clone() }),
        }
    }
    Ok(Some(v))
}

/// `exclude_columns` resolved, and notes on names that are keys or in neither relation.
fn excluded_columns(
    req: &DiffRequest,
    key_names: &[String],
    prod_cols: &Catalog,
    pr_cols: &Catalog,
) -> (Vec<String>, Vec<String>) {
    let mut excluded = Vec::new();
    let mut notes = Vec::new();
    for c in &req.exclude_columns {
        match resolve(prod_cols, c).or_else(|| resolve(pr_cols, c)) {
            Some((n, _)) if key_names.contains(n) => notes.push(format!(
                "`{n}` is a key column and is always compared (exclude_columns ignored for it)"
            )),
            Some((n, _)) => excluded.push(n.clone()),
            None => notes.push(format!(
                "exclude_columns names `{c}`, which is in neither relation"
            )),
        }
    }
    (excluded, notes)
}

/// A column present on both sides: its normalised expressions over the bare relation and
/// over the join's aliased row.
fn compare_column(d: &dyn Dialect, name: &str, pt: &ColumnType, qt: &ColumnType) -> CompareColumn {
    compare_pair(d, name, name, pt, qt)
}

/// [`compare_column`] for a column named `prod_name` in prod and `pr_name` in the PR
/// (a rename candidate).
pub(super) fn compare_pair(
    d: &dyn Dialect,
    prod_name: &str,
    pr_name: &str,
    pt: &ColumnType,
    qt: &ColumnType,
) -> CompareColumn {
    let (qp, qq) = (d.quote_identifier(prod_name), d.quote_identifier(pr_name));
    let (raw_p, raw_q) = (
        format!("{}.{qp}", query::PROD_ALIAS),
        format!("{}.{qq}", query::PR_ALIAS),
    );
    let (prod_joined, pr_joined) = (d.normalise(&raw_p, pt, qt), d.normalise(&raw_q, qt, pt));
    let exact_numbers =
        |t: &ColumnType| matches!(t.family, TypeFamily::Integer | TypeFamily::Decimal { .. });
    // Both sides normalise to the same value function of the raw value (round to the
    // coarser scale, or widen to BIGINT): equal raw values cannot differ once
    // normalised. See `CompareColumn::raw_joined`.
    let raw_joined =
        (exact_numbers(pt) && exact_numbers(qt) && (prod_joined != raw_p || pr_joined != raw_q))
            .then(|| (raw_p.clone(), raw_q.clone()));
    CompareColumn {
        name: prod_name.to_owned(),
        prod_expr: d.normalise(&qp, pt, qt),
        pr_expr: d.normalise(&qq, qt, pt),
        prod_joined,
        pr_joined,
        raw_joined,
        tolerance: None,
    }
}

/// What [`apply_remaps`] writes to.
struct Pairs<'a> {
    schema: &'a mut SchemaDiff,
    compare: &'a mut Vec<CompareColumn>,
    columns: &'a mut Vec<ColumnDiff>,
    notes: &'a mut Vec<String>,
}

/// The PR's remappings: each pair whose old name prod has (and the PR does not) and whose
/// new name the PR has (and prod does not) is compared as one column under its new name,
/// the way a detected rename is, and leaves the added and removed lists. A remapping that
/// does not fit is dropped, with a note when its glob named the model.
fn apply_remaps(
    d: &dyn Dialect,
    req: &DiffRequest,
    prod_cols: &Catalog,
    pr_cols: &Catalog,
    left_out: impl Fn(&str) -> bool,
    included: Option<&[String]>,
    out: &mut Pairs<'_>,
) {
    for m in &req.remap {
        let (p, q) = (resolve(prod_cols, &m.from), resolve(pr_cols, &m.to));
        let fits = match (p, q) {
            (None, _) => Err(format!("production has no column `{}`", m.from)),
            (_, None) => Err(format!("the PR has no column `{}`", m.to)),
            (Some((pn, _)), _) if !out.schema.removed.contains(pn) => {
                Err(format!("`{pn}` is still in the PR (or already paired)"))
            }
            (_, Some((qn, _))) if !out.schema.added.contains(qn) => Err(format!(
                "`{qn}` is already in production (or already paired)"
            )),
            (Some((pn, _)), Some((qn, _)))
                if left_out(pn)
                    || left_out(qn)
                    || included.is_some_and(|inc| !inc.iter().any(|i| i == pn || i == qn)) =>
            {
                Err("the columns are not compared (a key, excluded, or ignored)".to_owned())
            }
            (Some(p), Some(q)) => Ok((p, q)),
        };
        let ((pn, pt), (qn, qt)) = match fits {
            Ok(pair) => pair,
            Err(why) => {
                if m.explicit {
                    out.notes.push(format!(
                        "column remapping `{}` → `{}` from the PR does not apply to this model: {why}",
                        m.from, m.to
                    ));
                }
                continue;
            }
        };
        let mut column = compare_pair(d, pn, qn, pt, qt);
        column.name = qn.clone();
        out.compare.push(column);
        out.columns.push(ColumnDiff {
            name: qn.clone(),
            prod_type: pt.raw.clone(),
            pr_type: qt.raw.clone(),
            changed: None,
            changed_pct: None,
            changed_pct_interval: None,
            nulls: None,
            tolerance: None,
        });
        out.schema.removed.retain(|n| n != pn);
        out.schema.added.retain(|n| n != qn);
        out.schema.renamed.push(super::Renamed {
            from: pn.clone(),
            to: qn.clone(),
            agreement_pct: 0.0,
            from_pr: true,
        });
    }
}

/// Gives each compared numeric column named in `req.tolerance` its bound; any other name
/// (not a column, not compared, not numeric on both sides) gets a note instead.
fn apply_tolerance(
    req: &DiffRequest,
    prod_cols: &Catalog,
    pr_cols: &Catalog,
    compare: &mut [CompareColumn],
    columns: &mut [ColumnDiff],
    notes: &mut Vec<String>,
) {
    let numeric = |t: &ColumnType| {
        matches!(
            t.family,
            TypeFamily::Integer | TypeFamily::Decimal { .. } | TypeFamily::Float { .. }
        )
    };
    for (name, tol) in &req.tolerance {
        let Some((found, pt)) = resolve(prod_cols, name).or_else(|| resolve(pr_cols, name)) else {
            notes.push(format!(
                "tolerance for `{name}` ignored: no such column in either relation"
            ));
            continue;
        };
        let Some(i) = compare.iter().position(|c| &c.name == found) else {
            notes.push(format!(
                "tolerance for `{found}` ignored: the column is not compared (a key, excluded, or on one side only)"
            ));
            continue;
        };
        let qt = resolve(pr_cols, found).map(|(_, t)| t).unwrap_or(pt);
        if !numeric(pt) || !numeric(qt) {
            notes.push(format!(
                "tolerance for `{found}` ignored: the column is not numeric ({} in prod, {} in the PR); compared exactly",
                pt.raw, qt.raw
            ));
            continue;
        }
        compare[i].tolerance = Some(*tol);
        columns[i].tolerance = Some(*tol);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::remap::ColumnRemap;
    use crate::sql::Postgres;

    fn cat(c: &[(&str, &str)]) -> Vec<(String, ColumnType)> {
        c.iter()
            .map(|(n, t)| (n.to_string(), Postgres.parse_type(t)))
            .collect()
    }

    fn remap(from: &str, to: &str, explicit: bool) -> ColumnRemap {
        ColumnRemap {
            from: from.into(),
            to: to.into(),
            explicit,
        }
    }

    fn resolved(req: &DiffRequest, prod: &[(&str, &str)], pr: &[(&str, &str)]) -> Resolved {
        resolve_request(&Postgres, req, None, &cat(prod), &cat(pr)).expect("resolves")
    }

    fn request(remaps: Vec<ColumnRemap>) -> DiffRequest {
        let mut req = DiffRequest::new(
            Relation::new(None, Some("p"), "t"),
            Relation::new(None, Some("q"), "t"),
            vec!["id".into()],
        );
        req.remap = remaps;
        req
    }

    #[test]
    fn a_remapped_pair_is_compared_as_one_column_under_its_new_name() {
        let req = request(vec![remap("legacy_code", "code", false)]);
        let r = resolved(
            &req,
            &[("id", "integer"), ("legacy_code", "text"), ("gone", "text")],
            &[
                ("id", "integer"),
                ("code", "varchar(10)"),
                ("fresh", "text"),
            ],
        );
        assert_eq!(r.schema.removed, ["gone"]);
        assert_eq!(r.schema.added, ["fresh"]);
        assert_eq!(r.schema.renamed.len(), 1);
        let rn = &r.schema.renamed[0];
        assert_eq!(
            (rn.from.as_str(), rn.to.as_str(), rn.from_pr),
            ("legacy_code", "code", true)
        );
        let c = r.plan.columns.last().expect("a compared column");
        assert_eq!(c.name, "code");
        // Each side reads its own name (normalised: text against varchar).
        assert!(
            c.prod_joined.contains("p.\"legacy_code\""),
            "{}",
            c.prod_joined
        );
        assert!(c.pr_joined.contains("q.\"code\""), "{}", c.pr_joined);
        let col = r.columns.last().expect("a result column");
        assert_eq!(
            (
                col.name.as_str(),
                col.prod_type.as_str(),
                col.pr_type.as_str()
            ),
            ("code", "text", "varchar(10)")
        );
        // The remapped columns are no rename candidates; the rest still are.
        let pairs: Vec<(&str, &str)> = r
            .plan
            .renames
            .iter()
            .map(|c| (c.from.as_str(), c.to.as_str()))
            .collect();
        assert_eq!(pairs, [("gone", "fresh")]);
        assert!(r.notes.is_empty(), "{:?}", r.notes);
    }

    #[test]
    fn a_remapping_that_does_not_fit_is_dropped_with_a_note_only_when_its_glob_named_the_model() {
        let prod = [
            ("id", "integer"),
            ("a", "integer"),
            ("kept", "integer"),
            ("x", "integer"),
        ];
        let pr = [
            ("id", "integer"),
            ("b", "integer"),
            ("kept", "integer"),
            ("x", "integer"),
        ];
        let req = request(vec![
            remap("nope", "b", true),
            remap("a", "nope", false),
            remap("kept", "b", true),
            remap("a", "x", true),
        ]);
        let r = resolved(&req, &prod, &pr);
        assert!(r.schema.renamed.is_empty());
        assert_eq!(
            (r.schema.removed.as_slice(), r.schema.added.as_slice()),
            (&["a".to_string()][..], &["b".to_string()][..])
        );
        assert_eq!(r.notes.len(), 3, "{:?}", r.notes);
        assert!(
            r.notes[0].contains("production has no column `nope`"),
            "{:?}",
            r.notes
        );
        assert!(
            r.notes[1].contains("`kept` is still in the PR"),
            "{:?}",
            r.notes
        );
        assert!(
            r.notes[2].contains("`x` is already in production"),
            "{:?}",
            r.notes
        );

        // Excluded, and a column takes part in one pair at most.
        let mut req = request(vec![remap("a", "b", true)]);
        req.exclude_columns = vec!["b".into()];
        let r = resolved(&req, &prod, &pr);
        assert!(r.schema.renamed.is_empty());
        assert!(
            r.notes.iter().any(|n| n.contains("not compared")),
            "{:?}",
            r.notes
        );
        let req = request(vec![remap("a", "b", false), remap("a", "b", true)]);
        let r = resolved(&req, &prod, &pr);
        assert_eq!(r.schema.renamed.len(), 1);
        assert!(r.notes[0].contains("already paired"), "{:?}", r.notes);
    }

    #[test]
    fn names_match_the_catalog_case_insensitively_when_unique() {
        let req = request(vec![remap("legacy_code", "code", false)]);
        let r = resolved(
            &req,
            &[("ID", "integer"), ("LEGACY_CODE", "text")],
            &[("ID", "integer"), ("CODE", "text")],
        );
        assert_eq!(r.schema.renamed[0].from, "LEGACY_CODE");
        assert_eq!(r.schema.renamed[0].to, "CODE");
        assert!(r.schema.removed.is_empty() && r.schema.added.is_empty());
    }
}
