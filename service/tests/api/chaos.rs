//! Chaos under load: three service replicas, each first connected to its
//! own node of a three-node NATS cluster, the events stream kept in three
//! copies, a PostgreSQL of the test's own; 10,000 simulated hubs beating at
//! 1,000/s while spokes are registered, approved and revoked. Meanwhile: a
//! NATS node is killed (SIGKILL) and brought back, the replica leading the
//! sweeper is killed, PostgreSQL is restarted. Then: no heartbeat counted
//! twice, every hub's last beat written, no hub marked degraded or offline,
//! and every acknowledged change's event delivered once, in order, to a
//! durable consumer. Failover and recovery times are printed (figures in
//! docs/benchmarks.md come from this test's output).

use std::collections::HashMap;
use std::process::Child;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::{eventually, NatsCluster, PgServer};
use tokio_util::sync::CancellationToken;

use crate::fedkit::spoke_body;
use crate::helpers::*;
use crate::process::{federation, serve_quiet, signal, wait_ready};

const HUBS: usize = 10_000;
/// Beats per second, over all hubs: each hub beats every HUBS / RATE = 10 s.
const RATE: usize = 1_000;
const WAIT: Duration = Duration::from_secs(60);
/// Instance codes the spoke churn cycles through (a revoked spoke frees its
/// code).
const CODES: [&str; 8] = ["FRA", "DEU", "GBR", "NLD", "BEL", "ITA", "ESP", "POL"];

struct Replica {
    child: Option<Child>,
    port: u16,
}

impl Replica {
    fn start(db_url: &str, nats_urls: &str) -> Replica {
        let port = testkit::free_port();
        let child = serve_quiet(
            db_url,
            port,
            &[
                ("NATS_URL", nats_urls),
                ("FEDERATION_AGENT_API_KEYS", AGENT_KEY),
                ("FEDERATION__SERVER__HOST", "127.0.0.1"),
                ("FEDERATION__EVENTS__STREAM_REPLICAS", "3"),
                ("FEDERATION__EVENTS__POLL_INTERVAL", "200ms"),
                // Hubs claim a 30 s interval and beat every 10 s: none may
                // be judged silent unless its beats are really lost.
                ("FEDERATION__HEARTBEAT__DEGRADED_AFTER", "45s"),
                ("FEDERATION__HEARTBEAT__STALE_THRESHOLD", "90s"),
                ("FEDERATION__HEARTBEAT__CHECK_INTERVAL", "1s"),
            ],
        );
        Replica {
            child: Some(child),
            port,
        }
    }

    fn alive(&self) -> bool {
        self.child.is_some()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "-KILL");
            let _ = child.wait();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A metric of one replica, or None when it does not answer.
async fn metric(http: &reqwest::Client, port: u16, name: &str) -> Option<f64> {
    let text = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

async fn leader_among(http: &reqwest::Client, replicas: &[Replica], office: &str) -> Option<usize> {
    for (i, r) in replicas.iter().enumerate() {
        if r.alive() && metric(http, r.port, office).await == Some(1.0) {
            return Some(i);
        }
    }
    None
}

fn beat(slug: &str, seq: u64) -> Vec<u8> {
    json!({
        "project_slug": slug,
        "status": "online",
        "agent_id": "chaos",
        "seq": seq,
        "interval_s": 30,
    })
    .to_string()
    .into_bytes()
}

/// Beats every hub once per HUBS / RATE seconds, spreading the hubs over
/// the nodes (hub i publishes through node i mod 3); returns the number of
/// beats published and each hub's last sequence number.
fn start_load(
    cluster: &NatsCluster,
    stop: CancellationToken,
    rounds: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<(u64, u64)> {
    let urls: Vec<String> = (0..cluster.len()).map(|i| cluster.node(i).url()).collect();
    tokio::spawn(async move {
        let mut clients = Vec::new();
        for url in &urls {
            clients.push(
                async_nats::ConnectOptions::new()
                    .reconnect_delay_callback(|_| Duration::from_millis(100))
                    .connect(url.as_str())
                    .await
                    .unwrap(),
            );
        }
        let per_tick = RATE / 100;
        let mut ticker = tokio::time::interval(Duration::from_millis(10));
        let (mut published, mut next, mut round) = (0u64, 0usize, 1u64);
        while !stop.is_cancelled() {
            ticker.tick().await;
            for _ in 0..per_tick {
                let slug = format!("hub{next:05}");
                let client = &clients[next % clients.len()];
                if client
                    .publish(format!("hub.presence.{slug}"), beat(&slug, round).into())
                    .await
                    .is_ok()
                {
                    published += 1;
                }
                next += 1;
                if next == HUBS {
                    next = 0;
                    round += 1;
                    rounds.store(round, Ordering::Relaxed);
                }
            }
        }
        // Finish the round so every hub's last beat has the same number.
        while next != 0 {
            let slug = format!("hub{next:05}");
            let client = &clients[next % clients.len()];
            client
                .publish(format!("hub.presence.{slug}"), beat(&slug, round).into())
                .await
                .unwrap();
            published += 1;
            next = (next + 1) % HUBS;
        }
        for c in &clients {
            c.flush().await.unwrap();
        }
        (published, round)
    })
}

/// Spokes registered, approved and revoked, round after round, through
/// whichever replica answers; returns the changes acknowledged (2xx), as
/// (spoke id, event type), in the order they were acknowledged.
fn start_churn(
    ports: Vec<u16>,
    stop: CancellationToken,
    acknowledged: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<Vec<(String, String)>> {
    tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let mut done = Vec::new();
        let mut turn = 0usize;
        let mut send = |path: String, key: &'static str, body: Value| {
            turn += 1;
            let port = ports[turn % ports.len()];
            let req = http
                .post(format!("http://127.0.0.1:{port}{path}"))
                .header("X-API-Key", key)
                .json(&body)
                .send();
            async move {
                let res = req.await.ok()?;
                if !res.status().is_success() {
                    return None;
                }
                res.json::<Value>().await.ok()
            }
        };
        let mut code = 0usize;
        while !stop.is_cancelled() {
            let body = spoke_body(CODES[code % CODES.len()]);
            code += 1;
            let Some(spoke) = send("/api/federation/register".into(), AGENT_KEY, body).await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let id = spoke["id"].as_str().unwrap().to_owned();
            done.push((id.clone(), "federation.spoke.registered".to_owned()));
            acknowledged.fetch_add(1, Ordering::Relaxed);
            for action in ["approve", "revoke"] {
                let reason = json!({"reason": "chaos", "operator": "chaos"});
                // Retried until acknowledged: the code is only free again
                // once the spoke is revoked.
                loop {
                    let path = format!("/api/federation/spokes/{id}/{action}");
                    if send(path, ADMIN_KEY, reason.clone()).await.is_some() {
                        let ty = if action == "approve" {
                            "approved"
                        } else {
                            "revoked"
                        };
                        done.push((id.clone(), format!("federation.spoke.{ty}")));
                        acknowledged.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        done
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_load_losing_a_nats_node_the_leading_replica_and_postgresql_loses_nothing() {
    let pg = PgServer::start().await;
    let db_url = pg.create_database("federation").await;
    let status = federation(&["migrate"])
        .env("DATABASE_URL", &db_url)
        .env("FEDERATION_API_KEYS", ADMIN_KEY)
        .status()
        .unwrap();
    assert!(status.success(), "federation migrate");
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&db_url)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO projects (slug, name, hub_url, mesh_namespace, status, last_heartbeat_at)
         SELECT 'hub' || lpad(i::text, 5, '0'), 'Hub ' || i, 'http://hub' || i || '.example:9001',
                'hub.hub' || lpad(i::text, 5, '0'), 'online', now()
         FROM generate_series(0, $1 - 1) AS i",
    )
    .bind(HUBS as i32)
    .execute(&pool)
    .await
    .unwrap();

    let mut cluster = NatsCluster::start(3).await;
    // Each replica starts on its own node and learns the others from it.
    let others = |i: usize| {
        (0..3)
            .map(|k| cluster.node((i + k) % 3).url())
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut replicas: Vec<Replica> = (0..3)
        .map(|i| Replica::start(&db_url, &others(i)))
        .collect();
    for r in &replicas {
        wait_ready(r.port).await;
    }
    let http = reqwest::Client::new();

    // A durable consumer, created before anything happens, that will read
    // every event at the end.
    let js = crate::fedkit::patient_jetstream(&cluster.node(2).url()).await;
    let stream = eventually(WAIT, "the events stream, in three copies", || {
        let js = js.clone();
        async move {
            let mut s = js.get_stream("FEDERATION_EVENTS").await.ok()?;
            (s.info().await.ok()?.config.num_replicas == 3).then_some(s)
        }
    })
    .await;
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("chaos-audit".into()),
            ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();

    let stop = CancellationToken::new();
    let rounds = Arc::new(AtomicU64::new(1));
    let load = start_load(&cluster, stop.clone(), rounds.clone());
    let acknowledged = Arc::new(AtomicU64::new(0));
    let churn = start_churn(
        replicas.iter().map(|r| r.port).collect(),
        stop.clone(),
        acknowledged.clone(),
    );

    // Warm-up: every hub has beaten through the pipeline once.
    eventually(WAIT, "every hub's first beat written", || async {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM projects WHERE heartbeat_seq IS NOT NULL")
                .fetch_one(&pool)
                .await
                .ok()?;
        (n == HUBS as i64).then_some(())
    })
    .await;

    // 1. A NATS node dies and comes back.
    cluster.node_mut(0).kill().await;
    let churned = acknowledged.load(Ordering::Relaxed);
    eventually(WAIT, "changes acknowledged with a node down", || async {
        (acknowledged.load(Ordering::Relaxed) >= churned + 3).then_some(())
    })
    .await;
    cluster.node_mut(0).restart().await;

    // 2. The replica leading the sweeper dies.
    let leader = eventually(WAIT, "a sweeper leader", || {
        leader_among(&http, &replicas, "sweeper_leader")
    })
    .await;
    let counted_by_leader = metric(&http, replicas[leader].port, "heartbeat_total")
        .await
        .unwrap();
    let killed_at = Instant::now();
    replicas[leader].kill();
    let new_leader = eventually(WAIT, "another sweeper leader", || {
        leader_among(&http, &replicas, "sweeper_leader")
    })
    .await;
    let sweeper_failover = killed_at.elapsed();
    eventually(WAIT, "a relay leader", || {
        leader_among(&http, &replicas, "relay_leader")
    })
    .await;
    let relay_failover = killed_at.elapsed();
    assert_ne!(new_leader, leader);

    // 3. PostgreSQL restarts (every session cut).
    let churned = acknowledged.load(Ordering::Relaxed);
    let restarted_at = Instant::now();
    pg.restart().await;
    eventually(WAIT, "changes acknowledged after the restart", || async {
        (acknowledged.load(Ordering::Relaxed) >= churned + 3).then_some(())
    })
    .await;
    let pg_recovery = restarted_at.elapsed();
    for r in replicas.iter().filter(|r| r.alive()) {
        wait_ready(r.port).await;
    }

    // Run on for a whole round after the last fault (beats that were in
    // the dead leader's memory are lost with it; the next round replaces
    // them), then stop: every hub's last beat must be written.
    let after = rounds.load(Ordering::Relaxed) + 1;
    eventually(
        WAIT,
        "a full round of beats after the last fault",
        || async { (rounds.load(Ordering::Relaxed) > after).then_some(()) },
    )
    .await;
    stop.cancel();
    let (published, last_round) = load.await.unwrap();
    let changes = churn.await.unwrap();
    eventually(WAIT, "every hub's last beat written", || async {
        let behind: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM projects WHERE heartbeat_seq IS DISTINCT FROM $1",
        )
        .bind(last_round as i64)
        .fetch_one(&pool)
        .await
        .ok()?;
        (behind == 0).then_some(())
    })
    .await;

    // No heartbeat counted twice: what the survivors counted plus what the
    // dead leader had counted when last asked is at most what was
    // published (and short of it only by what died with the leader or in
    // the killed node: under two seconds of beats).
    let mut counted = counted_by_leader;
    for r in replicas.iter().filter(|r| r.alive()) {
        counted += metric(&http, r.port, "heartbeat_total").await.unwrap();
    }
    println!(
        "published {published} beats, counted {counted}; sweeper failover {sweeper_failover:?}, relay failover {relay_failover:?}, PostgreSQL restart to acknowledged changes {pg_recovery:?}; {} changes acknowledged",
        changes.len()
    );
    assert!(
        counted <= published as f64,
        "counted {counted} > published {published}"
    );
    assert!(
        counted >= (published - 2 * RATE as u64) as f64,
        "counted {counted}, published {published}: more than two seconds of beats lost"
    );

    // No hub judged silent: not one transition by the sweeper.
    let swept: i64 =
        sqlx::query_scalar("SELECT count(*) FROM project_transitions WHERE cause = 'sweeper'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(swept, 0, "hubs falsely marked degraded or offline");
    let survivor = replicas.iter().find(|r| r.alive()).unwrap().port;
    let offline: Value = http
        .get(format!(
            "http://127.0.0.1:{survivor}/api/fed/projects?status=offline"
        ))
        .header("X-API-Key", ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(offline, json!([]));

    // Every event once, in the outbox's order; every acknowledged change
    // among them, in the order it was acknowledged.
    eventually(WAIT, "every event published", || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            .fetch_one(&pool)
            .await
            .ok()?;
        (n == 0).then_some(())
    })
    .await;
    let outbox: Vec<String> = sqlx::query_scalar("SELECT id::text FROM outbox ORDER BY xid, seq")
        .fetch_all(&pool)
        .await
        .unwrap();
    let mut delivered: Vec<(String, String, String)> = Vec::new();
    use futures::StreamExt;
    while delivered.len() < outbox.len() {
        let mut batch = consumer
            .fetch()
            .max_messages(500)
            .expires(Duration::from_secs(2))
            .messages()
            .await
            .unwrap();
        let before = delivered.len();
        while let Some(m) = batch.next().await {
            let m = m.unwrap();
            let info = m.info().unwrap();
            assert_eq!(
                info.delivered, 1,
                "an event delivered twice to the durable consumer"
            );
            let event: Value = serde_json::from_slice(&m.payload).unwrap();
            delivered.push((
                event["id"].as_str().unwrap().to_owned(),
                event["subject"].as_str().unwrap_or_default().to_owned(),
                event["type"].as_str().unwrap().to_owned(),
            ));
            m.ack().await.unwrap();
        }
        assert!(
            delivered.len() > before,
            "the durable consumer stopped delivering"
        );
    }
    let ids: Vec<&str> = delivered.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(ids, outbox.iter().map(String::as_str).collect::<Vec<_>>());
    let position: HashMap<(&str, &str), usize> = delivered
        .iter()
        .enumerate()
        .map(|(i, (_, subject, ty))| ((subject.as_str(), ty.as_str()), i))
        .collect();
    let mut last = None;
    for (id, ty) in &changes {
        let at = *position
            .get(&(id.as_str(), ty.as_str()))
            .unwrap_or_else(|| panic!("acknowledged {ty} of {id} was never delivered"));
        assert!(last < Some(at), "{ty} of {id} delivered out of order");
        last = Some(at);
    }
    drop(replicas);
}
