//! `prdiff config` as a process: exit codes, output, and nothing written on refusal.
//! Uses the embedded backend and a dbt Cloud address that refuses connections, so it needs
//! no network and no AWS.

use std::path::Path;
use std::process::{Command, Output};

fn prdiff(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prdiff"))
        .current_dir(dir)
        .args(["config"])
        .args(args)
        .args(["--backend", "embedded", "--db"])
        .arg(dir.join("prdiff.db"))
        .env_remove("PRDIFF_BACKEND")
        .env_remove("PRDIFF_SECRETS_DIR")
        .output()
        .expect("run prdiff")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const FILE: &str = r#"
[[data_source]]
id = "warehouse"
kind = "sqlite"
connection = { path = "demo.db" }

[[ci_config]]
name = "demo"
data_source = "warehouse"
repository = { provider = "github", full_name = "acme/analytics" }
git_auth = { kind = "token", token = { file = "gh.token" } }
dbt_cloud = { access_url = "http://127.0.0.1:9", account_id = 1, api_key = { file = "dbt.key" }, artifacts_job_id = 10, pr_job_id = 11 }
sampling = { tolerance = 0.01 }
"#;

fn setup(file: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dbt.key"), "dbtc_cli\n").unwrap();
    std::fs::write(dir.path().join("gh.token"), "ghp_cli\n").unwrap();
    std::fs::write(dir.path().join("prdiff.toml"), file).unwrap();
    dir
}

#[test]
fn an_invalid_file_exits_2_naming_the_field_and_writes_nothing() {
    let dir = setup(&FILE.replace("tolerance = 0.01", "tolerance = 1.5"));
    let out = prdiff(
        dir.path(),
        &["apply", "-f", "prdiff.toml", "--no-dbt-check"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("tolerance"),
        "{}",
        text(&out.stderr)
    );
    let list = prdiff(dir.path(), &["list"]);
    assert_eq!(list.status.code(), Some(0));
    assert!(!text(&list.stdout).contains("demo"));
    assert!(!dir.path().join("prdiff.db.secrets").exists());
}

#[test]
fn apply_list_show_check_and_delete_work_end_to_end() {
    let dir = setup(FILE);
    let out = prdiff(
        dir.path(),
        &["apply", "-f", "prdiff.toml", "--no-dbt-check"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("configuration demo: applied"));

    let list = text(&prdiff(dir.path(), &["list"]).stdout);
    assert!(
        list.contains("demo") && list.contains("github:acme/analytics"),
        "{list}"
    );

    let show = prdiff(dir.path(), &["show", "demo"]);
    let json: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(
        json["dbt_cloud"]["api_key"],
        "prdiff/config/demo/dbt-api-key"
    );
    assert!(!text(&show.stdout).contains("dbtc_cli"));

    // dbt Cloud is unreachable here and demo.db does not exist: check reports both and
    // exits 1 (without creating the file); the rest is fine.
    let check = prdiff(dir.path(), &["check", "demo"]);
    assert_eq!(check.status.code(), Some(1));
    let lines = text(&check.stdout);
    assert!(
        lines.contains("ok   data source: warehouse (sqlite)"),
        "{lines}"
    );
    assert!(lines.contains("FAIL dbt Cloud account and jobs"), "{lines}");
    let warehouse = lines
        .lines()
        .find(|l| l.starts_with("FAIL warehouse connection: "))
        .unwrap_or_else(|| panic!("{lines}"));
    assert!(
        warehouse.ends_with("sqlite:demo.db: demo.db does not exist"),
        "{warehouse}"
    );
    assert!(!dir.path().join("demo.db").exists());

    let in_use = prdiff(dir.path(), &["delete", "warehouse"]);
    assert_eq!(in_use.status.code(), Some(2));
    assert_eq!(
        prdiff(dir.path(), &["delete", "demo"]).status.code(),
        Some(0)
    );
    assert_eq!(prdiff(dir.path(), &["show", "demo"]).status.code(), Some(2));
    assert_eq!(
        prdiff(dir.path(), &["delete", "warehouse"]).status.code(),
        Some(0)
    );
}

#[test]
fn the_aws_backend_without_a_table_is_a_usage_error() {
    let dir = setup(FILE);
    let out = Command::new(env!("CARGO_BIN_EXE_prdiff"))
        .current_dir(dir.path())
        .args(["config", "list", "--backend", "aws"])
        .env_remove("PRDIFF_TABLE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("PRDIFF_TABLE"));
}

#[cfg(unix)]
#[test]
fn apply_writes_a_private_database_and_secrets_directory_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = setup(FILE);
    // `sh` sets the umask for prdiff alone (std has no umask call; unsafe code is out).
    let out = Command::new("sh")
        .arg("-c")
        .arg("umask 000; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_prdiff"))
        .current_dir(dir.path())
        .args(["config", "apply", "-f", "prdiff.toml", "--no-dbt-check"])
        .args(["--backend", "embedded", "--db"])
        .arg(dir.path().join("prdiff.db"))
        .env_remove("PRDIFF_BACKEND")
        .env_remove("PRDIFF_SECRETS_DIR")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.path().join("prdiff.db")), 0o600);
    let secrets = dir.path().join("prdiff.db.secrets");
    assert_eq!(mode(&secrets), 0o700);
    let files: Vec<_> = std::fs::read_dir(&secrets)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    for f in files {
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
}

/// A dbt Cloud stand-in on a loopback port: account 1 with jobs 10 and 11, for any key.
/// Serves until the test process ends.
fn fake_dbt_cloud() -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            // Skip the headers.
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let path = request.split_whitespace().nth(1).unwrap_or("");
            let body = if path.starts_with("/api/v2/accounts/1/jobs/") {
                r#"{"data": [{"id": 10, "name": "artifacts"}, {"id": 11, "name": "ci"}]}"#
            } else if path.starts_with("/api/v2/accounts/") {
                r#"{"data": [{"id": 1, "name": "Acme"}]}"#
            } else {
                r#"{"data": null}"#
            };
            let _ = write!(
                reader.get_mut(),
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}")
}

/// Needs the PostgreSQL test cluster (`PRDIFF_TEST_PG_URL`, as `scripts/test.sh` sets):
/// its default user is a superuser, which the check reports as a warning, exit code 0.
#[test]
fn check_prints_warehouse_privilege_warnings_and_still_exits_0() {
    let pg = std::env::var("PRDIFF_TEST_PG_URL")
        .expect("PRDIFF_TEST_PG_URL is not set: run the tests through scripts/test.sh");
    let pg = url::Url::parse(&pg).expect("a postgres:// URL");
    let (user, host, port) = (pg.username(), pg.host_str().unwrap(), pg.port().unwrap());
    let db = pg.path().trim_start_matches('/');
    let file = FILE
        .replace(
            r#"kind = "sqlite"
connection = { path = "demo.db" }"#,
            &format!(
                r#"kind = "postgres"
connection = {{ host = "{host}", port = "{port}", database = "{db}", user = "{user}" }}"#
            ),
        )
        .replace("http://127.0.0.1:9", &fake_dbt_cloud());
    assert!(file.contains("kind = \"postgres\""));
    let dir = setup(&file);
    let out = prdiff(dir.path(), &["apply", "-f", "prdiff.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let check = prdiff(dir.path(), &["check", "demo"]);
    let lines = text(&check.stdout);
    assert_eq!(
        check.status.code(),
        Some(0),
        "{lines}{}",
        text(&check.stderr)
    );
    assert!(lines.contains("ok   dbt Cloud account and jobs"), "{lines}");
    assert!(lines.contains("ok   warehouse connection: "), "{lines}");
    assert!(
        lines.contains(&format!(
            "WARN warehouse privilege SUPERUSER: role {user} is a superuser"
        )),
        "{lines}"
    );
    assert!(
        lines.contains(&format!("revoke: ALTER ROLE \"{user}\" NOSUPERUSER;")),
        "{lines}"
    );

    // --no-warehouse-check: no warehouse line at all.
    let check = prdiff(dir.path(), &["check", "demo", "--no-warehouse-check"]);
    assert_eq!(check.status.code(), Some(0));
    let lines = text(&check.stdout);
    assert!(
        lines.contains("ok   data source: warehouse (postgres)"),
        "{lines}"
    );
    assert!(!lines.contains("warehouse connection"), "{lines}");
    assert!(!lines.contains("warehouse privilege"), "{lines}");
}

#[test]
fn a_failed_apply_creates_no_database_and_no_secrets_directory() {
    // Invalid (tolerance out of range), and valid but with a secret file that is missing.
    for file in [
        FILE.replace("tolerance = 0.01", "tolerance = 1.5"),
        FILE.replace("\"gh.token\"", "\"missing.token\""),
    ] {
        let dir = setup(&file);
        let out = prdiff(
            dir.path(),
            &["apply", "-f", "prdiff.toml", "--no-dbt-check"],
        );
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        let left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("prdiff.db"))
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}

#[test]
fn a_failed_apply_leaves_an_existing_database_in_place() {
    let dir = setup(FILE);
    let ok = prdiff(
        dir.path(),
        &["apply", "-f", "prdiff.toml", "--no-dbt-check"],
    );
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    std::fs::write(
        dir.path().join("prdiff.toml"),
        FILE.replace("tolerance = 0.01", "tolerance = 1.5"),
    )
    .unwrap();
    let bad = prdiff(
        dir.path(),
        &["apply", "-f", "prdiff.toml", "--no-dbt-check"],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(dir.path().join("prdiff.db").exists());
    let list = prdiff(dir.path(), &["list"]);
    assert!(
        text(&list.stdout).contains("demo"),
        "{}",
        text(&list.stdout)
    );
}

#[test]
fn check_connects_to_a_sqlite_source_made_only_of_attached_files() {
    let dir = setup(&FILE.replace(
        r#"connection = { path = "demo.db" }"#,
        r#"connection = { path = "wh/main.db?attach=prod=wh/prod.db&attach=dbt_cloud_pr_4242_17=wh/pr.db" }"#,
    ));
    let demo = Command::new(env!("CARGO_BIN_EXE_prdiff"))
        .current_dir(dir.path())
        .args(["demo", "--dir", "wh"])
        .output()
        .unwrap();
    assert_eq!(demo.status.code(), Some(0), "{}", text(&demo.stderr));
    let apply = prdiff(
        dir.path(),
        &["apply", "-f", "prdiff.toml", "--no-dbt-check"],
    );
    assert_eq!(apply.status.code(), Some(0), "{}", text(&apply.stderr));
    // dbt Cloud is unreachable (exit 1), but the warehouse line is fine.
    let check = prdiff(dir.path(), &["check", "demo"]);
    let lines = text(&check.stdout);
    assert!(lines.contains("ok   warehouse connection"), "{lines}");
    assert!(!dir.path().join("wh/main.db").exists());
}
