//! Enrollment: an admin makes a single-use join token for a slug
//! (`POST /api/fed/projects/{slug}/enrollments`); the new hub exchanges it,
//! without any API key, for its credential (`POST /api/fed/enroll`), the
//! same body an admin gets from `POST .../credentials`. Join tokens are
//! answered once and stored only as digests; every exchange, won or
//! refused, is in the audit log.

use std::sync::{LazyLock, Mutex};

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::credentials::{expiry_after, expose, require_admin_over, IssuedCredential, Issuing};
use super::error::{ApiError, ApiResult, BodyErrors, Problem};
use super::extract::Json;
use super::projects::SlugPath;
use crate::auth::{
    fingerprint_of_digest, may_log, new_join_token, token_digest, CredentialKind, FAILURE_LINES,
    FAILURE_WINDOW,
};
use crate::log_limit::LogLimiter;
use crate::state::AppState;
use crate::store::audit::{self, Actor, AuditEntry};
use crate::store::enrollments::{self, actions};

pub const TAG: &str = "catalog";

/// A join token just made. It is shown this once.
#[derive(Serialize, ToSchema)]
pub struct JoinToken {
    /// Give it to the hub's agent (`HUB_AGENT__JOIN_TOKEN`); it may be
    /// exchanged once, before `expires_at`. Stored only as a digest.
    #[serde(serialize_with = "expose")]
    #[schema(value_type = String, example = "fedjoin_Zk3...")]
    pub join_token: SecretString,
    pub expires_at: DateTime<Utc>,
}

/// What a new hub sends to enroll.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Enrollment {
    /// The join token an admin made for the hub.
    #[schema(value_type = String, example = "fedjoin_Zk3...")]
    pub join_token: SecretString,
}

/// Refused exchanges logged per kind per window (a flood of guesses must
/// not fill the disk).
static REFUSALS: LazyLock<Mutex<LogLimiter<&'static str>>> =
    LazyLock::new(|| Mutex::new(LogLimiter::new(FAILURE_LINES, FAILURE_WINDOW)));

/// Make a join token for a hub (admin): single use, valid for
/// `identity.join_token_ttl` (1 h unless configured). Shown once.
#[utoipa::path(
    post, path = "/api/fed/projects/{slug}/enrollments", tag = TAG,
    params(SlugPath),
    responses(
        (status = 201, description = "Made; the join token is in this answer only", body = JoinToken),
        (status = 404, description = "Not a valid slug", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_enrollment(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
) -> ApiResult<Response> {
    require_admin_over(&state, &caller, (CredentialKind::Hub, &slug)).await?;
    let join_token = new_join_token();
    let digest = token_digest(join_token.expose_secret().as_bytes());
    let fingerprint = fingerprint_of_digest(&digest);
    let (_, expires_at) = expiry_after(state.settings.identity.join_token_ttl)?;
    let mut tx = state.db.begin().await?;
    let expires_at =
        enrollments::insert(&mut *tx, &slug, &digest, &fingerprint, expires_at).await?;
    let target = audit::target("enrollment", &format!("{slug}/{fingerprint}"));
    let actor = caller.actor();
    audit::record_success(&mut tx, &actor, actions::CREATE, target).await?;
    tx.commit().await?;
    tracing::info!(%slug, join_token = %fingerprint, key = %caller.fingerprint, %expires_at, "join token made");
    let body = JoinToken {
        join_token,
        expires_at,
    };
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(body),
    )
        .into_response())
}

/// Exchange a join token for the hub's credential (no API key): a REST
/// token and, when the service is the NATS authority, NATS credentials.
/// Each join token works once; a used, expired or unknown one is 401.
#[utoipa::path(
    post, path = "/api/fed/enroll", tag = TAG,
    request_body = Enrollment,
    responses(
        (status = 201, description = "Enrolled; the secrets are in this answer only", body = IssuedCredential),
        BodyErrors,
        (status = 401, description = "The join token is unknown, used or expired", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn enroll(State(state): State<AppState>, body: Json<Enrollment>) -> ApiResult<Response> {
    let enrollment = body.check(Ok)?;
    let digest = token_digest(enrollment.join_token.expose_secret().as_bytes());
    drop(enrollment);
    let actor = Actor::enrollment();
    let issuing = Issuing::new();
    let mut tx = state.db.begin().await?;
    let Some(claimed) = enrollments::claim(&mut *tx, &digest, &issuing.fingerprint).await? else {
        // Nothing changed. A token that was made (used or expired) has its
        // refusal recorded, never the token; a guess at one that never
        // existed is only logged: this route needs no key, and a flood of
        // guesses must not become a flood of database writes.
        let why = enrollments::why_unclaimable(&mut *tx, &digest).await?;
        let named = why.named.as_deref().unwrap_or("unknown");
        if let Some(made) = &why.named {
            let target = audit::target("enrollment", made);
            audit::record(
                &mut tx,
                &AuditEntry::refused(&actor, actions::EXCHANGE, target, why.reason),
            )
            .await?;
            tx.commit().await?;
        }
        if let Some(suppressed) = may_log(&REFUSALS, why.reason) {
            tracing::warn!(join_token = %named, reason = why.reason, suppressed, "refused an enrollment");
        }
        return Err(ApiError::Rejected(
            "the join token is not valid (unknown, used or expired)".into(),
        ));
    };
    let target = audit::target(
        "enrollment",
        &format!("{}/{}", claimed.slug, claimed.fingerprint),
    );
    audit::record_success(&mut tx, &actor, actions::EXCHANGE, target).await?;
    let issued: IssuedCredential = issuing
        .store(&state, &mut tx, &claimed.slug, &actor)
        .await?;
    tx.commit().await?;
    tracing::info!(slug = %claimed.slug, join_token = %claimed.fingerprint, credential = %issued.fingerprint, nats = issued.nats_creds.is_some(), "hub enrolled");
    Ok(issued.into_created())
}
