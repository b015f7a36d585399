//! `GET /api/idps/public`: the identity providers a login page should
//! offer, derived only from the registry and hub liveness.

use axum::extract::State;

use super::error::{ApiResult, Problem};
use crate::spoke::PublicIdp;
use crate::state::AppState;
use crate::store::spokes;

pub const TAG: &str = "federation";

/// IdPs of approved spokes whose hub is live (no key needed). A spoke's hub
/// is the catalog project whose slug is its lower-case instance code
/// (spoke FRA ↔ project `fra`, heartbeats on `hub.presence.fra`); no such
/// project, or one that is `offline`, hides the IdP.
#[utoipa::path(
    get, path = "/api/idps/public", tag = TAG,
    responses(
        (status = 200, description = "IdPs to offer, by instance code", body = [PublicIdp]),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn public_idps(State(state): State<AppState>) -> ApiResult<axum::Json<Vec<PublicIdp>>> {
    Ok(axum::Json(spokes::public_idps(&state.db).await?))
}
