//! The NATS connection: built from settings (user/password, token, NKey,
//! `.creds` file, TLS), reconnecting forever with capped backoff, and
//! watched so health, readiness, metrics and the sweeper know whether the
//! service can see heartbeats right now and since when.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use async_nats::{Client, ConnectErrorKind, ConnectOptions, Event};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio_util::sync::CancellationToken;

use crate::config::NatsSettings;
use tracing::instrument::WithSubscriber;

#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("cannot read NATS credentials file {path}: {source}")]
    Credentials {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot set up the NATS connection: {0}")]
    Connect(#[from] async_nats::ConnectError),
}

crate::instrument::metrics! {
    /// Connection metrics.
    pub struct NatsMetrics {
        /// 1 while connected to NATS, 0 otherwise
        pub connection_status: Gauge = "nats_connection_status",
        /// NATS connections re-established after a loss
        pub reconnects: Counter = "nats_reconnects",
        /// Times the NATS client dropped incoming messages because the service fell behind
        pub slow_consumer: Counter = "nats_slow_consumer",
    }
}

/// What the service knows about its NATS link.
#[derive(Debug, Default)]
struct LinkState {
    /// When the current connection was established; `None` while disconnected.
    connected_since: Option<DateTime<Utc>>,
    /// When the client last dropped messages (slow consumer).
    last_loss: Option<DateTime<Utc>>,
    ever_connected: bool,
    /// We are closing it ourselves (shutdown): losing it is expected.
    closing: bool,
}

/// A NATS client plus what we observed of its connection.
pub struct NatsConnection {
    client: Client,
    display_url: String,
    state: Arc<Mutex<LinkState>>,
    /// The servers were seen to admit a client without credentials.
    admits_anonymous: AtomicBool,
}

impl NatsConnection {
    /// Starts connecting in the background and returns at once: a broker that
    /// is down at start-up is retried forever, like a lost connection.
    pub async fn connect(settings: &NatsSettings, metrics: NatsMetrics) -> Result<Self, NatsError> {
        let display_url = settings.display_url();
        let state = Arc::new(Mutex::new(LinkState::default()));
        let (options, addrs) =
            settings
                .connect_options()
                .await
                .map_err(|source| NatsError::Credentials {
                    path: settings
                        .creds_file
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                    source,
                })?;
        // The ingest subscription is drained by a task that only parses and
        // coalesces, never waiting on the database. Its buffer
        // (`nats.subscription_capacity`, set by connect_options) absorbs
        // bursts; past it the client drops, which is counted and suspends
        // offline judgement (see ingest::Sight), so overload costs messages,
        // never unbounded memory.
        let events_state = state.clone();
        let events_url = display_url.clone();
        let options = options.event_callback(move |event| {
            let state = events_state.clone();
            let metrics = metrics.clone();
            let url = events_url.clone();
            async move { on_event(&event, &state, &metrics, &url) }
        });
        let client = options.connect(addrs).await?;
        tracing::info!(url = %display_url, "connecting to NATS");
        Ok(NatsConnection {
            client,
            display_url,
            state,
            admits_anonymous: AtomicBool::new(false),
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Server URL(s) without credentials.
    pub fn display_url(&self) -> &str {
        &self.display_url
    }

    /// Whether [`Self::watch_for_anonymous_access`] found that the servers
    /// admit a client without credentials.
    pub fn admits_anonymous(&self) -> bool {
        self.admits_anonymous.load(Ordering::Acquire)
    }

    /// Once connected, tries the servers once without credentials, retrying
    /// until one answers (or `shutdown`): an operator-mode server refuses
    /// it; one that admits it is open whatever the service's own
    /// credentials, and is warned of (log and `/ready`).
    pub async fn watch_for_anonymous_access(
        self: Arc<Self>,
        settings: NatsSettings,
        shutdown: CancellationToken,
    ) {
        loop {
            if self.is_connected() {
                match admits_anonymous(&settings).await {
                    Ok(true) => {
                        self.admits_anonymous.store(true, Ordering::Release);
                        tracing::warn!(url = %self.display_url, "{OPEN_NATS_ANONYMOUS_WARNING}");
                        return;
                    }
                    Ok(false) => {
                        tracing::info!(url = %self.display_url, "NATS refuses clients without credentials (operator mode)");
                        return;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot check whether NATS admits clients without credentials; trying again");
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(ANONYMOUS_PROBE_RETRY) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    pub fn is_connected(&self) -> bool {
        matches!(
            self.client.connection_state(),
            async_nats::connection::State::Connected
        )
    }

    /// When the current connection came up; `None` while disconnected.
    pub fn connected_since(&self) -> Option<DateTime<Utc>> {
        if !self.is_connected() {
            return None;
        }
        let observed = self.state.lock().ok().and_then(|s| s.connected_since);
        // The client may report connected before our callback ran.
        Some(observed.unwrap_or_else(Utc::now))
    }

    /// When the client last dropped incoming messages, if ever.
    pub fn last_loss(&self) -> Option<DateTime<Utc>> {
        self.state.lock().ok().and_then(|s| s.last_loss)
    }

    /// Flushes what was published, then closes (on shutdown).
    pub async fn close(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.closing = true;
        }
        if let Err(e) = self.client.drain().await {
            tracing::debug!(error = %e, "draining the NATS connection");
        }
    }
}

fn on_event(event: &Event, state: &Mutex<LinkState>, metrics: &NatsMetrics, url: &str) {
    match event {
        Event::Connected => {
            let reconnect = match state.lock() {
                Ok(mut s) => {
                    s.connected_since = Some(Utc::now());
                    std::mem::replace(&mut s.ever_connected, true)
                }
                Err(_) => false,
            };
            metrics.connection_status.set(1);
            if reconnect {
                metrics.reconnects.inc();
                tracing::warn!(url, "NATS connection re-established");
            } else {
                tracing::info!(url, "connected to NATS");
            }
        }
        Event::Disconnected | Event::Closed => {
            let closing = match state.lock() {
                Ok(mut s) => {
                    s.connected_since = None;
                    s.closing
                }
                Err(_) => false,
            };
            metrics.connection_status.set(0);
            if closing {
                tracing::info!(url, "NATS connection closed");
            } else {
                tracing::warn!(url, event = %event, "NATS connection lost; reconnecting");
            }
        }
        Event::LameDuckMode => tracing::warn!(url, "NATS server entering lame duck mode"),
        Event::SlowConsumer(sid) => {
            // Heartbeats were lost: silence cannot be judged over this moment.
            if let Ok(mut s) = state.lock() {
                s.last_loss = Some(Utc::now());
            }
            metrics.slow_consumer.inc();
            tracing::warn!(sid, "NATS slow consumer: messages dropped by the client")
        }
        Event::ServerError(e) => tracing::warn!(url, error = %e, "NATS server error"),
        Event::ClientError(e) => tracing::warn!(url, error = %e, "NATS client error"),
        Event::Draining => {
            if let Ok(mut s) = state.lock() {
                s.closing = true;
            }
            tracing::debug!("NATS connection draining")
        }
    }
}

/// What the log and `/ready` say when the servers admit anonymous clients
/// although the service has its own credentials.
pub const OPEN_NATS_ANONYMOUS_WARNING: &str = "open NATS: the server admits clients without \
     credentials although identity.dir is set, so any client may publish any hub's heartbeat; \
     run nats-server with the conf `federation nats-init` wrote";

/// How long the anonymous probe waits before trying an unreachable server again.
const ANONYMOUS_PROBE_RETRY: Duration = Duration::from_secs(5);

/// One attempt, without credentials and without retrying, at the servers
/// of `settings` (its TLS settings kept): `true` if admitted, `false` if
/// refused for authorization, an error if none answered.
pub async fn admits_anonymous(settings: &NatsSettings) -> Result<bool, String> {
    let (_, addrs) = settings
        .connect_options()
        .await
        .map_err(|e| format!("NATS settings: {e}"))?;
    let tls = &settings.tls;
    let mut options = ConnectOptions::new()
        .name(format!("{}-anonymous-probe", settings.client_name))
        .require_tls(tls.required)
        .connection_timeout(settings.connect_timeout);
    if let Some(ca) = &tls.ca_file {
        options = options.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    // The client logs a refused connection as an ERROR; here a refusal is
    // the answer hoped for, so the attempt logs nothing (its outcome is
    // logged by the caller).
    let attempt = options
        .connect(addrs)
        .with_subscriber(tracing::subscriber::NoSubscriber::default());
    match attempt.await {
        Ok(client) => {
            drop(client);
            Ok(true)
        }
        Err(e) if e.kind() == ConnectErrorKind::AuthorizationViolation => Ok(false),
        Err(e) => Err(e.to_string()),
    }
}
