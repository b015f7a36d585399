//! The outbox relay: one elected replica publishes committed outbox events
//! to the JetStream stream `FEDERATION_EVENTS`, in log order, each with
//! `Nats-Msg-Id` = event id, marking an event sent only once JetStream has
//! acknowledged it.
//!
//! A crash between the acknowledgement and the mark leaves the event
//! unmarked; it is published again and JetStream drops the copy (within the
//! stream's duplicate window). NATS down: publishes fail or time out, events
//! stay in the outbox (`outbox_pending` grows) and go out, in order, when it
//! is back. Events are published one at a time, each acknowledged before the
//! next is sent, so the stream never holds an event before one that precedes
//! it in the log, whatever the connection does (see docs/decisions.md).

use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage, stream};
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::log::{self, OutboxEvent};
use super::metrics::EventMetrics;
use crate::config::EventSettings;
use crate::leader::Election;
use crate::store::outbox;

/// The channel the outbox trigger notifies on commit.
pub const NOTIFY_CHANNEL: &str = "outbox";

/// How often the leader prunes published events.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Most rows deleted by one prune statement.
const PRUNE_CHUNK: i64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("publishing event {id} to {subject}: {reason}")]
    Publish {
        id: uuid::Uuid,
        subject: String,
        reason: String,
    },
    #[error("JetStream stream {stream}: {reason}")]
    Stream { stream: String, reason: String },
}

/// Creates the stream if it is missing; warns if an existing one differs
/// from the settings (it is left as the operator configured it). The relay
/// and the sync worker (which may start before any relay) both call it.
pub async fn ensure_stream(
    js: &jetstream::Context,
    settings: &EventSettings,
) -> Result<(), RelayError> {
    let name = &settings.stream;
    let err = |reason: String| RelayError::Stream {
        stream: name.clone(),
        reason,
    };
    match js.get_stream(name).await {
        Ok(mut s) => {
            let info = s.info().await.map_err(|e| err(e.to_string()))?;
            let cfg = &info.config;
            if !cfg
                .subjects
                .iter()
                .any(|sub| sub == protocol::subjects::EVENTS_WILDCARD)
            {
                tracing::warn!(stream = %name, subjects = ?cfg.subjects, "the existing events stream does not capture fed.events.>; publishes may fail");
            }
            if cfg.duplicate_window != settings.duplicate_window {
                tracing::warn!(
                    stream = %name,
                    configured_s = settings.duplicate_window.as_secs_f64(),
                    actual_s = cfg.duplicate_window.as_secs_f64(),
                    "the existing events stream has another duplicate window; leaving it"
                );
            }
            if cfg.num_replicas != settings.stream_replicas {
                tracing::warn!(
                    stream = %name,
                    configured = settings.stream_replicas,
                    actual = cfg.num_replicas,
                    "the existing events stream has another number of replicas; leaving it (`nats stream edit --replicas` changes it)"
                );
            }
            Ok(())
        }
        Err(e)
            if matches!(
                e.kind(),
                jetstream::context::GetStreamErrorKind::JetStream(ref j)
                    if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
            ) =>
        {
            js.create_stream(stream::Config {
                name: name.clone(),
                subjects: vec![protocol::subjects::EVENTS_WILDCARD.into()],
                duplicate_window: settings.duplicate_window,
                num_replicas: settings.stream_replicas,
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| err(e.to_string()))?;
            tracing::info!(stream = %name, replicas = settings.stream_replicas, "created the events stream");
            Ok(())
        }
        Err(e) => Err(err(e.to_string())),
    }
}

/// What one step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Step {
    /// Events acknowledged and marked sent.
    pub published: usize,
    /// Of those, how many JetStream already had.
    pub duplicates: usize,
    /// The batch was full: more may be waiting right now.
    pub full: bool,
    /// The head of the log is locked by another relay (a deposed leader
    /// finishing its batch): nothing was published, to keep the order.
    pub blocked: bool,
}

pub struct OutboxRelay {
    db: PgPool,
    js: jetstream::Context,
    settings: EventSettings,
    metrics: EventMetrics,
}

impl OutboxRelay {
    pub fn new(
        db: PgPool,
        client: async_nats::Client,
        settings: EventSettings,
        metrics: EventMetrics,
    ) -> Self {
        let mut js = jetstream::new(client);
        js.set_timeout(settings.publish_timeout);
        OutboxRelay {
            db,
            js,
            settings,
            metrics,
        }
    }

    /// Creates the stream if it is missing; see [`ensure_stream`].
    pub async fn ensure_stream(&self) -> Result<(), RelayError> {
        ensure_stream(&self.js, &self.settings).await
    }

    /// One step: publishes up to `batch_size` readable events in log order,
    /// each acknowledged before the next is sent, and marks the acknowledged
    /// ones sent, in one transaction that holds their rows locked. On a
    /// failure the events acknowledged before it are still marked.
    pub async fn publish_batch(&self) -> Result<Step, RelayError> {
        let mut tx = self.db.begin().await?;
        let batch = outbox::claim_unpublished(&mut tx, self.settings.batch_size as i64).await?;
        let Some(first) = batch.first() else {
            tx.commit().await?;
            return Ok(Step::default());
        };
        // SKIP LOCKED would let us jump over rows another relay holds; publish
        // only if our batch starts at the head of the unpublished log.
        let head = outbox::unpublished_head(&mut tx).await?;
        if head != Some(first.cursor()) {
            tx.rollback().await?;
            return Ok(Step {
                blocked: true,
                ..Step::default()
            });
        }

        let mut acked: Vec<i64> = Vec::with_capacity(batch.len());
        let mut duplicates = 0;
        let mut failure = None;
        for event in &batch {
            match self.publish_one(event).await {
                Ok(duplicate) => {
                    acked.push(event.seq);
                    self.metrics.publish.inc();
                    if duplicate {
                        duplicates += 1;
                        self.metrics.publish_duplicates.inc();
                    }
                }
                Err(e) => {
                    self.metrics.publish_failures.inc();
                    failure = Some(e);
                    break;
                }
            }
        }
        if !acked.is_empty() {
            outbox::mark_published(&mut tx, &acked).await?;
        }
        tx.commit().await?;
        match failure {
            Some(e) => Err(e),
            None => Ok(Step {
                published: acked.len(),
                duplicates,
                full: batch.len() == self.settings.batch_size,
                blocked: false,
            }),
        }
    }

    /// Publishes one event and waits for its acknowledgement; `true` if
    /// JetStream already had it.
    async fn publish_one(&self, event: &OutboxEvent) -> Result<bool, RelayError> {
        let fail = |reason: String| RelayError::Publish {
            id: event.id,
            subject: event.subject.clone(),
            reason,
        };
        let payload = event.to_json(&self.settings.source);
        let message = PublishMessage::build()
            .message_id(event.id.to_string())
            .header("Content-Type", "application/cloudevents+json")
            .payload(payload.into());
        let ack = self
            .js
            .send_publish(event.subject.clone(), message)
            .await
            .map_err(|e| fail(e.to_string()))?
            .await
            .map_err(|e| fail(e.to_string()))?;
        Ok(ack.duplicate)
    }

    /// Deletes events published longer than `retention` ago.
    pub async fn prune(&self) -> Result<u64, sqlx::Error> {
        let retention = chrono::Duration::from_std(self.settings.retention)
            .unwrap_or_else(|_| chrono::Duration::days(3650));
        let cutoff = chrono::Utc::now() - retention;
        let mut total = 0;
        loop {
            let n = outbox::prune_published(&self.db, cutoff, PRUNE_CHUNK).await?;
            total += n;
            if n < PRUNE_CHUNK as u64 {
                break;
            }
        }
        if total > 0 {
            self.metrics.pruned.inc_by(total);
            tracing::info!(pruned = total, "pruned published events from the outbox");
        }
        Ok(total)
    }

    /// Runs while this replica leads `election`, until `shutdown`.
    pub async fn run(self, mut election: Election, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                leading = election.wait_until_leader() => if !leading { return },
                _ = shutdown.cancelled() => return,
            }
            tracing::info!("outbox relay leading");
            self.lead(&election, &shutdown).await;
            if shutdown.is_cancelled() {
                return;
            }
            tracing::info!("outbox relay standing by");
        }
    }

    /// The leader's loop: drain, then wait for a notification, a poll tick,
    /// loss of leadership or shutdown.
    async fn lead(&self, election: &Election, shutdown: &CancellationToken) {
        let mut leadership = election.watch();
        let still_leading = |l: &tokio::sync::watch::Receiver<bool>| *l.borrow();
        let mut listener = listen(&self.db).await;
        let mut stream_ready = false;
        let mut backoff = PublishFailures::new(self.settings.poll_interval);
        let mut next_prune = tokio::time::Instant::now();
        let mut held = log::held_back_delay(self.settings.poll_interval);
        while still_leading(&leadership) && !shutdown.is_cancelled() {
            if !stream_ready {
                match self.ensure_stream().await {
                    Ok(()) => stream_ready = true,
                    Err(e) => {
                        backoff.warn(&e);
                        if wait(backoff.next(), &mut listener, &mut leadership, shutdown).await {
                            break;
                        }
                        continue;
                    }
                }
            }
            let pause = match self.publish_batch().await {
                Ok(step) => {
                    backoff.reset();
                    if step.published > 0 {
                        held.reset();
                    }
                    if step.duplicates > 0 {
                        tracing::info!(
                            duplicates = step.duplicates,
                            "JetStream already had some events (re-publish after a crash)"
                        );
                    }
                    if step.full {
                        continue;
                    }
                    if step.blocked {
                        Some(Duration::from_millis(50))
                    } else {
                        // Committed events behind a running transaction become
                        // readable when it ends, without a notification.
                        match log::held_back(&self.db).await {
                            Ok(true) => Some(held.next_delay()),
                            _ => None,
                        }
                    }
                }
                Err(e) => {
                    if matches!(e, RelayError::Publish { .. }) {
                        // The stream may have been deleted; check again.
                        stream_ready = false;
                    }
                    backoff.warn(&e);
                    Some(backoff.next())
                }
            };
            if tokio::time::Instant::now() >= next_prune {
                if let Err(e) = self.prune().await {
                    tracing::warn!(error = %e, "cannot prune the outbox");
                }
                next_prune = tokio::time::Instant::now() + PRUNE_EVERY;
            }
            let delay = pause.unwrap_or(self.settings.poll_interval);
            if wait(delay, &mut listener, &mut leadership, shutdown).await {
                break;
            }
        }
    }
}

/// LISTEN on the outbox channel; `None` (poll only) if that fails.
pub async fn listen(db: &PgPool) -> Option<PgListener> {
    match PgListener::connect_with(db).await {
        Ok(mut l) => match l.listen(NOTIFY_CHANNEL).await {
            Ok(()) => Some(l),
            Err(e) => {
                tracing::warn!(error = %e, "cannot LISTEN for outbox events; polling");
                None
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "cannot LISTEN for outbox events; polling");
            None
        }
    }
}

/// Waits for `delay`, a notification, loss of leadership or shutdown;
/// `true` when the loop should stop.
async fn wait(
    delay: Duration,
    listener: &mut Option<PgListener>,
    leadership: &mut tokio::sync::watch::Receiver<bool>,
    shutdown: &CancellationToken,
) -> bool {
    let notified = async {
        match listener.as_mut() {
            Some(l) => {
                if let Err(e) = l.recv().await {
                    // The listener reconnects on the next call; poll meanwhile.
                    tracing::debug!(error = %e, "outbox listener lost its connection");
                    tokio::time::sleep(delay).await;
                }
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::time::sleep(delay) => false,
        _ = notified => false,
        changed = leadership.wait_for(|leading| !*leading) => { let _ = changed; true }
        _ = shutdown.cancelled() => true,
    }
}

/// Failures to publish: spaced by the shared retry policy, logged at the
/// first and then every tenth.
struct PublishFailures {
    schedule: common::retry::Schedule,
    failures: u64,
}

impl PublishFailures {
    fn new(base: Duration) -> Self {
        let base = base.min(Duration::from_millis(200));
        PublishFailures {
            schedule: common::retry::Backoff::new(base, Duration::from_secs(5)).schedule(),
            failures: 0,
        }
    }

    fn next(&mut self) -> Duration {
        self.schedule.next_delay()
    }

    fn reset(&mut self) {
        if self.failures > 0 {
            tracing::info!(failures = self.failures, "outbox relay publishing again");
        }
        self.schedule.reset();
        self.failures = 0;
    }

    fn warn(&mut self, e: &RelayError) {
        if self.failures.is_multiple_of(10) {
            tracing::warn!(error = %e, failures = self.failures + 1, "outbox relay cannot publish; events wait in the outbox");
        }
        self.failures += 1;
    }
}
