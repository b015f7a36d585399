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
use crate::auth::{fingerprint_of_digest, may_log, token_digest, CredentialKind};
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
    /// For a spoke token: whose it is.
    pub spoke: Option<SpokeCaller>,
}

/// A caller authenticated by a per-hub token.
#[derive(Debug, Clone)]
pub struct HubCaller {
    /// The project the token speaks for.
    pub slug: String,
    /// The credential's row.
    pub credential: i64,
}

/// A caller authenticated by a per-spoke token.
#[derive(Debug, Clone)]
pub struct SpokeCaller {
    /// The spoke the token speaks for.
    pub id: String,
    /// The credential's row.
    pub credential: i64,
}

/// What a spoke token may do, said in every refusal of one.
pub const SPOKE_SCOPE: &str =
    "a spoke token may only read its own spoke, refresh its own credential, confirm its own links and ask for its own new endpoints (NodeRestriction)";

/// What a hub token may do, said in every refusal of one.
pub const HUB_SCOPE: &str = "a hub token may only read the catalog, register or update its own project, put it in maintenance and refresh its own credentials (NodeRestriction)";

impl Caller {
    /// Who this caller is in the audit log: its hub, its spoke, or its
    /// key's fingerprint.
    pub fn actor(&self) -> Actor {
        match (&self.hub, &self.spoke) {
            (Some(hub), _) => Actor::hub(&hub.slug),
            (None, Some(spoke)) => Actor::spoke(&spoke.id),
            (None, None) => Actor::key(&self.fingerprint),
        }
    }

    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            if let Some(suppressed) = may_log(&ROLE_REFUSALS, ()) {
                tracing::warn!(key = %self.fingerprint, needed = role.as_str(), suppressed, "API key lacks the role for this action");
            }
            Err(match (&self.hub, &self.spoke) {
                (Some(hub), _) => ApiError::Forbidden(format!(
                    "{HUB_SCOPE}; this token is hub {:?}'s and this action needs an {} key",
                    hub.slug,
                    role.as_str()
                )),
                (None, Some(spoke)) => ApiError::Forbidden(format!(
                    "{SPOKE_SCOPE}; this token is spoke {:?}'s and this action needs an {} key",
                    spoke.id,
                    role.as_str()
                )),
                (None, None) => {
                    ApiError::Forbidden(format!("this action needs an {} key", role.as_str()))
                }
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

    /// The spoke this caller is, if it is spoke `id`'s token; 403 for
    /// another spoke's token and for any key that is no spoke token.
    pub fn require_spoke(&self, id: &str) -> Result<&SpokeCaller, ApiError> {
        match &self.spoke {
            Some(spoke) if spoke.id == id => Ok(spoke),
            Some(spoke) => Err(spoke_refusal(spoke, id)),
            None => Err(ApiError::Forbidden(
                "this action needs the spoke's own token (X-API-Key), not an admin, agent or hub key"
                    .into(),
            )),
        }
    }

    /// May this caller read spoke `id`: any key that may call the route,
    /// a spoke token only its own.
    pub fn may_read_spoke(&self, id: &str) -> Result<(), ApiError> {
        match &self.spoke {
            Some(_) => self.require_spoke(id).map(|_| ()),
            None => Ok(()),
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

/// A spoke token used for another spoke.
fn spoke_refusal(spoke: &SpokeCaller, other: &str) -> ApiError {
    if let Some(suppressed) = may_log(&ROLE_REFUSALS, ()) {
        tracing::warn!(spoke = %spoke.id, target = %other, suppressed, "spoke token refused for another spoke");
    }
    ApiError::Forbidden(format!(
        "{SPOKE_SCOPE}; this token is spoke {:?}'s, not {other:?}'s",
        spoke.id
    ))
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
    // Issue 11: any valid key resolves and reads bootstrap metadata.
    (Method::GET, "/api/fed/routing/resolve"),
    (
        Method::GET,
        "/api/fed/routing/tenants/{tenant_id}/bootstrap",
    ),
];

/// The routes a spoke token may call at all, each about one spoke, `{id}`:
/// the layer refuses it for any spoke but its own.
const SPOKE_ROUTES: &[(Method, &str)] = &[
    (Method::GET, "/api/federation/spokes/{id}"),
    (
        Method::POST,
        "/api/federation/spokes/{id}/credentials/refresh",
    ),
    // Issue 12: a spoke confirms its own links with its own credential,
    // and asks for new endpoints (update in place).
    (Method::POST, "/api/federation/spokes/{id}/confirm"),
    (Method::POST, "/api/federation/spokes/{id}/revision"),
];

/// The path parameter all of [`SPOKE_ROUTES`] name their spoke by.
const SPOKE_PARAM: &str = "{id}";

fn may_call(routes: &[(Method, &str)], method: &Method, route: Option<&str>) -> bool {
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    route.is_some_and(|route| routes.iter().any(|(m, r)| m == method && *r == route))
}

/// The segment of `path` where the route template `route` has `param`.
fn path_param<'a>(route: &str, path: &'a str, param: &str) -> Option<&'a str> {
    let at = route.split('/').position(|s| s == param)?;
    path.split('/').nth(at)
}

/// Why this token may not make this request (method, matched route, path),
/// if it may not.
fn scope_refusal(
    caller: &Caller,
    method: &Method,
    route: Option<&str>,
    path: &str,
) -> Option<String> {
    if let Some(hub) = &caller.hub {
        if !may_call(HUB_ROUTES, method, route) {
            return Some(format!("{HUB_SCOPE}; this token is hub {:?}'s", hub.slug));
        }
    }
    if let Some(spoke) = &caller.spoke {
        if !may_call(SPOKE_ROUTES, method, route) {
            return Some(format!(
                "{SPOKE_SCOPE}; this token is spoke {:?}'s",
                spoke.id
            ));
        }
        let target = route.and_then(|r| path_param(r, path, SPOKE_PARAM));
        if target != Some(spoke.id.as_str()) {
            return Some(format!(
                "{SPOKE_SCOPE}; this token is spoke {:?}'s, not {:?}'s",
                spoke.id,
                target.unwrap_or_default()
            ));
        }
    }
    None
}

/// Layer: 401 without a key, with a hub or spoke token that is unknown,
/// revoked or expired (or whose spoke is suspended or revoked), or with a
/// shared agent key while they are turned off; 403 with an unknown key, a
/// hub token on a route it may not call, or a spoke token on a route it may
/// not call or for another spoke; else the request goes on with its
/// [`Caller`].
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
                spoke: None,
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
    if let Some(kind) = CredentialKind::of_presented(presented.as_bytes()) {
        let caller = issued_caller(&state, kind, presented.as_bytes(), req.uri().path()).await?;
        let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str());
        if let Some(detail) = scope_refusal(&caller, req.method(), route, req.uri().path()) {
            if let Some(suppressed) = may_log(&ROLE_REFUSALS, ()) {
                tracing::warn!(key = %caller.fingerprint, kind = kind.as_str(), path = %req.uri().path(), suppressed, "token refused on a route outside its scope");
            }
            return Err(ApiError::Forbidden(detail));
        }
        req.extensions_mut().insert(caller);
        return Ok(next.run(req).await);
    }
    if let Some(suppressed) = state.keys.may_log_refusal() {
        tracing::warn!(key = %fingerprint, path = %req.uri().path(), suppressed, "rejected unknown API key");
    }
    Err(ApiError::Forbidden("the API key is not valid".into()))
}

/// The caller a hub or spoke token stands for, looked up by its digest;
/// 401 if it is unknown, revoked or expired, of another kind than its
/// prefix says, or a spoke's whose spoke is suspended, revoked or gone.
/// Its use is recorded at most once a minute.
async fn issued_caller(
    state: &AppState,
    kind: CredentialKind,
    presented: &[u8],
    path: &str,
) -> Result<Caller, ApiError> {
    let digest = token_digest(presented);
    let fingerprint = fingerprint_of_digest(&digest);
    let found = credentials::find(&state.db, &digest).await?;
    let now = chrono::Utc::now();
    let Some(found) = found.filter(|c| c.kind() == Some(kind) && c.is_valid(now)) else {
        if let Some(suppressed) = state.keys.may_log_refusal() {
            tracing::warn!(key = %fingerprint, kind = kind.as_str(), %path, suppressed, "rejected a token: unknown, revoked or expired, or its spoke is not pending or approved");
        }
        return Err(ApiError::Rejected(match kind {
            CredentialKind::Hub => "the hub token is not valid (unknown, revoked or expired)".into(),
            CredentialKind::Spoke => "the spoke token is not valid (unknown, revoked or expired, or its spoke is suspended or revoked)".into(),
        }));
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
    tracing::debug!(key = %found.fingerprint, kind = kind.as_str(), subject = %found.slug, "authenticated by an issued token");
    Ok(match kind {
        CredentialKind::Hub => Caller {
            role: Role::Hub,
            fingerprint: found.fingerprint,
            hub: Some(HubCaller {
                slug: found.slug,
                credential: found.id,
            }),
            spoke: None,
        },
        CredentialKind::Spoke => Caller {
            role: Role::Spoke,
            fingerprint: found.fingerprint,
            hub: None,
            spoke: Some(SpokeCaller {
                id: found.slug,
                credential: found.id,
            }),
        },
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
            spoke: None,
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
            spoke: None,
        };
        assert!(hub.require_project("alpha").is_ok());
        assert!(
            matches!(hub.require_project("beta"), Err(ApiError::Forbidden(d)) if d.contains("NodeRestriction"))
        );
        assert!(hub.require(Role::Agent).is_err());
        let hub_may_call = |m: &Method, r: Option<&str>| may_call(HUB_ROUTES, m, r);
        assert!(hub_may_call(&Method::PUT, Some("/api/fed/projects/{slug}")));
        assert!(hub_may_call(&Method::HEAD, Some("/api/fed/projects")));
        assert!(!hub_may_call(
            &Method::DELETE,
            Some("/api/fed/projects/{slug}")
        ));
        assert!(!hub_may_call(&Method::GET, Some("/api/fed/spokes")));
        assert!(!hub_may_call(&Method::GET, None));
        assert!(scope_refusal(
            &hub,
            &Method::GET,
            Some("/api/fed/projects"),
            "/api/fed/projects"
        )
        .is_none());
    }

    #[test]
    fn a_spoke_may_only_read_and_refresh_itself() {
        let spoke = Caller {
            role: Role::Spoke,
            fingerprint: "sha256:00000000".into(),
            hub: None,
            spoke: Some(SpokeCaller {
                id: "spoke-fra-0000000a".into(),
                credential: 1,
            }),
        };
        let own = "/api/federation/spokes/spoke-fra-0000000a";
        let route = Some("/api/federation/spokes/{id}");
        assert!(scope_refusal(&spoke, &Method::GET, route, own).is_none());
        assert!(scope_refusal(&spoke, &Method::HEAD, route, own).is_none());
        let refresh = Some("/api/federation/spokes/{id}/credentials/refresh");
        assert!(scope_refusal(
            &spoke,
            &Method::POST,
            refresh,
            &format!("{own}/credentials/refresh")
        )
        .is_none());
        // Issue 12's route, ready: its own, never another's.
        let confirm = Some("/api/federation/spokes/{id}/confirm");
        assert!(scope_refusal(&spoke, &Method::POST, confirm, &format!("{own}/confirm")).is_none());
        let other = scope_refusal(
            &spoke,
            &Method::POST,
            confirm,
            "/api/federation/spokes/spoke-deu-0000000b/confirm",
        )
        .unwrap();
        assert!(other.contains("not \"spoke-deu-0000000b\"'s"), "{other}");
        // An encoded id is not its own.
        assert!(scope_refusal(
            &spoke,
            &Method::GET,
            route,
            "/api/federation/spokes/spoke%2Dfra-0000000a"
        )
        .is_some());
        for (method, route) in [
            (Method::GET, "/api/federation/spokes"),
            (Method::GET, "/api/federation/spokes/{id}/history"),
            (Method::POST, "/api/federation/spokes/{id}/approve"),
            (Method::POST, "/api/federation/spokes/{id}/credentials"),
            (Method::GET, "/api/fed/projects"),
            (Method::POST, "/api/federation/register"),
        ] {
            let path = route.replace("{id}", "spoke-fra-0000000a");
            let refusal = scope_refusal(&spoke, &method, Some(route), &path);
            assert!(
                refusal.is_some_and(|r| r.contains(SPOKE_SCOPE)),
                "{method} {route}"
            );
        }
        assert!(scope_refusal(&spoke, &Method::GET, None, own).is_some());
        assert!(spoke.require(Role::Hub).is_err());
        assert!(spoke.require_project("alpha").is_err());
        assert!(spoke.require_hub().is_err());
        assert!(spoke.may_read_spoke("spoke-fra-0000000a").is_ok());
        assert!(spoke.may_read_spoke("spoke-deu-0000000b").is_err());
        assert_eq!(spoke.actor().as_str(), "spoke:spoke-fra-0000000a");
    }
}
