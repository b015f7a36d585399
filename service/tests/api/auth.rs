use serde_json::Value;

use crate::helpers::*;

/// Every documented operation under /api, with a concrete path.
async fn api_operations(app: &TestApp) -> Vec<(String, String, bool)> {
    let doc: Value = app.get_value("/openapi.json", None).await;
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let needs_key = op.get("security").is_some();
            let concrete = path
                .replace("{slug}", "alpha")
                .replace("{id}", "spoke-fra-00000000");
            ops.push((method.to_uppercase(), concrete, needs_key));
        }
    }
    ops
}

#[tokio::test]
async fn every_keyed_route_answers_401_without_a_key_and_403_with_a_wrong_one() {
    let app = spawn_app().await;
    let ops = api_operations(&app).await;
    let keyed: Vec<_> = ops.iter().filter(|o| o.2).collect();
    assert!(keyed.len() >= 5, "{ops:?}");
    // Every /api route is keyed, unless documented as public.
    let public = ["/api/idps/public", "/api/fed/enroll"];
    for (method, path, needs_key) in &ops {
        if path.starts_with("/api/") && !public.contains(&path.as_str()) {
            assert!(
                needs_key,
                "{method} {path} is under /api but documents no key"
            );
        }
    }
    assert!(
        ops.iter()
            .any(|(m, p, key)| m == "POST" && p == "/api/fed/enroll" && !key),
        "enrollment is public"
    );
    for (method, path, _) in keyed {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let res = app.send_raw(m.clone(), path, None, JSON_BODY).await;
        let www = res.headers().get("www-authenticate").cloned();
        let body = assert_problem(res, 401).await;
        assert!(www.is_some(), "{method} {path}: no WWW-Authenticate");
        assert!(www.unwrap().to_str().unwrap().contains("X-API-Key"));
        assert!(detail_of(&body).contains("X-API-Key"));

        let wrong = Some("not-a-key-not-a-key-not-a-key");
        let res = app.send_raw(m, path, wrong, JSON_BODY).await;
        assert_problem(res, 403).await;
    }
}

#[tokio::test]
async fn both_rotated_admin_keys_work() {
    let app = spawn_app().await;
    for key in [ADMIN_KEY, ADMIN_KEY_2] {
        assert_eq!(app.get_status("/api/fed/projects", Some(key)).await, 200);
    }
}

#[tokio::test]
async fn agent_keys_register_and_read_but_never_delete() {
    let app = spawn_app().await;
    let res = app.post_project(Some(AGENT_KEY), &project("alpha")).await;
    assert_eq!(res.status(), 201);
    assert_eq!(
        app.get_status("/api/fed/projects/alpha", Some(AGENT_KEY))
            .await,
        200
    );
    assert_eq!(
        app.get_status("/api/fed/projects", Some(AGENT_KEY)).await,
        200
    );
    let mut body = project("alpha");
    body["name"] = "Renamed".into();
    assert_eq!(
        app.put_json("/api/fed/projects/alpha", Some(AGENT_KEY), &body)
            .await
            .status(),
        200
    );

    let body = assert_problem(
        app.delete("/api/fed/projects/alpha", Some(AGENT_KEY)).await,
        403,
    )
    .await;
    assert!(detail_of(&body).contains("admin"), "{body}");
    // Still there.
    assert_eq!(
        app.get_status("/api/fed/projects/alpha", Some(AGENT_KEY))
            .await,
        200
    );
    assert_eq!(
        app.delete_status("/api/fed/projects/alpha", Some(ADMIN_KEY))
            .await,
        204
    );
}

#[tokio::test]
async fn public_routes_need_no_key() {
    let app = spawn_app().await;
    for path in [
        "/health",
        "/health/db",
        "/health/nats",
        "/ready",
        "/metrics",
        "/openapi.json",
    ] {
        assert_eq!(app.get_status(path, None).await, 200, "{path}");
    }
}
