//! The SQL of a model diff, built from a resolved [`ComparePlan`] and a [`Dialect`].
//!
//! Every statement of every step lives here rather than beside the step that runs it: the
//! builders share their fragments (a side's filtered select, the sample bucket, the key's
//! text), and one plan exercises all of them, so each statement is snapshot-tested for
//! every dialect and parsed back with sqlparser without a warehouse. The join pass, the
//! largest, is in its own file (`query/join.rs`), written in named pieces that read top-down.

mod join;

pub use super::aggregates::{AggQuery, JoinAgg};
use crate::sql::{Dialect, Relation};

/// The join's alias for the production side: [`KeyColumn::prod_joined`] and
/// [`CompareColumn::prod_joined`] qualify columns with it.
pub const PROD_ALIAS: &str = "p";
/// The join's alias for the PR side.
pub const PR_ALIAS: &str = "q";

/// One key column: its normalised expression on each side, over the bare relation and
/// over the join's aliased row ([`PROD_ALIAS`], [`PR_ALIAS`]).
#[derive(Debug, Clone)]
pub struct KeyColumn {
    pub name: String,
    pub prod_expr: String,
    pub pr_expr: String,
    pub prod_joined: String,
    pub pr_joined: String,
}

/// One compared (non-key) column: its normalised expression on each side, over the bare
/// relation and over the join's aliased row.
#[derive(Debug, Clone)]
pub struct CompareColumn {
    pub name: String,
    pub prod_expr: String,
    pub pr_expr: String,
    pub prod_joined: String,
    pub pr_joined: String,
    /// The raw columns over the join's aliased row, when the two sides are exact numerics
    /// of different declared types (normalised by rounding both to the coarser scale, or
    /// to `BIGINT`). Equal raw values normalise to equal values, so the join tests `=` on
    /// them first and normalises only the rows where they differ: nearly every row skips
    /// the rounding.
    pub raw_joined: Option<(String, String)>,
    /// Values within this bound of each other are not a change (numeric columns only).
    pub tolerance: Option<super::Tolerance>,
}

/// A column removed in the PR and one added, tested in the join for a rename
/// (see [`super::renames`]).
#[derive(Debug, Clone)]
pub struct RenameCandidate {
    pub from: String,
    pub to: String,
    pub prod_type: String,
    pub pr_type: String,
    /// `from` on the prod side and `to` on the PR side, normalised as a compared column.
    pub column: CompareColumn,
}

/// Everything the query builders need, already resolved against both catalogs.
#[derive(Debug, Clone)]
pub struct ComparePlan {
    pub prod: Relation,
    pub pr: Relation,
    pub key: Vec<KeyColumn>,
    pub columns: Vec<CompareColumn>,
    pub filter: Option<String>,
    /// Both sides' key is a single integer column: sample with the integer hash.
    pub integer_key: bool,
    /// A wide model's column group: the join reports changed counts and example keys for
    /// these columns only (by their index in `columns`), tests every column for the row's
    /// `changed`, and carries no example rows (they are read by key afterwards). `None`:
    /// every column. See [`ComparePlan::column_groups`].
    pub group: Option<std::ops::Range<usize>>,
    /// Both sides' key is a single whole-number column (an integer, or a decimal of scale
    /// 0, as every Snowflake integer is): example rows are looked up by number, which the
    /// warehouse can prune on, rather than by the key's text.
    pub whole_number_key: bool,
    /// Removed/added column pairs the join tests for a rename (the first column group's
    /// pass only).
    pub renames: Vec<RenameCandidate>,
}

/// Which side of the diff a fragment is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Prod,
    Pr,
}

/// Restricts a side to a hash bucket range: `bucket < threshold` of 2^32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleBucket {
    pub seed: u64,
    pub threshold: u64,
}

/// The kinds of join pass ([`ComparePlan::join_query`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// The relations joined as they are; example rows are read afterwards. Exact diffs.
    Plain,
    /// The same join, carrying the example rows' values up through it, and counting each
    /// side's distinct keys so the pass itself tells whether a key was duplicated
    /// (`p_keys`, `q_keys`): for samples, whose rows are few, so carrying and counting cost
    /// less than reading the examples afterwards.
    Carry,
    /// One representative per key value on each side, carrying the example rows: samples
    /// and tables with duplicate keys.
    Windowed,
}

/// A select list of `(expression, aggregate)` items: the SQL text and the aggregates in
/// order.
fn select_list(items: Vec<(String, JoinAgg)>) -> (String, Vec<JoinAgg>) {
    let sql = items
        .iter()
        .map(|(e, a)| format!("{e} AS {}", a.alias()))
        .collect::<Vec<_>>()
        .join(", ");
    (sql, items.into_iter().map(|(_, a)| a).collect())
}

/// One example row as a carrying join pass returns it (`pl`, the `Ex*` aggregates of [`JoinAgg`]): the
/// key's values, then each compared column's prod and PR value, all as text.
///
/// On the wire every value is `N` (NULL) or `V<length>:<text>`, the length in characters,
/// so any text survives, separators included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExampleRow {
    pub key: Vec<Option<String>>,
    pub prod: Vec<Option<String>>,
    pub pr: Vec<Option<String>>,
}

impl ExampleRow {
    /// Reads back a row of `nk` key columns and `nc` compared columns; `None` if `text` is
    /// not exactly that.
    pub fn parse(text: &str, nk: usize, nc: usize) -> Option<ExampleRow> {
        let mut rest = text;
        let mut next = || -> Option<Option<String>> {
            if let Some(r) = rest.strip_prefix('N') {
                rest = r;
                return Some(None);
            }
            let r = rest.strip_prefix('V')?;
            let (len, r) = r.split_once(':')?;
            let len: usize = len.parse().ok()?;
            let end = r.char_indices().nth(len).map_or(r.len(), |(i, _)| i);
            if r[..end].chars().count() != len {
                return None;
            }
            rest = &r[end..];
            Some(Some(r[..end].to_owned()))
        };
        let key = (0..nk).map(|_| next()).collect::<Option<Vec<_>>>()?;
        let mut prod = Vec::with_capacity(nc);
        let mut pr = Vec::with_capacity(nc);
        for _ in 0..nc {
            prod.push(next()?);
            pr.push(next()?);
        }
        rest.is_empty().then_some(ExampleRow { key, prod, pr })
    }
}

/// `a OR b OR …` as a balanced tree of parenthesised halves: its depth grows with the log
/// of the number of terms (SQLite refuses expressions deeper than 1 000).
fn balanced_or(terms: &[String]) -> String {
    match terms {
        [] => "1 = 0".to_owned(),
        [one] => one.clone(),
        _ => {
            let (a, b) = terms.split_at(terms.len() / 2);
            format!("({} OR {})", balanced_or(a), balanced_or(b))
        }
    }
}

fn alias_k(i: usize) -> String {
    format!("k{i}")
}

fn alias_c(i: usize) -> String {
    format!("c{i}")
}

fn alias_r(j: usize) -> String {
    format!("r{j}")
}

impl ComparePlan {
    /// The plan split into column groups of at most `size` reported columns, for a
    /// warehouse whose select lists cannot hold a pass over every column at once (see
    /// [`Dialect::max_reported_columns`]); `None` when one pass fits.
    pub fn column_groups(&self, size: Option<usize>) -> Option<Vec<ComparePlan>> {
        let size = size?.max(1);
        if self.columns.len() <= size {
            return None;
        }
        let n = self.columns.len();
        Some(
            (0..n)
                .step_by(size)
                .map(|start| ComparePlan {
                    group: Some(start..(start + size).min(n)),
                    ..self.clone()
                })
                .collect(),
        )
    }

    fn relation(&self, side: Side) -> &Relation {
        match side {
            Side::Prod => &self.prod,
            Side::Pr => &self.pr,
        }
    }

    /// The key's normalised expressions on one side.
    pub fn key_exprs(&self, side: Side) -> Vec<String> {
        self.key
            .iter()
            .map(|k| match side {
                Side::Prod => k.prod_expr.clone(),
                Side::Pr => k.pr_expr.clone(),
            })
            .collect()
    }

    fn bucket_expr(&self, d: &dyn Dialect, keys: &[String], seed: u64) -> String {
        if self.integer_key {
            d.hash_bucket_int(&keys[0], seed)
        } else {
            d.hash_bucket(&d.key_text(keys), seed)
        }
    }

    fn where_clause(&self, d: &dyn Dialect, side: Side, bucket: Option<SampleBucket>) -> String {
        self.where_clause_with(d, side, bucket, false)
    }

    /// The side's filter and sample bucket, and with `keyed` only rows whose key has no
    /// NULL (the join's input: NULL keys cannot match, the count queries count them).
    fn where_clause_with(
        &self,
        d: &dyn Dialect,
        side: Side,
        bucket: Option<SampleBucket>,
        keyed: bool,
    ) -> String {
        let mut conds = Vec::new();
        if let Some(f) = &self.filter {
            conds.push(format!("({f})"));
        }
        if keyed {
            conds.extend(
                self.key_exprs(side)
                    .iter()
                    .map(|k| format!("{k} IS NOT NULL")),
            );
        }
        if let Some(b) = bucket {
            conds.push(d.bucket_below(
                &self.bucket_expr(d, &self.key_exprs(side), b.seed),
                b.threshold,
            ));
        }
        if conds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conds.join(" AND "))
        }
    }

    /// `SELECT <keys> AS k0.., <columns> AS c0.. FROM <relation> WHERE <filter>`.
    pub fn side_select(&self, d: &dyn Dialect, side: Side, bucket: Option<SampleBucket>) -> String {
        self.side_select_with(d, side, bucket, false)
    }

    fn side_select_with(
        &self,
        d: &dyn Dialect,
        side: Side,
        bucket: Option<SampleBucket>,
        keyed: bool,
    ) -> String {
        let mut items = Vec::new();
        for (i, e) in self.key_exprs(side).iter().enumerate() {
            items.push(format!("{e} AS {}", alias_k(i)));
        }
        for (i, c) in self.columns.iter().enumerate() {
            let e = match side {
                Side::Prod => &c.prod_expr,
                Side::Pr => &c.pr_expr,
            };
            items.push(format!("{e} AS {}", alias_c(i)));
        }
        for (j, r) in self.renames.iter().enumerate() {
            let e = match side {
                Side::Prod => &r.column.prod_expr,
                Side::Pr => &r.column.pr_expr,
            };
            items.push(format!("{e} AS {}", alias_r(j)));
        }
        format!(
            "SELECT {} FROM {}{}",
            items.join(", "),
            d.relation(self.relation(side)),
            self.where_clause_with(d, side, bucket, keyed)
        )
    }

    /// Rows and rows with a NULL in the key, for one side: the cheap scan that tells whether
    /// the join's counts can be trusted.
    pub fn count_query(&self, d: &dyn Dialect, side: Side) -> String {
        self.count_query_named(d, side).sql
    }

    /// [`ComparePlan::count_query`] with its aggregates.
    pub fn count_query_named(&self, d: &dyn Dialect, side: Side) -> AggQuery {
        let mut items = vec![("COUNT(*)".to_owned(), JoinAgg::RowCount)];
        if !self.key.is_empty() {
            let null = self
                .key_exprs(side)
                .iter()
                .map(|k| format!("{k} IS NULL"))
                .collect::<Vec<_>>()
                .join(" OR ");
            items.push((d.count_where(&null), JoinAgg::NullKeys));
        }
        let (list, aggs) = select_list(items);
        AggQuery {
            sql: format!(
                "SELECT {list} FROM {}{}",
                d.relation(self.relation(side)),
                self.where_clause(d, side, None)
            ),
            aggs,
        }
    }

    /// Per compared column, rows where it is NULL: the profile of a model without a key.
    pub fn profile_query(&self, d: &dyn Dialect, side: Side) -> String {
        self.profile_query_named(d, side).sql
    }

    /// [`ComparePlan::profile_query`] with its aggregates.
    pub fn profile_query_named(&self, d: &dyn Dialect, side: Side) -> AggQuery {
        let mut items = vec![("COUNT(*)".to_owned(), JoinAgg::RowCount)];
        for (i, c) in self.columns.iter().enumerate() {
            let e = match side {
                Side::Prod => &c.prod_expr,
                Side::Pr => &c.pr_expr,
            };
            items.push((d.count_where(&format!("{e} IS NULL")), JoinAgg::NullsCol(i)));
        }
        let (list, aggs) = select_list(items);
        AggQuery {
            sql: format!(
                "SELECT {list} FROM {}{}",
                d.relation(self.relation(side)),
                self.where_clause(d, side, None)
            ),
            aggs,
        }
    }

    /// The one pass over the FULL OUTER JOIN on the key that yields every count.
    ///
    /// Only rows whose key has no NULL enter the join (NULL keys cannot match; the count
    /// queries count them), so a side is present in a joined row exactly when its first
    /// key column is not NULL. The join runs in a derived table that works out, once per
    /// joined row, the keys of both sides and whether each compared column differs (`d0`,
    /// `d1`, … as booleans); the aggregates above it only test those columns. On
    /// PostgreSQL an `OFFSET 0` fence keeps the planner from inlining the comparisons back
    /// into every aggregate.
    ///
    /// [`JoinKind::Plain`]: the relations are joined as they are, each side a bare
    /// `SELECT *` with the filter (no projection below the join: the planner flattens it
    /// and the scans hand their rows straight to the join). Its counts are exact only when
    /// no key is duplicated; the engine checks that from the results before it trusts them
    /// (see [`crate::diff`]). [`JoinKind::Carry`] is the same join carrying example rows
    /// and counting each side's distinct keys (`p_keys`, `q_keys`), so a sample tells by
    /// itself whether it holds a duplicated key.
    ///
    /// [`JoinKind::Windowed`]: each side first keeps one representative row per key value, carrying `dn`,
    /// the number of rows that share it. The join then sees unique keys on both sides, so
    /// nothing can be multiplied; rows of duplicated keys are counted (`dn`) but never
    /// matched, and a unique key whose counterpart is duplicated is counted as
    /// `unmatchable`. Used when a sampled or a plain pass found duplicates.
    pub fn join_query(
        &self,
        d: &dyn Dialect,
        kind: JoinKind,
        bucket: Option<SampleBucket>,
    ) -> String {
        self.join_query_named(d, kind, bucket).sql
    }

    /// The rows of one side whose key text is one of `keys`: the sample rows of a report.
    /// Every column comes back as text: the key text first, then the key columns, then the
    /// compared columns.
    pub fn rows_by_key_query(
        &self,
        d: &dyn Dialect,
        side: Side,
        keys: &[String],
        limit: usize,
    ) -> String {
        let nk = self.key.len();
        let key_cols: Vec<String> = (0..nk).map(|i| format!("s.{}", alias_k(i))).collect();
        let mut items = vec![format!("{} AS key_text", d.key_text(&key_cols))];
        for k in &key_cols {
            items.push(d.cast_to_text(k));
        }
        for i in 0..self.columns.len() {
            items.push(d.cast_to_text(&format!("s.{}", alias_c(i))));
        }
        let list = keys
            .iter()
            .map(|k| d.string_literal(k))
            .collect::<Vec<_>>()
            .join(", ");
        let cond = if self.whole_number_key && keys.iter().all(|k| k.parse::<i64>().is_ok()) {
            format!("s.{} IN ({})", alias_k(0), keys.join(", "))
        } else {
            format!("{} IN ({list})", d.key_text(&key_cols))
        };
        d.limit(
            &format!(
                "SELECT {} FROM ({}) s WHERE {cond}",
                items.join(", "),
                self.side_select(d, side, None)
            ),
            limit,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::ExampleRow;

    #[test]
    fn example_rows_read_back_any_text_and_nulls() {
        let text = "V2:42V3:a:bNV0:V4:x😀Vy";
        let row = ExampleRow::parse(text, 1, 2).expect("parses");
        assert_eq!(row.key, vec![Some("42".to_owned())]);
        assert_eq!(row.prod, vec![Some("a:b".to_owned()), Some(String::new())]);
        assert_eq!(row.pr, vec![None, Some("x😀Vy".to_owned())]);
    }

    #[test]
    fn example_rows_of_the_wrong_shape_are_refused() {
        assert_eq!(ExampleRow::parse("V2:42", 1, 1), None, "too short");
        assert_eq!(ExampleRow::parse("V2:42NNN", 1, 1), None, "too long");
        assert_eq!(
            ExampleRow::parse("V9:42", 1, 0),
            None,
            "length past the end"
        );
        assert_eq!(ExampleRow::parse("X", 1, 0), None, "unknown tag");
    }
}
