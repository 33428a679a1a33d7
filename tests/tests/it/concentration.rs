//! Where the changed rows concentrate, on every engine the engine tests run on
//! (PostgreSQL plain, over TLS and as Redshift; SQLite; Snowflake on fakesnow; BigQuery on
//! bqemulator): designed data whose changes sit 90 % in one region.

use prdiff_shared::diff::{Concentration, DiffResult};

use crate::engine::{load, run};

const COLUMNS: &str =
    "id integer, region text, channel text, email text, note text, amount integer";

/// 100 matched rows; `amount` changes on ids 1–50 and nothing else does.
/// - `region`: 45 of the 50 changed rows are `EU`, 5 are `US` (the unchanged rows are
///   `APAC`): 90 % in `EU`.
/// - `channel`: 35 changed rows `web`, 15 `app`: 70 % `web`.
/// - `email`: one value on every row (the fewest distinct values of all), but masked.
/// - `note`: a different value on every row: 50 distinct among the changed rows, not
///   low-cardinality.
///
/// Key 1000 is duplicated in prod (its amount differs too): the unfiltered diff takes the
/// windowed pass, which leaves it out, so the shares are the same.
fn tables() -> (String, String) {
    let rows = |changed: bool| -> String {
        let mut v: Vec<String> = (1..=100)
            .map(|id| {
                let region = match id {
                    1..=45 => "EU",
                    46..=50 => "US",
                    _ => "APAC",
                };
                let channel = if id <= 35 { "web" } else { "app" };
                let amount = if changed && id <= 50 { id + 1000 } else { id };
                format!(
                    "({id}, '{region}', '{channel}', 'same@example.com', 'note {id}', {amount})"
                )
            })
            .collect();
        if changed {
            v.push("(1000, 'US', 'app', 'same@example.com', 'dup', 7)".into());
        } else {
            v.push("(1000, 'US', 'app', 'same@example.com', 'dup', 1)".into());
            v.push("(1000, 'US', 'app', 'same@example.com', 'dup', 2)".into());
        }
        v.join(", ")
    };
    (
        format!(
            "CREATE TABLE t ({COLUMNS}); INSERT INTO t VALUES {};",
            rows(false)
        ),
        format!(
            "CREATE TABLE t ({COLUMNS}); INSERT INTO t VALUES {};",
            rows(true)
        ),
    )
}

/// Each dimension's column and its top value with its changed rows.
fn tops(c: &Concentration) -> Vec<(String, Option<String>, u64)> {
    c.dimensions
        .iter()
        .map(|d| {
            let t = &d.top[0];
            (d.column.to_ascii_lowercase(), t.value.clone(), t.rows)
        })
        .collect()
}

fn concentration<'a>(r: &'a DiffResult, k: &str) -> &'a Concentration {
    r.concentration
        .as_ref()
        .unwrap_or_else(|| panic!("{k}: no concentration in {r:#?}"))
}

#[tokio::test]
async fn changes_concentrate_in_low_cardinality_columns_chosen_or_named() {
    let (prod, pr) = tables();
    for l in load(&prod, &pr).await {
        let k = l.kind;
        let mut req = l.request("t", &["id"]);
        req.masked_columns = vec!["email".into()];
        let plain = {
            let mut q = req.clone();
            q.filter = Some("id < 1000".into());
            run(&l, &q).await
        };
        let windowed = run(&l, &req).await;
        assert_eq!(plain.primary_key_issues.prod.duplicates, 0, "{k}: plain");
        assert_eq!(
            windowed.primary_key_issues.prod.duplicates, 2,
            "{k}: windowed"
        );
        for (pass, r) in [("plain", &plain), ("windowed", &windowed)] {
            assert_eq!(r.changed, Some(50), "{k} {pass}");
            let c = concentration(r, k);
            assert_eq!(c.changed_rows, 50, "{k} {pass}");
            assert_eq!(c.sample_rate, None, "{k} {pass}: every changed row");
            assert_eq!(c.chosen, "auto", "{k} {pass}");
            // Masked `email` and high-cardinality `note` are never shown; `amount` changed.
            assert_eq!(
                tops(c),
                [
                    ("region".into(), Some("EU".into()), 45),
                    ("channel".into(), Some("web".into()), 35),
                ],
                "{k} {pass}"
            );
            let region = &c.dimensions[0];
            assert_eq!(region.distinct, 2, "{k} {pass}");
            let second: Vec<_> = region
                .top
                .iter()
                .map(|t| (t.value.clone(), t.rows))
                .collect();
            assert_eq!(
                second,
                [(Some("EU".into()), 45), (Some("US".into()), 5)],
                "{k} {pass}"
            );
            // Snowflake stores the unquoted column names upper-cased.
            let line = prdiff_shared::report::concentration_line(c, true)
                .replace("`REGION`", "`region`")
                .replace("`CHANNEL`", "`channel`");
            assert_eq!(
                line,
                "Changes concentrate in: `region` = `EU` 90 % (45 of 50) · `channel` = `web` 70 %",
                "{k} {pass}"
            );
        }

        // Named dimensions are honoured in their order, whatever their cardinality; a
        // masked one is never shown, an unknown one is noted.
        let mut named = req.clone();
        named.dimensions = vec![
            "channel".into(),
            "email".into(),
            "note".into(),
            "nope".into(),
        ];
        let r = run(&l, &named).await;
        let c = concentration(&r, k);
        assert_eq!(c.chosen, "meta", "{k}");
        let cols: Vec<String> = c
            .dimensions
            .iter()
            .map(|d| d.column.to_ascii_lowercase())
            .collect();
        assert_eq!(cols, ["channel", "note"], "{k}");
        assert_eq!(c.dimensions[1].distinct, 50, "{k}: every note differs");
        assert_eq!(c.dimensions[1].top.len(), 3, "{k}: the top three kept");
        assert!(
            r.notes.iter().any(|n| n.contains("dimension `nope`")),
            "{k}: {:?}",
            r.notes
        );
        let json = serde_json::to_string(&r).unwrap();
        assert!(
            !json.contains("same@example.com"),
            "{k}: masked value leaked"
        );

        // Nothing changed: no statement, nothing reported.
        let mut same = req.clone();
        same.exclude_columns = vec!["amount".into()];
        let r = run(&l, &same).await;
        assert_eq!(r.changed, Some(0), "{k}");
        assert_eq!(r.concentration, None, "{k}");
    }
}
