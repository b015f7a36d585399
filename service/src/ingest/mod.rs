//! Heartbeat ingestion: subject → validation → coalescer → one batched
//! statement.
//!
//! The subscriber task only parses, validates and coalesces, so the NATS
//! subscription is drained as fast as messages arrive and never waits on the
//! database. One flusher task owns the database side: while a flush is in
//! flight, heartbeats coalesce (latest per hub wins); as soon as it returns,
//! the next flush takes whatever accumulated.

pub mod coalescer;
pub mod sight;
pub mod write;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::Client;
use chrono::Utc;
use futures::future::BoxFuture;
use futures::StreamExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use protocol::{Heartbeat, Rejection};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::catalog::metrics::CatalogMetrics;
use crate::catalog_view::CatalogView;
use crate::config::{HeartbeatSettings, NatsSettings};
use crate::instrument::{latency_histogram, metrics};
use crate::log_limit::LogLimiter;
use coalescer::{HeartbeatCoalescer, Offer, Pending};
pub use sight::Sight;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

metrics! {
    /// Ingestion metrics.
    pub struct IngestMetrics {
        /// Heartbeats accepted and persisted (each message counts, including those coalesced into a newer one)
        pub accepted: Counter = "heartbeat",
        /// Heartbeats rejected, by reason
        pub rejected: Family<ReasonLabels, Counter> = "heartbeat_rejected",
        /// Hubs written by one flush statement
        pub batch_size: Histogram = "heartbeat_batch_size" => Histogram::new([
            1.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 25000.0, 50000.0,
        ]),
        /// Time to write one batch of heartbeats (successful flushes)
        pub flush_duration: Histogram = "heartbeat_flush_duration_seconds" => latency_histogram(),
        /// Hubs whose latest heartbeat waits to be written
        pub pending: Gauge = "heartbeat_pending",
        /// Flushes that failed and were retried
        pub flush_errors: Counter = "heartbeat_flush_errors",
        /// 1 while heartbeats cannot be written (the latest flush failed; they stay pending and are retried), 0 otherwise
        pub writes_failing: Gauge = "heartbeat_writes_failing",
    }
}

impl IngestMetrics {
    /// Registers them, every rejection reason present from the start at 0.
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self::register(registry);
        for r in Rejection::ALL {
            let _ = m
                .rejected
                .get_or_create(&ReasonLabels { reason: r.as_str() });
        }
        m
    }

    fn reject(&self, reason: Rejection, n: u64) {
        self.rejected
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .inc_by(n);
    }
}

/// How long start-up waits for the server to confirm the subscription.
const SUBSCRIBE_CONFIRM: Duration = Duration::from_secs(5);

/// How a flush that failed is retried.
const FLUSH_RETRY: common::retry::Backoff =
    common::retry::Backoff::new(Duration::from_millis(100), Duration::from_secs(5));

/// Where accepted heartbeats are written, and who hears about it.
pub struct Sinks {
    /// A pool of its own (its statements are large; a connection keeps
    /// buffers at its largest message), named as this replica's direct
    /// writer (see [`crate::catalog_view::follow`]).
    pub pool: PgPool,
    /// Heartbeats received, rejected, written; batch sizes and times.
    pub metrics: IngestMetrics,
    /// Status transitions and auto-registrations are counted here.
    pub catalog_metrics: CatalogMetrics,
    /// Told when a batch was written or could not be.
    pub sight: Arc<Sight>,
    /// Written rows are applied here right after commit.
    pub view: Arc<CatalogView>,
}

/// Heartbeat ingestion's two workers, for the caller to run (under its
/// supervisor). The subscriber stops on the shutdown token and then tells
/// the flusher, which writes what it still holds and stops: ingestion's own
/// graceful finish, inside the workers' shutdown deadline.
pub struct Ingest {
    /// Receives heartbeats into the coalescer.
    pub subscriber: BoxFuture<'static, ()>,
    /// Writes them in batches.
    pub flusher: BoxFuture<'static, ()>,
}

impl Ingest {
    /// Subscribes to `hub.presence.*` in the configured queue group and
    /// starts the flusher. `shutdown` stops the subscription.
    pub async fn start(
        client: Client,
        nats: &NatsSettings,
        settings: &HeartbeatSettings,
        sinks: Sinks,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Ingest> {
        let Sinks {
            pool,
            metrics,
            catalog_metrics,
            sight,
            view,
        } = sinks;
        // Hubs the catalog knows are always admitted (memory bounded by the
        // catalog's size); unknown slugs share a fixed budget. Without the
        // view nothing is known: everything shares a budget far above a real
        // federation's size.
        let unknown_budget = if view.enabled() {
            settings.max_unknown_pending
        } else {
            settings.max_batch.saturating_mul(20).max(100_000)
        };
        let coalescer = Arc::new(HeartbeatCoalescer::new(unknown_budget));
        let subscription = client
            .queue_subscribe(
                protocol::subjects::HEARTBEAT_WILDCARD,
                nats.queue_group.clone(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("cannot subscribe to heartbeats: {e}"))?;
        // The subscription is only a command queued to the server: a round
        // trip makes sure the server has it before we say we listen (and
        // before /ready says so). NATS down: we listen once it is back.
        let confirmed = tokio::time::timeout(SUBSCRIBE_CONFIRM, client.flush())
            .await
            .is_ok_and(|r| r.is_ok());
        if !confirmed {
            tracing::warn!(
                "NATS has not confirmed the heartbeat subscription yet; it will once connected"
            );
        }
        sight.mark_subscribed(Utc::now());
        tracing::info!(
            subject = protocol::subjects::HEARTBEAT_WILDCARD,
            queue_group = %nats.queue_group,
            "subscribed to heartbeats"
        );
        let stop_flusher = CancellationToken::new();
        let subscriber = subscribe_loop(
            subscription,
            settings.max_payload_bytes,
            coalescer.clone(),
            view.clone(),
            metrics.clone(),
            sight.clone(),
            shutdown,
        );
        let subscriber = {
            let stop_flusher = stop_flusher.clone();
            async move {
                // Dropped (aborted) or done, the flusher is told.
                let _stop = stop_flusher.drop_guard();
                subscriber.await;
            }
        };
        let flusher = Flusher {
            pool,
            settings: settings.clone(),
            metrics,
            catalog_metrics,
            sight,
            view,
            log: LogLimiter::new(5, Duration::from_secs(10)),
        };
        Ok(Ingest {
            subscriber: Box::pin(subscriber),
            flusher: Box::pin(flush_loop(coalescer, flusher, stop_flusher)),
        })
    }
}

async fn subscribe_loop(
    mut subscription: async_nats::Subscriber,
    max_payload: usize,
    coalescer: Arc<HeartbeatCoalescer>,
    view: Arc<CatalogView>,
    metrics: IngestMetrics,
    sight: Arc<Sight>,
    shutdown: CancellationToken,
) {
    let mut log = LogLimiter::new(5, Duration::from_secs(10));
    loop {
        let message = tokio::select! {
            m = subscription.next() => m,
            _ = shutdown.cancelled() => break,
        };
        let Some(message) = message else {
            tracing::warn!("heartbeat subscription closed");
            break;
        };
        let received_at = Utc::now();
        match Heartbeat::parse(message.subject.as_str(), &message.payload, max_payload) {
            Ok(hb) => {
                let known = view.contains(&hb.project_slug);
                if coalescer.offer(hb, received_at, known) == Offer::Dropped {
                    metrics.reject(Rejection::Overflow, 1);
                    sight.mark_loss(received_at);
                    if let Some(suppressed) = log.allow(Rejection::Overflow) {
                        tracing::warn!(
                            reason = "overflow",
                            suppressed,
                            "heartbeat dropped: too many unknown hubs pending"
                        );
                    }
                }
            }
            Err(rejected) => {
                metrics.reject(rejected.reason, 1);
                if let Some(suppressed) = log.allow(rejected.reason) {
                    // The subject is bounded by NATS; the payload is not logged.
                    tracing::warn!(
                        reason = rejected.reason.as_str(),
                        problem = %rejected.detail,
                        subject = %truncate(message.subject.as_str(), 128),
                        bytes = message.payload.len(),
                        suppressed,
                        "heartbeat rejected: {}",
                        rejected.detail
                    );
                }
            }
        }
    }
    let _ = subscription.unsubscribe().await;
    tracing::info!("heartbeat subscription stopped");
}

async fn flush_loop(
    coalescer: Arc<HeartbeatCoalescer>,
    mut flusher: Flusher,
    stop: CancellationToken,
) {
    let flush_interval = flusher.settings.flush_interval;
    let max_batch = flusher.settings.max_batch;
    let mut backoff = FLUSH_RETRY.schedule();
    loop {
        let stopping = tokio::select! {
            _ = coalescer.ready() => false,
            _ = tokio::time::sleep(flush_interval) => false,
            _ = stop.cancelled() => true,
        };
        let mut failed = false;
        loop {
            let batch = coalescer.take(max_batch);
            if batch.is_empty() {
                break;
            }
            if let Err(unwritten) = flusher.flush_once(batch).await {
                coalescer.put_back(unwritten);
                failed = true;
                break;
            }
            backoff.reset();
        }
        flusher.metrics.pending.set(coalescer.len() as i64);
        if stopping && (!failed || coalescer.is_empty()) {
            break;
        }
        if failed {
            tokio::select! {
                _ = tokio::time::sleep(backoff.next_delay()) => {}
                _ = stop.cancelled(), if !stopping => {}
            }
            if stopping {
                // One more try at shutdown, then give up: what is left is
                // re-sent by the hubs within one interval.
                let left = coalescer.take(usize::MAX);
                let hubs = left.len();
                if flusher.flush_once(left).await.is_err() {
                    tracing::warn!(hubs, "heartbeats not written at shutdown");
                }
                break;
            }
        }
    }
    tracing::debug!("heartbeat flusher stopped");
}

/// What the flusher needs besides the coalescer.
struct Flusher {
    pool: PgPool,
    settings: HeartbeatSettings,
    metrics: IngestMetrics,
    catalog_metrics: CatalogMetrics,
    sight: Arc<Sight>,
    view: Arc<CatalogView>,
    log: LogLimiter<Rejection>,
}

impl Flusher {
    /// Writes a batch. When the database fails (not a refused heartbeat:
    /// those are isolated and dropped), returns what was not written.
    async fn flush_once(&mut self, batch: Vec<Pending>) -> Result<(), Vec<Pending>> {
        let started = Instant::now();
        let n = batch.len();
        let done = write::apply_isolating(&self.pool, batch, self.settings.auto_register).await;
        let metrics = &self.metrics;
        if done.error.is_none() {
            metrics
                .flush_duration
                .observe(started.elapsed().as_secs_f64());
            metrics.batch_size.observe(n as f64);
        }
        let outcome = done.outcome;
        metrics.accepted.inc_by(outcome.messages);
        for (slug, count) in &outcome.unknown {
            metrics.reject(Rejection::UnknownProject, *count);
            if let Some(suppressed) = self.log.allow(Rejection::UnknownProject) {
                tracing::warn!(reason = "unknown_project", slug = %slug, suppressed, "heartbeat for an unregistered project dropped");
            }
        }
        for (pending, why) in &done.refused {
            metrics.reject(Rejection::DbRejected, pending.count);
            if let Some(suppressed) = self.log.allow(Rejection::DbRejected) {
                tracing::warn!(reason = "db_rejected", slug = %pending.heartbeat.project_slug, error = %why, suppressed, "heartbeat refused by the database and dropped; the others were written");
            }
        }
        for to in &outcome.transitions {
            self.catalog_metrics.transition(to.as_str(), "heartbeat");
        }
        for slug in &outcome.registered {
            tracing::info!(slug = %slug, "project registered from its first heartbeat");
            self.catalog_metrics.register.inc();
        }
        self.view.apply(outcome.rows);
        match done.error {
            None => {
                self.sight.mark_writes_ok();
                metrics.writes_failing.set(0);
                Ok(())
            }
            Some(e) => {
                metrics.flush_errors.inc();
                self.sight.mark_writes_failing(&e.to_string());
                metrics.writes_failing.set(1);
                // At most once per retry (100 ms doubling to 5 s): no limiter.
                tracing::warn!(error = %e, hubs = done.unwritten.len(), "writing heartbeats failed; they stay pending");
                Err(done.unwritten)
            }
        }
    }
}
fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
