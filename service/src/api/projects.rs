//! `/api/fed/projects`: the catalog, as the original service served it.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use protocol::naming::is_valid_slug;

use super::auth::{Caller, Role};
use super::error::{ApiError, ApiResult, BodyErrors, KeyedErrors, Problem, QueryErrors};
use super::extract::{Json, Query};
use crate::catalog;
use crate::catalog::{Project, ProjectInput, ProjectStatus, ProjectUpdate};
use crate::field_error::FieldError;
use crate::rules;
use crate::state::AppState;
use crate::store::projects::{self, ProjectFilter, Upserted};

pub const TAG: &str = "catalog";

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only projects in this status.
    pub status: Option<ProjectStatus>,
    /// Only projects carrying this tag (a tag: no control characters or
    /// white space at either end).
    #[param(schema_with = crate::catalog::tag_filter_schema)]
    pub tag: Option<String>,
}

/// The `{slug}` of a project route.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SlugPath {
    /// Project slug
    #[param(schema_with = slug_param_schema)]
    pub slug: String,
}

fn slug_param_schema() -> utoipa::openapi::schema::Object {
    rules::slug_schema(false)
}

/// List projects, ordered by slug (a bare JSON array, as the original).
#[utoipa::path(
    get, path = "/api/fed/projects", tag = TAG,
    params(ListParams),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The matching projects", body = [Project]),
        KeyedErrors,
        QueryErrors,
    )
)]
pub async fn list_projects(
    State(state): State<AppState>,
    _caller: Caller,
    Query(params): Query<ListParams>,
) -> ApiResult<Response> {
    if params
        .tag
        .as_deref()
        .is_some_and(|t| !catalog::TAG.accepts(t))
    {
        return Err(ApiError::validation(vec![FieldError::new(
            "tag",
            catalog::TAG.message(),
        )]));
    }
    let body = match state.view.list(params.status, params.tag.as_deref()) {
        Some(body) => body,
        None => {
            database_needed(&state)?;
            let filter = ProjectFilter {
                status: params.status,
                tag: params.tag,
            };
            let list = projects::list(&state.db, &filter).await?;
            Bytes::from(serde_json::to_vec(&list).map_err(|e| ApiError::Internal(e.into()))?)
        }
    };
    state.metrics.catalog.lookup.inc();
    Ok(json_response(body))
}

/// Register a project, or update it if the slug exists (201 / 200).
#[utoipa::path(
    post, path = "/api/fed/projects", tag = TAG,
    request_body = ProjectInput,
    security(("api_key" = [])),
    responses(
        (status = 201, description = "Registered", body = Project, headers(("Location" = String, description = "URL of the project"))),
        (status = 200, description = "Updated, or already so", body = Project),
        BodyErrors,
        KeyedErrors,
    )
)]
pub async fn register_project(
    State(state): State<AppState>,
    caller: Caller,
    input: Json<ProjectInput>,
) -> ApiResult<Response> {
    caller.require(Role::Hub)?;
    let spec = input.check(ProjectInput::into_spec)?;
    caller.require_project(&spec.slug)?;
    let outcome = projects::upsert(&state.db, &spec, &caller.actor()).await?;
    state.metrics.catalog.register.inc();
    state.view.apply([outcome.project().clone()]);
    Ok(match outcome {
        Upserted::Created(p) => {
            tracing::info!(slug = %p.slug, key = %caller.fingerprint, "project registered");
            let location = format!("/api/fed/projects/{}", p.slug);
            (
                StatusCode::CREATED,
                [(header::LOCATION, location)],
                axum::Json(p),
            )
                .into_response()
        }
        Upserted::Updated(p) => {
            tracing::info!(slug = %p.slug, key = %caller.fingerprint, "project updated");
            axum::Json(p).into_response()
        }
        Upserted::Unchanged(p) => axum::Json(p).into_response(),
    })
}

/// One project.
#[utoipa::path(
    get, path = "/api/fed/projects/{slug}", tag = TAG,
    params(SlugPath),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The project", body = Project),
        KeyedErrors,
        (status = 404, description = "No such project", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_project(
    State(state): State<AppState>,
    _caller: Caller,
    Path(slug): Path<String>,
) -> ApiResult<Response> {
    if !is_valid_slug(&slug) {
        return Err(not_found(&slug));
    }
    let body = match state.view.get(&slug) {
        Some(body) => body,
        None => {
            // Not in the view: perhaps created on another replica a moment
            // ago, its notification still on the way.
            database_needed(&state)?;
            let project = projects::get(&state.db, &slug)
                .await?
                .ok_or_else(|| not_found(&slug))?;
            state.view.apply([project.clone()]);
            Bytes::from(serde_json::to_vec(&project).map_err(|e| ApiError::Internal(e.into()))?)
        }
    };
    state.metrics.catalog.lookup.inc();
    Ok(json_response(body))
}

/// Replace a project's attributes. The project must exist.
#[utoipa::path(
    put, path = "/api/fed/projects/{slug}", tag = TAG,
    params(SlugPath),
    request_body = ProjectUpdate,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Updated, or already so", body = Project),
        BodyErrors,
        KeyedErrors,
        (status = 404, description = "No such project", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn replace_project(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
    update: Json<ProjectUpdate>,
) -> ApiResult<axum::Json<Project>> {
    caller.require_project(&slug)?;
    if !is_valid_slug(&slug) {
        return Err(not_found(&slug));
    }
    let spec = update.check(|u| u.for_slug(&slug).and_then(ProjectInput::into_spec))?;
    let outcome = projects::update(&state.db, &spec, &caller.actor())
        .await?
        .ok_or_else(|| not_found(&slug))?;
    state.metrics.catalog.register.inc();
    state.view.apply([outcome.project().clone()]);
    if let Upserted::Updated(p) = &outcome {
        tracing::info!(slug = %p.slug, key = %caller.fingerprint, "project updated");
    }
    Ok(axum::Json(outcome.into_project()))
}

/// Delete a project (admin keys only); its hub credentials are revoked.
#[utoipa::path(
    delete, path = "/api/fed/projects/{slug}", tag = TAG,
    params(SlugPath),
    security(("api_key" = [])),
    responses(
        (status = 204, description = "Deleted"),
        KeyedErrors,
        (status = 404, description = "No such project", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_project(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Role::Admin)?;
    if !is_valid_slug(&slug) {
        return Err(not_found(&slug));
    }
    let deleted = projects::delete(&state.db, &slug, &caller.actor())
        .await?
        .ok_or_else(|| not_found(&slug))?;
    state.view.remove(&deleted.project.slug);
    tracing::info!(slug = %deleted.project.slug, key = %caller.fingerprint, revoked_credentials = deleted.revoked_credentials, "project deleted");
    if deleted.revoked_credentials > 0 {
        if let Some(revocations) = &state.revocations {
            revocations.wake();
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The view could not answer: the database must, unless it is known down.
fn database_needed(state: &AppState) -> ApiResult<()> {
    if state.db_health.is_down() {
        return Err(ApiError::Unavailable(
            "the database is unavailable and the catalog view cannot answer this read; retry later"
                .into(),
        ));
    }
    Ok(())
}

fn json_response(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A project route's 404.
pub(super) fn not_found(slug: &str) -> ApiError {
    ApiError::NotFound(format!("no project with slug {slug:?}"))
}
