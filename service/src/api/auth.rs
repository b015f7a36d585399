//! Who is calling: the `X-API-Key` layer and the [`Caller`] handlers take.
//! The keys themselves are [`crate::auth`]. Refusals are logged at most
//! [`FAILURE_LINES`] times per [`FAILURE_WINDOW`] each, so a client trying
//! keys cannot fill the disk; the next line says how many were left out.

use std::sync::{Arc, LazyLock, Mutex};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;

use super::error::ApiError;
use crate::auth::may_log;
pub use crate::auth::{ApiKeys, KeyVerdict, Role, FAILURE_LINES, FAILURE_WINDOW};
use crate::log_limit::LogLimiter;
use crate::store::audit::Actor;

/// Refusals of valid keys for lacking a role, across the process.
static ROLE_REFUSALS: LazyLock<Mutex<LogLimiter<()>>> =
    LazyLock::new(|| Mutex::new(LogLimiter::new(FAILURE_LINES, FAILURE_WINDOW)));

pub const API_KEY_HEADER: &str = "x-api-key";

/// Who made the request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub role: Role,
    /// `sha256:` and the first 8 hex digits of the key's digest.
    pub fingerprint: String,
}

impl Caller {
    /// Who this caller is in the audit log: its key's fingerprint.
    pub fn actor(&self) -> Actor {
        Actor::key(&self.fingerprint)
    }

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

/// Layer: 401 without a key or with a shared agent key while they are
/// turned off, 403 with an unknown one, else the request goes on with its
/// [`Caller`].
pub async fn require_api_key(
    State(keys): State<Arc<ApiKeys>>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(presented) = req.headers().get(API_KEY_HEADER) else {
        return Err(ApiError::Unauthenticated);
    };
    let (verdict, fingerprint) = keys.check(presented.as_bytes());
    match verdict {
        KeyVerdict::Valid(role) => {
            tracing::debug!(key = %fingerprint, role = role.as_str(), "authenticated");
            req.extensions_mut().insert(Caller { role, fingerprint });
            Ok(next.run(req).await)
        }
        KeyVerdict::SharedAgentKeyDisabled => {
            if let Some(suppressed) = keys.may_log_refusal() {
                tracing::warn!(key = %fingerprint, path = %req.uri().path(), suppressed, "refused a shared agent key: auth.allow_shared_agent_keys is false");
            }
            Err(ApiError::Rejected(
                "shared agent keys are disabled on this server (auth.allow_shared_agent_keys: false); \
                 use the hub's own credentials"
                    .into(),
            ))
        }
        KeyVerdict::Unknown => {
            if let Some(suppressed) = keys.may_log_refusal() {
                tracing::warn!(key = %fingerprint, path = %req.uri().path(), suppressed, "rejected unknown API key");
            }
            Err(ApiError::Forbidden("the API key is not valid".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
