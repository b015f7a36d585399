//! The web UI at `/ui` (see `crate::ui`).

use std::time::Duration;

use common::de;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::ConfigError;

/// Shortest `ui.session_key` accepted, in bytes.
pub const MIN_SESSION_KEY_LEN: usize = 32;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UiSettings {
    /// Serve the web UI at `/ui`.
    pub enabled: bool,
    /// Signs the session cookies (HMAC-SHA256), at least 32 bytes. Every
    /// replica behind one address must share it. Unset: a random key per
    /// process (sessions end when it restarts, and work only on the replica
    /// that issued them), with a warning at start.
    pub session_key: Option<SecretString>,
    /// How long a sign-in lasts.
    #[serde(deserialize_with = "de::duration")]
    pub session_ttl: Duration,
    /// Mark the session cookie `Secure` (sent over HTTPS only; browsers also
    /// send it to `http://localhost` and `http://127.0.0.1`). Turn off only
    /// to serve the UI over plain HTTP to another host name.
    pub secure_cookie: bool,
}

impl Default for UiSettings {
    fn default() -> Self {
        UiSettings {
            enabled: true,
            session_key: None,
            session_ttl: Duration::from_secs(8 * 3600),
            secure_cookie: true,
        }
    }
}

impl UiSettings {
    pub(super) fn check(&self, errors: &mut Vec<ConfigError>) {
        let mut push = |path: &str, message: String| errors.push(ConfigError::new(path, message));
        if let Some(key) = &self.session_key {
            if key.expose_secret().len() < MIN_SESSION_KEY_LEN {
                push(
                    "ui.session_key",
                    format!("must be at least {MIN_SESSION_KEY_LEN} bytes (value not shown)"),
                );
            }
        }
        let (least, most) = (Duration::from_secs(60), Duration::from_secs(7 * 24 * 3600));
        if self.session_ttl < least || self.session_ttl > most {
            push(
                "ui.session_ttl",
                format!(
                    "must be between {} and {}",
                    humantime::format_duration(least),
                    humantime::format_duration(most)
                ),
            );
        }
    }
}
