//! Who is calling: the `X-API-Key` layer and the [`Caller`] handlers take.
//! The keys themselves are [`crate::auth`]. Refusals are logged at most
//! [`FAILURE_LINES`] times per [`FAILURE_WINDOW`] each, so a client trying
//! keys cannot fill the disk; the next line says how many were left out.

use std::sync::{LazyLock, Mutex};

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use super::error::ApiError;
use crate::auth::{fingerprint_of_digest, looks_like_hub_token, may_log, token_digest};
pub use crate::auth::{ApiKeys, KeyVerdict, Role, FAILURE_LINES, FAILURE_WINDOW};
use crate::log_limit::LogLimiter;
use crate::state::AppState;
use crate::store::audit::Actor;
use crate::store::credentials;

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
    /// For a hub token: whose it is.
    pub hub: Option<HubCaller>,
}

/// A caller authenticated by a per-hub token.
#[derive(Debug, Clone)]
pub struct HubCaller {
    /// The project the token speaks for.
    pub slug: String,
    /// The credential's row.
    pub credential: i64,
}

/// What a hub token may do, said in every refusal of one.
pub const HUB_SCOPE: &str = "a hub token may only read the catalog, register or update its own project, put it in maintenance and refresh its own credentials (NodeRestriction)";

impl Caller {
    /// Who this caller is in the audit log: its hub, or its key's
    /// fingerprint.
    pub fn actor(&self) -> Actor {
        match &self.hub {
            Some(hub) => Actor::hub(&hub.slug),
            None => Actor::key(&self.fingerprint),
        }
    }

    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            if let Some(suppressed) = may_log(&ROLE_REFUSALS, ()) {
                tracing::warn!(key = %self.fingerprint, needed = role.as_str(), suppressed, "API key lacks the role for this action");
            }
            Err(match &self.hub {
                Some(hub) => ApiError::Forbidden(format!(
                    "{HUB_SCOPE}; this token is hub {:?}'s and this action needs an {} key",
                    hub.slug,
                    role.as_str()
                )),
                None => ApiError::Forbidden(format!("this action needs an {} key", role.as_str())),
            })
        }
    }

    /// May this caller register or change project `slug`: an agent or admin
    /// key any, a hub token only its own.
    pub fn require_project(&self, slug: &str) -> Result<(), ApiError> {
        match &self.hub {
            None => self.require(Role::Agent),
            Some(hub) if hub.slug == slug => Ok(()),
            Some(hub) => {
                if let Some(suppressed) = may_log(&ROLE_REFUSALS, ()) {
                    tracing::warn!(key = %self.fingerprint, hub = %hub.slug, target = %slug, suppressed, "hub token refused for another hub's project");
                }
                Err(ApiError::Forbidden(format!(
                    "{HUB_SCOPE}; this token is hub {:?}'s, not {slug:?}'s",
                    hub.slug
                )))
            }
        }
    }

    /// The hub this caller is, or 403 for any key that is not a hub token.
    pub fn require_hub(&self) -> Result<&HubCaller, ApiError> {
        self.hub.as_ref().ok_or_else(|| {
            ApiError::Forbidden(
                "this action needs a hub token (X-API-Key), not an admin or agent key".into(),
            )
        })
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

/// The routes a hub token may call at all (method, route template); its
/// handlers then check the slug. Every other route refuses it here.
const HUB_ROUTES: &[(Method, &str)] = &[
    (Method::GET, "/api/fed/projects"),
    (Method::POST, "/api/fed/projects"),
    (Method::GET, "/api/fed/projects/{slug}"),
    (Method::PUT, "/api/fed/projects/{slug}"),
    (Method::POST, "/api/fed/projects/{slug}/credentials/refresh"),
    (Method::GET, "/api/fed/projects/{slug}/history"),
    (Method::PUT, "/api/fed/projects/{slug}/maintenance"),
    (Method::DELETE, "/api/fed/projects/{slug}/maintenance"),
];

fn hub_may_call(method: &Method, route: Option<&str>) -> bool {
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    route.is_some_and(|route| HUB_ROUTES.iter().any(|(m, r)| m == method && *r == route))
}

/// Layer: 401 without a key, with a hub token that is unknown, revoked or
/// expired, or with a shared agent key while they are turned off; 403 with
/// an unknown key or a hub token on a route it may not call; else the
/// request goes on with its [`Caller`].
pub async fn require_api_key(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(presented) = req.headers().get(API_KEY_HEADER) else {
        return Err(ApiError::Unauthenticated);
    };
    let (verdict, fingerprint) = state.keys.check(presented.as_bytes());
    match verdict {
        KeyVerdict::Valid(role) => {
            tracing::debug!(key = %fingerprint, role = role.as_str(), "authenticated");
            req.extensions_mut().insert(Caller {
                role,
                fingerprint,
                hub: None,
            });
            return Ok(next.run(req).await);
        }
        KeyVerdict::SharedAgentKeyDisabled => {
            if let Some(suppressed) = state.keys.may_log_refusal() {
                tracing::warn!(key = %fingerprint, path = %req.uri().path(), suppressed, "refused a shared agent key: auth.allow_shared_agent_keys is false");
            }
            return Err(ApiError::Rejected(
                "shared agent keys are disabled on this server (auth.allow_shared_agent_keys: false); \
                 use the hub's own credentials"
                    .into(),
            ));
        }
        KeyVerdict::Unknown => {}
    }
    if looks_like_hub_token(presented.as_bytes()) {
        let caller = hub_caller(&state, presented.as_bytes(), req.uri().path()).await?;
        let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str());
        if !hub_may_call(req.method(), route) {
            if let Some(suppressed) = may_log(&ROLE_REFUSALS, ()) {
                tracing::warn!(key = %caller.fingerprint, path = %req.uri().path(), suppressed, "hub token refused on a route hubs may not call");
            }
            let slug = caller
                .hub
                .as_ref()
                .map(|h| h.slug.as_str())
                .unwrap_or_default();
            return Err(ApiError::Forbidden(format!(
                "{HUB_SCOPE}; this token is hub {slug:?}'s"
            )));
        }
        req.extensions_mut().insert(caller);
        return Ok(next.run(req).await);
    }
    if let Some(suppressed) = state.keys.may_log_refusal() {
        tracing::warn!(key = %fingerprint, path = %req.uri().path(), suppressed, "rejected unknown API key");
    }
    Err(ApiError::Forbidden("the API key is not valid".into()))
}

/// The caller a hub token stands for, looked up by its digest; 401 if it
/// is unknown, revoked or expired. Its use is recorded at most once a minute.
async fn hub_caller(state: &AppState, presented: &[u8], path: &str) -> Result<Caller, ApiError> {
    let digest = token_digest(presented);
    let fingerprint = fingerprint_of_digest(&digest);
    let found = credentials::find(&state.db, &digest).await?;
    let Some(found) = found.filter(|c| c.is_valid(chrono::Utc::now())) else {
        if let Some(suppressed) = state.keys.may_log_refusal() {
            tracing::warn!(key = %fingerprint, %path, suppressed, "rejected a hub token: unknown, revoked or expired");
        }
        return Err(ApiError::Rejected(
            "the hub token is not valid (unknown, revoked or expired)".into(),
        ));
    };
    if state.last_used.due(found.id) {
        let db = state.db.clone();
        let id = found.id;
        tokio::spawn(async move {
            if let Err(e) = credentials::touch(&db, id).await {
                tracing::debug!(error = %e, "could not record a hub credential's use");
            }
        });
    }
    tracing::debug!(key = %found.fingerprint, hub = %found.slug, "authenticated hub");
    Ok(Caller {
        role: Role::Hub,
        fingerprint: found.fingerprint,
        hub: Some(HubCaller {
            slug: found.slug,
            credential: found.id,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_role_cannot_act_as_admin() {
        let agent = Caller {
            role: Role::Agent,
            fingerprint: "sha256:00000000".into(),
            hub: None,
        };
        assert!(agent.require(Role::Agent).is_ok());
        assert!(matches!(
            agent.require(Role::Admin),
            Err(ApiError::Forbidden(_))
        ));
        assert!(agent.require_project("any").is_ok());
    }

    #[test]
    fn a_hub_may_act_only_for_itself_and_only_on_its_routes() {
        let hub = Caller {
            role: Role::Hub,
            fingerprint: "sha256:00000000".into(),
            hub: Some(HubCaller {
                slug: "alpha".into(),
                credential: 1,
            }),
        };
        assert!(hub.require_project("alpha").is_ok());
        assert!(
            matches!(hub.require_project("beta"), Err(ApiError::Forbidden(d)) if d.contains("NodeRestriction"))
        );
        assert!(hub.require(Role::Agent).is_err());
        assert!(hub_may_call(&Method::PUT, Some("/api/fed/projects/{slug}")));
        assert!(hub_may_call(&Method::HEAD, Some("/api/fed/projects")));
        assert!(!hub_may_call(
            &Method::DELETE,
            Some("/api/fed/projects/{slug}")
        ));
        assert!(!hub_may_call(&Method::GET, Some("/api/fed/spokes")));
        assert!(!hub_may_call(&Method::GET, None));
    }
}
