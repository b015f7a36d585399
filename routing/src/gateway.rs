//! For Rust gateways (feature `gateway`): follow the control plane's
//! snapshot in NATS KV, resolve locally (so routing keeps working while the
//! control plane is down), and hand each request its tenant's database
//! pool through a tower [`Layer`](tower::Layer) for axum.
//!
//! Database URLs come from the gateway's own settings (node id → URL), never
//! from the control plane: the snapshot carries none, and a gateway that
//! could fetch every node's credentials would be the one place to steal
//! them all from (see docs/decisions.md, "Gateways know their own database
//! URLs").

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{FromRequestParts, RawPathParams, Request};
use futures::StreamExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use crate::{Reason, Snapshot, Table, KV_KEY};

/// What the layer puts in each request's extensions.
#[derive(Clone, Debug)]
pub struct TenantDb {
    pub pool: PgPool,
    /// The node whose database `pool` is (`default` for the default pool).
    pub node_id: String,
    pub tenant: Option<String>,
    pub region: Option<String>,
    pub reason: Reason,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

/// Resolves tenants to pools over the latest snapshot.
pub struct TenantRouter {
    table: RwLock<Arc<Table>>,
    urls: HashMap<String, SecretString>,
    default_pool: PgPool,
    pools: Mutex<HashMap<String, PgPool>>,
    /// Nodes whose database did not answer the last health check.
    unhealthy: RwLock<std::collections::HashSet<String>>,
    max_connections: u32,
    decisions: Family<ReasonLabel, Counter>,
}

impl TenantRouter {
    /// `urls`: node id → database URL, from the gateway's own settings.
    /// `routing_decisions_total{reason}` is registered in `registry`.
    pub fn new(
        urls: HashMap<String, SecretString>,
        default_pool: PgPool,
        registry: &mut Registry,
    ) -> Arc<Self> {
        let decisions = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "routing_decisions",
            "Requests routed, by reason (primary, region_rule, weighted, fallback_priority, default)",
            decisions.clone(),
        );
        Arc::new(TenantRouter {
            table: RwLock::new(Arc::new(Table::new(Snapshot::default()))),
            urls,
            default_pool,
            pools: Mutex::new(HashMap::new()),
            unhealthy: RwLock::new(Default::default()),
            max_connections: 5,
            decisions,
        })
    }

    /// The snapshot version resolved against.
    pub fn version(&self) -> i64 {
        self.table().version()
    }

    fn table(&self) -> Arc<Table> {
        match self.table.read() {
            Ok(t) => t.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Takes a snapshot in; pools of nodes no longer in it are closed.
    pub fn apply(&self, snapshot: Snapshot) {
        let table = Arc::new(Table::new(snapshot));
        let gone: Vec<PgPool> = match self.pools.lock() {
            Ok(mut pools) => {
                let ids: Vec<String> = pools
                    .keys()
                    .filter(|id| table.node(id).is_none())
                    .cloned()
                    .collect();
                ids.iter().filter_map(|id| pools.remove(id)).collect()
            }
            Err(_) => Vec::new(),
        };
        if let Ok(mut t) = self.table.write() {
            *t = table;
        }
        for pool in gone {
            tokio::spawn(async move { pool.close().await });
        }
    }

    /// The pool of `node_id`, created on first use (`None`: no URL for it
    /// in this gateway's settings).
    fn pool(&self, node_id: &str) -> Option<PgPool> {
        let url = self.urls.get(node_id)?;
        let mut pools = self.pools.lock().ok()?;
        if let Some(p) = pools.get(node_id) {
            return Some(p.clone());
        }
        let pool = PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy(url.expose_secret())
            .ok()?;
        pools.insert(node_id.to_owned(), pool.clone());
        Some(pool)
    }

    /// Resolves and picks the pool; the default pool (reason `default`)
    /// when the tenant is unknown, the node has no URL here, or its
    /// database failed its last health check.
    pub fn route(&self, tenant: Option<&str>, region: Option<&str>, key: Option<&str>) -> TenantDb {
        let table = self.table();
        let unhealthy = self.unhealthy.read().map(|u| u.clone()).unwrap_or_default();
        let routed = tenant.map(|t| {
            let d = table.resolve_with(t, region, key.or(Some(t)), |n| {
                n.status.usable() && !unhealthy.contains(&n.node_id)
            });
            (d.node.node_id.clone(), d.reason)
        });
        let (node_id, mut reason) = routed.unwrap_or((crate::DEFAULT_NODE.into(), Reason::Default));
        let pool = if reason == Reason::Default {
            None
        } else {
            self.pool(&node_id)
        };
        let (pool, node_id) = match pool {
            Some(p) => (p, node_id),
            None => {
                if reason != Reason::Default {
                    tracing::warn!(node = %node_id, tenant = tenant.unwrap_or(""), "no database URL for this node in the gateway's settings; using the default database");
                    reason = Reason::Default;
                } else {
                    tracing::info!(
                        tenant = tenant.unwrap_or(""),
                        "routed to the default database"
                    );
                }
                (self.default_pool.clone(), crate::DEFAULT_NODE.to_owned())
            }
        };
        self.decisions
            .get_or_create(&ReasonLabel {
                reason: reason.as_str().to_owned(),
            })
            .inc();
        TenantDb {
            pool,
            node_id,
            tenant: tenant.map(str::to_owned),
            region: region.map(str::to_owned),
            reason,
        }
    }

    /// Pings every open pool once; a node whose database does not answer
    /// within `timeout` is skipped until it does.
    pub async fn check_health(&self, timeout: Duration) {
        let pools: Vec<(String, PgPool)> = match self.pools.lock() {
            Ok(p) => p.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            Err(_) => return,
        };
        for (id, pool) in pools {
            let ok = tokio::time::timeout(timeout, sqlx::query("SELECT 1").execute(&pool))
                .await
                .is_ok_and(|r| r.is_ok());
            if let Ok(mut u) = self.unhealthy.write() {
                let changed = if ok {
                    u.remove(&id)
                } else {
                    u.insert(id.clone())
                };
                if changed {
                    tracing::warn!(node = %id, healthy = ok, "node database health changed");
                }
            }
        }
    }

    /// Follows the snapshot in `bucket` until the stream ends (the
    /// connection closed), and checks pools every `health_every`.
    pub async fn follow(
        self: Arc<Self>,
        client: async_nats::Client,
        bucket: &str,
        health_every: Duration,
    ) -> Result<(), async_nats::Error> {
        let js = async_nats::jetstream::new(client);
        let kv = js.get_key_value(bucket).await?;
        let mut watch = kv.watch_with_history(KV_KEY).await?;
        let mut ticks = tokio::time::interval(health_every);
        loop {
            tokio::select! {
                entry = watch.next() => {
                    let Some(entry) = entry else { return Ok(()) };
                    let entry = entry?;
                    match serde_json::from_slice::<Snapshot>(&entry.value) {
                        Ok(s) => {
                            tracing::debug!(version = s.version, "routing snapshot");
                            self.apply(s);
                        }
                        Err(e) => tracing::warn!(error = %e, "unreadable routing snapshot; keeping the last one"),
                    }
                }
                _ = ticks.tick() => self.check_health(Duration::from_secs(2)).await,
            }
        }
    }
}

/// The layer: routes each request by tenant and region.
#[derive(Clone)]
pub struct TenantRoutingLayer {
    router: Arc<TenantRouter>,
}

impl TenantRoutingLayer {
    pub fn new(router: Arc<TenantRouter>) -> Self {
        TenantRoutingLayer { router }
    }
}

impl<S> tower::Layer<S> for TenantRoutingLayer {
    type Service = TenantRouting<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TenantRouting {
            inner,
            router: self.router.clone(),
        }
    }
}

#[derive(Clone)]
pub struct TenantRouting<S> {
    inner: S,
    router: Arc<TenantRouter>,
}

/// Path parameters that name the tenant.
const TENANT_PARAMS: [&str; 3] = ["tenant_id", "tenantId", "tenant"];

fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

fn header_value(parts: &http::request::Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .filter(|v| !v.is_empty())
}

impl<S> tower::Service<Request> for TenantRouting<S>
where
    S: tower::Service<Request> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // The clone that was made ready is the one called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let router = self.router.clone();
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            // As the seed: URL parameter, then query, then X-Tenant-ID.
            let from_path = RawPathParams::from_request_parts(&mut parts, &())
                .await
                .ok()
                .and_then(|params| {
                    params
                        .iter()
                        .find(|(k, _)| TENANT_PARAMS.contains(k))
                        .map(|(_, v)| v.to_owned())
                });
            let query = parts.uri.query();
            let tenant = from_path
                .or_else(|| query_value(query, "tenant"))
                .or_else(|| header_value(&parts, "x-tenant-id"));
            let region = query_value(query, "region").or_else(|| header_value(&parts, "x-region"));
            let routed = router.route(tenant.as_deref(), region.as_deref(), None);
            parts.extensions.insert(routed);
            inner.call(Request::from_parts(parts, body)).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_decoded() {
        assert_eq!(
            query_value(Some("a=1&tenant=ac%20me&region=eu"), "tenant").as_deref(),
            Some("ac me")
        );
        assert_eq!(query_value(Some("tenant="), "tenant"), None);
        assert_eq!(query_value(None, "tenant"), None);
    }
}
