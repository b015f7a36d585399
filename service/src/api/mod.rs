//! The HTTP API: a flat route table, layers applied in one place.

pub mod audit;
pub mod auth;
pub mod credentials;
pub mod enrollments;
pub mod error;
pub mod extract;
pub mod federation;
pub mod health;
pub mod history;
pub mod idps;
pub mod maintenance;
pub mod observability;
pub mod projects;
pub mod routing;
pub mod shape;
pub mod shed;
pub mod sync;
pub mod watch;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;
use error::{ApiError, Problem};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Federation control plane",
        description = "Project catalog, spoke registry and federation health. \
                       Routes under /api need an X-API-Key header unless marked otherwise. \
                       Errors are application/problem+json (RFC 9457).",
        license(name = "Apache-2.0"),
    ),
    modifiers(&SecurityAddon),
    components(schemas(Problem, crate::field_error::FieldError)),
    tags(
        (name = "catalog", description = "Projects (hubs) and their liveness"),
        (name = "federation", description = "Spoke registry, lifecycle, federation links, public IdPs, the event watch stream, sync and drift"),
        (name = "routing", description = "Tenant routing: federation nodes (databases served by hubs), rules, the tenant map, resolution and bootstrap metadata"),
        (name = "health", description = "Liveness, readiness, dependencies"),
        (name = "observability", description = "Metrics and this document"),
    )
)]
pub struct ApiDoc;

struct SecurityAddon;

impl Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "An admin or agent key (several may be valid at once for rotation), a per-hub token (`fedhub_...`) that may only read the catalog, register or update its own project and refresh its own credentials, or a per-spoke token (`fedspoke_...`) that may only read its own spoke, refresh its own credential, confirm its own links and ask for its own new endpoints",
            ))),
        );
    }
}

/// Routes that need an API key, and the OpenAPI paths they document: each
/// operation is documented here as needing `api_key` and as answering
/// [`error::KeyedErrors`], not by each route.
fn protected(state: &AppState) -> OpenApiRouter<AppState> {
    let mut router = OpenApiRouter::new()
        .routes(routes!(projects::list_projects, projects::register_project))
        .routes(routes!(
            projects::get_project,
            projects::replace_project,
            projects::delete_project
        ))
        .routes(routes!(
            credentials::issue_credential,
            credentials::list_credentials,
            credentials::revoke_all_credentials
        ))
        .routes(routes!(credentials::revoke_credential))
        .routes(routes!(credentials::refresh_credential))
        .routes(routes!(history::project_history))
        .routes(routes!(
            maintenance::start_maintenance,
            maintenance::stop_maintenance
        ))
        .routes(routes!(enrollments::create_enrollment))
        .routes(routes!(sync::get_drift, sync::fix_drift))
        .routes(routes!(sync::sync_status))
        .routes(routes!(federation::register_spoke))
        .routes(routes!(federation::list_spokes))
        .routes(routes!(federation::get_spoke))
        .routes(routes!(federation::confirm_spoke))
        .routes(routes!(federation::spoke_history))
        .routes(routes!(federation::spoke_steps))
        .routes(routes!(federation::approve_spoke))
        .routes(routes!(federation::suspend_spoke))
        .routes(routes!(federation::reinstate_spoke))
        .routes(routes!(federation::revoke_spoke))
        .routes(routes!(federation::propose_revision))
        .routes(routes!(federation::approve_revision))
        .routes(routes!(federation::reject_revision))
        .routes(routes!(federation::retry_spoke))
        .routes(routes!(
            credentials::issue_spoke_credential,
            credentials::list_spoke_credentials,
            credentials::revoke_all_spoke_credentials
        ))
        .routes(routes!(credentials::revoke_spoke_credential))
        .routes(routes!(credentials::refresh_spoke_credential))
        .routes(routes!(federation::list_links))
        .routes(routes!(audit::list_audit))
        .routes(routes!(watch::watch))
        .routes(routes!(routing::list_nodes))
        .routes(routes!(
            routing::get_node,
            routing::put_node,
            routing::delete_node
        ))
        .routes(routes!(routing::list_rules, routing::put_rule))
        .routes(routes!(routing::get_rule, routing::delete_rule))
        .routes(routes!(routing::list_tenants))
        .routes(routes!(
            routing::get_tenant,
            routing::put_tenant,
            routing::delete_tenant
        ))
        .routes(routes!(routing::bootstrap))
        .routes(routes!(routing::resolve));
    document_api_key(router.get_openapi_mut());
    router
        .route_layer(from_fn_with_state(
            state.db_health.clone(),
            shed::database_down,
        ))
        .route_layer(from_fn_with_state(state.clone(), auth::require_api_key))
}

/// Marks every operation of `doc` as needing the `api_key` scheme and as
/// answering what [`error::KeyedErrors`] lists (what a route documents
/// itself is kept).
fn document_api_key(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::security::SecurityRequirement;
    use utoipa::IntoResponses;
    let keyed = error::KeyedErrors::responses();
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for op in operations.into_iter().flatten() {
            op.security.get_or_insert_with(|| {
                vec![SecurityRequirement::new("api_key", Vec::<String>::new())]
            });
            for (status, response) in &keyed {
                let responses = &mut op.responses.responses;
                responses
                    .entry(status.clone())
                    .or_insert_with(|| response.clone());
            }
        }
    }
}

/// Routes anyone may call.
fn public(state: &AppState) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health::health))
        .routes(routes!(health::health_db))
        .routes(routes!(health::health_nats))
        .routes(routes!(health::ready))
        .routes(routes!(observability::metrics))
        .merge(
            OpenApiRouter::new()
                .routes(routes!(idps::public_idps))
                .routes(routes!(enrollments::enroll))
                .route_layer(from_fn_with_state(
                    state.db_health.clone(),
                    shed::database_down,
                )),
        )
}

/// The OpenAPI document, exactly as served.
pub fn openapi(state: &AppState) -> utoipa::openapi::OpenApi {
    build(state).1
}

fn build(state: &AppState) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(protected(state))
        .merge(public(state))
        .split_for_parts();
    publish_what_derives_cannot_say(&mut doc, &state.settings.federation.hub_code);
    // The document describes itself too.
    doc.paths.paths.insert(
        "/openapi.json".into(),
        utoipa::openapi::PathItem::new(
            utoipa::openapi::HttpMethod::Get,
            utoipa::openapi::path::OperationBuilder::new()
                .tag("observability")
                .summary(Some("This OpenAPI document"))
                .response(
                    "200",
                    utoipa::openapi::Response::new("OpenAPI 3.1 document"),
                ),
        ),
    );
    (router, doc)
}

/// Rules the derived schemas cannot carry: one of two slug fields, and the
/// instance codes a spoke may take (every assigned one but the hub's own).
fn publish_what_derives_cannot_say(doc: &mut utoipa::openapi::OpenApi, hub_code: &str) {
    use utoipa::openapi::schema::Schema;
    use utoipa::openapi::RefOr;
    let Some(components) = doc.components.as_mut() else {
        return;
    };
    if let Some(RefOr::T(schema)) = components.schemas.remove("ProjectInput") {
        let published = crate::catalog::project_input_schema(schema);
        components
            .schemas
            .insert("ProjectInput".into(), RefOr::T(published));
    }
    if let Some(RefOr::T(schema)) = components.schemas.remove("MaintenanceRequest") {
        components.schemas.insert(
            "MaintenanceRequest".into(),
            RefOr::T(maintenance::request_schema(schema)),
        );
    }
    if let Some(RefOr::T(Schema::Object(registration))) =
        components.schemas.get_mut("SpokeRegistration")
    {
        registration.properties.insert(
            "instance_code".into(),
            RefOr::T(crate::spoke::spoke_code_schema(hub_code).into()),
        );
    }
}

/// The service's router: the API, with `pages` (routes of other modules,
/// e.g. the web UI, composed by `app`) merged in under the same layers.
pub fn router(state: AppState, pages: Router<AppState>) -> Router {
    let (router, doc) = build(&state);
    let router = router.merge(pages);
    let doc = Arc::new(doc);
    let settings = &state.settings.server;
    let timeout = settings.request_timeout;
    let body_limit = settings.body_limit_bytes;

    router
        .route("/openapi.json", get(move || serve_openapi(doc.clone())))
        .fallback(not_found)
        // Layers, innermost first. `Router::layer` wraps each route after
        // matching, so the metrics layer sees the matched route template.
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(from_fn(shed::over_capacity))
        .layer(from_fn(problem_for_bare_errors))
        .layer(from_fn_with_state(
            state.metrics.clone(),
            observability::track_http,
        ))
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("a request handler panicked");
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "an internal error occurred; it has been logged",
            )
            .into_response()
        }))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(observability::make_span)
                .on_response(observability::on_response)
                // Errors are logged once, by ApiError; a 503 from /ready
                // during start-up is not an error.
                .on_failure(()),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        // A request that brings its own id keeps it; any other gets a UUID.
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(state)
}

async fn serve_openapi(doc: Arc<utoipa::openapi::OpenApi>) -> impl IntoResponse {
    axum::Json(doc.as_ref().clone())
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

/// Layers and axum itself answer some errors with an empty or plain-text
/// body (405, 408, 413...). Give every error response a problem document.
async fn problem_for_bare_errors(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let res = next.run(req).await;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    // JSON already, or a page of the web UI.
    let is_document = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("json") || ct.starts_with("text/html"));
    if is_document {
        return res;
    }
    let detail = match status {
        StatusCode::METHOD_NOT_ALLOWED => "this route does not support that method".to_owned(),
        StatusCode::REQUEST_TIMEOUT => "the request took too long and was abandoned".to_owned(),
        StatusCode::PAYLOAD_TOO_LARGE => {
            "the request body is larger than the server accepts".to_owned()
        }
        other => other.canonical_reason().unwrap_or("error").to_owned(),
    };
    let (mut parts, _) = res.into_parts();
    let mut fresh = Problem::new(status, detail).into_response();
    // Keep headers such as Allow, replacing the body's type and length.
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(error::PROBLEM_JSON),
    );
    std::mem::swap(fresh.headers_mut(), &mut parts.headers);
    fresh
}

/// 201 with `Location` when `created`, else 200; the body as JSON either way.
fn created_or_not<T: serde::Serialize>(created: bool, location: String, body: T) -> Response {
    if created {
        (
            StatusCode::CREATED,
            [(header::LOCATION, location)],
            axum::Json(body),
        )
            .into_response()
    } else {
        axum::Json(body).into_response()
    }
}
