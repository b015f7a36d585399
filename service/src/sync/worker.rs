//! When to run: a durable JetStream pull consumer on `fed.events.>` with
//! explicit ack, a periodic full resync, and retries after a failed run.
//!
//! Every event only says "look again". Events arriving while a run is
//! scheduled or in flight wait for the next run, so a burst becomes one run.
//! An event is acked only after a run that *started after it arrived* has
//! finished (that run read a registry that includes its change); until
//! then it is kept alive with progress acks. Only the elected replica
//! consumes and runs.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, AckKind};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use super::{RunReport, SyncEngine, Trigger};
use crate::config::EventSettings;
use crate::events::relay::ensure_stream;
use crate::leader::Election;
use common::retry::Backoff;

/// Where the events come from.
pub struct EventSource {
    pub client: async_nats::Client,
    /// The events settings: the stream (`events.stream`) is created from
    /// them exactly as the relay would, if it is missing, so the worker may
    /// start before the relay.
    pub events: EventSettings,
}

pub struct SyncWorker {
    engine: Arc<SyncEngine>,
    events: Option<Arc<EventSource>>,
}

impl SyncWorker {
    /// `events` is `None` when NATS is off: then only the periodic resync runs.
    pub fn new(engine: Arc<SyncEngine>, events: Option<EventSource>) -> Self {
        SyncWorker {
            engine,
            events: events.map(Arc::new),
        }
    }

    /// Runs while this replica leads `election` (or always, without one),
    /// until `shutdown`.
    pub async fn run(self, mut election: Option<Election>, shutdown: CancellationToken) {
        loop {
            if let Some(e) = election.as_mut() {
                tokio::select! {
                    leading = e.wait_until_leader() => if !leading { break },
                    _ = shutdown.cancelled() => break,
                }
            }
            let term = shutdown.child_token();
            let watcher = election.clone().map(|mut e| {
                let term = term.clone();
                tokio::spawn(async move {
                    e.wait_until_follower().await;
                    term.cancel();
                })
            });
            self.engine.metrics().leader.set(1);
            tracing::info!("sync worker leading");
            self.lead(&term).await;
            self.engine.metrics().leader.set(0);
            if let Some(w) = watcher {
                w.abort();
            }
            if shutdown.is_cancelled() || election.is_none() {
                break;
            }
            tracing::warn!("sync worker lost the lead; standing by");
        }
        tracing::info!("sync worker stopped");
    }

    /// The lead: consume, coalesce, run, ack, until `stop`.
    async fn lead(&self, stop: &CancellationToken) {
        let settings = self.engine.settings().clone();
        let (tx, mut rx) = mpsc::channel::<jetstream::Message>(1024);
        let feeder = self.events.clone().map(|source| {
            tokio::spawn(feed(
                source,
                settings.consumer.clone(),
                settings.ack_wait,
                tx,
                stop.clone(),
            ))
        });
        let retry = settings.retry.backoff();
        let progress_every = (settings.ack_wait / 3).max(Duration::from_millis(200));
        let mut progress = tokio::time::interval(progress_every);
        let mut resync = tokio::time::interval_at(
            Instant::now() + settings.resync_interval,
            settings.resync_interval,
        );
        // Ticks missed during a long run are not made up in a burst.
        progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Received, not yet covered by a run that started after them.
        let mut held: Vec<jetstream::Message> = Vec::new();
        let mut next: Option<(Instant, Trigger)> = Some((Instant::now(), Trigger::Startup));
        let mut failures: u32 = 0;

        loop {
            let due = next.map(|(at, _)| at);
            tokio::select! {
                _ = stop.cancelled() => break,
                Some(msg) = rx.recv() => {
                    held.push(msg);
                    let at = Instant::now() + settings.debounce;
                    if next.is_none_or(|(n, _)| n > at) {
                        next = Some((at, Trigger::Event));
                    }
                }
                _ = resync.tick() => {
                    next = Some((Instant::now(), Trigger::Resync));
                }
                _ = progress.tick() => keep_alive(&held).await,
                _ = async { sleep_until(due.unwrap_or_else(Instant::now)).await }, if due.is_some() => {
                    let trigger = next.map_or(Trigger::Resync, |(_, t)| t);
                    next = None;
                    let covered = std::mem::take(&mut held);
                    let run = self.engine.reconcile(trigger);
                    tokio::pin!(run);
                    let outcome = loop {
                        tokio::select! {
                            r = &mut run => break Some(r),
                            _ = stop.cancelled() => break None,
                            Some(msg) = rx.recv() => held.push(msg),
                            _ = progress.tick() => {
                                keep_alive(&covered).await;
                                keep_alive(&held).await;
                            }
                        }
                    };
                    match outcome {
                        // Stopped mid-run: unacked events are redelivered
                        // to whoever leads next.
                        None => break,
                        Some(Ok(report)) => {
                            for m in &covered {
                                if let Err(e) = m.ack().await {
                                    tracing::debug!(error = %e, "cannot ack an event");
                                }
                            }
                            // Keeps federation_drift_items current for alerting.
                            if let Err(e) = self.engine.drift().await {
                                tracing::debug!(error = %e, "cannot compute the drift after a run");
                            }
                            if report.needs_retry() {
                                failures = failures.saturating_add(1);
                                let at = retry_at(&report, &retry, failures);
                                next = Some(earliest(next, at, Trigger::Retry));
                            } else {
                                failures = 0;
                            }
                        }
                        Some(Err(e)) => {
                            // Nothing was attempted: the events stay held
                            // for the next run.
                            tracing::warn!(error = %e, "sync run could not start");
                            held.splice(0..0, covered);
                            failures = failures.saturating_add(1);
                            let at = Instant::now() + retry.delay(failures.saturating_sub(1));
                            next = Some(earliest(next, at, Trigger::Retry));
                        }
                    }
                    if !held.is_empty() {
                        let at = Instant::now() + settings.debounce;
                        next = Some(earliest(next, at, Trigger::Event));
                    }
                }
            }
        }
        if let Some(f) = feeder {
            f.abort();
        }
    }
}

fn earliest(
    current: Option<(Instant, Trigger)>,
    at: Instant,
    trigger: Trigger,
) -> (Instant, Trigger) {
    match current {
        Some((n, t)) if n <= at => (n, t),
        _ => (at, trigger),
    }
}

/// When to try again after a run that left something undone: after the
/// backoff, but not before an open breaker lets a trial through.
fn retry_at(report: &RunReport, retry: &Backoff, failures: u32) -> Instant {
    let backoff = retry.delay(failures.saturating_sub(1));
    let mut wait = backoff;
    for r in [&report.tfvars, &report.keycloak] {
        if let Some(at) = r.retry_at {
            let until = (at - chrono::Utc::now()).to_std().unwrap_or_default();
            wait = wait.max(until + Duration::from_millis(50));
        }
    }
    Instant::now() + wait
}

async fn keep_alive(msgs: &[jetstream::Message]) {
    for m in msgs {
        let _ = m.ack_with(AckKind::Progress).await;
    }
}

/// Binds the durable consumer (creating the stream if needed, so the worker
/// may start before the relay) and forwards its messages; on any failure,
/// waits and binds again.
async fn feed(
    source: Arc<EventSource>,
    consumer_name: String,
    ack_wait: Duration,
    tx: mpsc::Sender<jetstream::Message>,
    stop: CancellationToken,
) {
    let mut pause = Backoff::new(Duration::from_millis(250), Duration::from_secs(10)).schedule();
    loop {
        match consume(&source, &consumer_name, ack_wait, &tx, &stop).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, "sync event consumer failed; binding again");
            }
        }
        let wait = pause.next_delay();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return,
        }
    }
}

async fn consume(
    source: &EventSource,
    consumer_name: &str,
    ack_wait: Duration,
    tx: &mpsc::Sender<jetstream::Message>,
    stop: &CancellationToken,
) -> Result<(), String> {
    let mut ensure_js = jetstream::new(source.client.clone());
    ensure_js.set_timeout(source.events.publish_timeout);
    ensure_stream(&ensure_js, &source.events)
        .await
        .map_err(|e| e.to_string())?;
    let js = jetstream::new(source.client.clone());
    let stream = js
        .get_stream(&source.events.stream)
        .await
        .map_err(|e| format!("stream {}: {e}", source.events.stream))?;
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(
            consumer_name,
            consumer::pull::Config {
                durable_name: Some(consumer_name.to_owned()),
                description: Some(
                    "federation sync worker: every event triggers a reconcile".into(),
                ),
                filter_subject: protocol::subjects::EVENTS_WILDCARD.to_owned(),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait,
                // A new consumer starts at new events: the worker's first
                // run covers everything before.
                deliver_policy: consumer::DeliverPolicy::New,
                max_deliver: -1,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("consumer {consumer_name}: {e}"))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| format!("consumer {consumer_name}: {e}"))?;
    tracing::info!(consumer = consumer_name, "sync consuming federation events");
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            next = messages.next() => match next {
                Some(Ok(msg)) => {
                    if tx.send(msg).await.is_err() {
                        return Ok(());
                    }
                }
                Some(Err(e)) => return Err(format!("receiving: {e}")),
                None => return Err("the message stream ended".into()),
            }
        }
    }
}
