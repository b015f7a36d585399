//! Supervised workers: a background worker that fails while the service
//! serves is logged by name, shown by `/ready` and `worker_up`, and stops
//! the service non-zero (a panic injected by the test hook).

use std::process::Stdio;
use std::time::Duration;

use axum::extract::State;
use service::app::Application;
use testkit::TestDb;

use crate::helpers::*;
use crate::process::{federation, serve, stop_cleanly, wait_output, wait_ready};

#[tokio::test]
async fn a_worker_that_panics_makes_the_service_unready_and_stop_with_an_error() {
    init_test_log();
    let db = TestDb::create().await;
    let settings = settings_from_yaml(&settings_yaml(&db.url, ""));
    let mut app = Application::build(settings, Vec::new()).await.unwrap();
    app.inject_worker_panic("watch_tail", Duration::from_secs(3));
    let state = app.state().clone();
    let port = app.port();
    let handle = tokio::spawn(app.run_until_stopped());
    wait_ready(port).await;
    let metrics = state.metrics.encode();
    assert_contains(&metrics, "worker_up{worker=\"watch_tail\"} 1");
    assert_contains(&metrics, "worker_up{worker=\"database_monitor\"} 1");

    let result = tokio::time::timeout(Duration::from_secs(30), handle)
        .await
        .expect("the service stops by itself")
        .unwrap();
    let error = format!("{:#}", result.expect_err("stops with an error"));
    assert_contains(
        &error,
        "worker watch_tail panicked: injected failure (test)",
    );
    let metrics = state.metrics.encode();
    assert_contains(&metrics, "worker_up{worker=\"watch_tail\"} 0");
    let (code, report) = service::api::health::ready(State(state)).await;
    assert_eq!(code, 503);
    assert_eq!(
        report.reasons,
        ["stopping: worker watch_tail panicked: injected failure (test)"]
    );
}

#[tokio::test]
async fn serve_logs_the_failed_worker_by_name_and_exits_1() {
    let db = TestDb::create().await;
    let port = testkit::free_port();
    let child = serve(&db.url, port)
        .env("FEDERATION__NATS__ENABLED", "false")
        .env("FEDERATION__SERVER__HOST", "127.0.0.1")
        .env("FEDERATION_TEST_WORKER_PANIC", "catalog_follow@2000")
        .env("LOG_LEVEL", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_ready(port).await;
    let (out, logs) = wait_output(child).await;
    assert_eq!(out.status.code(), Some(1), "{logs}");
    let line = logs
        .lines()
        .find(|l| l.contains("background worker stopped while serving"))
        .unwrap_or_else(|| panic!("no failure line in\n{logs}"));
    let line: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(line["level"], "ERROR", "{line}");
    assert_eq!(line["worker"], "catalog_follow", "{line}");
    assert_contains(
        &logs,
        "error: worker catalog_follow panicked: injected failure (test)",
    );
}

/// `federation sync` runs the sync worker from the same components and
/// supervisor as `serve`: it leads, reconciles, and stops cleanly on SIGTERM.
#[tokio::test]
async fn federation_sync_runs_the_supervised_worker_until_sigterm() {
    let db = TestDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let tfvars = dir.path().join("hub.auto.tfvars");
    let child = federation(&["sync"])
        .env("FEDERATION_API_KEYS", ADMIN_KEY)
        .env("DATABASE_URL", &db.url)
        .env("FEDERATION__NATS__ENABLED", "false")
        .env("FEDERATION__SYNC__TFVARS__PATH", &tfvars)
        .env("LOG_LEVEL", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    testkit::eventually(Duration::from_secs(30), "the start-up run's tfvars", || {
        let exists = tfvars.exists();
        async move { exists.then_some(()) }
    })
    .await;
    let logs = stop_cleanly(child, "-TERM").await;
    assert_contains(&logs, "sync worker leading");
    assert_contains(&logs, "sync worker stopped");
    assert!(
        !logs.contains("background worker stopped while serving"),
        "{logs}"
    );
}
