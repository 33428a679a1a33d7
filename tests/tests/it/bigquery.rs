//! The BigQuery driver: its REST protocol against a recorded-shape stand-in (wiremock:
//! polling an incomplete job, pages, the request's cost guard and timeouts, cancelling on
//! timeout and on a dropped future), and against bqemulator (BigQuery's REST API over
//! DuckDB, started by `scripts/test.sh`): values, errors, dry runs.

use std::time::Duration;

use prdiff_shared::sql::Relation;
use prdiff_shared::warehouse::bigquery::BigQueryWarehouse;
use prdiff_shared::warehouse::{
    self, ConnectOptions, PrivilegeScope, Warehouse, WarehouseError, WarehouseUrl,
};
use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

const JOBS: &str = "/bigquery/v2/projects/proj-1";

fn url_for(server: &MockServer, extra: &str) -> prdiff_shared::warehouse::BigQueryUrl {
    let text = format!("bigquery://proj-1?endpoint={}{extra}", server.uri());
    match WarehouseUrl::parse(&text, None).unwrap() {
        WarehouseUrl::BigQuery(bq) => bq,
        other => panic!("not bigquery: {other}"),
    }
}

fn rows(values: &[&str]) -> Value {
    Value::Array(
        values
            .iter()
            .map(|v| json!({"f": [{"v": v}, {"v": null}]}))
            .collect(),
    )
}

/// `SELECT 1` (the connect check) answers at once.
async fn mount_select_1(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path(format!("{JOBS}/queries")))
        .and(body_partial_json(json!({"query": "SELECT 1"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "kind": "bigquery#queryResponse",
            "jobReference": {"projectId": "proj-1", "jobId": "j0", "location": "EU"},
            "jobComplete": true,
            "schema": {"fields": [{"name": "f0_", "type": "INTEGER"}]},
            "rows": [{"f": [{"v": "1"}]}],
            "totalRows": "1"
        })))
        .mount(server)
        .await;
}

#[tokio::test]
async fn an_incomplete_job_is_polled_and_every_page_read() {
    let server = MockServer::start().await;
    mount_select_1(&server).await;
    Mock::given(method("POST"))
        .and(path(format!("{JOBS}/queries")))
        .and(body_partial_json(json!({"query": "SELECT n, x FROM t"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "jobReference": {"projectId": "proj-1", "jobId": "job-1", "location": "EU"},
            "jobComplete": false
        })))
        .mount(&server)
        .await;
    // Still running at the first poll, complete at the second, with a second page.
    Mock::given(method("GET"))
        .and(path(format!("{JOBS}/queries/job-1")))
        .and(query_param_is_missing("pageToken"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "jobReference": {"projectId": "proj-1", "jobId": "job-1", "location": "EU"},
            "jobComplete": false
        })))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{JOBS}/queries/job-1")))
        .and(query_param_is_missing("pageToken"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "jobReference": {"projectId": "proj-1", "jobId": "job-1", "location": "EU"},
            "jobComplete": true,
            "schema": {"fields": [{"name": "n"}, {"name": "x"}]},
            "rows": rows(&["1", "2"]),
            "pageToken": "page-2",
            "totalRows": "3"
        })))
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{JOBS}/queries/job-1")))
        .and(query_param("pageToken", "page-2"))
        .and(query_param("location", "EU"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "jobReference": {"projectId": "proj-1", "jobId": "job-1", "location": "EU"},
            "jobComplete": true,
            "schema": {"fields": [{"name": "n"}, {"name": "x"}]},
            "rows": rows(&["3"]),
            "totalRows": "3"
        })))
        .mount(&server)
        .await;

    let url = url_for(
        &server,
        "&location=EU&dataset=analytics&maximum_bytes_billed=1000000",
    );
    let options = ConnectOptions {
        statement_timeout: Duration::from_secs(30),
    };
    let wh = warehouse::connect(&WarehouseUrl::BigQuery(url), &options)
        .await
        .unwrap();
    assert_eq!(wh.dialect().name(), "bigquery");
    let got = wh.query("SELECT n, x FROM t").await.unwrap();
    assert_eq!(
        got,
        vec![
            vec![Some("1".to_owned()), None],
            vec![Some("2".to_owned()), None],
            vec![Some("3".to_owned()), None]
        ]
    );

    let requests = server.received_requests().await.unwrap();
    let post: Value = requests
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .find(|b: &Value| b["query"] == "SELECT n, x FROM t")
        .expect("the statement's jobs.query");
    assert_eq!(post["useLegacySql"], false);
    assert_eq!(post["location"], "EU");
    assert_eq!(post["maximumBytesBilled"], "1000000");
    assert_eq!(post["jobTimeoutMs"], "30000");
    assert_eq!(post["timeoutMs"], 10000);
    assert_eq!(post["dryRun"], false);
    assert_eq!(post["requestId"].as_str().map(str::len), Some(36));
    assert_eq!(
        post["defaultDataset"],
        json!({"projectId": "proj-1", "datasetId": "analytics"})
    );
    // Loopback endpoint: no token was fetched or sent.
    assert!(
        requests
            .iter()
            .all(|r| !r.headers.contains_key("authorization"))
    );
    let polls: Vec<_> = requests
        .iter()
        .filter(|r| r.method.as_str() == "GET")
        .collect();
    assert_eq!(polls.len(), 3, "two polls and one further page");
    assert!(
        polls
            .iter()
            .all(|r| r.url.query().unwrap().contains("location=EU"))
    );
}

/// Mounts a statement whose job never completes (`job-slow`), and `jobs.cancel` for it.
async fn mount_slow_job(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path(format!("{JOBS}/queries")))
        .and(body_partial_json(json!({"query": "SELECT slow"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "jobReference": {"projectId": "proj-1", "jobId": "job-slow", "location": "EU"},
            "jobComplete": false
        })))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{JOBS}/queries/job-slow")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({
                    "jobReference": {"projectId": "proj-1", "jobId": "job-slow", "location": "EU"},
                    "jobComplete": false
                }))
                .set_delay(Duration::from_millis(300)),
        )
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{JOBS}/jobs/job-slow/cancel")))
        .and(query_param("location", "EU"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "kind": "bigquery#jobCancelResponse",
            "job": {"jobReference": {"projectId": "proj-1", "jobId": "job-slow"}}
        })))
        .mount(server)
        .await;
}

/// Whether `jobs.cancel` for `job-slow` arrives within a few seconds.
async fn cancelled(server: &MockServer) -> bool {
    for _ in 0..50 {
        let requests = server.received_requests().await.unwrap();
        if requests
            .iter()
            .any(|r| r.method.as_str() == "POST" && r.url.path().ends_with("/jobs/job-slow/cancel"))
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn a_job_past_its_timeout_is_cancelled_on_the_server() {
    let server = MockServer::start().await;
    mount_select_1(&server).await;
    mount_slow_job(&server).await;
    let options = ConnectOptions {
        statement_timeout: Duration::from_secs(1),
    };
    let wh = warehouse::connect(&WarehouseUrl::BigQuery(url_for(&server, "")), &options)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let e = wh.query("SELECT slow").await.unwrap_err();
    assert!(
        matches!(e, WarehouseError::Timeout(d) if d == Duration::from_secs(1)),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(cancelled(&server).await, "jobs.cancel was not sent");
    // The job's own server-side timeout was the statement timeout.
    let requests = server.received_requests().await.unwrap();
    let post: Value = requests
        .iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path().ends_with("/queries"))
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .find(|b: &Value| b["query"] == "SELECT slow")
        .unwrap();
    assert_eq!(post["jobTimeoutMs"], "1000");
    assert_eq!(post["timeoutMs"], 1000);
}

#[tokio::test]
async fn a_dropped_query_cancels_its_job() {
    let server = MockServer::start().await;
    mount_select_1(&server).await;
    mount_slow_job(&server).await;
    let wh = warehouse::connect(
        &WarehouseUrl::BigQuery(url_for(&server, "")),
        &ConnectOptions::default(),
    )
    .await
    .unwrap();
    let r = tokio::time::timeout(Duration::from_millis(800), wh.query("SELECT slow")).await;
    assert!(r.is_err(), "the query should still be running");
    assert!(cancelled(&server).await, "jobs.cancel was not sent");
}

#[tokio::test]
async fn api_errors_carry_reason_and_message_and_refused_credentials_fail_the_connect() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("{JOBS}/queries")))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "error": {"code": 403, "status": "PERMISSION_DENIED",
                "message": "Access Denied: Project proj-1: User does not have bigquery.jobs.create permission in project proj-1.",
                "errors": [{"reason": "accessDenied", "domain": "global",
                    "message": "Access Denied: Project proj-1: User does not have bigquery.jobs.create permission in project proj-1."}]}
        })))
        .mount(&server)
        .await;
    let e = warehouse::connect(
        &WarehouseUrl::BigQuery(url_for(&server, "")),
        &ConnectOptions::default(),
    )
    .await
    .err()
    .expect("connect should fail");
    assert!(
        matches!(
            &e,
            WarehouseError::Connect {
                retryable: false,
                ..
            }
        ),
        "{e:?}"
    );
    let text = prdiff_shared::error_chain(&e);
    assert!(
        text.contains("accessDenied") && text.contains("bigquery.jobs.create"),
        "{text}"
    );
}

// ---- bqemulator ----------------------------------------------------------------------

async fn emulator() -> BigQueryWarehouse {
    let WarehouseUrl::BigQuery(url) =
        WarehouseUrl::parse(&prdiff_tests::bigquery_url(), None).unwrap()
    else {
        panic!("PRDIFF_TEST_BIGQUERY_URL is not a bigquery:// URL")
    };
    BigQueryWarehouse::connect(&url, &ConnectOptions::default())
        .await
        .expect("connect to bqemulator")
}

#[tokio::test]
async fn the_emulator_returns_values_as_text() {
    let admin = prdiff_tests::BigQueryAdmin::new();
    let ds = prdiff_tests::unique_name("bqv");
    admin.create_dataset(&ds).await;
    admin
        .exec(&format!(
            "CREATE TABLE `{ds}`.t (id INT64, s STRING, f FLOAT64, b BOOL, d DATE, n NUMERIC)"
        ))
        .await;
    admin
        .exec(&format!(
            "INSERT INTO `{ds}`.t VALUES (1, 'a', 1.5, TRUE, '2024-01-31', 12.25), (2, NULL, NULL, NULL, NULL, NULL)"
        ))
        .await;
    let wh = emulator().await;
    let rows = wh
        .query(&format!(
            "SELECT id, s, f, b, CAST(d AS STRING), CAST(n AS STRING) FROM `{ds}`.t ORDER BY id"
        ))
        .await
        .unwrap();
    fn text(r: &[Option<String>]) -> Vec<Option<&str>> {
        r.iter().map(|v| v.as_deref()).collect()
    }
    assert_eq!(
        text(&rows[0]),
        vec![
            Some("1"),
            Some("a"),
            Some("1.5"),
            Some("true"),
            Some("2024-01-31"),
            // BigQuery prints NUMERIC 12.25 as "12.25"; bqemulator (a DuckDB DECIMAL with
            // a default scale) as "12.250": an emulator difference, asserted as such.
            Some("12.250")
        ]
    );
    assert_eq!(
        text(&rows[1]),
        vec![Some("2"), None, None, None, None, None]
    );
    // Statements run beside the long one go the same way.
    let n = wh
        .query_beside(&format!(
            "SELECT COUNT(*), COUNTIF(s IS NULL), COUNTIF(id > 5) FROM `{ds}`.t"
        ))
        .await
        .unwrap();
    assert_eq!(
        n,
        vec![vec![
            Some("2".to_owned()),
            Some("1".to_owned()),
            Some("0".to_owned())
        ]]
    );
}

#[tokio::test]
async fn the_emulator_rejects_unknown_tables_with_its_reason() {
    let wh = emulator().await;
    let e = wh
        .query("SELECT x FROM no_such_dataset.no_such_table")
        .await
        .unwrap_err();
    assert!(
        matches!(&e, WarehouseError::Rejected { message } if message.contains("notFound")),
        "{e}"
    );
}

#[tokio::test]
async fn a_dry_run_reports_the_bytes_a_statement_would_process() {
    let admin = prdiff_tests::BigQueryAdmin::new();
    let ds = prdiff_tests::unique_name("bqdry");
    admin.create_dataset(&ds).await;
    admin
        .exec(&format!("CREATE TABLE `{ds}`.t AS SELECT 1 AS id"))
        .await;
    let wh = emulator().await;
    // bqemulator answers dry runs with the standard response and totalBytesProcessed "0"
    // (it does not estimate bytes); the response shape with real figures is covered by
    // the driver's unit test.
    let bytes = wh
        .dry_run_bytes(&format!("SELECT id FROM `{ds}`.t"))
        .await
        .unwrap();
    assert_eq!(bytes, 0);
    // A dry run still checks the statement.
    let e = wh
        .dry_run_bytes(&format!("SELECT nope FROM `{ds}`.missing"))
        .await
        .unwrap_err();
    assert!(matches!(e, WarehouseError::Rejected { .. }), "{e}");
}

// ---- the engine tests' data on bqemulator -----------------------------------------------

/// A BigQuery dataset name for an engine test's schema name: BigQuery allows only
/// letters, digits and underscores there, so anything else becomes `_` (the engine tests'
/// deliberately hostile schema names cannot exist on BigQuery).
pub fn dataset_name(schema: &str) -> String {
    schema
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// The engine tests' PostgreSQL-flavoured setup script as GoogleSQL statements, with every
/// created or filled table qualified with `dataset`: double-quoted names become
/// backtick-quoted, `''` inside strings `\'`, and PostgreSQL's column types BigQuery's
/// (every integer type → INT64, text and varchar → STRING, double precision and real →
/// FLOAT64, boolean → BOOL, timestamp(n) → TIMESTAMP; numeric(p,s) and date stay).
pub fn google_sql(script: &str, dataset: &str) -> Vec<String> {
    #[derive(PartialEq)]
    enum Tok {
        Word(String),
        Ident(String),
        Str(String),
        Other(char),
    }
    let mut toks = Vec::new();
    let mut it = script.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '\'' => {
                let mut s = String::new();
                while let Some(c) = it.next() {
                    if c == '\'' {
                        if it.peek() == Some(&'\'') {
                            it.next();
                            s.push('\'');
                        } else {
                            break;
                        }
                    } else {
                        s.push(c);
                    }
                }
                toks.push(Tok::Str(s));
            }
            '"' => {
                let mut s = String::new();
                while let Some(c) = it.next() {
                    if c == '"' {
                        if it.peek() == Some(&'"') {
                            it.next();
                            s.push('"');
                        } else {
                            break;
                        }
                    } else {
                        s.push(c);
                    }
                }
                toks.push(Tok::Ident(s));
            }
            c if c.is_alphanumeric() || c == '_' || c == '.' => {
                let mut s = String::from(c);
                while let Some(&n) = it.peek() {
                    if n.is_alphanumeric() || n == '_' || n == '.' {
                        s.push(n);
                        it.next();
                    } else {
                        break;
                    }
                }
                toks.push(Tok::Word(s));
            }
            c => toks.push(Tok::Other(c)),
        }
    }
    let quote = |s: &str| format!("`{}`", s.replace('\\', "\\\\").replace('`', "\\`"));
    let mut statements = Vec::new();
    let mut out = String::new();
    let mut ddl = false;
    let mut qualify_next = false;
    let mut i = 0;
    while i < toks.len() {
        let upper = |j: usize| match toks.get(j) {
            Some(Tok::Word(w)) => w.to_ascii_uppercase(),
            _ => String::new(),
        };
        match &toks[i] {
            Tok::Other(';') => {
                if !out.trim().is_empty() {
                    statements.push(out.trim().to_owned());
                }
                out.clear();
                ddl = false;
            }
            Tok::Other(c) => out.push(*c),
            Tok::Str(s) => {
                out.push('\'');
                out.push_str(&s.replace('\\', "\\\\").replace('\'', "\\'"));
                out.push('\'');
            }
            Tok::Ident(s) if qualify_next => {
                out.push_str(&format!("{}.{}", quote(dataset), quote(s)));
                qualify_next = false;
            }
            Tok::Ident(s) => out.push_str(&quote(s)),
            Tok::Word(w) if qualify_next => {
                out.push_str(&format!("{}.{}", quote(dataset), quote(w)));
                qualify_next = false;
            }
            Tok::Word(w) => {
                let u = w.to_ascii_uppercase();
                if (u == "TABLE" && upper(i.wrapping_sub(2)) == "CREATE")
                    || (u == "INTO" && upper(i.wrapping_sub(2)) == "INSERT")
                    || u == "FROM"
                    || u == "JOIN"
                {
                    qualify_next = true;
                    ddl = u == "TABLE";
                    out.push_str(w);
                } else if ddl {
                    match u.as_str() {
                        "INTEGER" | "INT" | "BIGINT" | "SMALLINT" => out.push_str("INT64"),
                        "TEXT" => out.push_str("STRING"),
                        "REAL" => out.push_str("FLOAT64"),
                        "BOOLEAN" => out.push_str("BOOL"),
                        "DOUBLE" if upper(i + 2) == "PRECISION" => {
                            out.push_str("FLOAT64");
                            i += 2;
                        }
                        "VARCHAR" | "TIMESTAMP" => {
                            out.push_str(if u == "VARCHAR" {
                                "STRING"
                            } else {
                                "TIMESTAMP"
                            });
                            // Drop a length or precision: `(n)`.
                            if toks.get(i + 1) == Some(&Tok::Other('(')) {
                                let close = (i + 1..toks.len())
                                    .find(|&j| toks[j] == Tok::Other(')'))
                                    .expect("a closing parenthesis");
                                i = close;
                            }
                        }
                        _ => out.push_str(w),
                    }
                } else {
                    out.push_str(w);
                }
            }
        }
        i += 1;
    }
    if !out.trim().is_empty() {
        statements.push(out.trim().to_owned());
    }
    statements
}

/// The rows of a GoogleSQL `INSERT INTO `DATASET`.`TABLE` VALUES (…), (…)` whose values
/// are all literals (numbers, strings, NULL, TRUE, FALSE), as text (NULL as `None`), with
/// the table's name; `None` for any other statement.
pub fn literal_rows(statement: &str) -> Option<(String, Vec<Vec<Option<String>>>)> {
    let rest = statement.strip_prefix("INSERT INTO ")?;
    let (_dataset, rest) = backticked(rest)?;
    let (table, rest) = backticked(rest.strip_prefix('.')?)?;
    let mut s = rest.trim_start().strip_prefix("VALUES")?.trim_start();
    let mut rows = Vec::new();
    loop {
        s = s.strip_prefix('(')?;
        let mut row = Vec::new();
        loop {
            s = s.trim_start();
            let (value, rest) = literal(s)?;
            row.push(value);
            s = rest.trim_start();
            if let Some(rest) = s.strip_prefix(',') {
                s = rest;
            } else {
                s = s.strip_prefix(')')?.trim_start();
                break;
            }
        }
        rows.push(row);
        match s.strip_prefix(',') {
            Some(rest) => s = rest.trim_start(),
            None if s.is_empty() => return Some((table, rows)),
            None => return None,
        }
    }
}

/// A backtick-quoted name at the start of `s` (backslash escapes undone), and the rest.
fn backticked(s: &str) -> Option<(String, &str)> {
    let mut chars = s.strip_prefix('`')?.char_indices();
    let mut name = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => name.push(chars.next()?.1),
            '`' => return Some((name, &s[i + 2..])),
            c => name.push(c),
        }
    }
    None
}

/// One literal at the start of `s` as text (`None` for NULL), and the rest.
fn literal(s: &str) -> Option<(Option<String>, &str)> {
    if let Some(body) = s.strip_prefix('\'') {
        let mut text = String::new();
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => text.push(chars.next()?.1),
                '\'' => return Some((Some(text), &body[i + 1..])),
                c => text.push(c),
            }
        }
        return None;
    }
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+')))
        .unwrap_or(s.len());
    let (word, rest) = s.split_at(end);
    match word.to_ascii_uppercase().as_str() {
        "NULL" => Some((None, rest)),
        "TRUE" | "FALSE" => Some((Some(word.to_ascii_lowercase()), rest)),
        _ if word.parse::<f64>().is_ok_and(f64::is_finite) => Some((Some(word.to_owned()), rest)),
        _ => None,
    }
}

/// Datasets already loaded in this test run, by the scripts they hold: a case whose data
/// another case (or an earlier load) already put on the emulator reads those datasets
/// (the diff only reads).
type LoadedScripts = std::collections::HashMap<(String, String), (String, String)>;
static LOADED: std::sync::OnceLock<tokio::sync::Mutex<LoadedScripts>> = std::sync::OnceLock::new();

/// Loads an engine test's prod and PR scripts into two new datasets on bqemulator (once
/// per run for the same scripts) and connects the driver; returns it with the two
/// dataset names. Consecutive literal-only `INSERT … VALUES` statements into one table
/// of plain columns (INT64, FLOAT64, NUMERIC, STRING, BOOL, DATE) go in as one
/// `tabledata.insertAll` request: the emulator translates every statement with sqlglot,
/// which takes seconds for a thousand-row `VALUES` list; anything else runs as a query.
pub async fn load_for_engine(
    prod_schema: &str,
    pr_schema: &str,
    prod_sql: &str,
    pr_sql: &str,
) -> (Box<dyn Warehouse>, String, String) {
    let mut loaded = LOADED.get_or_init(Default::default).lock().await;
    let key = (prod_sql.to_owned(), pr_sql.to_owned());
    let (prod_ds, pr_ds) = match loaded.get(&key) {
        Some(names) => names.clone(),
        None => {
            let admin = prdiff_tests::BigQueryAdmin::new();
            let (prod_ds, pr_ds) = (dataset_name(prod_schema), dataset_name(pr_schema));
            for (ds, sql) in [(&prod_ds, prod_sql), (&pr_ds, pr_sql)] {
                admin.create_dataset(ds).await;
                load_script(&admin, ds, sql).await;
            }
            loaded.insert(key, (prod_ds.clone(), pr_ds.clone()));
            (prod_ds, pr_ds)
        }
    };
    drop(loaded);
    let url = WarehouseUrl::parse(&prdiff_tests::bigquery_url(), None).unwrap();
    let wh = warehouse::connect(&url, &ConnectOptions::default())
        .await
        .expect("connect to bqemulator");
    (wh, prod_ds, pr_ds)
}

/// Runs `sql` (the engine tests' dialect) in dataset `ds`, bulk-inserting literal rows.
async fn load_script(admin: &prdiff_tests::BigQueryAdmin, ds: &str, sql: &str) {
    const BULK_TYPES: &[&str] = &[
        "INTEGER", "INT64", "FLOAT", "FLOAT64", "NUMERIC", "STRING", "BOOLEAN", "BOOL", "DATE",
    ];
    // Rows waiting for one insertAll: table, its columns, rows as JSON.
    let mut pending: Option<(String, Vec<String>, Vec<Value>)> = None;
    async fn flush(
        admin: &prdiff_tests::BigQueryAdmin,
        ds: &str,
        pending: &mut Option<(String, Vec<String>, Vec<Value>)>,
    ) {
        if let Some((table, _, rows)) = pending.take() {
            // bqemulator 1.4.0 leaves the result of a DDL statement unread on its DuckDB
            // connection, and insertAll then fails with "connection has an unfinished
            // result" (HTTP 500); a query that reads its result clears it.
            admin.exec("SELECT 1").await;
            admin.insert_all(ds, &table, rows).await;
        }
    }
    for statement in google_sql(sql, ds) {
        let Some((table, rows)) = literal_rows(&statement) else {
            flush(admin, ds, &mut pending).await;
            admin.exec(&statement).await;
            continue;
        };
        if pending.as_ref().is_some_and(|(t, _, _)| *t != table) {
            flush(admin, ds, &mut pending).await;
        }
        if pending.is_none() {
            let fields = admin.table_fields(ds, &table).await;
            if !fields.iter().all(|(_, t)| BULK_TYPES.contains(&t.as_str())) {
                admin.exec(&statement).await;
                continue;
            }
            let names = fields.into_iter().map(|(n, _)| n).collect();
            pending = Some((table.clone(), names, Vec::new()));
        }
        let (_, names, json_rows) = pending.as_mut().unwrap();
        if rows.iter().any(|r| r.len() != names.len()) {
            flush(admin, ds, &mut pending).await;
            admin.exec(&statement).await;
            continue;
        }
        for row in rows {
            let object: serde_json::Map<String, Value> = names
                .iter()
                .cloned()
                .zip(
                    row.into_iter()
                        .map(|v| v.map_or(Value::Null, Value::String)),
                )
                .collect();
            json_rows.push(json!({ "json": object }));
        }
    }
    flush(admin, ds, &mut pending).await;
}

#[test]
fn engine_scripts_translate_to_google_sql() {
    let got = google_sql(
        r#"CREATE TABLE "select" ("Order ID" integer, v varchar(40), d double precision, ts timestamp(3), n numeric(10,2), b boolean);
           INSERT INTO "select" VALUES (1, 'it''s', 1.5, '2024-01-01 10:00:00.123', 2.50, TRUE);
           INSERT INTO t VALUES (2, 'a\b', NULL);
           INSERT INTO s SELECT id, a FROM s WHERE id < 2000;"#,
        "ds_1",
    );
    assert_eq!(
        got,
        vec![
            "CREATE TABLE `ds_1`.`select` (`Order ID` INT64, v STRING, d FLOAT64, ts TIMESTAMP, n numeric(10,2), b BOOL)",
            r"INSERT INTO `ds_1`.`select` VALUES (1, 'it\'s', 1.5, '2024-01-01 10:00:00.123', 2.50, TRUE)",
            r"INSERT INTO `ds_1`.`t` VALUES (2, 'a\\b', NULL)",
            "INSERT INTO `ds_1`.`s` SELECT id, a FROM `ds_1`.`s` WHERE id < 2000",
        ]
    );
    assert_eq!(dataset_name("PR-\"Schema\"_1_2"), "PR__Schema__1_2");

    let (table, rows) = literal_rows(&got[1]).expect("literal rows");
    assert_eq!(table, "select");
    let text = |v: &str| Some(v.to_owned());
    assert_eq!(
        rows,
        vec![vec![
            text("1"),
            text("it's"),
            text("1.5"),
            text("2024-01-01 10:00:00.123"),
            text("2.50"),
            text("true")
        ]]
    );
    let (_, rows) = literal_rows(&got[2]).expect("literal rows");
    assert_eq!(rows, vec![vec![text("2"), text("a\\b"), None]]);
    let (_, rows) = literal_rows("INSERT INTO `d`.`t` VALUES (1, -2.5), (3, NULL)").unwrap();
    assert_eq!(
        rows,
        vec![vec![text("1"), text("-2.5")], vec![text("3"), None]]
    );
    // Anything but literals runs as a statement.
    assert_eq!(literal_rows(&got[3]), None);
    assert_eq!(
        literal_rows("INSERT INTO `d`.`t` VALUES (1, CAST('NaN' AS FLOAT64))"),
        None
    );
    assert_eq!(literal_rows("INSERT INTO `d`.`t` VALUES (1, 2) , (3"), None);
}

/// The diff engine through the driver and the BigQuery dialect on bqemulator, on three
/// cases of the engine tests (`engine.rs`, which run every case on BigQuery too) with the
/// figures PostgreSQL and SQLite give there: a quick check of the whole path.
#[tokio::test]
async fn the_diff_engine_gives_the_engine_tests_figures_on_the_emulator() {
    use prdiff_shared::diff::{self, DiffRequest, PerSide};
    use prdiff_shared::sql::Relation;

    async fn diff_of(prod: &str, pr: &str, key: &[&str]) -> prdiff_shared::diff::DiffResult {
        let (wh, p, q) = load_for_engine(
            &prdiff_tests::unique_name("prod"),
            &prdiff_tests::unique_name("pr"),
            prod,
            pr,
        )
        .await;
        let req = DiffRequest::new(
            Relation::new(None, Some(&p), "t"),
            Relation::new(None, Some(&q), "t"),
            key.iter().map(|k| k.to_string()).collect(),
        );
        let r = diff::diff(wh.as_ref(), &req).await.expect("diff");
        // bqemulator answers every dry run with 0 bytes: the estimate ran and is carried.
        assert_eq!(r.bytes_estimate, Some(0));
        r
    }
    fn changed(r: &prdiff_shared::diff::DiffResult, col: &str) -> u64 {
        r.columns
            .iter()
            .find(|c| c.name == col)
            .unwrap()
            .changed
            .unwrap()
    }

    // NULL against a value differs; NULL against NULL does not.
    let r = diff_of(
        "CREATE TABLE t (id integer, v text, n integer);
         INSERT INTO t VALUES (1, NULL, NULL), (2, NULL, 5), (3, 'x', NULL), (4, 'x', 5), (5, 'x', 6);",
        "CREATE TABLE t (id integer, v text, n integer);
         INSERT INTO t VALUES (1, NULL, NULL), (2, 'y', 5), (3, NULL, NULL), (4, 'x', NULL), (5, 'x', 6);",
        &["id"],
    )
    .await;
    assert_eq!((changed(&r, "v"), changed(&r, "n")), (2, 1));
    assert_eq!((r.changed, r.unchanged), (Some(3), Some(2)));

    // Text compares exactly, case and whitespace included.
    let r = diff_of(
        "CREATE TABLE t (id integer, s varchar(20));
         INSERT INTO t VALUES (1, 'abc'), (2, 'abc'), (3, ' x'), (4, 'same'), (5, 'tab');",
        "CREATE TABLE t (id integer, s text);
         INSERT INTO t VALUES (1, 'ABC'), (2, 'abc '), (3, 'x'), (4, 'same'), (5, 'tab');",
        &["id"],
    )
    .await;
    assert_eq!(changed(&r, "s"), 3);

    // Duplicate and NULL keys are reported and never inflate the counts.
    let r = diff_of(
        "CREATE TABLE t (id integer, v text);
         INSERT INTO t VALUES (1, 'a'), (9, 'x'), (9, 'y');",
        "CREATE TABLE t (id integer, v text); INSERT INTO t VALUES (1, 'a'), (NULL, 'n');",
        &["id"],
    )
    .await;
    assert_eq!(r.rows, PerSide { prod: 3, pr: 2 });
    assert_eq!(r.primary_key_issues.prod.duplicates, 2);
    assert_eq!(r.primary_key_issues.pr.nulls, 1);
    assert_eq!(r.matched, Some(1));
    assert_eq!(r.changed, Some(0));
}

// ---- columns from the table resource, privileges from IAM ------------------------------

/// `tables.get` answers with the documented `Table` resource (legacy type names, NUMERIC
/// parameters as strings); the driver renders the types as INFORMATION_SCHEMA does, and a
/// missing table is an empty list (the diff's "does not exist").
#[tokio::test]
async fn columns_come_from_tables_get_and_a_missing_table_has_none() {
    let server = MockServer::start().await;
    mount_select_1(&server).await;
    Mock::given(method("GET"))
        .and(path(format!("{JOBS}/datasets/ds/tables/orders")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "kind": "bigquery#table",
            "schema": {"fields": [
                {"name": "id", "type": "INTEGER", "mode": "REQUIRED"},
                {"name": "amount", "type": "NUMERIC", "precision": "12", "scale": "2"},
                {"name": "ratio", "type": "FLOAT"},
                {"name": "tags", "type": "STRING", "mode": "REPEATED"}
            ]}
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(
            "/bigquery/v2/projects/other-proj/datasets/ds/tables/missing",
        ))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"error": {
            "code": 404, "message": "Not found: Table other-proj:ds.missing",
            "errors": [{"reason": "notFound", "message": "Not found: Table other-proj:ds.missing"}],
            "status": "NOT_FOUND"
        }})))
        .mount(&server)
        .await;
    let wh = BigQueryWarehouse::connect(&url_for(&server, ""), &ConnectOptions::default())
        .await
        .unwrap();
    let cols = wh
        .table_columns(&Relation::new(None, Some("ds"), "orders"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        cols,
        [
            ("id".to_owned(), "INT64".to_owned()),
            ("amount".to_owned(), "NUMERIC(12, 2)".to_owned()),
            ("ratio".to_owned(), "FLOAT64".to_owned()),
            ("tags".to_owned(), "ARRAY<STRING>".to_owned())
        ]
    );
    let none = wh
        .table_columns(&Relation::new(Some("other-proj"), Some("ds"), "missing"))
        .await
        .unwrap();
    assert_eq!(none, Some(Vec::new()));
    // Without a dataset in the relation or the URL: the catalog query decides.
    assert_eq!(
        wh.table_columns(&Relation::new(None, None, "t"))
            .await
            .unwrap(),
        None
    );
    // No query job was used for the columns (only the connect check's SELECT 1).
    let jobs = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path().ends_with("/queries"))
        .count();
    assert_eq!(jobs, 1);
}

/// `config check`'s privilege check on BigQuery: `tables.list` of the data source's
/// dataset, then `tables.testIamPermissions` per table (documented request and response:
/// `{"permissions": [...]}` in, the held subset out): one warning per write permission,
/// naming the tables and the predefined roles that grant it.
#[tokio::test]
async fn iam_write_permissions_are_one_warning_each_naming_tables_and_roles() {
    let server = MockServer::start().await;
    mount_select_1(&server).await;
    Mock::given(method("GET"))
        .and(path(format!("{JOBS}/datasets/analytics/tables")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "kind": "bigquery#tableList",
            "tables": [
                {"kind": "bigquery#table", "tableReference": {"projectId": "proj-1", "datasetId": "analytics", "tableId": "orders"}},
                {"kind": "bigquery#table", "tableReference": {"projectId": "proj-1", "datasetId": "analytics", "tableId": "payments"}}
            ],
            "totalItems": 2
        })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!(
            "{JOBS}/datasets/analytics/tables/orders:testIamPermissions"
        )))
        .and(body_partial_json(json!({"permissions": [
            "bigquery.tables.updateData", "bigquery.tables.update",
            "bigquery.tables.delete", "bigquery.tables.setIamPolicy"
        ]})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "permissions": ["bigquery.tables.updateData", "bigquery.tables.delete"]
        })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!(
            "{JOBS}/datasets/analytics/tables/payments:testIamPermissions"
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "permissions": ["bigquery.tables.updateData"]
        })))
        .mount(&server)
        .await;
    let wh = warehouse::connect(
        &WarehouseUrl::BigQuery(url_for(&server, "&dataset=analytics")),
        &ConnectOptions::default(),
    )
    .await
    .unwrap();
    let w = warehouse::privilege_warnings(wh.as_ref(), &PrivilegeScope::AllSchemas)
        .await
        .unwrap();
    let names: Vec<&str> = w.iter().map(|w| w.privilege.as_str()).collect();
    assert_eq!(
        names,
        ["bigquery.tables.updateData", "bigquery.tables.delete"]
    );
    assert!(
        w[0].detail
            .contains("on 2 tables: proj-1.analytics.orders, proj-1.analytics.payments"),
        "{}",
        w[0]
    );
    assert!(
        w[1].detail.contains("on 1 table: proj-1.analytics.orders"),
        "{}",
        w[1]
    );
    assert!(
        w[0].revoke.contains("roles/bigquery.dataEditor"),
        "{}",
        w[0]
    );
    // Only the scope's relations when it names them.
    let w = warehouse::privilege_warnings(
        wh.as_ref(),
        &PrivilegeScope::Relations(vec![Relation::new(None, Some("analytics"), "payments")]),
    )
    .await
    .unwrap();
    assert_eq!(w.len(), 1);
    assert!(
        w[0].detail
            .contains("on 1 table: proj-1.analytics.payments")
    );
}

/// bqemulator serves no `tables.testIamPermissions`: `config check` connects, then says
/// the permissions could not be read (a warning, not a failure).
#[tokio::test]
async fn on_the_emulator_config_check_warns_that_permissions_could_not_be_read() {
    let admin = prdiff_tests::BigQueryAdmin::new();
    let ds = prdiff_tests::unique_name("bqpriv");
    admin.create_dataset(&ds).await;
    admin
        .exec(&format!("CREATE TABLE `{ds}`.t AS SELECT 1 AS id"))
        .await;
    let url = url::Url::parse(&prdiff_tests::bigquery_url()).unwrap();
    let endpoint = url
        .query_pairs()
        .find(|(k, _)| k == "endpoint")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let source: prdiff_shared::config::DataSource = serde_json::from_value(json!({
        "id": "bq",
        "kind": "bigquery",
        "connection": {"project": admin.project, "dataset": ds, "endpoint": endpoint}
    }))
    .unwrap();
    let secrets = prdiff_shared::secrets::local::LocalSecrets::in_memory();
    let lines = prdiff_shared::app::apply::check_warehouse(&source, &secrets).await;
    assert!(lines[0].ok, "{lines:?}");
    let privileges = lines
        .iter()
        .find(|l| l.what == "warehouse privileges")
        .unwrap_or_else(|| panic!("{lines:?}"));
    assert!(
        privileges.detail.starts_with("could not be read: ") && privileges.detail.contains("405"),
        "{privileges:?}"
    );
    // The columns of the emulator's table come from tables.get, typed as before.
    let wh = emulator().await;
    assert_eq!(
        wh.table_columns(&Relation::new(None, Some(&ds), "t"))
            .await
            .unwrap(),
        Some(vec![("id".to_owned(), "INT64".to_owned())])
    );
    assert_eq!(
        wh.table_columns(&Relation::new(None, Some(&ds), "nope"))
            .await
            .unwrap(),
        Some(Vec::new())
    );
}

// ---- the bytes a diff will scan: dry runs and the cost guard ----------------------------

/// A dry run's answer as the REST reference documents `jobs.query`'s QueryResponse for
/// `dryRun: true`: no job id, no rows, `jobComplete: true`, `totalBytesProcessed` as an
/// int64 string.
fn dry_run_answer(bytes: u64) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "kind": "bigquery#queryResponse",
        "schema": {"fields": [{"name": "n", "type": "INTEGER", "mode": "NULLABLE"}]},
        "jobReference": {"projectId": "prdiff-test", "location": "US"},
        "totalBytesProcessed": bytes.to_string(),
        "jobComplete": true,
        "cacheHit": false
    }))
}

/// Passes each request on to bqemulator and answers with its answer: the diff's real
/// statements run on the emulator while the dry runs get figures from the documented
/// response shape. Blocking is fine: wiremock answers on a thread of its own.
struct ToEmulator {
    host_port: String,
}

impl ToEmulator {
    fn new() -> Self {
        let url = url::Url::parse(&prdiff_tests::bigquery_url()).unwrap();
        let endpoint = url
            .query_pairs()
            .find(|(k, _)| k == "endpoint")
            .map(|(_, v)| url::Url::parse(&v).unwrap())
            .expect("an endpoint");
        ToEmulator {
            host_port: format!(
                "{}:{}",
                endpoint.host_str().unwrap(),
                endpoint.port_or_known_default().unwrap()
            ),
        }
    }
}

impl wiremock::Respond for ToEmulator {
    fn respond(&self, req: &wiremock::Request) -> ResponseTemplate {
        use std::io::{Read, Write};
        let target = match req.url.query() {
            Some(q) => format!("{}?{q}", req.url.path()),
            None => req.url.path().to_owned(),
        };
        let mut s = std::net::TcpStream::connect(&self.host_port).expect("reach bqemulator");
        write!(
            s,
            "{} {target} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            req.method,
            self.host_port,
            req.body.len()
        )
        .unwrap();
        s.write_all(&req.body).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("an HTTP response");
        let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
        let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        let mut body = raw[split + 4..].to_vec();
        if head.contains("transfer-encoding: chunked") {
            body = dechunk(&body);
        }
        ResponseTemplate::new(status).set_body_raw(body, "application/json")
    }
}

/// The body of a chunked HTTP/1.1 response.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n").unwrap();
        let size_text = String::from_utf8_lossy(&raw[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        let start = line_end + 2;
        out.extend_from_slice(&raw[start..start + size]);
        raw = &raw[start + size + 2..];
    }
}

fn is_dry_run(r: &wiremock::Request) -> bool {
    serde_json::from_slice::<Value>(&r.body).is_ok_and(|b| b["dryRun"] == true)
}

fn query_text(r: &wiremock::Request) -> Option<String> {
    serde_json::from_slice::<Value>(&r.body)
        .ok()?
        .get("query")?
        .as_str()
        .map(str::to_owned)
}

/// The dry runs' figures, from BigQuery's documented response shape, reach the diff's
/// result (summed over the counts and the join, whose real statements run on bqemulator);
/// with a `maximum_bytes_billed` below one statement's estimate the model fails naming
/// both figures, and no statement but the dry runs reaches the warehouse.
#[tokio::test]
async fn dry_run_figures_reach_the_result_and_a_statement_over_the_limit_runs_nothing() {
    use prdiff_shared::diff::{self, DiffError, DiffRequest, PerSide};
    const GIB: u64 = 1 << 30;
    let admin = prdiff_tests::BigQueryAdmin::new();
    let ds = prdiff_tests::unique_name("bqbytes");
    admin.create_dataset(&ds).await;
    admin
        .exec(&format!("CREATE TABLE `{ds}`.a (id INT64, v STRING)"))
        .await;
    admin
        .exec(&format!("INSERT INTO `{ds}`.a VALUES (1, 'x'), (2, 'y')"))
        .await;
    admin
        .exec(&format!("CREATE TABLE `{ds}`.b (id INT64, v STRING)"))
        .await;
    admin
        .exec(&format!(
            "INSERT INTO `{ds}`.b VALUES (1, 'x'), (2, 'z'), (3, 'w')"
        ))
        .await;

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/bigquery/v2/projects/prdiff-test/queries"))
        .and(body_partial_json(json!({"dryRun": true})))
        .respond_with(dry_run_answer(3 * GIB))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ToEmulator::new())
        .with_priority(2)
        .mount(&server)
        .await;
    let connect = |limit: u64| {
        let text = format!(
            "bigquery://prdiff-test?endpoint={}&maximum_bytes_billed={limit}",
            server.uri()
        );
        let WarehouseUrl::BigQuery(url) = WarehouseUrl::parse(&text, None).unwrap() else {
            unreachable!()
        };
        async move {
            BigQueryWarehouse::connect(&url, &ConnectOptions::default())
                .await
                .expect("connect through the recorder to bqemulator")
        }
    };
    let req = DiffRequest::new(
        Relation::new(None, Some(&ds), "a"),
        Relation::new(None, Some(&ds), "b"),
        vec!["id".into()],
    );

    // Under the limit: the figures are summed into the result.
    let wh = connect(4 * GIB).await;
    let r = diff::diff(&wh, &req).await.expect("diff");
    assert_eq!(r.rows, PerSide { prod: 2, pr: 3 });
    assert_eq!(r.changed, Some(1));
    let requests = server.received_requests().await.unwrap();
    let dry: Vec<String> = requests
        .iter()
        .filter(|r| is_dry_run(r))
        .filter_map(query_text)
        .collect();
    // Both counts and the join, each dry-run once.
    assert_eq!(dry.len(), 3, "{dry:#?}");
    assert_eq!(r.bytes_estimate, Some(9 * GIB));
    // Every real statement carries the cost guard, and every statement dry-run then ran.
    let real: Vec<&wiremock::Request> = requests
        .iter()
        .filter(|r| !is_dry_run(r) && query_text(r).is_some())
        .collect();
    for r in &real {
        let b: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(b["maximumBytesBilled"], json!((4 * GIB).to_string()));
    }
    let ran: Vec<String> = real.iter().filter_map(|r| query_text(r)).collect();
    for q in &dry {
        assert!(ran.contains(q), "dry-run but not run: {q}");
    }

    // Over the limit: refused before any of the diff's statements runs.
    let wh = connect(2 * GIB).await;
    server.reset().await;
    Mock::given(method("POST"))
        .and(path("/bigquery/v2/projects/prdiff-test/queries"))
        .and(body_partial_json(json!({"dryRun": true})))
        .respond_with(dry_run_answer(3 * GIB))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ToEmulator::new())
        .with_priority(2)
        .mount(&server)
        .await;
    let e = diff::diff(&wh, &req).await.unwrap_err();
    assert!(
        matches!(e, DiffError::OverBytesLimit { estimate, limit } if estimate == 3 * GIB && limit == 2 * GIB),
        "{e}"
    );
    let text = e.to_string();
    assert!(
        text.contains("3.0 GiB (3,221,225,472 bytes)")
            && text.contains("maximum_bytes_billed of 2.0 GiB (2,147,483,648 bytes)"),
        "{text}"
    );
    assert!(e.is_input_error());
    let requests = server.received_requests().await.unwrap();
    let ran: Vec<String> = requests
        .iter()
        .filter(|r| !is_dry_run(r))
        .filter_map(query_text)
        .collect();
    assert!(ran.is_empty(), "statements ran over the limit: {ran:#?}");
    assert!(requests.iter().any(is_dry_run));
}

/// A filter's strings reach BigQuery in GoogleSQL's quoting: a quote inside a string
/// (written `''`, `\'`, or inside a double-quoted string) selects the rows it names.
/// Written back as `'O''Brien'`, BigQuery refuses the filter (adjacent literals must be
/// separated) and bqemulator reads it as `'O' 'Brien'`, concatenated: row 2, `OBrien`.
#[tokio::test]
async fn filters_with_quotes_in_strings_select_the_right_rows_on_the_emulator() {
    use prdiff_shared::diff::{self, DiffRequest, PerSide};
    let admin = prdiff_tests::BigQueryAdmin::new();
    let ds = prdiff_tests::unique_name("bqquote");
    admin.create_dataset(&ds).await;
    admin
        .exec(&format!("CREATE TABLE `{ds}`.t (id INT64, name STRING)"))
        .await;
    admin
        .exec(&format!(
            r"INSERT INTO `{ds}`.t VALUES (1, 'O\'Brien'), (2, 'OBrien'), (3, 'O'), (4, 'it\'s'), (5, 'its'), (6, 'Brien')"
        ))
        .await;
    let wh = emulator().await;
    for (filter, want) in [
        ("name = 'O''Brien'", vec!["1"]),
        (r"name = 'O\'Brien'", vec!["1"]),
        ("name = \"it's\"", vec!["4"]),
        ("name IN ('O''Brien', \"it's\", 'its')", vec!["1", "4", "5"]),
        (
            "name <> 'O''Brien' AND length(name) > 2",
            vec!["2", "4", "5", "6"],
        ),
    ] {
        let mut req = DiffRequest::new(
            Relation::new(None, Some(&ds), "t"),
            Relation::new(None, Some(&ds), "t"),
            vec!["id".into()],
        );
        req.filter = Some(filter.to_owned());
        let r = diff::diff(&wh, &req)
            .await
            .unwrap_or_else(|e| panic!("{filter}: {e}"));
        let n = want.len() as u64;
        assert_eq!(r.rows, PerSide { prod: n, pr: n }, "{filter}");
        assert_eq!(r.matched, Some(n), "{filter}");
        // Which rows: the same filter on the emulator, as the diff wrote it back.
        let safe = prdiff_shared::sql::filter::parse_filter(wh.dialect(), filter).unwrap();
        let ids = wh
            .query(&format!(
                "SELECT CAST(id AS STRING) FROM `{ds}`.t WHERE ({}) ORDER BY id",
                safe.sql()
            ))
            .await
            .unwrap();
        let ids: Vec<&str> = ids.iter().filter_map(|r| r[0].as_deref()).collect();
        assert_eq!(ids, want, "{filter} written back as {}", safe.sql());
    }
}
