//! `/api/fed/projects`: the catalog, as the original service served it.

use axum::body::Bytes;
use axum::extract::{Path, State};
use std::borrow::Cow;

use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use protocol::naming::is_valid_slug;

use super::auth::{Caller, Role};
use super::error::{ApiError, ApiResult, BodyErrors, Problem, QueryErrors};
use super::extract::{Json, Query};
use crate::catalog;
use crate::catalog::{Project, ProjectInput, ProjectStatus, ProjectUpdate};
use crate::catalog_view::{json_array, PageBody};
use crate::field_error::FieldError;
use crate::listing::{self, Listed, Listing, SortValue};
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
    /// Only projects carrying this tag; repeat it (`tag=a&tag=b`) for
    /// projects carrying every one (a tag: no control characters or white
    /// space at either end).
    #[param(schema_with = tags_filter_schema, style = Form, explode)]
    pub tag: Option<Vec<String>>,
    /// Only projects whose slug or name contains this, whatever the case.
    #[param(schema_with = listing::q_schema)]
    pub q: Option<String>,
    /// Order: `slug` (default), `name`, `status` (online, degraded,
    /// offline), `last_seen` (last heartbeat, never-seen first) or
    /// `created`; a leading `-` reverses it. Ties are broken by slug.
    #[param(schema_with = listing::sort_schema::<Project>)]
    pub sort: Option<String>,
    /// Projects per page, 1 to 1000; without it, every matching project.
    #[param(schema_with = listing::limit_schema)]
    pub limit: Option<i64>,
    /// Where the page starts: the cursor in the previous page's `Link`
    /// header (opaque; made for one `sort`).
    #[param(schema_with = listing::cursor_schema)]
    pub cursor: Option<String>,
}

fn tags_filter_schema() -> utoipa::openapi::schema::Array {
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(crate::catalog::tag_filter_schema())
        .max_items(Some(catalog::MAX_TAGS))
        .build()
}

impl Listed for Project {
    const SORTS: &'static [&'static str] = &["slug", "name", "status", "last_seen", "created"];

    fn sort_value(&self, field: &str) -> SortValue<'_> {
        match field {
            "name" => SortValue::Text(Cow::Borrowed(&self.name)),
            "status" => SortValue::Rank(match self.status {
                ProjectStatus::Online => 0,
                ProjectStatus::Degraded => 1,
                ProjectStatus::Offline => 2,
            }),
            "last_seen" => SortValue::Time(self.last_heartbeat_at),
            "created" => SortValue::Time(Some(self.created_at)),
            _ => SortValue::Text(Cow::Borrowed(&self.slug)),
        }
    }

    fn unique(&self) -> &str {
        &self.slug
    }
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

/// List projects (a bare JSON array, as the original), by slug unless
/// `sort` says otherwise. Filters combine (all must match). With `limit`,
/// one page: the next one is linked in the `Link` header (`rel="next"`),
/// absent on the last page. `X-Total-Count` is the number of projects
/// matching the filters, in all pages.
#[utoipa::path(
    get, path = "/api/fed/projects", tag = TAG,
    params(ListParams),
    responses(
        (status = 200, description = "The matching projects (one page with `limit`)", body = [Project],
         headers(
            ("X-Total-Count" = u64, description = "Projects matching the filters, in all pages"),
            ("Link" = String, description = "`<URL>; rel=\"next\"`: the next page, when there is one"),
         )),
        QueryErrors,
    )
)]
pub async fn list_projects(
    State(state): State<AppState>,
    _caller: Caller,
    uri: Uri,
    Query(params): Query<ListParams>,
) -> ApiResult<Response> {
    let mut problems = Vec::new();
    let tags = params.tag.unwrap_or_default();
    for (i, t) in tags.iter().enumerate() {
        if !catalog::TAG.accepts(t) {
            problems.push(FieldError::new(format!("tag[{i}]"), catalog::TAG.message()));
        }
    }
    if tags.len() > catalog::MAX_TAGS {
        problems.push(FieldError::new(
            "tag",
            format!("is given more than {} times", catalog::MAX_TAGS),
        ));
    }
    let page = (
        params.sort.as_deref(),
        params.cursor.as_deref(),
        params.limit,
    );
    let (q, listing) = Listing::check_with_q::<Project>(params.q.as_deref(), page, problems)
        .map_err(ApiError::validation)?;
    let filter = ProjectFilter {
        status: params.status,
        tags,
        q,
    };
    let page = match state.view.page(&filter, &listing) {
        Some(page) => page,
        None => {
            database_needed(&state)?;
            let list = projects::list(&state.db, &filter).await?;
            // The database orders by its collation, not byte by byte as
            // the view and cursors do: not presorted.
            let page = listing.page(list.iter().collect(), false);
            let items = page
                .items
                .iter()
                .map(serde_json::to_vec)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ApiError::Internal(e.into()))?;
            PageBody {
                body: json_array(items.iter().map(Vec::as_slice)),
                total: page.total,
                next: page.next,
            }
        }
    };
    state.metrics.catalog.lookup.inc();
    let headers = listing::headers(uri.path(), uri.query(), page.total, page.next.as_deref());
    Ok((headers, json_response(page.body)).into_response())
}

/// Register a project, or update it if the slug exists (201 / 200).
#[utoipa::path(
    post, path = "/api/fed/projects", tag = TAG,
    request_body = ProjectInput,
    responses(
        (status = 201, description = "Registered", body = Project, headers(("Location" = String, description = "URL of the project"))),
        (status = 200, description = "Updated, or already so", body = Project),
        BodyErrors,
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
            super::created_or_not(true, location, p)
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
    responses(
        (status = 200, description = "The project", body = Project),
        (status = 404, description = "No such project", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_project(
    State(state): State<AppState>,
    _caller: Caller,
    Path(slug): Path<String>,
) -> ApiResult<Response> {
    check_slug(&slug)?;
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
    responses(
        (status = 200, description = "Updated, or already so", body = Project),
        BodyErrors,
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
    check_slug(&slug)?;
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
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such project", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_project(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Role::Admin)?;
    check_slug(&slug)?;
    let deleted = projects::delete(&state.db, &slug, &caller.actor())
        .await?
        .ok_or_else(|| not_found(&slug))?;
    state.view.remove(&deleted.project.slug);
    tracing::info!(slug = %deleted.project.slug, key = %caller.fingerprint, revoked_credentials = deleted.revoked_credentials, "project deleted");
    if deleted.revoked_credentials > 0 {
        super::credentials::wake_revocations(&state);
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

/// A project route's `{slug}`: a 404 if no project can have it.
pub(super) fn check_slug(slug: &str) -> ApiResult<()> {
    if is_valid_slug(slug) {
        Ok(())
    } else {
        Err(not_found(slug))
    }
}
