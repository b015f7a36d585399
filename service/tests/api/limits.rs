//! What a client can hold is bounded: connections (a cap, a header-read and
//! an idle timeout) and watch streams (a cap). Raw TCP clients play the
//! slow and the idle ones. Time bounds here are generous liveness checks
//! ("it is closed, it does not hang"), never measurements.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// Far above every timeout configured below.
const WITHIN: Duration = Duration::from_secs(15);

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .expect("connect")
}

/// `true` once the server has closed the connection (EOF or reset).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// Sends one HTTP/1.1 request and reads its response head and body (the
/// server sends Content-Length on everything asked here). Lower-cased.
async fn exchange(stream: &mut TcpStream, method: &str, path: &str, key: Option<&str>) -> String {
    let key = key.map_or(String::new(), |k| format!("x-api-key: {k}\r\n"));
    stream
        .write_all(format!("{method} {path} HTTP/1.1\r\nhost: test\r\n{key}\r\n").as_bytes())
        .await
        .expect("send");
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    tokio::time::timeout(WITHIN, async {
        loop {
            let text = String::from_utf8_lossy(&got).to_lowercase();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|n| n.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if got.len() >= end + 4 + length {
                    return text;
                }
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return String::from_utf8_lossy(&got).to_lowercase(),
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("a response")
}

async fn metric_line(app: &TestApp, prefix: &str) -> Option<String> {
    let text = app.get("/metrics", None).await.text().await.ok()?;
    text.lines()
        .find(|l| l.starts_with(prefix))
        .map(str::to_owned)
}

#[tokio::test]
async fn a_request_head_sent_slowly_is_cut_at_the_header_timeout() {
    let app = spawn_app_yaml("server:\n  header_read_timeout: 1s\n  idle_timeout: 60s\n").await;
    let mut slow = connect(&app).await;
    slow.write_all(b"GET /health HTTP/1.1\r\nhost: test\r\n")
        .await
        .unwrap();
    // A header line every 200 ms keeps bytes coming, so only the header
    // timeout can end this; without it the connection is held forever.
    let cut = tokio::time::timeout(WITHIN, async {
        let mut buf = [0u8; 64];
        loop {
            if slow.write_all(b"x-slow: 1\r\n").await.is_err() {
                return;
            }
            if let Ok(Ok(0) | Err(_)) =
                tokio::time::timeout(Duration::from_millis(200), slow.read(&mut buf)).await
            {
                return;
            }
        }
    })
    .await;
    assert!(cut.is_ok(), "the slow request head was never cut");
    let line = metric_line(
        &app,
        "http_connections_closed_total{reason=\"header_timeout\"}",
    )
    .await;
    assert_eq!(
        line.as_deref(),
        Some("http_connections_closed_total{reason=\"header_timeout\"} 1")
    );
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let app = spawn_app_yaml("server:\n  idle_timeout: 1s\n  header_read_timeout: 10s\n").await;
    // A keep-alive connection after its request, and one that never sent
    // anything.
    let mut used = connect(&app).await;
    let answer = exchange(&mut used, "GET", "/health", None).await;
    assert!(answer.starts_with("http/1.1 200"), "{answer}");
    let mut silent = connect(&app).await;
    assert!(
        closed_within(&mut used, WITHIN).await,
        "idle keep-alive held"
    );
    assert!(
        closed_within(&mut silent, WITHIN).await,
        "silent connection held"
    );
    let line = metric_line(&app, "http_connections_closed_total{reason=\"idle\"}").await;
    let closed: f64 = line
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0);
    assert!(closed >= 2.0, "idle closes counted: {closed}");
}

#[tokio::test]
async fn at_the_connection_cap_probes_still_get_through_and_the_rest_is_shed() {
    let app = spawn_app_yaml("server:\n  max_connections: 3\n  max_watch_clients: 1\n").await;
    // Hold full connections until one lands in the reserve (the test
    // client's own pooled connection may hold a slot already): the reserve
    // answers the health route, then closes.
    let mut held = Vec::new();
    loop {
        let mut c = connect(&app).await;
        let answer = exchange(&mut c, "GET", "/health", None).await;
        assert!(answer.starts_with("http/1.1 200"), "{answer}");
        if answer.contains("connection: close") {
            break;
        }
        held.push(c);
        assert!(held.len() <= 3, "more connections served than the cap");
    }

    // At the cap: probes and scrapes answer, the API is shed with 503.
    for path in ["/health", "/ready", "/metrics"] {
        let mut probe = connect(&app).await;
        let answer = exchange(&mut probe, "GET", path, None).await;
        assert!(answer.starts_with("http/1.1 200"), "{path}: {answer}");
    }
    let mut api = connect(&app).await;
    let answer = exchange(&mut api, "GET", "/api/fed/projects", Some(ADMIN_KEY)).await;
    assert!(answer.starts_with("http/1.1 503"), "{answer}");
    assert_contains(&answer, "retry-after: 1");
    assert_contains(&answer, "application/problem+json");
    assert_contains(&answer, "connection limit");
    assert!(closed_within(&mut api, WITHIN).await);

    // The connections already held keep working.
    let answer = exchange(&mut held[0], "GET", "/api/fed/projects", Some(ADMIN_KEY)).await;
    assert!(answer.starts_with("http/1.1 200"), "{answer}");

    // Past the reserve too: closed at once, not left hanging.
    let mut reserve = Vec::new();
    for _ in 0..service::server::HEALTH_RESERVE {
        reserve.push(connect(&app).await);
    }
    let mut refused = connect(&app).await;
    let _ = refused
        .write_all(b"GET /health HTTP/1.1\r\nhost: test\r\n\r\n")
        .await;
    assert!(
        closed_within(&mut refused, WITHIN).await,
        "a connection past the reserve hangs"
    );
    drop(reserve);
    drop(held);
    testkit::eventually(WITHIN, "refusals counted", || async {
        let line = metric_line(
            &app,
            "http_connections_over_capacity_total{outcome=\"refused\"}",
        )
        .await?;
        (!line.ends_with(" 0")).then_some(())
    })
    .await;
}

#[tokio::test]
async fn watch_clients_past_the_cap_get_503_with_retry_after() {
    let app = spawn_app_yaml("server:\n  max_watch_clients: 2\n").await;
    let first = crate::fedkit::SseClient::connect(&app, None).await;
    let _second = crate::fedkit::SseClient::connect(&app, None).await;
    let res = app.get("/api/fed/watch", Some(AGENT_KEY)).await;
    let retry_after = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = assert_problem(res, 503).await;
    assert!(detail_of(&body).contains("max_watch_clients"), "{body}");
    assert_eq!(retry_after.as_deref(), Some("10"));
    testkit::eventually(WITHIN, "two watch clients counted", || async {
        let line = metric_line(&app, "event_watch_clients ").await?;
        (line == "event_watch_clients 2").then_some(())
    })
    .await;

    // A client that leaves gives its place back.
    drop(first);
    testkit::eventually(WITHIN, "a watch place to free up", || async {
        let watch = app.try_request(reqwest::Method::GET, "/api/fed/watch", Some(AGENT_KEY));
        (watch.await.ok()?.status() == 200).then_some(())
    })
    .await;
}
