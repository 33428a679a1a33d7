//! Rename detection on every engine the engine tests run on (PostgreSQL plain, over TLS
//! and as Redshift; SQLite; Snowflake on fakesnow; BigQuery on bqemulator), on designed
//! data: one true rename and one pair of unrelated columns of the same type.

use prdiff_shared::diff::DiffRequest;

use crate::engine::{Loaded, changed_of, load, run};

fn request(l: &Loaded) -> DiffRequest {
    DiffRequest::new(l.rel("prod", "t"), l.rel("pr", "t_pr"), vec!["id".into()])
}

/// 200 rows. `old_amount` → `new_amount` (integer → bigint) agrees on 199 rows (99.5 %);
/// `gone` and `fresh` (text) agree on 190 (95 %): unrelated, they stay removed and added.
/// `keep` differs on row 9, the renamed column on row 7 (where `keep` is NULL on both
/// sides). `empty_old` → `empty_new` are NULL on every row: no evidence, no rename.
///
/// The PR's table has another name: bqemulator binds a column of a table to the
/// same-named table of another dataset (`Table "t" does not have a column named
/// "new_amount"`), a stand-in limitation, not BigQuery's.
fn tables() -> (String, String) {
    let (mut p, mut q) = (Vec::new(), Vec::new());
    for i in 1..=200 {
        let new_amount = if i == 7 { -1 } else { i * 10 };
        let fresh = if i <= 190 {
            format!("v{i}")
        } else {
            format!("w{i}")
        };
        // Row 7 has `keep` NULL on both sides: unchanged there, whatever the dialect's
        // NULL-safe test makes of NULL against NULL.
        let keep_p = if i == 7 {
            "NULL".to_owned()
        } else {
            i.to_string()
        };
        let keep = match i {
            7 => "NULL".to_owned(),
            9 => "0".to_owned(),
            _ => i.to_string(),
        };
        p.push(format!("({i}, {}, 'v{i}', {keep_p}, NULL)", i * 10));
        q.push(format!("({i}, {new_amount}, '{fresh}', {keep}, NULL)"));
    }
    (
        format!(
            "CREATE TABLE t (id integer, old_amount integer, gone text, keep integer, empty_old integer);
             INSERT INTO t VALUES {};",
            p.join(", ")
        ),
        format!(
            "CREATE TABLE t_pr (id integer, new_amount bigint, fresh text, keep integer, empty_new bigint);
             INSERT INTO t_pr VALUES {};",
            q.join(", ")
        ),
    )
}

#[tokio::test]
async fn a_column_renamed_with_its_values_is_compared_as_one_and_unrelated_ones_are_not() {
    let (prod, pr) = tables();
    for l in load(&prod, &pr).await {
        let k = l.kind;
        let r = run(&l, &request(&l)).await;
        assert_eq!(r.schema.renamed.len(), 1, "{k}: {:?}", r.schema);
        let rn = &r.schema.renamed[0];
        assert_eq!(
            (rn.from.as_str(), rn.to.as_str()),
            ("old_amount", "new_amount"),
            "{k}"
        );
        assert_eq!(rn.agreement_pct, 99.5, "{k}");
        assert_eq!(
            r.schema.removed,
            ["gone", "empty_old"],
            "{k}: 95 % agreement is no rename, nor two columns NULL everywhere"
        );
        assert_eq!(r.schema.added, ["fresh", "empty_new"], "{k}");
        assert_eq!(r.matched, Some(200), "{k}");
        assert_eq!(changed_of(&r, "new_amount"), 1, "{k}: row 7");
        assert_eq!(changed_of(&r, "keep"), 1, "{k}: row 9");
        assert_eq!(r.changed, Some(2), "{k}: rows 7 and 9");
        assert_eq!(r.unchanged, Some(198), "{k}");

        // Excluding the new name leaves the pair alone.
        let mut req = request(&l);
        req.exclude_columns = vec!["new_amount".into()];
        let r = run(&l, &req).await;
        assert!(r.schema.renamed.is_empty(), "{k}");
        assert_eq!(r.schema.removed, ["old_amount", "gone", "empty_old"], "{k}");
        assert_eq!(r.changed, Some(1), "{k}: row 9 only");
    }
}

/// A sampled diff judges the pairs on its sample: 20 000 rows, `old_v` → `new_v` equal
/// everywhere, `gone` and `fresh` unrelated random numbers, `keep` changed on every 25th
/// row.
#[tokio::test]
async fn a_sampled_diff_finds_the_rename_in_its_sample() {
    let (mut pv, mut qv) = (Vec::new(), Vec::new());
    for i in 0..20_000u64 {
        let v = i % 97;
        let keep = if i % 25 == 0 { i + 1 } else { i };
        pv.push(format!("({i}, {v}, {}, {i})", (i * 7919) % 1000));
        qv.push(format!("({i}, {v}, {}, {keep})", (i * 104_729) % 1013));
    }
    let sql = |table: &str, cols: &str, v: &[String]| {
        let mut s = format!("CREATE TABLE {table} (id integer, {cols}, keep integer);\n");
        for chunk in v.chunks(1000) {
            s.push_str(&format!(
                "INSERT INTO {table} VALUES {};\n",
                chunk.join(", ")
            ));
        }
        s
    };
    let prod = sql("s", "old_v integer, gone integer", &pv);
    let pr = sql("s_pr", "new_v integer, fresh integer", &qv);
    for l in load(&prod, &pr).await {
        let k = l.kind;
        let mut req = DiffRequest::new(l.rel("prod", "s"), l.rel("pr", "s_pr"), vec!["id".into()]);
        req.sampling = Some(prdiff_shared::diff::SamplingSettings::new(1_000, 0.02, 0.9).unwrap());
        req.pilot_rows = 400;
        let r = run(&l, &req).await;
        let s = r.sampled.as_ref().expect("sampled");
        assert!(s.rate < 0.5, "{k}: sampled, not exact");
        assert_eq!(r.schema.renamed.len(), 1, "{k}: {:?}", r.schema);
        let rn = &r.schema.renamed[0];
        assert_eq!(
            (rn.from.as_str(), rn.to.as_str(), rn.agreement_pct),
            ("old_v", "new_v", 100.0),
            "{k}"
        );
        assert_eq!(r.schema.removed, ["gone"], "{k}");
        assert_eq!(r.schema.added, ["fresh"], "{k}");
        assert_eq!(changed_of(&r, "new_v"), 0, "{k}");
        let c = r.columns.iter().find(|c| c.name == "new_v").unwrap();
        assert!(c.changed_pct_interval.is_some(), "{k}: a sampled interval");
    }
}

/// Two renames in one model: `a_old` → `a_new` (integer) and `b_old` → `b_new` (text),
/// 400 matched rows. Row 5 differs in both renamed columns only, row 6 in `a` only, row 7
/// in `b` only, row 8 in `a` and `keep`. Four rows changed, each counted once: row 5 is
/// not counted twice for its two renamed columns. With `duplicated`, key 401 is twice in
/// production (and once in the PR), so the join is redone windowed and the count follows.
fn two_renames(duplicated: bool) -> (String, String) {
    let (mut p, mut q) = (Vec::new(), Vec::new());
    for i in 1..=400 {
        let a = if matches!(i, 5 | 6 | 8) { -i } else { i };
        let b = if matches!(i, 5 | 7) {
            "changed"
        } else {
            "same"
        };
        let keep = if i == 8 { 0 } else { i };
        p.push(format!("({i}, {i}, 'same', {i})"));
        q.push(format!("({i}, {a}, '{b}', {keep})"));
    }
    if duplicated {
        p.push("(401, 1, 'x', 1)".into());
        p.push("(401, 2, 'y', 2)".into());
        q.push("(401, 1, 'x', 1)".into());
    }
    (
        format!(
            "CREATE TABLE u (id integer, a_old integer, b_old text, keep integer);
             INSERT INTO u VALUES {};",
            p.join(", ")
        ),
        format!(
            "CREATE TABLE u_pr (id integer, a_new integer, b_new text, keep integer);
             INSERT INTO u_pr VALUES {};",
            q.join(", ")
        ),
    )
}

#[tokio::test]
async fn a_row_where_two_renamed_columns_differ_is_one_changed_row() {
    for duplicated in [false, true] {
        let (prod, pr) = two_renames(duplicated);
        for l in load(&prod, &pr).await {
            let k = l.kind;
            let req = DiffRequest::new(l.rel("prod", "u"), l.rel("pr", "u_pr"), vec!["id".into()]);
            let r = run(&l, &req).await;
            let mut renamed: Vec<(&str, &str)> = r
                .schema
                .renamed
                .iter()
                .map(|rn| (rn.from.as_str(), rn.to.as_str()))
                .collect();
            renamed.sort();
            assert_eq!(
                renamed,
                [("a_old", "a_new"), ("b_old", "b_new")],
                "{k}: {:?}",
                r.schema
            );
            assert_eq!(r.matched, Some(400), "{k} (duplicated: {duplicated})");
            assert_eq!(changed_of(&r, "a_new"), 3, "{k}: rows 5, 6 and 8");
            assert_eq!(changed_of(&r, "b_new"), 2, "{k}: rows 5 and 7");
            assert_eq!(changed_of(&r, "keep"), 1, "{k}: row 8");
            assert_eq!(
                r.changed,
                Some(4),
                "{k} (duplicated: {duplicated}): rows 5 to 8, each once"
            );
            assert_eq!(r.unchanged, Some(396), "{k}");
            assert!(
                !r.notes
                    .iter()
                    .any(|n| n.contains("several columns were renamed")),
                "{k}: {:?}",
                r.notes
            );
        }
    }
}
