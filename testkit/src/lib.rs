//! Test support: a throwaway PostgreSQL database per test (copied from a
//! template migrated once per set of migrations), a private
//! `nats-server` on a free port, waiting for a condition (or a URL answering
//! 200) instead of sleeping, and child processes started with a clean
//! environment and stopped by signal.
//!
//! The server is found from `TEST_DATABASE_URL`, else `DATABASE_URL`, else
//! `postgres://postgres@127.0.0.1:5432/postgres`. `nats-server` from
//! `NATS_SERVER_BIN`, else the `PATH`, else `/usr/sbin/nats-server`.

pub mod arbitrary;
pub mod keycloak;
pub mod oidc;
pub mod pg;
pub mod proxy;

pub use pg::PgServer;

use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::migrate::Migrator;
use sqlx::{Connection, PgConnection};
use tokio::process::{Child, Command};

/// The server tests create their databases on.
pub fn admin_database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The same server, another database.
pub fn url_with_database(base: &str, db: &str) -> String {
    let (without_query, query) = match base.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (base, None),
    };
    let scheme_end = without_query.find("://").map_or(0, |i| i + 3);
    let root = match without_query[scheme_end..].find('/') {
        Some(i) => &without_query[..scheme_end + i],
        None => without_query,
    };
    match query {
        Some(q) => format!("{root}/{db}?{q}"),
        None => format!("{root}/{db}"),
    }
}

/// The schema, embedded at build time from `migrations/` as the service
/// embeds it (`build.rs` rebuilds this crate when a migration changes).
static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// Names of the databases tests get: `fedtest_<uuid>`.
const TEST_DB_PREFIX: &str = "fedtest_";

/// The advisory lock (held on the admin database) under which a template is
/// looked for and, when absent, built: concurrent test processes (nextest
/// runs each test in its own) build it once and never see it half-built.
const TEMPLATE_LOCK: i64 = 0x6665_6474_6d70_6c00; // "fedtmpl\0"

/// The template database of this set of migrations: `fedtest_tmpl_` and 16
/// hex digits of a SHA-256 over every migration's version, description and
/// checksum, so a changed or added migration gets a template of its own
/// while an unchanged set reuses the one an earlier run built.
pub fn template_name() -> String {
    let mut hasher = Sha256::new();
    for m in MIGRATOR.iter() {
        hasher.update(m.version.to_be_bytes());
        hasher.update(m.description.as_bytes());
        hasher.update([0]);
        hasher.update(&*m.checksum);
    }
    let digest = hasher.finalize();
    format!("{TEST_DB_PREFIX}tmpl_{}", hex::encode(&digest[..8]))
}

/// Makes sure the migrated template exists on the server at `admin_url`
/// and returns its name. Once per process; across processes the advisory
/// lock makes the first one build it and the others wait, then find it.
async fn ensure_template(admin_url: &str) -> String {
    static READY: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    READY
        .get_or_init(|| async {
            let name = template_name();
            let mut conn = PgConnection::connect(admin_url).await.unwrap_or_else(|e| {
                panic!("cannot reach PostgreSQL at {}: {e}", redact(admin_url))
            });
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(TEMPLATE_LOCK)
                .execute(&mut conn)
                .await
                .expect("take the template lock");
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                    .bind(&name)
                    .fetch_one(&mut conn)
                    .await
                    .expect("look for the template database");
            if !exists {
                build_template(&mut conn, admin_url, &name).await;
            }
            let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(TEMPLATE_LOCK)
                .execute(&mut conn)
                .await;
            let _ = conn.close().await;
            name
        })
        .await
        .clone()
}

/// Builds the template under a scratch name and renames it only once it is
/// fully migrated: a process killed half-way leaves the scratch database
/// (dropped by the next attempt), never a half-migrated template. The
/// template refuses connections, since `CREATE DATABASE .. TEMPLATE` fails
/// while anyone is connected to it.
async fn build_template(admin: &mut PgConnection, admin_url: &str, name: &str) {
    let scratch = format!("{name}_building");
    execute_all(
        admin,
        [
            format!("DROP DATABASE IF EXISTS \"{scratch}\" WITH (FORCE)"),
            format!("CREATE DATABASE \"{scratch}\""),
        ],
    )
    .await;
    let mut conn = PgConnection::connect(&url_with_database(admin_url, &scratch))
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {scratch}: {e}"));
    MIGRATOR
        .run(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("migrating the template database {scratch}: {e}"));
    let _ = conn.close().await;
    execute_all(
        admin,
        [
            format!("ALTER DATABASE \"{scratch}\" RENAME TO \"{name}\""),
            format!("ALTER DATABASE \"{name}\" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"),
        ],
    )
    .await;
}

/// Runs each statement in turn on `admin`; a failure panics naming it.
async fn execute_all(admin: &mut PgConnection, statements: impl IntoIterator<Item = String>) {
    for statement in statements {
        sqlx::query(&statement)
            .execute(&mut *admin)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
}

/// A database of a test's own, dropped (with any connections) when the
/// value is dropped. [`TestDb::create`] gives one with the schema already
/// migrated, copied from a template migrated once; [`TestDb::empty`] one
/// with nothing in it.
pub struct TestDb {
    pub name: String,
    pub url: String,
    admin_url: String,
}

impl TestDb {
    /// A database with every migration applied, copied from the template
    /// (built first if this set of migrations has none yet). Running the
    /// migrations again on it, as the service does at start, finds nothing
    /// to do.
    pub async fn create() -> TestDb {
        let admin_url = admin_database_url();
        let template = ensure_template(&admin_url).await;
        let db = TestDb::reserve();
        db.create_database(Some(&template)).await;
        db
    }

    /// An empty database (no schema, no migrations applied), for tests of
    /// what the service does to a database it migrates itself.
    pub async fn empty() -> TestDb {
        let db = TestDb::reserve();
        db.create_database(None).await;
        db
    }

    /// The name a database would have, without creating it (to test start-up
    /// against a database that appears later).
    pub fn reserve() -> TestDb {
        let admin_url = admin_database_url();
        let name = format!("{TEST_DB_PREFIX}{}", uuid::Uuid::new_v4().simple());
        TestDb {
            url: url_with_database(&admin_url, &name),
            name,
            admin_url,
        }
    }

    /// Creates a reserved database, empty.
    pub async fn materialize(&self) {
        self.create_database(None).await;
    }

    async fn create_database(&self, template: Option<&str>) {
        let mut conn = PgConnection::connect(&self.admin_url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot reach PostgreSQL at {}: {e}",
                    redact(&self.admin_url)
                )
            });
        let statement = match template {
            Some(t) => format!("CREATE DATABASE \"{}\" TEMPLATE \"{t}\"", self.name),
            None => format!("CREATE DATABASE \"{}\"", self.name),
        };
        sqlx::query(&statement)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
        let _ = conn.close().await;
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs outside async; use a short-lived runtime on its own thread.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = PgConnection::connect(&admin_url).await {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                            .execute(&mut conn)
                            .await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}{}", &url[..s + 3], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Polls `check` every 20 ms until it yields `Some`, or panics after
/// `timeout` naming `what` was awaited.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `program` with a clean environment (only `PATH`), run from the
/// temporary directory: it sees only what the caller sets.
pub fn clean_command(program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
    let mut cmd = std::process::Command::new(program);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(std::env::temp_dir());
    cmd
}

/// Sends `sig` (as `kill` takes it: `-TERM`) to the process `pid`; whether
/// `kill` succeeded.
pub fn signal(pid: u32, sig: &str) -> bool {
    std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

/// Waits until `GET url` answers 200 (a service's `/ready`), or panics
/// after `timeout` naming `what` was awaited.
pub async fn wait_ok(url: &str, timeout: Duration, what: &str) {
    let client = reqwest::Client::new();
    eventually(timeout, what, || {
        let request = client.get(url).send();
        async move { (request.await.ok()?.status() == 200).then_some(()) }
    })
    .await;
}

/// The `nats-server` binary.
pub fn nats_server_bin() -> PathBuf {
    if let Ok(p) = std::env::var("NATS_SERVER_BIN") {
        return PathBuf::from(p);
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("nats-server");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from("/usr/sbin/nats-server")
}

/// A private `nats-server` with JetStream, on a free port, killed on drop.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    store: tempfile::TempDir,
    extra_args: Vec<String>,
    /// Started from this configuration file (no `-js -sd` of its own).
    config: Option<PathBuf>,
}

impl NatsServer {
    pub async fn start() -> NatsServer {
        Self::start_with_args(&[]).await
    }

    /// On a given port (one a client already tries to reach).
    pub async fn start_on_port(port: u16) -> NatsServer {
        let mut server = NatsServer {
            child: None,
            port,
            store: tempfile::tempdir().expect("temp dir"),
            extra_args: Vec::new(),
            config: None,
        };
        server.spawn().await;
        server
    }

    /// From a configuration file (e.g. the operator-mode one `federation
    /// nats-init` writes), on a free port on 127.0.0.1; JetStream and its
    /// store are as the file says.
    pub async fn start_with_config(config: &std::path::Path) -> NatsServer {
        let mut server = NatsServer {
            child: None,
            port: free_port(),
            store: tempfile::tempdir().expect("temp dir"),
            extra_args: Vec::new(),
            config: Some(config.to_owned()),
        };
        server.spawn().await;
        server
    }

    /// With extra command-line arguments (e.g. `--config FILE`).
    pub async fn start_with_args(args: &[&str]) -> NatsServer {
        let mut server = NatsServer {
            child: None,
            port: free_port(),
            store: tempfile::tempdir().expect("temp dir"),
            extra_args: args.iter().map(|s| s.to_string()).collect(),
            config: None,
        };
        server.spawn().await;
        server
    }

    async fn spawn(&mut self) {
        let mut command = Command::new(nats_server_bin());
        match &self.config {
            Some(config) => {
                command.arg("-c").arg(config);
            }
            None => {
                command.arg("-js").arg("-sd").arg(self.store.path());
            }
        }
        let child = command
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", nats_server_bin().display()));
        self.child = Some(child);
        let port = self.port;
        eventually(
            Duration::from_secs(10),
            "nats-server to accept connections",
            || async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .ok()
                    .map(|_| ())
            },
        )
        .await;
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL), keeping its JetStream store.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts it again on the same port with the same store.
    pub async fn restart(&mut self) {
        self.kill().await;
        self.spawn().await;
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

/// A cluster of nats-servers on 127.0.0.1, every node with JetStream and its
/// own store, routed to every other: what a production deployment runs
/// (three nodes, so a stream with three replicas survives losing one).
pub struct NatsCluster {
    nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// `size` nodes named `n0`.. in cluster `federation-test`; returns once
    /// every node accepts clients (JetStream's meta leader may still be
    /// being elected: a client's first stream request waits or retries).
    pub async fn start(size: usize) -> NatsCluster {
        assert!(size >= 1, "a cluster has at least one node");
        let cluster_ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let routes = cluster_ports
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes = Vec::with_capacity(size);
        for (i, cluster_port) in cluster_ports.iter().enumerate() {
            let mut node = NatsServer {
                child: None,
                port: free_port(),
                store: tempfile::tempdir().expect("temp dir"),
                extra_args: vec![
                    format!("--server_name=n{i}"),
                    "--cluster_name=federation-test".into(),
                    format!("--cluster=nats://127.0.0.1:{cluster_port}"),
                    format!("--routes={routes}"),
                ],
                config: None,
            };
            node.spawn().await;
            nodes.push(node);
        }
        NatsCluster { nodes }
    }

    /// Every node's client URL, comma-separated (the form `nats.url` takes).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn node(&self, i: usize) -> &NatsServer {
        &self.nodes[i]
    }

    /// To kill (SIGKILL, the store kept) and restart one node.
    pub fn node_mut(&mut self, i: usize) -> &mut NatsServer {
        &mut self.nodes[i]
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_are_retargeted() {
        assert_eq!(
            url_with_database("postgres://u:p@h:5432/postgres", "x"),
            "postgres://u:p@h:5432/x"
        );
        assert_eq!(url_with_database("postgres://h", "x"), "postgres://h/x");
        assert_eq!(
            url_with_database("postgres://h/db?sslmode=disable", "x"),
            "postgres://h/x?sslmode=disable"
        );
    }

    #[tokio::test]
    async fn a_created_database_is_migrated_an_empty_one_is_not_and_both_are_dropped() {
        let (created, empty) = tokio::join!(TestDb::create(), TestDb::empty());
        // What `count` (a query) finds in the database at `url`.
        let count_in = |url: String, count: &'static str| async move {
            let mut conn = PgConnection::connect(&url).await.unwrap();
            let n: i64 = sqlx::query_scalar(count)
                .fetch_one(&mut conn)
                .await
                .unwrap();
            conn.close().await.unwrap();
            n
        };
        let applied = "SELECT count(*) FROM _sqlx_migrations WHERE success";
        assert_eq!(
            count_in(created.url.clone(), applied).await,
            MIGRATOR.iter().count() as i64
        );
        let tables = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'";
        assert_eq!(count_in(empty.url.clone(), tables).await, 0);

        let names = [created.name.clone(), empty.name.clone()];
        drop((created, empty));
        let mut admin = PgConnection::connect(&admin_database_url()).await.unwrap();
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = ANY($1)")
                .bind(&names[..])
                .fetch_one(&mut admin)
                .await
                .unwrap();
        assert_eq!(left, 0, "{names:?} not dropped");
        let template: bool = sqlx::query_scalar(
            "SELECT datistemplate AND NOT datallowconn FROM pg_database WHERE datname = $1",
        )
        .bind(template_name())
        .fetch_one(&mut admin)
        .await
        .unwrap();
        assert!(
            template,
            "the template is marked as one and refuses connections"
        );
    }

    #[test]
    fn the_template_is_named_by_the_migrations() {
        let name = template_name();
        assert_eq!(name, template_name());
        assert!(name.starts_with("fedtest_tmpl_"), "{name}");
        assert_eq!(name.len(), "fedtest_tmpl_".len() + 16, "{name}");
        assert!(MIGRATOR.iter().count() > 0);
    }

    #[test]
    fn credentials_are_redacted_in_messages() {
        assert_eq!(redact("postgres://u:p@h/db"), "postgres://h/db");
    }
}
