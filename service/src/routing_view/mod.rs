//! Tenant routing in memory: the routing tables (a few rows) held by each
//! replica and resolved against the catalog view's liveness, so
//! `GET /api/fed/routing/resolve` never reads the database.
//!
//! Fresh without polling, the catalog view's way: the routing tables'
//! trigger notifies `routing_changes` after every statement (migration
//! 0015) and [`follow`] reloads them; the API reloads after its own writes
//! before answering. A node's liveness is read from the catalog view at
//! resolve time, so a hub marked offline by the sweeper is skipped by the
//! next resolution. [`publish`] puts the gateways' snapshot in NATS KV
//! whenever either changes.

pub mod publish;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::Utc;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use ::routing::{Node, NodeStatus, Snapshot, Table};

use crate::catalog::{Project, ProjectStatus};
use crate::catalog_view::CatalogView;
use crate::fed_routing::{AdminStatus, RoutingNode};
use crate::store;
use crate::store::routing::Loaded;

/// The channel migration 0015's trigger notifies.
pub const CHANNEL: &str = "routing_changes";

/// The routing tables as last read, and indexed.
pub struct Held {
    pub rows: Loaded,
    pub table: Table,
}

impl Held {
    fn new(rows: Loaded) -> Held {
        let table = Table::new(Snapshot {
            version: rows.version,
            nodes: rows.nodes.iter().map(RoutingNode::snapshot_node).collect(),
            rules: rows.rules.iter().map(|r| r.snapshot_rule()).collect(),
            tenants: rows.tenants.iter().map(|t| t.snapshot_entry()).collect(),
        });
        Held { rows, table }
    }
}

pub struct RoutingView {
    held: RwLock<Arc<Held>>,
    loaded: AtomicBool,
    /// One reload at a time: a read that began later replaces one that
    /// began earlier (which may have missed a change that committed between
    /// the two), never the other way round.
    reloading: tokio::sync::Mutex<()>,
    /// Bumped after each reload.
    changes: tokio::sync::watch::Sender<u64>,
}

impl RoutingView {
    pub fn new() -> Arc<Self> {
        Arc::new(RoutingView {
            held: RwLock::new(Arc::new(Held::new(Loaded::default()))),
            loaded: AtomicBool::new(false),
            reloading: tokio::sync::Mutex::new(()),
            changes: tokio::sync::watch::Sender::new(0),
        })
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// What is held now.
    pub fn current(&self) -> Arc<Held> {
        match self.held.read() {
            Ok(h) => h.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The routing tables as held, reading them first if they never were.
    pub async fn read(&self, pool: &PgPool) -> Result<Arc<Held>, sqlx::Error> {
        if !self.is_loaded() {
            self.reload(pool).await?;
        }
        Ok(self.current())
    }

    /// Reads the routing tables and holds what it read.
    pub async fn reload(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        let _one = self.reloading.lock().await;
        let fresh = Arc::new(Held::new(store::routing::load(pool).await?));
        if let Ok(mut held) = self.held.write() {
            *held = fresh;
        }
        self.loaded.store(true, Ordering::Release);
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
    }

    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

/// What a node's hub says of it.
fn judge(admin: NodeStatus, hub: Option<&str>, project: Option<Option<&Project>>) -> NodeStatus {
    if admin == NodeStatus::Disabled || hub.is_none() {
        return admin;
    }
    match project {
        // No catalog to ask: the row's own word.
        None => admin,
        Some(None) => NodeStatus::HubMissing,
        Some(Some(p)) if p.maintenance_at(Utc::now()).is_some() => NodeStatus::Maintenance,
        Some(Some(p)) => match p.status {
            ProjectStatus::Online => NodeStatus::Online,
            ProjectStatus::Degraded => NodeStatus::Degraded,
            ProjectStatus::Offline => NodeStatus::Offline,
        },
    }
}

/// The hubs' liveness: from the catalog view, or (when it is off or not
/// loaded yet) from the database.
pub enum Liveness<'a> {
    View(&'a CatalogView),
    Read(HashMap<String, Project>),
}

impl<'a> Liveness<'a> {
    pub async fn of(
        catalog: &'a CatalogView,
        pool: &PgPool,
        held: &Held,
    ) -> Result<Liveness<'a>, sqlx::Error> {
        if catalog.usable() {
            return Ok(Liveness::View(catalog));
        }
        let hubs: Vec<String> = held
            .rows
            .nodes
            .iter()
            .filter_map(|n| n.hub.clone())
            .collect();
        let rows = store::projects::list_by_slugs(pool, &hubs).await?;
        Ok(Liveness::Read(
            rows.into_iter().map(|p| (p.slug.clone(), p)).collect(),
        ))
    }

    /// The node's effective status.
    pub fn status(&self, node: &Node) -> NodeStatus {
        let hub = node.hub.as_deref();
        let Some(slug) = hub else {
            return node.status;
        };
        if node.status == NodeStatus::Disabled {
            return node.status;
        }
        match self {
            Liveness::View(v) => v
                .with_project(slug, |p| judge(node.status, hub, Some(p)))
                .unwrap_or(node.status),
            Liveness::Read(m) => judge(node.status, hub, Some(m.get(slug))),
        }
    }

    /// `node` with its effective status.
    pub fn judged(&self, mut node: RoutingNode) -> RoutingNode {
        if node.status == AdminStatus::Active {
            node.effective_status = self.status(&node.snapshot_node());
        }
        node
    }

    /// The gateways' snapshot: every node with its effective status.
    pub fn snapshot(&self, held: &Held) -> Snapshot {
        Snapshot {
            version: held.rows.version,
            nodes: held
                .table
                .nodes()
                .iter()
                .map(|n| Node {
                    status: self.status(n),
                    ..n.clone()
                })
                .collect(),
            rules: held.rows.rules.iter().map(|r| r.snapshot_rule()).collect(),
            tenants: held
                .rows
                .tenants
                .iter()
                .map(|t| t.snapshot_entry())
                .collect(),
        }
    }
}

/// Listens on [`CHANNEL`], then loads, then reloads after each
/// notification (those that arrive during a reload are covered by the next
/// one); after a lost connection it listens again and reloads. Until
/// `shutdown`.
pub async fn follow(view: Arc<RoutingView>, pool: PgPool, shutdown: CancellationToken) {
    let retry = common::retry::Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    'connect: loop {
        let mut backoff = retry.schedule();
        let mut listener = loop {
            match listen(&pool).await {
                Ok(l) => break l,
                Err(e) => {
                    tracing::debug!(error = %e, "routing change notifications: cannot listen yet")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff.next_delay()) => {}
                _ = shutdown.cancelled() => return,
            }
        };
        // Each pass reloads: first after listening, then after each
        // notification (those that arrive meanwhile are covered by the next).
        loop {
            if let Err(e) = view.reload(&pool).await {
                tracing::warn!(error = %e, "routing tables: reload failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = shutdown.cancelled() => return,
                }
            }
            let received = tokio::select! {
                r = listener.try_recv() => r,
                _ = shutdown.cancelled() => break 'connect,
            };
            if let Err(e) = received {
                tracing::warn!(error = %e, "lost the routing change notifications; listening again");
                continue 'connect;
            }
            // One reload covers every notification already here.
            while listener.next_buffered().is_some() {}
        }
    }
}

/// Listens on a connection of its own: a listener keeps its connection,
/// which would otherwise be one fewer for requests in the shared pool.
async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let own = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with(pool.connect_options().as_ref().clone());
    let mut listener = PgListener::connect_with(&own).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// The `reason` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

crate::instrument::metrics! {
    pub struct RoutingMetrics {
        /// Resolutions answered by GET /api/fed/routing/resolve, by reason (primary, region_rule, weighted, fallback_priority, default)
        pub resolutions: prometheus_client::metrics::family::Family<ReasonLabel, prometheus_client::metrics::counter::Counter> = "routing_resolutions",
    }
}

impl RoutingMetrics {
    pub fn decision(&self, reason: ::routing::Reason) {
        self.resolutions
            .get_or_create(&ReasonLabel {
                reason: reason.as_str().to_owned(),
            })
            .inc();
    }
}
