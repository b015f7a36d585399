//! `/api/fed/routing/...`: tenant routing (issue 11). Nodes, rules and the
//! tenant map are an operator's (admin keys); resolution and bootstrap
//! metadata are for any valid key, hub tokens included. No answer carries a
//! database URL.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use utoipa::openapi::schema::Object;
use utoipa::IntoParams;
use uuid::Uuid;

use super::auth::{Caller, Role};
use super::created_or_not;
use super::error::{ApiError, ApiResult, BodyErrors, Problem, QueryErrors};
use super::extract::{Json, Query};
use crate::fed_routing::seal::{self, UrlSeal};
use crate::fed_routing::{
    self as domain, BootstrapFederation, BootstrapMetadata, NodeInput, Resolution, RoutingNode,
    RoutingRule, RuleInput, TenantInput, TenantMapping,
};
use crate::field_error::FieldError;
use crate::routing_view::{Held, Liveness};
use crate::state::AppState;
use crate::store::routing::{self as store, NodeDeletion, SealedUrl, UnknownNode};

pub const TAG: &str = "routing";

/// The `{node_id}` of a node route.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct NodePath {
    /// Node id
    #[param(schema_with = domain::node_id_schema)]
    pub node_id: String,
}

/// The `{tenant_id}` of a tenant route.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TenantPath {
    /// Tenant id
    #[param(schema_with = domain::tenant_schema)]
    pub tenant_id: String,
}

/// The `{id}` of a rule route.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct RulePath {
    /// Rule id
    #[param(schema_with = crate::rules::uuid_schema)]
    pub id: String,
}

/// What `GET /api/fed/routing/rules` may be filtered by.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RuleFilter {
    /// Only this tenant's rules.
    #[param(schema_with = domain::tenant_schema)]
    pub tenant: Option<String>,
}

/// `GET /api/fed/routing/resolve`'s parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ResolveParams {
    /// The tenant; without one, the default node (as a gateway routes a
    /// request that names no tenant).
    #[param(schema_with = domain::tenant_schema)]
    pub tenant: Option<String>,
    /// The region the request is in, if known.
    #[param(schema_with = domain::region_schema)]
    pub region: Option<String>,
    /// A session or user key: the same key gets the same node among
    /// weighted rules (absent: chosen at random, by weight).
    #[param(schema_with = key_schema)]
    pub key: Option<String>,
}

/// Longest `key`.
const MAX_KEY: usize = 256;

fn key_schema() -> Object {
    crate::rules::nonempty_string(MAX_KEY).build()
}

fn not_found(what: &str, id: &str) -> ApiError {
    ApiError::NotFound(format!("no routing {what} {id:?}"))
}

/// A reference to a node that does not exist: the body is well formed,
/// the state is not there yet (create the node first).
fn unknown_node(node_id: &str) -> ApiError {
    ApiError::Conflict {
        detail: format!(
            "no routing node {node_id:?}; create it first (PUT /api/fed/routing/nodes/{node_id})"
        ),
        current: None,
    }
}

fn seal(state: &AppState) -> Option<UrlSeal> {
    state.settings.routing.url_key_bytes().map(UrlSeal::new)
}

/// The routing tables held by this replica, read through once if needed.
async fn held(state: &AppState) -> ApiResult<std::sync::Arc<Held>> {
    Ok(state.routing.read(&state.db).await?)
}

/// After a change committed: this replica answers with it from now on
/// (others follow the tables' notification).
async fn changed(state: &AppState) -> ApiResult<()> {
    Ok(state.routing.reload(&state.db).await?)
}

/// Every node, by id, with its effective status.
#[utoipa::path(
    get, path = "/api/fed/routing/nodes", tag = TAG,
    responses(
        (status = 200, description = "Every node (the `default` node included)", body = [RoutingNode]),
    )
)]
pub async fn list_nodes(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<Vec<RoutingNode>>> {
    caller.require(Role::Admin)?;
    let held = held(&state).await?;
    let live = Liveness::of(&state.view, &state.db, &held).await?;
    Ok(axum::Json(
        held.rows
            .nodes
            .iter()
            .map(|n| live.judged(n.clone()))
            .collect(),
    ))
}

/// One node, with its effective status.
#[utoipa::path(
    get, path = "/api/fed/routing/nodes/{node_id}", tag = TAG,
    params(NodePath),
    responses(
        (status = 200, description = "The node", body = RoutingNode),
        (status = 404, description = "No such node", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_node(
    State(state): State<AppState>,
    caller: Caller,
    Path(node_id): Path<String>,
) -> ApiResult<axum::Json<RoutingNode>> {
    caller.require(Role::Admin)?;
    let held = held(&state).await?;
    let node = held
        .rows
        .nodes
        .iter()
        .find(|n| n.node_id == node_id)
        .ok_or_else(|| not_found("node", &node_id))?;
    let live = Liveness::of(&state.view, &state.db, &held).await?;
    Ok(axum::Json(live.judged(node.clone())))
}

/// Create or replace a node (201 / 200). `database_url` is write-only and
/// stored encrypted (`routing.url_key`); left out, the stored one is kept.
#[utoipa::path(
    put, path = "/api/fed/routing/nodes/{node_id}", tag = TAG,
    params(NodePath),
    request_body = NodeInput,
    responses(
        (status = 201, description = "Created", body = RoutingNode, headers(("Location" = String, description = "URL of the node"))),
        (status = 200, description = "Replaced", body = RoutingNode),
        BodyErrors,
        (status = 404, description = "Not a node id", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A `database_url` was given but this server has no `routing.url_key` to store it with", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn put_node(
    State(state): State<AppState>,
    caller: Caller,
    Path(node_id): Path<String>,
    input: Json<NodeInput>,
) -> ApiResult<Response> {
    caller.require(Role::Admin)?;
    if !domain::is_node_id(&node_id) {
        return Err(not_found("node", &node_id));
    }
    let seal = seal(&state);
    let spec = input.check(|i| i.into_spec(&node_id))?;
    if spec.database_url.is_some() && seal.is_none() {
        return Err(ApiError::Conflict {
            detail: "database_url cannot be stored: routing.url_key is not set on this server"
                .into(),
            current: None,
        });
    }
    let url = match (&spec.database_url, &seal) {
        (Some(url), Some(seal)) => Some(SealedUrl {
            sealed: seal.seal(&spec.node_id, url),
            host: seal::host_of(url).unwrap_or_default(),
            fingerprint: seal.fingerprint(url),
        }),
        _ => None,
    };
    let (node, created) = store::put_node(&state.db, &spec, url.as_ref(), &caller.actor()).await?;
    changed(&state).await?;
    tracing::info!(node = %node.node_id, created, key = %caller.fingerprint, "routing node set");
    let held = state.routing.current();
    let live = Liveness::of(&state.view, &state.db, &held).await?;
    let location = format!("/api/fed/routing/nodes/{}", node.node_id);
    Ok(created_or_not(created, location, live.judged(node)))
}

/// Delete a node. 409 for the `default` node and for a node that rules or
/// tenants still route to.
#[utoipa::path(
    delete, path = "/api/fed/routing/nodes/{node_id}", tag = TAG,
    params(NodePath),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such node", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The default node, or a node still in use", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_node(
    State(state): State<AppState>,
    caller: Caller,
    Path(node_id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Role::Admin)?;
    if !domain::is_node_id(&node_id) {
        return Err(not_found("node", &node_id));
    }
    match store::delete_node(&state.db, &node_id, &caller.actor()).await? {
        NodeDeletion::Deleted => {
            changed(&state).await?;
            tracing::info!(node = %node_id, key = %caller.fingerprint, "routing node deleted");
            Ok(StatusCode::NO_CONTENT)
        }
        NodeDeletion::NotFound => Err(not_found("node", &node_id)),
        NodeDeletion::Default => Err(ApiError::Conflict {
            detail: "the default node cannot be deleted".into(),
            current: None,
        }),
        NodeDeletion::InUse { rules, tenants } => Err(ApiError::Conflict {
            detail: format!(
                "{rules} rule(s) and {tenants} tenant(s) still route to node {node_id:?}; move them first"
            ),
            current: None,
        }),
    }
}

/// Every rule, by tenant, region and node; `tenant` keeps one tenant's.
#[utoipa::path(
    get, path = "/api/fed/routing/rules", tag = TAG,
    params(RuleFilter),
    responses(
        (status = 200, description = "The rules", body = [RoutingRule]),
        QueryErrors,
    )
)]
pub async fn list_rules(
    State(state): State<AppState>,
    caller: Caller,
    Query(filter): Query<RuleFilter>,
) -> ApiResult<axum::Json<Vec<RoutingRule>>> {
    caller.require(Role::Admin)?;
    if filter
        .tenant
        .as_deref()
        .is_some_and(|t| !domain::is_tenant(t))
    {
        return Err(ApiError::validation(vec![FieldError::new(
            "tenant",
            domain::TENANT_MESSAGE,
        )]));
    }
    let held = held(&state).await?;
    Ok(axum::Json(
        held.rows
            .rules
            .iter()
            .filter(|r| filter.tenant.as_ref().is_none_or(|t| *t == r.tenant_id))
            .cloned()
            .collect(),
    ))
}

/// Create a rule, or replace the one for the same tenant, region and node
/// (201 / 200).
#[utoipa::path(
    post, path = "/api/fed/routing/rules", tag = TAG,
    request_body = RuleInput,
    responses(
        (status = 201, description = "Created", body = RoutingRule, headers(("Location" = String, description = "URL of the rule"))),
        (status = 200, description = "Replaced", body = RoutingRule),
        BodyErrors,
        (status = 409, description = "No such node", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn put_rule(
    State(state): State<AppState>,
    caller: Caller,
    input: Json<RuleInput>,
) -> ApiResult<Response> {
    caller.require(Role::Admin)?;
    let spec = input.check(RuleInput::into_spec)?;
    let (rule, created) = store::put_rule(&state.db, &spec, &caller.actor())
        .await?
        .map_err(|UnknownNode| unknown_node(&spec.node_id))?;
    changed(&state).await?;
    tracing::info!(tenant = %rule.tenant_id, region = %rule.region, node = %rule.node_id, created, key = %caller.fingerprint, "routing rule set");
    let location = format!("/api/fed/routing/rules/{}", rule.id);
    Ok(created_or_not(created, location, rule))
}

/// One rule.
#[utoipa::path(
    get, path = "/api/fed/routing/rules/{id}", tag = TAG,
    params(RulePath),
    responses(
        (status = 200, description = "The rule", body = RoutingRule),
        (status = 404, description = "No such rule", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_rule(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<RoutingRule>> {
    caller.require(Role::Admin)?;
    let held = held(&state).await?;
    let parsed = Uuid::parse_str(&id).ok();
    held.rows
        .rules
        .iter()
        .find(|r| Some(r.id) == parsed)
        .cloned()
        .map(axum::Json)
        .ok_or_else(|| not_found("rule", &id))
}

/// Delete a rule.
#[utoipa::path(
    delete, path = "/api/fed/routing/rules/{id}", tag = TAG,
    params(RulePath),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such rule", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_rule(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Role::Admin)?;
    let parsed = Uuid::parse_str(&id).map_err(|_| not_found("rule", &id))?;
    store::delete_rule(&state.db, parsed, &caller.actor())
        .await?
        .ok_or_else(|| not_found("rule", &id))?;
    changed(&state).await?;
    tracing::info!(rule = %id, key = %caller.fingerprint, "routing rule deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// The tenant map: every tenant's primary node.
#[utoipa::path(
    get, path = "/api/fed/routing/tenants", tag = TAG,
    responses(
        (status = 200, description = "The tenant map, by tenant", body = [TenantMapping]),
    )
)]
pub async fn list_tenants(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<Vec<TenantMapping>>> {
    caller.require(Role::Admin)?;
    Ok(axum::Json(held(&state).await?.rows.tenants.clone()))
}

/// One tenant's entry in the map.
#[utoipa::path(
    get, path = "/api/fed/routing/tenants/{tenant_id}", tag = TAG,
    params(TenantPath),
    responses(
        (status = 200, description = "The tenant's primary node", body = TenantMapping),
        (status = 404, description = "The tenant is not in the map", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_tenant(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant_id): Path<String>,
) -> ApiResult<axum::Json<TenantMapping>> {
    caller.require(Role::Admin)?;
    mapping(&state, &tenant_id).await.map(axum::Json)
}

async fn mapping(state: &AppState, tenant_id: &str) -> ApiResult<TenantMapping> {
    held(state)
        .await?
        .rows
        .tenants
        .iter()
        .find(|t| t.tenant_id == tenant_id)
        .cloned()
        .ok_or_else(|| not_found("tenant", tenant_id))
}

/// Set a tenant's primary node (201 / 200).
#[utoipa::path(
    put, path = "/api/fed/routing/tenants/{tenant_id}", tag = TAG,
    params(TenantPath),
    request_body = TenantInput,
    responses(
        (status = 201, description = "Added to the map", body = TenantMapping, headers(("Location" = String, description = "URL of the entry"))),
        (status = 200, description = "Replaced", body = TenantMapping),
        BodyErrors,
        (status = 404, description = "Not a tenant id", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "No such node", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn put_tenant(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant_id): Path<String>,
    input: Json<TenantInput>,
) -> ApiResult<Response> {
    caller.require(Role::Admin)?;
    if !domain::is_tenant(&tenant_id) {
        return Err(not_found("tenant", &tenant_id));
    }
    let spec = input.check(|i| i.into_spec(&tenant_id))?;
    let (mapping, created) = store::put_tenant(&state.db, &spec, &caller.actor())
        .await?
        .map_err(|UnknownNode| unknown_node(&spec.primary_node_id))?;
    changed(&state).await?;
    tracing::info!(tenant = %mapping.tenant_id, node = %mapping.primary_node_id, created, key = %caller.fingerprint, "routing tenant set");
    let location = format!("/api/fed/routing/tenants/{}", mapping.tenant_id);
    Ok(created_or_not(created, location, mapping))
}

/// Remove a tenant from the map (it then resolves by its rules, or to the
/// default node).
#[utoipa::path(
    delete, path = "/api/fed/routing/tenants/{tenant_id}", tag = TAG,
    params(TenantPath),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "The tenant is not in the map", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_tenant(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant_id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Role::Admin)?;
    if !domain::is_tenant(&tenant_id) {
        return Err(not_found("tenant", &tenant_id));
    }
    store::delete_tenant(&state.db, &tenant_id, &caller.actor())
        .await?
        .ok_or_else(|| not_found("tenant", &tenant_id))?;
    changed(&state).await?;
    tracing::info!(tenant = %tenant_id, key = %caller.fingerprint, "routing tenant removed");
    Ok(StatusCode::NO_CONTENT)
}

/// The federation part of a tenant's bootstrap kit (any valid key, hub
/// tokens included).
#[utoipa::path(
    get, path = "/api/fed/routing/tenants/{tenant_id}/bootstrap", tag = TAG,
    params(TenantPath),
    responses(
        (status = 200, description = "`federation` as the kit's metadata.json carries it", body = BootstrapMetadata),
        (status = 404, description = "The tenant is not in the map", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn bootstrap(
    State(state): State<AppState>,
    Path(tenant_id): Path<String>,
) -> ApiResult<axum::Json<BootstrapMetadata>> {
    let m = mapping(&state, &tenant_id).await?;
    Ok(axum::Json(BootstrapMetadata {
        federation: BootstrapFederation {
            primary_node_id: m.primary_node_id,
            primary_region: m.primary_region,
            metadata: m.federation_metadata,
        },
    }))
}

/// Which node a tenant's request goes to, and why (any valid key, hub
/// tokens included). From memory, as fresh as the routing tables and the
/// hubs' liveness; never a URL.
#[utoipa::path(
    get, path = "/api/fed/routing/resolve", tag = TAG,
    params(ResolveParams),
    responses(
        (status = 200, description = "The node", body = Resolution),
        QueryErrors,
    )
)]
pub async fn resolve(
    State(state): State<AppState>,
    Query(params): Query<ResolveParams>,
) -> ApiResult<axum::Json<Resolution>> {
    let mut errors = Vec::new();
    if params
        .tenant
        .as_deref()
        .is_some_and(|t| !domain::is_tenant(t))
    {
        errors.push(FieldError::new("tenant", domain::TENANT_MESSAGE));
    }
    if params
        .region
        .as_deref()
        .is_some_and(|r| !domain::is_region(r))
    {
        errors.push(FieldError::new("region", domain::REGION_MESSAGE));
    }
    if params
        .key
        .as_deref()
        .is_some_and(|k| k.is_empty() || k.chars().count() > MAX_KEY)
    {
        errors.push(FieldError::new(
            "key",
            format!("must be 1 to {MAX_KEY} characters"),
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let held = held(&state).await?;
    let live = Liveness::of(&state.view, &state.db, &held).await?;
    let d = held.table.resolve_with(
        params.tenant.as_deref().unwrap_or(""),
        params.region.as_deref(),
        params.key.as_deref(),
        |n| live.status(n).usable(),
    );
    state.metrics.routing.decision(d.reason);
    Ok(axum::Json(Resolution {
        region: d.region.map(str::to_owned),
        node_id: d.node.node_id.clone(),
        node_region: d.node.region.clone(),
        reason: d.reason,
        tenant: params.tenant,
    }))
}
