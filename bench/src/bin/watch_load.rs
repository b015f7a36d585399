//! Watch-stream memory: opens and closes rounds of Server-Sent-Events
//! clients on `GET /api/fed/watch` of the real `federation` binary and
//! reports its RSS before any client, with every client connected, and
//! after they all left, round after round; then checks that one client
//! past `server.max_watch_clients` is refused with 503.
//!
//! Run it with `scripts/bench watch` (release build). It starts its own
//! throwaway database; NATS is off (the watch feed reads the outbox).

use std::time::{Duration, Instant};

use bench::{Metrics, Service, ADMIN_KEY};
use clap::Parser;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, Parser)]
#[command(
    name = "watch-load",
    about = "Measure the federation service's memory across rounds of watch clients"
)]
struct Args {
    /// Clients per round.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Rounds of opening and closing them all.
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// Events committed while each round's clients are connected (each
    /// reaches every client).
    #[arg(long, default_value_t = 20)]
    events: usize,
    #[command(flatten)]
    service: bench::ServiceBin,
    /// Extra environment for the service, NAME=VALUE (repeatable), e.g.
    /// MALLOC_ARENA_MAX=2.
    #[arg(long = "env")]
    env: Vec<String>,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Opens one watch stream and reads its response head; `Ok(status)`.
async fn open(port: u16) -> anyhow::Result<(u16, TcpStream)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(
        format!(
            "GET /api/fed/watch HTTP/1.1\r\nhost: bench\r\naccept: text/event-stream\r\nx-api-key: {ADMIN_KEY}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).await?;
        anyhow::ensure!(n > 0, "closed before answering");
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, s))
}

/// Waits up to 2 minutes for the metric `name` to be `want`; only warns if
/// it never is.
async fn wait_metric(service: &Service, http: &reqwest::Client, name: &str, want: f64) {
    let equal = (name, f64::eq as fn(&f64, &f64) -> bool, want);
    if let Err(e) = service
        .wait_metric(http, equal, Duration::from_secs(120))
        .await
    {
        eprintln!("warning: {e}");
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let db = testkit::TestDb::create().await;
    let mut env = vec![
        ("FEDERATION__NATS__ENABLED", "false".to_owned()),
        (
            "FEDERATION__SERVER__MAX_WATCH_CLIENTS",
            args.clients.to_string(),
        ),
        (
            "FEDERATION__SERVER__MAX_CONNECTIONS",
            (args.clients + 64).to_string(),
        ),
    ];
    let extra: Vec<(String, String)> = args
        .env
        .iter()
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
        .collect();
    for (k, v) in &extra {
        env.push((k.as_str(), v.clone()));
    }
    let service = Service::start(&args.service, &db.url, "nats://127.0.0.1:1", &env)?;
    service.wait_ready().await;
    // One connection for everything the bench asks besides the streams.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()?;
    let port = service.port;

    // Warm up the routes the rounds use, then take the baseline.
    let register = |i: usize| {
        let http = http.clone();
        let url = format!("{}/api/fed/projects", service.base);
        async move {
            let slug = format!("watch{i}");
            let body = serde_json::json!({
                "project_slug": slug,
                "name": slug,
                "hub_url": format!("http://{slug}.example:9001"),
                "mesh_namespace": format!("hub.{slug}"),
            });
            // Read the answer whole, so the one pooled connection is reused.
            if let Ok(res) = http
                .post(url)
                .header("X-API-Key", ADMIN_KEY)
                .json(&body)
                .send()
                .await
            {
                let _ = res.bytes().await;
            }
        }
    };
    register(usize::MAX).await;
    let _ = open(port).await;
    // The database pool grows to database.max_connections under a burst and
    // keeps its connections for minutes whatever made it grow: grow it
    // first, so the baseline holds it and the rounds show only what the
    // watch clients leave behind.
    let burst = reqwest::Client::new();
    futures::future::join_all((0..64).map(|_| {
        burst
            .get(format!("{}/api/federation/spokes", service.base))
            .header("X-API-Key", ADMIN_KEY)
            .send()
    }))
    .await;
    drop(burst);
    wait_metric(&service, &http, "event_watch_clients", 0.0).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (baseline, _) = service.memory_kib();
    println!(
        "watch-load: {} clients x {} rounds, {} events per round; baseline RSS {:.1} MiB",
        args.clients,
        args.rounds,
        args.events,
        mib(baseline)
    );
    println!("round | connected | RSS connected | RSS 1 s after all left | RSS 5 s after | 5 s / baseline");
    let mut after_last = baseline;
    let mut next_event = 0;
    for round in 1..=args.rounds {
        let t0 = Instant::now();
        let clients: Vec<_> = futures::stream::iter(0..args.clients)
            .map(|_| open(port))
            .buffer_unordered(64)
            .collect()
            .await;
        let mut held = Vec::new();
        for c in clients {
            match c {
                Ok((200, s)) => held.push(s),
                Ok((status, _)) => eprintln!("warning: a client got {status}"),
                Err(e) => eprintln!("warning: a client failed: {e}"),
            }
        }
        wait_metric(&service, &http, "event_watch_clients", held.len() as f64).await;
        for _ in 0..args.events {
            register(next_event).await;
            next_event += 1;
        }
        // Let the events reach every client.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (connected, _) = service.memory_kib();
        let opened = held.len();
        drop(held);
        wait_metric(&service, &http, "event_watch_clients", 0.0).await;
        wait_metric(&service, &http, "http_connections_open", 1.0).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (after_1s, _) = service.memory_kib();
        tokio::time::sleep(Duration::from_secs(4)).await;
        let (after, _) = service.memory_kib();
        after_last = after;
        println!(
            "{round:>5} | {opened:>9} | {:>9.1} MiB | {:>18.1} MiB | {:>9.1} MiB | {:>5.2}  ({:.1} s)",
            mib(connected),
            mib(after_1s),
            mib(after),
            after as f64 / baseline as f64,
            t0.elapsed().as_secs_f64()
        );
    }

    // The cap: every place taken, one more is refused.
    let clients: Vec<_> = futures::stream::iter(0..args.clients)
        .map(|_| open(port))
        .buffer_unordered(64)
        .collect()
        .await;
    wait_metric(&service, &http, "event_watch_clients", args.clients as f64).await;
    let over = open(port).await.map(|(s, _)| s).unwrap_or(0);
    println!(
        "client {} of {}: HTTP {over}",
        args.clients + 1,
        args.clients
    );
    drop(clients);
    let (_, peak) = service.memory_kib();
    println!(
        "RSS 5 s after the last round: {:.1} MiB ({:+.0} % of baseline); peak {:.1} MiB",
        mib(after_last),
        (after_last as f64 / baseline as f64 - 1.0) * 100.0,
        mib(peak)
    );
    service.stop();
    Ok(())
}
