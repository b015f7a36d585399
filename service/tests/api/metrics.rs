use crate::helpers::*;

async fn scrape(app: &TestApp) -> String {
    let res = app.get("/metrics", None).await;
    assert_eq!(res.status(), 200);
    let ct = content_type(&res).to_owned();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    res.text().await.unwrap()
}

#[tokio::test]
async fn the_documented_metric_names_are_exported() {
    let app = spawn_app().await;
    let text = scrape(&app).await;
    for name in [
        "catalog_projects_by_status",
        "catalog_projects_in_maintenance",
        "catalog_register_total",
        "catalog_lookup_total",
        "http_requests_total",
        "http_request_duration_seconds",
        "build_info",
    ] {
        let exported = text.lines().any(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with([' ', '{', '_']))
        });
        assert!(exported, "{name} missing:\n{text}");
    }
    assert_contains(
        &text,
        &format!("build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION")),
    );
    assert!(text.trim_end().ends_with("# EOF"));
}

#[tokio::test]
async fn counts_are_exact_and_routes_are_templates_not_slugs() {
    let app = spawn_app().await;
    for slug in ["alpha", "beta", "gamma"] {
        app.post_project(Some(ADMIN_KEY), &project(slug)).await;
    }
    app.sql(
        "UPDATE projects SET status = 'online', last_heartbeat_at = now() WHERE slug <> 'gamma'",
    )
    .await;
    app.get("/api/fed/projects/alpha", Some(ADMIN_KEY)).await;
    app.get("/api/fed/projects/beta", Some(ADMIN_KEY)).await;
    app.get("/api/fed/projects/nope", Some(ADMIN_KEY)).await;
    app.get("/no/such/route", None).await;

    let text = scrape(&app).await;
    for line in [
        "catalog_projects_by_status{status=\"online\"} 2",
        "catalog_projects_by_status{status=\"offline\"} 1",
        "catalog_projects_by_status{status=\"degraded\"} 0",
        "catalog_register_total 3",
        "catalog_lookup_total 2",
        "http_requests_total{method=\"GET\",route=\"/api/fed/projects/{slug}\",status=\"200\"} 2",
        "http_requests_total{method=\"GET\",route=\"/api/fed/projects/{slug}\",status=\"404\"} 1",
        "http_requests_total{method=\"POST\",route=\"/api/fed/projects\",status=\"201\"} 3",
        "http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"} 1",
    ] {
        assert!(text.contains(line), "missing {line}:\n{text}");
    }
    for slug in ["alpha", "beta", "gamma", "nope"] {
        assert!(
            !text.contains(&format!("\"{slug}\"")),
            "a label carries the slug {slug}"
        );
    }
}
