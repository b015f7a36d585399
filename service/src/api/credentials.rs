//! `/api/fed/projects/{slug}/credentials`: per-hub credentials. An admin
//! issues one (a REST token, and NATS credentials when the service is the
//! NATS authority), lists and revokes them; the hub refreshes its NATS
//! credentials with its token. Secrets are answered once and stored only as
//! digests; a revocation refuses the token at once and is pushed to NATS
//! (see [`crate::identity::revocations`]).
//!
//! `/api/federation/spokes/{id}/credentials`: the same for a spoke, by the
//! same code (a REST token only: a spoke has no NATS user).

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};
use utoipa::{IntoParams, ToSchema};

use protocol::naming::is_valid_slug;

use super::auth::{Caller, Role};
use super::error::{ApiError, ApiResult, Problem};
use super::federation::SpokePath;
use super::projects::SlugPath;
use crate::auth::{fingerprint_of_digest, token_digest, CredentialKind};
use crate::identity::jwt;
use crate::rules;
use crate::spoke::{is_spoke_id, SpokeStatus};
use crate::state::AppState;
use crate::store::audit;
use crate::store::credentials::{self, actions, audit_target, CredentialInfo};
use crate::store::spokes;

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

/// A spoke credential just issued. Its token is shown this once.
#[derive(Serialize, ToSchema)]
pub struct IssuedSpokeCredential {
    #[schema(example = "spoke-fra-ee18ad42")]
    pub spoke_id: String,
    /// The spoke's REST token, sent as `X-API-Key`. Stored only as a digest.
    #[serde(serialize_with = "expose")]
    #[schema(value_type = String, example = "fedspoke_3q2-7wVzY...")]
    pub token: SecretString,
    /// Names the credential in lists, logs and revocations.
    #[schema(example = "sha256:1a2b3c4d")]
    pub fingerprint: String,
    /// When the token expires (a refresh moves it).
    pub expires_at: DateTime<Utc>,
}

/// What a spoke's refresh answers: the new expiry of the same token.
#[derive(Serialize, ToSchema)]
pub struct RefreshedSpokeCredential {
    #[schema(example = "spoke-fra-ee18ad42")]
    pub spoke_id: String,
    #[schema(example = "sha256:1a2b3c4d")]
    pub fingerprint: String,
    pub expires_at: DateTime<Utc>,
}

/// Serializes a secret that is answered once (a token just made).
pub(super) fn expose<S: Serializer>(secret: &SecretString, s: S) -> Result<S::Ok, S::Error> {
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

/// The `{id}` and `{fingerprint}` of one spoke credential.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SpokeCredentialPath {
    /// Spoke id, e.g. spoke-fra-ee18ad42
    #[param(schema_with = rules::spoke_id_schema)]
    pub id: String,
    /// The credential's fingerprint, `sha256:` and 8 hex digits
    #[param(example = "sha256:1a2b3c4d")]
    pub fingerprint: String,
}

/// When a token of `ttl` issued now expires.
pub(super) fn expiry_after(ttl: std::time::Duration) -> ApiResult<(i64, DateTime<Utc>)> {
    let expires = jwt::now().saturating_add(ttl.as_secs() as i64);
    let at = DateTime::from_timestamp(expires, 0)
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("expiry out of range")))?;
    Ok((expires, at))
}

pub(super) fn no_such_slug(slug: &str) -> ApiError {
    ApiError::NotFound(format!("no project can have slug {slug:?}"))
}

/// New NATS credentials for `slug` (when the service is the NATS
/// authority) and the expiry they and the token share.
fn nats_creds_for(
    state: &AppState,
    slug: &str,
) -> ApiResult<(Option<SecretString>, Option<String>, DateTime<Utc>)> {
    let (expires, expires_at) = expiry_after(state.settings.identity.hub_creds_ttl)?;
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
    responses(
        (status = 201, description = "Issued; the secrets are in this answer only", body = IssuedCredential),
        (status = 404, description = "Not a valid slug", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn issue_credential(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
) -> ApiResult<Response> {
    require_admin_over(&state, &caller, (CredentialKind::Hub, &slug)).await?;
    let actor = caller.actor();
    let mut tx = state.db.begin().await?;
    let issued = Issuing::new().store(&state, &mut tx, &slug, &actor).await?;
    tx.commit().await?;
    tracing::info!(%slug, credential = %issued.fingerprint, key = %caller.fingerprint, nats = issued.nats_creds.is_some(), "hub credential issued");
    Ok(issued.into_created())
}

/// A credential being issued: its token is drawn first, so its fingerprint
/// can be named (e.g. by the join token it is exchanged for) before it is
/// stored. Shared by the admin routes (hubs and spokes) and enrollment.
pub struct Issuing {
    kind: CredentialKind,
    token: SecretString,
    digest: [u8; 32],
    pub fingerprint: String,
}

impl Issuing {
    /// A hub credential.
    pub fn new() -> Self {
        Issuing::of(CredentialKind::Hub)
    }

    pub fn of(kind: CredentialKind) -> Self {
        let token = kind.new_token();
        let digest = token_digest(token.expose_secret().as_bytes());
        let fingerprint = fingerprint_of_digest(&digest);
        Issuing {
            kind,
            token,
            digest,
            fingerprint,
        }
    }

    /// Stores the credential for `subject` and its audit row (by `actor`)
    /// in the caller's transaction: the token and what was stored.
    async fn insert(
        self,
        tx: &mut sqlx::PgConnection,
        subject: &str,
        nats_user: Option<&str>,
        expires_at: DateTime<Utc>,
        actor: &audit::Actor,
    ) -> ApiResult<(SecretString, CredentialInfo)> {
        let stored = credentials::insert(
            &mut *tx,
            self.kind,
            subject,
            &self.digest,
            &self.fingerprint,
            nats_user,
            expires_at,
        )
        .await?;
        let target = audit_target(self.kind, subject, &stored.fingerprint);
        audit::record_success(tx, actor, actions::ISSUE, target).await?;
        Ok((self.token, stored))
    }

    /// Stores the hub credential for `slug` and its audit row (by `actor`)
    /// in the caller's transaction, with NATS credentials when the service
    /// is the NATS authority.
    pub async fn store(
        self,
        state: &AppState,
        tx: &mut sqlx::PgConnection,
        slug: &str,
        actor: &audit::Actor,
    ) -> ApiResult<IssuedCredential> {
        debug_assert_eq!(self.kind, CredentialKind::Hub);
        let (nats_creds, nats_user, expires_at) = nats_creds_for(state, slug)?;
        let (token, stored) = self
            .insert(tx, slug, nats_user.as_deref(), expires_at, actor)
            .await?;
        Ok(IssuedCredential {
            slug: slug.to_owned(),
            token,
            nats_creds,
            fingerprint: stored.fingerprint,
            expires_at: stored.expires_at,
        })
    }

    /// Stores the spoke credential for spoke `id` and its audit row (by
    /// `actor`) in the caller's transaction.
    pub async fn store_spoke(
        self,
        state: &AppState,
        tx: &mut sqlx::PgConnection,
        id: &str,
        actor: &audit::Actor,
    ) -> ApiResult<IssuedSpokeCredential> {
        debug_assert_eq!(self.kind, CredentialKind::Spoke);
        let (_, expires_at) = expiry_after(state.settings.identity.spoke_token_ttl)?;
        let (token, stored) = self.insert(tx, id, None, expires_at, actor).await?;
        Ok(IssuedSpokeCredential {
            spoke_id: id.to_owned(),
            token,
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
        created_secret(location, self)
    }
}

/// 201 with `Location` and `Cache-Control: no-store`: an answer holding a
/// secret shown this once.
fn created_secret(location: String, body: impl Serialize) -> Response {
    let no_store = (header::CACHE_CONTROL, "no-store".to_owned());
    let headers = [(header::LOCATION, location), no_store];
    (StatusCode::CREATED, headers, axum::Json(body)).into_response()
}

/// 200 with `Cache-Control: no-store`: an answer holding a secret, or
/// the expiry of one.
fn no_store(body: impl Serialize) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
}

/// A hub's credentials (admin): fingerprints and times, never a secret.
#[utoipa::path(
    get, path = "/api/fed/projects/{slug}/credentials", tag = TAG,
    params(SlugPath),
    responses(
        (status = 200, description = "Newest first, revoked ones included", body = [CredentialInfo]),
        (status = 404, description = "Not a valid slug", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_credentials(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
) -> ApiResult<axum::Json<Vec<CredentialInfo>>> {
    list_of(&state, &caller, (CredentialKind::Hub, &slug)).await
}

/// Refuses a caller that is not an admin, and a subject that cannot have
/// credentials: not a valid slug, or no registered spoke.
pub(super) async fn require_admin_over(
    state: &AppState,
    caller: &Caller,
    (kind, subject): (CredentialKind, &str),
) -> ApiResult<()> {
    caller.require(Role::Admin)?;
    match kind {
        CredentialKind::Hub if !is_valid_slug(subject) => Err(no_such_slug(subject)),
        CredentialKind::Spoke
            if !is_spoke_id(subject) || spokes::get(&state.db, subject).await?.is_none() =>
        {
            Err(super::federation::not_found(subject))
        }
        _ => Ok(()),
    }
}

/// What owns credentials of `kind`, as audit targets and messages name it.
fn owner(kind: CredentialKind) -> &'static str {
    match kind {
        CredentialKind::Hub => "project",
        CredentialKind::Spoke => "spoke",
    }
}

/// The credentials of `kind` for `subject` (admin), newest first.
async fn list_of(
    state: &AppState,
    caller: &Caller,
    (kind, subject): (CredentialKind, &str),
) -> ApiResult<axum::Json<Vec<CredentialInfo>>> {
    require_admin_over(state, caller, (kind, subject)).await?;
    let list = credentials::list_of(&state.db, kind, subject).await?;
    Ok(axum::Json(list))
}

/// Revoke one credential (admin): its token is refused at once, its NATS
/// users within seconds.
#[utoipa::path(
    delete, path = "/api/fed/projects/{slug}/credentials/{fingerprint}", tag = TAG,
    params(CredentialPath),
    responses(
        (status = 204, description = "Revoked, or revoked already"),
        (status = 404, description = "No such credential", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn revoke_credential(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<CredentialPath>,
) -> ApiResult<StatusCode> {
    let subject = (CredentialKind::Hub, path.slug.as_str());
    revoke_one(&state, &caller, subject, &path.fingerprint).await
}

/// Revokes one credential of `kind` for `subject` (admin), with its audit
/// row, in one transaction; 404 if there is none by that fingerprint.
async fn revoke_one(
    state: &AppState,
    caller: &Caller,
    (kind, subject): (CredentialKind, &str),
    fingerprint: &str,
) -> ApiResult<StatusCode> {
    caller.require(Role::Admin)?;
    let missing = || {
        let owner = owner(kind);
        ApiError::NotFound(format!(
            "no credential {fingerprint:?} for {owner} {subject:?}"
        ))
    };
    let well_formed = match kind {
        CredentialKind::Hub => is_valid_slug(subject),
        CredentialKind::Spoke => is_spoke_id(subject),
    };
    if !well_formed {
        return Err(missing());
    }
    let mut tx = state.db.begin().await?;
    let Some(revoked) = credentials::revoke_of(&mut *tx, kind, subject, fingerprint).await? else {
        return Err(missing());
    };
    if revoked {
        let target = audit_target(kind, subject, fingerprint);
        let actor = caller.actor();
        audit::record_success(&mut tx, &actor, actions::REVOKE, target).await?;
    }
    tx.commit().await?;
    if revoked {
        match kind {
            CredentialKind::Hub => {
                tracing::info!(slug = %subject, credential = %fingerprint, key = %caller.fingerprint, "hub credential revoked");
                wake_revocations(state);
            }
            CredentialKind::Spoke => {
                tracing::info!(spoke = %subject, credential = %fingerprint, key = %caller.fingerprint, "spoke credential revoked");
            }
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Revoke every credential of a hub (admin).
#[utoipa::path(
    delete, path = "/api/fed/projects/{slug}/credentials", tag = TAG,
    params(SlugPath),
    responses(
        (status = 204, description = "Every credential of the hub revoked (none is fine)"),
        (status = 404, description = "Not a valid slug", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn revoke_all_credentials(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
) -> ApiResult<StatusCode> {
    revoke_every(&state, &caller, (CredentialKind::Hub, &slug)).await
}

/// Revokes every credential of `kind` for `subject` (admin), with one
/// audit row (on the project or spoke) if any was.
async fn revoke_every(
    state: &AppState,
    caller: &Caller,
    (kind, subject): (CredentialKind, &str),
) -> ApiResult<StatusCode> {
    require_admin_over(state, caller, (kind, subject)).await?;
    let target = audit::target(owner(kind), subject);
    let mut tx = state.db.begin().await?;
    let revoked = credentials::revoke_all_of(&mut *tx, kind, subject).await?;
    if revoked > 0 {
        let actor = caller.actor();
        audit::record_success(&mut tx, &actor, actions::REVOKE_ALL, target).await?;
    }
    tx.commit().await?;
    if revoked > 0 {
        match kind {
            CredentialKind::Hub => {
                tracing::info!(slug = %subject, revoked, key = %caller.fingerprint, "hub credentials revoked");
                wake_revocations(state);
            }
            CredentialKind::Spoke => {
                tracing::info!(spoke = %subject, revoked, key = %caller.fingerprint, "spoke credentials revoked");
            }
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Refresh the calling hub's credential (hub token only): new NATS
/// credentials and a new expiry for the same token.
#[utoipa::path(
    post, path = "/api/fed/projects/{slug}/credentials/refresh", tag = TAG,
    params(SlugPath),
    responses(
        (status = 200, description = "Refreshed; the new NATS credentials are in this answer only", body = RefreshedCredential),
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
    let subject = (CredentialKind::Hub, slug.as_str());
    let refreshed = refresh_row(
        &state,
        &caller,
        subject,
        hub.credential,
        nats_user.as_deref(),
        expires_at,
    )
    .await?;
    tracing::info!(%slug, credential = %refreshed.fingerprint, "hub credential refreshed");
    let body = RefreshedCredential {
        slug,
        nats_creds,
        fingerprint: refreshed.fingerprint,
        expires_at: refreshed.expires_at,
    };
    Ok(no_store(body))
}

/// Moves the expiry of the caller's own credential (row `credential`, of
/// `kind` for `subject`), adding `nats_user` if any, with its audit row;
/// 401 if it is no longer valid.
async fn refresh_row(
    state: &AppState,
    caller: &Caller,
    (kind, subject): (CredentialKind, &str),
    credential: i64,
    nats_user: Option<&str>,
    expires_at: DateTime<Utc>,
) -> ApiResult<CredentialInfo> {
    let mut tx = state.db.begin().await?;
    let refreshed = credentials::refresh(&mut *tx, credential, nats_user, expires_at)
        .await?
        .ok_or_else(|| {
            ApiError::Rejected(format!(
                "the {} token is not valid (unknown, revoked or expired)",
                kind.as_str()
            ))
        })?;
    let target = audit_target(kind, subject, &refreshed.fingerprint);
    let actor = caller.actor();
    audit::record_success(&mut tx, &actor, actions::REFRESH, target).await?;
    tx.commit().await?;
    Ok(refreshed)
}

/// Issue a credential for a spoke (admin): a REST token (`fedspoke_…`)
/// that may only read the spoke itself and refresh itself. Shown once.
#[utoipa::path(
    post, path = "/api/federation/spokes/{id}/credentials", tag = super::federation::TAG,
    params(SpokePath),
    responses(
        (status = 201, description = "Issued; the token is in this answer only", body = IssuedSpokeCredential),
        (status = 404, description = "No such spoke", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The spoke is revoked; `current` holds it", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn issue_spoke_credential(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    caller.require(Role::Admin)?;
    if !is_spoke_id(&id) {
        return Err(super::federation::not_found(&id));
    }
    let mut tx = state.db.begin().await?;
    // Locked: a concurrent revocation of the spoke waits, then revokes
    // this credential too.
    let spoke = spokes::get_for_update(&mut tx, &id)
        .await?
        .ok_or_else(|| super::federation::not_found(&id))?;
    if spoke.status == SpokeStatus::Revoked {
        return Err(ApiError::Conflict {
            detail: format!(
                "spoke {id} is revoked: it gets no credential (it may register again as a new spoke)"
            ),
            current: serde_json::to_value(&spoke).ok(),
        });
    }
    let actor = caller.actor();
    let issued = Issuing::of(CredentialKind::Spoke)
        .store_spoke(&state, &mut tx, &id, &actor)
        .await?;
    tx.commit().await?;
    tracing::info!(spoke = %id, credential = %issued.fingerprint, key = %caller.fingerprint, "spoke credential issued");
    let location = format!("/api/federation/spokes/{id}/credentials");
    Ok(created_secret(location, issued))
}

/// A spoke's credentials (admin): fingerprints and times, never a secret.
#[utoipa::path(
    get, path = "/api/federation/spokes/{id}/credentials", tag = super::federation::TAG,
    params(SpokePath),
    responses(
        (status = 200, description = "Newest first, revoked ones included", body = [CredentialInfo]),
        (status = 404, description = "No such spoke", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_spoke_credentials(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Vec<CredentialInfo>>> {
    list_of(&state, &caller, (CredentialKind::Spoke, &id)).await
}

/// Revoke one credential of a spoke (admin): its token is refused at once.
#[utoipa::path(
    delete, path = "/api/federation/spokes/{id}/credentials/{fingerprint}", tag = super::federation::TAG,
    params(SpokeCredentialPath),
    responses(
        (status = 204, description = "Revoked, or revoked already"),
        (status = 404, description = "No such credential", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn revoke_spoke_credential(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<SpokeCredentialPath>,
) -> ApiResult<StatusCode> {
    let subject = (CredentialKind::Spoke, path.id.as_str());
    revoke_one(&state, &caller, subject, &path.fingerprint).await
}

/// Revoke every credential of a spoke (admin). Revoking the spoke does
/// this too.
#[utoipa::path(
    delete, path = "/api/federation/spokes/{id}/credentials", tag = super::federation::TAG,
    params(SpokePath),
    responses(
        (status = 204, description = "Every credential of the spoke revoked (none is fine)"),
        (status = 404, description = "No such spoke", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn revoke_all_spoke_credentials(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    revoke_every(&state, &caller, (CredentialKind::Spoke, &id)).await
}

/// Refresh the calling spoke's credential (its own token only): a new
/// expiry, `identity.spoke_token_ttl` from now, for the same token.
#[utoipa::path(
    post, path = "/api/federation/spokes/{id}/credentials/refresh", tag = super::federation::TAG,
    params(SpokePath),
    responses(
        (status = 200, description = "Refreshed: the token's new expiry", body = RefreshedSpokeCredential),
    )
)]
pub async fn refresh_spoke_credential(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let spoke = caller.require_spoke(&id)?;
    let (_, expires_at) = expiry_after(state.settings.identity.spoke_token_ttl)?;
    let subject = (CredentialKind::Spoke, id.as_str());
    let refreshed =
        refresh_row(&state, &caller, subject, spoke.credential, None, expires_at).await?;
    tracing::info!(spoke = %id, credential = %refreshed.fingerprint, "spoke credential refreshed");
    let body = RefreshedSpokeCredential {
        spoke_id: id,
        fingerprint: refreshed.fingerprint,
        expires_at: refreshed.expires_at,
    };
    Ok(no_store(body))
}

/// Tells the revocation pusher (when the service is the NATS authority)
/// that a hub credential was revoked.
pub(super) fn wake_revocations(state: &AppState) {
    if let Some(revocations) = &state.revocations {
        revocations.wake();
    }
}
