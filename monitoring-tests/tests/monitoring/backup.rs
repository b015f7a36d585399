//! The backup and restore procedure of docs/operations.md, run for real:
//! `pg_dump --format=custom --no-owner` of a live catalog, restored with
//! `pg_restore --no-owner` into an empty database and with `--clean
//! --if-exists` over a changed one, and the service started on each.

use std::path::Path;
use std::process::Command;

use sqlx::{Connection, PgConnection};
use testkit::TestDb;

use crate::running::RunningService;
use crate::support::*;

fn pg_tool(name: &str) -> std::path::PathBuf {
    let var = format!("{}_BIN", name.to_ascii_uppercase());
    tool(name, &var)
}

/// As docs/operations.md does it: the dump on standard output.
fn dump(db: &TestDb, file: &Path) {
    let out = std::fs::File::create(file).expect("dump file");
    run_ok(
        Command::new(pg_tool("pg_dump"))
            .args(["--format=custom", "--no-owner"])
            .arg(format!("--dbname={}", db.url))
            .stdout(out),
    );
}

/// As docs/operations.md does it: the dump on standard input.
fn restore(db: &TestDb, file: &Path, clean: bool) {
    let input = std::fs::File::open(file).expect("dump file");
    let mut cmd = Command::new(pg_tool("pg_restore"));
    cmd.arg("--no-owner").arg("--exit-on-error");
    if clean {
        cmd.args(["--clean", "--if-exists"]);
    }
    run_ok(cmd.arg(format!("--dbname={}", db.url)).stdin(input));
}

#[tokio::test]
async fn a_pg_dump_restores_the_catalog_into_an_empty_and_into_a_changed_database() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("federation.dump");

    let service = RunningService::start(TestDb::create().await).await;
    service.demo_traffic().await;
    assert_eq!(service.slugs().await, ["alpha", "beta"]);
    // Online backup: the service keeps running while it is taken.
    dump(service.db(), &file);
    let original = service.stop().await;

    // Disaster recovery: a new, empty database.
    let fresh = TestDb::empty().await;
    restore(&fresh, &file, false);
    let service = RunningService::start(fresh).await;
    assert_eq!(service.slugs().await, ["alpha", "beta"]);
    drop(service.stop().await);

    // Rollback: the same database after a change, service stopped.
    let mut conn = PgConnection::connect(&original.url).await.expect("connect");
    sqlx::query("DELETE FROM projects WHERE slug = 'beta'")
        .execute(&mut conn)
        .await
        .expect("delete");
    conn.close().await.expect("close");
    restore(&original, &file, true);
    let service = RunningService::start(original).await;
    assert_eq!(service.slugs().await, ["alpha", "beta"]);
    drop(service.stop().await);
}
