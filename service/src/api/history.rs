//! `/api/fed/projects/{slug}/history`: a hub's status transitions, newest
//! first, with their cause and actor (any key).

use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::error::{ApiError, ApiResult, Problem, QueryErrors};
use super::extract::Query;
use super::projects::{check_slug, not_found, SlugPath};
use crate::rules::{self, Paging};
use crate::state::AppState;
use crate::store::history::{self, ProjectTransition};

pub const TAG: &str = "catalog";

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// Entries per page, 1 to 1000 (default 100).
    #[param(schema_with = rules::log_limit_schema)]
    pub limit: Option<i64>,
    /// Only entries older than this one: the previous page's `next_before`.
    #[param(schema_with = Paging::before_schema)]
    pub before: Option<i64>,
}

/// One page of a hub's history.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryPage {
    /// Newest first.
    pub transitions: Vec<ProjectTransition>,
    /// Pass as `before` for the next (older) page; `null` on the last.
    pub next_before: Option<i64>,
}

/// A hub's status transitions, newest first: when, from, to, the cause
/// (`heartbeat`, `agent_shutdown`, `sweeper`, `api`, `maintenance`) and who,
/// where known. Kept for `catalog.history_retention`. Keyset pagination
/// with `before`.
#[utoipa::path(
    get, path = "/api/fed/projects/{slug}/history", tag = TAG,
    params(SlugPath, HistoryParams),
    responses(
        (status = 200, description = "One page of the hub's history, newest first", body = HistoryPage),
        (status = 404, description = "No such project", body = Problem, content_type = "application/problem+json"),
        QueryErrors,
    )
)]
pub async fn project_history(
    State(state): State<AppState>,
    _caller: Caller,
    Path(slug): Path<String>,
    Query(params): Query<HistoryParams>,
) -> ApiResult<axum::Json<HistoryPage>> {
    let limit = rules::LOG_PAGES
        .check(params.limit, params.before)
        .map_err(ApiError::validation)?;
    check_slug(&slug)?;
    let Some(id) = history::project_id(&state.db, &slug).await? else {
        return Err(not_found(&slug));
    };
    let transitions = history::list(&state.db, id, params.before, limit).await?;
    let next_before = rules::next_before(&transitions, limit, |t| t.id);
    Ok(axum::Json(HistoryPage {
        transitions,
        next_before,
    }))
}
