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
        ("/api/federation/register", "post"),
        ("/api/federation/spokes", "get"),
        ("/api/federation/spokes/{id}", "get"),
        ("/api/federation/spokes/{id}/history", "get"),
        ("/api/federation/spokes/{id}/approve", "post"),
        ("/api/federation/spokes/{id}/suspend", "post"),
        ("/api/federation/spokes/{id}/reinstate", "post"),
        ("/api/federation/spokes/{id}/revoke", "post"),
        ("/api/federation/links", "get"),
        ("/api/fed/watch", "get"),
        ("/api/idps/public", "get"),
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
    let register = &paths["/api/federation/register"]["post"];
    for code in [
        "201", "200", "400", "401", "403", "409", "413", "415", "422", "503",
    ] {
        assert!(
            register["responses"].get(code).is_some(),
            "register lacks {code}"
        );
    }
    for action in ["approve", "suspend", "reinstate", "revoke"] {
        let op = &paths[&format!("/api/federation/spokes/{{id}}/{action}")]["post"];
        for code in ["200", "401", "403", "404", "409", "422"] {
            assert!(op["responses"].get(code).is_some(), "{action} lacks {code}");
        }
        assert!(op["responses"]["409"]["content"]["application/problem+json"].is_object());
    }
    let watch = &paths["/api/fed/watch"]["get"]["responses"];
    assert!(
        watch["200"]["content"]["text/event-stream"].is_object(),
        "{watch}"
    );
    assert!(watch.get("410").is_some());
    assert!(paths["/api/idps/public"]["get"].get("security").is_none());
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for s in [
        "Project",
        "ProjectInput",
        "ProjectUpdate",
        "Problem",
        "FieldError",
        "ProjectStatus",
        "Spoke",
        "SpokeRegistration",
        "SpokeStatus",
        "TransitionRequest",
        "Transition",
        "SpokeEventData",
        "FederationLink",
        "LinkStatus",
        "LinkDirection",
        "PublicIdp",
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
            let streaming = res
                .headers()
                .get("content-type")
                .is_some_and(|v| v.to_str().unwrap_or("").starts_with("text/event-stream"));
            // An event stream never ends: its headers are the answer.
            let body = if streaming {
                String::new()
            } else {
                res.text().await.unwrap_or_default()
            };
            assert!(
                status != 405 && !body.contains("no such route"),
                "{method} {path} is documented but not routed ({status})"
            );
        }
    }
}
