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
