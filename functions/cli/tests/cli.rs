//! The `prdiff` binary as a user runs it: output formats and exit codes.

use std::process::{Command, Output};

fn prdiff(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prdiff"))
        .args(args)
        .env_remove("PGPASSWORD")
        .output()
        .expect("run prdiff")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Builds the demo warehouse in `dir` (through `prdiff demo --dir`) and returns its URL.
fn demo_warehouse(dir: &std::path::Path) -> String {
    let o = prdiff(&["demo", "--dir", dir.to_str().unwrap(), "--format", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    format!(
        "sqlite:{}?attach=prod={}&attach=dbt_cloud_pr_4242_17={}",
        dir.join("main.db").display(),
        dir.join("prod.db").display(),
        dir.join("pr.db").display()
    )
}

#[test]
fn the_demo_prints_the_markdown_report_with_the_known_differences() {
    let o = prdiff(&["demo"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    // orders: 6 returned orders added, 6 cancelled removed, amount decimal → double.
    assert!(
        out.contains("| `orders` | 54 → 54 | 6 | 6 | 0 | 0 | 1 type |"),
        "{out}"
    );
    // customers: a new column; 5 e-mails lower-cased among 12 changed rows.
    assert!(
        out.contains("| `customers` | 20 → 20 | 0 | 0 | 12 | 5 | +1 |"),
        "{out}"
    );
    // Slim CI: payments did not change, so it is not diffed.
    assert!(!out.contains("| `payments`"), "{out}");
    assert!(out.contains("Columns added: `is_repeat`"), "{out}");
    // PII values never appear.
    assert!(!out.contains("@example.com"), "{out}");
}

#[test]
fn diff_prints_one_versioned_json_object() {
    let dir = tempfile::tempdir().unwrap();
    let url = demo_warehouse(dir.path());
    let o = prdiff(&[
        "diff",
        "--warehouse",
        &url,
        "--prod",
        "prod.orders",
        "--pr",
        "dbt_cloud_pr_4242_17.orders",
        "--pk",
        "order_id",
        "--format",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    assert_eq!(v["version"], 1);
    assert_eq!(v["rows"]["prod"], 54);
    assert_eq!(v["rows"]["pr"], 54);
    assert_eq!(v["primary_key"], serde_json::json!(["order_id"]));
    assert_eq!(v["primary_key_issues"]["prod"]["nulls"], 0);
    assert_eq!(v["primary_key_issues"]["pr"]["duplicates"], 0);
    assert_eq!(v["exclusive"]["prod"], 6);
    assert_eq!(v["exclusive"]["pr"], 6);
    assert_eq!(v["matched"], 48);
    assert_eq!(v["changed"], 0);
    assert_eq!(v["unchanged"], 48);
    assert_eq!(v["schema"]["type_changed"], serde_json::json!(["amount"]));
    assert_eq!(v["sampled"], false);
    let amount = v["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "amount")
        .unwrap();
    assert_eq!(amount["prod_type"], "DECIMAL(10,2)");
    assert_eq!(amount["pr_type"], "DOUBLE");
    assert_eq!(amount["changed"], 0);
    assert_eq!(amount["changed_pct"], 0.0);
    assert!(
        v["samples"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["kind"] == "only_prod")
    );
}

#[test]
fn diff_with_filter_and_columns_in_text_format() {
    let dir = tempfile::tempdir().unwrap();
    let url = demo_warehouse(dir.path());
    let o = prdiff(&[
        "diff",
        "--warehouse",
        &url,
        "--prod",
        "prod.customers",
        "--pr",
        "dbt_cloud_pr_4242_17.customers",
        "--pk",
        "customer_id",
        "--include-columns",
        "email",
        "--filter",
        "customer_id <= 10",
        "--mask-columns",
        "email",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("rows: 10 → 10"), "{out}");
    // Customers 2, 6 and 10 have mixed-case e-mails among the first ten.
    assert!(out.contains("changed: 3"), "{out}");
    assert!(!out.contains("@example"), "{out}");
}

#[test]
fn usage_and_input_errors_exit_2_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let url = demo_warehouse(dir.path());
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "diff",
                "--warehouse",
                "mysql://u:hunter2@h/db",
                "--prod",
                "a.b",
                "--pr",
                "a.c",
            ],
            "unsupported scheme",
        ),
        (
            vec![
                "diff",
                "--warehouse",
                &url,
                "--prod",
                "prod.nope",
                "--pr",
                "prod.orders",
                "--pk",
                "order_id",
            ],
            "prod.nope",
        ),
        (
            vec![
                "diff",
                "--warehouse",
                &url,
                "--prod",
                "prod.orders",
                "--pr",
                "prod.orders",
                "--pk",
                "nope",
            ],
            "`nope`",
        ),
        (
            vec![
                "diff",
                "--warehouse",
                &url,
                "--prod",
                "a..b",
                "--pr",
                "prod.orders",
            ],
            "--prod",
        ),
        (
            vec![
                "diff",
                "--warehouse",
                &url,
                "--prod",
                "prod.orders",
                "--pr",
                "prod.orders",
                "--pk",
                "order_id",
                "--sampling-tolerance",
                "1.5",
            ],
            "tolerance",
        ),
        (
            vec![
                "diff",
                "--warehouse",
                &url,
                "--prod",
                "prod.orders",
                "--pr",
                "prod.orders",
                "--pk",
                "order_id",
                "--filter",
                "nope_col = 1",
            ],
            "nope_col",
        ),
        (vec!["diff", "--bogus"], "--bogus"),
    ];
    for (args, needle) in cases {
        let o = prdiff(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
        assert!(
            !stderr(&o).contains("hunter2"),
            "password leaked: {}",
            stderr(&o)
        );
    }
}

#[test]
fn an_unreachable_warehouse_exits_1_without_showing_the_password() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://me:hunter2@127.0.0.1:{port}/db");
    let o = prdiff(&[
        "diff",
        "--warehouse",
        &url,
        "--prod",
        "a.b",
        "--pr",
        "a.c",
        "--pk",
        "id",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot connect"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("hunter2"), "{}", stderr(&o));
}

/// Every argument and option in `prdiff <command> -h` has a description: the text after
/// the flag (or on the next line) is not empty and is not only clap's `[default: …]`.
fn undescribed_arguments(help: &str) -> Vec<String> {
    let lines: Vec<&str> = help.lines().collect();
    let mut missing = Vec::new();
    let mut in_list = false;
    for (i, line) in lines.iter().enumerate() {
        if line.ends_with(':') && !line.starts_with(' ') {
            in_list = matches!(*line, "Arguments:" | "Options:");
            continue;
        }
        let trimmed = line.trim_start();
        if !in_list || !(trimmed.starts_with('-') || trimmed.starts_with('<')) {
            continue;
        }
        let description = match trimmed.split_once("  ") {
            Some((_, rest)) => rest.trim().to_owned(),
            None => lines
                .get(i + 1)
                .map_or(String::new(), |l| l.trim().to_owned()),
        };
        if description.is_empty()
            || description.starts_with('[')
            || description.starts_with('-')
            || description.starts_with('<')
        {
            missing.push(trimmed.to_owned());
        }
    }
    missing
}

#[test]
fn every_command_argument_and_option_has_help() {
    let commands: &[&[&str]] = &[
        &["diff"],
        &["demo"],
        &["plan"],
        &["config", "apply"],
        &["config", "list"],
        &["config", "show"],
        &["config", "delete"],
        &["config", "check"],
        &["sync"],
        &["metadata", "show"],
        &["serve"],
        &["queue", "status"],
        &["queue", "dead-letters"],
        &["queue", "replay"],
    ];
    for command in commands {
        let o = prdiff(&[command, &["-h"][..]].concat());
        assert_eq!(o.status.code(), Some(0), "{command:?}: {}", stderr(&o));
        let help = stdout(&o);
        assert!(help.contains("Options:"), "{command:?}: {help}");
        let missing = undescribed_arguments(&help);
        assert!(
            missing.is_empty(),
            "{command:?} without help: {missing:?}\n{help}"
        );
    }
}

#[test]
fn the_top_level_help_describes_every_command() {
    let o = prdiff(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    let help = stdout(&o);
    let about = help.split("Usage:").next().unwrap();
    for command in [
        "diff", "demo", "plan", "config", "sync", "metadata", "serve", "queue",
    ] {
        assert!(
            about.contains(&format!("`{command}`")),
            "{command}: {about}"
        );
    }
}

#[test]
fn the_sampling_tolerance_help_says_what_it_does() {
    let help = stdout(&prdiff(&["diff", "--help"]));
    let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("--sampling-tolerance <SAMPLING_TOLERANCE> Turns sampling on"),
        "{help}"
    );
    assert!(flat.contains("--format <FORMAT> Output format"), "{help}");
}

#[test]
fn a_zero_timeout_is_refused_with_exit_2() {
    let o = prdiff(&[
        "diff",
        "--warehouse",
        "sqlite:unused.db",
        "--prod",
        "a.b",
        "--pr",
        "a.c",
        "--timeout",
        "0",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--timeout"), "{}", stderr(&o));
    assert!(stderr(&o).contains("0 is not in 1.."), "{}", stderr(&o));
}

#[test]
fn a_missing_sqlite_file_is_named_and_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.db");
    let url = format!("sqlite:{}", missing.display());
    let o = prdiff(&[
        "diff",
        "--warehouse",
        &url,
        "--prod",
        "main.a",
        "--pr",
        "main.b",
        "--pk",
        "id",
    ]);
    let err = stderr(&o);
    assert_ne!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!("{} does not exist", missing.display())),
        "{err}"
    );
    assert!(!err.contains("filter"), "{err}");
    assert!(!missing.exists(), "the missing file was created");
}

/// The `: `-separated parts of an error line, each of which must appear once.
fn repeated_parts(line: &str) -> Vec<String> {
    let parts: Vec<&str> = line.split(": ").map(str::trim).collect();
    let mut repeated: Vec<String> = parts
        .iter()
        .enumerate()
        .filter(|(i, p)| parts[..*i].contains(p))
        .map(|(_, p)| (*p).to_owned())
        .collect();
    repeated.dedup();
    repeated
}

#[test]
fn a_connection_error_names_each_cause_once() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://me@127.0.0.1:{port}/db?sslmode=disable");
    let o = prdiff(&[
        "diff",
        "--warehouse",
        &url,
        "--prod",
        "a.b",
        "--pr",
        "a.c",
        "--pk",
        "id",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let line = err.lines().find(|l| l.starts_with("prdiff diff:")).unwrap();
    assert!(repeated_parts(line).is_empty(), "{line}");
    assert_eq!(
        line.matches("error connecting to server").count(),
        1,
        "{line}"
    );
}

#[test]
fn demo_dir_says_where_the_data_is_and_the_diff_it_prints_runs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo data");
    let o = prdiff(&["demo", "--dir", data.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("the demo warehouse is in {}", data.display())),
        "{err}"
    );
    assert!(data.join("prod.db").exists() && data.join("pr.db").exists());
    let command = err
        .lines()
        .find_map(|l| l.trim().strip_prefix("prdiff diff "))
        .unwrap_or_else(|| panic!("no prdiff diff command in: {err}"));
    // Run it as a shell would (the URL is quoted there).
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("exec \"$0\" diff {command} --format json"))
        .arg(env!("CARGO_BIN_EXE_prdiff"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["exclusive"]["pr"], 6, "{v}");
    assert_eq!(v["exclusive"]["prod"], 6, "{v}");
}

fn sample_kinds(samples: &serde_json::Value) -> std::collections::BTreeMap<String, usize> {
    let mut kinds = std::collections::BTreeMap::new();
    for s in samples.as_array().unwrap() {
        *kinds
            .entry(s["kind"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    kinds
}

#[test]
fn samples_sets_how_many_example_rows_each_kind_shows() {
    let dir = tempfile::tempdir().unwrap();
    let url = demo_warehouse(dir.path());
    let run = |n: &str| {
        let o = prdiff(&[
            "diff",
            "--warehouse",
            &url,
            "--prod",
            "prod.orders",
            "--pr",
            "dbt_cloud_pr_4242_17.orders",
            "--pk",
            "order_id",
            "--format",
            "json",
            "--samples",
            n,
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        sample_kinds(&v["samples"])
    };
    let none = run("0");
    let one = run("1");
    let more = run("2");
    assert!(none.is_empty(), "{none:?}");
    assert!(one.values().all(|&n| n == 1), "{one:?}");
    assert!(more.values().any(|&n| n == 2), "{more:?}");
    assert!(more.values().all(|&n| n <= 2), "{more:?}");
}
