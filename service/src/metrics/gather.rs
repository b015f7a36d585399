//! The gauges derived from the database (outbox backlog, circuit breakers,
//! projects in maintenance, and projects by status when there is no catalog view), so they are exact
//! whichever replica made the change.
//!
//! They are gathered when `/metrics` is scraped, but at most once per
//! [`MIN_INTERVAL`]: between gatherings a scrape serves the last values, so
//! a flood of (unauthenticated) scrapes costs at most one round of queries
//! per interval. One gathering at a time: scrapes that arrive while one runs
//! wait for it (up to [`TIMEOUT`]) and serve its values.

use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::Metrics;
use crate::catalog_view::CatalogView;
use crate::sync::SyncEngine;

/// Values younger than this are served as they are.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Longest a scrape waits for a gathering; past it, the last values are
/// served.
pub const TIMEOUT: Duration = Duration::from_millis(500);

/// When the gauges were last gathered.
#[derive(Default)]
pub struct DbGauges {
    gathered: Mutex<Option<Instant>>,
}

/// What the gauges are read from.
pub struct Sources<'a> {
    pub db: &'a PgPool,
    pub view: &'a CatalogView,
    pub sync: &'a SyncEngine,
}

impl DbGauges {
    /// Gathers the gauges into `metrics` unless they are younger than
    /// [`MIN_INTERVAL`]; never waits longer than [`TIMEOUT`].
    pub async fn refresh(&self, from: Sources<'_>, metrics: &Metrics) {
        let deadline = Instant::now() + TIMEOUT;
        let Ok(mut gathered) = tokio::time::timeout_at(deadline, self.gathered.lock()).await else {
            tracing::debug!(
                "database gauges: a gathering is still running; serving the last values"
            );
            return;
        };
        if gathered.is_some_and(|at| at.elapsed() < MIN_INTERVAL) {
            return;
        }
        if tokio::time::timeout_at(deadline, gather(&from, metrics))
            .await
            .is_err()
        {
            tracing::debug!(
                "reading database gauges for /metrics timed out; serving the last values"
            );
        }
        *gathered = Some(Instant::now());
    }
}

async fn gather(from: &Sources<'_>, metrics: &Metrics) {
    // Without the catalog view, projects are counted in the database.
    if !from.view.enabled() {
        match crate::store::projects::count_by_status(from.db).await {
            Ok(counts) => metrics.catalog.set_counts(&counts),
            Err(e) => tracing::debug!(error = %e, "cannot count projects for /metrics"),
        }
    }
    match crate::store::maintenance::count_active(from.db).await {
        Ok(n) => {
            metrics.catalog.in_maintenance.set(n);
        }
        Err(e) => tracing::debug!(error = %e, "cannot count projects in maintenance for /metrics"),
    }
    // Another replica may have moved a breaker.
    if let Err(e) = from.sync.refresh_breaker_gauges().await {
        tracing::debug!(error = %e, "cannot read circuit breakers for /metrics");
    }
    match crate::events::log::pending(from.db).await {
        Ok((pending, oldest_s)) => {
            metrics.events.outbox_pending.set(pending);
            metrics.events.outbox_oldest_pending_seconds.set(oldest_s);
        }
        Err(e) => tracing::debug!(error = %e, "cannot count pending events for /metrics"),
    }
}
