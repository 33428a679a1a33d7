//! The join pass's statement ([`ComparePlan::join_query`]), built top-down:
//!
//! ```text
//! SELECT <aggregates> FROM (                            -- JoinSql::aggregates
//!   SELECT x.*, (<interesting>) AS dx, <pl> FROM (      -- JoinSql::gated
//!     SELECT <keys>, <dn>, <d0..>, <carried values>     -- JoinSql::derived
//!     FROM (<prod side>) p FULL OUTER JOIN (<PR side>) q ON <key = key>
//!   ) x
//! ) x
//! ```

use super::{
    AggQuery, CompareColumn, ComparePlan, JoinAgg, JoinKind, PR_ALIAS, PROD_ALIAS, SampleBucket,
    Side, alias_c, alias_k, alias_r, balanced_or, select_list,
};
use crate::sql::Dialect;

impl ComparePlan {
    /// [`ComparePlan::join_query`] with its aggregates.
    pub fn join_query_named(
        &self,
        d: &dyn Dialect,
        kind: JoinKind,
        bucket: Option<SampleBucket>,
    ) -> AggQuery {
        let j = JoinSql::new(self, d, kind, bucket);
        let gated = j.gated();
        let (list, aggs) = select_list(j.aggregates());
        AggQuery {
            sql: format!("SELECT {list} FROM ({gated}) x"),
            aggs,
        }
    }
}

impl ComparePlan {
    /// Where the changed rows concentrate: for each of `dims` (indexes of compared
    /// columns), the `top` most frequent PR-side values among the matched rows where any
    /// compared column differs, as rows `(i, v, n, nd, total)`: the dimension's position
    /// in `dims`, the value as text (NULL for NULL), its changed rows, the dimension's
    /// distinct values among the changed rows, and the changed rows counted. Ordered by
    /// `i`, most frequent first.
    ///
    /// The changed rows come from an inner join of the two sides (each in its sample
    /// bucket when `bucket` is set; windowed sides, keys duplicated on a side left out,
    /// for [`JoinKind::Windowed`]), each dimension's value is paired with its position by
    /// a cross join with a tiny constant table, and one `GROUP BY` counts every
    /// dimension's values at once; window functions keep the top ones.
    pub fn concentration_query(
        &self,
        d: &dyn Dialect,
        kind: JoinKind,
        bucket: Option<SampleBucket>,
        dims: &[usize],
        top: usize,
    ) -> String {
        let plan = ComparePlan {
            group: None,
            renames: Vec::new(),
            ..self.clone()
        };
        let j = JoinSql::new(&plan, d, counting(kind), bucket);
        let on: Vec<String> = (0..j.nk())
            .map(|i| format!("{} = {}", j.key_of(Side::Prod, i), j.key_of(Side::Pr, i)))
            .collect();
        let differs: Vec<String> = (0..j.nc()).map(|i| format!("({})", j.differs(i))).collect();
        let mut cond = vec![format!("({})", balanced_or(&differs))];
        if j.windowed {
            cond.push(format!("{PROD_ALIAS}.dn = 1 AND {PR_ALIAS}.dn = 1"));
        }
        let values: Vec<String> = dims
            .iter()
            .enumerate()
            .map(|(n, &i)| format!("{} AS v{n}", d.cast_to_text(&j.col_of(Side::Pr, i))))
            .collect();
        let changed = format!(
            "SELECT {} FROM ({}) {PROD_ALIAS} INNER JOIN ({}) {PR_ALIAS} ON {} WHERE {}",
            values.join(", "),
            j.side_input(Side::Prod),
            j.side_input(Side::Pr),
            on.join(" AND "),
            cond.join(" AND ")
        );
        let positions = (0..dims.len())
            .map(|n| format!("SELECT {n} AS i"))
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let value = format!(
            "CASE t.i {} END",
            (0..dims.len())
                .map(|n| format!("WHEN {n} THEN c.v{n}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let big = |e: &str| d.cast(e, d.bigint_type());
        let grouped = format!(
            "SELECT u.i, u.v, COUNT(*) AS n FROM (SELECT t.i, {value} AS v FROM ({changed}) c \
             CROSS JOIN ({positions}) t) u GROUP BY u.i, u.v"
        );
        let ranked = format!(
            "SELECT g.i, g.v, g.n, COUNT(*) OVER (PARTITION BY g.i) AS nd, \
             SUM(g.n) OVER (PARTITION BY g.i) AS total, \
             ROW_NUMBER() OVER (PARTITION BY g.i ORDER BY g.n DESC, g.v) AS rn FROM ({grouped}) g"
        );
        format!(
            "SELECT r.i, r.v, {}, {}, {} FROM ({ranked}) r WHERE r.rn <= {top} ORDER BY r.i, r.rn",
            big("r.n"),
            big("r.nd"),
            big("r.total")
        )
    }
}

impl ComparePlan {
    /// The matched rows where no compared column differs but at least one of the
    /// `renamed` rename candidates (indexes into [`ComparePlan::renames`]) does, as one
    /// count: each such row once, however many of its renamed columns differ. The join
    /// pass counts these rows per candidate only; with several renames accepted, their
    /// sum would count a row once per differing renamed column.
    ///
    /// The join is the pass's own (its sample bucket; for [`JoinKind::Windowed`], keys
    /// duplicated on a side left out), with every compared column's difference folded
    /// into one flag, as a column group does, so the select list stays short however
    /// wide the model.
    pub fn renamed_only_query(
        &self,
        d: &dyn Dialect,
        kind: JoinKind,
        bucket: Option<SampleBucket>,
        renamed: &[usize],
    ) -> String {
        let plan = ComparePlan {
            group: (!self.columns.is_empty()).then_some(0..0),
            ..self.clone()
        };
        let j = JoinSql::new(&plan, d, counting(kind), bucket);
        let both = j.kinds().both;
        let any: Vec<String> = renamed.iter().map(|r| format!("x.rd{r}")).collect();
        let cond = format!(
            "{both} AND NOT COALESCE(x.dx, {}) AND ({})",
            d.false_literal(),
            balanced_or(&any)
        );
        format!(
            "SELECT {} FROM ({}) x",
            d.cast(&d.count_where(&cond), d.bigint_type()),
            j.gated()
        )
    }
}

/// The kind of a follow-up statement over a pass's join: windowed when the pass was, else
/// plain (a follow-up carries no example rows).
fn counting(kind: JoinKind) -> JoinKind {
    if kind == JoinKind::Windowed {
        JoinKind::Windowed
    } else {
        JoinKind::Plain
    }
}

/// One join pass being written: the plan, the dialect and what kind of pass it is.
struct JoinSql<'a> {
    plan: &'a ComparePlan,
    d: &'a dyn Dialect,
    kind: JoinKind,
    bucket: Option<SampleBucket>,
    /// Each side is one representative per key value, carrying `dn` (its rows).
    windowed: bool,
    /// The pass carries example rows (`pl`) instead of returning example keys (not in a
    /// column group: a wide row would not fit).
    carry: bool,
    fence: &'static str,
    /// The columns this pass reports on (by index in the plan's columns).
    reported: Vec<usize>,
    /// The pass tests the plan's rename candidates (the first column group's only).
    renames: bool,
}

/// The conditions of a joined row's kinds, each gated on `x.dx`.
struct Kinds {
    only_prod: String,
    only_pr: String,
    /// Matched (for a windowed pass: and unique on both sides); not gated.
    both: String,
    changed: String,
    p_dup: String,
    q_dup: String,
}

/// Which sides a joined row has: keys carry no NULL, so the first key column tells.
const ON_P: &str = "x.pk0 IS NOT NULL";
const ON_Q: &str = "x.qk0 IS NOT NULL";

/// `cond` for a row of interest only (see `dx` in [`JoinSql::gated`]).
fn gate(cond: &str) -> String {
    format!("x.dx AND {cond}")
}

impl<'a> JoinSql<'a> {
    fn new(
        plan: &'a ComparePlan,
        d: &'a dyn Dialect,
        kind: JoinKind,
        bucket: Option<SampleBucket>,
    ) -> Self {
        let fence = if plan.group.is_some() {
            d.column_group_fence()
        } else {
            d.optimization_fence()
        };
        let reported = match &plan.group {
            Some(g) => g.clone().collect(),
            None => (0..plan.columns.len()).collect(),
        };
        JoinSql {
            plan,
            d,
            kind,
            bucket,
            windowed: kind == JoinKind::Windowed,
            carry: kind != JoinKind::Plain && plan.group.is_none(),
            fence,
            reported,
            renames: !plan.renames.is_empty() && plan.group.as_ref().is_none_or(|g| g.start == 0),
        }
    }

    fn nk(&self) -> usize {
        self.plan.key.len()
    }

    fn nc(&self) -> usize {
        self.plan.columns.len()
    }

    /// One side's input to the join: the relation with its filter (or the windowed
    /// representatives).
    fn side_input(&self, s: Side) -> String {
        let (plan, d) = (self.plan, self.d);
        if self.windowed {
            let inner = plan.side_select_with(d, s, self.bucket, true);
            let parts = (0..self.nk())
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
                d.relation(plan.relation(s)),
                plan.where_clause_with(d, s, self.bucket, true)
            )
        }
    }

    /// Key column `i` of a side over the aliased joined row.
    fn key_of(&self, s: Side, i: usize) -> String {
        let (alias, k) = match s {
            Side::Prod => (PROD_ALIAS, &self.plan.key[i].prod_joined),
            Side::Pr => (PR_ALIAS, &self.plan.key[i].pr_joined),
        };
        if self.windowed {
            format!("{alias}.{}", alias_k(i))
        } else {
            k.clone()
        }
    }

    /// Compared column `i` of a side over the aliased joined row.
    fn col_of(&self, s: Side, i: usize) -> String {
        let (alias, c) = match s {
            Side::Prod => (PROD_ALIAS, &self.plan.columns[i].prod_joined),
            Side::Pr => (PR_ALIAS, &self.plan.columns[i].pr_joined),
        };
        if self.windowed {
            format!("{alias}.{}", alias_c(i))
        } else {
            c.clone()
        }
    }

    /// Rename candidate `j`'s column of a side over the aliased joined row.
    fn rename_of(&self, s: Side, j: usize) -> String {
        let c = &self.plan.renames[j].column;
        match (s, self.windowed) {
            (Side::Prod, true) => format!("{PROD_ALIAS}.{}", alias_r(j)),
            (Side::Pr, true) => format!("{PR_ALIAS}.{}", alias_r(j)),
            (Side::Prod, false) => c.prod_joined.clone(),
            (Side::Pr, false) => c.pr_joined.clone(),
        }
    }

    /// Whether compared column `i` differs between the sides.
    fn differs(&self, i: usize) -> String {
        let (a, b) = (self.col_of(Side::Prod, i), self.col_of(Side::Pr, i));
        self.column_differs(&self.plan.columns[i], &a, &b)
    }

    /// Whether a column (`a` on the prod side, `b` on the PR side) differs.
    fn column_differs(&self, c: &CompareColumn, a: &str, b: &str) -> String {
        let d = self.d;
        let ne = d.null_safe_ne(a, b);
        // A tolerant column: exactly one side NULL, or both set and further apart than
        // the bound (NaN against a number stays a change, NaN against NaN does not).
        let ne = match &c.tolerance {
            Some(t) => t.differs_sql(d, &ne, a, b),
            None => ne,
        };
        // Windowed sides carry values already normalised.
        match &c.raw_joined {
            Some((rp, rq)) if !self.windowed => format!(
                "CASE WHEN {rp} = {rq} THEN {} ELSE {ne} END",
                d.false_literal()
            ),
            _ => ne,
        }
    }

    /// The derived table: keys of both sides, duplicate counts, difference flags, and for
    /// a carrying pass the values, over the full outer join of the two sides.
    fn derived(&self) -> String {
        let (pa, qa) = (PROD_ALIAS, PR_ALIAS);
        let (nk, nc) = (self.nk(), self.nc());
        let on: Vec<String> = (0..nk)
            .map(|i| {
                format!(
                    "{} = {}",
                    self.key_of(Side::Prod, i),
                    self.key_of(Side::Pr, i)
                )
            })
            .collect();
        let mut flags = Vec::new();
        for i in 0..nk {
            flags.push(format!("{} AS p{}", self.key_of(Side::Prod, i), alias_k(i)));
            flags.push(format!("{} AS q{}", self.key_of(Side::Pr, i), alias_k(i)));
        }
        if self.windowed {
            flags.push(format!("{pa}.dn AS pdn"));
            flags.push(format!("{qa}.dn AS qdn"));
        }
        for &i in &self.reported {
            flags.push(format!("{} AS d{i}", self.differs(i)));
        }
        if self.renames {
            for (j, r) in self.plan.renames.iter().enumerate() {
                let (a, b) = (self.rename_of(Side::Prod, j), self.rename_of(Side::Pr, j));
                flags.push(format!(
                    "{} AS rd{j}",
                    self.column_differs(&r.column, &a, &b)
                ));
                flags.push(format!("({a} IS NULL AND {b} IS NULL) AS rn{j}"));
            }
        }
        // A column group: whether any column of the row differs, as one expression (one
        // entry of the select list however wide the model).
        if self.plan.group.is_some() {
            let all: Vec<String> = (0..nc).map(|i| format!("({})", self.differs(i))).collect();
            flags.push(format!("{} AS dall", balanced_or(&all)));
        }
        // Samples are small: pass the normalised values up for the example rows (see `pl`
        // in `gated`). The plain exact pass reads its examples afterwards: carrying every
        // value of every row up through the join costs more than that read.
        if self.carry {
            for i in 0..nc {
                flags.push(format!("{} AS p{}", self.col_of(Side::Prod, i), alias_c(i)));
                flags.push(format!("{} AS q{}", self.col_of(Side::Pr, i), alias_c(i)));
            }
        }
        format!(
            "SELECT {} FROM ({}) {pa} FULL OUTER JOIN ({}) {qa} ON {}{}",
            flags.join(", "),
            self.side_input(Side::Prod),
            self.side_input(Side::Pr),
            on.join(" AND "),
            self.fence
        )
    }

    /// Whether any compared column of a joined row differs.
    fn any_changed(&self) -> String {
        if self.plan.group.is_some() {
            "x.dall".to_owned()
        } else if self.nc() == 0 {
            "1 = 0".to_owned()
        } else {
            (0..self.nc())
                .map(|i| format!("x.d{i}"))
                .collect::<Vec<_>>()
                .join(" OR ")
        }
    }

    /// `dx`: the row is of interest beyond the plain row counts (one side only, a
    /// duplicated key, a difference). Nearly every row of a real diff is matched and
    /// unchanged: every other aggregate's condition starts with `x.dx`, so for those rows
    /// it costs one test instead of several.
    fn interesting(&self) -> String {
        let mut interesting = format!("x.pk0 IS NULL OR x.qk0 IS NULL OR {}", self.any_changed());
        if self.windowed {
            interesting.push_str(" OR x.pdn > 1 OR x.qdn > 1");
        }
        interesting
    }

    /// The derived table with `dx` and, when carrying, `pl`: a row of interest as text,
    /// its key first (see [`super::ExampleRow`]). The example aggregates keep the least
    /// `pl` of their rows, so the example rows come out of this pass and need no second
    /// read.
    fn gated(&self) -> String {
        let interesting = self.interesting();
        let payload = if self.carry {
            format!(
                ", CASE WHEN {interesting} THEN {} END AS pl",
                self.payload_fields()
            )
        } else {
            String::new()
        };
        format!(
            "SELECT x.*, ({interesting}) AS dx{payload} FROM ({}) x{}",
            self.derived(),
            self.fence
        )
    }

    /// `pl`'s text: the key's values, then each compared column's prod and PR value.
    fn payload_fields(&self) -> String {
        let d = self.d;
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
        for i in 0..self.nk() {
            fields.push(field(&format!("COALESCE(x.p{k}, x.q{k})", k = alias_k(i))));
        }
        for i in 0..self.nc() {
            fields.push(field(&format!("x.p{}", alias_c(i))));
            fields.push(field(&format!("x.q{}", alias_c(i))));
        }
        d.concat(&fields)
    }

    fn kinds(&self) -> Kinds {
        let (p_uniq, q_uniq) = if self.windowed {
            (" AND x.pdn = 1", " AND x.qdn = 1")
        } else {
            ("", "")
        };
        let both = format!("{ON_P} AND {ON_Q}{p_uniq}{q_uniq}");
        Kinds {
            only_prod: gate(&format!("x.qk0 IS NULL{p_uniq}")),
            only_pr: gate(&format!("x.pk0 IS NULL{q_uniq}")),
            changed: gate(&format!("{both} AND ({})", self.any_changed())),
            both,
            p_dup: gate(&format!("{ON_P} AND x.pdn > 1")),
            q_dup: gate(&format!("{ON_Q} AND x.qdn > 1")),
        }
    }

    /// The aggregate list, in the order the engine reads it back by name.
    fn aggregates(&self) -> Vec<(String, JoinAgg)> {
        let k = self.kinds();
        let mut items = self.row_items();
        items.extend(self.duplicate_items(&k));
        items.extend(self.exclusive_items(&k));
        items.extend(self.match_items(&k));
        items.extend(self.example_items(&k));
        items.extend(self.column_items(&k));
        items.extend(self.rename_items(&k));
        items
    }

    /// Per rename candidate: matched rows where its two columns differ, and those where
    /// nothing else does (not rows of interest: counted over every matched row).
    fn rename_items(&self, k: &Kinds) -> Vec<(String, JoinAgg)> {
        if !self.renames {
            return Vec::new();
        }
        let d = self.d;
        let mut items = Vec::new();
        for j in 0..self.plan.renames.len() {
            let differs = format!("{} AND x.rd{j}", k.both);
            items.push((d.count_where(&differs), JoinAgg::RenameDiffers(j)));
            // `dx` is NULL where a column's test is (the ANSI `<>` form on NULL and NULL).
            let unchanged = format!("NOT COALESCE(x.dx, {})", d.false_literal());
            items.push((
                d.count_where(&format!("{differs} AND {unchanged}")),
                JoinAgg::RenameOnly(j),
            ));
            items.push((
                d.count_where(&format!("{} AND x.rn{j}", k.both)),
                JoinAgg::RenameBothNull(j),
            ));
        }
        items
    }

    /// Rows a set of joined rows stands for: one each, or `dn` for a representative.
    fn rows_where(&self, dn: &str, cond: &str) -> String {
        let d = self.d;
        if self.windowed {
            d.cast(
                &format!("COALESCE(SUM(CASE WHEN {cond} THEN x.{dn} ELSE 0 END), 0)"),
                d.bigint_type(),
            )
        } else {
            d.count_where(cond)
        }
    }

    /// An aggregate only some kinds of pass compute; the others return 0 under its name.
    fn only_if(on: bool, expr: String, agg: JoinAgg) -> (String, JoinAgg) {
        if on {
            (expr, agg)
        } else {
            ("0".to_owned(), agg)
        }
    }

    /// A row's key as one value (the column itself, or the dialect's tuple) on side `t`.
    fn ident(&self, t: &str) -> String {
        let k = self.keys(t);
        if k.len() == 1 {
            k[0].clone()
        } else {
            self.d.key_identity(&k)
        }
    }

    fn keys(&self, t: &str) -> Vec<String> {
        (0..self.nk())
            .map(|i| format!("x.{t}{}", alias_k(i)))
            .collect()
    }

    /// What an example aggregate keeps: the key's text (plain) or the whole row (`pl`).
    fn example_text(&self, t: &str) -> String {
        if self.carry {
            "x.pl".to_owned()
        } else {
            self.d.key_text(&self.keys(t))
        }
    }

    fn row_items(&self) -> Vec<(String, JoinAgg)> {
        if self.windowed {
            vec![
                (self.rows_where("pdn", ON_P), JoinAgg::PIn),
                (self.rows_where("qdn", ON_Q), JoinAgg::QIn),
            ]
        } else {
            vec![
                ("COUNT(x.pk0)".to_owned(), JoinAgg::PIn),
                ("COUNT(x.qk0)".to_owned(), JoinAgg::QIn),
            ]
        }
    }

    fn duplicate_items(&self, k: &Kinds) -> Vec<(String, JoinAgg)> {
        let d = self.d;
        let w = |expr: String, agg: JoinAgg| Self::only_if(self.windowed, expr, agg);
        vec![
            w(self.rows_where("pdn", &k.p_dup), JoinAgg::PDupRows),
            w(self.rows_where("qdn", &k.q_dup), JoinAgg::QDupRows),
            w(d.count_where(&k.p_dup), JoinAgg::PDupKeys),
            w(d.count_where(&k.q_dup), JoinAgg::QDupKeys),
            w(
                d.count_where(&gate(&format!(
                    "{ON_P} AND {ON_Q} AND x.pdn = 1 AND x.qdn > 1"
                ))),
                JoinAgg::PUnmatchable,
            ),
            w(
                d.count_where(&gate(&format!(
                    "{ON_P} AND {ON_Q} AND x.qdn = 1 AND x.pdn > 1"
                ))),
                JoinAgg::QUnmatchable,
            ),
        ]
    }

    fn exclusive_items(&self, k: &Kinds) -> Vec<(String, JoinAgg)> {
        let d = self.d;
        // A sampled carrying pass counts each side's distinct keys to tell duplicates; an
        // exact one (no bucket) knows each side's rows from the counts run beside it.
        let counts_keys = self.kind == JoinKind::Carry && self.bucket.is_some();
        vec![
            (d.count_where(&k.only_prod), JoinAgg::OnlyProd),
            (d.count_where(&k.only_pr), JoinAgg::OnlyPr),
            Self::only_if(
                !self.windowed,
                d.count_distinct_where(&self.ident("p"), &k.only_prod),
                JoinAgg::OnlyProdKeys,
            ),
            Self::only_if(
                !self.windowed,
                d.count_distinct_where(&self.ident("q"), &k.only_pr),
                JoinAgg::OnlyPrKeys,
            ),
            Self::only_if(
                counts_keys,
                d.count_distinct_where(&self.ident("p"), ON_P),
                JoinAgg::PKeys,
            ),
            Self::only_if(
                counts_keys,
                d.count_distinct_where(&self.ident("q"), ON_Q),
                JoinAgg::QKeys,
            ),
        ]
    }

    fn match_items(&self, k: &Kinds) -> Vec<(String, JoinAgg)> {
        let d = self.d;
        // Without duplicates a row with a prod side is matched or only in prod.
        let matched = if self.windowed {
            d.count_where(&k.both)
        } else {
            format!("COUNT(x.pk0) - {}", d.count_where(&k.only_prod))
        };
        vec![
            (matched, JoinAgg::Matched),
            (d.count_where(&k.changed), JoinAgg::Changed),
        ]
    }

    fn example_items(&self, k: &Kinds) -> Vec<(String, JoinAgg)> {
        let d = self.d;
        let (tp, tq) = (self.example_text("p"), self.example_text("q"));
        vec![
            (
                d.extreme_where(false, &tp, &k.only_prod),
                JoinAgg::ExOnlyProdMin,
            ),
            (
                d.extreme_where(true, &tp, &k.only_prod),
                JoinAgg::ExOnlyProdMax,
            ),
            (
                d.extreme_where(false, &tq, &k.only_pr),
                JoinAgg::ExOnlyPrMin,
            ),
            (d.extreme_where(true, &tq, &k.only_pr), JoinAgg::ExOnlyPrMax),
            (
                d.extreme_where(false, &tp, &k.changed),
                JoinAgg::ExChangedMin,
            ),
            (
                d.extreme_where(true, &tp, &k.changed),
                JoinAgg::ExChangedMax,
            ),
        ]
    }

    /// Per reported column: matched rows where it changed, then an example of each.
    fn column_items(&self, k: &Kinds) -> Vec<(String, JoinAgg)> {
        let d = self.d;
        let changed_col = |i: usize| gate(&format!("{} AND x.d{i}", k.both));
        let mut items = Vec::new();
        for &i in &self.reported {
            items.push((d.count_where(&changed_col(i)), JoinAgg::ChangedCol(i)));
        }
        let tp = self.example_text("p");
        for &i in &self.reported {
            items.push((
                d.extreme_where(false, &tp, &changed_col(i)),
                JoinAgg::ExChangedCol(i),
            ));
        }
        items
    }
}
