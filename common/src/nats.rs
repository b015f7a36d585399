//! NATS connection settings shared by the service and the agent, their
//! rules, and the client options built from them: every authentication
//! method, TLS, unlimited reconnects with capped, jittered backoff, and
//! credentials moved out of URLs so the client never logs them.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::ConnectOptions;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::config::redact_urls;
use crate::de;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsSettings {
    /// Connect to NATS at all (the service only; off: no ingestion, no events).
    pub enabled: bool,
    /// Server URL(s), comma-separated; may carry credentials, so it is a secret.
    pub url: SecretString,
    /// Client name shown by the server's monitoring.
    pub client_name: String,
    /// User name, with `password` (NATS user/password authentication).
    pub user: Option<String>,
    pub password: Option<SecretString>,
    /// Token authentication.
    pub token: Option<SecretString>,
    /// NKey seed (`SU...`).
    pub nkey_seed: Option<SecretString>,
    /// `.creds` file with a user JWT and NKey seed.
    pub creds_file: Option<PathBuf>,
    pub tls: NatsTlsSettings,
    /// Queue group shared by the service replicas (the service only).
    pub queue_group: String,
    #[serde(deserialize_with = "de::duration")]
    pub connect_timeout: Duration,
    /// Messages each subscription buffers before the client drops them (and
    /// reports a slow consumer): the service's heartbeat subscription
    /// absorbs bursts with it.
    pub subscription_capacity: usize,
}

/// Default of `subscription_capacity`: 65,536 messages, ~0.5 s of heartbeats
/// at full speed.
pub const DEFAULT_SUBSCRIPTION_CAPACITY: usize = 1 << 16;
/// Upper bound of `subscription_capacity`, so a typo cannot ask for gigabytes.
pub const MAX_SUBSCRIPTION_CAPACITY: usize = 1 << 24;

impl Default for NatsSettings {
    fn default() -> Self {
        NatsSettings {
            enabled: true,
            url: SecretString::from("nats://127.0.0.1:4222"),
            client_name: "federation".into(),
            user: None,
            password: None,
            token: None,
            nkey_seed: None,
            creds_file: None,
            tls: NatsTlsSettings::default(),
            queue_group: "federation-catalog".into(),
            connect_timeout: Duration::from_secs(5),
            subscription_capacity: DEFAULT_SUBSCRIPTION_CAPACITY,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsTlsSettings {
    /// Require TLS even if the URL says `nats://`.
    pub required: bool,
    /// CA bundle to trust (PEM).
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM), with `key_file`, for mutual TLS.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// Credentials found in server URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum UrlAuth {
    None,
    UserPassword(String, String),
    Token(String),
}

impl NatsSettings {
    /// The server URL(s) with any credentials removed, for logs and responses.
    pub fn display_url(&self) -> String {
        redact_urls(self.url.expose_secret())
    }

    /// Every broken rule, as (path below the section, message); `""` is the
    /// section itself.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut push = |path: &str, msg: String| out.push((path.to_owned(), msg));
        for part in self.url.expose_secret().split(',') {
            match url::Url::parse(part.trim()) {
                Ok(u) if matches!(u.scheme(), "nats" | "tls" | "ws" | "wss") => {}
                Ok(u) => push(
                    ".url",
                    format!("scheme {:?} is not one of nats, tls, ws, wss", u.scheme()),
                ),
                // The URL may hold a password: describe, never echo.
                Err(e) => push(".url", format!("not a valid URL ({e}); value not shown")),
            }
        }
        let methods = [
            self.user.is_some() || self.password.is_some(),
            self.token.is_some(),
            self.nkey_seed.is_some(),
            self.creds_file.is_some(),
        ];
        if methods.iter().filter(|m| **m).count() > 1 {
            push(
                "",
                "choose one authentication method: user/password, token, nkey_seed or creds_file"
                    .into(),
            );
        }
        if self.user.is_some() != self.password.is_some() {
            push(".password", "user and password go together".into());
        }
        for (path, file) in [
            (".creds_file", &self.creds_file),
            (".tls.ca_file", &self.tls.ca_file),
            (".tls.cert_file", &self.tls.cert_file),
            (".tls.key_file", &self.tls.key_file),
        ] {
            if let Some(f) = file {
                if !f.is_file() {
                    push(path, format!("file {} does not exist", f.display()));
                }
            }
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            push(".tls.key_file", "cert_file and key_file go together".into());
        }
        if self.queue_group.is_empty() || self.queue_group.len() > 128 {
            push(".queue_group", "length must be between 1 and 128".into());
        }
        if self.connect_timeout.is_zero() {
            push(".connect_timeout", "must be greater than zero".into());
        }
        if !(1..=MAX_SUBSCRIPTION_CAPACITY).contains(&self.subscription_capacity) {
            push(
                ".subscription_capacity",
                format!("must be between 1 and {MAX_SUBSCRIPTION_CAPACITY}"),
            );
        }
        out
    }

    /// Client options and server addresses (without user info). The caller
    /// adds its event callback and connects.
    pub async fn connect_options(&self) -> std::io::Result<(ConnectOptions, Vec<String>)> {
        let (addrs, url_auth) = split_credentials(self.url.expose_secret());
        let mut options = match &self.creds_file {
            Some(path) => ConnectOptions::with_credentials_file(path).await?,
            None => ConnectOptions::new(),
        };
        if let (Some(user), Some(password)) = (&self.user, &self.password) {
            options = options.user_and_password(user.clone(), password.expose_secret().to_owned());
        }
        if let Some(token) = &self.token {
            options = options.token(token.expose_secret().to_owned());
        }
        if let Some(seed) = &self.nkey_seed {
            options = options.nkey(seed.expose_secret().to_owned());
        }
        let explicit = self.creds_file.is_some()
            || self.user.is_some()
            || self.token.is_some()
            || self.nkey_seed.is_some();
        if !explicit {
            options = match url_auth {
                UrlAuth::UserPassword(user, password) => options.user_and_password(user, password),
                UrlAuth::Token(token) => options.token(token),
                UrlAuth::None => options,
            };
        }
        if let Some(ca) = &self.tls.ca_file {
            options = options.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&self.tls.cert_file, &self.tls.key_file) {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        let options = options
            .require_tls(self.tls.required)
            .name(&self.client_name)
            .connection_timeout(self.connect_timeout)
            .subscription_capacity(self.subscription_capacity)
            .retry_on_initial_connect()
            .max_reconnects(None)
            .reconnect_delay_callback(reconnect_delay);
        Ok((options, addrs))
    }
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

/// How reconnection attempts are spaced: the shared retry policy, 100 ms
/// doubling to 5 s, jittered so clients do not reconnect in step.
pub const RECONNECT: crate::retry::Backoff =
    crate::retry::Backoff::new(Duration::from_millis(100), Duration::from_secs(5));

/// The delay before reconnection attempt number `attempts`.
pub fn reconnect_delay(attempts: usize) -> Duration {
    RECONNECT.delay(u32::try_from(attempts).unwrap_or(u32::MAX))
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
        assert!(reconnect_delay(0) <= Duration::from_millis(100));
        assert!(reconnect_delay(3) >= Duration::from_millis(400));
        for attempt in [6, 10, 100, usize::MAX] {
            assert!(reconnect_delay(attempt) <= Duration::from_millis(5000));
            assert!(reconnect_delay(attempt) >= Duration::from_millis(2500));
        }
    }

    #[test]
    fn every_broken_rule_is_listed() {
        let s = NatsSettings {
            url: SecretString::from("http://x, nats://ok:4222"),
            user: Some("u".into()),
            token: Some(SecretString::from("t")),
            creds_file: Some("/nonexistent.creds".into()),
            tls: NatsTlsSettings {
                cert_file: Some("/nonexistent.pem".into()),
                ..Default::default()
            },
            queue_group: String::new(),
            subscription_capacity: 0,
            ..Default::default()
        };
        let mut paths: Vec<String> = s.problems().into_iter().map(|p| p.0).collect();
        paths.sort();
        assert_eq!(
            paths,
            [
                "",
                ".creds_file",
                ".password",
                ".queue_group",
                ".subscription_capacity",
                ".tls.cert_file",
                ".tls.key_file",
                ".url"
            ]
        );
        assert!(NatsSettings::default().problems().is_empty());
        let too_big = NatsSettings {
            subscription_capacity: MAX_SUBSCRIPTION_CAPACITY + 1,
            ..Default::default()
        };
        assert_eq!(too_big.problems()[0].0, ".subscription_capacity");
        let smallest = NatsSettings {
            subscription_capacity: 1,
            ..Default::default()
        };
        assert!(smallest.problems().is_empty());
    }
}
