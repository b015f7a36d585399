//! Per-hub deadlines (a heartbeat's `interval_s`, clamped to
//! `heartbeat.min_threshold ..= max_threshold`) and deregistration
//! (`heartbeat.deregister_after`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use service::catalog_view::CatalogView;
use service::config::HeartbeatSettings;
use service::store::liveness::{write_heartbeats, HeartbeatColumns};
use service::sweeper::StaleSweeper;
use sqlx::PgPool;

use crate::heartbeats::rig;
use crate::helpers::*;

fn secs(s: i64) -> chrono::Duration {
    chrono::Duration::seconds(s)
}

/// One heartbeat of `slug` received at `at`, saying `interval_s`.
async fn beat(pool: &PgPool, slug: &str, interval_s: Option<i32>, at: DateTime<Utc>) {
    let batch = HeartbeatColumns {
        slugs: vec![slug],
        received_at: vec![at],
        reported: vec!["online"],
        hub_timestamps: vec![Some(at)],
        agent_ids: vec![Some("agent-1")],
        seqs: vec![Some(1)],
        intervals: vec![interval_s],
        versions: vec![Some("1.0.0")],
        hub_urls: vec![None],
    };
    write_heartbeats(pool, &batch, false).await.unwrap();
}

fn sweeper(pool: &PgPool, settings: HeartbeatSettings) -> StaleSweeper {
    let settings = HeartbeatSettings {
        check_interval: Duration::from_secs(600),
        ..settings
    };
    StaleSweeper::new(pool.clone(), CatalogView::new(false), &settings)
}

fn heartbeat_json(slug: &str, interval_s: Option<u32>) -> Vec<u8> {
    let mut hb = json!({
        "project_slug": slug,
        "hub_url": format!("http://{slug}.example:9001"),
        "status": "online",
    });
    if let Some(i) = interval_s {
        hb["interval_s"] = json!(i);
    }
    hb.to_string().into_bytes()
}

#[tokio::test]
async fn a_hub_beating_every_second_goes_offline_after_three_while_the_others_keep_the_global_threshold(
) {
    // Global thresholds of the original (45 s / 90 s), sweeps at most every
    // 10 minutes: only the hub's own deadline can take it offline here.
    let r = rig("heartbeat:\n  check_interval: 10m\n").await;
    r.register("quick").await;
    r.register("plain").await;
    // One heartbeat each, at the same time: `quick` says it beats every
    // second, `plain` says nothing.
    r.publish("hub.presence.quick", heartbeat_json("quick", Some(1)))
        .await;
    r.publish("hub.presence.plain", heartbeat_json("plain", None))
        .await;
    let quick = r.wait_status("quick", "online").await;
    assert_eq!(quick["heartbeat_interval_s"], 1);
    r.wait_status("plain", "online").await;

    // Offline by its own deadline (3 s after its heartbeat), long before
    // the global 90 s.
    r.wait_status("quick", "offline").await;
    let plain = r.project("plain").await;
    assert_eq!(
        plain["status"], "online",
        "the hub without interval_s keeps the global thresholds: {plain}"
    );
    assert!(plain["heartbeat_interval_s"].is_null());

    // Degraded at 1.5 intervals, offline at 3: never before.
    let rows: Vec<(String, DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT t.to_status, t.at, p.last_heartbeat_at FROM project_transitions t \
         JOIN projects p ON p.id = t.project_id WHERE p.slug = 'quick' AND t.cause = 'sweeper' ORDER BY t.id",
    )
    .fetch_all(&r.app.pool)
    .await
    .unwrap();
    let to: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(to, ["degraded", "offline"]);
    assert!(rows[0].1 - rows[0].2 >= chrono::Duration::milliseconds(1500));
    assert!(rows[1].1 - rows[1].2 >= secs(3));
}

#[tokio::test]
async fn each_hub_is_judged_by_its_interval_clamped_to_the_bounds() {
    let (app, t0) = spawn_with_hubs(&["plain", "quick", "slow", "ten"]).await;
    beat(&app.pool, "plain", None, t0).await;
    beat(&app.pool, "quick", Some(1), t0).await;
    beat(&app.pool, "slow", Some(10_000), t0).await;
    beat(&app.pool, "ten", Some(10), t0).await;
    let sweeper = sweeper(
        &app.pool,
        HeartbeatSettings {
            degraded_after: Duration::from_secs(45),
            stale_threshold: Duration::from_secs(90),
            min_threshold: Duration::from_secs(5),
            max_threshold: Duration::from_secs(600),
            ..Default::default()
        },
    );
    let sight = Some(t0 - secs(3600));
    let at = |s: i64| sweeper.sweep_once(t0 + secs(s), sight);

    // quick: 3 s raised to min_threshold 5 s (degraded at 2.5 s).
    let out = at(2).await.unwrap();
    assert!(out.degraded.is_empty() && out.offline.is_empty(), "{out:?}");
    assert_eq!(
        out.next_deadline,
        Some(t0 + chrono::Duration::milliseconds(2500))
    );
    let out = at(3).await.unwrap();
    assert_eq!(out.degraded, ["quick"]);
    assert_eq!(out.next_deadline, Some(t0 + secs(5)), "quick's offline");
    let out = at(6).await.unwrap();
    assert_eq!(out.offline, ["quick"]);
    assert_eq!(out.next_deadline, Some(t0 + secs(15)), "ten: 1.5 × 10 s");
    // ten: 15 s / 30 s; plain: the global 45 s / 90 s.
    let out = at(16).await.unwrap();
    assert_eq!(out.degraded, ["ten"]);
    let out = at(31).await.unwrap();
    assert_eq!(out.offline, ["ten"]);
    let out = at(46).await.unwrap();
    assert_eq!(out.degraded, ["plain"]);
    let out = at(91).await.unwrap();
    assert_eq!(out.offline, ["plain"]);
    // slow: 30000 s clamped to max_threshold 600 s (degraded at 300 s).
    assert_eq!(out.next_deadline, Some(t0 + secs(300)));
    let out = at(299).await.unwrap();
    assert!(out.degraded.is_empty() && out.offline.is_empty());
    let out = at(301).await.unwrap();
    assert_eq!(out.degraded, ["slow"]);
    assert_eq!(out.next_deadline, Some(t0 + secs(600)));
    let out = at(601).await.unwrap();
    assert_eq!(out.offline, ["slow"]);
    assert_eq!(out.next_deadline, None);

    // The API shows the interval the deadlines come from.
    let slow = app.get_ok("/api/fed/projects/slow", Some(ADMIN_KEY)).await;
    assert_eq!(slow["heartbeat_interval_s"], 10_000);
}

#[tokio::test]
async fn sight_regained_recently_holds_back_only_the_hubs_whose_deadline_it_covers() {
    let (app, t0) = spawn_with_hubs(&["quick", "plain"]).await;
    beat(&app.pool, "quick", Some(1), t0).await;
    beat(&app.pool, "plain", None, t0).await;
    let sweeper = sweeper(&app.pool, HeartbeatSettings::default());
    // Sight since t0 + 10: ten seconds later, quick (3 s) may be judged,
    // plain (45 s / 90 s) not yet.
    let out = sweeper
        .sweep_once(t0 + secs(20), Some(t0 + secs(10)))
        .await
        .unwrap();
    assert_eq!(out.offline, ["quick"]);
    assert!(out.degraded.is_empty());
    assert_eq!(out.next_deadline, Some(t0 + secs(55)));
}

async fn audit_rows(app: &TestApp, action: &str) -> Vec<(String, String, Option<String>)> {
    sqlx::query_as("SELECT actor, target, detail FROM audit_log WHERE action = $1 ORDER BY id")
        .bind(action)
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn hubs_offline_longer_than_deregister_after_are_removed_with_an_event_and_an_audit_row() {
    let (app, t0) = spawn_with_hubs(&["gone", "resting", "back", "never"]).await;
    for slug in ["gone", "resting", "back"] {
        beat(&app.pool, slug, Some(30), t0).await;
    }
    let sweeper = sweeper(
        &app.pool,
        HeartbeatSettings {
            deregister_after: Duration::from_secs(3600),
            max_threshold: Duration::from_secs(600),
            ..Default::default()
        },
    );
    let sight = Some(t0 - secs(86_400));
    // All three offline at t0 + 100.
    let out = sweeper.sweep_once(t0 + secs(100), sight).await.unwrap();
    assert_eq!(out.offline, ["back", "gone", "resting"]);
    // `resting` goes into maintenance while offline; `back` beats again
    // and goes offline later.
    app.start_maintenance("resting", &json!({"duration": "10d", "reason": "parked"}))
        .await;
    beat(&app.pool, "back", Some(30), t0 + secs(2000)).await;
    let out = sweeper.sweep_once(t0 + secs(2100), sight).await.unwrap();
    assert_eq!(out.offline, ["back"]);

    let late = t0 + secs(100 + 3600 + 1);
    // Blind, or listening for less than the longest threshold (600 s):
    // nobody is removed.
    let out = sweeper.sweep_once(late, None).await.unwrap();
    assert!(out.deregistered.is_empty());
    let out = sweeper
        .sweep_once(late, Some(late - secs(599)))
        .await
        .unwrap();
    assert!(out.deregistered.is_empty(), "{out:?}");
    assert_eq!(app.count("projects").await, 4);

    let out = sweeper.sweep_once(late, sight).await.unwrap();
    assert_eq!(
        out.deregistered,
        ["gone"],
        "in maintenance, offline more recently and never heard from: kept"
    );
    let slugs: Vec<String> = app.column("SELECT slug FROM projects ORDER BY slug").await;
    assert_eq!(slugs, ["back", "never", "resting"]);
    // The app's view follows the deletion.
    testkit::eventually(Duration::from_secs(10), "the view to drop gone", || async {
        (app.get_status("/api/fed/projects/gone", Some(ADMIN_KEY))
            .await
            == 404)
            .then_some(())
    })
    .await;

    let events: Vec<(String, Value)> = app.rows("SELECT ce_subject, data FROM outbox WHERE event_type = 'federation.project.deregistered'").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, "gone");
    assert_eq!(events[0].1["slug"], "gone");
    assert_eq!(events[0].1["status"], "offline");
    let audit = audit_rows(&app, "project.deregister").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(
        (audit[0].0.as_str(), audit[0].1.as_str()),
        ("system:sweeper", "project:gone")
    );
    assert!(audit[0].2.as_deref().unwrap().contains("1h"), "{audit:?}");

    // Again: nothing more to remove.
    let out = sweeper.sweep_once(late + secs(1), sight).await.unwrap();
    assert!(out.deregistered.is_empty());
}

#[tokio::test]
async fn without_deregister_after_offline_hubs_stay() {
    let (app, t0) = spawn_with_hubs(&["gone"]).await;
    beat(&app.pool, "gone", None, t0).await;
    let sweeper = sweeper(&app.pool, HeartbeatSettings::default());
    let sight = Some(t0 - secs(86_400));
    let out = sweeper.sweep_once(t0 + secs(100), sight).await.unwrap();
    assert_eq!(out.offline, ["gone"]);
    let out = sweeper
        .sweep_once(t0 + secs(365 * 86_400), sight)
        .await
        .unwrap();
    assert!(out.deregistered.is_empty());
    assert_eq!(app.count("projects").await, 1);
}
