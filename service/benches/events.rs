//! Measures the event path on this machine, against a real PostgreSQL and
//! a private nats-server (JetStream, file storage):
//!
//! 1. relay throughput: events/s from a pre-filled outbox into JetStream,
//!    each acknowledged before the next, per batch size;
//! 2. watch fan-out: commit-to-receipt latency of one event to N SSE
//!    clients, and the time for N clients to receive a burst.
//!
//! Run: `cargo bench -p service --bench events` (BENCH_EVENTS=20000 to change
//! the relay burst). Prints a Markdown table; nothing is asserted.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use figment::providers::Format;
use protocol::EventKind;
use service::events::outbox;
use service::events::relay::OutboxRelay;
use sqlx::PgPool;
use testkit::{NatsServer, TestDb};

const ADMIN_KEY: &str = "bench-admin-key-0123456789";

async fn fill(pool: &PgPool, n: usize, per_tx: usize) {
    let data = serde_json::json!({
        "id": "spoke-fra-ee18ad42", "instance_code": "FRA", "name": "FRA Instance",
        "base_url": "https://fra.example:3010", "idp_public_url": "https://idp.fra.example:8453",
        "status": "approved", "status_reason": "bench",
    });
    let mut done = 0;
    while done < n {
        let mut tx = pool.begin().await.unwrap();
        for _ in 0..per_tx.min(n - done) {
            outbox::enqueue(
                &mut tx,
                EventKind::SpokeApproved,
                Some("spoke-fra-ee18ad42"),
                &data,
            )
            .await
            .unwrap();
            done += 1;
        }
        tx.commit().await.unwrap();
    }
}

async fn relay_throughput(n: usize, batch: usize) -> (f64, f64) {
    let db = TestDb::create().await;
    let pool = PgPool::connect(&db.url).await.unwrap();
    service::store::migrate(&pool).await.unwrap();
    fill(&pool, n, 100).await;
    let nats = NatsServer::start().await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let settings = service::config::EventSettings {
        batch_size: batch,
        ..Default::default()
    };
    let metrics = service::metrics::Metrics::new();
    let relay = OutboxRelay::new(pool.clone(), client, settings, metrics.events.clone());
    relay.ensure_stream().await.unwrap();
    let t0 = Instant::now();
    let mut published = 0;
    while published < n {
        published += relay.publish_batch().await.unwrap().published;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    // Re-publish of everything (crash between publish and mark): all duplicates.
    sqlx::query("UPDATE outbox SET published_at = NULL")
        .execute(&pool)
        .await
        .unwrap();
    let t1 = Instant::now();
    let mut again = 0;
    while again < n {
        again += relay.publish_batch().await.unwrap().published;
    }
    let dup_elapsed = t1.elapsed().as_secs_f64();
    assert_eq!(metrics.events.publish_duplicates.get() as usize, n);
    pool.close().await;
    (n as f64 / elapsed, n as f64 / dup_elapsed)
}

struct Sse {
    res: reqwest::Response,
    buf: String,
}

impl Sse {
    async fn connect(base: &str) -> Sse {
        let res = reqwest::Client::new()
            .get(format!("{base}/api/fed/watch"))
            .header("X-API-Key", ADMIN_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        Sse {
            res,
            buf: String::new(),
        }
    }

    /// The next event id.
    async fn next_id(&mut self) -> String {
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..end + 2).collect();
                if let Some(id) = frame.lines().find_map(|l| l.strip_prefix("id:")) {
                    return id.trim().to_owned();
                }
            }
            let chunk = self.res.chunk().await.unwrap().unwrap();
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn fan_out(clients: usize, samples: usize, burst: usize) -> (f64, f64, f64) {
    let db = TestDb::create().await;
    let yaml = format!(
        "server:\n  host: 127.0.0.1\n  port: 0\ndatabase:\n  url: \"{}\"\n  max_connections: 10\n\
         nats:\n  enabled: false\nauth:\n  admin_keys: [\"{ADMIN_KEY}\"]\nlog:\n  level: warn\n",
        db.url
    );
    let settings = service::config::Settings::from_figment(&figment::Figment::from(
        serde_saphyr::figment::Yaml::string(&yaml),
    ))
    .unwrap();
    let app = service::app::Application::build(settings, Vec::new())
        .await
        .unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let stop = app.shutdown_token();
    let handle = tokio::spawn(app.run_until_stopped());
    let ready = format!("{base}/ready");
    testkit::wait_ok(&ready, Duration::from_secs(60), "the service to be ready").await;
    let pool = PgPool::connect(&db.url).await.unwrap();
    let mut sses = Vec::new();
    for _ in 0..clients {
        sses.push(Sse::connect(&base).await);
    }
    // Latency: one event at a time, commit → every client has it.
    let mut latencies = Vec::with_capacity(samples);
    for _ in 0..samples {
        let mut tx = pool.begin().await.unwrap();
        let id = outbox::enqueue(
            &mut tx,
            EventKind::ProjectUpdated,
            Some("x"),
            &serde_json::json!({}),
        )
        .await
        .unwrap()
        .to_string();
        tx.commit().await.unwrap();
        let t0 = Instant::now();
        let all = sses.iter_mut().map(|s| async {
            let got = s.next_id().await;
            assert_eq!(got, id);
            t0.elapsed().as_secs_f64()
        });
        let times = futures::future::join_all(all).await;
        latencies.push(times.into_iter().fold(0.0, f64::max) * 1000.0);
    }
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    // Burst: `burst` events in transactions of 10; time until every client has all.
    let t0 = Instant::now();
    let writer = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut left = burst;
            while left > 0 {
                let mut tx = pool.begin().await.unwrap();
                for _ in 0..10.min(left) {
                    outbox::enqueue(
                        &mut tx,
                        EventKind::ProjectUpdated,
                        Some("x"),
                        &serde_json::json!({}),
                    )
                    .await
                    .unwrap();
                    left -= 1;
                }
                tx.commit().await.unwrap();
            }
        })
    };
    let all = sses.iter_mut().map(|s| async {
        for _ in 0..burst {
            s.next_id().await;
        }
    });
    futures::future::join_all(all).await;
    writer.await.unwrap();
    let burst_rate = (burst * clients) as f64 / t0.elapsed().as_secs_f64();
    drop(sses);
    stop.cancel();
    let _ = handle.await;
    pool.close().await;
    (
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        burst_rate,
    )
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let n: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    rt.block_on(async {
        println!("## Relay: pre-filled outbox → JetStream ({n} events)\n");
        println!("| batch_size | new events/s | re-publish (all duplicates) events/s |");
        println!("|---|---|---|");
        for batch in [10, 100, 1000] {
            let (rate, dup_rate) = relay_throughput(n, batch).await;
            println!("| {batch} | {rate:.0} | {dup_rate:.0} |");
        }
        println!("\n## Watch: commit → every SSE client has the event\n");
        println!("| clients | p50 ms | p99 ms | burst of 2000: deliveries/s (all clients) |");
        println!("|---|---|---|---|");
        for clients in [1, 10, 100] {
            let (p50, p99, rate) = fan_out(clients, 200, 2000).await;
            println!("| {clients} | {p50:.2} | {p99:.2} | {rate:.0} |");
        }
    });
}
