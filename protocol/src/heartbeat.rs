//! The presence heartbeat a hub publishes on `hub.presence.<slug>`.
//!
//! The payload is compatible with the original service's:
//! `{"project_slug","mesh_namespace","hub_url","status","timestamp"}`, plus
//! the optional `agent_id`, `seq`, `interval_s` and `version`. Unknown fields
//! are ignored so newer agents can talk to older services.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::naming::{is_valid_slug, namespace_matches};
use crate::subjects::slug_from_heartbeat_subject;

/// Default payload limit, matching the service's default configuration.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 4096;

/// What a hub says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HubStatus {
    Online,
    Degraded,
    Offline,
}

impl HubStatus {
    pub const ALL: [HubStatus; 3] = [HubStatus::Online, HubStatus::Degraded, HubStatus::Offline];

    pub fn as_str(self) -> &'static str {
        match self {
            HubStatus::Online => "online",
            HubStatus::Degraded => "degraded",
            HubStatus::Offline => "offline",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "online" => Some(HubStatus::Online),
            "degraded" => Some(HubStatus::Degraded),
            "offline" => Some(HubStatus::Offline),
            _ => None,
        }
    }
}

impl fmt::Display for HubStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heartbeat {
    pub project_slug: String,
    pub mesh_namespace: String,
    pub hub_url: String,
    pub status: HubStatus,
    /// The hub's own clock. Stored for diagnosis, never used for liveness.
    pub timestamp: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// Monotonic per agent run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// The agent's publishing interval, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval_s: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// Why a heartbeat was refused. The label is the `reason` of
/// `heartbeat_rejected_total`, so the set is closed and small.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// Larger than the configured payload limit.
    TooLarge,
    /// Not JSON at all.
    NotJson,
    /// JSON, but a field is missing or has the wrong type.
    WrongType,
    /// The subject or `project_slug` breaks the slug rule.
    BadSlug,
    /// `project_slug` differs from the slug in the subject.
    SubjectMismatch,
    /// `mesh_namespace` is not `hub.<slug>`.
    NamespaceMismatch,
    /// `hub_url` is not an http(s) URL with a host and no credentials.
    BadUrl,
    /// `status` is not one of online, degraded, offline.
    BadStatus,
    /// No such project in the catalog (and auto-registration is off).
    UnknownProject,
    /// The service had no room to hold it (more distinct hubs pending than
    /// its bound): dropped, never silently.
    Overflow,
}

impl Rejection {
    pub const ALL: [Rejection; 10] = [
        Rejection::TooLarge,
        Rejection::NotJson,
        Rejection::WrongType,
        Rejection::BadSlug,
        Rejection::SubjectMismatch,
        Rejection::NamespaceMismatch,
        Rejection::BadUrl,
        Rejection::BadStatus,
        Rejection::UnknownProject,
        Rejection::Overflow,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::TooLarge => "too_large",
            Rejection::NotJson => "not_json",
            Rejection::WrongType => "wrong_type",
            Rejection::BadSlug => "bad_slug",
            Rejection::SubjectMismatch => "subject_mismatch",
            Rejection::NamespaceMismatch => "namespace_mismatch",
            Rejection::BadUrl => "bad_url",
            Rejection::BadStatus => "bad_status",
            Rejection::UnknownProject => "unknown_project",
            Rejection::Overflow => "overflow",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The payload as it comes off the wire; strings borrow from the message
/// where JSON escaping allows.
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    project_slug: Cow<'a, str>,
    #[serde(borrow)]
    mesh_namespace: Cow<'a, str>,
    #[serde(borrow)]
    hub_url: Cow<'a, str>,
    #[serde(borrow)]
    status: Cow<'a, str>,
    timestamp: DateTime<Utc>,
    #[serde(default, borrow)]
    agent_id: Option<Cow<'a, str>>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    interval_s: Option<u32>,
    #[serde(default, borrow)]
    version: Option<Cow<'a, str>>,
}

impl Heartbeat {
    /// Parses and validates a message received on `subject`, applying every
    /// rule of the contract except whether the project exists.
    pub fn parse(subject: &str, payload: &[u8], max_bytes: usize) -> Result<Heartbeat, Rejection> {
        if payload.len() > max_bytes {
            return Err(Rejection::TooLarge);
        }
        let subject_slug = slug_from_heartbeat_subject(subject).ok_or(Rejection::BadSlug)?;
        let wire: Wire<'_> = serde_json::from_slice(payload).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => Rejection::WrongType,
            _ => Rejection::NotJson,
        })?;
        if !is_valid_slug(&wire.project_slug) {
            return Err(Rejection::BadSlug);
        }
        if wire.project_slug != subject_slug {
            return Err(Rejection::SubjectMismatch);
        }
        if !namespace_matches(&wire.project_slug, &wire.mesh_namespace) {
            return Err(Rejection::NamespaceMismatch);
        }
        let status = HubStatus::parse(&wire.status).ok_or(Rejection::BadStatus)?;
        if !is_valid_hub_url(&wire.hub_url) {
            return Err(Rejection::BadUrl);
        }
        Ok(Heartbeat {
            project_slug: wire.project_slug.into_owned(),
            mesh_namespace: wire.mesh_namespace.into_owned(),
            hub_url: wire.hub_url.into_owned(),
            status,
            timestamp: wire.timestamp,
            agent_id: wire.agent_id.map(Cow::into_owned),
            seq: wire.seq,
            interval_s: wire.interval_s,
            version: wire.version.map(Cow::into_owned),
        })
    }

    /// The JSON payload to publish.
    pub fn to_payload(&self) -> Vec<u8> {
        // Serialising plain strings, numbers and a timestamp cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// A hub URL is http(s), has a host and carries no credentials.
pub fn is_valid_hub_url(s: &str) -> bool {
    match url::Url::parse(s) {
        Ok(u) => {
            matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some_and(|h| !h.is_empty())
                && u.username().is_empty()
                && u.password().is_none()
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = DEFAULT_MAX_PAYLOAD_BYTES;

    fn payload(slug: &str) -> String {
        format!(
            r#"{{"project_slug":"{slug}","mesh_namespace":"hub.{slug}","hub_url":"http://{slug}:9001","status":"online","timestamp":"2026-01-01T00:00:00Z"}}"#
        )
    }

    #[test]
    fn accepts_the_original_services_payload() {
        let hb = Heartbeat::parse("hub.presence.alpha", payload("alpha").as_bytes(), MAX).unwrap();
        assert_eq!(hb.project_slug, "alpha");
        assert_eq!(hb.status, HubStatus::Online);
        assert_eq!(hb.seq, None);
    }

    #[test]
    fn accepts_optional_fields_and_ignores_unknown_ones() {
        let p = r#"{"project_slug":"a","mesh_namespace":"hub.a","hub_url":"https://a.example/x","status":"degraded",
                   "timestamp":"2026-01-01T00:00:00+02:00","agent_id":"ag-1","seq":7,"interval_s":30,"version":"1.2.3","extra":{"x":1}}"#;
        let hb = Heartbeat::parse("hub.presence.a", p.as_bytes(), MAX).unwrap();
        assert_eq!(hb.status, HubStatus::Degraded);
        assert_eq!(hb.seq, Some(7));
        assert_eq!(hb.interval_s, Some(30));
        assert_eq!(hb.agent_id.as_deref(), Some("ag-1"));
        assert_eq!(hb.timestamp.to_rfc3339(), "2025-12-31T22:00:00+00:00");
    }

    #[test]
    fn round_trips_through_to_payload() {
        let hb = Heartbeat::parse("hub.presence.alpha", payload("alpha").as_bytes(), MAX).unwrap();
        let again = Heartbeat::parse("hub.presence.alpha", &hb.to_payload(), MAX).unwrap();
        assert_eq!(hb, again);
    }

    #[test]
    fn every_rejection_reason() {
        let ok = payload("alpha");
        let cases: Vec<(&str, String, Rejection)> = vec![
            (
                "hub.presence.alpha",
                format!("{ok:<5000}"),
                Rejection::TooLarge,
            ),
            ("hub.presence.alpha", "not json".into(), Rejection::NotJson),
            (
                "hub.presence.alpha",
                "{\"project_slug\":".into(),
                Rejection::NotJson,
            ),
            ("hub.presence.alpha", "[1,2]".into(), Rejection::WrongType),
            (
                "hub.presence.alpha",
                ok.replace("\"online\"", "5"),
                Rejection::WrongType,
            ),
            (
                "hub.presence.alpha",
                r#"{"project_slug":"alpha"}"#.into(),
                Rejection::WrongType,
            ),
            (
                "hub.presence.alpha",
                ok.replace("2026-01-01T00:00:00Z", "yesterday"),
                Rejection::WrongType,
            ),
            ("hub.presence.Alpha", ok.clone(), Rejection::BadSlug),
            (
                "hub.presence.alpha",
                ok.replace("\"alpha\"", "\"Alpha\""),
                Rejection::BadSlug,
            ),
            (
                "hub.presence.alpha",
                payload("beta"),
                Rejection::SubjectMismatch,
            ),
            (
                "hub.presence.alpha",
                ok.replace("hub.alpha", "hub.beta"),
                Rejection::NamespaceMismatch,
            ),
            (
                "hub.presence.alpha",
                ok.replace("\"online\"", "\"up\""),
                Rejection::BadStatus,
            ),
            (
                "hub.presence.alpha",
                ok.replace("http://alpha:9001", "ftp://alpha"),
                Rejection::BadUrl,
            ),
            (
                "hub.presence.alpha",
                ok.replace("http://alpha:9001", "not a url"),
                Rejection::BadUrl,
            ),
            (
                "hub.presence.alpha",
                ok.replace("http://alpha:9001", "http://u:p@alpha"),
                Rejection::BadUrl,
            ),
        ];
        for (subject, body, want) in cases {
            assert_eq!(
                Heartbeat::parse(subject, body.as_bytes(), MAX),
                Err(want),
                "{subject} {body}"
            );
        }
    }

    #[test]
    fn labels_are_unique() {
        let mut labels: Vec<_> = Rejection::ALL.iter().map(|r| r.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Rejection::ALL.len());
    }
}
