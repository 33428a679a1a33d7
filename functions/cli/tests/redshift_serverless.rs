//! `prdiff diff` on a Redshift Serverless workgroup with IAM authentication: the CLI asks
//! `GetCredentials` (here a loopback stand-in answering with the response shape of the
//! Redshift Serverless API reference: moto has no Redshift Serverless), then connects as
//! the database user it names to the PostgreSQL test cluster (`PRDIFF_TEST_PG_URL`), which
//! trusts loopback, so the temporary password is not checked there.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::Command;
use std::sync::{Arc, Mutex};

fn pg_url() -> url::Url {
    url::Url::parse(
        &std::env::var("PRDIFF_TEST_PG_URL")
            .expect("PRDIFF_TEST_PG_URL is not set: run the tests through scripts/test.sh"),
    )
    .unwrap()
}

fn psql(sql: &str) {
    let out = Command::new("psql")
        .arg(pg_url().as_str())
        .args(["-v", "ON_ERROR_STOP=1", "-qc", sql])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The requests a stand-in received: `x-amz-target` header and body.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// Answers every request with `GetCredentials`' response for `db_user`; keeps the
/// requests it received.
fn serverless_api(db_user: String) -> (String, Seen) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let kept = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let (mut target, mut length) = (String::new(), 0usize);
            let mut line = String::new();
            reader.read_line(&mut line).ok();
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) <= 2 {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("x-amz-target:") {
                    target = v.trim().to_owned();
                }
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).ok();
            kept.lock()
                .unwrap()
                .push((target, String::from_utf8_lossy(&body).into_owned()));
            let reply = format!(
                r#"{{"dbUser":"{db_user}","dbPassword":"temporary-password","expiration":4102444800,"nextRefreshTime":4102444000}}"#
            );
            let _ = write!(
                reader.get_mut(),
                "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                reply.len()
            );
        }
    });
    (format!("http://{addr}"), seen)
}

#[test]
fn a_serverless_workgroup_is_diffed_with_credentials_from_get_credentials() {
    let n = std::process::id();
    let (role, schema) = (format!("IAMR:prdiff_ro_{n}"), format!("rs_{n}"));
    psql(&format!(
        "CREATE ROLE \"{role}\" LOGIN; CREATE SCHEMA {schema};
         CREATE TABLE {schema}.t AS SELECT g AS id, g * 2 AS v FROM generate_series(1, 50) g;
         CREATE TABLE {schema}.t_pr AS SELECT id, CASE WHEN id <= 5 THEN v + 1 ELSE v END AS v FROM {schema}.t;
         GRANT USAGE ON SCHEMA {schema} TO \"{role}\"; GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO \"{role}\";"
    ));
    let (endpoint, seen) = serverless_api(role.clone());
    let pg = pg_url();
    let warehouse = format!(
        "redshift://ignored@{}:{}/{}?sslmode=disable&iam=serverless&workgroup=analytics-wg&region=eu-west-1",
        pg.host_str().unwrap(),
        pg.port().unwrap(),
        pg.path().trim_start_matches('/')
    );
    let out = Command::new(env!("CARGO_BIN_EXE_prdiff"))
        .args(["diff", "--warehouse", &warehouse])
        .args([
            "--prod",
            &format!("{schema}.t"),
            "--pr",
            &format!("{schema}.t_pr"),
        ])
        .args(["--pk", "id", "--format", "json"])
        .env("AWS_ENDPOINT_URL_REDSHIFT_SERVERLESS", &endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The five changed rows, found through the IAM user's connection.
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = serde_json::to_string(&json).unwrap();
    assert!(text.contains("\"changed\":5"), "{text}");

    let seen = seen.lock().unwrap();
    assert!(!seen.is_empty());
    let (target, body) = &seen[0];
    assert_eq!(target, "redshiftserverless.getcredentials");
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["workgroupName"], "analytics-wg");
    assert_eq!(body["dbName"], pg.path().trim_start_matches('/'));
    psql(&format!(
        "DROP SCHEMA {schema} CASCADE; DROP ROLE \"{role}\";"
    ));
}
