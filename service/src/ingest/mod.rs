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
use futures::StreamExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use protocol::{Heartbeat, Rejection};
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{HeartbeatSettings, NatsSettings};
use crate::log_limit::LogLimiter;
use crate::metrics::Metrics;
use coalescer::{HeartbeatCoalescer, Offer};
pub use sight::Sight;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// Ingestion metrics.
#[derive(Clone)]
pub struct IngestMetrics {
    pub accepted: Counter,
    pub rejected: Family<ReasonLabels, Counter>,
    pub batch_size: Histogram,
    pub flush_duration: Histogram,
    pub pending: Gauge,
    pub flush_errors: Counter,
}

impl IngestMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let accepted = Counter::default();
        registry.register(
            "heartbeat",
            "Heartbeats accepted and persisted (each message counts, including those coalesced into a newer one)",
            accepted.clone(),
        );
        let rejected = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "heartbeat_rejected",
            "Heartbeats rejected, by reason",
            rejected.clone(),
        );
        for r in Rejection::ALL {
            let _ = rejected.get_or_create(&ReasonLabels { reason: r.as_str() });
        }
        let batch_size = Histogram::new([
            1.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 25000.0, 50000.0,
        ]);
        registry.register(
            "heartbeat_batch_size",
            "Hubs written by one flush statement",
            batch_size.clone(),
        );
        let flush_duration = crate::metrics::latency_histogram();
        registry.register(
            "heartbeat_flush_duration_seconds",
            "Time to write one batch of heartbeats",
            flush_duration.clone(),
        );
        let pending = Gauge::default();
        registry.register(
            "heartbeat_pending",
            "Hubs whose latest heartbeat waits to be written",
            pending.clone(),
        );
        let flush_errors = Counter::default();
        registry.register(
            "heartbeat_flush_errors",
            "Flushes that failed and were retried",
            flush_errors.clone(),
        );
        IngestMetrics {
            accepted,
            rejected,
            batch_size,
            flush_duration,
            pending,
            flush_errors,
        }
    }

    fn reject(&self, reason: Rejection, n: u64) {
        self.rejected
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .inc_by(n);
    }
}

/// The running ingestion tasks.
pub struct Ingest {
    subscriber: JoinHandle<()>,
    flusher: JoinHandle<()>,
    stop_flusher: CancellationToken,
}

impl Ingest {
    /// Subscribes to `hub.presence.*` in the configured queue group and
    /// starts the flusher. `shutdown` stops the subscription.
    pub async fn start(
        client: Client,
        nats: &NatsSettings,
        settings: &HeartbeatSettings,
        pool: PgPool,
        metrics: Arc<Metrics>,
        sight: Arc<Sight>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Ingest> {
        // Room for a flood of distinct hubs, far above any real federation's
        // size, yet bounded.
        let coalescer = Arc::new(HeartbeatCoalescer::new(
            settings.max_batch.saturating_mul(20).max(100_000),
        ));
        let subscription = client
            .queue_subscribe(
                protocol::subjects::HEARTBEAT_WILDCARD,
                nats.queue_group.clone(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("cannot subscribe to heartbeats: {e}"))?;
        sight.mark_subscribed(Utc::now());
        tracing::info!(
            subject = protocol::subjects::HEARTBEAT_WILDCARD,
            queue_group = %nats.queue_group,
            "subscribed to heartbeats"
        );
        let subscriber = tokio::spawn(subscribe_loop(
            subscription,
            settings.max_payload_bytes,
            coalescer.clone(),
            metrics.ingest.clone(),
            sight.clone(),
            shutdown,
        ));
        let stop_flusher = CancellationToken::new();
        let flusher = tokio::spawn(flush_loop(
            pool,
            coalescer,
            settings.clone(),
            metrics,
            sight,
            stop_flusher.clone(),
        ));
        Ok(Ingest {
            subscriber,
            flusher,
            stop_flusher,
        })
    }

    /// After the shutdown token fired: waits for the subscription to end,
    /// then writes what is still pending and stops the flusher.
    pub async fn finish(self) {
        let _ = self.subscriber.await;
        self.stop_flusher.cancel();
        let _ = self.flusher.await;
    }
}

async fn subscribe_loop(
    mut subscription: async_nats::Subscriber,
    max_payload: usize,
    coalescer: Arc<HeartbeatCoalescer>,
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
                if coalescer.offer(hb, received_at) == Offer::Dropped {
                    metrics.reject(Rejection::Overflow, 1);
                    sight.mark_loss(received_at);
                    if let Some(suppressed) = log.allow(Rejection::Overflow) {
                        tracing::warn!(
                            reason = "overflow",
                            suppressed,
                            "heartbeat dropped: too many hubs pending"
                        );
                    }
                }
            }
            Err(reason) => {
                metrics.reject(reason, 1);
                if let Some(suppressed) = log.allow(reason) {
                    // The subject is bounded by NATS; the payload is not logged.
                    tracing::warn!(
                        reason = reason.as_str(),
                        subject = %truncate(message.subject.as_str(), 128),
                        bytes = message.payload.len(),
                        suppressed,
                        "heartbeat rejected"
                    );
                }
            }
        }
    }
    let _ = subscription.unsubscribe().await;
    tracing::info!("heartbeat subscription stopped");
}

async fn flush_loop(
    pool: PgPool,
    coalescer: Arc<HeartbeatCoalescer>,
    settings: HeartbeatSettings,
    all_metrics: Arc<Metrics>,
    sight: Arc<Sight>,
    stop: CancellationToken,
) {
    let metrics = &all_metrics.ingest;
    let catalog = &all_metrics.catalog;
    let mut log = LogLimiter::new(5, Duration::from_secs(10));
    let mut backoff = Duration::from_millis(100);
    loop {
        let stopping = tokio::select! {
            _ = coalescer.ready() => false,
            _ = tokio::time::sleep(settings.flush_interval) => false,
            _ = stop.cancelled() => true,
        };
        let mut failed = false;
        loop {
            let batch = coalescer.take(settings.max_batch);
            if batch.is_empty() {
                break;
            }
            let started = Instant::now();
            match write::apply_batch(&pool, &batch, settings.auto_register).await {
                Ok(outcome) => {
                    metrics
                        .flush_duration
                        .observe(started.elapsed().as_secs_f64());
                    metrics.batch_size.observe(batch.len() as f64);
                    metrics.accepted.inc_by(outcome.messages);
                    for (slug, n) in &outcome.unknown {
                        metrics.reject(Rejection::UnknownProject, *n);
                        if let Some(suppressed) = log.allow(Rejection::UnknownProject) {
                            tracing::warn!(reason = "unknown_project", slug = %slug, suppressed, "heartbeat for an unregistered project dropped");
                        }
                    }
                    for to in &outcome.transitions {
                        catalog.transition(to, "heartbeat");
                    }
                    for slug in &outcome.registered {
                        tracing::info!(slug = %slug, "project registered from its first heartbeat");
                        catalog.register.inc();
                    }
                    sight.mark_writes_ok();
                    backoff = Duration::from_millis(100);
                }
                Err(e) => {
                    metrics.flush_errors.inc();
                    coalescer.put_back(batch);
                    sight.mark_writes_failing();
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "writing heartbeats failed; they stay pending");
                    failed = true;
                    break;
                }
            }
        }
        metrics.pending.set(coalescer.len() as i64);
        if stopping && (!failed || coalescer.is_empty()) {
            break;
        }
        if failed {
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.cancelled(), if !stopping => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
            if stopping {
                // One more try at shutdown, then give up: what is left is
                // re-sent by the hubs within one interval.
                let left = coalescer.take(usize::MAX);
                if let Err(e) = write::apply_batch(&pool, &left, settings.auto_register).await {
                    tracing::warn!(error = %e, hubs = left.len(), "heartbeats not written at shutdown");
                }
                break;
            }
        }
    }
    tracing::debug!("heartbeat flusher stopped");
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
