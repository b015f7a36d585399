//! A PostgreSQL server of a test's own, in a temporary directory on a free
//! port, for tests that restart or kill the database (the machine's shared
//! server must never be restarted under other tests).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{eventually, free_port};

pub struct PgServer {
    dir: tempfile::TempDir,
    port: u16,
    bin: PathBuf,
}

/// The directory of `initdb` and `pg_ctl`: `PG_BIN_DIR`, or the newest
/// Debian install under /usr/lib/postgresql.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!("no PostgreSQL server binaries (initdb) under /usr/lib/postgresql; set PG_BIN_DIR")
    })
}

/// PostgreSQL refuses to run as root: as root, run it as `postgres`.
fn as_server_user(program: &Path) -> Command {
    // The effective user, as `id -u` prints it.
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    if root {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn run(mut cmd: Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl PgServer {
    /// Initialises a cluster (trust authentication, user `postgres`, no
    /// fsync: a test's data need not survive the machine) and starts it.
    pub async fn start() -> PgServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let _ = Command::new("chown")
            .arg("postgres")
            .arg(dir.path())
            .status();
        let server = PgServer {
            dir,
            port: free_port(),
            bin: bin_dir(),
        };
        let mut init = as_server_user(&server.bin.join("initdb"));
        init.arg("-D")
            .arg(server.data())
            .args(["-A", "trust", "-U", "postgres", "--no-sync"]);
        run(init, "initdb");
        server.pg_ctl("start").await;
        server
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    async fn pg_ctl(&self, action: &str) {
        let mut cmd = as_server_user(&self.bin.join("pg_ctl"));
        cmd.arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("log"));
        match action {
            "start" | "restart" => {
                let options = format!(
                    "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
                    self.port,
                    self.dir.path().display()
                );
                cmd.args(["-o", &options]);
                if action == "restart" {
                    cmd.args(["-m", "fast"]);
                }
            }
            _ => {
                cmd.args(["-m", "immediate"]);
            }
        }
        cmd.args(["-w", action]);
        run(cmd, &format!("pg_ctl {action}"));
        if action != "stop" {
            let url = self.url("postgres");
            eventually(
                Duration::from_secs(30),
                "PostgreSQL to accept connections",
                || {
                    let url = url.clone();
                    async move {
                        use sqlx::Connection;
                        let conn = sqlx::PgConnection::connect(&url).await.ok()?;
                        let _ = conn.close().await;
                        Some(())
                    }
                },
            )
            .await;
        }
    }

    /// `postgres://postgres@127.0.0.1:PORT/db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates an empty database.
    pub async fn create_database(&self, name: &str) -> String {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.url("postgres"))
            .await
            .expect("connect to the test's own PostgreSQL");
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await
            .expect("CREATE DATABASE");
        let _ = conn.close().await;
        self.url(name)
    }

    /// Restarts the server (fast shutdown: every session is cut, as in a
    /// failover or an upgrade), returning once it accepts connections.
    pub async fn restart(&self) {
        self.pg_ctl("restart").await;
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let mut cmd = as_server_user(&self.bin.join("pg_ctl"));
        cmd.arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"]);
        let _ = cmd.output();
    }
}
