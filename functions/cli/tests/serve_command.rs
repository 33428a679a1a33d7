//! `prdiff serve` as a process: start-up checks, the HTTP endpoint, one process per file,
//! and a graceful stop on SIGTERM and SIGINT. (The whole PR flow through serve runs in
//! `tests/tests/it/serve.rs`.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SECRET_ENV: &str = "PRDIFF_SECRET_PRDIFF_WEBHOOK_SECRET";

fn serve(dir: &Path, with_secret: bool) -> Command {
    serve_after(dir, with_secret, None)
}

/// `prdiff serve …`, or with `shell` set, `sh -c '<shell>; exec prdiff serve …'` (a umask
/// or ulimit for serve alone: std has no call for them, and unsafe code is out).
fn serve_after(dir: &Path, with_secret: bool, shell: Option<&str>) -> Command {
    serve_with(dir, with_secret, shell, "127.0.0.1:0", "0")
}

/// `prdiff serve` on `listen`, checking sync schedules every `sync_tick` seconds.
fn serve_with(
    dir: &Path,
    with_secret: bool,
    shell: Option<&str>,
    listen: &str,
    sync_tick: &str,
) -> Command {
    let bin = env!("CARGO_BIN_EXE_prdiff");
    let mut c = match shell {
        None => Command::new(bin),
        Some(shell) => {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(format!("{shell}; exec \"$0\" \"$@\""))
                .arg(bin);
            c
        }
    };
    c.current_dir(dir)
        .args(["serve", "--listen", listen, "--db"])
        .arg(dir.join("prdiff.db"))
        .args([
            "--sync-tick-seconds",
            sync_tick,
            "--shutdown-grace-seconds",
            "5",
        ])
        .env_remove("PRDIFF_DB")
        .env_remove("PRDIFF_LISTEN")
        .env_remove("PRDIFF_SECRETS_DIR")
        .env_remove("PRDIFF_WEBHOOK_SECRET_NAME")
        .env("RUST_LOG", "warn");
    if with_secret {
        c.env(SECRET_ENV, "s3cr3t-value");
    } else {
        c.env_remove(SECRET_ENV);
    }
    c
}

/// Starts serve and returns it with the address it printed. The caller waits for it.
fn start(dir: &Path) -> (Child, String, BufReader<std::process::ChildStderr>) {
    start_after(dir, None)
}

#[allow(clippy::zombie_processes)]
fn start_after(
    dir: &Path,
    shell: Option<&str>,
) -> (Child, String, BufReader<std::process::ChildStderr>) {
    let mut child = serve_after(dir, true, shell)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start prdiff serve");
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "serve exited before listening"
        );
        if let Some(rest) = line.split("listening on http://").nth(1) {
            let addr = rest.split_whitespace().next().unwrap().to_owned();
            return (child, addr, err);
        }
    }
}

/// One HTTP/1.1 request; returns (status, body).
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        assert!(
            start.elapsed() < within,
            "serve did not stop within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn kill(child: &Child, signal: &str) {
    let ok = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {signal}");
}

#[test]
fn without_the_webhook_secret_serve_refuses_to_start_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let o = serve(dir.path(), false).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("prdiff/webhook-secret"), "{err}");
    assert!(err.contains(SECRET_ENV), "{err}");
}

#[test]
fn an_empty_or_blank_webhook_secret_is_refused_like_a_missing_one() {
    // From the environment: set but empty, or only whitespace.
    for value in ["", "   "] {
        let dir = tempfile::tempdir().unwrap();
        let o = serve(dir.path(), false)
            .env(SECRET_ENV, value)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{value:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("prdiff/webhook-secret"), "{err}");
        assert!(err.contains("empty"), "{err}");
        assert!(err.contains(SECRET_ENV), "{err}");
    }
    // From the secrets directory: an empty file, or one holding only whitespace.
    for value in ["", "\n", " \t\n"] {
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join("prdiff.db.secrets");
        std::fs::create_dir(&secrets).unwrap();
        std::fs::write(secrets.join("prdiff_webhook-secret"), value).unwrap();
        let o = serve(dir.path(), false).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{value:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("webhook secret prdiff/webhook-secret is not set: it is empty"),
            "{err}"
        );
    }
}

#[cfg(unix)]
#[test]
fn the_database_files_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (mut child, _addr, _err) = start_after(dir.path(), Some("umask 000"));
    let db = dir.path().join("prdiff.db");
    let mode = |suffix: &str| {
        let mut p = db.clone().into_os_string();
        p.push(suffix);
        std::fs::metadata(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", Path::new(&p).display()))
            .permissions()
            .mode()
            & 0o777
    };
    let modes: Vec<(&str, u32)> = ["", "-wal", "-shm", ".lock"]
        .into_iter()
        .map(|s| (s, mode(s)))
        .collect();
    kill(&child, "-TERM");
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(10)).code(),
        Some(0)
    );
    assert_eq!(
        modes,
        [
            ("", 0o600),
            ("-wal", 0o600),
            ("-shm", 0o600),
            (".lock", 0o600)
        ]
    );
}

#[test]
fn serve_answers_health_and_webhooks_then_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr, mut err) = start(dir.path());

    let (status, body) = http(&addr, "GET", "/healthz", &[], "");
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["queues"]["poll"], 0);
    assert_eq!(health["dead_letters"], 0);

    // A delivery without a valid signature is refused by the webhook handler itself.
    let (status, body) = http(
        &addr,
        "POST",
        "/webhook",
        &[
            ("x-github-event", "ping"),
            ("x-github-delivery", "d-1"),
            ("x-hub-signature-256", "sha256=00"),
        ],
        "{}",
    );
    assert_eq!(status, 401, "{body}");
    assert!(!body.contains("s3cr3t-value"));
    assert_eq!(http(&addr, "GET", "/nope", &[], "").0, 404);
    assert_eq!(http(&addr, "GET", "/webhook", &[], "").0, 405);

    // A second process on the same file is refused while the first runs.
    let o = serve(dir.path(), true).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("in use by another"));

    kill(&child, "-TERM");
    let st = wait_exit(&mut child, Duration::from_secs(10));
    assert_eq!(st.code(), Some(0));
    let mut rest = String::new();
    err.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("prdiff serve: stopped"), "{rest}");
    assert!(!rest.contains("s3cr3t-value"));

    // The lock went with the process: it starts again on the same file, and stops on SIGINT.
    let (mut child, addr, _err) = start(dir.path());
    assert_eq!(http(&addr, "GET", "/healthz", &[], "").0, 200);
    kill(&child, "-INT");
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(10)).code(),
        Some(0)
    );
}

fn queue_cmd(db: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_prdiff"))
        .arg("queue")
        .args(args)
        .arg("--db")
        .arg(db)
        .env_remove("PRDIFF_DB")
        .output()
        .unwrap()
}

#[test]
fn prdiff_queue_shows_depths_and_dead_letters_and_replays_them() {
    use prdiff_shared::messages::{Message, SyncMessage, SyncReason};
    use prdiff_shared::queue::Queue;
    use prdiff_shared::queue::embedded::EmbeddedQueues;

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("prdiff.db");
    let missing = queue_cmd(&dir.path().join("nope.db"), &["status"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no prdiff database"));

    let qs = EmbeddedQueues::open(&db).unwrap();
    let sync = qs.queue("sync");
    let msg = Message::Sync(SyncMessage {
        config_id: prdiff_shared::config::ConfigId::parse("shop").unwrap(),
        reason: SyncReason::Schedule,
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(sync.send(&msg, Duration::ZERO)).unwrap();
    rt.block_on(qs.queue("poll").send(&msg, Duration::from_secs(600)))
        .unwrap();
    let d = sync.receive(Duration::from_secs(60)).unwrap().unwrap();
    sync.dead_letter(&d, "dbt Cloud answered 401 for account 1")
        .unwrap();

    let status = queue_cmd(&db, &["status"]);
    assert_eq!(status.status.code(), Some(0));
    let out = String::from_utf8_lossy(&status.stdout).into_owned();
    let count = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last())
            .unwrap_or_else(|| panic!("{name} in {out}"))
            .to_owned()
    };
    assert_eq!(
        (count("poll"), count("sync"), count("dead letters")),
        ("1".into(), "0".into(), "1".into())
    );

    let listed = String::from_utf8_lossy(&queue_cmd(&db, &["dead-letters"]).stdout).into_owned();
    assert!(
        listed.contains("sync  after 1 deliveries: dbt Cloud answered 401 for account 1"),
        "{listed}"
    );
    assert!(listed.contains(r#""kind":"sync""#), "{listed}");

    let wrong = queue_cmd(&db, &["replay", "999"]);
    assert_eq!(wrong.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("no dead letter with id 999"));

    let replay = queue_cmd(&db, &["replay", "--all"]);
    assert_eq!(
        replay.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    assert!(qs.dead_letters().unwrap().is_empty());
    let back = sync.receive(Duration::from_secs(60)).unwrap().unwrap();
    assert_eq!(Message::from_json(&back.body).unwrap(), msg);
}

#[cfg(unix)]
#[test]
fn out_of_file_handles_serve_pauses_accepting_warns_at_most_once_a_second_and_recovers() {
    use std::sync::mpsc;
    let dir = tempfile::tempdir().unwrap();
    // Few handles: serve needs about twenty of its own, the rest go to connections.
    let (mut child, addr, err) = start_after(dir.path(), Some("ulimit -n 40"));
    let (tx, lines) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in err.lines() {
            let Ok(line) = line else { break };
            if tx.send(strip_colours(&line)).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    // More idle connections than serve has handles for, held open.
    let held: Vec<TcpStream> = (0..60)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains("accept failed")) {
        match lines.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => seen.push(l),
            Err(e) => panic!("no accept failure reported ({e}); stderr: {seen:?}"),
        }
    }
    // Out of handles for a while longer: the loop must not spin (it used to log
    // hundreds of thousands of lines a second here).
    std::thread::sleep(Duration::from_secs(2));
    drop(held);
    // Handles come back: serve answers again.
    let (status, body) = http(&addr, "GET", "/healthz", &[], "");
    assert_eq!(status, 200, "{body}");
    kill(&child, "-TERM");
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(10)).code(),
        Some(0)
    );
    let elapsed = started.elapsed();
    reader.join().unwrap();
    seen.extend(lines.try_iter());
    let warnings = seen.iter().filter(|l| l.contains("accept failed")).count();
    let bound = elapsed.as_secs() as usize + 2;
    assert!(
        (1..=bound).contains(&warnings),
        "{warnings} accept warnings in {elapsed:?} (at most one a second)"
    );
    assert!(
        seen.iter()
            .any(|l| l.contains("accept failed") && l.contains("pause_ms=100")),
        "{seen:?}"
    );
}

/// The text of a log line without its terminal colour codes.
fn strip_colours(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ … m
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The names in `dir` that start with `prdiff.db` (the database, its journals, its lock).
fn database_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("prdiff.db"))
        .collect()
}

#[test]
fn serve_that_cannot_start_leaves_no_database_or_lock_behind() {
    // The address is taken.
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let o = serve_with(dir.path(), true, None, &addr, "0")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&addr), "{err}");
    assert_eq!(database_files(dir.path()), Vec::<String>::new(), "{err}");
    // The webhook secret is missing.
    let o = serve(dir.path(), false).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(database_files(dir.path()), Vec::<String>::new());
    // A database that was there before stays.
    let (mut child, _addr, _err) = start(dir.path());
    kill(&child, "-TERM");
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(10)).code(),
        Some(0)
    );
    let o = serve_with(dir.path(), true, None, &addr, "0")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(dir.path().join("prdiff.db").exists());
}

#[test]
fn a_failing_scheduled_sync_is_logged_once_in_plain_text() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dbt.key"), "dbtc_serve\n").unwrap();
    std::fs::write(dir.path().join("gh.token"), "ghp_serve\n").unwrap();
    // dbt Cloud at an address that refuses connections: every sync fails.
    std::fs::write(
        dir.path().join("prdiff.toml"),
        r#"
[[data_source]]
id = "warehouse"
kind = "sqlite"
connection = { path = "demo.db" }

[[ci_config]]
name = "nightly"
data_source = "warehouse"
sync_schedule = "* * * * *"
repository = { provider = "github", full_name = "acme/analytics" }
git_auth = { kind = "token", token = { file = "gh.token" } }
dbt_cloud = { access_url = "http://127.0.0.1:9", account_id = 1, api_key = { file = "dbt.key" }, artifacts_job_id = 10, pr_job_id = 11 }
"#,
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_prdiff"))
        .current_dir(dir.path())
        .args(["config", "apply", "-f", "prdiff.toml", "--no-dbt-check"])
        .args(["--backend", "embedded", "--db", "prdiff.db"])
        .env_remove("PRDIFF_SECRETS_DIR")
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // Stderr is a pipe here, not a terminal.
    let mut child = serve_with(dir.path(), true, None, "127.0.0.1:0", "3600")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut seen = Vec::new();
    let start = Instant::now();
    let mut line = String::new();
    while start.elapsed() < Duration::from_secs(60) {
        line.clear();
        if err.read_line(&mut line).unwrap() == 0 {
            break;
        }
        seen.push(line.trim_end().to_owned());
        if line.contains("sync failed") {
            break;
        }
    }
    // Anything else the tick logs comes right after the first line.
    std::thread::sleep(Duration::from_millis(500));
    kill(&child, "-TERM");
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(10)).code(),
        Some(0)
    );
    let mut rest = String::new();
    err.read_to_string(&mut rest).unwrap();
    seen.extend(rest.lines().map(str::to_owned));

    let failures: Vec<&String> = seen.iter().filter(|l| l.contains("sync failed")).collect();
    assert_eq!(failures.len(), 1, "{seen:#?}");
    assert!(failures[0].contains("nightly"), "{seen:#?}");
    assert!(
        seen.iter().all(|l| !l.contains('\u{1b}')),
        "colour codes in a log that is not a terminal: {seen:#?}"
    );
}

#[test]
fn bad_settings_from_flags_and_environment_are_reported_together_before_anything_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let o = serve(dir.path(), true)
        .args(["--model-timeout-seconds", "0", "--max-connections", "0"])
        .env("PRDIFF_RUN_DEADLINE_SECONDS", "soon")
        .env("PRDIFF_LOG_FORMAT", "xml")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("prdiff serve: "))
        .unwrap_or_else(|| panic!("no error line in: {err}"));
    for problem in [
        "--model-timeout-seconds is not a number of seconds ≥ 1: \"0\"",
        "--max-connections is not a whole number ≥ 1: \"0\"",
        "PRDIFF_RUN_DEADLINE_SECONDS is not a number of seconds ≥ 60: \"soon\"",
        "PRDIFF_LOG_FORMAT is not valid: \"xml\"",
    ] {
        assert!(line.contains(problem), "{problem} missing from: {line}");
    }
    assert!(!err.contains("s3cr3t-value"), "{err}");
    assert_eq!(database_files(dir.path()), Vec::<String>::new());
}

#[test]
fn a_flag_wins_over_its_environment_variable() {
    let dir = tempfile::tempdir().unwrap();
    let o = serve(dir.path(), true)
        .args(["--max-connections", "0"])
        .env("PRDIFF_MAX_CONNECTIONS", "10")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--max-connections is not a whole number ≥ 1"),
        "{err}"
    );
}
