use std::time::Duration;

use serde_json::Value;
use service::app::Application;
use testkit::TestDb;

use crate::helpers::*;

#[tokio::test]
async fn liveness_needs_nothing_and_says_healthy() {
    let app = spawn_app().await;
    let body = app.get_ok("/health", None).await;
    assert_eq!(body["status"], "healthy");
    assert!(body["timestamp"].is_string());
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_a_given_one_is_kept() {
    let app = spawn_app().await;
    let a = app.get("/health", None).await;
    let b = app.get("/health", None).await;
    let id = |r: &reqwest::Response| {
        r.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .expect("an x-request-id header")
    };
    let (a, b) = (id(&a), id(&b));
    assert!(uuid::Uuid::parse_str(&a).is_ok(), "{a}");
    assert_ne!(a, b, "each request gets its own id");
    let res = app
        .client
        .get(format!("{}/health", app.base))
        .header("x-request-id", "caller-chosen-id-42")
        .send()
        .await
        .unwrap();
    assert_eq!(id(&res), "caller-chosen-id-42");
}

#[tokio::test]
async fn database_health_reports_connected() {
    let app = spawn_app().await;
    let body = app.get_ok("/health/db", None).await;
    assert_eq!(body["status"], "connected");
    assert!(body["latency_ms"].as_f64().unwrap() >= 0.0);
}

#[tokio::test]
async fn ready_is_503_until_the_database_exists_then_200() {
    // The database does not exist yet: start-up keeps retrying.
    let db = TestDb::reserve();
    let app = start_on(&db.url, "", Vec::new()).await;
    let base = app.base.clone();
    let client = reqwest::Client::new();

    // Liveness answers at once; readiness says why not.
    let res = client.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = client.get(format!("{base}/ready")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "not_ready");
    let reasons = body["reasons"].as_array().unwrap();
    assert!(!reasons.is_empty());
    assert!(
        reasons[0].as_str().unwrap().starts_with("startup:"),
        "{body}"
    );
    let res = client
        .get(format!("{base}/health/db"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);

    // The database appears: start-up connects, migrates, and the service is ready.
    db.materialize().await;
    testkit::wait_ok(
        &format!("{base}/ready"),
        Duration::from_secs(30),
        "/ready to turn 200",
    )
    .await;
    let body: Value = json_of(client.get(format!("{base}/ready"))).await;
    assert_eq!(body["status"], "ready");
    assert_eq!(body["reasons"], serde_json::json!([]));

    app.stop().await;
    drop(db);
}

#[tokio::test]
async fn ready_reports_pending_migrations() {
    let app = spawn_app().await;
    // Pretend a migration was never applied.
    app.sql(
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations)",
    )
    .await;
    // Seen at the next database check, within about a second.
    let body = testkit::eventually(Duration::from_secs(10), "/ready to see it", || async {
        let res = app.get("/ready", None).await;
        let status = res.status();
        let body: Value = res.json().await.ok()?;
        (status == 503).then_some(body)
    })
    .await;
    assert_eq!(body["reasons"][0], "migrations: 1 pending", "{body}");
}

#[tokio::test]
async fn start_up_gives_up_after_its_timeout_with_a_clear_error() {
    init_test_log();
    let port = testkit::free_port();
    let url = format!("postgres://postgres:hunter2-secret@127.0.0.1:{port}/nothing");
    let settings = settings_from_yaml(
        &settings_yaml(&url, "").replace("startup_timeout: 30s", "startup_timeout: 1s"),
    );
    let app = Application::build(settings, Vec::new()).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(20), app.run_until_stopped())
        .await
        .expect("start-up must give up")
        .unwrap_err();
    let text = format!("{err:#}");
    assert_contains(&text, "database unreachable");
    assert!(!text.contains("hunter2"), "{text}");
}

#[tokio::test]
async fn no_credentials_in_health_answers() {
    let app = spawn_app().await;
    for path in ["/health", "/health/db", "/health/nats", "/ready"] {
        let text = app.get_text(path, None).await;
        assert!(!text.contains("postgres://"), "{path}: {text}");
        assert!(!text.contains(ADMIN_KEY), "{path}: {text}");
    }
}
