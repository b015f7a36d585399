use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn the_document_covers_every_route_with_its_errors() {
    let app = spawn_app().await;
    let doc: Value = app.get("/openapi.json", None).await.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/health", "get"),
        ("/health/db", "get"),
        ("/health/nats", "get"),
        ("/ready", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
        ("/api/fed/projects", "get"),
        ("/api/fed/projects", "post"),
        ("/api/fed/projects/{slug}", "get"),
        ("/api/fed/projects/{slug}", "put"),
        ("/api/fed/projects/{slug}", "delete"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} undocumented"
        );
    }
    // Keyed routes document 401, 403 and their problem body.
    let post = &paths["/api/fed/projects"]["post"];
    for code in ["201", "200", "400", "401", "403", "413", "415", "422"] {
        assert!(post["responses"].get(code).is_some(), "POST lacks {code}");
    }
    assert!(post["responses"]["422"]["content"]["application/problem+json"].is_object());
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for s in [
        "Project",
        "ProjectInput",
        "ProjectUpdate",
        "Problem",
        "FieldError",
        "ProjectStatus",
    ] {
        assert!(schemas.contains_key(s), "schema {s} missing");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["api_key"]["name"],
        "X-API-Key"
    );
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let app = spawn_app().await;
    let doc: Value = app.get("/openapi.json", None).await.json().await.unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let concrete = path
                .replace("{slug}", "alpha")
                .replace("{id}", "spoke-fra-00000000");
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let res = app
                .client
                .request(m, app.url(&concrete))
                .header("X-API-Key", ADMIN_KEY)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let body = res.text().await.unwrap_or_default();
            assert!(
                status != 405 && !body.contains("no such route"),
                "{method} {path} is documented but not routed ({status})"
            );
        }
    }
}
