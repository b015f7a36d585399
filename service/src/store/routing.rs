//! Queries on the routing tables (`federation_nodes`, `federation_routing`,
//! `tenant_federation_map`, migration 0015). Each change records its
//! `routing.*` event and its audit row in its own transaction; the tables'
//! trigger tells every replica (channel `routing_changes`).

use chrono::{DateTime, Utc};
use protocol::events::{RoutingChange, RoutingChangeData};
use protocol::EventKind;
use serde::Serialize;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use super::audit::{self, Actor, AuditEntry};
use super::outbox;
use crate::fed_routing::{
    AdminStatus, NodeSpec, NodeStatus, RoutingNode, RoutingRule, RuleSpec, TenantMapping,
    TenantSpec, DEFAULT_NODE,
};

/// The routing tables, read in one snapshot.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// `routing_version`'s value: grows with every change.
    pub version: i64,
    pub nodes: Vec<RoutingNode>,
    pub rules: Vec<RoutingRule>,
    pub tenants: Vec<TenantMapping>,
}

/// A node's database URL, sealed, and what stands for it.
#[derive(Debug, Clone)]
pub struct SealedUrl {
    pub sealed: Vec<u8>,
    pub host: String,
    pub fingerprint: String,
}

struct NodeRow {
    node_id: String,
    region: String,
    hub: Option<String>,
    database_host: Option<String>,
    database_fingerprint: Option<String>,
    status: String,
    priority: i32,
    metadata: serde_json::Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<NodeRow> for RoutingNode {
    fn from(r: NodeRow) -> Self {
        let status = AdminStatus::parse(&r.status);
        RoutingNode {
            node_id: r.node_id,
            region: r.region,
            hub: r.hub,
            status,
            // The routing view judges the hub; the row alone knows this much.
            effective_status: match status {
                AdminStatus::Disabled => NodeStatus::Disabled,
                AdminStatus::Active => NodeStatus::Online,
            },
            priority: r.priority,
            database_host: r.database_host,
            database_fingerprint: r.database_fingerprint,
            metadata: r.metadata,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

pub async fn load(pool: &PgPool) -> Result<Loaded, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query!("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *tx)
        .await?;
    let version = sqlx::query_scalar!(
        r#"SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS "v!" FROM routing_version"#
    )
    .fetch_one(&mut *tx)
    .await?;
    let nodes = sqlx::query_as!(
        NodeRow,
        "SELECT node_id, region, hub, database_host, database_fingerprint, status, priority,
                metadata, created_at, updated_at
         FROM federation_nodes ORDER BY node_id"
    )
    .fetch_all(&mut *tx)
    .await?;
    let rules = sqlx::query_as!(
        RoutingRule,
        "SELECT id, tenant_id, region, node_id, is_primary, weight, created_at, updated_at
         FROM federation_routing ORDER BY tenant_id, region, node_id"
    )
    .fetch_all(&mut *tx)
    .await?;
    let tenants = sqlx::query_as!(
        TenantMapping,
        "SELECT tenant_id, primary_node_id, primary_region, federation_metadata, created_at, updated_at
         FROM tenant_federation_map ORDER BY tenant_id"
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Loaded {
        version,
        nodes: nodes.into_iter().map(RoutingNode::from).collect(),
        rules,
        tenants,
    })
}

/// The sealed URL of `node_id`, if it has one.
pub async fn sealed_url(pool: &PgPool, node_id: &str) -> Result<Option<Vec<u8>>, sqlx::Error> {
    Ok(sqlx::query_scalar!(
        "SELECT database_url_sealed FROM federation_nodes WHERE node_id = $1",
        node_id
    )
    .fetch_optional(pool)
    .await?
    .flatten())
}

/// Creates or replaces node `spec.node_id`; a `url` of `None` keeps the
/// stored one. The node, and whether it was created.
pub async fn put_node(
    pool: &PgPool,
    spec: &NodeSpec,
    url: Option<&SealedUrl>,
    actor: &Actor,
) -> Result<(RoutingNode, bool), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query!(
        r#"INSERT INTO federation_nodes
               (node_id, region, hub, database_url_sealed, database_host, database_fingerprint,
                status, priority, metadata)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
           ON CONFLICT (node_id) DO UPDATE SET
               region = EXCLUDED.region,
               hub = EXCLUDED.hub,
               database_url_sealed = COALESCE(EXCLUDED.database_url_sealed, federation_nodes.database_url_sealed),
               database_host = COALESCE(EXCLUDED.database_host, federation_nodes.database_host),
               database_fingerprint = COALESCE(EXCLUDED.database_fingerprint, federation_nodes.database_fingerprint),
               status = EXCLUDED.status,
               priority = EXCLUDED.priority,
               metadata = EXCLUDED.metadata,
               updated_at = now()
           RETURNING node_id, region, hub, database_host, database_fingerprint, status, priority,
                     metadata, created_at, updated_at, (xmax = 0) AS "created!""#,
        spec.node_id,
        spec.region,
        spec.hub,
        url.map(|u| u.sealed.as_slice()),
        url.map(|u| u.host.as_str()),
        url.map(|u| u.fingerprint.as_str()),
        spec.status.as_str(),
        spec.priority,
        spec.metadata,
    )
    .fetch_one(&mut *tx)
    .await?;
    let created = row.created;
    let node = RoutingNode::from(NodeRow {
        node_id: row.node_id,
        region: row.region,
        hub: row.hub,
        database_host: row.database_host,
        database_fingerprint: row.database_fingerprint,
        status: row.status,
        priority: row.priority,
        metadata: row.metadata,
        created_at: row.created_at,
        updated_at: row.updated_at,
    });
    let detail = url.map(|u| format!("database {} ({})", u.host, u.fingerprint));
    commit_change(
        tx,
        Change::set(EventKind::RoutingNodeChanged, &node.node_id, &node),
        actor,
        detail.as_deref(),
    )
    .await?;
    Ok((node, created))
}

/// What a node deletion found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeDeletion {
    Deleted,
    NotFound,
    /// The `default` node stays.
    Default,
    /// Rules or tenants still name it.
    InUse {
        rules: i64,
        tenants: i64,
    },
}

pub async fn delete_node(
    pool: &PgPool,
    node_id: &str,
    actor: &Actor,
) -> Result<NodeDeletion, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let found = sqlx::query_scalar!(
        "SELECT node_id FROM federation_nodes WHERE node_id = $1 FOR UPDATE",
        node_id
    )
    .fetch_optional(&mut *tx)
    .await?;
    if found.is_none() {
        return Ok(NodeDeletion::NotFound);
    }
    let target = audit::target("routing_node", node_id);
    if node_id == DEFAULT_NODE {
        let reason = "the default node cannot be deleted";
        let entry = AuditEntry::refused(actor, "routing.node.delete", target, reason);
        commit_refusal(tx, entry).await?;
        return Ok(NodeDeletion::Default);
    }
    let uses = sqlx::query!(
        r#"SELECT (SELECT count(*) FROM federation_routing WHERE node_id = $1) AS "rules!",
                  (SELECT count(*) FROM tenant_federation_map WHERE primary_node_id = $1) AS "tenants!""#,
        node_id
    )
    .fetch_one(&mut *tx)
    .await?;
    if uses.rules > 0 || uses.tenants > 0 {
        let reason = "rules or tenants still route to it";
        let entry = AuditEntry::refused(actor, "routing.node.delete", target, reason);
        commit_refusal(tx, entry).await?;
        return Ok(NodeDeletion::InUse {
            rules: uses.rules,
            tenants: uses.tenants,
        });
    }
    sqlx::query!("DELETE FROM federation_nodes WHERE node_id = $1", node_id)
        .execute(&mut *tx)
        .await?;
    commit_change(
        tx,
        Change::deleted(EventKind::RoutingNodeChanged, node_id),
        actor,
        None,
    )
    .await?;
    Ok(NodeDeletion::Deleted)
}

/// Names a node that does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownNode;

/// A statement's outcome, with a reference to a missing node told apart
/// (the only foreign keys of these tables name nodes).
fn or_unknown_node<T>(r: Result<T, sqlx::Error>) -> Result<Result<T, UnknownNode>, sqlx::Error> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(sqlx::Error::Database(d)) if d.is_foreign_key_violation() => Ok(Err(UnknownNode)),
        Err(e) => Err(e),
    }
}

/// Creates the rule for (tenant, region, node), or replaces it.
pub async fn put_rule(
    pool: &PgPool,
    spec: &RuleSpec,
    actor: &Actor,
) -> Result<Result<(RoutingRule, bool), UnknownNode>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query!(
        r#"INSERT INTO federation_routing (tenant_id, region, node_id, is_primary, weight)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (tenant_id, region, node_id) DO UPDATE SET
               is_primary = EXCLUDED.is_primary, weight = EXCLUDED.weight, updated_at = now()
           RETURNING id, tenant_id, region, node_id, is_primary, weight, created_at, updated_at,
                     (xmax = 0) AS "created!""#,
        spec.tenant_id,
        spec.region,
        spec.node_id,
        spec.is_primary,
        spec.weight,
    )
    .fetch_one(&mut *tx)
    .await;
    let Ok(row) = or_unknown_node(row)? else {
        return Ok(Err(UnknownNode));
    };
    let rule = RoutingRule {
        id: row.id,
        tenant_id: row.tenant_id,
        region: row.region,
        node_id: row.node_id,
        is_primary: row.is_primary,
        weight: row.weight,
        created_at: row.created_at,
        updated_at: row.updated_at,
    };
    let id = rule.id.to_string();
    commit_change(
        tx,
        Change::set(EventKind::RoutingRuleChanged, &id, &rule),
        actor,
        None,
    )
    .await?;
    Ok(Ok((rule, row.created)))
}

/// Deletes rule `id`; what it was.
pub async fn delete_rule(
    pool: &PgPool,
    id: Uuid,
    actor: &Actor,
) -> Result<Option<RoutingRule>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let rule = sqlx::query_as!(
        RoutingRule,
        "DELETE FROM federation_routing WHERE id = $1
         RETURNING id, tenant_id, region, node_id, is_primary, weight, created_at, updated_at",
        id
    )
    .fetch_optional(&mut *tx)
    .await?;
    if rule.is_some() {
        let id = id.to_string();
        commit_change(
            tx,
            Change::deleted(EventKind::RoutingRuleChanged, &id),
            actor,
            None,
        )
        .await?;
    }
    Ok(rule)
}

/// Sets `spec.tenant_id`'s primary node.
pub async fn put_tenant(
    pool: &PgPool,
    spec: &TenantSpec,
    actor: &Actor,
) -> Result<Result<(TenantMapping, bool), UnknownNode>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query!(
        r#"INSERT INTO tenant_federation_map (tenant_id, primary_node_id, primary_region, federation_metadata)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (tenant_id) DO UPDATE SET
               primary_node_id = EXCLUDED.primary_node_id,
               primary_region = EXCLUDED.primary_region,
               federation_metadata = EXCLUDED.federation_metadata,
               updated_at = now()
           RETURNING tenant_id, primary_node_id, primary_region, federation_metadata,
                     created_at, updated_at, (xmax = 0) AS "created!""#,
        spec.tenant_id,
        spec.primary_node_id,
        spec.primary_region,
        spec.federation_metadata,
    )
    .fetch_one(&mut *tx)
    .await;
    let Ok(row) = or_unknown_node(row)? else {
        return Ok(Err(UnknownNode));
    };
    let mapping = TenantMapping {
        tenant_id: row.tenant_id,
        primary_node_id: row.primary_node_id,
        primary_region: row.primary_region,
        federation_metadata: row.federation_metadata,
        created_at: row.created_at,
        updated_at: row.updated_at,
    };
    commit_change(
        tx,
        Change::set(
            EventKind::RoutingTenantChanged,
            &mapping.tenant_id,
            &mapping,
        ),
        actor,
        None,
    )
    .await?;
    Ok(Ok((mapping, row.created)))
}

/// Removes `tenant_id` from the map; what it was.
pub async fn delete_tenant(
    pool: &PgPool,
    tenant_id: &str,
    actor: &Actor,
) -> Result<Option<TenantMapping>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let mapping = sqlx::query_as!(
        TenantMapping,
        "DELETE FROM tenant_federation_map WHERE tenant_id = $1
         RETURNING tenant_id, primary_node_id, primary_region, federation_metadata, created_at, updated_at",
        tenant_id
    )
    .fetch_optional(&mut *tx)
    .await?;
    if mapping.is_some() {
        commit_change(
            tx,
            Change::deleted(EventKind::RoutingTenantChanged, tenant_id),
            actor,
            None,
        )
        .await?;
    }
    Ok(mapping)
}

/// One change, as its event and its audit row say it.
struct Change {
    kind: EventKind,
    data: RoutingChangeData,
}

impl Change {
    fn set(kind: EventKind, id: &str, after: &impl Serialize) -> Change {
        let mut after = serde_json::to_value(after).unwrap_or_default();
        // Judged at read time from the hub's liveness, not part of the change.
        if let Some(o) = after.as_object_mut() {
            o.remove("effective_status");
        }
        Change {
            kind,
            data: RoutingChangeData {
                change: RoutingChange::Set,
                id: id.to_owned(),
                after: Some(after),
            },
        }
    }

    fn deleted(kind: EventKind, id: &str) -> Change {
        Change {
            kind,
            data: RoutingChangeData {
                change: RoutingChange::Deleted,
                id: id.to_owned(),
                after: None,
            },
        }
    }
}

/// Records `change` in `tx` (its event and its audit row, with `detail`)
/// and commits.
async fn commit_change(
    mut tx: Transaction<'_, Postgres>,
    change: Change,
    actor: &Actor,
    detail: Option<&str>,
) -> Result<(), sqlx::Error> {
    let (action, kind) = match (change.kind, change.data.change) {
        (EventKind::RoutingNodeChanged, RoutingChange::Set) => ("routing.node.set", "routing_node"),
        (EventKind::RoutingNodeChanged, RoutingChange::Deleted) => {
            ("routing.node.delete", "routing_node")
        }
        (EventKind::RoutingRuleChanged, RoutingChange::Set) => ("routing.rule.set", "routing_rule"),
        (EventKind::RoutingRuleChanged, RoutingChange::Deleted) => {
            ("routing.rule.delete", "routing_rule")
        }
        (_, RoutingChange::Set) => ("routing.tenant.set", "routing_tenant"),
        (_, RoutingChange::Deleted) => ("routing.tenant.delete", "routing_tenant"),
    };
    outbox::enqueue(&mut tx, change.kind, Some(&change.data.id), &change.data).await?;
    let mut entry = AuditEntry::success(actor, action, audit::target(kind, &change.data.id));
    if let Some(d) = detail {
        entry = entry.with_detail(d);
    }
    audit::record(&mut tx, &entry).await?;
    tx.commit().await
}

/// Records a refused change in `tx` (its audit row) and commits.
async fn commit_refusal(
    mut tx: Transaction<'_, Postgres>,
    entry: AuditEntry<'_>,
) -> Result<(), sqlx::Error> {
    audit::record(&mut tx, &entry).await?;
    tx.commit().await
}
