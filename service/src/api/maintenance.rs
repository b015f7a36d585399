//! `/api/fed/projects/{slug}/maintenance`: planned downtime. While a hub is
//! in a window the stale sweeper does not judge its silence; the window
//! ends by itself at `until` (the sweeper records its end), or by `DELETE`.
//! Afterwards the hub's silence counts from the window's end.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::openapi::schema::{
    AllOfBuilder, KnownFormat, Object, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type,
};
use utoipa::ToSchema;

use super::auth::{Caller, Role};
use super::error::{ApiResult, BodyErrors, Problem};
use super::extract::Json;
use super::projects::{check_slug, not_found, SlugPath};
use crate::catalog::Project;
use crate::field_error::FieldError;
use crate::rules::{self, Text};
use crate::state::AppState;
use crate::store::history;
use crate::store::maintenance::{self, Stopped};

pub const TAG: &str = "catalog";

/// The longest window that can be asked for.
pub const MAX_WINDOW: chrono::Duration = chrono::Duration::days(30);
/// Why the hub is down.
pub const REASON: Text = Text::required(500);

/// Start (or replace) a maintenance window: give `until` or `duration`,
/// not both, and a `reason`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceRequest {
    /// When the window ends (RFC 3339), at most 30 days ahead.
    #[serde(default)]
    #[schema(schema_with = until_schema)]
    pub until: Option<String>,
    /// How long it lasts from now, e.g. `2h` or `90m` (humantime), at most
    /// 30 days.
    #[serde(default)]
    #[schema(schema_with = duration_schema)]
    pub duration: Option<String>,
    /// Why; recorded in the history, the event and the audit log.
    #[schema(schema_with = reason_schema)]
    pub reason: String,
}

rules::example_schemas! {
    reason_schema => REASON.schema(false), "kernel upgrade";
    until_schema => time_schema(), "2026-12-01T02:00:00Z";
    duration_schema => duration_text_schema(), "2h";
}

// Left out when not given, never null: a null would satisfy the
// document's "one of until and duration is present".
fn time_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
        .build()
}

fn duration_text_schema() -> Object {
    rules::nonempty_string(100).build()
}

/// A checked request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowSpec {
    pub until: DateTime<Utc>,
    pub reason: String,
}

impl MaintenanceRequest {
    /// Checks every rule as of `now` and reports every broken one.
    pub fn into_spec(self, now: DateTime<Utc>) -> Result<WindowSpec, Vec<FieldError>> {
        let mut errors = Vec::new();
        let until = match (self.until.as_deref(), self.duration.as_deref()) {
            (Some(_), Some(_)) => {
                errors.push(FieldError::new(
                    "duration",
                    "must be left out when until is given: give one of the two",
                ));
                None
            }
            (None, None) => {
                errors.push(FieldError::new(
                    "until",
                    "is required (or duration): when the window ends",
                ));
                None
            }
            (Some(until), None) => match DateTime::parse_from_rfc3339(until.trim()) {
                Ok(t) => {
                    let t = t.to_utc();
                    if t <= now || t - now > MAX_WINDOW {
                        errors.push(FieldError::new(
                            "until",
                            "must be in the future, at most 30 days ahead",
                        ));
                    }
                    Some(t)
                }
                Err(_) => {
                    errors.push(FieldError::new(
                        "until",
                        "must be an RFC 3339 time, e.g. 2026-12-01T02:00:00Z",
                    ));
                    None
                }
            },
            (None, Some(d)) => match humantime::parse_duration(d.trim()) {
                Ok(d) if !d.is_zero() => {
                    match chrono::Duration::from_std(d)
                        .ok()
                        .filter(|d| *d <= MAX_WINDOW)
                    {
                        Some(d) => Some(now + d),
                        None => {
                            errors.push(FieldError::new("duration", "must be at most 30 days"));
                            None
                        }
                    }
                }
                _ => {
                    errors.push(FieldError::new(
                        "duration",
                        "must be a positive duration such as 2h or 90m",
                    ));
                    None
                }
            },
        };
        if !REASON.accepts(&self.reason) {
            errors.push(FieldError::new("reason", REASON.message()));
        }
        match until {
            Some(until) if errors.is_empty() => Ok(WindowSpec {
                until,
                reason: self.reason.trim().to_owned(),
            }),
            _ => {
                crate::field_error::sort_by_field(&mut errors);
                Err(errors)
            }
        }
    }
}

/// `MaintenanceRequest` as published: its derived schema, plus that
/// exactly one of `until` and `duration` is given.
pub fn request_schema(derived: Schema) -> Schema {
    let one = |field: &str| ObjectBuilder::new().required(field).build();
    AllOfBuilder::new()
        .item(derived)
        .item(OneOfBuilder::new().item(one("until")).item(one("duration")))
        .build()
        .into()
}

/// An admin key, or the hub's own token for its own project (a hub may
/// announce its own planned downtime, nobody else's).
fn authorize(caller: &Caller, slug: &str) -> ApiResult<()> {
    match caller.hub {
        Some(_) => caller.require_project(slug),
        None => caller.require(Role::Admin),
    }
}

/// Put a hub in maintenance (admin keys, or the hub's own token): until the window ends the
/// stale sweeper does not mark it degraded or offline; heartbeats are
/// still recorded. Replaces a window in effect (keeping its `since`).
#[utoipa::path(
    put, path = "/api/fed/projects/{slug}/maintenance", tag = TAG,
    params(SlugPath),
    request_body = MaintenanceRequest,
    responses(
        (status = 200, description = "In maintenance: the project, with its window", body = Project),
        BodyErrors,
        (status = 404, description = "No such project", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn start_maintenance(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
    request: Json<MaintenanceRequest>,
) -> ApiResult<axum::Json<Project>> {
    authorize(&caller, &slug)?;
    check_slug(&slug)?;
    // An unknown project is 404 whatever the body says.
    if history::project_id(&state.db, &slug).await?.is_none() {
        return Err(not_found(&slug));
    }
    let spec = request.check(|r| r.into_spec(Utc::now()))?;
    let project = maintenance::start(&state.db, &slug, spec.until, &spec.reason, &caller.actor())
        .await?
        .ok_or_else(|| not_found(&slug))?;
    state.view.apply([project.clone()]);
    tracing::info!(slug = %slug, until = %spec.until.to_rfc3339(), key = %caller.fingerprint, "maintenance window started");
    Ok(axum::Json(project))
}

/// End a hub's maintenance window now (admin keys, or the hub's own token); its silence is
/// judged from now on. Idempotent: a project not in maintenance answers
/// 204 too, and nothing is recorded. 404 when there is no such project.
#[utoipa::path(
    delete, path = "/api/fed/projects/{slug}/maintenance", tag = TAG,
    params(SlugPath),
    responses(
        (status = 204, description = "The window ended, or there was none"),
        (status = 404, description = "No such project", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn stop_maintenance(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
) -> ApiResult<StatusCode> {
    authorize(&caller, &slug)?;
    check_slug(&slug)?;
    match maintenance::stop(&state.db, &slug, &caller.actor()).await? {
        Stopped::Ended(project) => {
            state.view.apply([*project]);
            tracing::info!(slug = %slug, key = %caller.fingerprint, "maintenance window ended");
            Ok(StatusCode::NO_CONTENT)
        }
        Stopped::NotInMaintenance => Ok(StatusCode::NO_CONTENT),
        Stopped::NoProject => Err(not_found(&slug)),
    }
}
