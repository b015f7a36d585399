//! Heartbeats through a real nats-server into a real PostgreSQL, in-process.

use std::time::Duration;

use serde_json::{json, Value};
use testkit::{eventually, NatsServer};

use crate::helpers::*;

pub fn payload(slug: &str, status: &str) -> Vec<u8> {
    json!({
        "project_slug": slug,
        "mesh_namespace": format!("hub.{slug}"),
        "hub_url": format!("http://{slug}.example:9001"),
        "status": status,
        "timestamp": "2026-01-01T00:00:00Z",
        "agent_id": "test-agent",
        "seq": 1,
        "interval_s": 30,
        "version": "9.9.9",
    })
    .to_string()
    .into_bytes()
}

pub struct Rig {
    pub nats: NatsServer,
    pub client: async_nats::Client,
    pub app: TestApp,
}

pub async fn rig(extra: &str) -> Rig {
    let nats = NatsServer::start().await;
    let app = spawn_app_yaml(&format!("nats:\n  url: \"{}\"\n{extra}", nats.url())).await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    // The service subscribes after start-up; wait until it hears us.
    Rig { nats, client, app }
}

impl Rig {
    pub async fn publish(&self, subject: &str, body: Vec<u8>) {
        self.client
            .publish(subject.to_owned(), body.into())
            .await
            .unwrap();
        self.client.flush().await.unwrap();
    }

    pub async fn beat(&self, slug: &str, status: &str) {
        self.publish(&format!("hub.presence.{slug}"), payload(slug, status))
            .await;
    }

    pub async fn register(&self, slug: &str) {
        self.app.create_project(&project(slug)).await;
    }

    /// Registers the hub, beats once and waits until it is online.
    pub async fn online(&self, slug: &str) -> Value {
        self.register(slug).await;
        self.beat(slug, "online").await;
        self.wait_status(slug, "online").await
    }

    pub async fn project(&self, slug: &str) -> Value {
        self.app
            .get_value(&format!("/api/fed/projects/{slug}"), Some(ADMIN_KEY))
            .await
    }

    pub async fn wait_status(&self, slug: &str, status: &str) -> Value {
        eventually(
            Duration::from_secs(20),
            &format!("{slug} to be {status}"),
            || async {
                let p = self.project(slug).await;
                (p["status"] == status).then_some(p)
            },
        )
        .await
    }

    pub async fn metric(&self, line_prefix: &str) -> f64 {
        metric_value(&self.app.get_text("/metrics", None).await, line_prefix)
    }

    pub async fn wait_metric(&self, line_prefix: &str, want: f64) {
        eventually(
            Duration::from_secs(20),
            &format!("{line_prefix} = {want}"),
            || async { (self.metric(line_prefix).await == want).then_some(()) },
        )
        .await
    }
}

/// The value of the first sample line starting with `prefix` (0 if absent).
pub fn metric_value(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix) && l[prefix.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_heartbeat_makes_a_registered_hub_online_with_its_details() {
    let r = rig("").await;
    let p = r.online("alpha").await;
    assert!(p["last_heartbeat_at"].is_string());
    assert_eq!(p["agent_id"], "test-agent");
    assert_eq!(p["agent_version"], "9.9.9");
    assert_eq!(p["heartbeat_seq"], 1);
    assert_eq!(p["heartbeat_interval_s"], 30);
    assert_eq!(p["hub_timestamp"], "2026-01-01T00:00:00Z");
    r.wait_metric("heartbeat_total", 1.0).await;

    // The change is recorded with its time, and announced.
    let (from, to, cause): (String, String, String) = r
        .app
        .row("SELECT from_status, to_status, cause FROM project_transitions")
        .await;
    assert_eq!(
        (from.as_str(), to.as_str(), cause.as_str()),
        ("offline", "online", "heartbeat")
    );
    let data: Value = r
        .app
        .value("SELECT data FROM outbox WHERE event_type = 'federation.project.status'")
        .await;
    assert_eq!(data["slug"], "alpha");
    assert_eq!(data["to"], "online");
    let typed: protocol::events::ProjectStatusData = serde_json::from_value(data.clone()).unwrap();
    assert_eq!(
        (typed.from.as_str(), typed.cause),
        ("offline", protocol::events::StatusCause::Heartbeat)
    );
    assert!(typed.last_heartbeat_at.is_some());
    assert!(
        r.metric("project_status_transitions_total{to=\"online\",cause=\"heartbeat\"}")
            .await
            >= 1.0
    );
}

#[tokio::test]
async fn what_the_hub_says_is_its_status() {
    let r = rig("").await;
    r.register("alpha").await;
    r.beat("alpha", "degraded").await;
    r.wait_status("alpha", "degraded").await;
    r.beat("alpha", "online").await;
    r.wait_status("alpha", "online").await;
    // A clean shutdown says offline: no waiting for the threshold.
    r.beat("alpha", "offline").await;
    r.wait_status("alpha", "offline").await;
    assert_eq!(
        r.app.count("project_transitions").await,
        3,
        "offline→degraded→online→offline"
    );
}

#[tokio::test]
async fn every_rejection_reason_is_counted_and_writes_nothing() {
    let r = rig("").await;
    r.register("alpha").await;
    r.register("beta").await;
    let good = String::from_utf8(payload("alpha", "online")).unwrap();
    let cases: Vec<(&str, String, &str)> = vec![
        ("hub.presence.alpha", format!("{good:<5000}"), "too_large"),
        ("hub.presence.alpha", "not json".into(), "not_json"),
        (
            "hub.presence.alpha",
            good.replace("\"online\"", "7"),
            "wrong_type",
        ),
        ("hub.presence.Alpha", good.clone(), "bad_slug"),
        (
            "hub.presence.alpha",
            String::from_utf8(payload("beta", "online")).unwrap(),
            "subject_mismatch",
        ),
        (
            "hub.presence.alpha",
            good.replace("hub.alpha", "hub.beta"),
            "namespace_mismatch",
        ),
        (
            "hub.presence.alpha",
            good.replace("http://alpha.example:9001", "ftp://x"),
            "bad_url",
        ),
        (
            "hub.presence.alpha",
            good.replace("\"online\"", "\"asleep\""),
            "bad_status",
        ),
        (
            "hub.presence.gamma",
            String::from_utf8(payload("gamma", "online")).unwrap(),
            "unknown_project",
        ),
    ];
    for (subject, body, _) in &cases {
        r.publish(subject, body.clone().into_bytes()).await;
    }
    for (_, _, reason) in &cases {
        r.wait_metric(
            &format!("heartbeat_rejected_total{{reason=\"{reason}\"}}"),
            1.0,
        )
        .await;
    }
    assert_eq!(r.metric("heartbeat_total").await, 0.0);
    let touched: i64 = r.app.value("SELECT count(*) FROM projects WHERE last_heartbeat_at IS NOT NULL OR status <> 'offline'").await;
    assert_eq!(touched, 0, "a rejected heartbeat touched a project");
    assert_eq!(r.app.count("projects WHERE slug = 'gamma'").await, 0);
    assert!(r
        .app
        .outbox_types()
        .await
        .iter()
        .all(|t| t == "federation.project.registered"));
}

#[tokio::test]
async fn one_hub_never_speaks_for_another() {
    let r = rig("").await;
    r.register("alpha").await;
    r.register("beta").await;
    // alpha's subject, beta's payload (and the reverse): both refused.
    r.publish("hub.presence.alpha", payload("beta", "online"))
        .await;
    r.publish("hub.presence.beta", payload("alpha", "offline"))
        .await;
    r.wait_metric("heartbeat_rejected_total{reason=\"subject_mismatch\"}", 2.0)
        .await;
    // A correct heartbeat afterwards proves the pipeline was flowing.
    r.beat("alpha", "online").await;
    r.wait_status("alpha", "online").await;
    let beta = r.project("beta").await;
    assert_eq!(beta["status"], "offline");
    assert!(beta["last_heartbeat_at"].is_null());
}

#[tokio::test]
async fn unknown_hubs_are_registered_from_their_first_heartbeat_when_enabled() {
    let r = rig("heartbeat:\n  auto_register: true\n").await;
    r.beat("newhub", "online").await;
    let p = r.wait_status("newhub", "online").await;
    assert_eq!(p["mesh_namespace"], "hub.newhub");
    assert_eq!(p["hub_url"], "http://newhub.example:9001");
    let types = r.app.outbox_types().await;
    assert_eq!(types, ["federation.project.registered"]);
}

#[tokio::test]
async fn a_burst_is_coalesced_and_every_message_counted() {
    let r = rig("").await;
    for i in 0..10 {
        r.register(&format!("hub{i}")).await;
    }
    for round in 0..200 {
        for i in 0..10 {
            let status = if round == 199 { "degraded" } else { "online" };
            let slug = format!("hub{i}");
            r.client
                .publish(
                    format!("hub.presence.{slug}"),
                    payload(&slug, status).into(),
                )
                .await
                .unwrap();
        }
    }
    r.client.flush().await.unwrap();
    r.wait_metric("heartbeat_total", 2000.0).await;
    // The last word of each hub wins.
    for i in 0..10 {
        r.wait_status(&format!("hub{i}"), "degraded").await;
    }
    let text = r.app.get_text("/metrics", None).await;
    let batches = metric_value(&text, "heartbeat_batch_size_count");
    assert!(
        (1.0..2000.0).contains(&batches),
        "{batches} statements for 2000 heartbeats"
    );
    let rows = metric_value(&text, "heartbeat_batch_size_sum");
    assert!(
        (10.0..2000.0).contains(&rows),
        "{rows} rows written for 2000 heartbeats of 10 hubs"
    );
}

#[tokio::test]
async fn writes_are_monotonic_so_replicas_can_share_the_work() {
    use chrono::{SubsecRound, Utc};
    use service::ingest::coalescer::Pending;
    use service::ingest::write::apply_batch;

    let app = spawn_app().await;
    app.post_project(Some(ADMIN_KEY), &project("alpha")).await;
    let parse = |status: &str| {
        protocol::Heartbeat::parse("hub.presence.alpha", &payload("alpha", status), 4096).unwrap()
    };
    let now = Utc::now().trunc_subsecs(6);
    let newer = Pending {
        heartbeat: parse("degraded"),
        received_at: now,
        count: 1,
    };
    let older = Pending {
        heartbeat: parse("online"),
        received_at: now - chrono::Duration::seconds(5),
        count: 1,
    };
    let out = apply_batch(&app.pool, &[newer], false).await.unwrap();
    assert_eq!((out.hubs(), out.messages), (1, 1));
    assert_eq!(out.transitions, [service::catalog::ProjectStatus::Degraded]);
    // Another replica's older heartbeat arrives late: counted, but changes nothing.
    let out = apply_batch(&app.pool, &[older], false).await.unwrap();
    assert_eq!((out.hubs(), out.messages), (1, 1));
    assert!(out.transitions.is_empty());
    let (status, last): (String, chrono::DateTime<Utc>) = app
        .row("SELECT status, last_heartbeat_at FROM projects WHERE slug = 'alpha'")
        .await;
    assert_eq!(status, "degraded");
    assert_eq!(last, now);
    // Replaying the same batch is idempotent.
    let again = Pending {
        heartbeat: parse("degraded"),
        received_at: now,
        count: 1,
    };
    let out = apply_batch(&app.pool, &[again], false).await.unwrap();
    assert!(out.transitions.is_empty());
    assert_eq!(app.count("project_transitions").await, 1);
}
