//! Test support: a throwaway PostgreSQL database per test, a private
//! `nats-server` on a free port, and waiting for a condition instead of
//! sleeping.
//!
//! The server is found from `TEST_DATABASE_URL`, else `DATABASE_URL`, else
//! `postgres://postgres@127.0.0.1:5432/postgres`. `nats-server` from
//! `NATS_SERVER_BIN`, else the `PATH`, else `/usr/sbin/nats-server`.

pub mod arbitrary;
pub mod keycloak;
pub mod proxy;

use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

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

/// A fresh, empty database, dropped (with any connections) when the value
/// is dropped.
pub struct TestDb {
    pub name: String,
    pub url: String,
    admin_url: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let admin_url = admin_database_url();
        let name = format!("fedtest_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {}: {e}", redact(&admin_url)));
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
        let _ = conn.close().await;
        TestDb {
            url: url_with_database(&admin_url, &name),
            name,
            admin_url,
        }
    }

    /// The name a database would have, without creating it (to test start-up
    /// against a database that appears later).
    pub fn reserve() -> TestDb {
        let admin_url = admin_database_url();
        let name = format!("fedtest_{}", uuid::Uuid::new_v4().simple());
        TestDb {
            url: url_with_database(&admin_url, &name),
            name,
            admin_url,
        }
    }

    /// Creates a reserved database.
    pub async fn materialize(&self) {
        let mut conn = PgConnection::connect(&self.admin_url)
            .await
            .expect("admin connection");
        sqlx::query(&format!("CREATE DATABASE \"{}\"", self.name))
            .execute(&mut conn)
            .await
            .expect("create database");
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

    #[test]
    fn credentials_are_redacted_in_messages() {
        assert_eq!(redact("postgres://u:p@h/db"), "postgres://h/db");
    }
}
