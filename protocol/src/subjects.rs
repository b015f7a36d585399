//! NATS subject names.

use crate::naming::is_valid_slug;

/// Prefix of heartbeat subjects: `hub.presence.<slug>`.
pub const HEARTBEAT_PREFIX: &str = "hub.presence";
/// What the service subscribes to.
pub const HEARTBEAT_WILDCARD: &str = "hub.presence.*";
/// Default queue group shared by service replicas.
pub const DEFAULT_QUEUE_GROUP: &str = "federation-catalog";

/// JetStream stream carrying federation events.
pub const EVENTS_STREAM: &str = "FEDERATION_EVENTS";
/// Prefix of event subjects: `fed.events.<entity>.<change>`.
pub const EVENTS_PREFIX: &str = "fed.events";
/// Every event subject.
pub const EVENTS_WILDCARD: &str = "fed.events.>";

/// The subject a hub publishes its heartbeat on.
pub fn heartbeat_subject(slug: &str) -> String {
    format!("{HEARTBEAT_PREFIX}.{slug}")
}

/// The slug named by a heartbeat subject, if the subject is one and the
/// slug obeys the rule.
pub fn slug_from_heartbeat_subject(subject: &str) -> Option<&str> {
    subject
        .strip_prefix(HEARTBEAT_PREFIX)
        .and_then(|rest| rest.strip_prefix('.'))
        .filter(|slug| is_valid_slug(slug))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_subject_round_trips() {
        let s = heartbeat_subject("alpha");
        assert_eq!(s, "hub.presence.alpha");
        assert_eq!(slug_from_heartbeat_subject(&s), Some("alpha"));
    }

    #[test]
    fn foreign_or_malformed_subjects_name_no_slug() {
        assert_eq!(slug_from_heartbeat_subject("hub.presence"), None);
        assert_eq!(slug_from_heartbeat_subject("hub.presence."), None);
        assert_eq!(slug_from_heartbeat_subject("hub.presence.A"), None);
        assert_eq!(slug_from_heartbeat_subject("hub.presence.a.b"), None);
        assert_eq!(slug_from_heartbeat_subject("hub.presenceX.a"), None);
        assert_eq!(slug_from_heartbeat_subject("other.alpha"), None);
    }
}
