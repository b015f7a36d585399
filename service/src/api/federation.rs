//! `/api/federation`: spoke self-registration, the operator's lifecycle
//! actions, the transition log and the federation links.

use std::borrow::Cow;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use super::auth::{Caller, Role};
use super::error::{ApiError, ApiResult, BodyErrors, KeyedErrors, Problem, QueryErrors};
use super::extract::{Json, Query};
use crate::conditions::SpokeDetail;
use crate::field_error::FieldError;
use crate::listing::{self, Listed, Listing, SortValue};
use crate::rules;
use crate::spoke::{
    is_spoke_id, FederationLink, LinkStatus, Spoke, SpokeAction, SpokeEventData, SpokeRegistration,
    SpokeStatus, Transition, TransitionRequest, TransitionSpec,
};
use crate::state::AppState;
use crate::store::conditions;
use crate::store::links::{self, LinkFilter};
use crate::store::spokes::{self, Confirmed, Registered, TransitionOutcome};

pub const TAG: &str = "federation";

/// The `{id}` of a spoke route.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SpokePath {
    /// Spoke id, e.g. spoke-fra-ee18ad42
    #[param(schema_with = rules::spoke_id_schema)]
    pub id: String,
}

/// Register a spoke (agent or admin key). It always lands as `pending`;
/// registering again with the same attributes returns the same record.
#[utoipa::path(
    post, path = "/api/federation/register", tag = TAG,
    request_body = SpokeRegistration,
    security(("api_key" = [])),
    responses(
        (status = 201, description = "Registered, pending approval", body = Spoke, headers(("Location" = String, description = "URL of the spoke"))),
        (status = 200, description = "Already registered with these attributes: the same record", body = Spoke),
        BodyErrors,
        KeyedErrors,
        (status = 409, description = "A live spoke of this instance code is registered with other attributes; `current` holds it", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn register_spoke(
    State(state): State<AppState>,
    caller: Caller,
    input: Json<SpokeRegistration>,
) -> ApiResult<Response> {
    caller.require(Role::Agent)?;
    let hub_code = &state.settings.federation.hub_code;
    let spec = input.check(|i| i.into_spec(hub_code))?;
    match spokes::register(&state.db, &spec, &caller.actor(), &caller.fingerprint).await? {
        Registered::Created(s) => {
            tracing::info!(spoke = %s.id, code = %s.instance_code, key = %caller.fingerprint, "spoke registered, pending approval");
            let location = format!("/api/federation/spokes/{}", s.id);
            Ok((
                StatusCode::CREATED,
                [(header::LOCATION, location)],
                axum::Json(s),
            )
                .into_response())
        }
        Registered::Existing(s) => Ok(axum::Json(s).into_response()),
        Registered::Conflict { existing, fields } => Err(ApiError::Conflict {
            detail: format!(
                "instance_code {} is already registered as {} ({}) with a different {}; \
                 a spoke re-registers with the same attributes, or is revoked first",
                existing.instance_code,
                existing.id,
                existing.status.as_str(),
                fields.join(", ")
            ),
            current: serde_json::to_value(&existing).ok(),
        }),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SpokeListParams {
    /// Only spokes in this status.
    pub status: Option<SpokeStatus>,
    /// Only spokes whose instance code, name or id contains this, whatever
    /// the case.
    #[param(schema_with = listing::q_schema)]
    pub q: Option<String>,
    /// Order: `instance_code` (default), `name`, `status` (pending,
    /// approved, suspended, revoked) or `created`; a leading `-` reverses
    /// it. Ties are broken by id.
    #[param(schema_with = listing::sort_schema::<Spoke>)]
    pub sort: Option<String>,
    /// Spokes per page, 1 to 1000; without it, every matching spoke.
    #[param(schema_with = listing::limit_schema)]
    pub limit: Option<i64>,
    /// Where the page starts: the cursor in the previous page's `Link`
    /// header (opaque; made for one `sort`).
    #[param(schema_with = listing::cursor_schema)]
    pub cursor: Option<String>,
}

impl Listed for Spoke {
    const SORTS: &'static [&'static str] = &["instance_code", "name", "status", "created"];

    fn sort_value(&self, field: &str) -> SortValue<'_> {
        match field {
            "name" => SortValue::Text(Cow::Borrowed(&self.name)),
            "status" => SortValue::Rank(match self.status {
                SpokeStatus::Pending => 0,
                SpokeStatus::Approved => 1,
                SpokeStatus::Suspended => 2,
                SpokeStatus::Revoked => 3,
            }),
            "created" => SortValue::Time(Some(self.created_at)),
            _ => SortValue::Text(Cow::Borrowed(&self.instance_code)),
        }
    }

    fn unique(&self) -> &str {
        &self.id
    }
}

/// List spokes (a bare JSON array), by instance code unless `sort` says
/// otherwise. With `limit`, one page: the next one is linked in the `Link`
/// header (`rel="next"`). `X-Total-Count` is the number of spokes matching
/// the filters, in all pages.
#[utoipa::path(
    get, path = "/api/federation/spokes", tag = TAG,
    params(SpokeListParams),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The matching spokes (one page with `limit`)", body = [Spoke],
         headers(
            ("X-Total-Count" = u64, description = "Spokes matching the filters, in all pages"),
            ("Link" = String, description = "`<URL>; rel=\"next\"`: the next page, when there is one"),
         )),
        KeyedErrors,
        QueryErrors,
    )
)]
pub async fn list_spokes(
    State(state): State<AppState>,
    _caller: Caller,
    uri: Uri,
    Query(params): Query<SpokeListParams>,
) -> ApiResult<Response> {
    let page = (
        params.sort.as_deref(),
        params.cursor.as_deref(),
        params.limit,
    );
    let (q, listing) = Listing::check_with_q::<Spoke>(params.q.as_deref(), page, Vec::new())
        .map_err(ApiError::validation)?;
    let mut all = spokes::list(&state.db, params.status).await?;
    if let Some(q) = &q {
        all.retain(|s| {
            [&s.instance_code, &s.name, &s.id]
                .iter()
                .any(|f| listing::contains_ci(f, q))
        });
    }
    let page = listing.page(all.iter().collect(), false);
    let headers = listing::headers(uri.path(), uri.query(), page.total, page.next.as_deref());
    Ok((headers, axum::Json(page.items)).into_response())
}

/// One spoke and its conditions (any key; a spoke token only its own).
#[utoipa::path(
    get, path = "/api/federation/spokes/{id}", tag = TAG,
    params(SpokePath),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The spoke and its conditions", body = SpokeDetail),
        KeyedErrors,
        (status = 404, description = "No such spoke", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_spoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<SpokeDetail>> {
    // A spoke's own token reads only its own spoke (the auth layer says so
    // too).
    caller.may_read_spoke(&id)?;
    if !is_spoke_id(&id) {
        return Err(not_found(&id));
    }
    // One snapshot: the spoke and its conditions as of the same moment.
    let mut tx = crate::store::snapshot(&state.db).await?;
    let spoke = spokes::get(&mut *tx, &id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    let conditions = conditions::list(&mut *tx, &id).await?;
    tx.commit().await?;
    Ok(axum::Json(SpokeDetail { spoke, conditions }))
}

/// The spoke confirms that it trusts the hub (its own credential only):
/// `SpokeTrustsHub` becomes True, and with it the SPOKE_TO_HUB link of an
/// approved spoke becomes ACTIVE. Confirming again changes nothing.
#[utoipa::path(
    post, path = "/api/federation/spokes/{id}/confirm", tag = TAG,
    params(SpokePath),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Confirmed: the spoke and its conditions", body = SpokeDetail),
        KeyedErrors,
        (status = 404, description = "No such spoke", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The spoke is revoked; `current` holds it", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn confirm_spoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<SpokeDetail>> {
    caller.require_spoke(&id)?;
    if !is_spoke_id(&id) {
        return Err(not_found(&id));
    }
    match spokes::confirm(&state.db, &id, &caller.actor(), &caller.fingerprint).await? {
        Confirmed::Done(spoke, conditions) => {
            tracing::info!(spoke = %id, key = %caller.fingerprint, "spoke confirmed it trusts the hub");
            Ok(axum::Json(SpokeDetail { spoke, conditions }))
        }
        Confirmed::Revoked(spoke) => Err(ApiError::Conflict {
            detail: format!("spoke {id} is revoked: it confirms nothing"),
            current: serde_json::to_value(&spoke).ok(),
        }),
        Confirmed::NotFound => Err(not_found(&id)),
    }
}

/// A spoke's transition log, oldest first (registration included).
#[utoipa::path(
    get, path = "/api/federation/spokes/{id}/history", tag = TAG,
    params(SpokePath),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Every state change of the spoke", body = [Transition]),
        KeyedErrors,
        (status = 404, description = "No such spoke", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn spoke_history(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Vec<Transition>>> {
    if !is_spoke_id(&id) {
        return Err(not_found(&id));
    }
    spokes::history(&state.db, &id)
        .await?
        .map(axum::Json)
        .ok_or_else(|| not_found(&id))
}

async fn act(
    state: AppState,
    caller: Caller,
    id: String,
    action: SpokeAction,
    request: Json<TransitionRequest>,
) -> ApiResult<axum::Json<SpokeEventData>> {
    caller.require(Role::Admin)?;
    let spec = request.check(|r| r.into_spec(action, &caller.fingerprint))?;
    transition(&state, &caller, &id, spec).await.map(axum::Json)
}

/// Carries out a checked lifecycle action for an admin `caller`: the one
/// path of the REST routes and the web UI's forms, so both leave the same
/// transition, audit row and event.
pub async fn transition(
    state: &AppState,
    caller: &Caller,
    id: &str,
    spec: TransitionSpec,
) -> ApiResult<SpokeEventData> {
    caller.require(Role::Admin)?;
    let action = spec.action;
    if !is_spoke_id(id) {
        return Err(not_found(id));
    }
    let hub = &state.settings.federation.hub_code;
    match spokes::transition(&state.db, id, &spec, hub, &caller.actor()).await? {
        TransitionOutcome::Done(data) => {
            tracing::info!(
                spoke = %id,
                action = action.as_str(),
                to = data.spoke.status.as_str(),
                actor = %spec.actor,
                key = %caller.fingerprint,
                "spoke transition"
            );
            Ok(data)
        }
        TransitionOutcome::NotAllowed(current) => Err(ApiError::Conflict {
            detail: format!(
                "cannot {} spoke {id}: it is {}; allowed: {}",
                action.as_str(),
                current.status.as_str(),
                allowed_from(current.status)
            ),
            current: serde_json::to_value(&current).ok(),
        }),
        TransitionOutcome::NotFound => Err(not_found(id)),
    }
}

fn allowed_from(status: SpokeStatus) -> String {
    let actions: Vec<&str> = SpokeAction::ALL
        .into_iter()
        .filter(|a| a.apply(status).is_some())
        .map(SpokeAction::as_str)
        .collect();
    if actions.is_empty() {
        "nothing (revoked is final; the spoke may register again)".into()
    } else {
        actions.join(", ")
    }
}

macro_rules! action_route {
    ($fn:ident, $action:expr, $path:literal, $summary:literal, $from:literal) => {
        #[doc = $summary]
        #[utoipa::path(
            post, path = $path, tag = TAG,
            params(SpokePath),
            request_body = TransitionRequest,
            security(("api_key" = [])),
            responses(
                (status = 200, description = "Done: the spoke's new state and the transition", body = SpokeEventData),
                BodyErrors,
                KeyedErrors,
                (status = 404, description = "No such spoke", body = Problem, content_type = "application/problem+json"),
                (status = 409, description = $from, body = Problem, content_type = "application/problem+json"),
            )
        )]
        pub async fn $fn(
            State(state): State<AppState>,
            caller: Caller,
            Path(id): Path<String>,
            request: Json<TransitionRequest>,
        ) -> ApiResult<axum::Json<SpokeEventData>> {
            act(state, caller, id, $action, request).await
        }
    };
}

action_route!(
    approve_spoke,
    SpokeAction::Approve,
    "/api/federation/spokes/{id}/approve",
    "Approve a pending spoke (admin): creates its two federation links in CREATING.",
    "The spoke is not pending; `current` holds it"
);
action_route!(
    suspend_spoke,
    SpokeAction::Suspend,
    "/api/federation/spokes/{id}/suspend",
    "Suspend an approved spoke (admin): its links become DISABLED.",
    "The spoke is not approved; `current` holds it"
);
action_route!(
    reinstate_spoke,
    SpokeAction::Reinstate,
    "/api/federation/spokes/{id}/reinstate",
    "Reinstate a suspended spoke (admin): approved again, links back to CREATING.",
    "The spoke is not suspended; `current` holds it"
);
action_route!(
    revoke_spoke,
    SpokeAction::Revoke,
    "/api/federation/spokes/{id}/revoke",
    "Revoke a spoke for good (admin): its links become DISABLED; it may register again as a new record.",
    "The spoke is already revoked; `current` holds it"
);

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LinkListParams {
    /// Only this spoke's links.
    #[param(schema_with = rules::spoke_id_schema)]
    pub spoke_id: Option<String>,
    /// Only links in this status.
    pub status: Option<LinkStatus>,
}

/// Federation links: status, retry count, last error, last verification.
#[utoipa::path(
    get, path = "/api/federation/links", tag = TAG,
    params(LinkListParams),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The matching links, by spoke then direction", body = [FederationLink]),
        KeyedErrors,
        QueryErrors,
    )
)]
pub async fn list_links(
    State(state): State<AppState>,
    _caller: Caller,
    Query(params): Query<LinkListParams>,
) -> ApiResult<axum::Json<Vec<FederationLink>>> {
    if let Some(id) = &params.spoke_id {
        if !is_spoke_id(id) {
            return Err(ApiError::validation(vec![FieldError::new(
                "spoke_id",
                rules::SPOKE_ID_MESSAGE,
            )]));
        }
    }
    let filter = LinkFilter {
        spoke_id: params.spoke_id,
        status: params.status,
    };
    Ok(axum::Json(links::list(&state.db, &filter).await?))
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("no spoke with id {id:?}"))
}
