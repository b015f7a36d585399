//! `/metrics`, HTTP metrics and request tracing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Span;

use crate::metrics::gather::Sources;
use crate::metrics::{HttpLabels, Metrics, RouteLabels, CONTENT_TYPE};
use crate::state::AppState;

pub const TAG: &str = "observability";

/// Prometheus metrics in OpenMetrics text format. No key needed. Answers
/// within about half a second whatever the database does: with the
/// database down, the gauges read from it keep their last values.
#[utoipa::path(get, path = "/metrics", tag = TAG,
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    // Project counts come from the catalog view when there is one: it is
    // kept exact by push, costs no query, and answers with the database down.
    if let Some(counts) = state.view.counts() {
        state.metrics.catalog.set_counts(&counts);
    }
    if state.readiness.database_ready() && !state.db_health.is_down() {
        let sources = Sources {
            db: &state.db,
            view: &state.view,
            sync: &state.sync,
        };
        state.db_gauges.refresh(sources, &state.metrics).await;
    }
    let preserving = state.nats.is_some()
        && state
            .sight
            .self_preservation(chrono::Utc::now(), state.settings.heartbeat.stale_threshold)
            .is_some();
    state
        .metrics
        .sweeper
        .self_preservation
        .set(i64::from(preserving));
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        state.metrics.encode(),
    )
        .into_response()
}

/// Counts and times every request by its matched route template, never by
/// the raw path (which would carry slugs).
pub async fn track_http(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let res = next.run(req).await;
    let elapsed = start.elapsed().as_secs_f64();
    metrics
        .http
        .requests
        .get_or_create(&HttpLabels {
            method,
            route: route.clone(),
            status: res.status().as_u16(),
        })
        .inc();
    metrics
        .http
        .duration
        .get_or_create(&RouteLabels { route })
        .observe(elapsed);
    res
}

/// Request span: method, route template, request id. No headers (they carry
/// API keys) and no query string.
pub fn make_span(req: &Request) -> Span {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str());
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!("http", method = %req.method(), route, request_id)
}

pub fn on_response(res: &Response, latency: Duration, _span: &Span) {
    tracing::debug!(
        status = res.status().as_u16(),
        latency_ms = latency.as_secs_f64() * 1000.0,
        "answered"
    );
}
