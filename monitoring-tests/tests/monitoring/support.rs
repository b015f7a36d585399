//! Shared by the monitoring tests: repository files, the external tools
//! (found the way scripts/test exports them), and running them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

/// A path inside the repository.
pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// A binary of the workspace, built first (`cargo build -p PACKAGE --bin
/// BIN`, with this test's profile; nothing to do when it is up to date, and
/// cargo's lock makes concurrent test processes wait for one build) so the
/// test never runs a stale or missing binary. scripts/test builds both
/// beforehand, so here it only checks.
fn workspace_bin(package: &str, bin: &str) -> PathBuf {
    let mut build = escargot::CargoBuild::new()
        .manifest_path(repo_path("Cargo.toml"))
        .package(package)
        .bin(bin)
        .current_release();
    // What cargo or nextest set for this test process only: build scripts
    // that watch such a variable (ring watches CARGO_MANIFEST_DIR) would run
    // again and rebuild half the tree, the build being fresh for the
    // environment scripts/test built it in.
    for (key, _) in std::env::vars_os() {
        let Some(k) = key.to_str() else { continue };
        if k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_MANIFEST_")
            || k.starts_with("CARGO_BIN_EXE_")
            || k.starts_with("NEXTEST")
            || k.starts_with("__NEXTEST")
            || [
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
                "OUT_DIR",
            ]
            .contains(&k)
        {
            build = build.env_remove(k);
        }
    }
    let built = build.run().unwrap_or_else(|e| {
        panic!("cannot build {bin} (cargo build -p {package} --bin {bin}): {e}")
    });
    built.path().to_owned()
}

/// The service's binary, `federation`.
pub fn federation_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| workspace_bin("service", "federation"))
}

/// The sidecar's binary, `hub-agent`.
pub fn hub_agent_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| workspace_bin("hub-agent", "hub-agent"))
}

pub fn repo_root() -> PathBuf {
    repo_path(".")
        .canonicalize()
        .expect("the repository root exists")
}

pub fn read(rel: &str) -> String {
    std::fs::read_to_string(repo_path(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

/// A YAML document as JSON values (maps, lists, strings, numbers).
pub fn yaml(text: &str, what: &str) -> Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{what} is not valid YAML: {e}"))
}

pub fn read_yaml(rel: &str) -> Value {
    yaml(&read(rel), rel)
}

pub fn read_json(rel: &str) -> Value {
    serde_json::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not valid JSON: {e}"))
}

/// Files directly in a repository folder whose name ends with `suffix`,
/// sorted, as repository-relative paths.
pub fn files_in(dir: &str, suffix: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(repo_path(dir))
        .unwrap_or_else(|e| panic!("cannot list {dir}: {e}"))
        .map(|e| {
            e.expect("directory entry")
                .file_name()
                .into_string()
                .expect("UTF-8 name")
        })
        .filter(|n| n.ends_with(suffix))
        .map(|n| format!("{dir}/{n}"))
        .collect();
    out.sort();
    out
}

/// An external tool the monitoring tests run. scripts/test installs it and
/// exports `env_var`; otherwise it is looked up on the PATH. A missing tool
/// fails the test: it is never skipped.
pub fn tool(name: &str, env_var: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env_var).map(PathBuf::from) {
        assert!(
            p.is_file(),
            "{env_var}={} does not exist; run scripts/test, which installs {name}",
            p.display()
        );
        return p;
    }
    if let Some(p) = on_path(name) {
        return p;
    }
    panic!(
        "{name} is not installed. Run the tests through scripts/test, which installs it \
         (apt-get install {}), or set {env_var} to its path.",
        package_of(name)
    );
}

fn on_path(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn package_of(tool: &str) -> &'static str {
    match tool {
        "prometheus" | "promtool" => "prometheus",
        "amtool" | "prometheus-alertmanager" | "alertmanager" => "prometheus-alertmanager",
        "docker-compose" => "docker-compose",
        "pg_dump" | "pg_restore" => "postgresql-client",
        _ => "?",
    }
}

pub fn promtool() -> PathBuf {
    tool("promtool", "PROMTOOL_BIN")
}

pub fn amtool() -> PathBuf {
    tool("amtool", "AMTOOL_BIN")
}

/// Debian names the server `prometheus-alertmanager`, upstream `alertmanager`.
pub fn alertmanager() -> PathBuf {
    if std::env::var_os("ALERTMANAGER_BIN").is_none() {
        if let Some(p) = on_path("prometheus-alertmanager") {
            return p;
        }
    }
    tool("alertmanager", "ALERTMANAGER_BIN")
}

pub fn prometheus() -> PathBuf {
    tool("prometheus", "PROMETHEUS_BIN")
}

pub fn docker_compose() -> PathBuf {
    tool("docker-compose", "DOCKER_COMPOSE_BIN")
}

/// Runs a command to completion, capturing its output.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Standard output and error of a finished command, for failure messages.
pub fn describe(output: &Output) -> String {
    format!(
        "exit: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Asserts that a command exited successfully; if not, `what` and its
/// output say why.
pub fn assert_succeeded(output: &Output, what: impl std::fmt::Display) {
    assert!(output.status.success(), "{what}\n{}", describe(output));
}

/// Runs a command and fails the test unless it succeeds.
pub fn run_ok(cmd: &mut Command) -> Output {
    let output = run(cmd);
    assert_succeeded(&output, format_args!("{cmd:?} failed"));
    output
}

/// A string field of a JSON object, or "".
pub fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// A list field of a JSON object, or an empty slice.
pub fn list_of<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// A server a test started on 127.0.0.1, killed when dropped; when the test
/// fails, the last lines of its log say why.
pub struct Server {
    pub base: String,
    name: &'static str,
    log: PathBuf,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts `cmd` (`name`), which listens on `port`, its output in
    /// `{name}.log` in `dir` (kept as long as the server), and waits until
    /// `ready_path` answers 200 within `limit`.
    pub async fn start(
        name: &'static str,
        mut cmd: tokio::process::Command,
        (dir, port): (tempfile::TempDir, u16),
        ready_path: &str,
        limit: Duration,
    ) -> Server {
        let log = dir.path().join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = cmd
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let server = Server {
            base: format!("http://127.0.0.1:{port}"),
            name,
            log,
            _child: child,
            _dir: dir,
        };
        let ready = format!("{}{ready_path}", server.base);
        testkit::wait_ok(&ready, limit, &format!("{name} to be ready")).await;
        server
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let log = self.log_tail();
        if std::thread::panicking() && !log.trim().is_empty() {
            eprintln!("--- {} log (last lines) ---\n{log}", self.name);
        }
    }
}

/// Registers the project `slug` with the service at `base`, using `key`;
/// the fields of `more` (an object) join its name, hub URL and namespace.
pub async fn register_project(base: &str, key: &str, slug: &str, more: Value) {
    let mut body = serde_json::json!({
        "project_slug": slug,
        "name": format!("Project {slug}"),
        "hub_url": format!("http://{slug}.example:9001"),
        "mesh_namespace": format!("hub.{slug}"),
    });
    if let (Some(body), Value::Object(more)) = (body.as_object_mut(), more) {
        body.extend(more);
    }
    let res = reqwest::Client::new()
        .post(format!("{base}/api/fed/projects"))
        .header("X-API-Key", key)
        .json(&body)
        .send()
        .await
        .expect("register");
    assert!(
        res.status().is_success(),
        "register {slug}: {}",
        res.status()
    );
}
