use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn register_creates_then_updates_then_is_idempotent() {
    let app = spawn_app().await;
    let res = app.post_project(Some(ADMIN_KEY), &project("alpha")).await;
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["location"], "/api/fed/projects/alpha");
    let created: Value = res.json().await.unwrap();
    assert_eq!(created["slug"], "alpha");
    assert_eq!(created["mesh_namespace"], "hub.alpha");
    assert_eq!(created["status"], "offline");
    assert_eq!(created["tags"], json!(["test"]));
    assert!(created["last_heartbeat_at"].is_null());

    // Same body: 200, nothing changed, no event.
    let res = app.post_project(Some(ADMIN_KEY), &project("alpha")).await;
    assert_eq!(res.status(), 200);
    let same: Value = res.json().await.unwrap();
    assert_eq!(same["updated_at"], created["updated_at"]);

    // Changed body: 200, updated.
    let mut body = project("alpha");
    body["hub_url"] = "https://alpha.example".into();
    let res = app.post_project(Some(ADMIN_KEY), &body).await;
    assert_eq!(res.status(), 200);
    let updated: Value = res.json().await.unwrap();
    assert_eq!(updated["hub_url"], "https://alpha.example");
    assert_eq!(updated["id"], created["id"]);

    assert_eq!(
        app.outbox_types().await,
        [
            "federation.project.registered",
            "federation.project.updated"
        ]
    );
}

#[tokio::test]
async fn the_original_minimal_body_is_accepted() {
    let app = spawn_app().await;
    // As in the original service's README.
    let body = json!({"project_slug": "newproject", "name": "New Project",
        "hub_url": "http://localhost:9003", "mesh_namespace": "hub.newproject"});
    app.create_project(&body).await;
    // The original service's own example, as its clients send it.
    let body = json!({"slug": "commandcenter", "name": "CommandCenter",
        "hub_url": "http://localhost:8000", "mesh_namespace": "hub.commandcenter",
        "tags": ["python", "fastapi", "rag"]});
    app.create_project(&body).await;
    // And `slug` for `project_slug`, with the namespace derived.
    let body = json!({"slug": "other", "name": "Other", "hub_url": "http://localhost:9004"});
    let p = app.create_project(&body).await;
    assert_eq!(p["mesh_namespace"], "hub.other");
}

#[tokio::test]
async fn invalid_fields_are_all_listed_and_nothing_is_written() {
    let app = spawn_app().await;
    let body = json!({"project_slug": "Bad_Slug", "name": "", "hub_url": "ftp://nope",
        "tags": [""], "allow_fanout": ["hub.Nope!"]});
    let res = app.post_project(Some(ADMIN_KEY), &body).await;
    let problem = assert_problem(res, 422).await;
    let want = [
        "allow_fanout[0]",
        "hub_url",
        "name",
        "project_slug",
        "tags[0]",
    ];
    assert_eq!(error_fields(&problem), want, "{problem}");
    for e in problem["errors"].as_array().unwrap() {
        assert!(!e["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(app.count("projects").await, 0);
    assert!(app.outbox_types().await.is_empty());
}

#[tokio::test]
async fn namespace_must_match_the_slug() {
    let app = spawn_app().await;
    let mut body = project("alpha");
    body["mesh_namespace"] = "hub.beta".into();
    let problem = assert_problem(app.post_project(Some(ADMIN_KEY), &body).await, 422).await;
    assert_eq!(problem["errors"][0]["field"], "mesh_namespace");
    assert_eq!(
        problem["errors"][0]["message"],
        "must be \"hub.alpha\", the namespace of alpha"
    );
}

#[tokio::test]
async fn malformed_bodies_get_problem_documents() {
    let app = spawn_app().await;
    let url = "/api/fed/projects";
    // Not JSON.
    let res = app
        .send_raw(
            Method::POST,
            url,
            Some(ADMIN_KEY),
            ("application/json", "{nope"),
        )
        .await;
    assert_problem(res, 400).await;
    // Wrong content type.
    let res = app
        .send_raw(Method::POST, url, Some(ADMIN_KEY), ("text/plain", "{}"))
        .await;
    assert_problem(res, 415).await;
    // Missing, mistyped and unknown fields and broken rules: one 422 that
    // lists them all, in words.
    let body = json!({"name": 5, "hub_url": "ftp://a", "tags": "prod", "colour": "red"});
    let problem = assert_problem(app.post_project(Some(ADMIN_KEY), &body).await, 422).await;
    let errors = string_pairs(&problem["errors"], "field", "message");
    let known = "allow_fanout, hub_url, mesh_namespace, name, project_slug, slug, tags";
    assert_eq!(
        errors,
        [
            (
                "colour".into(),
                format!("is not a known field (known: {known})")
            ),
            ("hub_url".into(), service::rules::url_message()),
            ("name".into(), "must be a string, not a number".into()),
            (
                "project_slug".into(),
                "is required (or slug, the original service's name for it)".into()
            ),
            (
                "tags".into(),
                "must be a list of strings, not a string".into()
            ),
        ],
        "{problem}"
    );
    let detail = detail_of(&problem);
    assert!(
        detail.starts_with("5 problems: colour is not a known field")
            && detail.contains("; name must be a string, not a number; "),
        "{detail}"
    );
    let problem = assert_problem(
        app.post_project(Some(ADMIN_KEY), &json!({"project_slug": "a", "name": "A"}))
            .await,
        422,
    )
    .await;
    assert_eq!(problem["detail"], "hub_url is required");
    // Missing field, wrong type, unknown field: 422 naming the field.
    for (body, field) in [
        (json!({"project_slug": "a", "name": "A"}), "hub_url"),
        (
            json!({"project_slug": "a", "name": 5, "hub_url": "http://a"}),
            "name",
        ),
        (
            json!({"project_slug": "a", "name": "A", "hub_url": "http://a", "colour": "red"}),
            "colour",
        ),
    ] {
        let problem = assert_problem(app.post_project(Some(ADMIN_KEY), &body).await, 422).await;
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    // Too large (the limit is 1 MiB).
    let mut body = project("alpha");
    body["name"] = "x".repeat(2 << 20).into();
    assert_problem(app.post_project(Some(ADMIN_KEY), &body).await, 413).await;
}

#[tokio::test]
async fn get_list_and_filters() {
    // The database path; the in-memory view applies the same filters
    // (catalog_view unit tests) and is exercised by the other tests.
    let app = spawn_app_yaml("catalog:\n  view: false\n").await;
    for (slug, tags) in [
        ("alpha", vec!["prod"]),
        ("beta", vec!["prod", "eu"]),
        ("gamma", vec!["staging"]),
    ] {
        let mut body = project(slug);
        body["tags"] = json!(tags);
        assert_eq!(app.post_project(Some(ADMIN_KEY), &body).await.status(), 201);
    }
    app.sql("UPDATE projects SET status = 'online', last_heartbeat_at = now() WHERE slug = 'beta'")
        .await;

    let lists: [(&str, &[&str]); 5] = [
        ("", &["alpha", "beta", "gamma"]),
        ("?tag=prod", &["alpha", "beta"]),
        ("?status=online", &["beta"]),
        ("?status=offline&tag=prod", &["alpha"]),
        ("?tag=nothing", &[]),
    ];
    for (query, slugs) in lists {
        let list = app
            .get_value(&format!("/api/fed/projects{query}"), Some(ADMIN_KEY))
            .await;
        assert_eq!(strings(&list, "slug"), slugs, "{query}");
    }

    for (query, field) in [("status=sleeping", "status"), ("stauts=online", "stauts")] {
        let problem = app.get_invalid(&format!("/api/fed/projects?{query}")).await;
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }

    let one: Value = app
        .get_value("/api/fed/projects/beta", Some(ADMIN_KEY))
        .await;
    assert_eq!(one["slug"], "beta");
    assert_eq!(one["status"], "online");
    assert!(one["last_heartbeat_at"].is_string());
    assert_problem(
        app.get("/api/fed/projects/nope", Some(ADMIN_KEY)).await,
        404,
    )
    .await;
}

#[tokio::test]
async fn put_replaces_an_existing_project_only() {
    let app = spawn_app().await;
    let body = json!({"name": "Alpha", "hub_url": "http://alpha", "tags": ["x"]});
    assert_problem(
        app.put_json("/api/fed/projects/alpha", Some(ADMIN_KEY), &body)
            .await,
        404,
    )
    .await;

    app.post_project(Some(ADMIN_KEY), &project("alpha")).await;
    let res = app
        .put_json("/api/fed/projects/alpha", Some(ADMIN_KEY), &body)
        .await;
    assert_eq!(res.status(), 200);
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["name"], "Alpha");
    assert_eq!(p["tags"], json!(["x"]));
    assert_eq!(p["allow_fanout"], json!([]));

    // (body, the field its error names)
    for (body, field) in [
        (
            json!({"project_slug": "beta", "name": "B", "hub_url": "http://b"}),
            "project_slug",
        ),
        (json!({"name": "B", "hub_url": "nope"}), "hub_url"),
    ] {
        let res = app
            .put_json("/api/fed/projects/alpha", Some(ADMIN_KEY), &body)
            .await;
        let problem = assert_problem(res, 422).await;
        assert_eq!(problem["errors"][0]["field"], field);
    }
}

#[tokio::test]
async fn delete_removes_and_emits_an_event() {
    let app = spawn_app().await;
    app.post_project(Some(ADMIN_KEY), &project("alpha")).await;
    assert_eq!(
        app.delete_status("/api/fed/projects/alpha", Some(ADMIN_KEY))
            .await,
        204
    );
    // Gone: reading it or deleting it again is a 404.
    let path = "/api/fed/projects/alpha";
    for res in [
        app.get(path, Some(ADMIN_KEY)).await,
        app.delete(path, Some(ADMIN_KEY)).await,
    ] {
        assert_problem(res, 404).await;
    }
    assert_eq!(
        app.outbox_types().await,
        [
            "federation.project.registered",
            "federation.project.deleted"
        ]
    );
    let data: Value = app
        .value("SELECT data FROM outbox WHERE event_type = 'federation.project.deleted'")
        .await;
    assert_eq!(data["slug"], "alpha");
}

#[tokio::test]
async fn concurrent_registrations_of_one_slug_create_it_once() {
    let app = spawn_app().await;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (client, url) = (app.client.clone(), app.url("/api/fed/projects"));
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .header("X-API-Key", ADMIN_KEY)
                .json(&project("alpha"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.unwrap());
    }
    assert_eq!(codes.iter().filter(|c| **c == 201).count(), 1, "{codes:?}");
    assert!(codes.iter().all(|c| *c == 201 || *c == 200), "{codes:?}");
    assert_eq!(app.outbox_types().await, ["federation.project.registered"]);
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json_problems() {
    let app = spawn_app().await;
    let body = assert_problem(app.get("/nope", None).await, 404).await;
    assert_eq!(body["detail"], "no such route");
    let patch = app.try_request(
        reqwest::Method::PATCH,
        "/api/fed/projects/alpha",
        Some(ADMIN_KEY),
    );
    let res = patch.await.unwrap();
    let allow = res.headers().get("allow").cloned();
    assert_problem(res, 405).await;
    assert!(allow.is_some(), "405 keeps its Allow header");
}

#[tokio::test]
async fn re_registration_keeps_what_it_does_not_mention() {
    let app = spawn_app().await;
    let mut full = project("alpha");
    full["name"] = "Alpha, as the operator named it".into();
    full["tags"] = json!(["prod", "eu"]);
    full["allow_fanout"] = json!(["hub.beta"]);
    assert_eq!(app.post_project(Some(ADMIN_KEY), &full).await.status(), 201);

    // An agent re-registers with only what it knows.
    let minimal = json!({"project_slug": "alpha", "hub_url": "http://alpha.example:9001"});
    let res = app.post_project(Some(AGENT_KEY), &minimal).await;
    assert_eq!(res.status(), 200);
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["name"], "Alpha, as the operator named it");
    assert_eq!(p["tags"], json!(["prod", "eu"]));
    assert_eq!(p["allow_fanout"], json!(["hub.beta"]));
    assert_eq!(
        app.outbox_types().await,
        ["federation.project.registered"],
        "nothing changed, nothing emitted"
    );

    // A new project registered that way gets the defaults.
    let res = app
        .post_project(
            Some(AGENT_KEY),
            &json!({"project_slug": "beta", "hub_url": "http://b"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["name"], "beta");
    assert_eq!(p["tags"], json!([]));

    // PUT replaces everything, lists included.
    let res = app
        .put_json(
            "/api/fed/projects/alpha",
            Some(ADMIN_KEY),
            &json!({"name": "A", "hub_url": "http://a"}),
        )
        .await;
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["tags"], json!([]));
    assert_eq!(p["allow_fanout"], json!([]));
}

#[tokio::test]
async fn reads_come_from_a_view_that_every_write_updates() {
    let app = spawn_app().await;
    app.post_project(Some(ADMIN_KEY), &project("alpha")).await;
    let first: Value = app.get_value("/api/fed/projects", Some(ADMIN_KEY)).await;
    assert_eq!(strings(&first, "status"), ["offline"]);
    // A write through the API shows at once, in the list and alone.
    let mut renamed = project("alpha");
    renamed["name"] = "Renamed".into();
    app.post_project(Some(ADMIN_KEY), &renamed).await;
    let one: Value = app
        .get_value("/api/fed/projects/alpha", Some(ADMIN_KEY))
        .await;
    assert_eq!(one["name"], "Renamed");
    app.post_project(Some(ADMIN_KEY), &project("beta")).await;
    let list: Value = app.get_value("/api/fed/projects", Some(ADMIN_KEY)).await;
    assert_eq!(strings(&list, "status"), ["offline", "offline"]);
    // A change the API did not make (another replica, psql) is pushed by
    // PostgreSQL: there is no reload period to wait for.
    app.sql("UPDATE projects SET status = 'online' WHERE slug = 'alpha'")
        .await;
    let within = std::time::Duration::from_secs(5);
    let alpha = ("/api/fed/projects/alpha", within, "the change to be pushed");
    app.wait_value(alpha, |one| Some(one["status"] == "online"))
        .await;
    // A project created behind the view's back is found at once (pushed,
    // or read from the database on a miss).
    app.sql("INSERT INTO projects (slug, name, hub_url, mesh_namespace) VALUES ('gamma', 'G', 'http://g', 'hub.gamma')").await;
    assert_eq!(
        app.get_status("/api/fed/projects/gamma", Some(ADMIN_KEY))
            .await,
        200
    );
    // Deleted through the API: gone at once.
    app.delete("/api/fed/projects/beta", Some(ADMIN_KEY)).await;
    assert_problem(
        app.get("/api/fed/projects/beta", Some(ADMIN_KEY)).await,
        404,
    )
    .await;
    // Deleted behind its back: gone as soon as the notification arrives.
    app.sql("DELETE FROM projects WHERE slug = 'gamma'").await;
    let all = ("/api/fed/projects", within, "the deletion to be pushed");
    app.wait_value(all, |list| Some(list.as_array()?.len() == 1))
        .await;
}

#[tokio::test]
async fn without_the_view_every_read_goes_to_the_database() {
    let app = spawn_app_yaml("catalog:\n  view: false\n").await;
    app.post_project(Some(ADMIN_KEY), &project("alpha")).await;
    app.get("/api/fed/projects", Some(ADMIN_KEY)).await;
    app.sql("UPDATE projects SET status = 'online' WHERE slug = 'alpha'")
        .await;
    let list: Value = app.get_value("/api/fed/projects", Some(ADMIN_KEY)).await;
    assert_eq!(list[0]["status"], "online");
    let one: Value = app
        .get_value("/api/fed/projects/alpha", Some(ADMIN_KEY))
        .await;
    assert_eq!(one["status"], "online");
}
