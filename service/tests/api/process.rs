//! The `federation` binary as an operator runs it: exit codes, signals,
//! what it prints and what it logs.

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use testkit::TestDb;

use crate::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_federation");

/// A command with a clean environment: only what the test sets.
pub fn federation(args: &[&str]) -> Command {
    let mut cmd = testkit::clean_command(BIN);
    cmd.args(args);
    cmd
}

/// `federation serve` on `port` against `db_url`, with the admin key.
pub fn serve(db_url: &str, port: u16) -> Command {
    let mut cmd = federation(&["serve"]);
    cmd.env("FEDERATION_API_KEYS", ADMIN_KEY)
        .env("DATABASE_URL", db_url)
        .env("FEDERATION_PORT", port.to_string());
    cmd
}

/// [`serve`] on a new database and a free port, with `env` besides, its
/// output piped, once it is ready.
pub async fn serve_ready(env: &[(&str, &str)]) -> (TestDb, u16, Child) {
    let db = TestDb::create().await;
    let port = testkit::free_port();
    let child = serve(&db.url, port)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_ready(port).await;
    (db, port, child)
}

/// [`serve_ready`] without NATS, on 127.0.0.1: the URL of its project
/// list.
async fn serve_without_nats(env: &[(&str, &str)]) -> (TestDb, String, Child) {
    let local = [
        ("FEDERATION__NATS__ENABLED", "false"),
        ("FEDERATION__SERVER__HOST", "127.0.0.1"),
    ];
    let (db, port, child) = serve_ready(&[&local[..], env].concat()).await;
    let url = format!("http://127.0.0.1:{port}/api/fed/projects");
    (db, url, child)
}

/// [`serve`] with `env` besides, its output dropped; returns at once.
pub fn serve_quiet(db_url: &str, port: u16, env: &[(&str, &str)]) -> Child {
    serve(db_url, port)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// [`stop_with`], expecting a clean exit (0): stdout then stderr as one
/// text.
pub async fn stop_cleanly(child: Child, sig: &str) -> String {
    let (out, logs) = stop_with(child, sig).await;
    assert_eq!(out.status.code(), Some(0), "{logs}");
    logs
}

/// Sends `sig` and waits for the exit: the output, and stdout then stderr
/// as one text.
async fn stop_with(child: Child, sig: &str) -> (Output, String) {
    signal(child.id(), sig);
    wait_output(child).await
}

/// Waits for `child` to exit by itself: the output, and stdout then stderr
/// as one text.
pub async fn wait_output(child: Child) -> (Output, String) {
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let logs =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out, logs)
}

fn output(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("run federation");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_explains_each_command() {
    let (code, out, _) = output(&mut federation(&["--help"]));
    assert_eq!(code, 0);
    for word in [
        "serve",
        "migrate",
        "check-config",
        "--config",
        "FEDERATION_API_KEYS",
        "FEDERATION__",
    ] {
        assert!(out.contains(word), "--help lacks {word}:\n{out}");
    }
    let (code, out, _) = output(&mut federation(&["serve", "--help"]));
    assert_eq!(code, 0);
    assert_contains(&out, "SIGTERM");
}

#[test]
fn check_config_accepts_a_valid_setup_and_prints_no_secret() {
    let (code, out, err) = output(
        federation(&["check-config"])
            .env("FEDERATION_API_KEYS", format!("[\"{ADMIN_KEY}\"]"))
            .env("DATABASE_URL", "postgres://fed:db-secret-pw@db:5432/fed")
            .env("NATS_URL", "nats://natsuser:nats-secret-pw@nats:4222"),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("configuration OK"), "{out}");
    assert_contains(&out, "postgres://db:5432/fed");
    assert_contains(&out, "nats://nats:4222");
    assert_contains(&out, &service::auth::fingerprint(ADMIN_KEY));
    for secret in [ADMIN_KEY, "db-secret-pw", "nats-secret-pw", "natsuser"] {
        assert!(
            !out.contains(secret) && !err.contains(secret),
            "{secret} printed"
        );
    }
}

#[test]
fn check_config_lists_every_error_and_exits_2() {
    let (code, out, err) = output(
        federation(&["check-config"])
            .env("FEDERATION_PORT", "eighty")
            .env("HEARTBEAT_STALE_THRESHOLD_SECONDS", "10")
            .env("FEDERATION__HEARTBEAT__DEGRADED_AFTER", "20s")
            .env("FEDERATION__DATABASE__MAX_CONNECTIONS", "0")
            .env("LOG_LEVEL", "info,,=="),
    );
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.is_empty());
    assert_contains(&err, "server.port");
    assert_contains(&err, "`FEDERATION_PORT`");
    // The port error stops only its own section: the rest is still checked.
    for path in [
        "database.max_connections",
        "auth.admin_keys",
        "heartbeat.degraded_after",
        "log.level",
    ] {
        assert!(err.contains(path), "{path} not reported:\n{err}");
    }
}

#[test]
fn check_config_locates_errors_in_the_projects_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("projects.yaml");
    std::fs::write(
        &file,
        "projects:\n  - project_slug: a\n    name: A\n    hub_url: http://a\n  - project_slug: a\n    name: B\n    hub_url: nope\n",
    )
    .unwrap();
    let (code, _, err) = output(
        federation(&["check-config"])
            .env("FEDERATION_API_KEYS", ADMIN_KEY)
            .env("FEDERATION__CATALOG__PROJECTS_FILE", &file),
    );
    assert_eq!(code, 2, "{err}");
    let name = file.display().to_string();
    assert_contains(
        &err,
        &format!("{name}:5:19: projects[1].project_slug: duplicate slug"),
    );
    assert_contains(&err, &format!("{name}:7:14: projects[1].hub_url:"));
}

#[test]
fn a_missing_config_file_named_on_the_command_line_is_an_error() {
    let (code, _, err) = output(
        federation(&["--config", "/nonexistent/federation.yaml", "check-config"])
            .env("FEDERATION_API_KEYS", ADMIN_KEY),
    );
    assert_eq!(code, 2);
    assert_contains(&err, "/nonexistent/federation.yaml");
}

#[tokio::test]
async fn migrate_applies_then_finds_nothing_to_do() {
    // Empty: `federation migrate` applies every migration itself.
    let db = TestDb::empty().await;
    let total = std::fs::read_dir(repo_path("migrations")).unwrap().count();
    for expected in [
        format!("applied {total} migration(s)"),
        "applied 0 migration(s)".to_owned(),
    ] {
        let (code, out, err) = output(
            federation(&["migrate"])
                .env("FEDERATION_API_KEYS", ADMIN_KEY)
                .env("DATABASE_URL", &db.url)
                .env("FEDERATION__NATS__ENABLED", "false"),
        );
        assert_eq!(code, 0, "{err}");
        assert_contains(&out, &expected);
    }
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&sqlx::PgPool::connect(&db.url).await.unwrap())
        .await
        .unwrap();
    assert!(n >= 2);
}

#[test]
fn serve_exits_1_when_the_database_never_answers() {
    let port = testkit::free_port();
    let (code, _, err) = output(
        federation(&["serve"])
            .env("FEDERATION_API_KEYS", ADMIN_KEY)
            .env(
                "DATABASE_URL",
                format!("postgres://u:pw-never-shown@127.0.0.1:{port}/x"),
            )
            .env("FEDERATION__DATABASE__STARTUP_TIMEOUT", "1s")
            .env("FEDERATION__NATS__ENABLED", "false")
            .env("FEDERATION_PORT", "0")
            .env("LOG_LEVEL", "info"),
    );
    assert_eq!(code, 1, "{err}");
    assert_contains(&err, "database unreachable");
    assert!(!err.contains("pw-never-shown"), "{err}");
}

pub async fn wait_ready(port: u16) {
    let url = format!("http://127.0.0.1:{port}/ready");
    testkit::wait_ok(&url, Duration::from_secs(30), "the service to be ready").await;
}

pub fn signal(pid: u32, sig: &str) {
    assert!(testkit::signal(pid, sig), "kill {sig} {pid}");
}

/// The real service as the NATS authority: `identity.dir` (initialised in
/// a temporary directory), an operator-mode nats-server, on 127.0.0.1,
/// logging at trace to a file; started and ready.
pub struct IdentityService {
    pub child: Child,
    pub base: String,
    pub log_path: std::path::PathBuf,
    pub _db: TestDb,
    pub nats: testkit::NatsServer,
    pub tmp: tempfile::TempDir,
}

impl IdentityService {
    pub async fn start() -> IdentityService {
        let tmp = tempfile::tempdir().unwrap();
        service::identity::init(tmp.path()).unwrap();
        let conf = tmp.path().join(service::identity::SERVER_CONF);
        let nats = testkit::NatsServer::start_with_config(&conf).await;
        let db = TestDb::create().await;
        let port = testkit::free_port();
        let log_path = tmp.path().join("service.log");
        let mut serve = serve(&db.url, port);
        serve
            .env("NATS_URL", nats.url())
            .env("FEDERATION__IDENTITY__DIR", tmp.path())
            .env("FEDERATION__SERVER__HOST", "127.0.0.1");
        let child = spawn_logged(serve, &log_path);
        wait_ready(port).await;
        IdentityService {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log_path,
            _db: db,
            nats,
            tmp,
        }
    }
}

/// Starts `cmd` logging at trace level to the file `log` (a file, not a
/// pipe: nobody reads a pipe until the end, and a full one would stall the
/// service's logging).
pub fn spawn_logged(mut cmd: Command, log: &std::path::Path) -> Child {
    let log_file = std::fs::File::create(log).unwrap();
    cmd.env("RUST_LOG", "trace")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .unwrap()
}

/// Stops a service that logs to the file `log` (SIGTERM), expecting a
/// clean exit; returns its log.
pub async fn stop_logged(child: Child, log: &std::path::Path) -> String {
    signal(child.id(), "-TERM");
    let mut child = child;
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    let logs = std::fs::read_to_string(log).unwrap();
    assert!(status.success(), "{status}: {logs}");
    logs
}

#[tokio::test]
async fn serve_logs_no_key_material_and_stops_cleanly_on_sigterm() {
    let env = [
        ("FEDERATION_AGENT_API_KEYS", AGENT_KEY),
        ("RUST_LOG", "debug"),
    ];
    let (_db, url, child) = serve_without_nats(&env).await;

    let client = reqwest::Client::new();
    let wrong = "wrong-key-that-must-not-be-logged";
    for key in [ADMIN_KEY, AGENT_KEY, wrong] {
        client
            .get(&url)
            .header("X-API-Key", key)
            .send()
            .await
            .unwrap();
        client
            .post(&url)
            .header("X-API-Key", key)
            .json(&project("alpha"))
            .send()
            .await
            .unwrap();
    }
    client
        .delete(format!("{url}/alpha"))
        .header("X-API-Key", AGENT_KEY)
        .send()
        .await
        .unwrap();

    let logs = stop_cleanly(child, "-TERM").await;
    for key in [ADMIN_KEY, AGENT_KEY, wrong] {
        assert!(!logs.contains(key), "a key appears in the logs");
    }
    assert!(
        logs.contains(&service::auth::fingerprint(wrong)),
        "the rejected key's fingerprint is logged"
    );
    assert_contains(&logs, "SIGTERM received");
    assert_contains(&logs, "stopped");
    // JSON lines when not on a terminal.
    let first = logs.lines().next().unwrap();
    assert!(
        serde_json::from_str::<serde_json::Value>(first).is_ok(),
        "{first}"
    );
}

#[tokio::test]
async fn serve_stops_cleanly_on_sigint() {
    let (_db, _, child) = serve_without_nats(&[]).await;
    stop_cleanly(child, "-INT").await;
}

#[tokio::test]
async fn nats_credentials_stay_out_of_trace_logs() {
    let nats =
        testkit::NatsServer::start_with_args(&["--user", "hub", "--pass", "tr4ce-s3cret"]).await;
    let nats_url = format!("nats://hub:tr4ce-s3cret@127.0.0.1:{}", nats.port());
    let (_db, _, child) = serve_ready(&[("NATS_URL", &nats_url), ("RUST_LOG", "trace")]).await;
    let logs = stop_cleanly(child, "-TERM").await;
    assert!(logs.contains("connected to NATS"), "never connected");
    assert!(
        !logs.contains("tr4ce-s3cret"),
        "the NATS password appears in the logs"
    );
}

#[tokio::test]
async fn a_flood_of_wrong_keys_logs_a_few_lines_not_one_each() {
    let (_db, url, child) = serve_without_nats(&[("LOG_LEVEL", "info")]).await;

    let client = reqwest::Client::new();
    let tries = 300;
    let started = std::time::Instant::now();
    for i in 0..tries {
        let res = client
            .get(&url)
            .header("X-API-Key", format!("guess-number-{i:06}-of-many"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "every wrong key is still refused");
    }

    let took = started.elapsed();
    let logs = stop_cleanly(child, "-TERM").await;
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("rejected unknown API key"))
        .collect();
    // One budget per window the flood spanned, however slow the machine.
    let windows =
        2 + (took.as_secs_f64() / service::api::auth::FAILURE_WINDOW.as_secs_f64()) as usize;
    assert!(
        !lines.is_empty() && lines.len() <= service::api::auth::FAILURE_LINES as usize * windows,
        "{} refusal lines for {tries} wrong keys:\n{}",
        lines.len(),
        lines.join("\n")
    );
    assert!(!logs.contains("guess-number-"), "a key appears in the logs");
}
