//! API keys: `X-API-Key`, several valid at once so keys can be rotated,
//! compared in constant time. Keys are never logged; a short SHA-256
//! fingerprint stands in for them. Refusals are logged at most
//! [`FAILURE_LINES`] times per [`FAILURE_WINDOW`] each, so a client trying
//! keys cannot fill the disk; the next line says how many were left out.

use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::config::AuthSettings;
use crate::log_limit::LogLimiter;

/// Lines logged per kind of refusal per [`FAILURE_WINDOW`].
pub const FAILURE_LINES: u32 = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(10);

/// Refusals of valid keys for lacking a role, across the process.
static ROLE_REFUSALS: LazyLock<Mutex<LogLimiter<()>>> =
    LazyLock::new(|| Mutex::new(LogLimiter::new(FAILURE_LINES, FAILURE_WINDOW)));

/// `Some(suppressed)` if this refusal may be logged.
fn may_log<K: std::hash::Hash + Eq>(limiter: &Mutex<LogLimiter<K>>, kind: K) -> Option<u64> {
    match limiter.lock() {
        Ok(mut l) => l.allow(kind),
        Err(poisoned) => poisoned.into_inner().allow(kind),
    }
}

pub const API_KEY_HEADER: &str = "x-api-key";

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

/// Who made the request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub role: Role,
    /// `sha256:` and the first 8 hex digits of the key's digest.
    pub fingerprint: String,
}

impl Caller {
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            if let Some(suppressed) = may_log(&ROLE_REFUSALS, ()) {
                tracing::warn!(key = %self.fingerprint, needed = role.as_str(), suppressed, "API key lacks the role for this action");
            }
            Err(ApiError::Forbidden(format!(
                "this action needs an {} key",
                role.as_str()
            )))
        }
    }
}

/// Handlers take `Caller` as an argument; the auth layer put it there.
impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or(ApiError::Unauthenticated)
    }
}

/// The configured keys, kept only as digests.
pub struct ApiKeys {
    keys: Vec<([u8; 32], Role)>,
    /// Unknown keys presented, for rate-limited logging.
    refusals: Mutex<LogLimiter<()>>,
}

impl ApiKeys {
    pub fn new(settings: &AuthSettings) -> Arc<Self> {
        let digest =
            |k: &SecretString| -> [u8; 32] { Sha256::digest(k.expose_secret().as_bytes()).into() };
        let keys = settings
            .admin_keys
            .iter()
            .map(|k| (digest(k), Role::Admin))
            .chain(settings.agent_keys.iter().map(|k| (digest(k), Role::Agent)))
            .collect();
        Arc::new(ApiKeys {
            keys,
            refusals: Mutex::new(LogLimiter::new(FAILURE_LINES, FAILURE_WINDOW)),
        })
    }

    /// The role of a presented key. Every configured key is compared, in
    /// constant time, whatever matches first.
    pub fn check(&self, presented: &[u8]) -> (Option<Role>, String) {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        let mut found: Option<Role> = None;
        for (key, role) in &self.keys {
            let hit: bool = key.ct_eq(&digest).into();
            if hit && found.is_none_or(|r| *role > r) {
                found = Some(*role);
            }
        }
        (found, fingerprint_of(&digest))
    }
}

/// A short, non-reversible name for a key, safe to log.
pub fn fingerprint(key: &str) -> String {
    fingerprint_of(&Sha256::digest(key.as_bytes()).into())
}

fn fingerprint_of(digest: &[u8; 32]) -> String {
    format!("sha256:{}", hex::encode(&digest[..4]))
}

/// Layer: 401 without a key, 403 with an unknown one, else the request goes
/// on with its [`Caller`].
pub async fn require_api_key(
    State(keys): State<Arc<ApiKeys>>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(presented) = req.headers().get(API_KEY_HEADER) else {
        return Err(ApiError::Unauthenticated);
    };
    let (role, fingerprint) = keys.check(presented.as_bytes());
    match role {
        Some(role) => {
            tracing::debug!(key = %fingerprint, role = role.as_str(), "authenticated");
            req.extensions_mut().insert(Caller { role, fingerprint });
            Ok(next.run(req).await)
        }
        None => {
            if let Some(suppressed) = may_log(&keys.refusals, ()) {
                tracing::warn!(key = %fingerprint, path = %req.uri().path(), suppressed, "rejected unknown API key");
            }
            Err(ApiError::Forbidden("the API key is not valid".into()))
        }
    }
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
        })
    }

    #[test]
    fn each_key_has_its_role() {
        let k = keys();
        assert_eq!(k.check(b"admin-key-0123456789").0, Some(Role::Admin));
        assert_eq!(k.check(b"admin-key-rotated-999").0, Some(Role::Admin));
        assert_eq!(k.check(b"agent-key-0123456789").0, Some(Role::Agent));
        assert_eq!(k.check(b"admin-key-012345678").0, None);
        assert_eq!(k.check(b"").0, None);
    }

    #[test]
    fn fingerprints_are_short_and_do_not_contain_the_key() {
        let (_, fp) = keys().check(b"admin-key-0123456789");
        assert_eq!(fp.len(), "sha256:".len() + 8);
        assert!(!fp.contains("admin"));
        assert_eq!(fp, fingerprint("admin-key-0123456789"));
    }

    #[test]
    fn agent_role_cannot_act_as_admin() {
        let agent = Caller {
            role: Role::Agent,
            fingerprint: "sha256:00000000".into(),
        };
        assert!(agent.require(Role::Agent).is_ok());
        assert!(matches!(
            agent.require(Role::Admin),
            Err(ApiError::Forbidden(_))
        ));
    }
}
