//! Tenant routing (`crate::routing`).

use common::de;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::time::Duration;

use super::ConfigError;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingSettings {
    /// Encrypts each node's `database_url` at rest (XChaCha20-Poly1305):
    /// 64 hex digits (32 bytes), the same on every replica. Unset: nodes
    /// cannot be given a `database_url` (422), and gateways use their own.
    pub url_key: Option<SecretString>,
    /// NATS KV bucket the gateways' snapshot is published to (created if
    /// missing; needs `nats.enabled`).
    pub kv_bucket: String,
    /// Copies JetStream keeps of the bucket it creates.
    pub kv_replicas: usize,
    /// How often the snapshot is republished even when nothing changed, as
    /// a backstop for a lost publish (0: never).
    #[serde(deserialize_with = "de::duration")]
    pub republish_interval: Duration,
}

impl Default for RoutingSettings {
    fn default() -> Self {
        RoutingSettings {
            url_key: None,
            kv_bucket: ::routing::KV_BUCKET.into(),
            kv_replicas: 1,
            republish_interval: Duration::from_secs(300),
        }
    }
}

impl RoutingSettings {
    /// The key's 32 bytes, if it is set and well formed.
    pub fn url_key_bytes(&self) -> Option<[u8; 32]> {
        let key = self.url_key.as_ref()?;
        let bytes = hex::decode(key.expose_secret().trim()).ok()?;
        bytes.try_into().ok()
    }

    pub(super) fn check(&self, errors: &mut Vec<ConfigError>) {
        let mut push = |path: &str, message: String| errors.push(ConfigError::new(path, message));
        if self.url_key.is_some() && self.url_key_bytes().is_none() {
            push(
                "routing.url_key",
                "must be 64 hex digits (32 bytes), e.g. from `openssl rand -hex 32` (value not shown)"
                    .into(),
            );
        }
        if !super::is_nats_name(&self.kv_bucket, 64) {
            push(
                "routing.kv_bucket",
                "must be 1 to 64 letters, digits, `_` or `-` (a NATS KV bucket name)".into(),
            );
        }
        if !(1..=5).contains(&self.kv_replicas) {
            push("routing.kv_replicas", "must be between 1 and 5".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_key_bucket_and_replicas_are_reported_together_without_the_key() {
        let settings = RoutingSettings {
            url_key: Some(SecretString::from("not-hex-and-secret")),
            kv_bucket: "a.b".into(),
            kv_replicas: 0,
            ..Default::default()
        };
        let mut errors = Vec::new();
        settings.check(&mut errors);
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "routing.url_key",
                "routing.kv_bucket",
                "routing.kv_replicas"
            ]
        );
        assert!(errors.iter().all(|e| !e.message.contains("not-hex")));
        let good = RoutingSettings {
            url_key: Some(SecretString::from("ab".repeat(32))),
            ..Default::default()
        };
        assert_eq!(good.url_key_bytes(), Some([0xab; 32]));
        let mut none = Vec::new();
        good.check(&mut none);
        assert!(none.is_empty(), "{none:?}");
    }
}
