//! The outbox relay against a real nats-server with JetStream: delivery,
//! order, de-duplication, outages, and a service killed with SIGKILL in the
//! middle of a burst.

use std::time::Duration;

use serde_json::Value;
use service::events::outbox;
use service::events::relay::OutboxRelay;
use sqlx::PgPool;
use testkit::{eventually, NatsServer, TestDb};

use crate::fedkit::*;
use crate::helpers::*;
use crate::process::{serve_quiet, signal, wait_ready};

const WAIT: Duration = Duration::from_secs(30);

async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app.get_text("/metrics", None).await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in\n{text}"))
}

/// Waits until a gauge read from the database shows `value` (they are
/// gathered at most once a second), then asserts it.
async fn assert_db_gauge(app: &TestApp, name: &str, value: f64) {
    eventually(
        Duration::from_secs(5),
        &format!("{name} = {value}"),
        || async { (metric(app, name).await == value).then_some(()) },
    )
    .await;
}

/// The stream holds exactly the outbox's events, once each, in log order,
/// each with Nats-Msg-Id = CloudEvent id, on its own subject.
async fn assert_stream_matches_outbox(js: &async_nats::jetstream::Context, pool: &PgPool) {
    let events = stream_events(js).await;
    let ids: Vec<String> = events.iter().map(|e| e.msg_id.clone()).collect();
    assert_eq!(ids, outbox_ids(pool).await, "stream order vs outbox order");
    for e in &events {
        assert_eq!(e.event["id"], e.msg_id.as_str());
        assert_eq!(e.event["specversion"], "1.0");
        let ty = e.event["type"].as_str().unwrap();
        assert_eq!(
            e.subject,
            format!("fed.events.{}", ty.strip_prefix("federation.").unwrap())
        );
    }
}

#[tokio::test]
async fn every_committed_event_reaches_jetstream_once_in_order() {
    let nats = NatsServer::start().await;
    let app = spawn_app_yaml(&format!(
        "{}  duplicate_window: 42s\n",
        nats_yaml(&nats.url())
    ))
    .await;
    let fra = spoke_in(&app, "FRA", "approved").await;
    act_ok(&app, &fra, "suspend").await;
    app.post_project(Some(AGENT_KEY), &project("fra")).await;
    // A transaction that rolls back leaves no event behind.
    let mut tx = app.pool.begin().await.unwrap();
    outbox::enqueue(
        &mut tx,
        protocol::EventKind::SpokeRevoked,
        Some("spoke-xxx-00000000"),
        &serde_json::json!({"never": true}),
    )
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    wait_all_published(&app.pool, WAIT).await;

    let js = jetstream(&nats.url()).await;
    assert_eq!(stream_len(&js).await, 4);
    assert_stream_matches_outbox(&js, &app.pool).await;
    let events = stream_events(&js).await;
    let approved = &events[1].event;
    assert_eq!(approved["type"], "federation.spoke.approved");
    assert_eq!(approved["subject"], fra.as_str());
    assert_eq!(approved["source"], "urn:federation:catalog");
    assert_eq!(approved["data"]["status"], "approved");
    assert_eq!(approved["data"]["transition"]["to_status"], "approved");
    assert_eq!(events[3].event["type"], "federation.project.registered");

    let mut stream = js.get_stream("FEDERATION_EVENTS").await.unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(info.config.duplicate_window, Duration::from_secs(42));
    assert_eq!(info.config.subjects, ["fed.events.>"]);

    assert_eq!(metric(&app, "nats_publish_total").await, 4.0);
    assert_db_gauge(&app, "outbox_pending", 0.0).await;
    assert_eq!(metric(&app, "relay_leader").await, 1.0);

    // Crash between publish and mark, replayed exactly: the events are in
    // the stream but the outbox says unsent. They go out again and the
    // server drops every copy.
    app.sql("UPDATE outbox SET published_at = NULL").await;
    wait_all_published(&app.pool, WAIT).await;
    assert_eq!(stream_len(&js).await, 4);
    assert_eq!(metric(&app, "nats_publish_duplicates_total").await, 4.0);
    assert_stream_matches_outbox(&js, &app.pool).await;
}

#[tokio::test]
async fn with_nats_down_events_wait_and_then_all_go_out_in_order() {
    let mut nats = NatsServer::start().await;
    let app = spawn_app_yaml(&nats_yaml(&nats.url())).await;
    let first = register(&app, "FRA").await;
    wait_all_published(&app.pool, WAIT).await;

    nats.kill().await;
    let fra = first["id"].as_str().unwrap().to_owned();
    act_ok(&app, &fra, "approve").await;
    for code in [
        "DEU", "GBR", "NLD", "BEL", "ITA", "ESP", "POL", "NOR", "DNK",
    ] {
        let id = spoke_in(&app, code, "approved").await;
        act_ok(&app, &id, "suspend").await;
    }
    let queued = outbox_unpublished(&app.pool).await;
    assert_eq!(queued, 1 + 9 * 3);
    // The relay tries, fails, and marks nothing.
    eventually(WAIT, "a failed publish", || async {
        (metric(&app, "nats_publish_failures_total").await >= 1.0).then_some(())
    })
    .await;
    assert_eq!(outbox_unpublished(&app.pool).await, queued);
    assert_db_gauge(&app, "outbox_pending", queued as f64).await;
    assert!(metric(&app, "outbox_oldest_pending_seconds").await > 0.0);

    nats.restart().await;
    wait_all_published(&app.pool, WAIT).await;
    let js = jetstream(&nats.url()).await;
    assert_eq!(stream_len(&js).await as i64, 1 + queued);
    assert_stream_matches_outbox(&js, &app.pool).await;
    assert_db_gauge(&app, "outbox_pending", 0.0).await;
}

/// Steps the relay until it has published `n` events, for at most 10 s. A transaction of another test's database that
/// ends while the horizon is computed cannot be told apart from one of
/// ours, and holds the horizon back for a moment (it only delays, see
/// docs/decisions.md, "Event order"); with tests running side by side on
/// one server, a single step may therefore publish fewer.
async fn publish_all(relay: &OutboxRelay, n: usize) -> usize {
    let mut published = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while published < n && tokio::time::Instant::now() < deadline {
        let step = relay.publish_batch().await.unwrap();
        published += step.published;
        if step.published == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    published
}

/// A relay driven by the test, with its own metrics, its stream made.
async fn manual_relay(
    app: &TestApp,
    nats: &NatsServer,
    settings: service::config::EventSettings,
) -> (OutboxRelay, service::metrics::Metrics) {
    let client = async_nats::connect(nats.url()).await.unwrap();
    let metrics = service::metrics::Metrics::new();
    let relay = OutboxRelay::new(app.pool.clone(), client, settings, metrics.events.clone());
    relay.ensure_stream().await.unwrap();
    (relay, metrics)
}

/// seq is assigned at insert, not at commit: an event inserted first and
/// committed last must not be skipped, and goes out first. The relay is
/// driven step by step here (the service's own relay is off: no NATS).
#[tokio::test]
async fn an_event_that_commits_late_is_not_skipped() {
    let nats = NatsServer::start().await;
    let app = spawn_app().await;
    let (relay, metrics) = manual_relay(&app, &nats, Default::default()).await;
    let kind = protocol::EventKind::ProjectUpdated;
    let mut early = app.pool.begin().await.unwrap();
    let a = outbox::enqueue(&mut early, kind, Some("a"), &serde_json::json!({"n": 1}))
        .await
        .unwrap();
    let mut late = app.pool.begin().await.unwrap();
    let b = outbox::enqueue(&mut late, kind, Some("b"), &serde_json::json!({"n": 2}))
        .await
        .unwrap();
    late.commit().await.unwrap();
    // b (seq 2) is committed, a (seq 1) is not: a reader by seq would send b
    // now and never a. Ours waits.
    let step = relay.publish_batch().await.unwrap();
    assert_eq!(step.published, 0, "{step:?}");
    early.commit().await.unwrap();
    assert_eq!(publish_all(&relay, 2).await, 2);
    let js = jetstream(&nats.url()).await;
    let events = stream_events(&js).await;
    let ids: Vec<String> = events.iter().map(|e| e.msg_id.clone()).collect();
    assert_eq!(ids, [a.to_string(), b.to_string()]);
    assert_eq!(metrics.events.publish.get(), 2);
}

// ---- kill -9 in the middle of a burst -------------------------------------

fn start_service(db: &TestDb, nats: &NatsServer, port: u16) -> std::process::Child {
    let nats_url = nats.url();
    serve_quiet(
        &db.url,
        port,
        &[
            ("NATS_URL", &nats_url),
            ("FEDERATION__SERVER__HOST", "127.0.0.1"),
            ("FEDERATION__EVENTS__BATCH_SIZE", "25"),
            ("FEDERATION__EVENTS__POLL_INTERVAL", "100ms"),
            ("LOG_LEVEL", "warn"),
        ],
    )
}

/// `n` events in transactions of `per_tx`, as the service's writers make them.
async fn burst(pool: &PgPool, n: usize, per_tx: usize, tag: &str) {
    let kinds = protocol::EventKind::ALL;
    for chunk in 0..n.div_ceil(per_tx) {
        let mut tx = pool.begin().await.unwrap();
        for i in 0..per_tx.min(n - chunk * per_tx) {
            let k = chunk * per_tx + i;
            outbox::enqueue(
                &mut tx,
                kinds[k % kinds.len()],
                Some(&format!("{tag}-{k}")),
                &serde_json::json!({"k": k, "tag": tag}),
            )
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
    }
}

#[tokio::test]
async fn a_service_killed_mid_burst_loses_nothing_and_duplicates_nothing() {
    let nats = NatsServer::start().await;
    let db = TestDb::create().await;
    let port = testkit::free_port();
    let mut first = start_service(&db, &nats, port);
    wait_ready(port).await;
    let pool = PgPool::connect(&db.url).await.unwrap();
    let js = jetstream(&nats.url()).await;

    const BURST: usize = 4000;
    let writer = {
        let pool = pool.clone();
        tokio::spawn(async move { burst(&pool, BURST, 20, "before").await })
    };
    eventually(WAIT, "the relay to be part-way through the burst", || {
        let js = js.clone();
        async move { (stream_len(&js).await >= 200).then_some(()) }
    })
    .await;
    signal(first.id(), "-KILL");
    first.wait().unwrap();
    writer.await.unwrap();
    let at_kill = stream_len(&js).await;
    assert!(
        (at_kill as usize) < BURST,
        "the relay finished before the kill ({at_kill}); the test proved nothing"
    );

    // More events while no service runs.
    burst(&pool, 500, 50, "while-down").await;

    let mut second = start_service(&db, &nats, port);
    wait_ready(port).await;
    wait_all_published(&pool, WAIT).await;
    let total = BURST + 500;
    assert_eq!(stream_len(&js).await as usize, total);
    let events = stream_events(&js).await;
    let ids: Vec<String> = events.iter().map(|e| e.msg_id.clone()).collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), total, "an event arrived twice");
    assert_eq!(ids, outbox_ids(&pool).await, "stream order vs outbox order");
    // Payloads are the events as written.
    let first_before: &Value = &events[0].event;
    assert_eq!(first_before["data"]["tag"], "before");
    assert_eq!(events[total - 1].event["data"]["tag"], "while-down");

    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let duplicates = metrics
        .lines()
        .find_map(|l| l.strip_prefix("nats_publish_duplicates_total "))
        .unwrap_or("?")
        .to_owned();
    println!("killed at {at_kill}/{BURST} in the stream; re-published duplicates dropped by JetStream after restart: {duplicates}");
    second.kill().unwrap();
    second.wait().unwrap();
}

/// docs/events.md shows one valid example per event type, with the data
/// shape the service really emits for spokes.
#[test]
fn docs_events_md_has_a_valid_example_per_type() {
    let text = std::fs::read_to_string(repo_path("docs/events.md")).unwrap();
    let mut seen = Vec::new();
    for block in text.split("```json").skip(1) {
        let json = block.split("```").next().unwrap();
        let event: protocol::CloudEvent = serde_json::from_str(json)
            .unwrap_or_else(|e| panic!("example does not parse: {e}\n{json}"));
        let kind = event
            .kind()
            .unwrap_or_else(|| panic!("unknown type {}", event.event_type));
        assert_eq!(event.specversion, "1.0");
        uuid::Uuid::parse_str(&event.id).unwrap();
        if kind == protocol::EventKind::SpokeRevision {
            let data: service::revision::RevisionEventData =
                serde_json::from_value(event.data.clone()).unwrap();
            assert_eq!(
                event.subject.as_deref(),
                Some(data.revision.spoke_id.as_str())
            );
        } else if event.event_type.starts_with("federation.spoke.") {
            let data: service::spoke::SpokeEventData =
                serde_json::from_value(event.data.clone()).unwrap();
            assert_eq!(event.subject.as_deref(), Some(data.spoke.id.as_str()));
            assert_eq!(data.transition.to_status, data.spoke.status);
        } else if event.event_type.starts_with("federation.routing.") {
            let data: protocol::events::RoutingChangeData =
                serde_json::from_value(event.data.clone()).unwrap();
            assert_eq!(event.subject.as_deref(), Some(data.id.as_str()));
        } else if kind == protocol::EventKind::ProjectMaintenance {
            let data: protocol::events::ProjectMaintenanceData =
                serde_json::from_value(event.data.clone()).unwrap();
            assert_eq!(event.subject.as_deref(), Some(data.slug.as_str()));
        } else {
            assert_eq!(event.subject.as_deref(), event.data["slug"].as_str());
        }
        seen.push(kind);
    }
    let mut all = protocol::EventKind::ALL.to_vec();
    assert_eq!(seen.len(), all.len(), "one example per type");
    all.retain(|k| !seen.contains(k));
    assert!(all.is_empty(), "no example for {all:?}");
}

#[tokio::test]
async fn published_events_are_pruned_after_the_retention_and_pending_ones_never() {
    let nats = NatsServer::start().await;
    let app = spawn_app().await;
    let settings = service::config::EventSettings {
        retention: Duration::from_secs(3600),
        ..Default::default()
    };
    let (relay, metrics) = manual_relay(&app, &nats, settings).await;
    for code in ["FRA", "DEU", "GBR"] {
        register(&app, code).await;
    }
    assert_eq!(publish_all(&relay, 3).await, 3);
    let ids = outbox_ids(&app.pool).await;
    // Two published long ago, one recently; and one never published.
    sqlx::query(
        "UPDATE outbox SET published_at = now() - interval '2 hours' WHERE id::text = ANY($1)",
    )
    .bind(&ids[..2])
    .execute(&app.pool)
    .await
    .unwrap();
    register(&app, "NLD").await;
    app.sql(
        "UPDATE outbox SET occurred_at = now() - interval '3 hours' WHERE published_at IS NULL",
    )
    .await;
    assert_eq!(relay.prune().await.unwrap(), 2);
    assert_eq!(metrics.events.pruned.get(), 2);
    let left = outbox_ids(&app.pool).await;
    assert_eq!(left.len(), 2);
    assert_eq!(left[0], ids[2]);
    assert_eq!(outbox_unpublished(&app.pool).await, 1);

    // A watcher can no longer resume from a pruned event, and says so.
    let res = watch_resuming(&app, "/api/fed/watch", &ids[0]).await;
    let problem = assert_problem(res, 410).await;
    assert!(detail_of(&problem).contains("retention"));
    // From the oldest kept event it resumes normally.
    let mut sse = SseClient::connect(&app, Some(&ids[2])).await;
    assert_eq!(sse.next(Duration::from_secs(10)).await.0, left[1]);
}
