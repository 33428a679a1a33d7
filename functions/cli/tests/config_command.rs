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

    // dbt Cloud is unreachable here: check reports it and exits 1; the rest is fine.
    let check = prdiff(dir.path(), &["check", "demo"]);
    assert_eq!(check.status.code(), Some(1));
    let lines = text(&check.stdout);
    assert!(
        lines.contains("ok   data source: warehouse (sqlite)"),
        "{lines}"
    );
    assert!(lines.contains("FAIL dbt Cloud account and jobs"), "{lines}");

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
