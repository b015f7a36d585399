//! Prometheus metrics. Each concern owns a typed struct of its metrics with
//! the help text beside each; [`Metrics`] holds them and the registry.
//!
//! Labels carry only bounded values: never a slug, a key or a raw path.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::catalog::ProjectStatus;

/// What `/metrics` answers with.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Latency buckets for HTTP and database work, in seconds.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

pub fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

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
        let catalog = CatalogMetrics::register(&mut registry);
        let nats = crate::nats::NatsMetrics::register(&mut registry);
        let sync = crate::sync::metrics::SyncMetrics::register(&mut registry);
        let ingest = crate::ingest::IngestMetrics::register(&mut registry);
        let sweeper = crate::sweeper::SweeperMetrics::register(&mut registry);
        let events = EventMetrics::register(&mut registry);
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

pub struct HttpMetrics {
    pub requests: Family<HttpLabels, Counter>,
    pub duration: Family<RouteLabels, Histogram>,
}

impl HttpMetrics {
    fn register(registry: &mut Registry) -> Self {
        let requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, matched route and status",
            requests.clone(),
        );
        let duration = Family::<RouteLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by matched route",
            duration.clone(),
        );
        HttpMetrics { requests, duration }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum StatusValue {
    online,
    degraded,
    offline,
}

impl From<ProjectStatus> for StatusValue {
    fn from(s: ProjectStatus) -> Self {
        match s {
            ProjectStatus::Online => StatusValue::online,
            ProjectStatus::Degraded => StatusValue::degraded,
            ProjectStatus::Offline => StatusValue::offline,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: StatusValue,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransitionLabels {
    /// The new status.
    pub to: String,
    /// `heartbeat` (the hub said so or came back) or `sweeper` (silence).
    pub cause: &'static str,
}

pub struct CatalogMetrics {
    /// Set from the database at each scrape, so it is exact whichever
    /// replica changed what.
    pub projects_by_status: Family<StatusLabels, Gauge>,
    pub register: Counter,
    pub lookup: Counter,
    pub transitions: Family<TransitionLabels, Counter>,
}

impl CatalogMetrics {
    fn register(registry: &mut Registry) -> Self {
        let projects_by_status = Family::<StatusLabels, Gauge>::default();
        registry.register(
            "catalog_projects_by_status",
            "Projects in the catalog, by status",
            projects_by_status.clone(),
        );
        // Every status is present from the start, even at zero.
        for s in ProjectStatus::ALL {
            projects_by_status
                .get_or_create(&StatusLabels { status: s.into() })
                .set(0);
        }
        let register = Counter::default();
        registry.register(
            "catalog_register",
            "Projects registered or updated through the API or the seed file",
            register.clone(),
        );
        let lookup = Counter::default();
        registry.register(
            "catalog_lookup",
            "Catalog reads (list or get) answered",
            lookup.clone(),
        );
        let transitions = Family::<TransitionLabels, Counter>::default();
        registry.register(
            "project_status_transitions",
            "Project status changes, by new status and cause",
            transitions.clone(),
        );
        for to in ProjectStatus::ALL {
            for cause in ["heartbeat", "sweeper"] {
                let _ = transitions.get_or_create(&TransitionLabels {
                    to: to.as_str().to_owned(),
                    cause,
                });
            }
        }
        CatalogMetrics {
            projects_by_status,
            register,
            lookup,
            transitions,
        }
    }

    /// Counts a status change; `to` is one of the three statuses.
    pub fn transition(&self, to: &str, cause: &'static str) {
        if ProjectStatus::ALL.iter().any(|s| s.as_str() == to) {
            self.transitions
                .get_or_create(&TransitionLabels {
                    to: to.to_owned(),
                    cause,
                })
                .inc();
        }
    }

    pub fn set_counts(&self, counts: &[(ProjectStatus, i64)]) {
        for s in ProjectStatus::ALL {
            let n = counts
                .iter()
                .find(|(st, _)| *st == s)
                .map_or(0, |(_, n)| *n);
            self.projects_by_status
                .get_or_create(&StatusLabels { status: s.into() })
                .set(n);
        }
    }
}

/// The outbox, its relay to JetStream and the watch stream.
#[derive(Clone)]
pub struct EventMetrics {
    /// Set from the database at each scrape.
    pub outbox_pending: Gauge,
    /// Set from the database at each scrape.
    pub outbox_oldest_pending_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub publish: Counter,
    pub publish_duplicates: Counter,
    pub publish_failures: Counter,
    pub pruned: Counter,
    pub relay_leader: Gauge,
    pub watch_clients: Gauge,
}

impl EventMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = EventMetrics {
            outbox_pending: Gauge::default(),
            outbox_oldest_pending_seconds: Gauge::default(),
            publish: Counter::default(),
            publish_duplicates: Counter::default(),
            publish_failures: Counter::default(),
            pruned: Counter::default(),
            relay_leader: Gauge::default(),
            watch_clients: Gauge::default(),
        };
        registry.register(
            "outbox_pending",
            "Events committed to the outbox and not yet acknowledged by JetStream",
            m.outbox_pending.clone(),
        );
        registry.register(
            "outbox_oldest_pending_seconds",
            "Age of the oldest event not yet acknowledged by JetStream (0 when none)",
            m.outbox_oldest_pending_seconds.clone(),
        );
        registry.register(
            "nats_publish",
            "Events published to JetStream and acknowledged (duplicates included)",
            m.publish.clone(),
        );
        registry.register(
            "nats_publish_duplicates",
            "Publishes JetStream acknowledged as duplicates of an event it already had (re-publish after a crash)",
            m.publish_duplicates.clone(),
        );
        registry.register(
            "nats_publish_failures",
            "Publishes that failed or were not acknowledged in time; the event stays in the outbox",
            m.publish_failures.clone(),
        );
        registry.register(
            "outbox_pruned",
            "Published events deleted from the outbox after the retention period",
            m.pruned.clone(),
        );
        registry.register(
            "relay_leader",
            "1 while this replica is the elected outbox relay",
            m.relay_leader.clone(),
        );
        registry.register(
            "event_watch_clients",
            "Clients following /api/fed/watch right now",
            m.watch_clients.clone(),
        );
        m
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
