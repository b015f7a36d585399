//! The sync worker inside `serve`: JetStream events trigger reconciles,
//! bursts coalesce, events are acked only after the run covering them, one
//! replica leads.

use std::time::Duration;

use async_nats::jetstream;
use serde_json::json;
use testkit::keycloak::KeycloakStub;
use testkit::{eventually, NatsServer};

use crate::helpers::*;
use crate::synckit::*;

const CONSUMER: &str = "federation-sync";

/// Settings: NATS on, worker on, a resync too rare to matter.
fn worker_yaml(stub: &KeycloakStub, tfvars: &std::path::Path, nats: &NatsServer) -> String {
    format!(
        "{}  enabled: true\n  resync_interval: 1h\n  debounce: 100ms\n  ack_wait: 5s\n\
         nats:\n  url: \"{}\"\n",
        sync_yaml(stub, tfvars, ""),
        nats.url()
    )
}

/// A nats-server, a Keycloak stub, a tfvars path in a temporary directory,
/// and the worker's settings for them.
struct WorkerRig {
    nats: NatsServer,
    stub: KeycloakStub,
    _dir: tempfile::TempDir,
    tfvars: std::path::PathBuf,
    yaml: String,
}

async fn worker_rig() -> WorkerRig {
    let nats = NatsServer::start().await;
    let stub = KeycloakStub::start(Default::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let tfvars = dir.path().join("hub.auto.tfvars");
    let yaml = worker_yaml(&stub, &tfvars, &nats);
    WorkerRig {
        nats,
        stub,
        _dir: dir,
        tfvars,
        yaml,
    }
}

/// A service started on a new rig, and the rig's parts.
async fn worker_app() -> (
    TestApp,
    NatsServer,
    KeycloakStub,
    std::path::PathBuf,
    tempfile::TempDir,
) {
    let rig = worker_rig().await;
    let app = spawn_app_yaml(&rig.yaml).await;
    (app, rig.nats, rig.stub, rig.tfvars, rig._dir)
}

async fn consumer_info(nats: &NatsServer) -> Option<jetstream::consumer::Info> {
    let client = async_nats::connect(nats.url()).await.ok()?;
    let js = jetstream::new(client);
    let stream = js
        .get_stream(protocol::subjects::EVENTS_STREAM)
        .await
        .ok()?;
    let mut consumer: jetstream::consumer::PullConsumer =
        stream.get_consumer(CONSUMER).await.ok()?;
    consumer.info().await.ok().cloned()
}

async fn event_runs(app: &TestApp) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM sync_runs WHERE target = 'tfvars' AND trigger = 'event'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

/// Publishes `n` CloudEvents as the relay would, each with its Nats-Msg-Id.
async fn publish_events(nats: &NatsServer, n: usize) {
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client);
    let mut acks = Vec::new();
    for i in 0..n {
        let id = uuid::Uuid::now_v7().to_string();
        let event = protocol::CloudEvent::new(
            protocol::EventKind::SpokeApproved,
            id.clone(),
            protocol::events::DEFAULT_SOURCE,
            chrono::Utc::now(),
            Some(format!("spoke-test-{i}")),
            json!({"n": i}),
        );
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", id.as_str());
        acks.push(
            js.publish_with_headers(
                protocol::EventKind::SpokeApproved.subject(),
                headers,
                serde_json::to_vec(&event).unwrap().into(),
            )
            .await
            .unwrap(),
        );
    }
    for a in acks {
        a.await.unwrap();
    }
}

#[tokio::test]
async fn approving_a_spoke_makes_the_worker_write_the_file_and_create_the_idp() {
    let (app, nats, stub, tfvars, _dir) = worker_app().await;

    // The worker's first run renders the empty registry.
    eventually(QUICK, "the startup run to write an empty map", || {
        file_with(&tfvars, "federation_partners = {}")
    })
    .await;
    eventually(QUICK, "the durable consumer", || consumer_info(&nats)).await;

    // Approve through the API: outbox → relay → JetStream → worker. The
    // spoke confirms its side (SPOKE_TO_HUB); the sync brings HUB_TO_SPOKE.
    let fra = approved(&app, "FRA").await;
    confirm(&app, &fra).await;
    eventually(QUICK, "fra-idp to be created", || async {
        stub.idp(REALM, "fra-idp").map(|_| ())
    })
    .await;
    eventually(QUICK, "the partner in the file", || {
        file_with(&tfvars, "  fra = {")
    })
    .await;
    eventually(QUICK, "the links to go ACTIVE", || async {
        links_all(&app, &fra, "ACTIVE").await.then_some(())
    })
    .await;
    // The run is recorded when it ends, a moment after the links it set.
    eventually(
        QUICK,
        "an event, not the resync, to have triggered it",
        || async { (event_runs(&app).await >= 1).then_some(()) },
    )
    .await;
    // Every event acked once its run finished.
    eventually(QUICK, "every event acked", || async {
        let info = consumer_info(&nats).await?;
        (info.num_ack_pending == 0 && info.num_pending == 0 && info.delivered.stream_sequence >= 2)
            .then_some(())
    })
    .await;
    let info = consumer_info(&nats).await.unwrap();
    assert_eq!(
        info.config.ack_policy,
        jetstream::consumer::AckPolicy::Explicit
    );
    assert_eq!(info.config.durable_name.as_deref(), Some(CONSUMER));

    // Suspension flows through the same way.
    transition(&app, &fra, "suspend").await;
    eventually(QUICK, "fra-idp to be disabled", || async {
        (stub.idp(REALM, "fra-idp")?["enabled"] == false).then_some(())
    })
    .await;
    let m = metrics_text(&app).await;
    assert!(m.lines().any(|l| l == "sync_leader 1"), "{m}");
}

#[tokio::test]
async fn a_burst_of_events_becomes_one_run_and_events_are_acked_only_after_it() {
    let (app, nats, stub, tfvars, _dir) = worker_app().await;
    eventually(QUICK, "the durable consumer", || consumer_info(&nats)).await;
    eventually(QUICK, "the startup run", || async {
        tfvars.exists().then_some(())
    })
    .await;

    publish_events(&nats, 200).await;
    eventually(QUICK, "all 200 events acked", || async {
        let info = consumer_info(&nats).await?;
        (info.delivered.stream_sequence >= 200
            && info.num_ack_pending == 0
            && info.num_pending == 0)
            .then_some(())
    })
    .await;
    let runs = event_runs(&app).await;
    assert!((1..=3).contains(&runs), "200 events made {runs} runs");

    // A slow Keycloak makes a run last: its event stays unacked (kept
    // alive) until the run has finished.
    stub.set_delay(Duration::from_millis(1500));
    let before = stub.admin_requests() + stub.token_requests();
    publish_events(&nats, 1).await;
    eventually(QUICK, "the run to reach Keycloak", || async {
        (stub.admin_requests() + stub.token_requests() > before).then_some(())
    })
    .await;
    let info = consumer_info(&nats).await.unwrap();
    assert_eq!(
        info.num_ack_pending, 1,
        "acked before its run finished: {info:?}"
    );
    eventually(QUICK, "the event acked after the run", || async {
        let info = consumer_info(&nats).await?;
        (info.num_ack_pending == 0).then_some(())
    })
    .await;
    assert_eq!(event_runs(&app).await, runs + 1);
}

/// A replica on `db_url`, once ready.
async fn replica(db_url: &str, yaml: &str) -> Started {
    let started = start_on(db_url, yaml, Vec::new()).await;
    let ready = format!("{}/ready", started.base);
    testkit::wait_ok(&ready, QUICK, "the replica to be ready").await;
    started
}

async fn leads(r: &Started) -> Option<bool> {
    let text = reqwest::get(format!("{}/metrics", r.base))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    Some(text.lines().any(|l| l == "sync_leader 1"))
}

#[tokio::test]
async fn one_replica_leads_the_sync_and_the_other_takes_over() {
    let WorkerRig {
        nats: _nats,
        stub,
        yaml,
        _dir,
        ..
    } = worker_rig().await;
    let db = testkit::TestDb::create().await;
    let a = replica(&db.url, &yaml).await;
    let b = replica(&db.url, &yaml).await;
    let a_leads = eventually(QUICK, "exactly one sync leader", || async {
        let (x, y) = (leads(&a).await?, leads(&b).await?);
        (x != y).then_some(x)
    })
    .await;
    // Stays one.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_ne!(leads(&a).await, leads(&b).await);
    }
    let (leader, standby) = if a_leads { (a, b) } else { (b, a) };
    leader.stop().await;
    eventually(QUICK, "the standby to take over", || async {
        leads(&standby).await.filter(|l| *l)
    })
    .await;
    // And it does the work: a registry change reaches Keycloak.
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let client = reqwest::Client::new();
    let res = client
        .post(format!("{}/api/federation/register", standby.base))
        .header("X-API-Key", AGENT_KEY)
        .json(&registration("FRA"))
        .send()
        .await
        .unwrap();
    let id = res.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = client
        .post(format!(
            "{}/api/federation/spokes/{id}/approve",
            standby.base
        ))
        .header("X-API-Key", ADMIN_KEY)
        .json(&json!({"reason": "test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    eventually(QUICK, "the new leader to create fra-idp", || async {
        stub.idp(REALM, "fra-idp").map(|_| ())
    })
    .await;
    standby.stop().await;
    pool.close().await;
}

#[tokio::test]
async fn the_worker_retries_by_itself_until_keycloak_is_back() {
    let rig = worker_rig().await;
    let (stub, tfvars) = (rig.stub, rig.tfvars);
    let yaml = rig.yaml.replace(
        "  enabled: true\n",
        "  enabled: true\n  breaker:\n    failure_threshold: 2\n    open_duration: 1s\n",
    );
    stub.set_failing(true);
    let app = spawn_app_yaml(&yaml).await;
    let fra = approved(&app, "FRA").await;
    confirm(&app, &fra).await;
    // The file does not wait for Keycloak.
    eventually(QUICK, "the partner in the file", || {
        file_with(&tfvars, "  fra = {")
    })
    .await;
    eventually(QUICK, "the breaker to open", || async {
        let m = metrics_text(&app).await;
        m.contains("circuit_breaker_state{target=\"keycloak\"} 1")
            .then_some(())
    })
    .await;
    // The links are derived when the run ends, a moment after the breaker.
    eventually(QUICK, "the hub link to be FAILED", || async {
        (hub_link(&app, &fra).await.1 == "FAILED").then_some(())
    })
    .await;

    // No event, no resync due (1h): the worker's own retry brings it back.
    stub.set_failing(false);
    eventually(QUICK, "the links to go ACTIVE", || async {
        links_all(&app, &fra, "ACTIVE").await.then_some(())
    })
    .await;
    assert!(stub.idp(REALM, "fra-idp").is_some());
    let retries: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sync_runs WHERE target = 'keycloak' AND trigger = 'retry'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(retries >= 1, "recovered by a retry run");
}

#[tokio::test]
async fn an_unreachable_idp_recovers_by_itself_at_the_next_resync() {
    let rig = worker_rig().await;
    let yaml = rig
        .yaml
        .replace("resync_interval: 1h", "resync_interval: 1s");
    let app = spawn_app_yaml(&yaml).await;
    let oidc = testkit::oidc::OidcStub::start().await;
    oidc.set_down(true);
    let fra = approved_at(&app, &oidc, "FRA").await;
    eventually(QUICK, "the hub link to fail on the probe", || async {
        let l = hub_link(&app, &fra).await;
        (l.1 == "FAILED" && l.3.as_deref() == Some("DISCOVERY_UNREACHABLE")).then_some(())
    })
    .await;
    // The IdP comes back; nobody calls the API: a resync sees it.
    oidc.set_down(false);
    eventually(QUICK, "the hub link to go ACTIVE", || async {
        (hub_link(&app, &fra).await.1 == "ACTIVE").then_some(())
    })
    .await;
    let public = app.get_value("/api/idps/public", None).await;
    assert_eq!(public[0]["spoke_id"], fra.as_str(), "{public}");
}
