//! `/api/fed/audit`: who changed what, newest first (admin keys only).

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::{Caller, Role};
use super::error::{ApiError, ApiResult, QueryErrors};
use super::extract::Query;
use crate::field_error::FieldError;
use crate::rules::{self, Label, Paging};
use crate::state::AppState;
use crate::store::audit::{self, AuditQuery, AuditRecord};

pub const TAG: &str = "federation";

/// The `target` and `actor` filters.
const FILTER: Label = Label { max: 200 };

fn filter_schema() -> utoipa::openapi::schema::Object {
    FILTER.schema()
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only rows about this target, e.g. `project:alpha` or
    /// `spoke:spoke-fra-ee18ad42`.
    #[param(schema_with = filter_schema)]
    pub target: Option<String>,
    /// Only rows by this actor, e.g. `sha256:1a2b3c4d` (a key's
    /// fingerprint), `hub:alpha` or `enrollment`.
    #[param(schema_with = filter_schema)]
    pub actor: Option<String>,
    /// Rows per page, 1 to 1000 (default 100).
    #[param(schema_with = rules::log_limit_schema)]
    pub limit: Option<i64>,
    /// Only rows older than this one: the previous page's `next_before`.
    #[param(schema_with = Paging::before_schema)]
    pub before: Option<i64>,
}

/// One page of the audit log.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// Newest first.
    pub entries: Vec<AuditRecord>,
    /// Pass as `before` for the next (older) page; `null` on the last.
    pub next_before: Option<i64>,
}

/// The audit log, newest first: every mutation with its actor, action,
/// target and outcome (admin keys only). Keyset pagination with `before`.
#[utoipa::path(
    get, path = "/api/fed/audit", tag = TAG,
    params(AuditParams),
    responses(
        (status = 200, description = "One page of the audit log, newest first", body = AuditPage),
        QueryErrors,
    )
)]
pub async fn list_audit(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<AuditParams>,
) -> ApiResult<axum::Json<AuditPage>> {
    caller.require(Role::Admin)?;
    let (limit, mut problems) = match rules::LOG_PAGES.check(params.limit, params.before) {
        Ok(limit) => (limit, Vec::new()),
        Err(problems) => (0, problems),
    };
    for (name, value) in [("actor", &params.actor), ("target", &params.target)] {
        if value.as_deref().is_some_and(|v| !FILTER.accepts(v)) {
            problems.push(FieldError::new(name, FILTER.message()));
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::validation(problems));
    }
    let query = AuditQuery {
        target: params.target,
        actor: params.actor,
        before: params.before,
        limit,
    };
    let entries = audit::list(&state.db, &query).await?;
    let next_before = rules::next_before(&entries, limit, |e| e.id);
    Ok(axum::Json(AuditPage {
        entries,
        next_before,
    }))
}
