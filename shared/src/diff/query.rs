//! The SQL of a model diff, built from a resolved [`ComparePlan`] and a [`Dialect`].
//!
//! Kept apart from execution so every query can be snapshot-tested for every dialect and
//! parsed back with sqlparser, without a warehouse.

use crate::sql::{Dialect, Relation, string_literal};

/// One key column: its normalised expression on each side.
#[derive(Debug, Clone)]
pub struct KeyColumn {
    pub name: String,
    pub prod_expr: String,
    pub pr_expr: String,
}

/// One compared (non-key) column: its normalised expression on each side.
#[derive(Debug, Clone)]
pub struct CompareColumn {
    pub name: String,
    pub prod_expr: String,
    pub pr_expr: String,
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

/// The names of the aggregates the join query returns, in order.
pub const JOIN_AGGREGATES: &[&str] = &[
    "p_in",
    "q_in",
    "p_null_keys",
    "q_null_keys",
    "p_dup_rows",
    "q_dup_rows",
    "p_dup_keys",
    "q_dup_keys",
    "p_unmatchable",
    "q_unmatchable",
    "only_prod",
    "only_pr",
    "only_prod_keys",
    "only_pr_keys",
    "matched",
    "changed",
];

/// The example-key aggregates that follow [`JOIN_AGGREGATES`], then one changed count and
/// one example key per compared column.
pub const JOIN_EXAMPLES: &[&str] = &[
    "ex_only_prod_min",
    "ex_only_prod_max",
    "ex_only_pr_min",
    "ex_only_pr_max",
    "ex_changed_min",
    "ex_changed_max",
];

fn alias_k(i: usize) -> String {
    format!("k{i}")
}

fn alias_c(i: usize) -> String {
    format!("c{i}")
}

impl ComparePlan {
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
        let mut conds = Vec::new();
        if let Some(f) = &self.filter {
            conds.push(format!("({f})"));
        }
        if let Some(b) = bucket {
            conds.push(format!(
                "{} < {}",
                self.bucket_expr(d, &self.key_exprs(side), b.seed),
                b.threshold
            ));
        }
        if conds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conds.join(" AND "))
        }
    }

    /// `SELECT 1 AS m, <keys> AS k0.., <columns> AS c0.. FROM <relation> WHERE <filter>`.
    pub fn side_select(&self, d: &dyn Dialect, side: Side, bucket: Option<SampleBucket>) -> String {
        let mut items = vec!["1 AS m".to_owned()];
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
            self.where_clause(d, side, bucket)
        )
    }

    /// Rows and rows with a NULL in the key, for one side: the cheap scan that tells whether
    /// the join's counts can be trusted.
    pub fn count_query(&self, d: &dyn Dialect, side: Side) -> String {
        let mut items = vec!["COUNT(*) AS row_count".to_owned()];
        if !self.key.is_empty() {
            let null = self
                .key_exprs(side)
                .iter()
                .map(|k| format!("{k} IS NULL"))
                .collect::<Vec<_>>()
                .join(" OR ");
            items.push(format!("{} AS null_keys", d.count_where(&null)));
        }
        format!(
            "SELECT {} FROM {}{}",
            items.join(", "),
            d.relation(self.relation(side)),
            self.where_clause(d, side, None)
        )
    }

    /// Per compared column, rows where it is NULL: the profile of a model without a key.
    pub fn profile_query(&self, d: &dyn Dialect, side: Side) -> String {
        let mut items = vec!["COUNT(*) AS row_count".to_owned()];
        for (i, c) in self.columns.iter().enumerate() {
            let e = match side {
                Side::Prod => &c.prod_expr,
                Side::Pr => &c.pr_expr,
            };
            items.push(format!(
                "{} AS nulls_{i}",
                d.count_where(&format!("{e} IS NULL"))
            ));
        }
        format!(
            "SELECT {} FROM {}{}",
            items.join(", "),
            d.relation(self.relation(side)),
            self.where_clause(d, side, None)
        )
    }

    /// The one pass over the FULL OUTER JOIN on the key that yields every count.
    ///
    /// The join runs in a derived table that works out, once per joined row, which side(s)
    /// the row is on (`kind`: 0 both, 1 prod only, 2 PR only) and whether each compared
    /// column differs (`d0`, `d1`, … as 0/1); the aggregates above it only test those
    /// flags. On PostgreSQL an `OFFSET 0` fence keeps the planner from inlining the flags
    /// back into every aggregate.
    ///
    /// Plain (`windowed = false`): the sides are joined as they are. Its counts are exact
    /// only when no key is duplicated; the engine checks that from the results before it
    /// trusts them (see [`crate::diff`]).
    ///
    /// Windowed: each side first keeps one representative row per key value, carrying `dn`,
    /// the number of rows that share it. The join then sees unique keys on both sides, so
    /// nothing can be multiplied; rows of duplicated keys are counted (`dn`) but never
    /// matched, and a unique key whose counterpart is duplicated is counted as
    /// `unmatchable`. Used on samples (small) and when the plain pass found duplicates.
    pub fn join_query(
        &self,
        d: &dyn Dialect,
        windowed: bool,
        bucket: Option<SampleBucket>,
    ) -> String {
        let nk = self.key.len();
        let nc = self.columns.len();
        let side = |s: Side| -> String {
            let inner = self.side_select(d, s, bucket);
            if windowed {
                let parts = (0..nk)
                    .map(|i| format!("s.{}", alias_k(i)))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!(
                    "SELECT * FROM (SELECT s.*, COUNT(*) OVER (PARTITION BY {parts}) AS dn, \
                     ROW_NUMBER() OVER (PARTITION BY {parts}) AS rn FROM ({inner}) s) w WHERE rn = 1"
                )
            } else {
                inner
            }
        };
        let on: Vec<String> = (0..nk)
            .map(|i| format!("p.{k} = q.{k}", k = alias_k(i)))
            .collect();
        // The derived table: kind, keys of both sides, duplicate counts, difference flags.
        let mut flags = vec![
            "CASE WHEN p.m IS NULL THEN 2 WHEN q.m IS NULL THEN 1 ELSE 0 END AS kind".to_owned(),
        ];
        for i in 0..nk {
            flags.push(format!("p.{k} AS p{k}", k = alias_k(i)));
            flags.push(format!("q.{k} AS q{k}", k = alias_k(i)));
        }
        if windowed {
            flags.push("p.dn AS pdn".to_owned());
            flags.push("q.dn AS qdn".to_owned());
        }
        for i in 0..nc {
            let ne = d.null_safe_ne(&format!("p.{}", alias_c(i)), &format!("q.{}", alias_c(i)));
            flags.push(format!("CASE WHEN {ne} THEN 1 ELSE 0 END AS d{i}"));
        }
        let derived = format!(
            "SELECT {} FROM ({}) p FULL OUTER JOIN ({}) q ON {}{}",
            flags.join(", "),
            side(Side::Prod),
            side(Side::Pr),
            on.join(" AND "),
            d.optimization_fence()
        );

        let keys = |t: &str| {
            (0..nk)
                .map(|i| format!("x.{t}{}", alias_k(i)))
                .collect::<Vec<_>>()
        };
        let nn = |t: &str| {
            keys(t)
                .iter()
                .map(|k| format!("{k} IS NOT NULL"))
                .collect::<Vec<_>>()
                .join(" AND ")
        };
        let has_null = |t: &str| {
            keys(t)
                .iter()
                .map(|k| format!("{k} IS NULL"))
                .collect::<Vec<_>>()
                .join(" OR ")
        };
        let ident = |t: &str| {
            let k = keys(t);
            if k.len() == 1 {
                k[0].clone()
            } else {
                d.key_identity(&k)
            }
        };
        let text = |t: &str| d.key_text(&keys(t));
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
        let on_p = "x.kind <> 2";
        let on_q = "x.kind <> 1";
        let (p_uniq, q_uniq) = if windowed {
            (" AND x.pdn = 1", " AND x.qdn = 1")
        } else {
            ("", "")
        };
        let only_prod = format!("x.kind = 1 AND {}{p_uniq}", nn("p"));
        let only_pr = format!("x.kind = 2 AND {}{q_uniq}", nn("q"));
        let both = format!("x.kind = 0{p_uniq}{q_uniq}");
        let any = if nc == 0 {
            "0".to_owned()
        } else {
            (0..nc)
                .map(|i| format!("x.d{i}"))
                .collect::<Vec<_>>()
                .join(" + ")
        };
        let changed = format!("{both} AND {any} > 0");
        let min_where = |e: &str, c: &str| d.extreme_where(false, e, c);
        let max_where = |e: &str, c: &str| d.extreme_where(true, e, c);
        let windowed_only = |expr: String, name: &str| {
            if windowed {
                format!("{expr} AS {name}")
            } else {
                format!("0 AS {name}")
            }
        };
        let p_dup = format!("{on_p} AND x.pdn > 1 AND {}", nn("p"));
        let q_dup = format!("{on_q} AND x.qdn > 1 AND {}", nn("q"));

        let mut items = vec![
            format!("{} AS p_in", rows_where("pdn", on_p)),
            format!("{} AS q_in", rows_where("qdn", on_q)),
            format!(
                "{} AS p_null_keys",
                rows_where("pdn", &format!("{on_p} AND ({})", has_null("p")))
            ),
            format!(
                "{} AS q_null_keys",
                rows_where("qdn", &format!("{on_q} AND ({})", has_null("q")))
            ),
            windowed_only(rows_where("pdn", &p_dup), "p_dup_rows"),
            windowed_only(rows_where("qdn", &q_dup), "q_dup_rows"),
            windowed_only(d.count_where(&p_dup), "p_dup_keys"),
            windowed_only(d.count_where(&q_dup), "q_dup_keys"),
            windowed_only(
                d.count_where("x.kind = 0 AND x.pdn = 1 AND x.qdn > 1"),
                "p_unmatchable",
            ),
            windowed_only(
                d.count_where("x.kind = 0 AND x.qdn = 1 AND x.pdn > 1"),
                "q_unmatchable",
            ),
            format!("{} AS only_prod", d.count_where(&only_prod)),
            format!("{} AS only_pr", d.count_where(&only_pr)),
            if windowed {
                "0 AS only_prod_keys".to_owned()
            } else {
                format!(
                    "{} AS only_prod_keys",
                    d.count_distinct_where(&ident("p"), &only_prod)
                )
            },
            if windowed {
                "0 AS only_pr_keys".to_owned()
            } else {
                format!(
                    "{} AS only_pr_keys",
                    d.count_distinct_where(&ident("q"), &only_pr)
                )
            },
            format!("{} AS matched", d.count_where(&both)),
            format!("{} AS changed", d.count_where(&changed)),
            format!("{} AS ex_only_prod_min", min_where(&text("p"), &only_prod)),
            format!("{} AS ex_only_prod_max", max_where(&text("p"), &only_prod)),
            format!("{} AS ex_only_pr_min", min_where(&text("q"), &only_pr)),
            format!("{} AS ex_only_pr_max", max_where(&text("q"), &only_pr)),
            format!("{} AS ex_changed_min", min_where(&text("p"), &changed)),
            format!("{} AS ex_changed_max", max_where(&text("p"), &changed)),
        ];
        for i in 0..nc {
            items.push(format!(
                "{} AS changed_{i}",
                d.count_where(&format!("{both} AND x.d{i} = 1"))
            ));
        }
        for i in 0..nc {
            items.push(format!(
                "{} AS ex_changed_{i}",
                min_where(&text("p"), &format!("{both} AND x.d{i} = 1"))
            ));
        }
        format!("SELECT {} FROM ({derived}) x", items.join(", "))
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
        let cond = if self.integer_key && keys.iter().all(|k| k.parse::<i64>().is_ok()) {
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
