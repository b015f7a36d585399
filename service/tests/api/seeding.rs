use serde_json::Value;
use service::catalog::seed;

use crate::helpers::*;

#[tokio::test]
async fn the_example_projects_file_seeds_the_catalog_idempotently() {
    let specs = seed::load(&repo_path("config/projects.yaml")).unwrap();
    assert_eq!(specs.len(), 2);
    let app = spawn_app_with("", specs.clone()).await;
    let list: Value = app.get_value("/api/fed/projects", Some(ADMIN_KEY)).await;
    let slugs = strings(&list, "slug");
    assert_eq!(slugs, ["commandcenter", "projecta"]);
    let before: Vec<(String, chrono::DateTime<chrono::Utc>)> = app
        .rows("SELECT slug, updated_at FROM projects ORDER BY slug")
        .await;
    assert_eq!(app.outbox_types().await.len(), 2);

    // Restart on the same database with the same file: nothing changes.
    let (db, result) = app.stop().await;
    result.unwrap();
    let app = spawn_on(db, "", specs.clone()).await;
    let after: Vec<(String, chrono::DateTime<chrono::Utc>)> = app
        .rows("SELECT slug, updated_at FROM projects ORDER BY slug")
        .await;
    assert_eq!(before, after);
    assert_eq!(
        app.outbox_types().await.len(),
        2,
        "re-seeding emitted events"
    );

    // A changed file updates only what changed; projects added by the API stay.
    app.post_project(Some(ADMIN_KEY), &project("extra")).await;
    let (db, result) = app.stop().await;
    result.unwrap();
    let mut changed = specs;
    changed[1].name = Some("Renamed".into());
    let app = spawn_on(db, "", changed).await;
    let p: Value = app
        .get_value("/api/fed/projects/projecta", Some(ADMIN_KEY))
        .await;
    assert_eq!(p["name"], "Renamed");
    assert_eq!(
        app.get_status("/api/fed/projects/extra", Some(ADMIN_KEY))
            .await,
        200
    );
    assert_eq!(
        app.outbox_types().await,
        [
            "federation.project.registered",
            "federation.project.registered",
            "federation.project.registered",
            "federation.project.updated"
        ]
    );
}
