//! Offline lateness at scale, as the REST API reports it: N registered hubs
//! beat over NATS against the real `federation` binary (release), then a
//! tenth of them fall silent at once while the others beat on. Reported:
//!
//! - lateness per hub from the API's own fields: `status_changed_at` −
//!   (`last_heartbeat_at` + the threshold), p50 / p99 / max;
//! - lateness as a REST client sees it: `X-Total-Count` of
//!   `?status=offline` is polled every 20 ms; the k-th hub listed offline is
//!   compared with the k-th deadline (a sweep never marks a later deadline
//!   before an earlier one, so this is each hub's first sight);
//! - when the last silent hub was listed offline, after the last deadline;
//! - the service's RSS.
//!
//!   scripts/bench scale            (runs it at 100,000 hubs after `scale`)
//!   target/release/silence --hubs 100000 --interval 10

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::Subject;
use bench::{ms, percentiles, Service, ADMIN_KEY};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use clap::Parser;
use protocol::HubStatus;
use serde_json::Value;

#[derive(Debug, Parser)]
#[command(
    name = "silence",
    about = "Offline lateness via REST when a tenth of a large federation falls silent at once"
)]
struct Args {
    /// Registered hubs, all beating at first.
    #[arg(long, default_value_t = 100_000)]
    hubs: usize,
    /// Every hub beats once per this many seconds (hubs ÷ interval beats/s).
    #[arg(long, default_value_t = 10)]
    interval: u64,
    /// One hub in this many falls silent.
    #[arg(long, default_value_t = 10)]
    one_in: usize,
    /// degraded_after / stale_threshold given to the service, in seconds.
    #[arg(long, default_value_t = 20)]
    degraded_after: u64,
    #[arg(long, default_value_t = 30)]
    stale_threshold: u64,
    #[command(flatten)]
    service: bench::ServiceBin,
}

fn message(i: usize) -> (Subject, Bytes) {
    bench::heartbeat(i, 1, HubStatus::Online, "silence")
}

/// A GET with the admin key; an error unless 2xx.
async fn get(http: &reqwest::Client, url: &str) -> anyhow::Result<reqwest::Response> {
    Ok(http
        .get(url)
        .header("X-API-Key", ADMIN_KEY)
        .send()
        .await?
        .error_for_status()?)
}

/// `X-Total-Count` of one REST list query.
async fn listed(http: &reqwest::Client, service: &Service, query: &str) -> anyhow::Result<usize> {
    let url = format!("{}/api/fed/projects?{query}&limit=1", service.base);
    let total = get(http, &url)
        .await?
        .headers()
        .get("x-total-count")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no X-Total-Count"))?;
    Ok(total)
}

/// A hub as `?status=offline` lists it: its number, last heartbeat and
/// when its status changed, as the API reports them.
type Listed = (usize, DateTime<Utc>, DateTime<Utc>);

/// Every hub `?status=offline` lists, page by page.
async fn offline_hubs(http: &reqwest::Client, service: &Service) -> anyhow::Result<Vec<Listed>> {
    let mut out = Vec::new();
    let mut url = format!(
        "{}/api/fed/projects?status=offline&limit=1000&sort=slug",
        service.base
    );
    loop {
        let res = get(http, &url).await?;
        let next = res
            .headers()
            .get("link")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix('<'))
            .and_then(|v| v.split_once('>'))
            .map(|(u, _)| u.to_owned());
        let page: Vec<Value> = res.json().await?;
        for p in &page {
            let at = |field: &str| {
                p[field]
                    .as_str()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&Utc))
            };
            let number = p["slug"]
                .as_str()
                .and_then(|s| s.strip_prefix("hub"))
                .and_then(|n| n.parse().ok());
            if let (Some(n), Some(last), Some(changed)) =
                (number, at("last_heartbeat_at"), at("status_changed_at"))
            {
                out.push((n, last, changed));
            }
        }
        match next {
            Some(n) if n.starts_with("http") => url = n,
            Some(n) => url = format!("{}{n}", service.base),
            None => return Ok(out),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.interval < args.degraded_after,
        "the beating hubs must beat more often than degraded_after"
    );
    let threshold = chrono::Duration::seconds(args.stale_threshold as i64);
    let nats = testkit::NatsServer::start().await;
    let db = testkit::TestDb::create().await;
    let pool = sqlx::PgPool::connect(&db.url).await?;
    let service = Service::start(
        &args.service,
        &db.url,
        &nats.url(),
        &bench::liveness_env(
            Duration::from_secs(args.degraded_after),
            Duration::from_secs(args.stale_threshold),
        ),
    )?;
    service.wait_ready().await;
    let http = reqwest::Client::new();
    sqlx::query(
        "INSERT INTO projects (slug, name, hub_url, mesh_namespace) \
         SELECT 'hub' || i, 'Hub ' || i, 'http://hub' || i || ':9001', 'hub.hub' || i \
         FROM generate_series(0, $1 - 1) i",
    )
    .bind(args.hubs as i64)
    .execute(&pool)
    .await?;
    sqlx::query("ANALYZE projects").execute(&pool).await?;
    let everyone: Vec<(Subject, Bytes)> = (0..args.hubs).map(message).collect();
    let beating: Arc<Vec<(Subject, Bytes)>> = Arc::new(
        (0..args.hubs)
            .filter(|i| i % args.one_in != 0)
            .map(message)
            .collect(),
    );
    let silent = args.hubs - beating.len();
    let client = async_nats::connect(nats.url()).await?;

    // Every hub beats once and is listed online: paced at 20,000/s, under
    // what the service ingests, so that its subscription never overflows.
    let t = Instant::now();
    for chunk in everyone.chunks(200) {
        bench::publish_each(&client, chunk).await?;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bench::wait_until(
        Duration::from_secs(120),
        Duration::from_millis(100),
        "every hub listed online",
        || async { Ok(listed(&http, &service, "status=online").await? == args.hubs) },
    )
    .await?;
    println!(
        "\n## silence: {} hubs, {silent} fall silent at once (threshold {} s, the others beat every {} s: {} beats/s)\n",
        args.hubs,
        args.stale_threshold,
        args.interval,
        beating.len() as u64 / args.interval
    );
    println!(
        "every hub beat once and was listed online in {}",
        ms(t.elapsed())
    );

    // The others beat on; the silent ones said their last.
    let stop = Arc::new(AtomicBool::new(false));
    let per_tick = (beating.len() as u64 / args.interval / 100).max(1) as usize;
    let background = bench::background_load(
        client.clone(),
        beating.clone(),
        beating.len(),
        (Duration::from_millis(10), per_tick),
        stop.clone(),
    );
    // REST polled: when the count of hubs listed offline grows.
    let mut sightings: Vec<(DateTime<Utc>, usize)> = Vec::new();
    let waited = Instant::now();
    let limit = Duration::from_secs(args.stale_threshold * 3 + 60);
    loop {
        let n = listed(&http, &service, "status=offline").await?;
        if sightings.last().is_none_or(|(_, k)| *k != n) {
            sightings.push((Utc::now(), n));
        }
        if n >= silent {
            break;
        }
        anyhow::ensure!(
            waited.elapsed() < limit,
            "only {n} of {silent} silent hubs listed offline"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    background.await?;
    let (rss, peak) = service.memory_kib();

    let hubs = offline_hubs(&http, &service).await?;
    let misjudged = hubs.iter().filter(|(n, _, _)| n % args.one_in != 0).count();
    anyhow::ensure!(
        hubs.len() == silent && misjudged == 0,
        "{} hubs listed offline, {misjudged} of them still beating; {silent} fell silent",
        hubs.len()
    );
    // 1. Per hub, from the API's fields.
    let mut lateness: Vec<Duration> = hubs
        .iter()
        .map(|(_, last, changed)| (*changed - *last - threshold).to_std().unwrap_or_default())
        .collect();
    let early = hubs
        .iter()
        .filter(|(_, last, changed)| *changed - *last < threshold)
        .count();
    let (l50, l99, lmax) = percentiles(&mut lateness);
    // 2. As a REST client first saw each: the k-th deadline against the
    // first sighting of at least k hubs offline.
    let mut deadlines: Vec<DateTime<Utc>> =
        hubs.iter().map(|(_, last, _)| *last + threshold).collect();
    deadlines.sort_unstable();
    let mut seen: Vec<Duration> = deadlines
        .iter()
        .enumerate()
        .map(|(k, deadline)| {
            let at = sightings
                .iter()
                .find(|(_, n)| *n > k)
                .map(|(at, _)| *at)
                .unwrap_or_else(Utc::now);
            (at - *deadline).to_std().unwrap_or_default()
        })
        .collect();
    let (s50, s99, smax) = percentiles(&mut seen);
    let last_deadline = deadlines.last().copied().unwrap_or_else(Utc::now);
    let all_listed = sightings.last().map(|(at, _)| *at).unwrap_or_else(Utc::now);

    println!("\n| measure | value |\n|---|---|");
    println!(
        "| offline lateness, API fields (status_changed_at − last_heartbeat_at − threshold) | p50 {} · p99 {} · max {}; early: {early} |",
        ms(l50),
        ms(l99),
        ms(lmax)
    );
    println!(
        "| offline lateness, first listed by REST (20 ms polling) | p50 {} · p99 {} · max {} |",
        ms(s50),
        ms(s99),
        ms(smax)
    );
    println!(
        "| last silent hub listed offline, after the last deadline | {} ({} REST sightings of the count growing) |",
        ms((all_listed - last_deadline).to_std().unwrap_or_default()),
        sightings.len()
    );
    println!("| beating hubs judged silent | {misjudged} |");
    println!(
        "| service RSS | {:.1} MiB now · peak {:.1} MiB |",
        rss as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    drop(pool);
    drop(db);
    Ok(())
}
