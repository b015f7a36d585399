//! The stale sweeper: `sweep_once` driven with chosen clocks (no sleeping),
//! and the running service against real deadlines and a real NATS outage.

use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use service::catalog_view::CatalogView;
use service::config::HeartbeatSettings;
use service::sweeper::StaleSweeper;
use sqlx::PgPool;

use crate::heartbeats::{metric_value, rig};
use crate::helpers::*;

fn settings(degraded_s: u64, stale_s: u64) -> HeartbeatSettings {
    HeartbeatSettings {
        degraded_after: Duration::from_secs(degraded_s),
        stale_threshold: Duration::from_secs(stale_s),
        check_interval: Duration::from_secs(600),
        ..Default::default()
    }
}

async fn set_online(pool: &PgPool, slug: &str, last: DateTime<Utc>) {
    sqlx::query("UPDATE projects SET status = 'online', last_heartbeat_at = $2 WHERE slug = $1")
        .bind(slug)
        .bind(last)
        .execute(pool)
        .await
        .unwrap();
}

async fn status(pool: &PgPool, slug: &str) -> String {
    sqlx::query_scalar("SELECT status FROM projects WHERE slug = $1")
        .bind(slug)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// A service with hub `alpha` online, its last heartbeat at `t0` (now);
/// and `t0`.
async fn alpha_online() -> (TestApp, DateTime<Utc>) {
    let app = spawn_app().await;
    app.post_project(Some(ADMIN_KEY), &project("alpha")).await;
    let t0 = Utc::now().trunc_subsecs(6);
    set_online(&app.pool, "alpha", t0).await;
    (app, t0)
}

fn secs(s: i64) -> chrono::Duration {
    chrono::Duration::seconds(s)
}

#[tokio::test]
async fn silence_degrades_then_takes_offline_at_the_deadlines() {
    let app = spawn_app().await;
    for slug in ["alpha", "beta"] {
        app.post_project(Some(ADMIN_KEY), &project(slug)).await;
    }
    let t0 = Utc::now().trunc_subsecs(6);
    set_online(&app.pool, "alpha", t0).await;
    set_online(&app.pool, "beta", t0 + secs(20)).await;
    let sweeper = StaleSweeper::new(app.pool.clone(), CatalogView::new(false), &settings(45, 90));
    let sight = Some(t0 - secs(3600));

    // Just before alpha's degraded deadline: nothing; the next deadline is alpha's.
    let out = sweeper.sweep_once(t0 + secs(44), sight).await.unwrap();
    assert!(out.degraded.is_empty() && out.offline.is_empty());
    assert_eq!(out.next_deadline, Some(t0 + secs(45)));

    let out = sweeper.sweep_once(t0 + secs(46), sight).await.unwrap();
    assert_eq!(out.degraded, ["alpha"]);
    assert_eq!(status(&app.pool, "alpha").await, "degraded");
    assert_eq!(
        out.next_deadline,
        Some(t0 + secs(65)),
        "beta's degraded deadline comes next"
    );

    let out = sweeper.sweep_once(t0 + secs(91), sight).await.unwrap();
    assert_eq!(out.offline, ["alpha"]);
    assert_eq!(out.degraded, ["beta"]);
    assert_eq!(status(&app.pool, "alpha").await, "offline");

    // Long silence goes straight to offline.
    let out = sweeper.sweep_once(t0 + secs(500), sight).await.unwrap();
    assert_eq!(out.offline, ["beta"]);
    assert_eq!(out.next_deadline, None);

    let rows: Vec<(String, String, String, DateTime<Utc>)> = app.rows("SELECT p.slug, t.to_status, t.cause, t.at FROM project_transitions t JOIN projects p ON p.id = t.project_id ORDER BY p.slug, t.id").await;
    let summary: Vec<_> = rows
        .iter()
        .map(|r| (r.0.as_str(), r.1.as_str(), r.2.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("alpha", "degraded", "sweeper"),
            ("alpha", "offline", "sweeper"),
            ("beta", "degraded", "sweeper"),
            ("beta", "offline", "sweeper"),
        ]
    );
    assert_eq!(rows[1].3, t0 + secs(91));
    assert_eq!(
        app.count(
            "outbox WHERE event_type = 'federation.project.status' AND data->>'cause' = 'sweeper'"
        )
        .await,
        4
    );
    let data: Vec<serde_json::Value> = app
        .column(
            "SELECT data FROM outbox WHERE event_type = 'federation.project.status' ORDER BY seq",
        )
        .await;
    let typed: Vec<protocol::events::ProjectStatusData> = data
        .into_iter()
        .map(|d| serde_json::from_value(d).unwrap())
        .collect();
    let swept = typed
        .iter()
        .filter(|d| d.cause == protocol::events::StatusCause::Sweeper)
        .count();
    assert_eq!(swept, 4);
}

#[tokio::test]
async fn nothing_is_judged_while_blind_and_only_over_time_seen() {
    let (app, t0) = alpha_online().await;
    let sweeper = StaleSweeper::new(app.pool.clone(), CatalogView::new(false), &settings(45, 90));

    // Blind: an hour of silence changes nothing.
    let out = sweeper.sweep_once(t0 + secs(3600), None).await.unwrap();
    assert_eq!(out, Default::default());
    assert_eq!(status(&app.pool, "alpha").await, "online");

    // Sight regained at t0+1000: silence counts from there.
    let regained = Some(t0 + secs(1000));
    let sweep_at = |s: i64| sweeper.sweep_once(t0 + secs(s), regained);
    let out = sweep_at(1040).await.unwrap();
    assert!(out.degraded.is_empty(), "judged before degraded_after");
    assert_eq!(out.next_deadline, Some(t0 + secs(1045)));
    let out = sweep_at(1046).await.unwrap();
    assert_eq!(out.degraded, ["alpha"], "late by degraded_after of sight");
    assert!(out.offline.is_empty(), "offline only after a threshold");
    assert_eq!(out.next_deadline, Some(t0 + secs(1090)));
    let out = sweep_at(1091).await.unwrap();
    assert_eq!(out.offline, ["alpha"], "a real outage is still reported");
}

#[tokio::test]
async fn a_heartbeat_that_lands_while_the_sweep_waits_wins() {
    let (app, t0) = alpha_online().await;
    // A writer holds the row, as the flusher would mid-statement.
    let mut tx = app.pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM projects WHERE slug = 'alpha' FOR UPDATE")
        .execute(&mut *tx)
        .await
        .unwrap();
    let sweeper = StaleSweeper::new(app.pool.clone(), CatalogView::new(false), &settings(45, 90));
    let sweep = tokio::spawn(async move {
        sweeper
            .sweep_once(t0 + secs(100), Some(t0 - secs(3600)))
            .await
    });
    // The sweep is now blocked on the row lock; the writer records a fresh heartbeat.
    testkit::eventually(
        Duration::from_secs(10),
        "the sweep to wait on the row lock",
        || async {
            let waiting: i64 = app
                .value("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
                .await;
            (waiting > 0).then_some(())
        },
    )
    .await;
    sqlx::query("UPDATE projects SET last_heartbeat_at = $1 WHERE slug = 'alpha'")
        .bind(t0 + secs(99))
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let out = sweep.await.unwrap().unwrap();
    assert!(out.offline.is_empty() && out.degraded.is_empty(), "{out:?}");
    assert_eq!(status(&app.pool, "alpha").await, "online");
}

#[tokio::test]
async fn the_running_sweeper_meets_deadlines_whatever_the_check_interval() {
    // check_interval of 10 minutes: only deadline wake-ups can meet 1 s.
    let r = rig("heartbeat:\n  degraded_after: 1s\n  stale_threshold: 2s\n  check_interval: 10m\n  min_threshold: 1s\n  max_threshold: 2s\n")
        .await;
    r.register("alpha").await;
    // Sight must be older than the threshold before the hub goes silent.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    r.beat("alpha", "online").await;
    r.wait_status("alpha", "online").await;
    r.wait_status("alpha", "offline").await;
    let rows: Vec<(String, DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT t.to_status, t.at, p.last_heartbeat_at FROM project_transitions t JOIN projects p ON p.id = t.project_id \
         WHERE t.cause = 'sweeper' ORDER BY t.id",
    )
    .fetch_all(&r.app.pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    for ((to, at, last), deadline) in rows.iter().zip([1, 2]) {
        let late = *at - *last - secs(deadline);
        assert!(
            late >= chrono::Duration::zero() && late < secs(1),
            "{to} {late:?} after its deadline"
        );
    }
    let text = r.app.get_text("/metrics", None).await;
    assert_eq!(metric_value(&text, "stale_projects_total"), 1.0);
    assert_eq!(metric_value(&text, "sweeper_leader"), 1.0);
    assert_eq!(
        metric_value(
            &text,
            "project_status_transitions_total{to=\"degraded\",cause=\"sweeper\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn a_nats_outage_marks_nobody_offline_and_says_so() {
    let mut r =
        rig("heartbeat:\n  degraded_after: 1s\n  stale_threshold: 2s\n  check_interval: 1s\n  min_threshold: 1s\n  max_threshold: 2s\n")
            .await;
    r.online("alpha").await;
    r.nats.kill().await;

    // Blind: self-preservation is announced in /ready (which stays 200: the
    // REST API does not need NATS), the metric and the log; the hub is not
    // judged.
    testkit::eventually(
        Duration::from_secs(20),
        "self-preservation to be reported",
        || async {
            let res = r.app.get("/ready", None).await;
            let ok = res.status() == 200;
            let ready: serde_json::Value = res.json().await.ok()?;
            let warned = ready["warnings"].as_array()?.iter().any(|w| {
                w.as_str()
                    .is_some_and(|w| w.starts_with("self-preservation:"))
            });
            let warned = warned && ok;
            let text = r.app.get("/metrics", None).await.text().await.ok()?;
            (warned && metric_value(&text, "sweeper_self_preservation") == 1.0).then_some(())
        },
    )
    .await;
    // Three thresholds of silence while blind.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let p = r.project("alpha").await;
    assert_eq!(p["status"], "online", "marked {} while blind", p["status"]);

    // Back: after a full threshold of sight with no heartbeat, the outage is real.
    r.nats.restart().await;
    r.wait_status("alpha", "offline").await;
    let at: DateTime<Utc> = r
        .app
        .value("SELECT at FROM project_transitions WHERE to_status = 'offline'")
        .await;
    let last: DateTime<Utc> = r
        .app
        .value("SELECT last_heartbeat_at FROM projects WHERE slug = 'alpha'")
        .await;
    assert!(
        at - last >= secs(8),
        "offline {:?} after the last heartbeat: judged during the outage",
        at - last
    );
    let ready: serde_json::Value = r.app.get_value("/ready", None).await;
    assert_eq!(
        ready["warnings"],
        serde_json::json!([service::config::OPEN_NATS_WARNING])
    );
}
