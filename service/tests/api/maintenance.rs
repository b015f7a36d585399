//! `PUT`/`DELETE /api/fed/projects/{slug}/maintenance`: a hub in a window
//! is not judged by the sweeper, shows its window, ends it by itself at
//! `until` and is judged from then on; start and stop leave a transition,
//! an event and an audit row.

use chrono::{DateTime, SubsecRound, Utc};
use protocol::events::{MaintenanceChange, ProjectMaintenanceData};
use serde_json::{json, Value};
use service::auth::fingerprint;

use crate::helpers::*;
use crate::history::{beat_at, sweeper_of};

const PATH: &str = "/api/fed/projects/alpha/maintenance";

fn secs(s: i64) -> chrono::Duration {
    chrono::Duration::seconds(s)
}

async fn status(app: &TestApp, slug: &str) -> String {
    app.value_of("SELECT status FROM projects WHERE slug = $1", slug)
        .await
}

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .to_utc()
}

async fn maintenance_events(app: &TestApp) -> Vec<ProjectMaintenanceData> {
    let data: Vec<Value> = app.column("SELECT data FROM outbox WHERE event_type = 'federation.project.maintenance' ORDER BY seq").await;
    data.into_iter()
        .map(|d| serde_json::from_value(d).unwrap())
        .collect()
}

#[tokio::test]
async fn a_hub_in_maintenance_stays_as_it_was_and_is_judged_from_the_end_of_the_window() {
    let (app, t0) = spawn_with_hubs(&["alpha", "beta"]).await;
    beat_at(&app.pool, "alpha", "online", t0).await;
    beat_at(&app.pool, "beta", "online", t0).await;
    let body = app
        .start_maintenance("alpha", &json!({"duration": "1h", "reason": "rack move"}))
        .await;
    let until = time(&body["maintenance"]["until"]);
    assert!(
        until >= t0 + secs(3600) && until < t0 + secs(3660),
        "{body}"
    );

    let sweeper = sweeper_of(&app.pool, 45, 90);
    let sight = Some(t0 - secs(3600));
    // Silent far past the stale threshold: beta goes, alpha stays.
    let out = sweeper.sweep_once(t0 + secs(600), sight).await.unwrap();
    assert_eq!(out.offline, ["beta"]);
    assert!(out.degraded.is_empty());
    assert_eq!(status(&app, "alpha").await, "online");
    assert_eq!(
        out.next_deadline,
        Some(until),
        "the window's end is the next deadline"
    );
    // A heartbeat during the window is recorded as usual.
    beat_at(&app.pool, "alpha", "online", t0 + secs(700)).await;
    // (written past this app's flusher: its view follows the notification)
    app.wait_value(
        (
            "/api/fed/projects/alpha",
            std::time::Duration::from_secs(10),
            "the heartbeat in the view",
        ),
        |p| Some(time(&p["last_heartbeat_at"]) == t0 + secs(700)),
    )
    .await;
    let got = app.get_ok("/api/fed/projects/alpha", Some(AGENT_KEY)).await;
    assert_eq!(got["maintenance"]["reason"], "rack move");
    let out = sweeper.sweep_once(until - secs(1), sight).await.unwrap();
    assert!(out.degraded.is_empty() && out.offline.is_empty() && out.windows_ended.is_empty());
    assert_eq!(status(&app, "alpha").await, "online");

    // The window runs out: ended, recorded, and the hub is judged from
    // `until`, not from its last heartbeat long before.
    let out = sweeper.sweep_once(until + secs(1), sight).await.unwrap();
    assert_eq!(out.windows_ended, ["alpha"]);
    assert!(out.degraded.is_empty() && out.offline.is_empty());
    assert_eq!(status(&app, "alpha").await, "online");
    assert_eq!(out.next_deadline, Some(until + secs(45)));
    app.wait_value(
        (
            "/api/fed/projects/alpha",
            std::time::Duration::from_secs(10),
            "the view drops the window",
        ),
        |p| Some(p["maintenance"].is_null()),
    )
    .await;
    let out = sweeper.sweep_once(until + secs(46), sight).await.unwrap();
    assert_eq!(out.degraded, ["alpha"]);
    let out = sweeper.sweep_once(until + secs(91), sight).await.unwrap();
    assert_eq!(out.offline, ["alpha"]);

    let events = maintenance_events(&app).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].change, MaintenanceChange::Ended);
    assert_eq!(events[1].ended_by.as_deref(), Some("system:maintenance"));
    assert_eq!(events[1].at, until);
    assert_eq!(
        app.count(
            "audit_log WHERE action = 'project.maintenance.end' AND actor = 'system:maintenance'"
        )
        .await,
        1
    );
    let history = app
        .get_ok("/api/fed/projects/alpha/history", Some(ADMIN_KEY))
        .await;
    let causes = strings(&history["transitions"], "cause");
    assert_eq!(
        causes,
        [
            "sweeper",
            "sweeper",
            "maintenance",
            "maintenance",
            "heartbeat"
        ]
    );
}

#[tokio::test]
async fn start_and_stop_show_the_window_and_leave_transitions_events_and_audit_rows() {
    let app = spawn_app().await;
    app.create_project(&project("alpha")).await;
    let admin = fingerprint(ADMIN_KEY);
    let until = (Utc::now() + secs(7200)).trunc_subsecs(0);
    let body = app
        .start_maintenance(
            "alpha",
            &json!({"until": until.to_rfc3339(), "reason": "  kernel upgrade "}),
        )
        .await;
    assert_eq!(body["slug"], "alpha");
    assert_eq!(time(&body["maintenance"]["until"]), until);
    assert_eq!(body["maintenance"]["reason"], "kernel upgrade");
    assert_eq!(body["maintenance"]["by"], admin.as_str());
    let since = time(&body["maintenance"]["since"]);

    // Fresh in the reads, one and all.
    let got = app.get_ok("/api/fed/projects/alpha", Some(AGENT_KEY)).await;
    assert_eq!(got["maintenance"], body["maintenance"]);
    let list = app.get_ok("/api/fed/projects", Some(AGENT_KEY)).await;
    assert_eq!(list[0]["maintenance"], body["maintenance"]);

    // Extending keeps `since`.
    let body = app
        .start_maintenance("alpha", &json!({"duration": "3h", "reason": "longer"}))
        .await;
    assert_eq!(time(&body["maintenance"]["since"]), since);
    assert_eq!(body["maintenance"]["reason"], "longer");

    let res = app.delete(PATH, Some(ADMIN_KEY)).await;
    assert_eq!(res.status(), 204);
    let got = app.get_ok("/api/fed/projects/alpha", Some(AGENT_KEY)).await;
    assert_eq!(got["maintenance"], Value::Null);
    // Not in maintenance any more: 204 again, and nothing recorded.
    assert_eq!(app.delete_status(PATH, Some(ADMIN_KEY)).await, 204);

    let events = maintenance_events(&app).await;
    let changes: Vec<_> = events.iter().map(|e| e.change).collect();
    assert_eq!(
        changes,
        [
            MaintenanceChange::Started,
            MaintenanceChange::Started,
            MaintenanceChange::Ended
        ]
    );
    assert!(events.iter().all(|e| e.slug == "alpha" && e.by == admin));
    assert_eq!(events[2].ended_by.as_deref(), Some(admin.as_str()));
    let subjects: Vec<Option<String>> = app
        .column("SELECT ce_subject FROM outbox WHERE event_type = 'federation.project.maintenance'")
        .await;
    assert!(subjects.iter().all(|s| s.as_deref() == Some("alpha")));

    let audit: Vec<(String, String, String)> = app.rows("SELECT actor, action, target FROM audit_log WHERE action LIKE 'project.maintenance%' ORDER BY id").await;
    let start = (
        admin.clone(),
        "project.maintenance.start".to_owned(),
        "project:alpha".to_owned(),
    );
    let end = (
        admin.clone(),
        "project.maintenance.end".to_owned(),
        "project:alpha".to_owned(),
    );
    assert_eq!(audit, [start.clone(), start, end]);

    let history = app
        .get_ok("/api/fed/projects/alpha/history", Some(ADMIN_KEY))
        .await;
    let rows: Vec<(&str, &str)> = history["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["cause"].as_str().unwrap(), t["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(rows, [("maintenance", admin.as_str()); 3]);
}

#[tokio::test]
async fn maintenance_requests_are_checked_and_bad_ones_change_nothing() {
    let app = spawn_app().await;
    app.create_project(&project("alpha")).await;
    let ok = json!({"duration": "2h", "reason": "upgrade"});

    // Agent keys may not; no key at all is 401.
    assert_problem(app.put_json(PATH, Some(AGENT_KEY), &ok).await, 403).await;
    assert_problem(app.delete(PATH, Some(AGENT_KEY)).await, 403).await;
    assert_problem(app.put_json(PATH, None, &ok).await, 401).await;
    // Unknown project.
    let res = app
        .put_json("/api/fed/projects/nobody/maintenance", Some(ADMIN_KEY), &ok)
        .await;
    assert_problem(res, 404).await;
    assert_problem(
        app.delete("/api/fed/projects/nobody/maintenance", Some(ADMIN_KEY))
            .await,
        404,
    )
    .await;
    // Not in maintenance: nothing to end (and nothing recorded, below).
    assert_eq!(app.delete_status(PATH, Some(ADMIN_KEY)).await, 204);

    let past = (Utc::now() - secs(60)).to_rfc3339();
    let far = (Utc::now() + secs(31 * 24 * 3600)).to_rfc3339();
    for (body, fields) in [
        (json!({"until": past, "reason": "x"}), vec!["until"]),
        (json!({"until": far, "reason": "x"}), vec!["until"]),
        (json!({"until": "tomorrow", "reason": "x"}), vec!["until"]),
        (json!({"reason": "x"}), vec!["until"]),
        (
            json!({"until": (Utc::now() + secs(60)).to_rfc3339(), "duration": "1h", "reason": "x"}),
            vec!["duration"],
        ),
        (json!({"duration": "soon", "reason": "x"}), vec!["duration"]),
        (json!({"duration": "0s", "reason": "x"}), vec!["duration"]),
        (json!({"duration": "31d", "reason": "x"}), vec!["duration"]),
        (json!({"duration": "1h", "reason": "   "}), vec!["reason"]),
        (
            json!({"duration": "1h", "reason": "a".repeat(501)}),
            vec!["reason"],
        ),
        (json!({"duration": "1h"}), vec!["reason"]),
        (
            json!({"duration": "1h", "reason": "x", "by": "me"}),
            vec!["by"],
        ),
    ] {
        let res = app.put_json(PATH, Some(ADMIN_KEY), &body).await;
        let problem = assert_problem(res, 422).await;
        assert_eq!(error_fields(&problem), fields, "{body}");
    }
    app.assert_counts(
        &[
            ("project_transitions", 0),
            (
                "outbox WHERE event_type = 'federation.project.maintenance'",
                0,
            ),
            ("audit_log WHERE action LIKE 'project.maintenance%'", 0),
            ("projects WHERE maintenance IS NOT NULL", 0),
        ],
        "refused requests",
    )
    .await;
}

#[tokio::test]
async fn hubs_in_maintenance_are_counted_for_metrics() {
    let app = spawn_app().await;
    app.create_projects(&["alpha", "beta", "gamma"]).await;
    for slug in ["alpha", "beta"] {
        app.start_maintenance(slug, &json!({"duration": "1h", "reason": "racks"}))
            .await;
    }
    let text = app.get_text("/metrics", None).await;
    assert!(
        text.lines()
            .any(|l| l == "catalog_projects_in_maintenance 2"),
        "{text}"
    );
}

#[tokio::test]
async fn a_window_stopped_early_judges_silence_from_the_stop() {
    let (app, now) = spawn_with_hubs(&["alpha"]).await;
    let t0 = now - secs(3600);
    beat_at(&app.pool, "alpha", "online", t0).await;
    let ok = json!({"duration": "2h", "reason": "upgrade"});
    assert_eq!(app.put_json(PATH, Some(ADMIN_KEY), &ok).await.status(), 200);
    let before = Utc::now();
    assert_eq!(app.delete_status(PATH, Some(ADMIN_KEY)).await, 204);
    let after = Utc::now().trunc_subsecs(6);

    let sweeper = sweeper_of(&app.pool, 45, 90);
    let sight = Some(t0 - secs(3600));
    // An hour silent, but the window ended moments ago.
    let out = sweeper.sweep_once(before + secs(10), sight).await.unwrap();
    assert!(out.degraded.is_empty() && out.offline.is_empty(), "{out:?}");
    assert_eq!(status(&app, "alpha").await, "online");
    let out = sweeper.sweep_once(after + secs(46), sight).await.unwrap();
    assert_eq!(out.degraded, ["alpha"]);
    // Heard from again: silence counts from that heartbeat.
    beat_at(&app.pool, "alpha", "online", after + secs(50)).await;
    let out = sweeper.sweep_once(after + secs(60), sight).await.unwrap();
    assert_eq!(out.next_deadline, Some(after + secs(50) + secs(45)));
}
