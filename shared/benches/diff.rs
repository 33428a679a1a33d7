//! Benchmark of the model diff on PostgreSQL (a bench binary, `harness = false`).
//!
//! Generates `prod` and `pr` tables of N rows × 8 mixed columns (about 1.5 % of rows
//! changed, 0.1 % removed, 0.1 % added) and measures, in the same run, against the same
//! tables: prdiff's exact diff, one hand-written FULL OUTER JOIN counting query (the
//! floor), reladiff's joindiff, and prdiff's sampled diff. prdiff's per-column counts are
//! checked against the truth derived from the generator's formulas; reladiff's are
//! reported next to it.
//!
//! Run it with `scripts/bench_diff.sh` (starts PostgreSQL, installs reladiff), or by hand:
//! `PRDIFF_BENCH_PG_URL=postgres://… PRDIFF_BENCH_ROWS=1000000,10000000
//!  RELADIFF=/path/to/reladiff cargo bench -p prdiff-shared --bench diff`.

use std::time::{Duration, Instant};

use prdiff_shared::diff::{self, DiffRequest, DiffResult, SamplingSettings};
use prdiff_shared::sql::Relation;
use prdiff_shared::warehouse::{self, ConnectOptions, WarehouseUrl};

const COLUMNS: [&str; 8] = [
    "c_int", "c_big", "c_text", "c_num", "c_float", "c_bool", "c_date", "c_ts",
];
/// Column i changes where `id % MODULI[i] == RESIDUES[i]` (0 = never changes).
const MODULI: [u64; 8] = [211, 0, 307, 401, 0, 503, 0, 601];
const RESIDUES: [u64; 8] = [3, 0, 5, 7, 0, 11, 0, 13];
/// Rows with `id % 997 == 1` are missing from the PR; N/1000 new rows are added.
const REMOVED_MOD: u64 = 997;

struct Truth {
    only_prod: u64,
    only_pr: u64,
    matched: u64,
    changed: u64,
    per_column: [u64; 8],
}

fn truth(n: u64) -> Truth {
    let mut t = Truth {
        only_prod: 0,
        only_pr: n / 1000,
        matched: 0,
        changed: 0,
        per_column: [0; 8],
    };
    for g in 1..=n {
        if g % REMOVED_MOD == 1 {
            t.only_prod += 1;
            continue;
        }
        t.matched += 1;
        let mut any = false;
        for i in 0..8 {
            if MODULI[i] != 0 && g % MODULI[i] == RESIDUES[i] {
                t.per_column[i] += 1;
                any = true;
            }
        }
        t.changed += any as u64;
    }
    t
}

fn generate_sql(schema: &str, n: u64) -> String {
    let change = |i: usize, changed: &str, same: &str| {
        format!(
            "CASE WHEN id % {} = {} THEN {changed} ELSE {same} END AS {}",
            MODULI[i], RESIDUES[i], COLUMNS[i]
        )
    };
    format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};
         CREATE UNLOGGED TABLE {schema}.prod AS SELECT g::bigint AS id, (g % 1000)::int AS c_int,
           (g * 31)::bigint AS c_big, 'customer_' || g AS c_text, ((g % 100000) / 100.0)::numeric(12,2) AS c_num,
           (g * 0.25)::float8 AS c_float, (g % 3 = 0) AS c_bool, DATE '2020-01-01' + (g % 3650)::int AS c_date,
           TIMESTAMP '2020-01-01' + g * INTERVAL '1 second' AS c_ts
         FROM generate_series(1, {n}) g;
         CREATE UNLOGGED TABLE {schema}.pr AS
           SELECT id, {}, c_big, {}, {}, c_float, {}, c_date, {} FROM {schema}.prod WHERE id % {REMOVED_MOD} <> 1
           UNION ALL
           SELECT g::bigint, (g % 1000)::int, (g * 31)::bigint, 'customer_' || g, ((g % 100000) / 100.0)::numeric(12,2),
             (g * 0.25)::float8, (g % 3 = 0), DATE '2020-01-01' + (g % 3650)::int, TIMESTAMP '2020-01-01' + g * INTERVAL '1 second'
           FROM generate_series({}, {}) g;",
        change(0, "c_int + 1", "c_int"),
        change(2, "upper(c_text)", "c_text"),
        change(3, "c_num + 0.01", "c_num"),
        change(5, "NOT c_bool", "c_bool"),
        change(7, "c_ts + INTERVAL '1 hour'", "c_ts"),
        n + 1,
        n + n / 1000,
    )
}

fn floor_sql(schema: &str) -> String {
    let both = "p.id IS NOT NULL AND q.id IS NOT NULL";
    let per: Vec<String> = COLUMNS
        .iter()
        .map(|c| format!("count(*) FILTER (WHERE {both} AND p.{c} IS DISTINCT FROM q.{c})"))
        .collect();
    let any: Vec<String> = COLUMNS
        .iter()
        .map(|c| format!("p.{c} IS DISTINCT FROM q.{c}"))
        .collect();
    format!(
        "SELECT count(*) FILTER (WHERE q.id IS NULL), count(*) FILTER (WHERE p.id IS NULL), count(*) FILTER (WHERE {both}), \
         count(*) FILTER (WHERE {both} AND ({})), {} FROM {schema}.prod p FULL OUTER JOIN {schema}.pr q ON p.id = q.id",
        any.join(" OR "),
        per.join(", ")
    )
}

async fn timed<T>(f: impl std::future::Future<Output = T>) -> (T, Duration) {
    let t = Instant::now();
    let v = f.await;
    (v, t.elapsed())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn check(r: &DiffResult, t: &Truth) -> Result<(), String> {
    let e = r.exclusive.ok_or("no exclusive counts")?;
    let got = (e.prod, e.pr, r.matched.unwrap_or(0), r.changed.unwrap_or(0));
    let want = (t.only_prod, t.only_pr, t.matched, t.changed);
    if got != want {
        return Err(format!("counts {got:?} != truth {want:?}"));
    }
    for (i, name) in COLUMNS.iter().enumerate() {
        let c = r
            .columns
            .iter()
            .find(|c| c.name == *name)
            .ok_or(format!("no column {name}"))?;
        if c.changed != Some(t.per_column[i]) {
            return Err(format!(
                "{name}: {:?} != truth {}",
                c.changed, t.per_column[i]
            ));
        }
    }
    Ok(())
}

/// Runs reladiff's joindiff; returns its wall time and whether its per-column counts
/// match the truth (with what it printed when they do not).
fn reladiff(bin: &str, url: &str, schema: &str, t: &Truth) -> (Duration, String) {
    // reladiff (SQLAlchemy) wants the `postgresql://` scheme.
    let url = url.replacen("postgres://", "postgresql://", 1);
    let mut cmd = std::process::Command::new(bin);
    cmd.args([
        &url,
        &format!("{schema}.prod"),
        &format!("{schema}.pr"),
        "-k",
        "id",
        "-a",
        "joindiff",
        "--stats",
        "--json",
    ]);
    for c in COLUMNS {
        cmd.args(["-c", c]);
    }
    let start = Instant::now();
    let out = cmd.output().expect("run reladiff");
    let took = start.elapsed();
    // Its console wraps long lines: join them back before parsing.
    let stdout: String = String::from_utf8_lossy(&out.stdout).lines().collect();
    let v: serde_json::Value = match serde_json::from_str(stdout.trim()) {
        Ok(v) => v,
        Err(_) => {
            let err = String::from_utf8_lossy(&out.stderr);
            return (
                took,
                format!("failed: {}", err.lines().last().unwrap_or("no output")),
            );
        }
    };
    let rows_ok = v["exclusive_A"].as_u64() == Some(t.only_prod)
        && v["exclusive_B"].as_u64() == Some(t.only_pr)
        && v["updated"].as_u64() == Some(t.changed);
    let mut wrong = Vec::new();
    for (i, c) in COLUMNS.iter().enumerate() {
        let got = v["stats"]["diff_counts"][format!("{c}_a")]
            .as_u64()
            .unwrap_or(0);
        if got != t.per_column[i] {
            wrong.push(format!("{c} {got} (truth {})", t.per_column[i]));
        }
    }
    let rows = if rows_ok {
        "row counts correct".to_owned()
    } else {
        format!(
            "row counts {} / {} / {} (truth {} / {} / {})",
            v["exclusive_A"], v["exclusive_B"], v["updated"], t.only_prod, t.only_pr, t.changed
        )
    };
    let cols = if wrong.is_empty() {
        "per-column counts correct".to_owned()
    } else {
        format!("per-column counts wrong: {}", wrong.join(", "))
    };
    (took, format!("{rows}; {cols}"))
}

#[tokio::main]
async fn main() {
    let url = std::env::var("PRDIFF_BENCH_PG_URL").expect("PRDIFF_BENCH_PG_URL");
    let sizes: Vec<u64> = std::env::var("PRDIFF_BENCH_ROWS")
        .unwrap_or_else(|_| "1000000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("PRDIFF_BENCH_ROWS: numbers"))
        .collect();
    let repeats: usize = std::env::var("PRDIFF_BENCH_REPEATS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let reladiff_bin = std::env::var("RELADIFF").ok().filter(|s| !s.is_empty());
    // reladiff's joindiff took 109 s on 1 M rows here: cap the sizes it runs on.
    let reladiff_max: u64 = std::env::var("PRDIFF_BENCH_RELADIFF_MAX_ROWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(u64::MAX);
    let wurl = WarehouseUrl::parse(&url, None).expect("URL");
    let wh = warehouse::connect(
        &wurl,
        &ConnectOptions {
            statement_timeout: Duration::from_secs(3600),
        },
    )
    .await
    .expect("connect");
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
        .batch_execute("SET statement_timeout = 0")
        .await
        .unwrap();

    println!(
        "| rows | floor (one FULL OUTER JOIN) | prdiff exact | prdiff / floor | reladiff joindiff | prdiff speed-up vs reladiff | prdiff sampled (tol 0.001, conf 0.99) | exact / sampled |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut notes = Vec::new();
    for n in sizes {
        let schema = format!("bench_{n}");
        eprintln!("generating {n} rows…");
        client
            .batch_execute(&generate_sql(&schema, n))
            .await
            .expect("generate");
        // VACUUM cannot run in the implicit transaction of a multi-statement batch.
        for t in ["prod", "pr"] {
            client
                .batch_execute(&format!("VACUUM ANALYZE {schema}.{t}"))
                .await
                .expect("vacuum");
        }
        let t = truth(n);
        let floor = floor_sql(&schema);
        let rel = |name: &str| Relation::new(None, Some(&schema), name);
        let req = DiffRequest::new(rel("prod"), rel("pr"), vec!["id".into()]);
        // Warm the cache once; then alternate floor and prdiff.
        client.simple_query(&floor).await.expect("floor");
        let (mut floors, mut exacts) = (Vec::new(), Vec::new());
        let mut last = None;
        for _ in 0..repeats {
            let (_, d) = timed(client.simple_query(&floor)).await;
            floors.push(d);
            let (r, d) = timed(diff::diff(wh.as_ref(), &req)).await;
            exacts.push(d);
            last = Some(r.expect("prdiff diff"));
        }
        let r = last.unwrap();
        if let Err(e) = check(&r, &t) {
            panic!("prdiff's exact diff is wrong at {n} rows: {e}");
        }
        let (floor_t, exact_t) = (median(floors), median(exacts));

        let mut sreq = req.clone();
        sreq.sampling = Some(SamplingSettings::new(1_000_000, 0.001, 0.99).unwrap());
        let mut samples = Vec::new();
        let mut sampled = None;
        for _ in 0..repeats {
            let (r, d) = timed(diff::diff(wh.as_ref(), &sreq)).await;
            samples.push(d);
            sampled = Some(r.expect("sampled diff"));
        }
        let s = sampled.unwrap();
        let sampled_t = median(samples);
        let true_pct = 100.0 * t.changed as f64 / t.matched as f64;
        let sinfo = s.sampled.as_ref();
        let covered = sinfo.map(|i| {
            let (lo, hi) = i.intervals["changed_pct"];
            format!(
                "rate {:.4}, changed {:.3}% in [{lo:.3}, {hi:.3}] (truth {true_pct:.3}%: {})",
                i.rate,
                100.0 * s.changed.unwrap() as f64 / s.matched.unwrap() as f64,
                if lo <= true_pct && true_pct <= hi {
                    "inside"
                } else {
                    "OUTSIDE"
                }
            )
        });

        let (rel_t, rel_note) = match &reladiff_bin {
            Some(_) if n > reladiff_max => (
                None,
                format!("not run above {reladiff_max} rows (PRDIFF_BENCH_RELADIFF_MAX_ROWS)"),
            ),
            Some(bin) => {
                let (d, note) = reladiff(bin, &url, &schema, &t);
                (Some(d), note)
            }
            None => (None, "not run (RELADIFF unset)".to_owned()),
        };
        let secs = |d: Duration| format!("{:.2} s", d.as_secs_f64());
        println!(
            "| {n} | {} | {} | {:.2}× | {} | {} | {} | {:.1}× |",
            secs(floor_t),
            secs(exact_t),
            exact_t.as_secs_f64() / floor_t.as_secs_f64(),
            rel_t.map(secs).unwrap_or("—".into()),
            rel_t
                .map(|d| format!("{:.1}×", d.as_secs_f64() / exact_t.as_secs_f64()))
                .unwrap_or("—".into()),
            if sinfo.is_some() {
                secs(sampled_t)
            } else {
                format!("{} (exact: under threshold)", secs(sampled_t))
            },
            exact_t.as_secs_f64() / sampled_t.as_secs_f64(),
        );
        notes.push(format!(
            "- {n} rows: prdiff exact counts match the truth; reladiff: {rel_note}; sampled: {}",
            covered.unwrap_or_else(|| "not sampled".into())
        ));
        if std::env::var("PRDIFF_BENCH_KEEP").is_err() {
            client
                .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
                .await
                .unwrap();
        }
    }
    println!();
    for n in notes {
        println!("{n}");
    }
}
