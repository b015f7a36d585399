//! The database out of reach, through a proxy in front of the real
//! PostgreSQL that the test cuts (connections closed, new ones refused) or
//! lets hang (nothing answered, as behind a dropped route). Liveness and
//! metrics answer, readiness says why not, and routes that need the
//! database answer 503 at once instead of each waiting for a connection.
//! The 2 s bound is a liveness check ("an answer arrives, not a hang"), far
//! above what is expected; the figures are in docs/benchmarks.md.

use std::time::Duration;

use serde_json::Value;
use testkit::proxy::{Line, TcpProxy};
use testkit::TestDb;

use crate::helpers::*;

const PROMPT: Duration = Duration::from_secs(2);
const WAIT: Duration = Duration::from_secs(20);

/// The service, reaching its database only through the proxy.
async fn spawn_behind_proxy() -> (TestApp, TcpProxy) {
    let db = TestDb::create().await;
    let proxy = TcpProxy::in_front_of(&db.url).await;
    let app = start_on(&proxy.url_through(&db.url), "", Vec::new())
        .await
        .ready(db)
        .await;
    (app, proxy)
}

/// A GET with the admin key, answered within the bound.
async fn prompt_get(app: &TestApp, path: &str, what: &str) -> reqwest::Response {
    let req = app.client.get(app.url(path)).header("X-API-Key", ADMIN_KEY);
    prompt(req, what).await
}

async fn wait_database(app: &TestApp, status: &'static str) {
    testkit::eventually(WAIT, status, || async {
        let body: Value = app.try_get_value("/health/db", None).await?;
        (body["status"] == status).then_some(())
    })
    .await;
}

/// Sends a request and insists on an answer within [`PROMPT`].
async fn prompt(req: reqwest::RequestBuilder, what: &str) -> reqwest::Response {
    tokio::time::timeout(PROMPT, req.send())
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {PROMPT:?}"))
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Every kind of route, with the database known to be down.
async fn everything_answers_promptly(app: &TestApp) {
    let c = &app.client;
    for path in ["/health", "/metrics", "/health/nats"] {
        let res = prompt(c.get(app.url(path)), path).await;
        assert_eq!(res.status(), 200, "{path}");
    }
    let res = prompt(c.get(app.url("/health/db")), "/health/db").await;
    assert_eq!(res.status(), 503);
    let res = prompt(c.get(app.url("/ready")), "/ready").await;
    assert_eq!(res.status(), 503);
    let ready: Value = res.json().await.unwrap();
    assert!(
        ready["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("database:"),
        "{ready}"
    );
    let keyed = [
        (c.get(app.url("/api/federation/spokes")), "GET spokes"),
        (
            c.post(app.url("/api/fed/projects")).json(&project("beta")),
            "POST project",
        ),
        (
            c.delete(app.url("/api/fed/projects/alpha")),
            "DELETE project",
        ),
        (c.get(app.url("/api/fed/watch")), "GET watch"),
        (c.get(app.url("/api/federation/drift")), "GET drift"),
    ];
    for (req, what) in keyed {
        let res = prompt(req.header("X-API-Key", ADMIN_KEY), what).await;
        assert_eq!(
            res.headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap()),
            Some("5"),
            "{what}"
        );
        let body = assert_problem(res, 503).await;
        assert!(detail_of(&body).contains("database"), "{what}: {body}");
    }
    let res = prompt(c.get(app.url("/api/idps/public")), "public IdPs").await;
    assert_problem(res, 503).await;
    // Credentials are checked before anything else, database or not.
    let res = prompt(
        c.get(app.url("/api/federation/spokes"))
            .header("X-API-Key", "a-wrong-key-0123456789"),
        "wrong key",
    )
    .await;
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn with_the_database_cut_off_every_route_answers_promptly() {
    let (app, proxy) = spawn_behind_proxy().await;
    app.create_project(&project("alpha")).await;
    let metrics = app.get_text("/metrics", None).await;
    assert_contains(&metrics, "catalog_projects_by_status{status=\"offline\"} 1");

    proxy.set(Line::Cut);
    wait_database(&app, "disconnected").await;
    everything_answers_promptly(&app).await;
    let metrics = app.get_text("/metrics", None).await;
    assert_contains(&metrics, "\ndatabase_up 0\n");
    // The gauges read from the database keep their last values.
    assert_contains(&metrics, "catalog_projects_by_status{status=\"offline\"} 1");

    proxy.set(Line::Open);
    testkit::eventually(WAIT, "ready again", || async {
        (app.get("/ready", None).await.status() == 200).then_some(())
    })
    .await;
    app.create_project(&project("beta")).await;
    let metrics = app.get_text("/metrics", None).await;
    assert_contains(&metrics, "\ndatabase_up 1\n");
}

#[tokio::test]
async fn with_the_database_hanging_metrics_answer_at_once_and_the_rest_once_noticed() {
    let (app, proxy) = spawn_behind_proxy().await;
    proxy.set(Line::Hang);
    // Before the service has noticed, a scrape waits on the database for
    // half a second at most, then serves the last values.
    let res = prompt(app.client.get(app.url("/metrics")), "/metrics").await;
    assert_eq!(res.status(), 200);
    // The check gives up on a silent database after a second (the first
    // failure may be the proxy closing the connection the check held).
    testkit::eventually(WAIT, "a check timing out", || async {
        let db: Value = app.try_get_value("/health/db", None).await?;
        db["error"].as_str()?.contains("no answer").then_some(())
    })
    .await;
    everything_answers_promptly(&app).await;
    proxy.set(Line::Open);
    wait_database(&app, "connected").await;
}

#[tokio::test]
async fn with_the_database_cut_off_catalog_reads_come_from_the_view() {
    let (app, proxy) = spawn_behind_proxy().await;
    app.create_projects(&["alpha", "beta"]).await;
    proxy.set(Line::Cut);
    wait_database(&app, "disconnected").await;
    let res = prompt_get(&app, "/api/fed/projects/alpha", "GET one project").await;
    assert_eq!(res.status(), 200);
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["slug"], "alpha");
    let res = prompt_get(&app, "/api/fed/projects?status=offline", "list projects").await;
    assert_eq!(res.status(), 200);
    let list: Value = res.json().await.unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    // What the view does not have needs the database: 503 at once, not a
    // 404 (it may exist) and not a wait.
    let res = prompt_get(
        &app,
        "/api/fed/projects/gamma",
        "GET a project the view lacks",
    )
    .await;
    assert_problem(res, 503).await;
    proxy.set(Line::Open);
    wait_database(&app, "connected").await;
}
