//! `/api/fed/projects/{slug}/credentials`: per-hub credentials. An admin
//! issues one (a REST token, and NATS credentials when the service is the
//! NATS authority), lists and revokes them; the hub refreshes its NATS
//! credentials with its token. Secrets are answered once and stored only as
//! digests; a revocation refuses the token at once and is pushed to NATS
//! (see [`crate::identity::revocations`]).

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};
use utoipa::{IntoParams, ToSchema};

use protocol::naming::is_valid_slug;

use super::auth::{Caller, Role};
use super::error::{ApiError, ApiResult, KeyedErrors, Problem};
use super::projects::SlugPath;
use crate::auth::{fingerprint_of_digest, new_hub_token, token_digest};
use crate::identity::jwt;
use crate::state::AppState;
use crate::store::audit::{self, AuditEntry};
use crate::store::credentials::{self, actions, CredentialInfo};

pub const TAG: &str = "catalog";

/// A credential just issued. Its secrets are shown this once.
#[derive(Serialize, ToSchema)]
pub struct IssuedCredential {
    #[schema(example = "alpha")]
    pub slug: String,
    /// The hub's REST token, sent as `X-API-Key`. Stored only as a digest.
    #[serde(serialize_with = "expose")]
    #[schema(value_type = String, example = "fedhub_3q2-7wVzY...")]
    pub token: SecretString,
    /// The text of a NATS `.creds` file (user JWT and NKey seed) that may
    /// publish only `hub.presence.<slug>`; null when the service is not the
    /// NATS authority (`identity.dir` unset).
    #[serde(serialize_with = "expose_option")]
    #[schema(value_type = Option<String>)]
    pub nats_creds: Option<SecretString>,
    /// Names the credential in lists, logs and revocations.
    #[schema(example = "sha256:1a2b3c4d")]
    pub fingerprint: String,
    /// When the token and the NATS credentials expire (a refresh moves it).
    pub expires_at: DateTime<Utc>,
}

/// What a refresh answers: new NATS credentials and expiry; the token is
/// unchanged.
#[derive(Serialize, ToSchema)]
pub struct RefreshedCredential {
    #[schema(example = "alpha")]
    pub slug: String,
    /// New `.creds` text; null without `identity.dir`.
    #[serde(serialize_with = "expose_option")]
    #[schema(value_type = Option<String>)]
    pub nats_creds: Option<SecretString>,
    #[schema(example = "sha256:1a2b3c4d")]
    pub fingerprint: String,
    pub expires_at: DateTime<Utc>,
}

fn expose<S: Serializer>(secret: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(secret.expose_secret())
}

fn expose_option<S: Serializer>(secret: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(secret) => s.serialize_some(secret.expose_secret()),
        None => s.serialize_none(),
    }
}

/// The `{slug}` and `{fingerprint}` of one credential.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct CredentialPath {
    /// Project slug
    #[param(schema_with = slug_param_schema)]
    pub slug: String,
    /// The credential's fingerprint, `sha256:` and 8 hex digits
    #[param(example = "sha256:1a2b3c4d")]
    pub fingerprint: String,
}

fn slug_param_schema() -> utoipa::openapi::schema::Object {
    crate::rules::slug_schema(false)
}

fn no_such_slug(slug: &str) -> ApiError {
    ApiError::NotFound(format!("no project can have slug {slug:?}"))
}

/// New NATS credentials for `slug` (when the service is the NATS
/// authority) and the expiry they and the token share.
fn nats_creds_for(
    state: &AppState,
    slug: &str,
) -> ApiResult<(Option<SecretString>, Option<String>, DateTime<Utc>)> {
    let ttl = state.settings.identity.hub_creds_ttl.as_secs() as i64;
    let expires = jwt::now().saturating_add(ttl);
    let expires_at = DateTime::from_timestamp(expires, 0)
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("expiry out of range")))?;
    let Some(authority) = &state.authority else {
        return Ok((None, None, expires_at));
    };
    let issued = authority
        .hub_creds_until(slug, expires)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("issuing NATS credentials: {e}")))?;
    Ok((Some(issued.creds), Some(issued.user), expires_at))
}

/// Issue a credential for a hub (admin): a REST token and, when the service
/// is the NATS authority, NATS credentials. Shown once.
#[utoipa::path(
    post, path = "/api/fed/projects/{slug}/credentials", tag = TAG,
    params(SlugPath),
    security(("api_key" = [])),
    responses(
        (status = 201, description = "Issued; the secrets are in this answer only", body = IssuedCredential),
        KeyedErrors,
        (status = 404, description = "Not a valid slug", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn issue_credential(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
) -> ApiResult<Response> {
    caller.require(Role::Admin)?;
    if !is_valid_slug(&slug) {
        return Err(no_such_slug(&slug));
    }
    let actor = caller.actor();
    let mut tx = state.db.begin().await?;
    let issued = Issuing::new().store(&state, &mut tx, &slug, &actor).await?;
    tx.commit().await?;
    tracing::info!(%slug, credential = %issued.fingerprint, key = %caller.fingerprint, nats = issued.nats_creds.is_some(), "hub credential issued");
    Ok(issued.into_created())
}

/// A credential being issued: its token is drawn first, so its fingerprint
/// can be named (e.g. by the join token it is exchanged for) before it is
/// stored. Shared by the admin route and enrollment.
pub struct Issuing {
    token: SecretString,
    digest: [u8; 32],
    pub fingerprint: String,
}

impl Issuing {
    pub fn new() -> Self {
        let token = new_hub_token();
        let digest = token_digest(token.expose_secret().as_bytes());
        let fingerprint = fingerprint_of_digest(&digest);
        Issuing {
            token,
            digest,
            fingerprint,
        }
    }

    /// Stores the credential for `slug` and its audit row (by `actor`) in
    /// the caller's transaction, with NATS credentials when the service is
    /// the NATS authority.
    pub async fn store(
        self,
        state: &AppState,
        tx: &mut sqlx::PgConnection,
        slug: &str,
        actor: &audit::Actor,
    ) -> ApiResult<IssuedCredential> {
        let (nats_creds, nats_user, expires_at) = nats_creds_for(state, slug)?;
        let stored = credentials::insert(
            &mut *tx,
            slug,
            &self.digest,
            &self.fingerprint,
            nats_user.as_deref(),
            expires_at,
        )
        .await?;
        let target = audit::target("credential", &format!("{slug}/{}", stored.fingerprint));
        audit::record(tx, &AuditEntry::success(actor, actions::ISSUE, target)).await?;
        Ok(IssuedCredential {
            slug: slug.to_owned(),
            token: self.token,
            nats_creds,
            fingerprint: stored.fingerprint,
            expires_at: stored.expires_at,
        })
    }
}

impl Default for Issuing {
    fn default() -> Self {
        Issuing::new()
    }
}

impl IssuedCredential {
    /// 201 with `Location` and `Cache-Control: no-store`.
    pub fn into_created(self) -> Response {
        let location = format!("/api/fed/projects/{}/credentials", self.slug);
        (
            StatusCode::CREATED,
            [
                (header::LOCATION, location),
                (header::CACHE_CONTROL, "no-store".to_owned()),
            ],
            axum::Json(self),
        )
            .into_response()
    }
}

/// A hub's credentials (admin): fingerprints and times, never a secret.
#[utoipa::path(
    get, path = "/api/fed/projects/{slug}/credentials", tag = TAG,
    params(SlugPath),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Newest first, revoked ones included", body = [CredentialInfo]),
        KeyedErrors,
        (status = 404, description = "Not a valid slug", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_credentials(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
) -> ApiResult<axum::Json<Vec<CredentialInfo>>> {
    caller.require(Role::Admin)?;
    if !is_valid_slug(&slug) {
        return Err(no_such_slug(&slug));
    }
    Ok(axum::Json(credentials::list(&state.db, &slug).await?))
}

/// Revoke one credential (admin): its token is refused at once, its NATS
/// users within seconds.
#[utoipa::path(
    delete, path = "/api/fed/projects/{slug}/credentials/{fingerprint}", tag = TAG,
    params(CredentialPath),
    security(("api_key" = [])),
    responses(
        (status = 204, description = "Revoked, or revoked already"),
        KeyedErrors,
        (status = 404, description = "No such credential", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn revoke_credential(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<CredentialPath>,
) -> ApiResult<StatusCode> {
    caller.require(Role::Admin)?;
    let missing = || {
        ApiError::NotFound(format!(
            "no credential {:?} for project {:?}",
            path.fingerprint, path.slug
        ))
    };
    if !is_valid_slug(&path.slug) {
        return Err(missing());
    }
    let mut tx = state.db.begin().await?;
    let revoked = credentials::revoke(&mut *tx, &path.slug, &path.fingerprint)
        .await?
        .ok_or_else(missing)?;
    if revoked {
        let target = audit::target("credential", &format!("{}/{}", path.slug, path.fingerprint));
        let actor = caller.actor();
        audit::record(
            &mut tx,
            &AuditEntry::success(&actor, actions::REVOKE, target),
        )
        .await?;
    }
    tx.commit().await?;
    if revoked {
        tracing::info!(slug = %path.slug, credential = %path.fingerprint, key = %caller.fingerprint, "hub credential revoked");
        wake_revocations(&state);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Revoke every credential of a hub (admin).
#[utoipa::path(
    delete, path = "/api/fed/projects/{slug}/credentials", tag = TAG,
    params(SlugPath),
    security(("api_key" = [])),
    responses(
        (status = 204, description = "Every credential of the hub revoked (none is fine)"),
        KeyedErrors,
        (status = 404, description = "Not a valid slug", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn revoke_all_credentials(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Role::Admin)?;
    if !is_valid_slug(&slug) {
        return Err(no_such_slug(&slug));
    }
    let mut tx = state.db.begin().await?;
    let revoked = credentials::revoke_all(&mut *tx, &slug).await?;
    if revoked > 0 {
        let target = audit::target("project", &slug);
        let actor = caller.actor();
        audit::record(
            &mut tx,
            &AuditEntry::success(&actor, actions::REVOKE_ALL, target),
        )
        .await?;
    }
    tx.commit().await?;
    if revoked > 0 {
        tracing::info!(%slug, revoked, key = %caller.fingerprint, "hub credentials revoked");
        wake_revocations(&state);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Refresh the calling hub's credential (hub token only): new NATS
/// credentials and a new expiry for the same token.
#[utoipa::path(
    post, path = "/api/fed/projects/{slug}/credentials/refresh", tag = TAG,
    params(SlugPath),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Refreshed; the new NATS credentials are in this answer only", body = RefreshedCredential),
        KeyedErrors,
    )
)]
pub async fn refresh_credential(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
) -> ApiResult<Response> {
    let hub = caller.require_hub()?;
    caller.require_project(&slug)?;
    let (nats_creds, nats_user, expires_at) = nats_creds_for(&state, &slug)?;
    let mut tx = state.db.begin().await?;
    let refreshed =
        credentials::refresh(&mut *tx, hub.credential, nats_user.as_deref(), expires_at)
            .await?
            .ok_or_else(|| {
                ApiError::Rejected(
                    "the hub token is not valid (unknown, revoked or expired)".into(),
                )
            })?;
    let target = audit::target("credential", &format!("{slug}/{}", refreshed.fingerprint));
    let actor = caller.actor();
    audit::record(
        &mut tx,
        &AuditEntry::success(&actor, actions::REFRESH, target),
    )
    .await?;
    tx.commit().await?;
    tracing::info!(%slug, credential = %refreshed.fingerprint, "hub credential refreshed");
    let body = RefreshedCredential {
        slug,
        nats_creds,
        fingerprint: refreshed.fingerprint,
        expires_at: refreshed.expires_at,
    };
    Ok(([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response())
}

fn wake_revocations(state: &AppState) {
    if let Some(revocations) = &state.revocations {
        revocations.wake();
    }
}
