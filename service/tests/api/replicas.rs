//! Several service processes on one NATS and one database, and NATS going
//! away under load.

use std::process::Child;
use std::time::Duration;

use testkit::{eventually, NatsServer, TestDb};

use crate::heartbeats::{metric_value, payload, rig};
use crate::helpers::*;
use crate::process::{serve_quiet, signal, wait_ready};

struct Replica {
    child: Child,
    port: u16,
}

fn replica(db: &TestDb, nats: &NatsServer) -> Replica {
    let port = testkit::free_port();
    let nats_url = nats.url();
    let child = serve_quiet(
        &db.url,
        port,
        &[
            ("NATS_URL", &nats_url),
            ("FEDERATION__SERVER__HOST", "127.0.0.1"),
            ("FEDERATION__HEARTBEAT__DEGRADED_AFTER", "1s"),
            ("FEDERATION__HEARTBEAT__STALE_THRESHOLD", "2s"),
            ("FEDERATION__HEARTBEAT__CHECK_INTERVAL", "1s"),
            // The hubs here say `interval_s: 30`: their own deadlines,
            // clamped to at most 2 s, are the short ones the test needs.
            ("FEDERATION__HEARTBEAT__MIN_THRESHOLD", "1s"),
            ("FEDERATION__HEARTBEAT__MAX_THRESHOLD", "2s"),
        ],
    );
    Replica { child, port }
}

async fn metric(port: u16, name: &str) -> f64 {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .and_then(|r| r.error_for_status())
        .map(|r| async { r.text().await.unwrap_or_default() });
    match text {
        Ok(fut) => metric_value(&fut.await, name),
        Err(_) => 0.0,
    }
}

#[tokio::test]
async fn replicas_share_the_stream_once_and_elect_one_sweeper_with_failover() {
    let nats = NatsServer::start().await;
    let db = TestDb::create().await;
    let mut a = replica(&db, &nats);
    let mut b = replica(&db, &nats);
    wait_ready(a.port).await;
    wait_ready(b.port).await;

    let http = reqwest::Client::new();
    let hubs: Vec<String> = (0..40).map(|i| format!("hub{i:02}")).collect();
    for slug in &hubs {
        let res = http
            .post(format!("http://127.0.0.1:{}/api/fed/projects", a.port))
            .header("X-API-Key", ADMIN_KEY)
            .json(&project(slug))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
    }

    // Exactly one sweeper, and it stays one.
    eventually(Duration::from_secs(20), "one sweeper leader", || async {
        (metric(a.port, "sweeper_leader").await + metric(b.port, "sweeper_leader").await == 1.0)
            .then_some(())
    })
    .await;
    for _ in 0..5 {
        let sum = metric(a.port, "sweeper_leader").await + metric(b.port, "sweeper_leader").await;
        assert_eq!(sum, 1.0, "two sweepers at once");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Each heartbeat is counted once, by one replica or the other.
    let client = async_nats::connect(nats.url()).await.unwrap();
    let rounds = 25;
    for _ in 0..rounds {
        for slug in &hubs {
            client
                .publish(
                    format!("hub.presence.{slug}"),
                    payload(slug, "online").into(),
                )
                .await
                .unwrap();
        }
        client.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let total = (hubs.len() * rounds) as f64;
    eventually(
        Duration::from_secs(20),
        "every heartbeat counted",
        || async {
            let sum =
                metric(a.port, "heartbeat_total").await + metric(b.port, "heartbeat_total").await;
            (sum >= total).then_some(())
        },
    )
    .await;
    let (ha, hb) = (
        metric(a.port, "heartbeat_total").await,
        metric(b.port, "heartbeat_total").await,
    );
    assert_eq!(ha + hb, total, "a heartbeat was counted twice");
    assert!(
        ha > 0.0 && hb > 0.0,
        "the queue group did not share the stream ({ha} / {hb})"
    );

    // The leader dies (SIGKILL): the other replica takes over and still
    // detects the now silent hubs.
    let (leader, survivor) = if metric(a.port, "sweeper_leader").await == 1.0 {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    signal(leader.child.id(), "-KILL");
    let _ = leader.child.wait();
    let survivor_port = survivor.port;
    eventually(Duration::from_secs(20), "the survivor to lead", || async {
        (metric(survivor_port, "sweeper_leader").await == 1.0).then_some(())
    })
    .await;
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    eventually(
        Duration::from_secs(30),
        "every silent hub offline",
        || async {
            let offline: i64 =
                sqlx::query_scalar("SELECT count(*) FROM projects WHERE status = 'offline'")
                    .fetch_one(&pool)
                    .await
                    .ok()?;
            (offline == hubs.len() as i64).then_some(())
        },
    )
    .await;
    // Each hub went offline exactly once, not once per replica.
    let offline_events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM project_transitions WHERE to_status = 'offline'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(offline_events, hubs.len() as i64);
    signal(survivor.child.id(), "-TERM");
    let status = survivor.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn nats_restarting_under_load_marks_no_hub_offline_and_ingestion_resumes() {
    let mut r =
        rig("heartbeat:\n  degraded_after: 1s\n  stale_threshold: 2s\n  check_interval: 1s\n  min_threshold: 1s\n  max_threshold: 2s\n")
            .await;
    let hubs: Vec<String> = (0..50).map(|i| format!("hub{i:02}")).collect();
    for slug in &hubs {
        r.register(slug).await;
    }
    // A load generator with its own connection: it rides through the outage
    // and reconnects as soon as the broker is back (hubs that reconnect
    // seconds after the service, with thresholds of 1 s / 2 s, would be
    // silent hubs for real).
    let url = r.nats.url();
    let stop = tokio_util::sync::CancellationToken::new();
    let load = {
        let (hubs, stop) = (hubs.clone(), stop.clone());
        tokio::spawn(async move {
            let client = async_nats::ConnectOptions::new()
                .reconnect_delay_callback(|_| Duration::from_millis(100))
                .connect(url)
                .await
                .unwrap();
            while !stop.is_cancelled() {
                for slug in &hubs {
                    let _ = client
                        .publish(
                            format!("hub.presence.{slug}"),
                            payload(slug, "online").into(),
                        )
                        .await;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    for slug in &hubs {
        r.wait_status(slug, "online").await;
    }
    r.nats.kill().await;
    // Three stale thresholds without NATS.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let before = r.metric("heartbeat_total").await;
    r.nats.restart().await;
    eventually(Duration::from_secs(20), "ingestion to resume", || async {
        (r.metric("heartbeat_total").await >= before + 500.0).then_some(())
    })
    .await;
    // A full threshold of renewed sight.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Hubs may be briefly `degraded` after sight returns while their own
    // clients reconnect (thresholds here are 1 s / 2 s); never `offline`.
    let offline: i64 = r
        .app
        .value("SELECT count(*) FROM project_transitions WHERE to_status = 'offline'")
        .await;
    assert_eq!(
        offline, 0,
        "a hub was marked offline because of the broker outage"
    );
    for slug in &hubs {
        r.wait_status(slug, "online").await;
    }
    stop.cancel();
    load.await.unwrap();
}
