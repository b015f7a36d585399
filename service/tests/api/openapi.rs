use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn the_document_covers_every_route_with_its_errors() {
    let app = spawn_app().await;
    let doc: Value = app.get_value("/openapi.json", None).await;
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
        ("/api/federation/spokes/{id}/confirm", "post"),
        ("/api/federation/spokes/{id}/approve", "post"),
        ("/api/federation/spokes/{id}/suspend", "post"),
        ("/api/federation/spokes/{id}/reinstate", "post"),
        ("/api/federation/spokes/{id}/revoke", "post"),
        ("/api/federation/links", "get"),
        ("/api/fed/watch", "get"),
        ("/api/idps/public", "get"),
        ("/api/fed/audit", "get"),
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
    let audit = &paths["/api/fed/audit"]["get"];
    for code in ["200", "401", "403", "422", "503"] {
        assert!(audit["responses"].get(code).is_some(), "audit lacks {code}");
    }
    let params: Vec<(&str, &Value)> = audit["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), &p["schema"]))
        .collect();
    let limit = params.iter().find(|(n, _)| *n == "limit").unwrap().1;
    assert_eq!(
        (&limit["minimum"], &limit["maximum"]),
        (&1.into(), &1000.into())
    );
    let before = params.iter().find(|(n, _)| *n == "before").unwrap().1;
    assert_eq!(before["minimum"], 1);
    for name in ["target", "actor"] {
        let schema = params.iter().find(|(n, _)| *n == name).unwrap().1;
        assert_eq!(schema["maxLength"], 200, "{name}");
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
        "AuditPage",
        "AuditRecord",
        "AuditOutcome",
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
    let doc: Value = app.get_value("/openapi.json", None).await;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let concrete = path
                .replace("{slug}", "alpha")
                .replace("{id}", "spoke-fra-00000000");
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let res = app.send_raw(m, &concrete, Some(ADMIN_KEY), JSON_BODY).await;
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

#[tokio::test]
async fn the_rules_are_published_from_the_constants_that_enforce_them() {
    use service::catalog::{MAX_TAGS, MAX_TAG_LEN, NAME, TAG};
    use service::rules;
    use service::spoke::{MAX_REASON_LEN, OPERATOR, REASON};

    let app = spawn_app().await;
    let doc: Value = app.get_value("/openapi.json", None).await;
    let schemas = &doc["components"]["schemas"];

    // ProjectInput: the derived object, plus one of project_slug and slug.
    let input = &schemas["ProjectInput"]["allOf"];
    let fields = &input[0]["properties"];
    assert_eq!(input[0]["additionalProperties"], false);
    assert_eq!(input[0]["required"], serde_json::json!(["hub_url"]));
    assert_eq!(
        input[1]["oneOf"],
        serde_json::json!([
            {"type": "object", "required": ["project_slug"]},
            {"type": "object", "required": ["slug"]},
        ])
    );
    assert_eq!(fields["project_slug"]["pattern"], rules::slug_pattern());
    assert_eq!(fields["project_slug"]["type"], "string", "never null");
    assert_eq!(fields["name"]["pattern"], NAME.pattern());
    assert_eq!(fields["name"]["maxLength"], NAME.max);
    assert_eq!(fields["hub_url"]["pattern"], rules::url_pattern());
    assert_eq!(fields["hub_url"]["maxLength"], rules::MAX_URL_LEN);
    assert_eq!(fields["tags"]["maxItems"], MAX_TAGS);
    assert_eq!(fields["tags"]["items"]["maxLength"], MAX_TAG_LEN);
    assert_eq!(fields["tags"]["items"]["pattern"], TAG.pattern());
    assert_eq!(
        fields["allow_fanout"]["items"]["pattern"],
        rules::fanout_pattern()
    );

    // A spoke may take any assigned code but the hub's own (USA here).
    let codes = schemas["SpokeRegistration"]["properties"]["instance_code"]["enum"]
        .as_array()
        .unwrap();
    assert_eq!(codes.len(), service::spoke::ISO_3166_ALPHA3.len() - 1);
    assert!(codes.contains(&"FRA".into()) && !codes.contains(&"USA".into()));

    let transition = &schemas["TransitionRequest"]["properties"];
    assert_eq!(transition["reason"]["maxLength"], MAX_REASON_LEN);
    assert_eq!(transition["reason"]["minLength"], 1);
    assert_eq!(transition["reason"]["pattern"], REASON.pattern());
    assert_eq!(transition["operator"]["pattern"], OPERATOR.pattern());

    // Parameters: path ids and filters carry their rules; the SSE resume
    // header is a UUID, never null.
    let param = |path: &str, method: &str, name: &str| -> Value {
        doc["paths"][path][method]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{method} {path} has no parameter {name}"))["schema"]
            .clone()
    };
    assert_eq!(
        param("/api/fed/projects/{slug}", "get", "slug")["pattern"],
        rules::slug_pattern()
    );
    assert_eq!(
        param("/api/federation/spokes/{id}", "get", "id")["pattern"],
        rules::SPOKE_ID_PATTERN
    );
    assert_eq!(
        param("/api/federation/links", "get", "spoke_id")["pattern"],
        rules::SPOKE_ID_PATTERN
    );
    // `tag` is repeated (tag=a&tag=b): each item carries the tag rule.
    assert_eq!(
        param("/api/fed/projects", "get", "tag")["items"]["pattern"],
        TAG.pattern()
    );
    let resume = param("/api/fed/watch", "get", "Last-Event-ID");
    assert_eq!(
        resume,
        serde_json::json!({"type": "string", "format": "uuid"})
    );
}
