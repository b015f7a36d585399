//! Liveness, dependency health and readiness.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::health::{self, DbHealth, ReadyReport};
use crate::state::AppState;

pub const TAG: &str = "health";

#[derive(Debug, Serialize, ToSchema)]
pub struct Liveness {
    #[schema(example = "healthy")]
    pub status: &'static str,
    pub timestamp: DateTime<Utc>,
    pub version: &'static str,
}

/// Liveness: answers as long as the process serves HTTP; checks nothing else.
#[utoipa::path(get, path = "/health", tag = TAG,
    responses((status = 200, description = "Alive", body = Liveness)))]
pub async fn health() -> Json<Liveness> {
    Json(Liveness {
        status: "healthy",
        timestamp: Utc::now(),
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// Database connectivity, as the last of the service's checks (every
/// second, on a connection of its own) found it. Answers at once.
#[utoipa::path(get, path = "/health/db", tag = TAG,
    responses(
        (status = 200, description = "Connected", body = DbHealth),
        (status = 503, description = "Disconnected", body = DbHealth),
    ))]
pub async fn health_db(State(state): State<AppState>) -> (StatusCode, Json<DbHealth>) {
    let db = state.db_health.health();
    let code = if db.error.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(db))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NatsHealth {
    /// `connected`, `disconnected` or `not_configured`.
    #[schema(example = "connected")]
    pub status: &'static str,
    /// Server URL(s) with any credentials removed.
    pub url: Option<String>,
}

/// NATS connectivity.
#[utoipa::path(get, path = "/health/nats", tag = TAG,
    responses(
        (status = 200, description = "Connected, or NATS not configured", body = NatsHealth),
        (status = 503, description = "Disconnected", body = NatsHealth),
    ))]
pub async fn health_nats(State(state): State<AppState>) -> (StatusCode, Json<NatsHealth>) {
    match &state.nats {
        None => (
            StatusCode::OK,
            Json(NatsHealth {
                status: "not_configured",
                url: None,
            }),
        ),
        Some(nats) => {
            let connected = nats.is_connected();
            (
                if connected {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                },
                Json(NatsHealth {
                    status: if connected {
                        "connected"
                    } else {
                        "disconnected"
                    },
                    url: Some(nats.display_url().to_owned()),
                }),
            )
        }
    }
}

/// Readiness to serve REST traffic: 200 once started and while the database
/// answers and is migrated; 503 with the reasons otherwise. NATS being down
/// does not make the service unready (the REST API does not need it); it
/// is listed under `warnings`, and `/health/nats` answers 503. Answers at
/// once, from the service's own checks.
#[utoipa::path(get, path = "/ready", tag = TAG,
    responses(
        (status = 200, description = "Ready", body = ReadyReport),
        (status = 503, description = "Not ready, with reasons", body = ReadyReport),
    ))]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<ReadyReport>) {
    let mut warnings = Vec::new();
    if let Some(nats) = &state.nats {
        if !nats.is_connected() {
            warnings.push(format!(
                "nats: not connected to {}; heartbeats are not received and events wait in the outbox",
                nats.display_url()
            ));
        }
    }
    if state.settings.nats_is_open() {
        warnings.push(crate::config::OPEN_NATS_WARNING.to_owned());
    }
    if state.nats.as_ref().is_some_and(|n| n.admits_anonymous()) {
        warnings.push(crate::nats::OPEN_NATS_ANONYMOUS_WARNING.to_owned());
    }
    let mut extra = Vec::new();
    if let Some((failing_for, error)) = state.sight.write_failure() {
        if failing_for >= state.settings.heartbeat.write_failure_grace {
            extra.push(format!(
                "heartbeats: cannot be written for {}s: {error}",
                failing_for.as_secs()
            ));
        }
    }
    if state.view.enabled() && state.readiness.database_ready() && !state.view.is_following() {
        warnings.push(
            "catalog view: change notifications lost; reads may lag until they are back".into(),
        );
    }
    if state.nats.is_some() {
        if let Some(w) = state
            .sight
            .self_preservation(Utc::now(), state.settings.heartbeat.stale_threshold)
        {
            warnings.push(format!("self-preservation: {w}"));
        }
    }
    let report = health::readiness(&state.readiness, &state.db_health, extra, warnings);
    let code = if report.reasons.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(report))
}
