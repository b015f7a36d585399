//! `/api/federation`: spoke self-registration, the operator's lifecycle
//! actions, the transition log and the federation links.

use std::borrow::Cow;

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use super::auth::{Caller, Role};
use super::error::{ApiError, ApiResult, BodyErrors, Problem, QueryErrors};
use super::extract::{Json, Query};
use crate::conditions::SpokeDetail;
use crate::field_error::FieldError;
use crate::listing::{self, Listed, Listing, SortValue};
use crate::rules;
use crate::spoke::{
    is_spoke_id, Endpoints, FederationLink, LinkStatus, Spoke, SpokeAction, SpokeEventData,
    SpokeRegistration, SpokeStatus, Transition, TransitionRequest, TransitionSpec,
};
use crate::state::AppState;
use crate::store::audit::AuditEntry;
use crate::store::links::{self, LinkFilter};
use crate::store::revisions::{self, Decided, Proposed};
use crate::store::spokes::{self, Confirmed, Registered, TransitionOutcome};
use crate::sync::Trigger;

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
    responses(
        (status = 201, description = "Registered, pending approval", body = Spoke, headers(("Location" = String, description = "URL of the spoke"))),
        (status = 200, description = "Already registered with these attributes: the same record", body = Spoke),
        BodyErrors,
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
            Ok(super::created_or_not(true, location, s))
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
    responses(
        (status = 200, description = "The matching spokes (one page with `limit`)", body = [Spoke],
         headers(
            ("X-Total-Count" = u64, description = "Spokes matching the filters, in all pages"),
            ("Link" = String, description = "`<URL>; rel=\"next\"`: the next page, when there is one"),
         )),
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
    responses(
        (status = 200, description = "The spoke and its conditions", body = SpokeDetail),
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
    detail(&state, &id).await.map(axum::Json)
}

/// The spoke's detail as of one snapshot: the spoke, its conditions, its
/// links' retries and its latest revision at the same moment.
async fn detail(state: &AppState, id: &str) -> ApiResult<SpokeDetail> {
    let mut tx = crate::store::snapshot(&state.db).await?;
    let detail = spokes::detail(&mut tx, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    tx.commit().await?;
    Ok(detail)
}

/// The spoke confirms that it trusts the hub (its own credential only):
/// `SpokeTrustsHub` becomes True, and with it the SPOKE_TO_HUB link of an
/// approved spoke becomes ACTIVE. Confirming again changes nothing.
#[utoipa::path(
    post, path = "/api/federation/spokes/{id}/confirm", tag = TAG,
    params(SpokePath),
    responses(
        (status = 200, description = "Confirmed: the spoke and its conditions", body = SpokeDetail),
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
        Confirmed::Done(detail) => {
            tracing::info!(spoke = %id, key = %caller.fingerprint, "spoke confirmed it trusts the hub");
            Ok(axum::Json(*detail))
        }
        Confirmed::Revoked(spoke) => Err(revoked(&spoke, "it confirms nothing")),
        Confirmed::NotFound => Err(not_found(&id)),
    }
}

/// A spoke's transition log, oldest first (registration included).
#[utoipa::path(
    get, path = "/api/federation/spokes/{id}/history", tag = TAG,
    params(SpokePath),
    responses(
        (status = 200, description = "Every state change of the spoke", body = [Transition]),
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

/// The most recent steps served by `GET .../steps`.
pub const MAX_STEPS: i64 = 500;

/// A spoke's onboarding record, oldest first: every change of its
/// conditions, so the steps taken, failed and (after a suspension or
/// revocation) undone, in the order they happened; the 500 most recent.
#[utoipa::path(
    get, path = "/api/federation/spokes/{id}/steps", tag = TAG,
    params(SpokePath),
    responses(
        (status = 200, description = "The spoke's steps, oldest first", body = [crate::conditions::Step]),
        (status = 404, description = "No such spoke", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn spoke_steps(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Vec<crate::conditions::Step>>> {
    if !is_spoke_id(&id) {
        return Err(not_found(&id));
    }
    let mut tx = crate::store::snapshot(&state.db).await?;
    if spokes::get(&mut *tx, &id).await?.is_none() {
        return Err(not_found(&id));
    }
    let steps = crate::store::conditions::steps(&mut *tx, &id, MAX_STEPS).await?;
    tx.commit().await?;
    Ok(axum::Json(steps))
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

/// A `POST` route on one spoke whose body is a reason (and an operator),
/// answered with `$body`: a lifecycle action, or a decision on a revision.
macro_rules! reasoned_route {
    ($fn:ident, $path:literal, $summary:literal, $done:literal, $body:ident, $conflict:literal,
     $handler:ident($arg:expr)) => {
        #[doc = $summary]
        #[utoipa::path(
            post, path = $path, tag = TAG,
            params(SpokePath),
            request_body = TransitionRequest,
            responses(
                (status = 200, description = $done, body = $body),
                BodyErrors,
                (status = 404, description = "No such spoke", body = Problem, content_type = "application/problem+json"),
                (status = 409, description = $conflict, body = Problem, content_type = "application/problem+json"),
            )
        )]
        pub async fn $fn(
            State(state): State<AppState>,
            caller: Caller,
            Path(id): Path<String>,
            request: Json<TransitionRequest>,
        ) -> ApiResult<axum::Json<$body>> {
            $handler(state, caller, id, $arg, request).await
        }
    };
}

macro_rules! action_route {
    ($fn:ident, $action:expr, $path:literal, $summary:literal, $from:literal) => {
        reasoned_route!(
            $fn,
            $path,
            $summary,
            "Done: the spoke's new state and the transition",
            SpokeEventData,
            $from,
            act($action)
        );
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

/// Ask for new endpoints (update in place): base URL, IdP URLs,
/// certificate fingerprint. The spoke's own token, or an admin key. The
/// change waits as a pending revision for an admin while the approved
/// configuration stays live; a newer request supersedes it.
#[utoipa::path(
    post, path = "/api/federation/spokes/{id}/revision", tag = TAG,
    params(SpokePath),
    request_body = Endpoints,
    responses(
        (status = 202, description = "A revision waits for an admin: the spoke, its conditions and the revision", body = SpokeDetail),
        (status = 200, description = "These are the live endpoints: nothing to change (an open revision is superseded)", body = SpokeDetail),
        BodyErrors,
        (status = 404, description = "No such spoke", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The spoke is revoked; `current` holds it", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn propose_revision(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    input: Json<Endpoints>,
) -> ApiResult<Response> {
    if caller.spoke.is_some() {
        caller.require_spoke(&id)?;
    } else {
        caller.require(Role::Admin)?;
    }
    if !is_spoke_id(&id) {
        return Err(not_found(&id));
    }
    let wanted = input.check(Endpoints::checked)?;
    let status = match revisions::propose(&state.db, &id, &wanted, &caller.actor()).await? {
        Proposed::Created(r) => {
            tracing::info!(spoke = %id, revision = r.id, key = %caller.fingerprint, "spoke revision proposed, pending approval");
            StatusCode::ACCEPTED
        }
        Proposed::Unchanged(_) => StatusCode::OK,
        Proposed::Revoked(spoke) => return Err(revoked(&spoke, "it changes nothing")),
        Proposed::NotFound => return Err(not_found(&id)),
    };
    Ok((status, axum::Json(detail(&state, &id).await?)).into_response())
}

async fn decide(
    state: AppState,
    caller: Caller,
    id: String,
    approve: bool,
    request: Json<TransitionRequest>,
) -> ApiResult<axum::Json<SpokeDetail>> {
    caller.require(Role::Admin)?;
    // The lifecycle action is only a label here: the checks are the same.
    let spec = request.check(|r| r.into_spec(SpokeAction::Approve, &caller.fingerprint))?;
    if !is_spoke_id(&id) {
        return Err(not_found(&id));
    }
    let actor = caller.actor();
    match revisions::decide(&state.db, &id, approve, &spec.reason, &spec.actor, &actor).await? {
        Decided::Done(r, _) => {
            tracing::info!(spoke = %id, revision = r.id, state = r.state.as_str(), actor = %spec.actor, key = %caller.fingerprint, "spoke revision decided");
            detail(&state, &id).await.map(axum::Json)
        }
        Decided::NothingPending(spoke) => Err(ApiError::Conflict {
            detail: format!("spoke {id} has no revision waiting for a decision"),
            current: serde_json::to_value(&spoke).ok(),
        }),
        Decided::NotFound => Err(not_found(&id)),
    }
}

macro_rules! decision_route {
    ($fn:ident, $approve:expr, $path:literal, $summary:literal) => {
        reasoned_route!(
            $fn,
            $path,
            $summary,
            "Decided: the spoke, its conditions and the revision",
            SpokeDetail,
            "No revision of the spoke waits for a decision; `current` holds the spoke",
            decide($approve)
        );
    };
}

decision_route!(
    approve_revision,
    true,
    "/api/federation/spokes/{id}/revision/approve",
    "Approve a spoke's pending revision (admin). An approved spoke's revision rolls out once the reconciler has verified the new IdP (discovery, issuer, JWKS); the managed IdP is updated in place, never deleted, so logins go on. A pending or suspended spoke's applies at once."
);
decision_route!(
    reject_revision,
    false,
    "/api/federation/spokes/{id}/revision/reject",
    "Reject a spoke's pending revision (admin): the approved configuration stays."
);

/// Audit action of a retry.
pub const RETRY_ACTION: &str = "spoke.retry";

/// Retry an approved spoke's onboarding now (admin): one reconcile run,
/// then the spoke as it left it (`onboarding` says where it stands or
/// stopped). The reconciler also retries by itself, with backoff.
#[utoipa::path(
    post, path = "/api/federation/spokes/{id}/retry", tag = TAG,
    params(SpokePath),
    responses(
        (status = 200, description = "The run is done: the spoke, its conditions and where its onboarding stands", body = SpokeDetail),
        (status = 404, description = "No such spoke", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The spoke is not approved: nothing to retry; `current` holds it", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn retry_spoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<SpokeDetail>> {
    caller.require(Role::Admin)?;
    if !is_spoke_id(&id) {
        return Err(not_found(&id));
    }
    let spoke = spokes::get(&state.db, &id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    let target = crate::store::audit::target("spoke", &id);
    let actor = caller.actor();
    if spoke.status != SpokeStatus::Approved {
        let why = format!("the spoke is {}", spoke.status.as_str());
        let entry = AuditEntry::refused(&actor, RETRY_ACTION, target, &why);
        crate::store::audit::record_alone(&state.db, &entry).await?;
        return Err(ApiError::Conflict {
            detail: format!(
                "spoke {id} is {}: only an approved spoke's onboarding is retried",
                spoke.status.as_str()
            ),
            current: serde_json::to_value(&spoke).ok(),
        });
    }
    // Audited before it runs: the run spans many transactions.
    let entry = AuditEntry::success(&actor, RETRY_ACTION, target);
    crate::store::audit::record_alone(&state.db, &entry).await?;
    tracing::info!(spoke = %id, key = %caller.fingerprint, "onboarding retry requested");
    state.sync.reconcile(Trigger::Manual).await?;
    detail(&state, &id).await.map(axum::Json)
}

fn revoked(spoke: &Spoke, what: &str) -> ApiError {
    ApiError::Conflict {
        detail: format!("spoke {} is revoked: {what}", spoke.id),
        current: serde_json::to_value(spoke).ok(),
    }
}

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
    responses(
        (status = 200, description = "The matching links, by spoke then direction", body = [FederationLink]),
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

/// 404 for a spoke id that names no spoke.
pub(super) fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("no spoke with id {id:?}"))
}
