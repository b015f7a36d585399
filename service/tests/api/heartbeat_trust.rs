//! The heartbeat path as users of the original service meet it: their
//! payloads accepted unchanged, omitted fields never erasing what is stored,
//! a heartbeat the database refuses isolated from the others, a flusher that
//! cannot write taking the service out of `/ready`, and every write visible
//! through REST as soon as it commits, on this replica and on others.

use std::time::Duration;

use serde_json::{json, Value};
use testkit::eventually;

use crate::heartbeats::{payload, rig};
use crate::helpers::*;

#[tokio::test]
async fn the_original_services_documented_heartbeat_is_accepted_unchanged() {
    let r = rig("").await;
    r.register("commandcenter").await;
    // The example of the original's schema (app/schemas/heartbeat.py), verbatim:
    // no status, an optional timestamp and hub_url.
    let original = r#"{"project_slug":"commandcenter","mesh_namespace":"hub.commandcenter","timestamp":"2025-11-18T04:00:00Z","hub_url":"http://localhost:3000"}"#;
    r.publish("hub.presence.commandcenter", original.as_bytes().to_vec())
        .await;
    let p = r.wait_status("commandcenter", "online").await;
    assert_eq!(p["hub_timestamp"], "2025-11-18T04:00:00Z");
    assert_eq!(r.metric("heartbeat_total").await, 1.0);
    // The bare minimum the original requires, and offsets with fractions.
    for body in [
        json!({"project_slug": "commandcenter"}),
        json!({"project_slug": "commandcenter", "timestamp": "2025-11-18T06:00:00.5+02:00"}),
        json!({"project_slug": "CommandCenter", "timestamp": "not a date", "extra": [1, 2]}),
    ] {
        r.publish("hub.presence.commandcenter", body.to_string().into_bytes())
            .await;
    }
    r.wait_metric("heartbeat_total", 4.0).await;
    let p = r.project("commandcenter").await;
    assert_eq!(p["status"], "online");
    // The unparseable timestamp was not stored: the last date given stays.
    assert_eq!(p["hub_timestamp"], "2025-11-18T04:00:00.500Z");
    let rejected: f64 = r
        .metric("heartbeat_rejected_total{reason=\"wrong_type\"}")
        .await;
    assert_eq!(rejected, 0.0);
}

#[tokio::test]
async fn a_field_left_out_never_erases_what_is_stored() {
    let r = rig("").await;
    let full = r.online("alpha").await;
    assert_eq!(full["agent_id"], "test-agent");
    r.publish(
        "hub.presence.alpha",
        json!({"project_slug": "alpha", "status": "degraded"})
            .to_string()
            .into_bytes(),
    )
    .await;
    let p = r.wait_status("alpha", "degraded").await;
    for field in [
        "hub_url",
        "agent_id",
        "agent_version",
        "heartbeat_seq",
        "heartbeat_interval_s",
        "hub_timestamp",
    ] {
        assert_eq!(p[field], full[field], "{field} was erased");
    }
    assert_ne!(p["last_heartbeat_at"], full["last_heartbeat_at"]);
}

#[tokio::test]
async fn heartbeats_that_would_break_the_database_are_refused_by_validation() {
    let r = rig("").await;
    r.register("alpha").await;
    let good = String::from_utf8(payload("alpha", "online")).unwrap();
    // Each of these, accepted by the previous release, made every batch fail.
    let cases = [
        (good.replace("test-agent", "test\\u0000agent"), "bad_text"),
        (good.replace("9.9.9", "9\\u0000"), "bad_text"),
        (
            good.replace("http://alpha.example:9001", "http://alpha\\u0000.example"),
            "bad_url",
        ),
        (
            good.replace("2026-01-01T00:00:00Z", "1900-01-01T00:00:00Z"),
            "bad_timestamp",
        ),
        (good.replace("\"seq\":1", "\"seq\":-5"), "out_of_range"),
        (
            good.replace("\"interval_s\":30", "\"interval_s\":0"),
            "out_of_range",
        ),
    ];
    for (body, _) in &cases {
        r.publish("hub.presence.alpha", body.clone().into_bytes())
            .await;
    }
    for reason in ["bad_text", "bad_url", "bad_timestamp", "out_of_range"] {
        let want = cases.iter().filter(|(_, r)| *r == reason).count() as f64;
        r.wait_metric(
            &format!("heartbeat_rejected_total{{reason=\"{reason}\"}}"),
            want,
        )
        .await;
    }
    // And the pipeline still flows.
    r.beat("alpha", "online").await;
    r.wait_status("alpha", "online").await;
}

#[tokio::test]
async fn a_heartbeat_the_database_refuses_is_isolated_and_the_others_are_written() {
    let r = rig("").await;
    for slug in ["alpha", "beta", "gamma"] {
        r.register(slug).await;
    }
    // A rule the validation does not know: only the database refuses this one.
    sqlx::query(
        "ALTER TABLE projects ADD CONSTRAINT no_poison CHECK (agent_id IS DISTINCT FROM 'poison')",
    )
    .execute(&r.app.pool)
    .await
    .unwrap();
    let poison = String::from_utf8(payload("beta", "online"))
        .unwrap()
        .replace("test-agent", "poison");
    // All three in flight at once, so they share a batch.
    r.client
        .publish("hub.presence.alpha", payload("alpha", "online").into())
        .await
        .unwrap();
    r.client
        .publish("hub.presence.beta", poison.into_bytes().into())
        .await
        .unwrap();
    r.client
        .publish("hub.presence.gamma", payload("gamma", "online").into())
        .await
        .unwrap();
    r.client.flush().await.unwrap();
    r.wait_status("alpha", "online").await;
    r.wait_status("gamma", "online").await;
    r.wait_metric("heartbeat_rejected_total{reason=\"db_rejected\"}", 1.0)
        .await;
    assert_eq!(r.project("beta").await["status"], "offline");
    // It is dropped, not retried forever: later heartbeats still flow.
    r.beat("beta", "online").await;
    r.wait_status("beta", "online").await;
    assert_eq!(r.metric("heartbeat_total").await, 3.0);
    let ready = r.app.get("/ready", None).await;
    assert_eq!(ready.status(), 200);
}

#[tokio::test]
async fn a_flusher_that_cannot_write_takes_the_service_out_of_ready_until_it_can() {
    let r = rig("heartbeat:\n  write_failure_grace: 1s\n").await;
    r.register("alpha").await;
    // The schema is broken under the service's feet (a botched manual
    // change): every write fails, for a reason that is not in the data.
    sqlx::query("ALTER TABLE projects RENAME COLUMN agent_version TO agent_version_gone")
        .execute(&r.app.pool)
        .await
        .unwrap();
    r.beat("alpha", "online").await;
    let reasons = eventually(Duration::from_secs(20), "/ready to fail", || async {
        let res = r.app.get("/ready", None).await;
        if res.status() != 503 {
            return None;
        }
        let body: Value = res.json().await.ok()?;
        let reasons = body["reasons"].to_string();
        reasons
            .contains("heartbeats: cannot be written")
            .then_some(reasons)
    })
    .await;
    assert_contains(&reasons, "agent_version");
    assert!(r.metric("heartbeat_flush_errors_total").await >= 1.0);
    assert_eq!(
        r.metric("heartbeat_rejected_total{reason=\"db_rejected\"}")
            .await,
        0.0,
        "not the data's fault: nothing may be dropped"
    );
    // Repaired: the pending heartbeat is written, and the service is ready.
    sqlx::query("ALTER TABLE projects RENAME COLUMN agent_version_gone TO agent_version")
        .execute(&r.app.pool)
        .await
        .unwrap();
    r.wait_status("alpha", "online").await;
    eventually(Duration::from_secs(20), "/ready to recover", || async {
        (r.app.get("/ready", None).await.status() == 200).then_some(())
    })
    .await;
    assert_eq!(r.metric("heartbeat_total").await, 1.0);
}

#[tokio::test]
async fn a_write_shows_through_rest_on_another_replica_without_polling() {
    // Replica A ingests; replica B (no NATS) only serves REST on the same
    // database, with its periodic resync off: only the push can tell it.
    let r = rig("").await;
    r.register("alpha").await;
    let b = spawn_on_same_db(&r.app.db.url, "catalog:\n  resync_interval: 0s\n").await;
    let read_b = |slug: &'static str| {
        let path = format!("/api/fed/projects/{slug}");
        let b = &b;
        async move { b.api.try_value(&path, Some(ADMIN_KEY)).await }
    };
    assert_eq!(read_b("alpha").await.unwrap()["status"], "offline");
    r.beat("alpha", "degraded").await;
    eventually(Duration::from_secs(10), "replica B to see it", || async {
        let p = read_b("alpha").await?;
        (p["status"] == "degraded" && p["agent_id"] == "test-agent").then_some(())
    })
    .await;
    // A registration on A, then a deletion on A.
    r.register("beta").await;
    eventually(Duration::from_secs(10), "B to see beta", || async {
        read_b("beta").await.filter(|p| p["slug"] == "beta")
    })
    .await;
    r.app
        .delete("/api/fed/projects/beta", Some(ADMIN_KEY))
        .await;
    eventually(Duration::from_secs(10), "B to lose beta", || async {
        let list = b.api.try_value("/api/fed/projects", Some(ADMIN_KEY));
        let list = list.await?;
        (list.as_array()?.len() == 1).then_some(())
    })
    .await;
    b.stop().await;
}

/// A second service on the database at `url`, REST only, once ready.
async fn spawn_on_same_db(url: &str, extra: &str) -> ReplicaB {
    let started = start_on(url, extra, Vec::new()).await;
    let ready = format!("{}/ready", started.base);
    testkit::wait_ok(&ready, Duration::from_secs(30), "replica B to be ready").await;
    ReplicaB {
        api: Api::at(&started.base),
        started,
    }
}

struct ReplicaB {
    api: Api,
    started: Started,
}

impl ReplicaB {
    async fn stop(self) {
        self.started.stop().await;
    }
}

#[tokio::test]
async fn a_refused_batch_is_split_until_the_culprit_stands_alone() {
    use service::ingest::coalescer::Pending;
    use service::ingest::write::apply_isolating;

    let app = spawn_app().await;
    let slugs: Vec<String> = (0..9).map(|i| format!("h{i}")).collect();
    for slug in &slugs {
        app.post_project(Some(ADMIN_KEY), &project(slug)).await;
    }
    app.sql(
        "ALTER TABLE projects ADD CONSTRAINT no_poison CHECK (agent_id IS DISTINCT FROM 'poison')",
    )
    .await;
    let batch: Vec<Pending> = slugs
        .iter()
        .map(|slug| {
            let mut heartbeat = protocol::Heartbeat::parse(
                &format!("hub.presence.{slug}"),
                &payload(slug, "online"),
                4096,
            )
            .unwrap();
            if slug == "h3" || slug == "h7" {
                heartbeat.agent_id = Some("poison".into());
            }
            Pending {
                heartbeat,
                received_at: chrono::Utc::now(),
                count: 2,
            }
        })
        .collect();
    let done = apply_isolating(&app.pool, batch, false).await;
    assert!(done.error.is_none(), "{:?}", done.error);
    assert!(done.unwritten.is_empty());
    let mut refused: Vec<_> = done
        .refused
        .iter()
        .map(|(p, _)| p.heartbeat.project_slug.as_str())
        .collect();
    refused.sort();
    assert_eq!(refused, ["h3", "h7"]);
    assert!(
        done.refused[0].1.contains("no_poison"),
        "{}",
        done.refused[0].1
    );
    assert_eq!(done.outcome.hubs(), 7);
    assert_eq!(done.outcome.messages, 14);
    assert_eq!(app.count("projects WHERE status = 'online'").await, 7);
}
