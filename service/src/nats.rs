//! The NATS connection: built from settings (user/password, token, NKey,
//! `.creds` file, TLS), reconnecting forever with capped backoff, and
//! watched so health, readiness, metrics and the sweeper know whether the
//! service can see heartbeats right now and since when.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use async_nats::{Client, ConnectOptions, Event};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rand::Rng;
use secrecy::ExposeSecret;

use crate::config::NatsSettings;

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

/// Connection metrics.
#[derive(Clone)]
pub struct NatsMetrics {
    pub connection_status: Gauge,
    pub reconnects: Counter,
}

impl NatsMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let connection_status = Gauge::default();
        registry.register(
            "nats_connection_status",
            "1 while connected to NATS, 0 otherwise",
            connection_status.clone(),
        );
        let reconnects = Counter::default();
        registry.register(
            "nats_reconnects",
            "NATS connections re-established after a loss",
            reconnects.clone(),
        );
        NatsMetrics {
            connection_status,
            reconnects,
        }
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
}

/// A NATS client plus what we observed of its connection.
pub struct NatsConnection {
    client: Client,
    display_url: String,
    state: Arc<Mutex<LinkState>>,
}

impl NatsConnection {
    /// Starts connecting in the background and returns at once: a broker that
    /// is down at start-up is retried forever, like a lost connection.
    pub async fn connect(settings: &NatsSettings, metrics: NatsMetrics) -> Result<Self, NatsError> {
        let display_url = settings.display_url();
        let state = Arc::new(Mutex::new(LinkState::default()));
        // Credentials in the URL are moved into the options: the client would
        // otherwise carry them in every server address it logs.
        let (addrs, url_auth) = split_credentials(settings.url.expose_secret());
        let options = options(settings, url_auth).await?;
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
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Server URL(s) without credentials.
    pub fn display_url(&self) -> &str {
        &self.display_url
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
            if let Ok(mut s) = state.lock() {
                s.connected_since = None;
            }
            metrics.connection_status.set(0);
            tracing::warn!(url, event = %event, "NATS connection lost; reconnecting");
        }
        Event::LameDuckMode => tracing::warn!(url, "NATS server entering lame duck mode"),
        Event::SlowConsumer(sid) => {
            tracing::warn!(sid, "NATS slow consumer: messages dropped by the client")
        }
        Event::ServerError(e) => tracing::warn!(url, error = %e, "NATS server error"),
        Event::ClientError(e) => tracing::warn!(url, error = %e, "NATS client error"),
        Event::Draining => tracing::debug!("NATS connection draining"),
    }
}

/// Credentials found in server URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum UrlAuth {
    None,
    UserPassword(String, String),
    Token(String),
}

/// The server addresses without user info, and the first credentials found.
fn split_credentials(urls: &str) -> (Vec<String>, UrlAuth) {
    let mut auth = UrlAuth::None;
    let addrs = urls
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|raw| match url::Url::parse(raw) {
            Ok(mut u) if !u.username().is_empty() => {
                let user = percent_decode(u.username());
                let found = match u.password() {
                    Some(p) => UrlAuth::UserPassword(user, percent_decode(p)),
                    None => UrlAuth::Token(user),
                };
                if auth == UrlAuth::None {
                    auth = found;
                }
                let _ = u.set_username("");
                let _ = u.set_password(None);
                u.to_string().trim_end_matches('/').to_owned()
            }
            _ => raw.to_owned(),
        })
        .collect();
    (addrs, auth)
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

async fn options(settings: &NatsSettings, url_auth: UrlAuth) -> Result<ConnectOptions, NatsError> {
    let mut options = match &settings.creds_file {
        Some(path) => ConnectOptions::with_credentials_file(path)
            .await
            .map_err(|source| NatsError::Credentials {
                path: path.display().to_string(),
                source,
            })?,
        None => ConnectOptions::new(),
    };
    if let (Some(user), Some(password)) = (&settings.user, &settings.password) {
        options = options.user_and_password(user.clone(), password.expose_secret().to_owned());
    }
    if let Some(token) = &settings.token {
        options = options.token(token.expose_secret().to_owned());
    }
    if let Some(seed) = &settings.nkey_seed {
        options = options.nkey(seed.expose_secret().to_owned());
    }
    let explicit = settings.creds_file.is_some()
        || settings.user.is_some()
        || settings.token.is_some()
        || settings.nkey_seed.is_some();
    if !explicit {
        options = match url_auth {
            UrlAuth::UserPassword(user, password) => options.user_and_password(user, password),
            UrlAuth::Token(token) => options.token(token),
            UrlAuth::None => options,
        };
    }
    if let Some(ca) = &settings.tls.ca_file {
        options = options.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&settings.tls.cert_file, &settings.tls.key_file) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    Ok(options
        .require_tls(settings.tls.required)
        .name(&settings.client_name)
        .connection_timeout(settings.connect_timeout)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(reconnect_delay)
        // The ingest subscription must never make the client drop messages
        // while the flusher waits on the database: it is drained by a task
        // that only parses and coalesces.
        .subscription_capacity(1 << 18))
}

/// 100 ms doubling to 5 s, with ±20 % jitter so replicas do not reconnect in step.
fn reconnect_delay(attempts: usize) -> Duration {
    let base = 100u64.saturating_mul(1u64 << attempts.min(6)).min(5000);
    let jitter = rand::rng().random_range(0.8..1.2);
    Duration::from_millis((base as f64 * jitter) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_move_out_of_the_urls() {
        let (addrs, auth) = split_credentials("nats://hub:p%40ss@a:4222, nats://b:4222");
        assert_eq!(addrs, ["nats://a:4222", "nats://b:4222"]);
        assert_eq!(auth, UrlAuth::UserPassword("hub".into(), "p@ss".into()));
        let (addrs, auth) = split_credentials("tls://s3cr3t@a:4222");
        assert_eq!(addrs, ["tls://a:4222"]);
        assert_eq!(auth, UrlAuth::Token("s3cr3t".into()));
        assert_eq!(split_credentials("nats://a:4222").1, UrlAuth::None);
    }

    #[test]
    fn reconnect_delay_grows_and_is_capped() {
        assert!(reconnect_delay(0) <= Duration::from_millis(120));
        assert!(reconnect_delay(3) >= Duration::from_millis(640));
        for attempt in [6, 10, 100, usize::MAX] {
            assert!(reconnect_delay(attempt) <= Duration::from_millis(6000));
        }
    }
}
