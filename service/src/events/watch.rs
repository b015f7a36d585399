//! The watch feed behind `GET /api/fed/watch`: every replica follows the
//! outbox log (woken by NOTIFY, polling as a fallback) and fans each event
//! out to its Server-Sent-Events clients through a broadcast channel.
//!
//! A client first catches up from the database (from its Last-Event-ID, or
//! from "now"), then follows the broadcast, skipping what it already sent.
//! It subscribes before catching up, so an event broadcast before the
//! subscription was readable before the catch-up query and is in its
//! answer: nothing falls between the two. Readability is not quite
//! monotonic (a transaction of another database that ends while the horizon
//! is computed counts as ours for that one statement), so a client catches
//! up at least to the position the tail had broadcast when it subscribed,
//! reading again until it gets there. A client that lags behind the
//! broadcast catches up from the database again. Every client sees the
//! same events in the same (xid, seq) order as the relay publishes them.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{broadcast, mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::log::{self, Cursor, OutboxEvent};
use super::metrics::EventMetrics;
use super::relay;
use crate::config::EventSettings;

/// Events read from the database per query.
const PAGE: i64 = 500;
/// Events buffered per replica for slow clients before they fall back to
/// the database.
const BROADCAST_CAPACITY: usize = 4096;
/// Events buffered per client connection. Past it the client's follower
/// waits (and falls behind the broadcast, then catches up from the
/// database), so a slow client costs at most this many events of memory.
const CLIENT_BUFFER: usize = 64;

/// An event ready to send: its position, id and CloudEvent JSON.
#[derive(Debug, Clone)]
pub struct FeedEvent {
    pub cursor: Cursor,
    pub id: String,
    pub json: String,
}

impl FeedEvent {
    fn from_row(row: &OutboxEvent, source: &str) -> Self {
        FeedEvent {
            cursor: row.cursor(),
            id: row.id.to_string(),
            json: row.to_json(source),
        }
    }
}

/// A watch client's place among `server.max_watch_clients`.
pub struct ClientSlot(#[allow(dead_code)] OwnedSemaphorePermit);

/// One per replica, shared by every watch client.
pub struct EventFeed {
    db: PgPool,
    tx: broadcast::Sender<Arc<FeedEvent>>,
    /// Where the tail has broadcast up to; `None` until it has read the
    /// head. Clients subscribe only once it is set, so no event can fall
    /// between the tail's start and their catch-up, and catch up at least to
    /// it. Advanced before the events are broadcast.
    broadcast_to: tokio::sync::watch::Sender<Option<Cursor>>,
    source: String,
    poll_interval: Duration,
    metrics: EventMetrics,
    shutdown: CancellationToken,
    /// One permit per client being served (`server.max_watch_clients`).
    clients: Arc<Semaphore>,
}

impl EventFeed {
    pub fn new(
        db: PgPool,
        settings: &EventSettings,
        max_clients: usize,
        metrics: EventMetrics,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let (tx, _) = broadcast::channel(BROADCAST_CAPACITY);
        Arc::new(EventFeed {
            clients: Arc::new(Semaphore::new(max_clients)),
            db,
            tx,
            broadcast_to: tokio::sync::watch::Sender::new(None),
            source: settings.source.clone(),
            poll_interval: settings.poll_interval,
            metrics,
            shutdown,
        })
    }

    /// Follows the log from its current head and broadcasts every event,
    /// until shutdown. Started once the schema is in place.
    pub async fn run_tail(self: Arc<Self>) {
        let mut listener = relay::listen(&self.db).await;
        let mut cursor = loop {
            match log::head(&self.db).await {
                Ok(c) => break c,
                Err(e) => {
                    tracing::warn!(error = %e, "watch feed cannot read the outbox; retrying");
                    if self.pause(Duration::from_secs(1), &mut listener).await {
                        return;
                    }
                }
            }
        };
        self.broadcast_to.send_replace(Some(cursor));
        let mut held = log::held_back_delay(self.poll_interval);
        loop {
            let delay = match log::read_after(&self.db, cursor, PAGE).await {
                Ok(rows) => {
                    if let Some(last) = rows.last() {
                        self.broadcast_to.send_replace(Some(last.cursor()));
                    }
                    for row in &rows {
                        // No receivers is fine: nobody is watching.
                        let _ = self
                            .tx
                            .send(Arc::new(FeedEvent::from_row(row, &self.source)));
                        cursor = row.cursor();
                    }
                    if !rows.is_empty() {
                        held.reset();
                    }
                    if rows.len() as i64 == PAGE {
                        continue;
                    }
                    match log::held_back(&self.db).await {
                        Ok(true) => held.next_delay(),
                        _ => self.poll_interval,
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "watch feed cannot read the outbox; retrying");
                    Duration::from_secs(1)
                }
            };
            if self.pause(delay, &mut listener).await {
                return;
            }
        }
    }

    /// `true` on shutdown.
    async fn pause(
        &self,
        delay: Duration,
        listener: &mut Option<sqlx::postgres::PgListener>,
    ) -> bool {
        let notified = async {
            match listener.as_mut() {
                Some(l) => {
                    if l.recv().await.is_err() {
                        tokio::time::sleep(delay).await;
                    }
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => false,
            _ = notified => false,
            _ = self.shutdown.cancelled() => true,
        }
    }

    /// The position "from now" starts at.
    pub async fn head(&self) -> Result<Cursor, sqlx::Error> {
        log::head(&self.db).await
    }

    /// Where a client resuming after event `id` starts; `None` if the event
    /// is not (or no longer) in the outbox.
    pub async fn position_of(&self, id: uuid::Uuid) -> Result<Option<Cursor>, sqlx::Error> {
        log::position_of(&self.db, id).await
    }

    /// A place for one more client, if the replica has one left. Held for
    /// as long as the client is served.
    pub fn admit(&self) -> Option<ClientSlot> {
        self.clients
            .clone()
            .try_acquire_owned()
            .ok()
            .map(ClientSlot)
    }

    /// Starts a client's follower from `after`; its events arrive on the
    /// returned channel, which closes on shutdown. The slot is given back
    /// when the client goes away.
    pub fn follow(
        self: &Arc<Self>,
        after: Cursor,
        slot: ClientSlot,
    ) -> mpsc::Receiver<Arc<FeedEvent>> {
        let (tx, rx) = mpsc::channel(CLIENT_BUFFER);
        let feed = self.clone();
        tokio::spawn(async move {
            let _slot = slot;
            feed.metrics.watch_clients.inc();
            let serve = async {
                let mut tailing = feed.broadcast_to.subscribe();
                if tailing.wait_for(Option::is_some).await.is_err() {
                    return;
                }
                // Subscribe before any catch-up query runs.
                let sub = feed.tx.subscribe();
                feed.serve_client(after, sub, &tx).await;
            };
            tokio::select! {
                _ = serve => {}
                _ = feed.shutdown.cancelled() => {}
                _ = tx.closed() => {}
            }
            feed.metrics.watch_clients.dec();
        });
        rx
    }

    async fn serve_client(
        &self,
        mut cursor: Cursor,
        mut sub: broadcast::Receiver<Arc<FeedEvent>>,
        tx: &mpsc::Sender<Arc<FeedEvent>>,
    ) {
        loop {
            // Catch up from the database, at least to where the broadcast
            // stood when this client subscribed (or lagged): those events
            // are committed, and become readable again if a read misses them.
            let target = (*self.broadcast_to.borrow()).unwrap_or(Cursor::START);
            let mut again = log::held_back_delay(self.poll_interval);
            loop {
                let rows = match log::read_after(&self.db, cursor, PAGE).await {
                    Ok(rows) => rows,
                    Err(e) => {
                        tracing::warn!(error = %e, "watch client cannot read the outbox; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                for row in &rows {
                    if tx
                        .send(Arc::new(FeedEvent::from_row(row, &self.source)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    cursor = row.cursor();
                }
                if (rows.len() as i64) == PAGE {
                    continue;
                }
                if cursor >= target {
                    break;
                }
                tokio::time::sleep(again.next_delay()).await;
            }
            // Follow the broadcast.
            loop {
                match sub.recv().await {
                    Ok(ev) => {
                        if ev.cursor > cursor {
                            cursor = ev.cursor;
                            if tx.send(ev).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::debug!(
                            missed,
                            "watch client lagged; catching up from the database"
                        );
                        break;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        }
    }
}
