//! `/api/federation/drift` and `/api/federation/sync/status`: what the
//! federation sync sees, what it would do, and running it now.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::{Caller, Role};
use super::error::{ApiError, ApiResult, QueryErrors};
use super::extract::Query;
use crate::state::AppState;
use crate::store::audit::{self, AuditEntry};
use crate::sync::drift::DriftReport;
use crate::sync::plan::Plan;
use crate::sync::status::SyncStatus;
use crate::sync::{RunReport, SyncError, Trigger};

pub const TAG: &str = "federation";

impl From<SyncError> for ApiError {
    fn from(e: SyncError) -> Self {
        match e {
            SyncError::Database(e) => ApiError::from(e),
        }
    }
}

/// Drift between the registry, Keycloak, the tfvars file and hub liveness.
#[utoipa::path(
    get, path = "/api/federation/drift", tag = TAG,
    responses(
        (status = 200, description = "The drift report; `clean` is true when there is none and every configured side was checked", body = DriftReport),
    )
)]
pub async fn get_drift(
    State(state): State<AppState>,
    _caller: Caller,
) -> ApiResult<axum::Json<DriftReport>> {
    Ok(axum::Json(state.sync.drift().await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FixParams {
    /// Only say what a reconcile would do; change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// What `POST /api/federation/drift` did.
#[derive(Debug, Serialize, ToSchema)]
pub struct FixOutcome {
    pub dry_run: bool,
    /// With `dry_run`: what a reconcile would do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
    /// Without: the reconcile run...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<RunReport>,
    /// ...and the drift left after it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftReport>,
}

/// Audit action of a reconcile requested through the API.
pub const RECONCILE_ACTION: &str = "sync.reconcile";

/// Fix the drift: run one reconcile now (admin key), or with `dry_run=true`
/// show the plan.
#[utoipa::path(
    post, path = "/api/federation/drift", tag = TAG,
    params(FixParams),
    responses(
        (status = 200, description = "The plan (dry run), or the run and the drift left after it", body = FixOutcome),
        QueryErrors,
    )
)]
pub async fn fix_drift(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<FixParams>,
) -> ApiResult<axum::Json<FixOutcome>> {
    caller.require(Role::Admin)?;
    if params.dry_run {
        return Ok(axum::Json(FixOutcome {
            dry_run: true,
            plan: Some(state.sync.plan().await?),
            run: None,
            drift: None,
        }));
    }
    tracing::info!(key = %caller.fingerprint, "reconcile requested through the API");
    // Audited before it runs: the run spans many transactions.
    let (actor, target) = (caller.actor(), audit::target("sync", "federation"));
    let entry = AuditEntry::success(&actor, RECONCILE_ACTION, target);
    audit::record_alone(&state.db, &entry).await?;
    let run = state.sync.reconcile(Trigger::Manual).await?;
    let drift = state.sync.drift().await?;
    Ok(axum::Json(FixOutcome {
        dry_run: false,
        plan: None,
        run: Some(run),
        drift: Some(drift),
    }))
}

/// The sync's state: circuit breakers, recent runs per target, and the
/// post-command's last exit status and output tail.
#[utoipa::path(
    get, path = "/api/federation/sync/status", tag = TAG,
    responses(
        (status = 200, description = "Sync status", body = SyncStatus),
    )
)]
pub async fn sync_status(
    State(state): State<AppState>,
    _caller: Caller,
) -> ApiResult<axum::Json<SyncStatus>> {
    Ok(axum::Json(
        state.sync.status(state.settings.sync.enabled).await?,
    ))
}
