//! Load shedding: a request that cannot be served now is answered 503 with
//! `Retry-After` at once, instead of waiting for what will not come.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::health::DatabaseMonitor;
use crate::server::OverCapacity;

/// `Retry-After` while the database is down: about when the service looks
/// again, give or take a reconnection.
pub const DATABASE_RETRY_AFTER_SECS: u32 = 5;

/// A 503 problem document with `Retry-After`.
pub fn unavailable(detail: impl Into<String>, retry_after_secs: u32) -> Response {
    let mut res = ApiError::Unavailable(detail.into()).into_response();
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    res
}

/// What a connection beyond `server.max_connections` may still ask.
const HEALTH_ROUTES: [&str; 5] = [
    "/health",
    "/health/db",
    "/health/nats",
    "/ready",
    "/metrics",
];

/// Layer: on a connection beyond the cap (see [`crate::server`]) only the
/// health and metrics routes are served; anything else is 503 and the
/// connection closes.
pub async fn over_capacity(req: Request, next: Next) -> Response {
    if req.extensions().get::<OverCapacity>().is_none() {
        return next.run(req).await;
    }
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str());
    if route.is_some_and(|r| HEALTH_ROUTES.contains(&r)) {
        return next.run(req).await;
    }
    let mut res = unavailable("the server is at its connection limit; retry shortly", 1);
    res.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    res
}

/// Reads the in-memory catalog view serves without the database.
fn served_from_memory(req: &Request) -> bool {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str());
    matches!(*req.method(), Method::GET | Method::HEAD)
        && matches!(
            route,
            Some("/api/fed/projects" | "/api/fed/projects/{slug}")
        )
}

/// Route layer: while the database is known to be down, routes that need it
/// answer 503 at once rather than each waiting `database.acquire_timeout`
/// for a connection.
pub async fn database_down(
    State(db): State<Arc<DatabaseMonitor>>,
    req: Request,
    next: Next,
) -> Response {
    if db.is_down() && !served_from_memory(&req) {
        return unavailable(
            "the database is unavailable; retry later",
            DATABASE_RETRY_AFTER_SECS,
        );
    }
    next.run(req).await
}
