//! Catalog freshness as a REST client sees it: how long after a heartbeat is
//! published, or a hub's deadline passes, the REST API says so — on the
//! replica that ingested it and on another replica — plus the throughput of
//! a single-project read beside `/health`.
//!
//! It starts its own nats-server, a throwaway database, replica A (ingests
//! heartbeats, runs the sweeper) and replica B (REST only, NATS off), and
//! measures with a steady background load of heartbeats:
//! 1. publish → visible through `GET /api/fed/projects/{slug}` on A and on B;
//! 2. `wrk` on `/health`, then on `GET /api/fed/projects/{slug}`, same
//!    settings, both on A (skipped when wrk is not installed);
//! 3. offline lateness as the API reports it: when a silent probe hub is
//!    first listed `offline` minus (its `last_heartbeat_at` + the threshold);
//! 4. after a flood of heartbeats for hubs that were offline, how long until
//!    `?status=online` lists every hub on A and B.
//!
//! Run it with `scripts/bench freshness` (which builds in release mode).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::Subject;
use bench::{ms, percentiles, Metrics, Service, ADMIN_KEY};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use clap::Parser;
use protocol::HubStatus;
use serde_json::Value;

#[derive(Debug, Parser)]
#[command(name = "freshness", about = "Measure how fresh the REST catalog is")]
struct Args {
    /// Simulated hubs (plus 100 probe hubs).
    #[arg(long, default_value_t = 2_000)]
    hubs: usize,
    /// Background heartbeats per second while measuring.
    #[arg(long, default_value_t = 200)]
    background: u64,
    /// Hubs the background load beats, round robin (the others fall silent
    /// once; so that none flaps, each beats faster than the degraded time).
    #[arg(long, default_value_t = 200)]
    background_hubs: usize,
    /// Latency samples per replica.
    #[arg(long, default_value_t = 300)]
    samples: usize,
    /// Heartbeats in the flood.
    #[arg(long, default_value_t = 200_000)]
    flood: usize,
    /// Heartbeats per second of the flood (paced, so the broker does not
    /// drop them for a slow consumer).
    #[arg(long, default_value_t = 50_000)]
    flood_rate: u64,
    /// Offline threshold given to the service, in seconds (degraded: half).
    #[arg(long, default_value_t = 4)]
    stale_threshold: u64,
    /// Seconds of each wrk run.
    #[arg(long, default_value_t = 10)]
    wrk_secs: u64,
    #[command(flatten)]
    service: bench::ServiceBin,
}

const PROBES: usize = 100;
const PROBE_ONLINE: &str = "status=online&tag=probe";

/// slug → (when REST first listed it offline, its last_heartbeat_at).
type FirstSeenOffline = HashMap<String, (DateTime<Utc>, DateTime<Utc>)>;

struct Replica {
    name: &'static str,
    service: Service,
}

impl Replica {
    async fn get(&self, http: &reqwest::Client, path: &str) -> anyhow::Result<Value> {
        Ok(http
            .get(format!("{}{path}", self.service.base))
            .header("X-API-Key", ADMIN_KEY)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let nats = testkit::NatsServer::start().await;
    let db = testkit::TestDb::create().await;
    let thresholds = bench::liveness_env(
        Duration::from_millis(args.stale_threshold * 500),
        Duration::from_secs(args.stale_threshold),
    );
    let a = Replica {
        name: "A (ingests)",
        service: Service::start(&args.service, &db.url, &nats.url(), &thresholds)?,
    };
    a.service.wait_ready().await;
    let pool = sqlx::PgPool::connect(&db.url).await?;
    let http = reqwest::Client::new();

    let total = args.hubs + PROBES;
    sqlx::query(
        "INSERT INTO projects (slug, name, hub_url, mesh_namespace, tags) \
         SELECT 'hub' || i, 'Hub ' || i, 'http://hub' || i || ':9001', 'hub.hub' || i, \
                CASE WHEN i >= $2 THEN ARRAY['probe'] ELSE ARRAY['fleet'] END \
         FROM generate_series(0, $1 - 1) i",
    )
    .bind(total as i64)
    .bind(args.hubs as i64)
    .execute(&pool)
    .await?;
    let online: Arc<Vec<(Subject, Bytes)>> = Arc::new(
        (0..total)
            .map(|i| message(i, 0, HubStatus::Online))
            .collect(),
    );
    let client = async_nats::connect(nats.url()).await?;
    bench::publish_each(&client, &online).await?;
    wait_listed(&a, &http, "status=online", total, Duration::from_secs(60)).await?;

    // Background load on the non-probe hubs.
    let stop = Arc::new(AtomicBool::new(false));
    let background = bench::background_load(
        client.clone(),
        online.clone(),
        args.background_hubs.clamp(1, args.hubs),
        (
            Duration::from_secs_f64(1.0 / args.background.max(1) as f64),
            1,
        ),
        stop.clone(),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut report = vec![format!(
        "| background load | {}/s over {} hubs (the other {} silent) |",
        args.background,
        args.background_hubs.min(args.hubs),
        args.hubs - args.background_hubs.min(args.hubs)
    )];

    // 1. Publish → visible through REST.
    // The same measure in the table, as a reference: what REST adds to it.
    // First with A alone (a one-replica deployment), then with B beside it.
    let mut seq = 1_000_000u64;
    for target in [None, Some(&a)] {
        let line = visibility(&client, &http, &pool, target, &args, &mut seq).await?;
        report.push(format!("{line} (A alone) |"));
    }
    let mut b_env = thresholds.to_vec();
    b_env.push(("FEDERATION__NATS__ENABLED", "false".into()));
    let b = Replica {
        name: "B (REST only)",
        service: Service::start(&args.service, &db.url, &nats.url(), &b_env)?,
    };
    b.service.wait_ready().await;
    wait_listed(&b, &http, PROBE_ONLINE, PROBES, Duration::from_secs(30)).await?;
    for target in [Some(&a), Some(&b)] {
        let line = visibility(&client, &http, &pool, target, &args, &mut seq).await?;
        report.push(format!("{line} (A and B) |"));
    }

    // 2. Throughput of one project beside /health.
    if which_wrk() {
        let health = wrk(&a.service.base, "/health", args.wrk_secs)?;
        let project = wrk(&a.service.base, "/api/fed/projects/hub1", args.wrk_secs)?;
        report.push(format!(
            "| wrk -t2 -c32 -d{}s on A: /health · GET one project | {health:.0} req/s · {project:.0} req/s ({:.2}×) |",
            args.wrk_secs,
            project / health
        ));
    } else {
        report.push("| wrk | not installed: throughput not measured |".into());
    }

    // 3. Offline lateness as the API reports it: the probe hubs beat once
    // more, then fall silent while the fleet keeps beating.
    let threshold = chrono::Duration::seconds(args.stale_threshold as i64);
    for hub in args.hubs..total {
        let (subject, payload) = message(hub, 0, HubStatus::Online);
        client.publish(subject, payload).await?;
    }
    client.flush().await?;
    for r in [&a, &b] {
        wait_listed(r, &http, PROBE_ONLINE, PROBES, Duration::from_secs(30)).await?;
    }
    let mut seen: [FirstSeenOffline; 2] = [HashMap::new(), HashMap::new()];
    let waited = Instant::now();
    while seen.iter().any(|s| s.len() < PROBES) {
        for (i, r) in [&a, &b].into_iter().enumerate() {
            let list = r
                .get(&http, "/api/fed/projects?status=offline&tag=probe")
                .await?;
            let now = Utc::now();
            for p in list.as_array().into_iter().flatten() {
                let slug = p["slug"].as_str().unwrap_or_default().to_owned();
                let last = p["last_heartbeat_at"]
                    .as_str()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&Utc));
                if let (Some(last), false) = (last, seen[i].contains_key(&slug)) {
                    seen[i].insert(slug, (now, last));
                }
            }
        }
        anyhow::ensure!(
            waited.elapsed() < Duration::from_secs(120),
            "not every hub went offline"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for (i, r) in [&a, &b].into_iter().enumerate() {
        let mut lateness: Vec<Duration> = seen[i]
            .values()
            .map(|(at, last)| (*at - *last - threshold).to_std().unwrap_or(Duration::ZERO))
            .collect();
        let early = seen[i]
            .values()
            .filter(|(at, last)| *at - *last < threshold)
            .count();
        let (p50, p99, max) = percentiles(&mut lateness);
        report.push(format!(
            "| offline visible via REST on {} after its deadline ({} hubs silent at once, threshold {} s, 10 ms polling) | p50 {} · p99 {} · max {}; early {early} |",
            r.name,
            lateness.len(),
            args.stale_threshold,
            ms(p50),
            ms(p99),
            ms(max)
        ));
    }
    // 4. A flood for hubs that were offline.
    stop.store(true, Ordering::Relaxed);
    background.await?;
    for i in 0..total {
        let (subject, payload) = message(i, 0, HubStatus::Offline);
        client.publish(subject, payload).await?;
    }
    client.flush().await?;
    for r in [&a, &b] {
        wait_listed(r, &http, "status=offline", total, Duration::from_secs(60)).await?;
    }
    let before = a.service.metric(&http, "heartbeat_total").await;
    let published = Instant::now();
    let chunk = 500usize;
    let pause = Duration::from_secs_f64(chunk as f64 / args.flood_rate.max(1) as f64);
    let mut next = tokio::time::Instant::now();
    for n in 0..args.flood {
        let (subject, payload) = &online[n % args.hubs];
        client.publish(subject.clone(), payload.clone()).await?;
        if n % chunk == chunk - 1 {
            next += pause;
            tokio::time::sleep_until(next).await;
        }
    }
    client.flush().await?;
    let publish_secs = published.elapsed();
    let last_published = Instant::now();
    let want = before + args.flood as f64;
    loop {
        if a.service.metric(&http, "heartbeat_total").await >= want {
            break;
        }
        anyhow::ensure!(
            last_published.elapsed() < Duration::from_secs(60),
            "the flood was not all written"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let written = Instant::now();
    let mut listed = Vec::new();
    for r in [&a, &b] {
        wait_listed(
            r,
            &http,
            "status=online",
            args.hubs,
            Duration::from_secs(30),
        )
        .await?;
        listed.push((r.name, written.elapsed(), last_published.elapsed()));
    }
    report.push(format!(
        "| flood of {} heartbeats at {}/s ({} hubs, offline before) | published in {}; all written {} after the last publish |",
        args.flood,
        args.flood_rate,
        args.hubs,
        ms(publish_secs),
        ms(written - last_published)
    ));
    for (name, after_write, after_publish) in listed {
        report.push(format!(
            "| flood: every hub listed `?status=online` on {name} | {} after the last write ({} after the last publish) |",
            ms(after_write),
            ms(after_publish)
        ));
    }

    let (rss_a, _) = a.service.memory_kib();
    report.push(format!(
        "| RSS of A at the end | {:.1} MiB |",
        rss_a as f64 / 1024.0
    ));

    println!("\n## freshness: {} hubs (+{PROBES} probes)\n", args.hubs);
    println!("| measure | value |\n|---|---|");
    for line in report {
        println!("{line}");
    }
    a.service.stop();
    b.service.stop();
    drop(db);
    Ok(())
}

/// Publishes a heartbeat of each probe hub in turn and times until it is
/// visible via REST on `target` (or, with `None`, in the table).
async fn visibility(
    client: &async_nats::Client,
    http: &reqwest::Client,
    pool: &sqlx::PgPool,
    target: Option<&Replica>,
    args: &Args,
    seq: &mut u64,
) -> anyhow::Result<String> {
    let mut latencies = Vec::with_capacity(args.samples);
    for n in 0..args.samples {
        let hub = args.hubs + n % PROBES;
        *seq += 1;
        let want = *seq;
        let path = format!("/api/fed/projects/hub{hub}");
        let heartbeat = message(hub, want, HubStatus::Online);
        let pause = Duration::from_micros(200);
        let latency = bench::time_until_seen(client, heartbeat, want, pause, || async {
            match target {
                Some(r) => Ok(r.get(http, &path).await?["heartbeat_seq"].as_u64()),
                None => bench::stored_seq(pool, hub).await,
            }
        })
        .await?;
        latencies.push(latency);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (p50, p99, max) = percentiles(&mut latencies);
    let what = match target {
        Some(r) => format!("via REST on {}", r.name),
        None => "in the table (reference, not what a user sees)".to_owned(),
    };
    Ok(format!(
        "| publish → visible {what} | p50 {} · p99 {} · max {} ({} samples)",
        ms(p50),
        ms(p99),
        ms(max),
        latencies.len()
    ))
}

/// Waits until `?{query}` lists at least `n` hubs.
async fn wait_listed(
    r: &Replica,
    http: &reqwest::Client,
    query: &str,
    n: usize,
    limit: Duration,
) -> anyhow::Result<()> {
    let path = format!("/api/fed/projects?{query}");
    let what = format!("{} never listed {n} hubs with ?{query}", r.name);
    bench::wait_until(limit, Duration::from_millis(1), &what, || async {
        let list = r.get(http, &path).await?;
        Ok(list.as_array().map_or(0, Vec::len) >= n)
    })
    .await
}

fn which_wrk() -> bool {
    std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .is_ok()
}

/// Requests per second wrk reports for `path`.
fn wrk(base: &str, path: &str, secs: u64) -> anyhow::Result<f64> {
    let out = std::process::Command::new("wrk")
        .args(["-t2", "-c32", &format!("-d{secs}s")])
        .args(["-H", &format!("X-API-Key: {ADMIN_KEY}")])
        .arg(format!("{base}{path}"))
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no Requests/sec in wrk's output:\n{text}"))
}

fn message(i: usize, seq: u64, status: HubStatus) -> (Subject, Bytes) {
    bench::heartbeat(i, seq, status, "freshness")
}
