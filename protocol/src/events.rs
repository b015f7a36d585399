//! Federation events: what changed, carried as CloudEvents 1.0 structured JSON
//! on `fed.events.<entity>.<change>`.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::subjects::EVENTS_PREFIX;

/// CloudEvents spec version we emit.
pub const SPEC_VERSION: &str = "1.0";
/// Default `source` attribute.
pub const DEFAULT_SOURCE: &str = "urn:federation:catalog";

/// Every kind of change the control plane announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    ProjectRegistered,
    ProjectUpdated,
    ProjectDeleted,
    ProjectStatusChanged,
    ProjectMaintenance,
    ProjectDeregistered,
    SpokeRegistered,
    SpokeApproved,
    SpokeSuspended,
    SpokeReinstated,
    SpokeRevoked,
    /// A spoke revision (update in place) was proposed, decided or rolled out.
    SpokeRevision,
    RoutingNodeChanged,
    RoutingRuleChanged,
    RoutingTenantChanged,
}

impl EventKind {
    pub const ALL: [EventKind; 15] = [
        EventKind::ProjectRegistered,
        EventKind::ProjectUpdated,
        EventKind::ProjectDeleted,
        EventKind::ProjectStatusChanged,
        EventKind::ProjectMaintenance,
        EventKind::ProjectDeregistered,
        EventKind::SpokeRegistered,
        EventKind::SpokeApproved,
        EventKind::SpokeSuspended,
        EventKind::SpokeReinstated,
        EventKind::SpokeRevoked,
        EventKind::SpokeRevision,
        EventKind::RoutingNodeChanged,
        EventKind::RoutingRuleChanged,
        EventKind::RoutingTenantChanged,
    ];

    /// `<entity>.<change>`: the tail shared by the CloudEvents type and the subject.
    fn tail(self) -> &'static str {
        match self {
            EventKind::ProjectRegistered => "project.registered",
            EventKind::ProjectUpdated => "project.updated",
            EventKind::ProjectDeleted => "project.deleted",
            EventKind::ProjectStatusChanged => "project.status",
            EventKind::ProjectMaintenance => "project.maintenance",
            EventKind::ProjectDeregistered => "project.deregistered",
            EventKind::SpokeRegistered => "spoke.registered",
            EventKind::SpokeApproved => "spoke.approved",
            EventKind::SpokeSuspended => "spoke.suspended",
            EventKind::SpokeReinstated => "spoke.reinstated",
            EventKind::SpokeRevoked => "spoke.revoked",
            EventKind::SpokeRevision => "spoke.revision",
            EventKind::RoutingNodeChanged => "routing.node",
            EventKind::RoutingRuleChanged => "routing.rule",
            EventKind::RoutingTenantChanged => "routing.tenant",
        }
    }

    /// The CloudEvents `type`, e.g. `federation.spoke.approved`.
    pub fn type_name(self) -> String {
        format!("federation.{}", self.tail())
    }

    /// The NATS subject, e.g. `fed.events.spoke.approved`.
    pub fn subject(self) -> String {
        format!("{EVENTS_PREFIX}.{}", self.tail())
    }

    /// The kind named by a CloudEvents `type`.
    pub fn from_type_name(name: &str) -> Option<Self> {
        let tail = name.strip_prefix("federation.")?;
        Self::ALL.into_iter().find(|k| k.tail() == tail)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tail())
    }
}

/// A CloudEvents 1.0 event in structured JSON mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent<T = serde_json::Value> {
    pub specversion: String,
    pub id: String,
    pub source: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub time: DateTime<Utc>,
    /// What the event is about: a project slug or a spoke id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub datacontenttype: String,
    pub data: T,
}

impl<T> CloudEvent<T> {
    pub fn new(
        kind: EventKind,
        id: impl Into<String>,
        source: impl Into<String>,
        time: DateTime<Utc>,
        subject: Option<String>,
        data: T,
    ) -> Self {
        CloudEvent {
            specversion: SPEC_VERSION.to_owned(),
            id: id.into(),
            source: source.into(),
            event_type: kind.type_name(),
            time,
            subject,
            datacontenttype: "application/json".to_owned(),
            data,
        }
    }

    /// The kind, when the type is one of ours.
    pub fn kind(&self) -> Option<EventKind> {
        EventKind::from_type_name(&self.event_type)
    }
}

/// What changed a project's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusCause {
    /// The hub's own heartbeat reported it.
    Heartbeat,
    /// The stale sweeper marked a silent hub.
    Sweeper,
}

/// The `data` of a `project.status` event ([`EventKind::ProjectStatusChanged`]).
///
/// The service writes it in the statement that records the change, through
/// the database function `project_status_data` (migrations/0008), the one
/// place both writers (heartbeats and the stale sweeper) build it; its tests
/// read events of both back into this type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectStatusData {
    pub slug: String,
    /// `online`, `degraded` or `offline`.
    pub from: String,
    pub to: String,
    pub cause: StatusCause,
    /// When the change took effect: the heartbeat's arrival, or the sweep.
    pub at: DateTime<Utc>,
    pub last_heartbeat_at: Option<DateTime<Utc>>,
}

/// Whether a routing node, rule or tenant map entry was set or deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoutingChange {
    /// Created or replaced.
    Set,
    Deleted,
}

/// The `data` of a `routing.node`, `routing.rule` or `routing.tenant` event
/// ([`EventKind::RoutingNodeChanged`] and its siblings); the event's
/// subject is `id`. Never carries a database URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingChangeData {
    pub change: RoutingChange,
    /// The node id, the rule's id, or the tenant id.
    pub id: String,
    /// The resource as `GET` answers it now; absent once deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<serde_json::Value>,
}

/// Whether a maintenance window began or ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MaintenanceChange {
    Started,
    /// Stopped by a request, or ran out.
    Ended,
}

/// The `data` of a `project.maintenance` event
/// ([`EventKind::ProjectMaintenance`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectMaintenanceData {
    pub slug: String,
    pub change: MaintenanceChange,
    /// When the change took effect.
    pub at: DateTime<Utc>,
    /// The window: when it began and when it was to end.
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub reason: String,
    /// Who started the window (an API key's fingerprint).
    pub by: String,
    /// Who ended it: a key's fingerprint, or `system:maintenance` when it
    /// ran out. Absent on `started`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_by: Option<String>,
    /// The project's status at that moment.
    pub status: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_and_subject_share_the_tail() {
        assert_eq!(
            EventKind::SpokeApproved.type_name(),
            "federation.spoke.approved"
        );
        assert_eq!(
            EventKind::SpokeApproved.subject(),
            "fed.events.spoke.approved"
        );
        assert_eq!(
            EventKind::ProjectStatusChanged.subject(),
            "fed.events.project.status"
        );
        for k in EventKind::ALL {
            assert_eq!(EventKind::from_type_name(&k.type_name()), Some(k));
            assert!(k.subject().starts_with("fed.events."));
        }
        assert_eq!(EventKind::from_type_name("federation.nope"), None);
    }

    #[test]
    fn envelope_is_cloudevents_structured_json() {
        let time = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let ev = CloudEvent::new(
            EventKind::ProjectRegistered,
            "0190f0a4-0000-7000-8000-000000000000",
            DEFAULT_SOURCE,
            time,
            Some("alpha".into()),
            serde_json::json!({"slug": "alpha"}),
        );
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["type"], "federation.project.registered");
        assert_eq!(v["time"], "2026-01-01T00:00:00Z");
        assert_eq!(v["subject"], "alpha");
        assert_eq!(v["datacontenttype"], "application/json");
        assert_eq!(v["data"]["slug"], "alpha");
        let back: CloudEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back.kind(), Some(EventKind::ProjectRegistered));
    }
}
