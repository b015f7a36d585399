//! What every handler receives: one cheap handle on the service's
//! components (the crates.io shape: `AppState(Arc<App>)`, dereferencing to
//! [`App`]). Built by [`crate::app`]; it only holds, it does not compose.

use std::ops::Deref;
use std::sync::Arc;

use axum::extract::FromRef;
use sqlx::PgPool;

use crate::auth::{ApiKeys, LastUsed};
use crate::catalog_view::CatalogView;
use crate::config::Settings;
use crate::events::watch::EventFeed;
use crate::health::{DatabaseMonitor, Readiness};
use crate::identity::revocations::Revocations;
use crate::identity::Authority;
use crate::ingest::Sight;
use crate::metrics::gather::DbGauges;
use crate::metrics::Metrics;
use crate::nats::NatsConnection;

/// The running service's components, built once by [`crate::app`].
pub struct App {
    pub settings: Arc<Settings>,
    pub db: PgPool,
    pub metrics: Arc<Metrics>,
    pub keys: Arc<ApiKeys>,
    /// Hub credentials whose use was recorded lately.
    pub last_used: Arc<LastUsed>,
    /// The NATS authority, when `identity.dir` is set: issues hub creds.
    pub authority: Option<Arc<Authority>>,
    /// Pushes hub revocations to NATS (with an authority and NATS enabled).
    pub revocations: Option<Arc<Revocations>>,
    pub readiness: Arc<Readiness>,
    /// `None` when `nats.enabled` is false.
    pub nats: Option<Arc<NatsConnection>>,
    /// Federation sync: reconcile, drift, status (the worker runs only when
    /// `sync.enabled`).
    pub sync: Arc<crate::sync::SyncEngine>,
    /// Whether heartbeats can be seen, and since when.
    pub sight: Arc<Sight>,
    /// The catalog in memory, for the read routes.
    pub view: Arc<CatalogView>,
    /// Tenant routing in memory, for resolution.
    pub routing: Arc<crate::routing_view::RoutingView>,
    /// Follows the outbox for `/api/fed/watch` clients.
    pub events: Arc<EventFeed>,
    /// Whether the database answers, checked every second.
    pub db_health: Arc<DatabaseMonitor>,
    /// The `/metrics` gauges read from the database.
    pub db_gauges: Arc<DbGauges>,
}

impl FromRef<AppState> for Arc<ApiKeys> {
    fn from_ref(s: &AppState) -> Self {
        s.keys.clone()
    }
}

impl FromRef<AppState> for Arc<Metrics> {
    fn from_ref(s: &AppState) -> Self {
        s.metrics.clone()
    }
}

/// Shared by every handler and task; cloning it clones one `Arc`.
#[derive(Clone)]
pub struct AppState(pub Arc<App>);

impl Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.0
    }
}
