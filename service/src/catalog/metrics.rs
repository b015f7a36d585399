//! The catalog's metrics: projects by status, registrations, reads and
//! status transitions by cause.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::ProjectStatus;
use crate::instrument::metrics;

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

metrics! {
    pub struct CatalogMetrics {
        /// Projects in the catalog, by status
        pub projects_by_status: Family<StatusLabels, Gauge> = "catalog_projects_by_status",
        /// Projects in a maintenance window (not judged by the stale sweeper)
        pub in_maintenance: Gauge = "catalog_projects_in_maintenance",
        /// Projects registered or updated through the API or the seed file
        pub register: Counter = "catalog_register",
        /// Catalog reads (list or get) answered
        pub lookup: Counter = "catalog_lookup",
        /// Project status changes, by new status and cause
        pub transitions: Family<TransitionLabels, Counter> = "project_status_transitions",
    }
}

impl CatalogMetrics {
    /// Registers them, every status and cause present from the start at 0.
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self::register(registry);
        for s in ProjectStatus::ALL {
            m.projects_by_status
                .get_or_create(&StatusLabels { status: s.into() })
                .set(0);
            for cause in ["heartbeat", "sweeper"] {
                let _ = m.transitions.get_or_create(&TransitionLabels {
                    to: s.as_str().to_owned(),
                    cause,
                });
            }
        }
        m
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
