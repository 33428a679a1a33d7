//! Test harness: reaches the services `scripts/test.sh` starts.
//!
//! Tests fail (they do not skip) when a service is missing: run them through
//! `scripts/test.sh`, which starts a temporary PostgreSQL cluster and moto.

use std::sync::atomic::{AtomicU32, Ordering};

/// The URL of the temporary PostgreSQL cluster (`PRDIFF_TEST_PG_URL`).
pub fn pg_url() -> String {
    std::env::var("PRDIFF_TEST_PG_URL")
        .expect("PRDIFF_TEST_PG_URL is not set: run the tests through scripts/test.sh")
}

/// The test cluster over TLS (`PRDIFF_TEST_PG_TLS_URL`): a role admitted only over TLS,
/// `sslmode=verify-full` against the CA `scripts/test.sh` made.
pub fn pg_tls_url() -> String {
    std::env::var("PRDIFF_TEST_PG_TLS_URL")
        .expect("PRDIFF_TEST_PG_TLS_URL is not set: run the tests through scripts/test.sh")
}

/// The test cluster read through the Redshift driver and dialect (`redshift://`, plain
/// TCP): what of Redshift's SQL can run on PostgreSQL runs here. Two Redshift functions
/// PostgreSQL lacks get stand-ins with the same signature, created once: `FNV_HASH`
/// (sampling's key hash; MD5-based here, so not Redshift's values, the same role) and
/// `ROUND(DOUBLE PRECISION, INTEGER)` (Redshift rounds floats to a scale; PostgreSQL only
/// numerics).
pub async fn redshift_on_postgres_url() -> String {
    static READY: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    READY
        .get_or_init(|| async {
            let mut client = pg_client().await;
            let tx = client.transaction().await.unwrap();
            tx.batch_execute(
                "SELECT pg_advisory_xact_lock(8675309);
                 CREATE OR REPLACE FUNCTION public.fnv_hash(v text, seed bigint) RETURNS bigint
                 LANGUAGE sql IMMUTABLE AS
                 $$ SELECT ('x' || substr(md5(seed::text || ':' || v), 1, 16))::bit(64)::bigint $$;
                 CREATE OR REPLACE FUNCTION public.round(v double precision, s integer)
                 RETURNS double precision LANGUAGE sql IMMUTABLE AS
                 $$ SELECT pg_catalog.round(v::numeric, s)::double precision $$;",
            )
            .await
            .expect("create the FNV_HASH stand-in");
            tx.commit().await.unwrap();
        })
        .await;
    let mut url = url::Url::parse(&pg_url()).unwrap();
    url.set_scheme("redshift").ok();
    let text = url.as_str().replacen("postgres://", "redshift://", 1);
    // Redshift reads a backslash inside '…' as an escape: so does this session.
    let text = format!(
        "{text}{}options=-c%20standard_conforming_strings%3Doff",
        if text.contains('?') { '&' } else { '?' }
    );
    if text.contains("sslmode=") {
        text
    } else if text.contains('?') {
        format!("{text}&sslmode=disable")
    } else {
        format!("{text}?sslmode=disable")
    }
}

/// The endpoint of moto's server (`PRDIFF_TEST_AWS_ENDPOINT`).
pub fn aws_endpoint() -> String {
    std::env::var("PRDIFF_TEST_AWS_ENDPOINT")
        .expect("PRDIFF_TEST_AWS_ENDPOINT is not set: run the tests through scripts/test.sh")
}

/// A name no other test in this run uses: `prefix_<pid>_<n>`.
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A plain tokio-postgres client on the test cluster, for setting up data.
pub async fn pg_client() -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls)
        .await
        .expect("connect to the test PostgreSQL cluster");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// A fresh schema on the test cluster; returns its name.
pub async fn pg_schema(prefix: &str) -> String {
    let name = unique_name(prefix);
    pg_client()
        .await
        .batch_execute(&format!("CREATE SCHEMA \"{name}\""))
        .await
        .expect("create test schema");
    name
}

/// The repository root (for fixtures and example projects).
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The repository's test fixtures, `tests/fixtures` (recorded public payloads and dbt
/// artifacts, provenance in its `SOURCES.md`).
pub fn fixtures() -> std::path::PathBuf {
    repo_root().join("tests").join("fixtures")
}

/// The URL of the Snowflake stand-in (`PRDIFF_TEST_SNOWFLAKE_URL`: fakesnow, started by
/// `scripts/test.sh` through `scripts/fakesnow_server.py`).
pub fn snowflake_url() -> String {
    std::env::var("PRDIFF_TEST_SNOWFLAKE_URL")
        .expect("PRDIFF_TEST_SNOWFLAKE_URL is not set: run the tests through scripts/test.sh")
}

/// A minimal admin client for the Snowflake stand-in, for setting up data: it logs in with
/// the test URL's password and posts statements through the connector REST protocol
/// (`/session/v1/login-request`, `/queries/v1/query-request`), independently of prdiff's
/// driver, and may write. One session: `USE SCHEMA` holds for its later statements.
pub struct SnowflakeAdmin {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl SnowflakeAdmin {
    pub async fn connect() -> SnowflakeAdmin {
        use prdiff_shared::warehouse::{SnowflakeAuth, WarehouseUrl};
        let url = WarehouseUrl::parse(&snowflake_url(), None).expect("PRDIFF_TEST_SNOWFLAKE_URL");
        let WarehouseUrl::Snowflake(t) = url else {
            panic!("PRDIFF_TEST_SNOWFLAKE_URL is not a snowflake:// URL")
        };
        let SnowflakeAuth::Password(password) = &t.auth else {
            panic!("the test Snowflake URL logs in with a password")
        };
        let http = reqwest::Client::new();
        let base = t.base_url();
        let answer: serde_json::Value = http
            .post(format!(
                "{base}/session/v1/login-request?databaseName={}",
                t.database
            ))
            .json(&serde_json::json!({ "data": {
                "ACCOUNT_NAME": t.account.to_uppercase(),
                "LOGIN_NAME": t.user,
                "PASSWORD": password.expose(),
                "SESSION_PARAMETERS": {},
            }}))
            .send()
            .await
            .expect("reach the Snowflake stand-in")
            .json()
            .await
            .expect("a JSON login answer");
        let token = answer["data"]["token"]
            .as_str()
            .unwrap_or_else(|| panic!("login to the Snowflake stand-in failed: {answer}"))
            .to_owned();
        SnowflakeAdmin { http, base, token }
    }

    /// Runs one statement; the error is the server's message.
    pub async fn execute(&self, sql: &str) -> Result<serde_json::Value, String> {
        let request_id = format!("{:032x}", rand::random::<u128>());
        let answer: serde_json::Value = self
            .http
            .post(format!(
                "{}/queries/v1/query-request?requestId={request_id}",
                self.base
            ))
            .header(
                "Authorization",
                format!("Snowflake Token=\"{}\"", self.token),
            )
            .header("Accept", "application/snowflake")
            .json(&serde_json::json!({ "sqlText": sql, "asyncExec": false, "sequenceId": 1 }))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        if answer["success"].as_bool() == Some(true) {
            Ok(answer)
        } else {
            Err(format!("{}: {}", answer["code"], answer["message"]))
        }
    }

    /// Runs every statement of a `;`-separated script (semicolons inside quotes kept).
    pub async fn run_script(&self, script: &str) -> Result<(), String> {
        for statement in split_statements(script) {
            self.execute(&statement).await.map_err(|e| {
                format!(
                    "{e} (in `{}`)",
                    statement.chars().take(200).collect::<String>()
                )
            })?;
        }
        Ok(())
    }
}

/// A script's statements: split at `;` outside single- and double-quoted text.
pub fn split_statements(script: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    for c in script.chars() {
        match (quote, c) {
            (None, ';') => {
                if !current.trim().is_empty() {
                    out.push(current.trim().to_owned());
                }
                current.clear();
                continue;
            }
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            _ => {}
        }
        current.push(c);
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_owned());
    }
    out
}

/// The BigQuery stand-in's URL (`PRDIFF_TEST_BIGQUERY_URL`): bqemulator on a loopback
/// port, `bigquery://PROJECT?endpoint=http://127.0.0.1:PORT` (no authentication).
pub fn bigquery_url() -> String {
    std::env::var("PRDIFF_TEST_BIGQUERY_URL")
        .expect("PRDIFF_TEST_BIGQUERY_URL is not set: run the tests through scripts/test.sh")
}

/// A writing client for the BigQuery stand-in, for setting up data (the driver only
/// reads): datasets through `datasets.insert`, statements through `jobs.query`.
pub struct BigQueryAdmin {
    http: reqwest::Client,
    base: String,
    pub project: String,
}

impl BigQueryAdmin {
    pub fn new() -> Self {
        let url = url::Url::parse(&bigquery_url()).unwrap();
        let project = url.host_str().expect("a project").to_owned();
        let endpoint = url
            .query_pairs()
            .find(|(k, _)| k == "endpoint")
            .map(|(_, v)| v.into_owned())
            .expect("PRDIFF_TEST_BIGQUERY_URL has an endpoint");
        BigQueryAdmin {
            http: reqwest::Client::new(),
            base: format!(
                "{}/bigquery/v2/projects/{project}",
                endpoint.trim_end_matches('/')
            ),
            project,
        }
    }

    /// Creates dataset `name`.
    pub async fn create_dataset(&self, name: &str) {
        let resp = self
            .http
            .post(format!("{}/datasets", self.base))
            .json(&serde_json::json!({
                "datasetReference": {"projectId": self.project, "datasetId": name}
            }))
            .send()
            .await
            .expect("datasets.insert");
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        assert!(
            status.is_success(),
            "creating dataset {name}: {status} {body}"
        );
    }

    /// Runs one GoogleSQL statement and returns the response; panics on any error.
    pub async fn exec(&self, sql: &str) -> serde_json::Value {
        let resp = self
            .http
            .post(format!("{}/queries", self.base))
            .json(&serde_json::json!({"query": sql, "useLegacySql": false, "timeoutMs": 60000}))
            .send()
            .await
            .expect("jobs.query");
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        assert!(
            status.is_success() && body.get("errors").is_none() && body["jobComplete"] == true,
            "{sql}: {status} {body}"
        );
        body
    }
    /// The `(name, type)` of each column of table `dataset.table` (`tables.get`).
    pub async fn table_fields(&self, dataset: &str, table: &str) -> Vec<(String, String)> {
        let resp = self
            .http
            .get(format!("{}/datasets/{dataset}/tables/{table}", self.base))
            .send()
            .await
            .expect("tables.get");
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        assert!(status.is_success(), "{dataset}.{table}: {status} {body}");
        body["schema"]["fields"]
            .as_array()
            .expect("a schema")
            .iter()
            .map(|f| {
                (
                    f["name"].as_str().unwrap_or_default().to_owned(),
                    f["type"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// Adds `rows` (`{"json": {column: value}}` each) to `dataset.table` in one
    /// `tabledata.insertAll` request; panics on any error or rejected row.
    pub async fn insert_all(&self, dataset: &str, table: &str, rows: Vec<serde_json::Value>) {
        let n = rows.len();
        let resp = self
            .http
            .post(format!(
                "{}/datasets/{dataset}/tables/{table}/insertAll",
                self.base
            ))
            .json(&serde_json::json!({ "rows": rows }))
            .send()
            .await
            .expect("tabledata.insertAll");
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        let rejected = body["insertErrors"]
            .as_array()
            .is_some_and(|e| !e.is_empty());
        assert!(
            status.is_success() && !rejected,
            "inserting {n} rows into {dataset}.{table}: {status} {body}"
        );
    }
}

impl Default for BigQueryAdmin {
    fn default() -> Self {
        Self::new()
    }
}
