//! Heartbeat load generator: simulates N hubs over NATS against the real
//! `federation` binary and reports
//! - accepted heartbeats/s in a flood (published, then all counted as
//!   persisted by `heartbeat_total`),
//! - publish → visible latency (p50/p99) at a steady background load,
//! - offline-detection lateness (transition time − last heartbeat − threshold),
//! - the service's RSS (current and peak).
//!
//! It starts its own nats-server and a throwaway database; run it with
//! `scripts/bench heartbeats` (which builds in release mode first).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::Subject;
use bench::{ms, percentiles, Metrics, Replicas};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use clap::Parser;
use protocol::HubStatus;

#[derive(Debug, Parser)]
#[command(
    name = "heartbeat-load",
    about = "Measure heartbeat ingestion of the federation service"
)]
struct Args {
    /// Simulated hubs.
    #[arg(long, default_value_t = 10_000)]
    hubs: usize,
    /// Seconds of flood (every hub, round-robin).
    #[arg(long, default_value_t = 20)]
    flood_secs: u64,
    /// Heartbeats per second during the flood (0: as fast as possible).
    #[arg(long, default_value_t = 120_000)]
    flood_rate: u64,
    /// Background heartbeats per second during the latency phase.
    #[arg(long, default_value_t = 5_000)]
    steady_rate: u64,
    /// Latency samples (on 100 probe hubs kept out of the background load).
    #[arg(long, default_value_t = 300)]
    samples: usize,
    /// degraded_after / stale_threshold given to the service, in seconds.
    #[arg(long, default_value_t = 3)]
    degraded_after: u64,
    #[arg(long, default_value_t = 6)]
    stale_threshold: u64,
    /// Service replicas sharing the load (queue group; figures summed).
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    #[command(flatten)]
    service: bench::ServiceBin,
}

const PROBES: usize = 100;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let thresholds = bench::liveness_env(
        Duration::from_secs(args.degraded_after),
        Duration::from_secs(args.stale_threshold),
    );
    let nats = testkit::NatsServer::start().await;
    let db = testkit::TestDb::create().await;
    let service = Replicas::start(
        args.replicas,
        &args.service,
        &db.url,
        &nats.url(),
        &thresholds,
    )?;
    service.wait_ready().await;
    let pool = sqlx::PgPool::connect(&db.url).await?;
    let http = reqwest::Client::new();

    // The catalog: N hubs plus the probe hubs.
    let total = args.hubs + PROBES;
    sqlx::query(
        "INSERT INTO projects (slug, name, hub_url, mesh_namespace) \
         SELECT 'hub' || i, 'Hub ' || i, 'http://hub' || i || ':9001', 'hub.hub' || i FROM generate_series(0, $1 - 1) i",
    )
    .bind(total as i64)
    .execute(&pool)
    .await?;
    let messages: Arc<Vec<(Subject, Bytes)>> =
        Arc::new((0..total).map(|i| message(i, 0)).collect());
    let client = async_nats::connect(nats.url()).await?;

    // Warm-up: every hub once, all online.
    bench::publish_each(&client, &messages).await?;
    let persisted = (
        "heartbeat_total",
        f64::ge as fn(&f64, &f64) -> bool,
        total as f64,
    );
    service
        .wait_metric(&http, persisted, Duration::from_secs(60))
        .await?;
    let online: i64 = sqlx::query_scalar("SELECT count(*) FROM projects WHERE status = 'online'")
        .fetch_one(&pool)
        .await?;
    anyhow::ensure!(
        online == total as i64,
        "only {online} of {total} hubs online after warm-up"
    );

    // 1. Flood: paced at --flood-rate (0: as fast as the publisher can).
    let before = service.metric(&http, "heartbeat_total").await;
    let batches_before = service.metric(&http, "heartbeat_batch_size_count").await;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.flood_secs);
    let mut sent = 0u64;
    {
        let chunk = 500u64;
        let mut i = 0usize;
        let mut next = tokio::time::Instant::now();
        let pause = if args.flood_rate > 0 {
            Duration::from_secs_f64(chunk as f64 / args.flood_rate as f64)
        } else {
            Duration::ZERO
        };
        while Instant::now() < deadline {
            for _ in 0..chunk {
                let (subject, payload) = &messages[i % args.hubs];
                client.publish(subject.clone(), payload.clone()).await?;
                i += 1;
            }
            sent += chunk;
            if !pause.is_zero() {
                next += pause;
                tokio::time::sleep_until(next).await;
            }
        }
        client.flush().await?;
    }
    let publish_secs = started.elapsed().as_secs_f64();
    let sent = sent as f64;
    // Wait until everything is counted, or the count stops moving (messages
    // lost upstream of the service, e.g. a slow consumer at the server).
    let mut peak_pending = 0.0f64;
    let mut counted = 0.0;
    let mut last_change = Instant::now();
    loop {
        let now_counted = service.metric(&http, "heartbeat_total").await - before;
        peak_pending = peak_pending.max(service.metric(&http, "heartbeat_pending").await);
        if now_counted > counted {
            counted = now_counted;
            last_change = Instant::now();
        }
        if counted >= sent || last_change.elapsed() > Duration::from_secs(3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let persisted_secs = (last_change - started).as_secs_f64();
    let lost = sent - counted;
    let rejected = service
        .metric(&http, "heartbeat_rejected_total{reason=\"overflow\"}")
        .await;
    let batches = service.metric(&http, "heartbeat_batch_size_count").await - batches_before;
    let (rss_flood, _) = service.memory_kib();

    // 2. Publish → visible latency under steady background load.
    let stop = Arc::new(AtomicBool::new(false));
    let background = bench::background_load(
        client.clone(),
        messages.clone(),
        args.hubs,
        (
            Duration::from_millis(10),
            (args.steady_rate / 100).max(1) as usize,
        ),
        stop.clone(),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut latencies = Vec::with_capacity(args.samples);
    for n in 0..args.samples {
        let hub = args.hubs + n % PROBES;
        let seq = 1_000_000 + n as u64;
        let pause = Duration::from_micros(500);
        let latency = bench::time_until_seen(&client, message(hub, seq), seq, pause, || {
            bench::stored_seq(&pool, hub)
        })
        .await?;
        latencies.push(latency);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    background.await?;
    client.flush().await?;
    let (p50, p99, max) = percentiles(&mut latencies);

    // 3. Offline detection: everyone falls silent at once.
    let silent_at = Utc::now();
    let waited = Instant::now();
    loop {
        let offline: i64 =
            sqlx::query_scalar("SELECT count(*) FROM projects WHERE status = 'offline'")
                .fetch_one(&pool)
                .await?;
        if offline == total as i64 {
            break;
        }
        anyhow::ensure!(
            waited.elapsed() < Duration::from_secs(120),
            "only {offline} of {total} hubs went offline"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let threshold = chrono::Duration::seconds(args.stale_threshold as i64);
    let rows: Vec<(DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT t.at, p.last_heartbeat_at FROM project_transitions t JOIN projects p ON p.id = t.project_id \
         WHERE t.to_status = 'offline' AND t.cause = 'sweeper' AND t.at >= $1",
    )
    .bind(silent_at)
    .fetch_all(&pool)
    .await?;
    let mut lateness: Vec<Duration> = rows
        .iter()
        .map(|(at, last)| (*at - *last - threshold).to_std().unwrap_or(Duration::ZERO))
        .collect();
    let early = rows
        .iter()
        .filter(|(at, last)| *at - *last < threshold)
        .count();
    let (l50, l99, lmax) = percentiles(&mut lateness);
    let (rss_now, rss_peak) = service.memory_kib();

    println!(
        "\n## heartbeat-load: {} hubs (+{PROBES} probes), {} replica(s)\n",
        args.hubs, args.replicas
    );
    println!("| measure | value |\n|---|---|");
    println!(
        "| flood: published | {sent:.0} in {publish_secs:.1} s ({:.0}/s) |",
        sent / publish_secs
    );
    println!(
        "| flood: accepted and persisted | {:.0}/s ({counted:.0} counted {:.1} s after the first; {lost:.0} lost before the service) |",
        counted / persisted_secs,
        persisted_secs
    );
    println!(
        "| flood: statements | {batches:.0} ({:.0} heartbeats each on average); overflow drops {rejected:.0}; peak pending {peak_pending:.0} hubs |",
        counted / batches.max(1.0)
    );
    println!(
        "| publish → visible (at {}/s background) | p50 {} · p99 {} · max {} ({} samples) |",
        args.steady_rate,
        ms(p50),
        ms(p99),
        ms(max),
        latencies.len()
    );
    println!(
        "| offline lateness (threshold {} s, {} hubs at once) | p50 {} · p99 {} · max {}; early: {early} |",
        args.stale_threshold,
        rows.len(),
        ms(l50),
        ms(l99),
        ms(lmax)
    );
    println!(
        "| service RSS | {:.1} MiB after the flood · {:.1} MiB at the end · peak {:.1} MiB |",
        rss_flood as f64 / 1024.0,
        rss_now as f64 / 1024.0,
        rss_peak as f64 / 1024.0
    );
    service.stop();
    drop(db);
    Ok(())
}

fn message(i: usize, seq: u64) -> (Subject, Bytes) {
    bench::heartbeat(i, seq, HubStatus::Online, "heartbeat-load")
}
