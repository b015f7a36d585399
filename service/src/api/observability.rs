//! `/metrics`, HTTP metrics and request tracing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Span;

use crate::app::AppState;
use crate::metrics::{HttpLabels, Metrics, RouteLabels, CONTENT_TYPE};
use crate::store;

pub const TAG: &str = "observability";

/// Longest a scrape waits for the gauges read from the database; past it,
/// the last values are served. A scrape never waits on a database that is
/// known to be down.
const DB_GAUGES_TIMEOUT: Duration = Duration::from_millis(500);

/// The gauges derived from the database (outbox, circuit breakers, and
/// projects by status when there is no catalog view), read at scrape time so they are exact whichever
/// replica made the change. One refresh at a time: scrapes that arrive
/// while one runs wait for it and serve its values, so a flood of scrapes
/// keeps at most one query in flight.
#[derive(Default)]
pub struct DbGauges {
    refreshing: tokio::sync::Mutex<()>,
    refreshed: std::sync::atomic::AtomicU64,
}

impl DbGauges {
    async fn refresh(&self, state: &AppState) {
        use std::sync::atomic::Ordering;
        let deadline = tokio::time::Instant::now() + DB_GAUGES_TIMEOUT;
        let seen = self.refreshed.load(Ordering::Acquire);
        let Ok(_turn) = tokio::time::timeout_at(deadline, self.refreshing.lock()).await else {
            tracing::debug!("database gauges: a refresh is still running; serving the last values");
            return;
        };
        if self.refreshed.load(Ordering::Acquire) != seen {
            // Refreshed while this scrape waited.
            return;
        }
        if tokio::time::timeout_at(deadline, read_db_gauges(state))
            .await
            .is_err()
        {
            tracing::debug!(
                "reading database gauges for /metrics timed out; serving the last values"
            );
        }
        self.refreshed.fetch_add(1, Ordering::AcqRel);
    }
}

async fn read_db_gauges(state: &AppState) {
    // Without the catalog view, projects are counted in the database.
    if !state.view.enabled() {
        match store::projects::count_by_status(&state.db).await {
            Ok(counts) => state.metrics.catalog.set_counts(&counts),
            Err(e) => tracing::debug!(error = %e, "cannot count projects for /metrics"),
        }
    }
    // Another replica may have moved a breaker.
    if let Err(e) = state.sync.refresh_breaker_gauges().await {
        tracing::debug!(error = %e, "cannot read circuit breakers for /metrics");
    }
    match crate::events::log::pending(&state.db).await {
        Ok((pending, oldest_s)) => {
            state.metrics.events.outbox_pending.set(pending);
            state
                .metrics
                .events
                .outbox_oldest_pending_seconds
                .set(oldest_s);
        }
        Err(e) => tracing::debug!(error = %e, "cannot count pending events for /metrics"),
    }
}

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
        state.db_gauges.refresh(&state).await;
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
