//! The SQL of a model diff, built from a resolved [`ComparePlan`] and a [`Dialect`].
//!
//! Kept apart from execution so every query can be snapshot-tested for every dialect and
//! parsed back with sqlparser, without a warehouse.

use crate::sql::{Dialect, Relation, string_literal};

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
    /// The same join, carrying the example rows' values up through it; a sampled one also
    /// counts each side's distinct keys so the pass itself tells whether a key was
    /// duplicated (`p_keys`, `q_keys`). For samples, whose rows are few, so carrying and
    /// counting cost less than reading the examples afterwards, and for exact diffs where a
    /// read by key would scan the relations again
    /// ([`Dialect::exact_join_carries_examples`]).
    Carry,
    /// One representative per key value on each side, carrying the example rows: samples
    /// and tables with duplicate keys.
    Windowed,
}

/// One aggregate a diff query returns: the query builders name their output columns with
/// [`JoinAgg::alias`] and the engine reads the row back by the same value, so a name is
/// written in one place only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JoinAgg {
    /// Prod rows in the join (with a non-NULL key).
    PIn,
    /// PR rows in the join.
    QIn,
    /// Prod rows whose key is duplicated (windowed passes).
    PDupRows,
    /// PR rows whose key is duplicated (windowed passes).
    QDupRows,
    /// Duplicated prod key values (windowed passes).
    PDupKeys,
    /// Duplicated PR key values (windowed passes).
    QDupKeys,
    /// Unique prod keys whose PR counterpart is duplicated (windowed passes).
    PUnmatchable,
    /// Unique PR keys whose prod counterpart is duplicated (windowed passes).
    QUnmatchable,
    /// Rows only in prod.
    OnlyProd,
    /// Rows only in the PR.
    OnlyPr,
    /// Distinct keys only in prod (non-windowed passes).
    OnlyProdKeys,
    /// Distinct keys only in the PR (non-windowed passes).
    OnlyPrKeys,
    /// Distinct prod keys in the join (carrying passes).
    PKeys,
    /// Distinct PR keys in the join (carrying passes).
    QKeys,
    /// Rows matched on the key.
    Matched,
    /// Matched rows with any compared column changed.
    Changed,
    /// Example keys (or carried rows): least and greatest only in prod.
    ExOnlyProdMin,
    ExOnlyProdMax,
    /// Example keys (or carried rows): least and greatest only in the PR.
    ExOnlyPrMin,
    ExOnlyPrMax,
    /// Example keys (or carried rows): least and greatest changed.
    ExChangedMin,
    ExChangedMax,
    /// Matched rows where compared column `i` changed.
    ChangedCol(usize),
    /// Example key (or carried row) where compared column `i` changed.
    ExChangedCol(usize),
    /// Rows of one side (count and profile queries).
    RowCount,
    /// Rows of one side with a NULL in the key (count query).
    NullKeys,
    /// Rows of one side where compared column `i` is NULL (profile query).
    NullsCol(usize),
}

impl JoinAgg {
    /// The column alias the query gives this aggregate.
    pub fn alias(&self) -> String {
        match self {
            JoinAgg::PIn => "p_in".into(),
            JoinAgg::QIn => "q_in".into(),
            JoinAgg::PDupRows => "p_dup_rows".into(),
            JoinAgg::QDupRows => "q_dup_rows".into(),
            JoinAgg::PDupKeys => "p_dup_keys".into(),
            JoinAgg::QDupKeys => "q_dup_keys".into(),
            JoinAgg::PUnmatchable => "p_unmatchable".into(),
            JoinAgg::QUnmatchable => "q_unmatchable".into(),
            JoinAgg::OnlyProd => "only_prod".into(),
            JoinAgg::OnlyPr => "only_pr".into(),
            JoinAgg::OnlyProdKeys => "only_prod_keys".into(),
            JoinAgg::OnlyPrKeys => "only_pr_keys".into(),
            JoinAgg::PKeys => "p_keys".into(),
            JoinAgg::QKeys => "q_keys".into(),
            JoinAgg::Matched => "matched".into(),
            JoinAgg::Changed => "changed".into(),
            JoinAgg::ExOnlyProdMin => "ex_only_prod_min".into(),
            JoinAgg::ExOnlyProdMax => "ex_only_prod_max".into(),
            JoinAgg::ExOnlyPrMin => "ex_only_pr_min".into(),
            JoinAgg::ExOnlyPrMax => "ex_only_pr_max".into(),
            JoinAgg::ExChangedMin => "ex_changed_min".into(),
            JoinAgg::ExChangedMax => "ex_changed_max".into(),
            JoinAgg::ChangedCol(i) => format!("changed_{i}"),
            JoinAgg::ExChangedCol(i) => format!("ex_changed_{i}"),
            JoinAgg::RowCount => "row_count".into(),
            JoinAgg::NullKeys => "null_keys".into(),
            JoinAgg::NullsCol(i) => format!("nulls_{i}"),
        }
    }
}

/// An aggregate query: its SQL and the aggregates of its one row, in select-list order.
#[derive(Debug, Clone)]
pub struct AggQuery {
    pub sql: String,
    pub aggs: Vec<JoinAgg>,
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

    /// [`ComparePlan::join_query`] with its aggregates.
    pub fn join_query_named(
        &self,
        d: &dyn Dialect,
        kind: JoinKind,
        bucket: Option<SampleBucket>,
    ) -> AggQuery {
        let windowed = kind == JoinKind::Windowed;
        let fence = if self.group.is_some() {
            d.column_group_fence()
        } else {
            d.optimization_fence()
        };
        // The pass carries example rows (`pl`) instead of returning example keys (not in a
        // column group: a wide row would not fit).
        let carry = kind != JoinKind::Plain && self.group.is_none();
        let nk = self.key.len();
        let nc = self.columns.len();
        // The columns this pass reports on.
        let reported: Vec<usize> = match &self.group {
            Some(g) => g.clone().collect(),
            None => (0..nc).collect(),
        };
        let (pa, qa) = (PROD_ALIAS, PR_ALIAS);
        // Per side: the relation (or windowed representatives), the key expressions and the
        // compared expressions over the aliased joined row.
        let side = |s: Side| -> String {
            if windowed {
                let inner = self.side_select_with(d, s, bucket, true);
                let parts = (0..nk)
                    .map(|i| format!("s.{}", alias_k(i)))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!(
                    "SELECT * FROM (SELECT s.*, COUNT(*) OVER (PARTITION BY {parts}) AS dn, \
                     ROW_NUMBER() OVER (PARTITION BY {parts}) AS rn FROM ({inner}) s) w WHERE rn = 1"
                )
            } else {
                format!(
                    "SELECT * FROM {}{}",
                    d.relation(self.relation(s)),
                    self.where_clause_with(d, s, bucket, true)
                )
            }
        };
        let key_of = |s: Side, i: usize| -> String {
            let (alias, k) = match s {
                Side::Prod => (pa, &self.key[i].prod_joined),
                Side::Pr => (qa, &self.key[i].pr_joined),
            };
            if windowed {
                format!("{alias}.{}", alias_k(i))
            } else {
                k.clone()
            }
        };
        let col_of = |s: Side, i: usize| -> String {
            let (alias, c) = match s {
                Side::Prod => (pa, &self.columns[i].prod_joined),
                Side::Pr => (qa, &self.columns[i].pr_joined),
            };
            if windowed {
                format!("{alias}.{}", alias_c(i))
            } else {
                c.clone()
            }
        };
        let on: Vec<String> = (0..nk)
            .map(|i| format!("{} = {}", key_of(Side::Prod, i), key_of(Side::Pr, i)))
            .collect();
        // The derived table: keys of both sides, duplicate counts, difference flags.
        let mut flags = Vec::new();
        for i in 0..nk {
            flags.push(format!("{} AS p{}", key_of(Side::Prod, i), alias_k(i)));
            flags.push(format!("{} AS q{}", key_of(Side::Pr, i), alias_k(i)));
        }
        if windowed {
            flags.push(format!("{pa}.dn AS pdn"));
            flags.push(format!("{qa}.dn AS qdn"));
        }
        let differs = |i: usize| -> String {
            let ne = d.null_safe_ne(&col_of(Side::Prod, i), &col_of(Side::Pr, i));
            // Windowed sides carry values already normalised.
            match &self.columns[i].raw_joined {
                Some((rp, rq)) if !windowed => format!(
                    "CASE WHEN {rp} = {rq} THEN {} ELSE {ne} END",
                    d.false_literal()
                ),
                _ => ne,
            }
        };
        for &i in &reported {
            flags.push(format!("{} AS d{i}", differs(i)));
        }
        // A column group: whether any column of the row differs, as one expression (one
        // entry of the select list however wide the model).
        if self.group.is_some() {
            let all: Vec<String> = (0..nc).map(|i| format!("({})", differs(i))).collect();
            flags.push(format!("{} AS dall", balanced_or(&all)));
        }
        // Samples are small: pass the normalised values up for the example rows (see `pl`
        // below). The plain exact pass reads its examples afterwards: carrying every value
        // of every row up through the join costs more than that read.
        if carry {
            for i in 0..nc {
                flags.push(format!("{} AS p{}", col_of(Side::Prod, i), alias_c(i)));
                flags.push(format!("{} AS q{}", col_of(Side::Pr, i), alias_c(i)));
            }
        }
        let derived = format!(
            "SELECT {} FROM ({}) {pa} FULL OUTER JOIN ({}) {qa} ON {}{}",
            flags.join(", "),
            side(Side::Prod),
            side(Side::Pr),
            on.join(" AND "),
            fence
        );

        let keys = |t: &str| {
            (0..nk)
                .map(|i| format!("x.{t}{}", alias_k(i)))
                .collect::<Vec<_>>()
        };
        let ident = |t: &str| {
            let k = keys(t);
            if k.len() == 1 {
                k[0].clone()
            } else {
                d.key_identity(&k)
            }
        };
        // What an example aggregate keeps: the key's text (plain) or the whole row (`pl`).
        let text = |t: &str| {
            if carry {
                "x.pl".to_owned()
            } else {
                d.key_text(&keys(t))
            }
        };
        // Which sides a joined row has: keys carry no NULL, so the first key column tells.
        let on_p = "x.pk0 IS NOT NULL";
        let on_q = "x.qk0 IS NOT NULL";
        let any = if self.group.is_some() {
            "x.dall".to_owned()
        } else if nc == 0 {
            "1 = 0".to_owned()
        } else {
            (0..nc)
                .map(|i| format!("x.d{i}"))
                .collect::<Vec<_>>()
                .join(" OR ")
        };
        // `dx`: the row is of interest beyond the plain row counts (one side only, a
        // duplicated key, a difference). Nearly every row of a real diff is matched and
        // unchanged: every other aggregate's condition starts with `x.dx`, so for those
        // rows it costs one test instead of several.
        let mut interesting = format!("x.pk0 IS NULL OR x.qk0 IS NULL OR {any}");
        if windowed {
            interesting.push_str(" OR x.pdn > 1 OR x.qdn > 1");
        }
        // Carried: `pl`, a row of interest as text, its key first (see [`ExampleRow`]).
        // The example aggregates keep the least `pl` of their rows, so the example rows
        // come out of this pass and need no second read.
        let payload = if carry {
            let field = |v: &str| {
                let t = d.cast_to_text(v);
                format!(
                    "CASE WHEN {v} IS NULL THEN 'N' ELSE {} END",
                    d.concat(&[
                        "'V'".to_owned(),
                        d.cast_to_text(&d.char_length(&t)),
                        "':'".to_owned(),
                        t.clone()
                    ])
                )
            };
            let mut fields = Vec::new();
            for i in 0..nk {
                fields.push(field(&format!("COALESCE(x.p{k}, x.q{k})", k = alias_k(i))));
            }
            for i in 0..nc {
                fields.push(field(&format!("x.p{}", alias_c(i))));
                fields.push(field(&format!("x.q{}", alias_c(i))));
            }
            format!(
                ", CASE WHEN {interesting} THEN {} END AS pl",
                d.concat(&fields)
            )
        } else {
            String::new()
        };
        let gated = format!(
            "SELECT x.*, ({interesting}) AS dx{payload} FROM ({derived}) x{}",
            fence
        );
        let g = |cond: &str| format!("x.dx AND {cond}");
        // Rows a joined row stands for: one, or `dn` for a representative.
        let rows_where = |dn: &str, cond: &str| {
            if windowed {
                d.cast(
                    &format!("COALESCE(SUM(CASE WHEN {cond} THEN x.{dn} ELSE 0 END), 0)"),
                    d.bigint_type(),
                )
            } else {
                d.count_where(cond)
            }
        };
        let (p_uniq, q_uniq) = if windowed {
            (" AND x.pdn = 1", " AND x.qdn = 1")
        } else {
            ("", "")
        };
        let only_prod = g(&format!("x.qk0 IS NULL{p_uniq}"));
        let only_pr = g(&format!("x.pk0 IS NULL{q_uniq}"));
        let both = format!("{on_p} AND {on_q}{p_uniq}{q_uniq}");
        let changed = g(&format!("{both} AND ({any})"));
        let min_where = |e: &str, c: &str| d.extreme_where(false, e, c);
        let max_where = |e: &str, c: &str| d.extreme_where(true, e, c);
        // An aggregate only some kinds of pass compute; the others return 0 under its name.
        let only_if = |on: bool, expr: String, agg: JoinAgg| {
            if on {
                (expr, agg)
            } else {
                ("0".to_owned(), agg)
            }
        };
        let windowed_only = |expr: String, agg: JoinAgg| only_if(windowed, expr, agg);
        // A sampled carrying pass counts each side's distinct keys to tell duplicates; an
        // exact one (no bucket) knows each side's rows from the counts run beside it.
        let carry = kind == JoinKind::Carry && bucket.is_some();
        let p_dup = g(&format!("{on_p} AND x.pdn > 1"));
        let q_dup = g(&format!("{on_q} AND x.qdn > 1"));

        let mut items = vec![
            if windowed {
                (rows_where("pdn", on_p), JoinAgg::PIn)
            } else {
                ("COUNT(x.pk0)".to_owned(), JoinAgg::PIn)
            },
            if windowed {
                (rows_where("qdn", on_q), JoinAgg::QIn)
            } else {
                ("COUNT(x.qk0)".to_owned(), JoinAgg::QIn)
            },
            windowed_only(rows_where("pdn", &p_dup), JoinAgg::PDupRows),
            windowed_only(rows_where("qdn", &q_dup), JoinAgg::QDupRows),
            windowed_only(d.count_where(&p_dup), JoinAgg::PDupKeys),
            windowed_only(d.count_where(&q_dup), JoinAgg::QDupKeys),
            windowed_only(
                d.count_where(&g(&format!(
                    "{on_p} AND {on_q} AND x.pdn = 1 AND x.qdn > 1"
                ))),
                JoinAgg::PUnmatchable,
            ),
            windowed_only(
                d.count_where(&g(&format!(
                    "{on_p} AND {on_q} AND x.qdn = 1 AND x.pdn > 1"
                ))),
                JoinAgg::QUnmatchable,
            ),
            (d.count_where(&only_prod), JoinAgg::OnlyProd),
            (d.count_where(&only_pr), JoinAgg::OnlyPr),
            only_if(
                !windowed,
                d.count_distinct_where(&ident("p"), &only_prod),
                JoinAgg::OnlyProdKeys,
            ),
            only_if(
                !windowed,
                d.count_distinct_where(&ident("q"), &only_pr),
                JoinAgg::OnlyPrKeys,
            ),
            only_if(
                carry,
                d.count_distinct_where(&ident("p"), on_p),
                JoinAgg::PKeys,
            ),
            only_if(
                carry,
                d.count_distinct_where(&ident("q"), on_q),
                JoinAgg::QKeys,
            ),
            // Without duplicates a row with a prod side is matched or only in prod.
            if windowed {
                (d.count_where(&both), JoinAgg::Matched)
            } else {
                (
                    format!("COUNT(x.pk0) - {}", d.count_where(&only_prod)),
                    JoinAgg::Matched,
                )
            },
            (d.count_where(&changed), JoinAgg::Changed),
            (min_where(&text("p"), &only_prod), JoinAgg::ExOnlyProdMin),
            (max_where(&text("p"), &only_prod), JoinAgg::ExOnlyProdMax),
            (min_where(&text("q"), &only_pr), JoinAgg::ExOnlyPrMin),
            (max_where(&text("q"), &only_pr), JoinAgg::ExOnlyPrMax),
            (min_where(&text("p"), &changed), JoinAgg::ExChangedMin),
            (max_where(&text("p"), &changed), JoinAgg::ExChangedMax),
        ];
        for &i in &reported {
            items.push((
                d.count_where(&g(&format!("{both} AND x.d{i}"))),
                JoinAgg::ChangedCol(i),
            ));
        }
        for &i in &reported {
            items.push((
                min_where(&text("p"), &g(&format!("{both} AND x.d{i}"))),
                JoinAgg::ExChangedCol(i),
            ));
        }
        let (list, aggs) = select_list(items);
        AggQuery {
            sql: format!("SELECT {list} FROM ({gated}) x"),
            aggs,
        }
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
            .map(|k| string_literal(k))
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
