//! API keys: `X-API-Key`, several valid at once so keys can be rotated,
//! compared in constant time. Keys are kept only as digests and never
//! logged; a short SHA-256 fingerprint stands in for them. The HTTP side
//! (who is calling, what they may do) is [`crate::api::auth`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::AuthSettings;
use crate::log_limit::LogLimiter;

/// Lines logged per kind of refusal per [`FAILURE_WINDOW`].
pub const FAILURE_LINES: u32 = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(10);

/// `Some(suppressed)` if this refusal may be logged.
pub fn may_log<K: std::hash::Hash + Eq>(limiter: &Mutex<LogLimiter<K>>, kind: K) -> Option<u64> {
    match limiter.lock() {
        Ok(mut l) => l.allow(kind),
        Err(poisoned) => poisoned.into_inner().allow(kind),
    }
}

/// What a key may do. Admin can do everything an agent can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Hub agents and spokes: register, update, read.
    Agent,
    /// Operators: everything, including delete and approve.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Admin => "admin",
        }
    }
}

/// What a presented key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyVerdict {
    Valid(Role),
    /// A configured shared agent key, while `auth.allow_shared_agent_keys`
    /// is false.
    SharedAgentKeyDisabled,
    Unknown,
}

impl KeyVerdict {
    pub fn role(self) -> Option<Role> {
        match self {
            KeyVerdict::Valid(r) => Some(r),
            _ => None,
        }
    }
}

/// The configured keys, kept only as digests.
pub struct ApiKeys {
    /// Digest, role, and whether the key is accepted.
    keys: Vec<([u8; 32], Role, bool)>,
    /// Unknown keys presented, for rate-limited logging.
    refusals: Mutex<LogLimiter<()>>,
}

impl ApiKeys {
    pub fn new(settings: &AuthSettings) -> Arc<Self> {
        let digest =
            |k: &SecretString| -> [u8; 32] { Sha256::digest(k.expose_secret().as_bytes()).into() };
        let agents_on = settings.allow_shared_agent_keys;
        let keys = settings
            .admin_keys
            .iter()
            .map(|k| (digest(k), Role::Admin, true))
            .chain(
                settings
                    .agent_keys
                    .iter()
                    .map(|k| (digest(k), Role::Agent, agents_on)),
            )
            .collect();
        Arc::new(ApiKeys {
            keys,
            refusals: Mutex::new(LogLimiter::new(FAILURE_LINES, FAILURE_WINDOW)),
        })
    }

    /// What a presented key is, and its fingerprint. Every configured key
    /// is compared, in constant time, whatever matches first.
    pub fn check(&self, presented: &[u8]) -> (KeyVerdict, String) {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        let mut found: Option<Role> = None;
        let mut disabled = false;
        for (key, role, enabled) in &self.keys {
            let hit: bool = key.ct_eq(&digest).into();
            if hit && !*enabled {
                disabled = true;
            } else if hit && found.is_none_or(|r| *role > r) {
                found = Some(*role);
            }
        }
        let verdict = match found {
            Some(role) => KeyVerdict::Valid(role),
            None if disabled => KeyVerdict::SharedAgentKeyDisabled,
            None => KeyVerdict::Unknown,
        };
        (verdict, fingerprint_of(&digest))
    }
}

impl ApiKeys {
    /// `Some(suppressed)` if a refusal of an unknown key may be logged now.
    pub fn may_log_refusal(&self) -> Option<u64> {
        may_log(&self.refusals, ())
    }
}

/// A short, non-reversible name for a key, safe to log.
pub fn fingerprint(key: &str) -> String {
    fingerprint_of(&Sha256::digest(key.as_bytes()).into())
}

fn fingerprint_of(digest: &[u8; 32]) -> String {
    format!("sha256:{}", hex::encode(&digest[..4]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Arc<ApiKeys> {
        ApiKeys::new(&AuthSettings {
            admin_keys: vec![
                SecretString::from("admin-key-0123456789"),
                SecretString::from("admin-key-rotated-999"),
            ],
            agent_keys: vec![SecretString::from("agent-key-0123456789")],
            allow_shared_agent_keys: true,
        })
    }

    #[test]
    fn each_key_has_its_role() {
        let k = keys();
        assert_eq!(k.check(b"admin-key-0123456789").0.role(), Some(Role::Admin));
        assert_eq!(
            k.check(b"admin-key-rotated-999").0.role(),
            Some(Role::Admin)
        );
        assert_eq!(k.check(b"agent-key-0123456789").0.role(), Some(Role::Agent));
        assert_eq!(k.check(b"admin-key-012345678").0, KeyVerdict::Unknown);
        assert_eq!(k.check(b"").0, KeyVerdict::Unknown);
    }

    #[test]
    fn shared_agent_keys_can_be_turned_off_without_touching_admin_keys() {
        let k = ApiKeys::new(&AuthSettings {
            admin_keys: vec![SecretString::from("admin-key-0123456789")],
            agent_keys: vec![SecretString::from("agent-key-0123456789")],
            allow_shared_agent_keys: false,
        });
        assert_eq!(k.check(b"admin-key-0123456789").0.role(), Some(Role::Admin));
        assert_eq!(
            k.check(b"agent-key-0123456789").0,
            KeyVerdict::SharedAgentKeyDisabled
        );
        assert_eq!(k.check(b"other-key-0123456789").0, KeyVerdict::Unknown);
    }

    #[test]
    fn fingerprints_are_short_and_do_not_contain_the_key() {
        let (_, fp) = keys().check(b"admin-key-0123456789");
        assert_eq!(fp.len(), "sha256:".len() + 8);
        assert!(!fp.contains("admin"));
        assert_eq!(fp, fingerprint("admin-key-0123456789"));
    }
}
