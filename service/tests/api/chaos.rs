//! Chaos under load: three service replicas, each first connected to its
//! own node of a three-node NATS cluster, the events stream kept in three
//! copies, a PostgreSQL of the test's own; 10,000 simulated hubs beating at
//! 1,000/s while spokes are registered, approved and revoked. Meanwhile: a
//! NATS node is killed (SIGKILL) and brought back, the replica leading the
//! sweeper is killed, PostgreSQL is restarted. Then: no heartbeat counted
//! twice, every hub's last beat written, no hub marked degraded or offline,
//! and every acknowledged change's event delivered once, in order, to a
//! durable consumer. Between faults the load pauses and the pipeline drains,
//! so each beat missing is charged to the phase that lost it: none with
//! nothing failing, none over the PostgreSQL restart, none after; around a
//! dead node or replica, no more than went through it. Failover and recovery
//! times and the losses are printed (figures in docs/benchmarks.md come from
//! this test's output).

use std::collections::HashMap;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::{eventually, NatsCluster, PgServer};
use tokio_util::sync::CancellationToken;

use crate::fedkit::{pull_each, spoke_body};
use crate::helpers::*;
use crate::process::{federation, serve_quiet, signal, wait_ready};

const HUBS: usize = 10_000;
/// Beats per second, over all hubs: each hub beats every HUBS / RATE = 10 s.
const RATE: usize = 1_000;
const WAIT: Duration = Duration::from_secs(60);
/// Beats each fault's phase lasts at least (a second of load).
const PHASE: u64 = RATE as u64;
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

/// The simulated hubs: every hub beats once per HUBS / RATE seconds,
/// spread over the nodes (hub i publishes through node i mod 3). The load
/// can be paused, so that the test can let the pipeline drain and compare
/// what was counted with what was published between two faults.
struct Load {
    stop: CancellationToken,
    paused: Arc<AtomicBool>,
    /// Beats published so far; u64::MAX while not paused, otherwise the
    /// number published when the load had stopped and flushed.
    paused_at: Arc<AtomicU64>,
    /// Beats published so far (while running).
    published: Arc<AtomicU64>,
    rounds: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<(u64, u64)>,
}

const RUNNING: u64 = u64::MAX;

impl Load {
    fn start(cluster: &NatsCluster) -> Load {
        let urls: Vec<String> = (0..cluster.len()).map(|i| cluster.node(i).url()).collect();
        let stop = CancellationToken::new();
        let paused = Arc::new(AtomicBool::new(false));
        let paused_at = Arc::new(AtomicU64::new(RUNNING));
        let published = Arc::new(AtomicU64::new(0));
        let rounds = Arc::new(AtomicU64::new(1));
        let task = tokio::spawn(run_load(
            urls,
            stop.clone(),
            paused.clone(),
            paused_at.clone(),
            published.clone(),
            rounds.clone(),
        ));
        Load {
            stop,
            paused,
            paused_at,
            published,
            rounds,
            task,
        }
    }

    /// Stops publishing; returns how many beats were published, all of them
    /// flushed to the servers.
    async fn pause(&self) -> u64 {
        self.paused.store(true, Ordering::SeqCst);
        eventually(WAIT, "the load paused", || async {
            let n = self.paused_at.load(Ordering::SeqCst);
            (n != RUNNING).then_some(n)
        })
        .await
    }

    fn resume(&self) {
        self.paused_at.store(RUNNING, Ordering::SeqCst);
        self.paused.store(false, Ordering::SeqCst);
    }

    /// Ends a phase that began when `published` beats had been: once it
    /// has lasted PHASE beats (long enough for its losses to be judged by
    /// share), pauses, lets the pipeline drain and resumes. Returns the
    /// beats published in the phase and those missing since the start;
    /// `published` becomes the count at the pause.
    async fn end_phase(
        &self,
        http: &reqwest::Client,
        replicas: &[Replica],
        dead: f64,
        published: &mut u64,
    ) -> (u64, u64) {
        let since = *published;
        eventually(WAIT, "beats published in the phase", || async {
            (self.published.load(Ordering::Relaxed) >= since + PHASE).then_some(())
        })
        .await;
        *published = self.pause().await;
        let missing = drained(http, replicas, dead, *published).await;
        self.resume();
        (*published - since, missing)
    }

    fn rounds(&self) -> u64 {
        self.rounds.load(Ordering::Relaxed)
    }

    /// Finishes the current round (so every hub's last beat carries the
    /// same number) and returns (beats published, last round).
    async fn finish(self) -> (u64, u64) {
        self.resume();
        self.stop.cancel();
        self.task.await.unwrap()
    }
}

async fn run_load(
    urls: Vec<String>,
    stop: CancellationToken,
    paused: Arc<AtomicBool>,
    paused_at: Arc<AtomicU64>,
    counter: Arc<AtomicU64>,
    rounds: Arc<AtomicU64>,
) -> (u64, u64) {
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
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut published, mut next, mut round) = (0u64, 0usize, 1u64);
    while !stop.is_cancelled() {
        ticker.tick().await;
        if paused.load(Ordering::SeqCst) {
            if paused_at.load(Ordering::SeqCst) == RUNNING {
                for c in &clients {
                    // A node may be down: its client delivers on reconnect.
                    let _ = c.flush().await;
                }
                paused_at.store(published, Ordering::SeqCst);
            }
            continue;
        }
        for _ in 0..per_tick {
            let slug = format!("hub{next:05}");
            let client = &clients[next % clients.len()];
            if client
                .publish(format!("hub.presence.{slug}"), beat(&slug, round).into())
                .await
                .is_ok()
            {
                published += 1;
                counter.store(published, Ordering::Relaxed);
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
}

/// Beats counted by the live replicas, plus what dead ones had counted
/// when last asked.
async fn counted(http: &reqwest::Client, replicas: &[Replica], dead: f64) -> f64 {
    let mut sum = dead;
    for r in replicas.iter().filter(|r| r.alive()) {
        sum += metric(http, r.port, "heartbeat_total").await.unwrap_or(0.0);
    }
    sum
}

/// With the load paused: waits until the replicas have counted every beat
/// published, or until their count has not moved for five seconds (what
/// is missing then never arrives); returns the beats missing.
async fn drained(http: &reqwest::Client, replicas: &[Replica], dead: f64, published: u64) -> u64 {
    let (mut last, mut since) = (-1.0, Instant::now());
    loop {
        let now = counted(http, replicas, dead).await;
        assert!(
            now <= published as f64,
            "counted {now} > published {published}: a beat counted twice"
        );
        if now == published as f64 {
            return 0;
        }
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() > Duration::from_secs(5) {
            return published - now as u64;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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

    let load = Load::start(&cluster);
    let stop = CancellationToken::new();
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
    // Between faults the load pauses and the pipeline drains: what is
    // missing then was lost in the phase just ended. With nothing failing,
    // nothing may be missing.
    let mut dead = 0.0;
    let mut published = 0;
    let (_, steady_loss) = load.end_phase(&http, &replicas, dead, &mut published).await;
    assert_eq!(steady_loss, 0, "beats lost with nothing failing");

    // 1. A NATS node dies and comes back.
    cluster.node_mut(0).kill().await;
    let churned = acknowledged.load(Ordering::Relaxed);
    eventually(WAIT, "changes acknowledged with a node down", || async {
        (acknowledged.load(Ordering::Relaxed) >= churned + 3).then_some(())
    })
    .await;
    cluster.node_mut(0).restart().await;
    let (node_phase, node_loss) = load.end_phase(&http, &replicas, dead, &mut published).await;

    // 2. The replica leading the sweeper dies.
    let leader = eventually(WAIT, "a sweeper leader", || {
        leader_among(&http, &replicas, "sweeper_leader")
    })
    .await;
    dead = metric(&http, replicas[leader].port, "heartbeat_total")
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
    let (leader_phase, leader_loss) = load.end_phase(&http, &replicas, dead, &mut published).await;

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
    let (pg_phase, pg_loss) = load.end_phase(&http, &replicas, dead, &mut published).await;

    // Run on for a whole round after the last fault (beats that were in
    // the dead leader's memory are lost with it; the next round replaces
    // them), then stop: every hub's last beat must be written.
    let after = load.rounds() + 1;
    eventually(
        WAIT,
        "a full round of beats after the last fault",
        || async { (load.rounds() > after).then_some(()) },
    )
    .await;
    stop.cancel();
    let (published, last_round) = load.finish().await;
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
    let final_loss = drained(&http, &replicas, dead, published).await;

    // `drained` says what is missing since the start; each phase's share:
    let (leader_loss, pg_loss, final_loss) = (
        leader_loss - node_loss,
        pg_loss - leader_loss,
        final_loss - pg_loss,
    );
    println!(
        "published {published} beats; missing: {node_loss} of the {node_phase} published around \
         the node loss, {leader_loss} of the {leader_phase} around the leader's death (what it \
         counted after it was last asked included), {pg_loss} of the {pg_phase} around the \
         PostgreSQL restart, {final_loss} after; sweeper failover {sweeper_failover:?}, relay \
         failover {relay_failover:?}, PostgreSQL restart to acknowledged changes {pg_recovery:?}; \
         {} changes acknowledged",
        changes.len()
    );
    // Core NATS delivers at most once: a node that dies loses what it held.
    // A third of the beats enter through node 0 and a third of the others
    // leave through it to replica 0: more than those 5/9 missing would mean
    // beats lost that never touched the dead node.
    assert!(
        node_loss * 9 <= node_phase * 5,
        "{node_loss} of {node_phase} beats lost around the node loss: more than went through it"
    );
    // The dead replica held at most its share of the queue group (a third,
    // give or take the random choice): not half.
    assert!(
        leader_loss * 2 <= leader_phase,
        "{leader_loss} of {leader_phase} beats lost around the leader's death: more than it held"
    );
    // A PostgreSQL restart costs no beat: what cannot be written waits in
    // the coalescer. Nothing is lost after the last fault either.
    assert_eq!(pg_loss, 0, "beats lost over a PostgreSQL restart");
    assert_eq!(final_loss, 0, "beats lost after the last fault");

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
    let batches = (500, Duration::from_secs(2));
    pull_each(
        &consumer,
        outbox.len(),
        batches,
        "the durable consumer",
        |m| {
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
            async move { m.ack().await.unwrap() }
        },
    )
    .await;
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
