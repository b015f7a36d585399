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

/// What a key may do. Admin can do everything an agent can; an agent
/// everything a hub can. A spoke token can do less than any: read its own
/// spoke and refresh its own credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// A per-spoke token: read its own spoke, refresh its own credential
    /// (and, with issue 12, confirm its own links). Nothing else.
    Spoke,
    /// A per-hub token: read the catalog, register or update its own
    /// project, refresh its own credentials. Nothing else (NodeRestriction).
    Hub,
    /// Hub agents and spokes: register, update, read.
    Agent,
    /// Operators: everything, including delete and approve.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Spoke => "spoke",
            Role::Hub => "hub",
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

/// How every hub token begins, so a presented key that is not one is never
/// looked up in the database.
pub const HUB_TOKEN_PREFIX: &str = "fedhub_";

/// How every join token begins (enrollment), so one sent as an API key by
/// mistake is recognisable and one in a log line is easy to find.
pub const JOIN_TOKEN_PREFIX: &str = "fedjoin_";

/// How every spoke token begins.
pub const SPOKE_TOKEN_PREFIX: &str = "fedspoke_";

/// Whose credential a token is: both kinds are issued, stored, looked up,
/// refreshed and revoked by the same code (`hub_credentials`, told apart
/// by `kind`), and recognised by their prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// A hub's (`fedhub_`), named by its project slug.
    Hub,
    /// A spoke's (`fedspoke_`), named by its spoke id.
    Spoke,
}

impl CredentialKind {
    /// As stored in `hub_credentials.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Hub => "hub",
            CredentialKind::Spoke => "spoke",
        }
    }

    pub fn parse(s: &str) -> Option<CredentialKind> {
        match s {
            "hub" => Some(CredentialKind::Hub),
            "spoke" => Some(CredentialKind::Spoke),
            _ => None,
        }
    }

    pub fn prefix(self) -> &'static str {
        match self {
            CredentialKind::Hub => HUB_TOKEN_PREFIX,
            CredentialKind::Spoke => SPOKE_TOKEN_PREFIX,
        }
    }

    /// The kind of credential a presented key has the form of, if any: a
    /// key that is none is never looked up in the database.
    pub fn of_presented(presented: &[u8]) -> Option<CredentialKind> {
        [CredentialKind::Hub, CredentialKind::Spoke]
            .into_iter()
            .find(|k| presented.starts_with(k.prefix().as_bytes()))
    }

    /// A new token of this kind: the prefix and 256 random bits,
    /// base64url. The secret is returned once; only [`token_digest`] of it
    /// is kept.
    pub fn new_token(self) -> SecretString {
        new_token(self.prefix())
    }
}

/// A new hub token (see [`CredentialKind::new_token`]).
pub fn new_hub_token() -> SecretString {
    CredentialKind::Hub.new_token()
}

/// A new single-use join token, made like [`new_hub_token`].
pub fn new_join_token() -> SecretString {
    new_token(JOIN_TOKEN_PREFIX)
}

fn new_token(prefix: &str) -> SecretString {
    let bytes: [u8; 32] = rand::random();
    SecretString::from(format!(
        "{prefix}{}",
        data_encoding::BASE64URL_NOPAD.encode(&bytes)
    ))
}

/// SHA-256 of a presented key: what is stored and looked up.
pub fn token_digest(presented: &[u8]) -> [u8; 32] {
    Sha256::digest(presented).into()
}

/// The fingerprint of a digest made by [`token_digest`].
pub fn fingerprint_of_digest(digest: &[u8; 32]) -> String {
    fingerprint_of(digest)
}

/// Whether a presented key has the form of a hub token.
pub fn looks_like_hub_token(presented: &[u8]) -> bool {
    presented.starts_with(HUB_TOKEN_PREFIX.as_bytes())
}

/// How often a credential's `last_used_at` is written, at most, per replica.
pub const LAST_USED_EVERY: Duration = Duration::from_secs(60);

/// Which credentials had their use recorded, and when: a write at most once
/// per [`LAST_USED_EVERY`] per credential, not one per request.
#[derive(Default)]
pub struct LastUsed {
    written: Mutex<std::collections::HashMap<i64, std::time::Instant>>,
}

impl LastUsed {
    /// True if the use of credential `id` should be written now (and
    /// remembers that it was).
    pub fn due(&self, id: i64) -> bool {
        let now = std::time::Instant::now();
        let mut written = match self.written.lock() {
            Ok(w) => w,
            Err(poisoned) => poisoned.into_inner(),
        };
        match written.get(&id) {
            Some(at) if now.duration_since(*at) < LAST_USED_EVERY => false,
            _ => {
                written.insert(id, now);
                true
            }
        }
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
    fn hub_tokens_are_random_prefixed_and_fingerprinted() {
        let a = new_hub_token();
        let b = new_hub_token();
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert!(looks_like_hub_token(a.expose_secret().as_bytes()));
        assert_eq!(a.expose_secret().len(), HUB_TOKEN_PREFIX.len() + 43);
        let fp = fingerprint_of_digest(&token_digest(a.expose_secret().as_bytes()));
        assert_eq!(fp, fingerprint(a.expose_secret()));
        assert_eq!(
            keys().check(a.expose_secret().as_bytes()).0,
            KeyVerdict::Unknown
        );
    }

    #[test]
    fn spoke_tokens_are_told_apart_from_hub_tokens_by_their_prefix() {
        let spoke = CredentialKind::Spoke.new_token();
        let hub = new_hub_token();
        assert!(spoke.expose_secret().starts_with("fedspoke_"));
        assert_eq!(
            CredentialKind::of_presented(spoke.expose_secret().as_bytes()),
            Some(CredentialKind::Spoke)
        );
        assert_eq!(
            CredentialKind::of_presented(hub.expose_secret().as_bytes()),
            Some(CredentialKind::Hub)
        );
        assert!(!looks_like_hub_token(spoke.expose_secret().as_bytes()));
        assert_eq!(CredentialKind::of_presented(b"agent-key-0123456789"), None);
        assert_eq!(CredentialKind::of_presented(b"fedjoin_x"), None);
        for kind in [CredentialKind::Hub, CredentialKind::Spoke] {
            assert_eq!(CredentialKind::parse(kind.as_str()), Some(kind));
        }
        assert!(Role::Spoke < Role::Hub);
    }

    #[test]
    fn last_use_is_written_once_a_minute() {
        let used = LastUsed::default();
        assert!(used.due(1));
        assert!(!used.due(1));
        assert!(used.due(2));
    }

    #[test]
    fn fingerprints_are_short_and_do_not_contain_the_key() {
        let (_, fp) = keys().check(b"admin-key-0123456789");
        assert_eq!(fp.len(), "sha256:".len() + 8);
        assert!(!fp.contains("admin"));
        assert_eq!(fp, fingerprint("admin-key-0123456789"));
    }
}
