//! Prometheus metrics. Each concern owns a typed struct of its metrics with
//! the help text beside each; [`Metrics`] holds them and the registry.
//!
//! Labels carry only bounded values: never a slug, a key or a raw path.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::catalog::metrics::CatalogMetrics;
use crate::events::metrics::EventMetrics;
use crate::instrument::{latency_histogram, metrics};

pub mod gather;

/// What `/metrics` answers with.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub struct Metrics {
    registry: Registry,
    pub http: HttpMetrics,
    pub connections: crate::server::ConnectionMetrics,
    pub health: crate::health::HealthMetrics,
    pub catalog: CatalogMetrics,
    pub nats: crate::nats::NatsMetrics,
    pub sync: crate::sync::metrics::SyncMetrics,
    pub ingest: crate::ingest::IngestMetrics,
    pub sweeper: crate::sweeper::SweeperMetrics,
    pub events: EventMetrics,
    pub workers: crate::supervisor::WorkerMetrics,
    pub revocations: crate::identity::revocations::RevocationMetrics,
    pub routing: crate::routing_view::RoutingMetrics,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let build = Info::new(vec![(
            "version".to_owned(),
            env!("CARGO_PKG_VERSION").to_owned(),
        )]);
        registry.register("build", "Build of the running service", build);
        let http = HttpMetrics::register(&mut registry);
        let connections = crate::server::ConnectionMetrics::register(&mut registry);
        let health = crate::health::HealthMetrics::register(&mut registry);
        let catalog = CatalogMetrics::new(&mut registry);
        let nats = crate::nats::NatsMetrics::register(&mut registry);
        let sync = crate::sync::metrics::SyncMetrics::new(&mut registry);
        let ingest = crate::ingest::IngestMetrics::new(&mut registry);
        let sweeper = crate::sweeper::SweeperMetrics::register(&mut registry);
        let events = EventMetrics::register(&mut registry);
        let workers = crate::supervisor::WorkerMetrics::register(&mut registry);
        let revocations = crate::identity::revocations::RevocationMetrics::register(&mut registry);
        let routing = crate::routing_view::RoutingMetrics::register(&mut registry);
        Metrics {
            registry,
            http,
            connections,
            health,
            catalog,
            nats,
            sync,
            ingest,
            sweeper,
            events,
            workers,
            revocations,
            routing,
        }
    }

    /// The registry, for concerns that register their own metrics at start.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    /// The matched route template (`/api/fed/projects/{slug}`), or `unmatched`.
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

metrics! {
    pub struct HttpMetrics {
        /// HTTP requests answered, by method, matched route and status
        pub requests: Family<HttpLabels, Counter> = "http_requests",
        /// Time to answer an HTTP request, by matched route
        pub duration: Family<RouteLabels, Histogram, fn() -> Histogram> =
            "http_request_duration_seconds" => Family::new_with_constructor(latency_histogram),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_the_names_users_already_query() {
        let m = Metrics::new();
        m.catalog.register.inc();
        m.http
            .requests
            .get_or_create(&HttpLabels {
                method: "GET".into(),
                route: "/health".into(),
                status: 200,
            })
            .inc();
        m.http
            .duration
            .get_or_create(&RouteLabels {
                route: "/health".into(),
            })
            .observe(0.001);
        let text = m.encode();
        for needle in [
            "catalog_projects_by_status{status=\"online\"} 0",
            "catalog_projects_by_status{status=\"degraded\"} 0",
            "catalog_projects_by_status{status=\"offline\"} 0",
            "catalog_register_total 1",
            "catalog_lookup_total 0",
            "http_requests_total{method=\"GET\",route=\"/health\",status=\"200\"} 1",
            "http_request_duration_seconds_bucket{le=\"0.001\",route=\"/health\"} 1",
            "build_info{version=\"",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
