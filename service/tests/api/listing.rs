//! Lists that scale: `GET /api/fed/projects` and `GET /api/federation/spokes`
//! with `limit`, `cursor` (`Link: <…>; rel="next"`), repeated `tag`, `q`,
//! `sort` and `X-Total-Count`, still bare JSON arrays.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::fedkit::register;
use crate::helpers::*;

/// One page: the items, `X-Total-Count`, and the `Link` next URL (path
/// and query) if any.
async fn page(app: &TestApp, path: &str) -> (Vec<Value>, u64, Option<String>) {
    let res = app.get(path, Some(ADMIN_KEY)).await;
    assert_eq!(res.status(), 200, "GET {path}");
    let total = res.headers()["x-total-count"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let next = res.headers().get("link").map(|l| {
        let l = l.to_str().unwrap();
        assert!(l.ends_with(">; rel=\"next\""), "{l}");
        l.trim_start_matches('<')
            .trim_end_matches(">; rel=\"next\"")
            .to_owned()
    });
    let items: Vec<Value> = res.json().await.unwrap();
    (items, total, next)
}

/// Follows `Link` from `first` to the last page; every item's `key`.
async fn walk(app: &TestApp, first: &str, key: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let mut path = Some(first.to_owned());
    while let Some(p) = path {
        let (items, _, next) = page(app, &p).await;
        seen.extend(items.iter().map(|i| i[key].as_str().unwrap().to_owned()));
        path = next;
    }
    seen
}

fn tagged(slug: &str, name: &str, tags: &[&str]) -> Value {
    let mut p = project(slug);
    p["name"] = json!(name);
    p["tags"] = json!(tags);
    p
}

#[tokio::test]
async fn pages_walk_every_project_exactly_once_while_others_are_inserted() {
    let app = spawn_app().await;
    let before: Vec<String> = (0..60).map(|i| format!("p{:03}", i * 2)).collect();
    for slug in &before {
        app.create_project(&project(slug)).await;
    }
    // Inserts between the existing slugs (and after them) while the walks go on.
    let inserter = {
        let client = reqwest::Client::new();
        let url = app.url("/api/fed/projects");
        tokio::spawn(async move {
            for i in 0..60 {
                let res = client
                    .post(&url)
                    .header("X-API-Key", ADMIN_KEY)
                    .json(&project(&format!("p{:03}", i * 2 + 1)))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 201);
            }
        })
    };
    for first in [
        "/api/fed/projects?limit=7",
        "/api/fed/projects?limit=5&sort=-slug",
        "/api/fed/projects?limit=9&sort=name",
        "/api/fed/projects?limit=4&sort=created&tag=test",
    ] {
        let seen = walk(&app, first, "slug").await;
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for s in &seen {
            *counts.entry(s).or_default() += 1;
        }
        let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "{first}: served twice: {twice:?}");
        for slug in &before {
            assert_eq!(counts.get(slug.as_str()), Some(&1), "{first}: {slug}");
        }
        // In the order asked for.
        let mut ordered = seen.clone();
        ordered.sort();
        if first.contains("-slug") {
            ordered.reverse();
        }
        if !first.contains("created") {
            assert_eq!(seen, ordered, "{first}");
        }
    }
    inserter.await.unwrap();
    let (all, total, next) = page(&app, "/api/fed/projects").await;
    assert_eq!((all.len(), total, next), (120, 120, None));
}

async fn filtered_and_sorted(app: TestApp) {
    app.create_project(&tagged("alpha", "Alpha Hub", &["prod", "eu"]))
        .await;
    app.create_project(&tagged("beta", "Beta", &["prod"])).await;
    app.create_project(&tagged("gamma", "Gamma hub", &["eu", "prod", "gpu"]))
        .await;
    app.create_project(&tagged("delta", "Delta HUB", &["eu"]))
        .await;
    app.sql("UPDATE projects SET status = 'online', last_heartbeat_at = now() - interval '1 minute' WHERE slug = 'gamma'").await;
    app.sql("UPDATE projects SET status = 'degraded', last_heartbeat_at = now() - interval '1 hour' WHERE slug = 'beta'").await;
    let slugs = |items: &[Value]| -> Vec<String> {
        items
            .iter()
            .map(|p| p["slug"].as_str().unwrap().to_owned())
            .collect()
    };
    // (the direct SQL reaches the view by notification)
    app.wait_project_status("gamma", "online").await;
    app.wait_project_status("beta", "degraded").await;

    // One tag, as before; several: all of them.
    let (items, total, _) = page(&app, "/api/fed/projects?tag=prod").await;
    assert_eq!(slugs(&items), ["alpha", "beta", "gamma"]);
    assert_eq!(total, 3);
    let (items, total, _) = page(&app, "/api/fed/projects?tag=eu&tag=prod").await;
    assert_eq!(slugs(&items), ["alpha", "gamma"]);
    assert_eq!(total, 2);
    let (items, _, _) = page(&app, "/api/fed/projects?tag=eu&tag=prod&tag=gpu").await;
    assert_eq!(slugs(&items), ["gamma"]);
    // q: slug or name, whatever the case.
    let (items, _, _) = page(&app, "/api/fed/projects?q=HUB").await;
    assert_eq!(slugs(&items), ["alpha", "delta", "gamma"]);
    let (items, _, _) = page(&app, "/api/fed/projects?q=et").await;
    assert_eq!(slugs(&items), ["beta"]);
    let (items, _, _) = page(&app, "/api/fed/projects?q=hub&tag=eu&status=offline").await;
    assert_eq!(slugs(&items), ["alpha", "delta"]);
    // Sorts.
    let (items, _, _) = page(&app, "/api/fed/projects?sort=-slug").await;
    assert_eq!(slugs(&items), ["gamma", "delta", "beta", "alpha"]);
    let (items, _, _) = page(&app, "/api/fed/projects?sort=name").await;
    assert_eq!(slugs(&items), ["alpha", "beta", "delta", "gamma"]);
    let (items, _, _) = page(&app, "/api/fed/projects?sort=status").await;
    assert_eq!(slugs(&items), ["gamma", "beta", "alpha", "delta"]);
    let (items, _, _) = page(&app, "/api/fed/projects?sort=-last_seen").await;
    assert_eq!(slugs(&items), ["gamma", "beta", "delta", "alpha"]);
    // The total counts every match, not the page; the link keeps the filters.
    let (items, total, next) = page(&app, "/api/fed/projects?tag=prod&sort=-name&limit=2").await;
    assert_eq!(slugs(&items), ["gamma", "beta"]);
    assert_eq!(total, 3);
    let next = next.unwrap();
    assert!(
        next.starts_with("/api/fed/projects?tag=prod&sort=-name&limit=2&cursor="),
        "{next}"
    );
    let (items, total, last) = page(&app, &next).await;
    assert_eq!(slugs(&items), ["alpha"]);
    assert_eq!((total, last), (3, None));
}

#[tokio::test]
async fn filters_combine_sorts_order_and_the_total_counts_every_match() {
    filtered_and_sorted(spawn_app().await).await;
}

#[tokio::test]
async fn without_the_view_the_database_answers_the_same() {
    filtered_and_sorted(spawn_app_yaml("catalog:\n  view: false\n").await).await;
}

#[tokio::test]
async fn bad_list_parameters_are_one_422_naming_each() {
    let app = spawn_app().await;
    app.create_project(&project("alpha")).await;
    let problem = app
        .get_invalid("/api/fed/projects?limit=0&sort=size&cursor=nope&q=&tag=ok&tag=%20bad")
        .await;
    assert_eq!(
        error_fields(&problem),
        ["cursor", "limit", "q", "sort", "tag[1]"],
        "{problem}"
    );
    let cases = [
        ("limit=1001", "limit"),
        ("limit=x", "limit"),
        ("sort=-", "sort"),
        ("status=asleep", "status"),
    ];
    app.assert_each_refused("/api/fed/projects", &cases).await;
    // A cursor made for one sort is refused under another.
    app.create_project(&project("beta")).await;
    let (_, _, next) = page(&app, "/api/fed/projects?limit=1&sort=name").await;
    let cursor = next.unwrap().rsplit("cursor=").next().unwrap().to_owned();
    let problem = app
        .get_invalid(&format!(
            "/api/fed/projects?limit=1&sort=slug&cursor={cursor}"
        ))
        .await;
    assert_eq!(error_fields(&problem), ["cursor"]);
}

#[tokio::test]
async fn spokes_page_filter_and_sort_the_same_way() {
    let app = spawn_app().await;
    for code in ["FRA", "DEU", "GBR", "NLD", "ITA"] {
        register(&app, code).await;
    }
    let seen = walk(&app, "/api/federation/spokes?limit=2", "instance_code").await;
    assert_eq!(seen, ["DEU", "FRA", "GBR", "ITA", "NLD"]);
    let seen = walk(
        &app,
        "/api/federation/spokes?limit=3&sort=-instance_code",
        "instance_code",
    )
    .await;
    assert_eq!(seen, ["NLD", "ITA", "GBR", "FRA", "DEU"]);
    let (items, total, next) = page(&app, "/api/federation/spokes?q=fr&limit=10").await;
    assert_eq!((items.len(), total, next), (1, 1, None));
    assert_eq!(items[0]["instance_code"], "FRA");
    let (_, total, next) = page(&app, "/api/federation/spokes?status=pending&limit=4").await;
    assert_eq!(total, 5);
    assert!(next.unwrap().contains("status=pending"));
    let problem = app
        .get_invalid("/api/federation/spokes?limit=0&sort=slug")
        .await;
    assert_eq!(error_fields(&problem), ["limit", "sort"]);
}
