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
