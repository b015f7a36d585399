//! The HTTP server: our own accept loop around hyper, so that whatever a
//! client holds is bounded.
//!
//! - A connection cap (`server.max_connections`). Past it a small reserve
//!   ([`HEALTH_RESERVE`]) is still served, one request per connection and
//!   only the health and metrics routes ([`OverCapacity`]), so probes and
//!   scrapes get through while the server is full; past the reserve a new
//!   connection is closed at once, never left to hang in the backlog.
//! - A header-read timeout: once a request's first byte arrives, its headers
//!   must be complete within `server.header_read_timeout` (slowloris).
//! - An idle timeout: a connection with no request in flight that receives
//!   nothing for `server.idle_timeout` is closed, and so is one whose
//!   response the client has stopped reading for as long (a stuck
//!   Server-Sent-Events client whose socket stays full).
//! - Shutdown: stop accepting, let in-flight requests finish for
//!   `server.shutdown_grace`, then close what is left.
//!
//! HTTP/1.1 only, as `axum::serve` served it here.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::EncodeLabelValue;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// Connections served beyond `server.max_connections`, health and metrics
/// routes only, one request each.
pub const HEALTH_RESERVE: usize = 32;

/// File descriptors kept for everything but client connections: the
/// listener, database and NATS connections, files, and a margin.
const OTHER_FILES: usize = 64;

/// Largest buffer hyper keeps per connection, for reading a request head
/// and for queueing a response the client has not taken yet.
const MAX_CONNECTION_BUFFER: usize = 64 * 1024;

/// Put in the extensions of every request that arrived on a connection
/// beyond the cap; the router then serves only the health routes.
#[derive(Debug, Clone, Copy)]
pub struct OverCapacity;

/// What bounds each connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Limits {
    pub fn from_settings(s: &crate::config::ServerSettings) -> Self {
        Limits {
            max_connections: s.max_connections,
            header_read_timeout: s.header_read_timeout,
            idle_timeout: s.idle_timeout,
        }
    }
}

/// Why a connection was closed by the server.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum CloseReason {
    /// No request in flight and nothing received for `idle_timeout`.
    idle,
    /// A request head not complete within `header_read_timeout`.
    header_timeout,
    /// A response the client did not read for `idle_timeout`.
    stalled,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct CloseLabels {
    pub reason: CloseReason,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum OverflowOutcome {
    /// Served from the reserve: health and metrics routes only.
    health_only,
    /// Closed at once: the reserve was full too.
    refused,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct OverflowLabels {
    pub outcome: OverflowOutcome,
}

crate::instrument::metrics! {
    /// Connection metrics.
    pub struct ConnectionMetrics {
        /// HTTP connections open now, the health reserve included
        pub open: Gauge = "http_connections_open",
        /// Most HTTP connections served fully at once (server.max_connections, after fitting the open-file limit)
        pub limit: Gauge = "http_connections_limit",
        /// Connections accepted past the limit: served health routes only, or closed at once
        pub over_capacity: Family<OverflowLabels, Counter> = "http_connections_over_capacity",
        /// Connections the server closed, by reason (idle, header_timeout, stalled)
        pub closed: Family<CloseLabels, Counter> = "http_connections_closed",
    }
}

/// Raises the soft open-file limit to the hard one, and returns
/// `max_connections` lowered, if need be, so that it and the health reserve
/// fit below the limit beside `other_connections` (database, NATS).
pub fn fit_to_file_limit(max_connections: usize, other_connections: usize) -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(l) => l,
        Err(e) => {
            tracing::debug!(error = %e, "cannot raise the open-file limit");
            match rlimit::getrlimit(rlimit::Resource::NOFILE) {
                Ok((soft, _)) => soft,
                Err(_) => return max_connections,
            }
        }
    };
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let room = limit
        .saturating_sub(OTHER_FILES + other_connections + HEALTH_RESERVE)
        .max(1);
    if max_connections > room {
        tracing::warn!(
            requested = max_connections,
            lowered_to = room,
            open_file_limit = limit,
            "server.max_connections does not fit the open-file limit (ulimit -n); lowered"
        );
        room
    } else {
        max_connections
    }
}

/// Serves `router` on `listener` until `stop` is cancelled, then drains:
/// in-flight requests get `grace`, after which the rest are closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    metrics: ConnectionMetrics,
    stop: CancellationToken,
    grace: Duration,
) {
    metrics.limit.set(limits.max_connections as i64);
    let full = Arc::new(Semaphore::new(limits.max_connections));
    let reserve = Arc::new(Semaphore::new(HEALTH_RESERVE));
    let connections = TaskTracker::new();
    let force = CancellationToken::new();
    let mut accept_errors = crate::log_limit::LogLimiter::new(1, Duration::from_secs(10));
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Errors about one connection (reset before accept)
                    // need nothing; running out of descriptors needs a
                    // pause, or the loop would spin.
                    if !is_connection_error(&e) {
                        if let Some(suppressed) = accept_errors.allow("accept") {
                            tracing::warn!(error = %e, suppressed, "cannot accept connections");
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let (permit, over) = match full.clone().try_acquire_owned() {
            Ok(p) => (p, false),
            Err(_) => match reserve.clone().try_acquire_owned() {
                Ok(p) => {
                    metrics
                        .over_capacity
                        .get_or_create(&OverflowLabels {
                            outcome: OverflowOutcome::health_only,
                        })
                        .inc();
                    (p, true)
                }
                Err(_) => {
                    metrics
                        .over_capacity
                        .get_or_create(&OverflowLabels {
                            outcome: OverflowOutcome::refused,
                        })
                        .inc();
                    drop(stream);
                    continue;
                }
            },
        };
        let mut limits = limits;
        if over {
            // Probes send their request at once; a reserve slot is not
            // held idle.
            limits.idle_timeout = limits.header_read_timeout;
        }
        let (router, metrics, stop, force) =
            (router.clone(), metrics.clone(), stop.clone(), force.clone());
        metrics.open.inc();
        connections.spawn(async move {
            let closed = serve_connection(stream, router, over, limits, &stop, &force).await;
            if let Some(reason) = closed {
                metrics.closed.get_or_create(&CloseLabels { reason }).inc();
            }
            metrics.open.dec();
            drop(permit);
        });
    }
    // New connections are refused from here on.
    drop(listener);
    connections.close();
    if tokio::time::timeout(grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish within the grace period; closing them");
        force.cancel();
        connections.wait().await;
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Serves one connection until it ends, `force` fires, or one of its
/// timeouts does (returned). `stop` starts a graceful close: the request in
/// flight finishes, then the connection closes.
async fn serve_connection<I>(
    io: I,
    router: Router,
    over: bool,
    limits: Limits,
    stop: &CancellationToken,
    force: &CancellationToken,
) -> Option<CloseReason>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(TrackedIo {
        inner: io,
        activity: activity.clone(),
    });
    let requests = activity.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let in_flight = requests.begin_request();
        let mut req = req.map(Body::new);
        if over {
            req.extensions_mut().insert(OverCapacity);
        }
        let router = router.clone();
        async move {
            let res = match router.oneshot(req).await {
                Ok(res) => res,
                Err(never) => match never {},
            };
            Ok::<_, Infallible>(res.map(|body| TrackedBody {
                body,
                _in_flight: in_flight,
            }))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // Ours, below: hyper's would also close idle keep-alive connections
        // after the (short) header timeout.
        .header_read_timeout(None)
        .max_buf_size(MAX_CONNECTION_BUFFER)
        .keep_alive(!over);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        let deadline = activity.deadline(&limits);
        let expiry = async move {
            match deadline {
                Some((at, _)) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return None;
            }
            _ = activity.changed.notified() => {}
            _ = expiry => {
                if let Some((at, reason)) = activity.deadline(&limits) {
                    if at <= Instant::now() {
                        tracing::debug!(?reason, "closing a connection");
                        return Some(reason);
                    }
                }
            }
            _ = stop.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = force.cancelled() => return None,
        }
    }
}

/// "Not set" in the millisecond fields of [`Activity`].
const UNSET: u64 = u64::MAX;

/// What one connection is doing, as its timeouts need to know. Times are
/// milliseconds since `epoch`. Everything runs on the connection's own task;
/// atomics only make it `Sync` for hyper.
struct Activity {
    epoch: Instant,
    /// Requests whose response has not been sent whole yet.
    in_flight: AtomicU32,
    /// When the last response finished (or the connection opened).
    idle_since: AtomicU64,
    /// When the first byte of the next request arrived, while idle.
    head_started: AtomicU64,
    /// Since when writes find the socket full, without progress.
    write_blocked: AtomicU64,
    /// A deadline moved earlier or appeared.
    changed: Notify,
}

impl Activity {
    fn new() -> Self {
        Activity {
            epoch: Instant::now(),
            in_flight: AtomicU32::new(0),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(UNSET),
            write_blocked: AtomicU64::new(UNSET),
            changed: Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(UNSET - 1)
    }

    fn at(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }

    fn on_read(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_started.load(Ordering::Relaxed) == UNSET
        {
            self.head_started.store(self.now_ms(), Ordering::Relaxed);
            self.changed.notify_one();
        }
    }

    fn on_write(&self, progressed: bool) {
        let blocked = self.write_blocked.load(Ordering::Relaxed) != UNSET;
        if progressed {
            if blocked {
                self.write_blocked.store(UNSET, Ordering::Relaxed);
            }
        } else if !blocked {
            self.write_blocked.store(self.now_ms(), Ordering::Relaxed);
            self.changed.notify_one();
        }
    }

    fn begin_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_started.store(UNSET, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// When the connection is to be closed if nothing changes, and why.
    fn deadline(&self, limits: &Limits) -> Option<(Instant, CloseReason)> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            let blocked = self.write_blocked.load(Ordering::Relaxed);
            return (blocked != UNSET)
                .then(|| (self.at(blocked) + limits.idle_timeout, CloseReason::stalled));
        }
        let head = self.head_started.load(Ordering::Relaxed);
        if head != UNSET {
            return Some((
                self.at(head) + limits.header_read_timeout,
                CloseReason::header_timeout,
            ));
        }
        Some((
            self.at(self.idle_since.load(Ordering::Relaxed)) + limits.idle_timeout,
            CloseReason::idle,
        ))
    }
}

/// Held from a request's arrival until its response is sent (or dropped).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        if a.in_flight.load(Ordering::Relaxed) == 1 {
            a.idle_since.store(a.now_ms(), Ordering::Relaxed);
            a.head_started.store(UNSET, Ordering::Relaxed);
        }
        a.in_flight.fetch_sub(1, Ordering::Relaxed);
        a.changed.notify_one();
    }
}

/// A response body that keeps its request counted as in flight until hyper
/// has taken all of it.
struct TrackedBody {
    body: Body,
    _in_flight: InFlight,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The socket, telling [`Activity`] when bytes arrive and when writes stall.
struct TrackedIo<I> {
    inner: I,
    activity: Arc<Activity>,
}

impl<I: AsyncRead + Unpin> AsyncRead for TrackedIo<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.on_read();
        }
        result
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for TrackedIo<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.track(&result);
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.track(&result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<I> TrackedIo<I> {
    fn track(&self, result: &Poll<io::Result<usize>>) {
        match result {
            Poll::Pending => self.activity.on_write(false),
            Poll::Ready(Ok(n)) if *n > 0 => self.activity.on_write(true),
            Poll::Ready(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn limits(idle: Duration, header: Duration) -> Limits {
        Limits {
            max_connections: 10,
            header_read_timeout: header,
            idle_timeout: idle,
        }
    }

    /// A body that never ends, 1 KiB at a time.
    fn endless() -> Body {
        let chunk = Bytes::from(vec![b'x'; 1024]);
        Body::from_stream(futures::stream::repeat_with(move || {
            Ok::<_, Infallible>(chunk.clone())
        }))
    }

    /// Serves one connection of `router` over a 4 KiB pipe (it fills as
    /// soon as the client stops reading) with idle timeout `idle`, and sends
    /// `GET path`. The client side, the connection's task, and the token
    /// that starts a graceful stop.
    async fn connect(
        router: Router,
        idle: Duration,
        path: &str,
    ) -> (
        tokio::io::DuplexStream,
        tokio::task::JoinHandle<Option<CloseReason>>,
        CancellationToken,
    ) {
        let (mut client, server) = tokio::io::duplex(4096);
        let (stop, force) = (CancellationToken::new(), CancellationToken::new());
        let stopper = stop.clone();
        let task = tokio::spawn(async move {
            let l = limits(idle, Duration::from_secs(5));
            serve_connection(server, router, false, l, &stop, &force).await
        });
        let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n");
        client.write_all(request.as_bytes()).await.unwrap();
        (client, task, stopper)
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_a_response_is_dropped() {
        let router = Router::new().route("/stream", get(|| async { endless() }));
        let (mut client, task, _) = connect(router, Duration::from_millis(300), "/stream").await;
        // Read a little, then never again.
        let mut first = [0u8; 512];
        client.read_exact(&mut first).await.unwrap();
        let closed = tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("the stuck response is cut")
            .unwrap();
        assert!(matches!(closed, Some(CloseReason::stalled)), "{closed:?}");
    }

    #[tokio::test]
    async fn a_client_reading_slowly_but_steadily_is_kept() {
        let router = Router::new().route("/stream", get(|| async { endless() }));
        let (mut client, task, _) = connect(router, Duration::from_secs(1), "/stream").await;
        // Several idle timeouts' worth of reading, a little every 50 ms.
        let mut buf = [0u8; 2048];
        for _ in 0..60 {
            client.read_exact(&mut buf).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!task.is_finished());
        task.abort();
    }

    #[tokio::test]
    async fn shutdown_lets_the_request_in_flight_finish() {
        let entered = Arc::new(Notify::new());
        let inside = entered.clone();
        let router = Router::new().route(
            "/slow",
            get(move || async move {
                inside.notify_one();
                tokio::time::sleep(Duration::from_millis(200)).await;
                "done"
            }),
        );
        let (mut client, task, stopper) = connect(router, Duration::from_secs(60), "/slow").await;
        entered.notified().await;
        stopper.cancel();
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("done"), "{answer}");
        assert_eq!(task.await.unwrap(), None);
    }
}
