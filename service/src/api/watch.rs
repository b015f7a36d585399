//! `GET /api/fed/watch`: federation events as Server-Sent Events, from now
//! or after a given event id, so dashboards and CLIs follow changes without
//! polling.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use super::auth::Caller;
use super::error::{ApiError, ApiResult, Problem};
use super::extract::Query;
use crate::field_error::FieldError;
use crate::state::AppState;

pub const TAG: &str = "federation";

/// How often an idle stream sends a comment, so proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// `Retry-After` when the replica has no room for another watch client.
const WATCH_RETRY_AFTER_SECS: u32 = 10;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WatchParams {
    /// Resume after this event id (the `Last-Event-ID` header wins when both
    /// are given). Without either, the stream starts from now.
    #[param(schema_with = crate::rules::uuid_schema)]
    pub last_event_id: Option<String>,
}

/// The standard SSE resume header, documented; read in the handler.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
struct ResumeHeader {
    /// Resume after this event id
    #[param(rename = "Last-Event-ID", schema_with = crate::rules::uuid_schema)]
    last_event_id: Option<String>,
}

/// One server-sent event of `/api/fed/watch`, as a client's SSE parser
/// hands it over.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documentation of the stream's messages only
pub struct WatchMessage {
    /// The event id (a UUID), to resume from with `Last-Event-ID`.
    id: String,
    /// The SSE event name: `message` (the default).
    #[schema(example = "message")]
    event: Option<String>,
    /// The CloudEvent, as JSON text (see docs/events.md).
    data: String,
}

/// Follow federation events (Server-Sent Events). Each message's `id` is the
/// event id and its `data` the CloudEvent (structured JSON), the same
/// envelope JetStream carries, in the same order. Reconnect with
/// `Last-Event-ID` to resume without a gap. Each replica serves at most
/// `server.max_watch_clients` at once; past that it answers 503 with
/// `Retry-After`.
#[utoipa::path(
    get, path = "/api/fed/watch", tag = TAG,
    params(WatchParams, ResumeHeader),
    responses(
        (status = 200, description = "An endless text/event-stream of `id: <event id>` / `data: <CloudEvent JSON>` messages", content_type = "text/event-stream", body = WatchMessage),
        (status = 410, description = "The Last-Event-ID is not in the outbox (pruned after the retention period, or never issued): reconnect without it", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Last-Event-ID is not an event id", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn watch(
    State(state): State<AppState>,
    _caller: Caller,
    headers: HeaderMap,
    Query(params): Query<WatchParams>,
) -> ApiResult<Response> {
    if !state.readiness.database_ready() {
        return Err(ApiError::Unavailable(
            "the service is starting; retry shortly".into(),
        ));
    }
    // Both are checked, so a bad one is refused even when the other wins.
    let mut problems = Vec::new();
    let mut event_id = |field: &str, raw: Option<&str>| {
        let raw = raw?;
        let id = uuid::Uuid::parse_str(raw.trim()).ok();
        if id.is_none() {
            problems.push(FieldError::new(
                field,
                "must be an event id (a UUID) this stream sent",
            ));
        }
        id
    };
    let header = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("\u{fffd}"));
    let from_header = event_id("Last-Event-ID", header);
    let from_query = event_id("last_event_id", params.last_event_id.as_deref());
    if !problems.is_empty() {
        return Err(ApiError::validation(problems));
    }
    let Some(slot) = state.events.admit() else {
        return Ok(super::shed::unavailable(
            format!(
                "this replica already serves its {} watch clients (server.max_watch_clients); retry later or on another replica",
                state.settings.server.max_watch_clients
            ),
            WATCH_RETRY_AFTER_SECS,
        ));
    };
    let feed = &state.events;
    let start = match from_header.or(from_query) {
        None => feed.head().await?,
        Some(id) => {
            match feed.position_of(id).await? {
                Some(cursor) => cursor,
                None => {
                    return Ok(Problem::new(
                        StatusCode::GONE,
                        format!(
                            "event {id} is not in the outbox (pruned after events.retention, or never issued); \
                             reconnect without Last-Event-ID to follow from now"
                        ),
                    )
                    .into_response())
                }
            }
        }
    };
    let rx = feed.follow(start, slot);
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let ev = rx.recv().await?;
        let sse = Event::default().id(ev.id.clone()).data(ev.json.clone());
        Some((Ok::<_, Infallible>(sse), rx))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}
