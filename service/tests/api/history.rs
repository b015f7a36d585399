//! `GET /api/fed/projects/{slug}/history`: a hub's transitions with their
//! causes, newest first, paged by `before`; the statement writers' causes
//! (heartbeat, agent shutdown, sweeper, maintenance); pruning by age.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use service::auth::fingerprint;
use service::catalog_view::CatalogView;
use service::config::HeartbeatSettings;
use service::store::liveness::{write_heartbeats, HeartbeatColumns};
use service::sweeper::StaleSweeper;
use sqlx::PgPool;

use crate::helpers::*;

/// One heartbeat of `slug` saying `status`, received at `at`, through the
/// flusher's statement.
pub async fn beat_at(pool: &PgPool, slug: &str, status: &str, at: DateTime<Utc>) {
    let batch = HeartbeatColumns {
        slugs: vec![slug],
        received_at: vec![at],
        reported: vec![status],
        hub_timestamps: vec![Some(at)],
        agent_ids: vec![Some("agent-1")],
        seqs: vec![Some(1)],
        intervals: vec![Some(30)],
        versions: vec![Some("1.0.0")],
        hub_urls: vec![None],
    };
    write_heartbeats(pool, &batch, false).await.unwrap();
}

pub fn sweeper_of(pool: &PgPool, degraded_s: u64, stale_s: u64) -> StaleSweeper {
    let settings = HeartbeatSettings {
        degraded_after: Duration::from_secs(degraded_s),
        stale_threshold: Duration::from_secs(stale_s),
        check_interval: Duration::from_secs(600),
        ..Default::default()
    };
    StaleSweeper::new(pool.clone(), CatalogView::new(false), &settings)
}

fn secs(s: i64) -> chrono::Duration {
    chrono::Duration::seconds(s)
}

/// `(from, to, cause, actor)` of each entry of a page.
fn entries(page: &Value) -> Vec<(String, String, String, String)> {
    page["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let s = |k: &str| t[k].as_str().unwrap_or("-").to_owned();
            (s("from"), s("to"), s("cause"), s("actor"))
        })
        .collect()
}

/// A hub's history, as `key` reads it.
async fn history(app: &TestApp, slug: &str, key: &str) -> Value {
    let path = format!("/api/fed/projects/{slug}/history");
    app.get_ok(&path, Some(key)).await
}

fn entry(from: &str, to: &str, cause: &str, actor: &str) -> (String, String, String, String) {
    (from.into(), to.into(), cause.into(), actor.into())
}

#[tokio::test]
async fn history_lists_each_transition_with_its_cause_newest_first() {
    let (app, now) = spawn_with_hubs(&["alpha", "beta"]).await;
    let t0 = now - secs(600);
    let sweeper = sweeper_of(&app.pool, 45, 90);
    let sight = Some(t0 - secs(3600));

    beat_at(&app.pool, "alpha", "online", t0).await;
    beat_at(&app.pool, "beta", "online", t0).await;
    let out = sweeper.sweep_once(t0 + secs(50), sight).await.unwrap();
    assert_eq!(out.degraded, ["alpha", "beta"]);
    beat_at(&app.pool, "alpha", "online", t0 + secs(60)).await;
    // The agent's goodbye: `offline` on its way out.
    beat_at(&app.pool, "alpha", "offline", t0 + secs(70)).await;
    app.start_maintenance(
        "alpha",
        &json!({"duration": "2h", "reason": "kernel upgrade"}),
    )
    .await;

    let page = history(&app, "alpha", AGENT_KEY).await;
    let admin = fingerprint(ADMIN_KEY);
    assert_eq!(
        entries(&page),
        [
            entry("offline", "offline", "maintenance", &admin),
            entry("online", "offline", "agent_shutdown", "hub:alpha"),
            entry("degraded", "online", "heartbeat", "hub:alpha"),
            entry("online", "degraded", "sweeper", "system:sweeper"),
            entry("offline", "online", "heartbeat", "hub:alpha"),
        ]
    );
    let list = page["transitions"].as_array().unwrap();
    let at = DateTime::parse_from_rfc3339(list[1]["at"].as_str().unwrap()).unwrap();
    assert_eq!(at, t0 + secs(70), "the heartbeat's arrival");
    assert!(list[0]["detail"]
        .as_str()
        .unwrap()
        .contains("kernel upgrade"));
    assert_eq!(page["next_before"], Value::Null, "one page holds it all");
    // beta's transitions are beta's.
    let beta = history(&app, "beta", ADMIN_KEY).await;
    assert_eq!(
        entries(&beta),
        [
            entry("online", "degraded", "sweeper", "system:sweeper"),
            entry("offline", "online", "heartbeat", "hub:beta"),
        ]
    );
}

#[tokio::test]
async fn history_pages_by_before_without_gaps_or_repeats() {
    let app = spawn_app().await;
    app.create_project(&project("alpha")).await;
    app.create_project(&project("beta")).await;
    // 25 of alpha's interleaved with beta's.
    app.sql(
        "INSERT INTO project_transitions (project_id, from_status, to_status, cause, at)
         SELECT p.id, 'online', 'degraded', 'sweeper', now() - make_interval(secs => g)
         FROM generate_series(1, 25) g, projects p ORDER BY g, p.slug",
    )
    .await;
    let expected: Vec<i64> = app
        .column(
            "SELECT t.id FROM project_transitions t JOIN projects p ON p.id = t.project_id
         WHERE p.slug = 'alpha' ORDER BY t.id DESC",
        )
        .await;
    assert_eq!(expected.len(), 25);

    let mut seen = Vec::new();
    let mut pages = 0;
    let mut path = "/api/fed/projects/alpha/history?limit=7".to_owned();
    loop {
        let page = app.get_ok(&path, Some(ADMIN_KEY)).await;
        pages += 1;
        let ids: Vec<i64> = page["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_i64().unwrap())
            .collect();
        assert!(ids.len() <= 7);
        seen.extend(ids);
        match page["next_before"].as_i64() {
            Some(before) => {
                path = format!("/api/fed/projects/alpha/history?limit=7&before={before}")
            }
            None => break,
        }
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(pages, 4);
    assert_eq!(seen, expected, "every entry once, newest first");
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), 25);

    // The default page is 100.
    let all = history(&app, "alpha", ADMIN_KEY).await;
    assert_eq!(all["transitions"].as_array().unwrap().len(), 25);
}

#[tokio::test]
async fn bad_history_parameters_are_422_with_each_field_listed() {
    let app = spawn_app().await;
    app.create_project(&project("alpha")).await;
    for (query, fields) in [
        ("limit=0", vec!["limit"]),
        ("limit=1001", vec!["limit"]),
        ("before=0", vec!["before"]),
        ("limit=0&before=-1", vec!["before", "limit"]),
    ] {
        let problem = app
            .get_invalid(&format!("/api/fed/projects/alpha/history?{query}"))
            .await;
        let mut got = error_fields(&problem);
        got.sort();
        assert_eq!(got, fields, "{query}");
    }
    for query in ["limit=abc", "before=x", "sort=at"] {
        app.get_invalid(&format!("/api/fed/projects/alpha/history?{query}"))
            .await;
    }
    // Within bounds is fine.
    let page = app
        .get_ok(
            "/api/fed/projects/alpha/history?limit=1000",
            Some(ADMIN_KEY),
        )
        .await;
    assert_eq!(page["transitions"], json!([]));
}

#[tokio::test]
async fn the_history_of_an_unknown_project_is_404_and_needs_a_key() {
    let app = spawn_app().await;
    for slug in ["nobody", "Not-A-Slug"] {
        let res = app
            .get(
                &format!("/api/fed/projects/{slug}/history"),
                Some(ADMIN_KEY),
            )
            .await;
        assert_problem(res, 404).await;
    }
    app.create_project(&project("alpha")).await;
    let res = app.get("/api/fed/projects/alpha/history", None).await;
    assert_problem(res, 401).await;
}

#[tokio::test]
async fn history_older_than_the_retention_is_pruned() {
    let app = spawn_app().await;
    app.create_project(&project("alpha")).await;
    app.sql(
        "INSERT INTO project_transitions (project_id, from_status, to_status, cause, at)
         SELECT id, 'online', 'degraded', 'sweeper', now() - interval '2 hours' FROM projects
         UNION ALL
         SELECT id, 'degraded', 'offline', 'sweeper', now() - interval '10 minutes' FROM projects",
    )
    .await;
    let pruned = service::retention::prune_expired(
        &app.pool,
        service::retention::Log::History,
        Duration::from_secs(3600),
    )
    .await
    .unwrap();
    assert_eq!(pruned, Some(1));
    let page = history(&app, "alpha", ADMIN_KEY).await;
    assert_eq!(
        entries(&page),
        [entry("degraded", "offline", "sweeper", "-")]
    );
}

#[tokio::test]
async fn an_agent_saying_offline_over_nats_is_recorded_as_its_shutdown() {
    let rig = crate::heartbeats::rig("").await;
    rig.online("alpha").await;
    rig.beat("alpha", "offline").await;
    rig.wait_status("alpha", "offline").await;
    let page = history(&rig.app, "alpha", AGENT_KEY).await;
    assert_eq!(
        entries(&page),
        [
            entry("online", "offline", "agent_shutdown", "hub:alpha"),
            entry("offline", "online", "heartbeat", "hub:alpha"),
        ]
    );
}
