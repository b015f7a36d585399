//! Whether the service can see heartbeats, and since when without loss.
//!
//! The stale sweeper judges a hub's silence only over time the service
//! could hear it: a hub is late when `now - max(last_heartbeat, sight_since)`
//! passes a threshold. While NATS is disconnected or heartbeats cannot be
//! written, there is no sight at all and nothing is judged. After a
//! reconnect, a restart or a dropped message, sight starts again, so a real
//! mass outage is still reported, one full threshold later.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::nats::NatsConnection;

pub struct Sight {
    nats: Option<Arc<NatsConnection>>,
    subscribed_at: Mutex<Option<DateTime<Utc>>>,
    last_loss: Mutex<Option<DateTime<Utc>>>,
    /// Since when heartbeat writes have been failing, and the latest error.
    writes_failing: Mutex<Option<(Instant, String)>>,
}

impl Sight {
    pub fn new(nats: Option<Arc<NatsConnection>>) -> Self {
        Sight {
            nats,
            subscribed_at: Mutex::new(None),
            last_loss: Mutex::new(None),
            writes_failing: Mutex::new(None),
        }
    }

    pub fn mark_subscribed(&self, at: DateTime<Utc>) {
        if let Ok(mut s) = self.subscribed_at.lock() {
            *s = Some(at);
        }
    }

    /// Heartbeats were lost (dropped by us or by the client).
    pub fn mark_loss(&self, at: DateTime<Utc>) {
        if let Ok(mut s) = self.last_loss.lock() {
            *s = Some(s.map_or(at, |old| old.max(at)));
        }
    }

    /// A batch could not be written (and stays pending); `error` is what
    /// the database said, without credentials.
    pub fn mark_writes_failing(&self, error: &str) {
        if let Ok(mut f) = self.writes_failing.lock() {
            let since = f.as_ref().map_or_else(Instant::now, |(at, _)| *at);
            *f = Some((since, error.to_owned()));
        }
    }

    pub fn mark_writes_ok(&self) {
        if let Ok(mut f) = self.writes_failing.lock() {
            *f = None;
        }
    }

    /// How long heartbeat writes have been failing, and the latest error.
    pub fn write_failure(&self) -> Option<(Duration, String)> {
        let f = self.writes_failing.lock().ok()?;
        f.as_ref().map(|(at, e)| (at.elapsed(), e.clone()))
    }

    /// Since when heartbeats have been received and stored without a gap;
    /// `None` while blind.
    pub fn since(&self) -> Option<DateTime<Utc>> {
        self.blindness().err()
    }

    /// `Ok(reason)` while blind, `Err(since)` otherwise (inverted so `since`
    /// stays a one-liner).
    fn blindness(&self) -> Result<&'static str, DateTime<Utc>> {
        let Some(nats) = &self.nats else {
            return Ok("NATS is not configured");
        };
        let Some(connected) = nats.connected_since() else {
            return Ok("NATS is disconnected");
        };
        let Some(subscribed) = self.subscribed_at.lock().ok().and_then(|s| *s) else {
            return Ok("not subscribed to heartbeats yet");
        };
        if self.writes_failing.lock().is_ok_and(|f| f.is_some()) {
            return Ok("heartbeats cannot be written to the database");
        }
        let loss = self.last_loss.lock().ok().and_then(|s| *s);
        let client_loss = nats.last_loss();
        Err([Some(connected), Some(subscribed), loss, client_loss]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(connected))
    }

    /// Why the service is blind right now, if it is.
    pub fn blind_reason(&self) -> Option<&'static str> {
        self.blindness().ok()
    }
}

impl Sight {
    /// While offline judgement is suspended: why, and (when sighted) from
    /// when it resumes.
    pub fn self_preservation(
        &self,
        now: DateTime<Utc>,
        threshold: std::time::Duration,
    ) -> Option<String> {
        let threshold = chrono::Duration::from_std(threshold).unwrap_or(chrono::Duration::MAX);
        match self.blindness() {
            Ok(reason) => Some(format!(
                "{reason}: no hub is marked offline until heartbeats are seen again"
            )),
            Err(since) if now - since < threshold => Some(format!(
                "sight regained at {}: hubs are judged offline only from {}",
                since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                (since + threshold).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )),
            Err(_) => None,
        }
    }
}
