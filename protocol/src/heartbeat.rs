//! The presence heartbeat a hub publishes on `hub.presence.<slug>`.
//!
//! The payload accepts everything the original service accepts: its schema
//! requires only `project_slug`; `mesh_namespace`, `hub_url` and `timestamp`
//! are optional, `status` is ours (missing means `online`), and unknown fields
//! are ignored so newer agents can talk to older services. On top of that we
//! add the optional `agent_id`, `seq`, `interval_s` and `version`.
//!
//! What we accept is also what the database can store: every string is free
//! of control characters and bounded in length, numbers are in range, a
//! timestamp lies in a sane window. Nothing is clamped: a field out of bounds
//! rejects the heartbeat, with a precise reason.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::naming::{is_valid_slug, namespace_matches};
use crate::subjects::slug_from_heartbeat_subject;

/// Default payload limit, matching the service's default configuration.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 4096;
/// Longest `hub_url`, in bytes.
pub const MAX_HUB_URL_LEN: usize = 2048;
/// Longest `agent_id`, in bytes.
pub const MAX_AGENT_ID_LEN: usize = 128;
/// Longest `version`, in bytes.
pub const MAX_VERSION_LEN: usize = 64;
/// Longest `timestamp` text, in bytes (RFC 3339 with nanoseconds is 35).
pub const MAX_TIMESTAMP_LEN: usize = 64;
/// Largest `seq` (it is stored as a signed 64-bit integer).
pub const MAX_SEQ: u64 = i64::MAX as u64;
/// Shortest and longest publishing interval an agent may announce, in seconds.
pub const INTERVAL_RANGE_S: std::ops::RangeInclusive<u64> = 1..=86_400;
/// Earliest hub timestamp accepted: 1970-01-01T00:00:00Z.
pub const MIN_TIMESTAMP_S: i64 = 0;
/// Latest hub timestamp accepted (exclusive): 2200-01-01T00:00:00Z.
pub const MAX_TIMESTAMP_S: i64 = 7_258_118_400;

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

/// A validated heartbeat. Optional fields are `None` when the hub left them
/// out (or, for `timestamp`, sent text that is not a date): the catalog then
/// keeps what it had.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heartbeat {
    /// Lower case, as the original service stores it.
    pub project_slug: String,
    /// `hub.<project_slug>` when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mesh_namespace: Option<String>,
    /// Where the hub answers; a hub that omits it keeps the stored one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hub_url: Option<String>,
    /// `online` when the hub did not say.
    pub status: HubStatus,
    /// The hub's own clock. Stored for diagnosis, never used for liveness.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<DateTime<Utc>>,
    /// Identifies one agent process (a restart is a new id).
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
/// `heartbeat_rejected_total`, so the set is closed and small; the precise
/// problem travels in [`Rejected::detail`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// Larger than the configured payload limit.
    TooLarge,
    /// Not JSON at all.
    NotJson,
    /// JSON, but not an object, `project_slug` missing, or a field of the
    /// wrong type.
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
    /// `timestamp` is a date outside the sane window (1970 to 2200).
    BadTimestamp,
    /// A text field is too long or holds control characters.
    BadText,
    /// `seq` or `interval_s` is out of range.
    OutOfRange,
    /// No such project in the catalog (and auto-registration is off).
    UnknownProject,
    /// The service had no room to hold it: dropped, never silently.
    Overflow,
    /// The database refused to store it (found by isolating a failed batch).
    DbRejected,
}

impl Rejection {
    pub const ALL: [Rejection; 14] = [
        Rejection::TooLarge,
        Rejection::NotJson,
        Rejection::WrongType,
        Rejection::BadSlug,
        Rejection::SubjectMismatch,
        Rejection::NamespaceMismatch,
        Rejection::BadUrl,
        Rejection::BadStatus,
        Rejection::BadTimestamp,
        Rejection::BadText,
        Rejection::OutOfRange,
        Rejection::UnknownProject,
        Rejection::Overflow,
        Rejection::DbRejected,
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
            Rejection::BadTimestamp => "bad_timestamp",
            Rejection::BadText => "bad_text",
            Rejection::OutOfRange => "out_of_range",
            Rejection::UnknownProject => "unknown_project",
            Rejection::Overflow => "overflow",
            Rejection::DbRejected => "db_rejected",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused heartbeat: the metric label and the precise problem, phrased
/// for an operator reading the log (`missing field project_slug`,
/// `hub_url is not http(s)`). Never contains the payload itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub reason: Rejection,
    pub detail: Cow<'static, str>,
}

impl Rejected {
    fn new(reason: Rejection, detail: impl Into<Cow<'static, str>>) -> Self {
        Rejected {
            reason,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.detail, self.reason)
    }
}

impl std::error::Error for Rejected {}

/// The payload as it comes off the wire; strings borrow from the message
/// where JSON escaping allows. `null` counts as absent, as in the original.
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    project_slug: Cow<'a, str>,
    #[serde(default, borrow)]
    mesh_namespace: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    hub_url: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    status: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    agent_id: Option<Cow<'a, str>>,
    #[serde(default)]
    seq: Option<serde_json::Number>,
    #[serde(default)]
    interval_s: Option<serde_json::Number>,
    #[serde(default, borrow)]
    version: Option<Cow<'a, str>>,
}

impl Heartbeat {
    /// Parses and validates a message received on `subject`, applying every
    /// rule of the contract except whether the project exists.
    pub fn parse(subject: &str, payload: &[u8], max_bytes: usize) -> Result<Heartbeat, Rejected> {
        use Rejection::*;
        if payload.len() > max_bytes {
            return Err(Rejected::new(
                TooLarge,
                format!("payload of {} bytes exceeds {max_bytes}", payload.len()),
            ));
        }
        let subject_slug = slug_from_heartbeat_subject(subject)
            .ok_or_else(|| Rejected::new(BadSlug, "subject is not hub.presence.<slug>"))?;
        let is_object = payload
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == b'{');
        if !is_object {
            // serde would read an array positionally; name it for what it is.
            return Err(
                match serde_json::from_slice::<serde::de::IgnoredAny>(payload) {
                    Ok(_) => Rejected::new(WrongType, "payload is not a JSON object"),
                    Err(e) => wire_error(e),
                },
            );
        }
        let wire: Wire<'_> = serde_json::from_slice(payload).map_err(wire_error)?;

        // The original lower-cases the slug before using it.
        let slug = if wire.project_slug.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(wire.project_slug.to_ascii_lowercase())
        } else {
            wire.project_slug
        };
        if !is_valid_slug(&slug) {
            return Err(Rejected::new(
                BadSlug,
                "project_slug breaks the slug rule (lower-case letters, digits and inner hyphens, 1-63 characters)",
            ));
        }
        if slug != subject_slug {
            return Err(Rejected::new(
                SubjectMismatch,
                "project_slug differs from the slug in the subject",
            ));
        }
        if let Some(ns) = &wire.mesh_namespace {
            if !namespace_matches(&slug, ns) {
                return Err(Rejected::new(
                    NamespaceMismatch,
                    format!("mesh_namespace is not hub.{slug}"),
                ));
            }
        }
        let status = match &wire.status {
            None => HubStatus::Online,
            Some(s) => HubStatus::parse(s).ok_or_else(|| {
                Rejected::new(BadStatus, "status is not online, degraded or offline")
            })?,
        };
        if let Some(url) = &wire.hub_url {
            check_hub_url(url).map_err(|why| Rejected::new(BadUrl, why))?;
        }
        let timestamp = match &wire.timestamp {
            None => None,
            Some(t) => parse_timestamp(t)?,
        };
        let agent_id = check_text("agent_id", wire.agent_id, MAX_AGENT_ID_LEN)?;
        let version = check_text("version", wire.version, MAX_VERSION_LEN)?;
        let seq = match wire.seq {
            None => None,
            Some(n) => Some(
                n.as_u64()
                    .filter(|s| *s <= MAX_SEQ)
                    .ok_or_else(|| number_error("seq", &n, "an integer from 0 to 2^63-1"))?,
            ),
        };
        let interval_s = match wire.interval_s {
            None => None,
            Some(n) => Some(
                n.as_u64()
                    .filter(|i| INTERVAL_RANGE_S.contains(i))
                    .and_then(|i| u32::try_from(i).ok())
                    .ok_or_else(|| {
                        number_error(
                            "interval_s",
                            &n,
                            "a whole number of seconds from 1 to 86400",
                        )
                    })?,
            ),
        };
        Ok(Heartbeat {
            project_slug: slug.into_owned(),
            mesh_namespace: wire.mesh_namespace.map(Cow::into_owned),
            hub_url: wire.hub_url.map(Cow::into_owned),
            status,
            timestamp,
            agent_id,
            seq,
            interval_s,
            version,
        })
    }

    /// The JSON payload to publish.
    pub fn to_payload(&self) -> Vec<u8> {
        // Serialising plain strings, numbers and a timestamp cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Names the problem serde found, in the words of the contract.
fn wire_error(e: serde_json::Error) -> Rejected {
    use serde_json::error::Category;
    match e.classify() {
        Category::Data => {
            // serde's text is `missing field `x`` or `invalid type: ..., expected ...`,
            // followed by a position; keep the first part, without backticks.
            let text = e.to_string();
            let head = text.split(" at line ").next().unwrap_or(&text);
            let head = head.replace('`', "");
            let detail = if head.starts_with("invalid type") {
                format!("a field has the wrong type: {head}")
            } else {
                head
            };
            Rejected::new(Rejection::WrongType, detail)
        }
        Category::Eof | Category::Syntax | Category::Io => Rejected::new(
            Rejection::NotJson,
            format!(
                "payload is not JSON (line {}, column {})",
                e.line(),
                e.column()
            ),
        ),
    }
}

fn number_error(field: &'static str, n: &serde_json::Number, expected: &str) -> Rejected {
    if n.is_f64() && n.as_f64().is_some_and(|f| f.fract() != 0.0) {
        Rejected::new(Rejection::WrongType, format!("{field} must be an integer"))
    } else {
        Rejected::new(
            Rejection::OutOfRange,
            format!("{field} is out of range: must be {expected}"),
        )
    }
}

/// An optional text field: bounded, without control characters.
fn check_text(
    field: &'static str,
    value: Option<Cow<'_, str>>,
    max: usize,
) -> Result<Option<String>, Rejected> {
    let Some(v) = value else { return Ok(None) };
    if v.len() > max {
        return Err(Rejected::new(
            Rejection::BadText,
            format!("{field} is longer than {max} bytes"),
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(Rejected::new(
            Rejection::BadText,
            format!("{field} contains control characters"),
        ));
    }
    Ok(Some(v.into_owned()))
}

/// The hub's clock: RFC 3339 (`Z`, `+00:00`, fractional seconds), or an ISO
/// 8601 date-time without offset (as Python's `isoformat()` writes for a
/// naive time), taken as UTC. Text that is not a date is ignored, as the
/// original ignores it; a date outside 1970..2200 is refused.
fn parse_timestamp(text: &str) -> Result<Option<DateTime<Utc>>, Rejected> {
    if text.len() > MAX_TIMESTAMP_LEN || text.chars().any(char::is_control) {
        return Ok(None);
    }
    let parsed = DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
                .iter()
                .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
                .map(|n| Utc.from_utc_datetime(&n))
        });
    match parsed {
        None => Ok(None),
        Some(t) if (MIN_TIMESTAMP_S..MAX_TIMESTAMP_S).contains(&t.timestamp()) => Ok(Some(t)),
        Some(_) => Err(Rejected::new(
            Rejection::BadTimestamp,
            "timestamp is outside 1970-01-01 .. 2200-01-01",
        )),
    }
}

/// A hub URL is http(s), at most [`MAX_HUB_URL_LEN`] bytes, free of control
/// characters and white space, has a real host (a DNS name or an IP
/// address) and carries no credentials.
pub fn check_hub_url(s: &str) -> Result<(), &'static str> {
    if s.len() > MAX_HUB_URL_LEN {
        return Err("hub_url is longer than 2048 bytes");
    }
    if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("hub_url contains control characters or spaces");
    }
    let u = url::Url::parse(s).map_err(|_| "hub_url is not a URL")?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err("hub_url is not http(s)");
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("hub_url carries credentials");
    }
    if u.fragment().is_some() {
        return Err("hub_url has a fragment");
    }
    match u.host() {
        Some(url::Host::Domain(d)) if is_dns_name(d) => Ok(()),
        Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) => Ok(()),
        _ => Err("hub_url has no valid host"),
    }
}

/// Whether `s` is a valid URL per [`check_hub_url`].
pub fn is_valid_hub_url(s: &str) -> bool {
    check_hub_url(s).is_ok()
}

/// A host name: dot-separated labels of letters, digits, hyphens (not at a
/// label's ends) and, as many private names have them, underscores. (The
/// URL parser has already lower-cased and IDNA-encoded it; the URL's length
/// bounds it.)
fn is_dns_name(d: &str) -> bool {
    let d = d.strip_suffix('.').unwrap_or(d);
    !d.is_empty()
        && d.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = DEFAULT_MAX_PAYLOAD_BYTES;

    /// The heartbeat's timestamp, in RFC 3339.
    fn timestamp(hb: &Heartbeat) -> String {
        hb.timestamp.unwrap().to_rfc3339()
    }

    fn payload(slug: &str) -> String {
        format!(
            r#"{{"project_slug":"{slug}","mesh_namespace":"hub.{slug}","hub_url":"http://{slug}:9001","status":"online","timestamp":"2026-01-01T00:00:00Z"}}"#
        )
    }

    fn parse(subject: &str, body: &str) -> Result<Heartbeat, Rejected> {
        Heartbeat::parse(subject, body.as_bytes(), MAX)
    }

    #[test]
    fn accepts_the_original_services_documented_example() {
        // The example of the original's schema (app/schemas/heartbeat.py), verbatim.
        let p = r#"{"project_slug":"commandcenter","mesh_namespace":"hub.commandcenter","timestamp":"2025-11-18T04:00:00Z","hub_url":"http://localhost:3000"}"#;
        let hb = parse("hub.presence.commandcenter", p).unwrap();
        assert_eq!(hb.project_slug, "commandcenter");
        assert_eq!(hb.status, HubStatus::Online, "missing status means online");
        assert_eq!(hb.hub_url.as_deref(), Some("http://localhost:3000"));
        assert_eq!(timestamp(&hb), "2025-11-18T04:00:00+00:00");
    }

    #[test]
    fn accepts_the_hub_publishers_payload_of_the_original_deployment_guide() {
        let hb = parse("hub.presence.alpha", &payload("alpha")).unwrap();
        assert_eq!(hb.project_slug, "alpha");
        assert_eq!(hb.status, HubStatus::Online);
        assert_eq!(hb.seq, None);
    }

    #[test]
    fn only_project_slug_is_required() {
        let hb = parse("hub.presence.alpha", r#"{"project_slug":"alpha"}"#).unwrap();
        assert_eq!(hb.status, HubStatus::Online);
        assert_eq!(hb.mesh_namespace, None);
        assert_eq!(hb.hub_url, None);
        assert_eq!(hb.timestamp, None);
        // null is absent, as in the original.
        let hb = parse(
            "hub.presence.alpha",
            r#"{"project_slug":"alpha","hub_url":null,"timestamp":null,"status":null}"#,
        )
        .unwrap();
        assert_eq!((hb.hub_url, hb.timestamp), (None, None));
    }

    #[test]
    fn the_slug_is_lower_cased_as_the_original_does() {
        let hb = parse(
            "hub.presence.alpha",
            r#"{"project_slug":"Alpha","mesh_namespace":"hub.alpha"}"#,
        )
        .unwrap();
        assert_eq!(hb.project_slug, "alpha");
    }

    #[test]
    fn timestamps_in_every_form_the_original_accepts() {
        let at = |t: &str| {
            parse(
                "hub.presence.a",
                &format!(r#"{{"project_slug":"a","timestamp":"{t}"}}"#),
            )
            .map(|hb| hb.timestamp.map(|t| t.timestamp_millis()))
        };
        let base = 1_763_438_400_000; // 2025-11-18T04:00:00Z
        assert_eq!(at("2025-11-18T04:00:00Z"), Ok(Some(base)));
        assert_eq!(at("2025-11-18T04:00:00+00:00"), Ok(Some(base)));
        assert_eq!(at("2025-11-18T06:00:00+02:00"), Ok(Some(base)));
        assert_eq!(at("2025-11-18T04:00:00.250Z"), Ok(Some(base + 250)));
        assert_eq!(at("2025-11-18T04:00:00.250000+00:00"), Ok(Some(base + 250)));
        // Python's naive isoformat(), taken as UTC.
        assert_eq!(at("2025-11-18T04:00:00.250000"), Ok(Some(base + 250)));
        assert_eq!(at("2025-11-18 04:00:00"), Ok(Some(base)));
        // Text that is no date: accepted, not stored.
        assert_eq!(at("yesterday"), Ok(None));
        assert_eq!(at(""), Ok(None));
        // A date outside the sane window: refused.
        for bad in [
            "1969-12-31T23:59:59Z",
            "0001-01-01T00:00:00Z",
            "2200-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
        ] {
            assert_eq!(
                at(bad).map_err(|r| r.reason),
                Err(Rejection::BadTimestamp),
                "{bad}"
            );
        }
        // Not a string: wrong type, as in the original.
        assert_eq!(
            parse("hub.presence.a", r#"{"project_slug":"a","timestamp":5}"#).map_err(|r| r.reason),
            Err(Rejection::WrongType)
        );
    }

    #[test]
    fn accepts_optional_fields_and_ignores_unknown_ones() {
        let p = r#"{"project_slug":"a","mesh_namespace":"hub.a","hub_url":"https://a.example/x","status":"degraded",
                   "timestamp":"2026-01-01T00:00:00+02:00","agent_id":"ag-1","seq":7,"interval_s":30,"version":"1.2.3","extra":{"x":1}}"#;
        let hb = parse("hub.presence.a", p).unwrap();
        assert_eq!(hb.status, HubStatus::Degraded);
        assert_eq!(hb.seq, Some(7));
        assert_eq!(hb.interval_s, Some(30));
        assert_eq!(hb.agent_id.as_deref(), Some("ag-1"));
        assert_eq!(timestamp(&hb), "2025-12-31T22:00:00+00:00");
    }

    #[test]
    fn round_trips_through_to_payload() {
        for p in [payload("alpha"), r#"{"project_slug":"alpha"}"#.to_owned()] {
            let hb = parse("hub.presence.alpha", &p).unwrap();
            let again = Heartbeat::parse("hub.presence.alpha", &hb.to_payload(), MAX).unwrap();
            assert_eq!(hb, again);
        }
    }

    #[test]
    fn every_rejection_reason_with_its_precise_detail() {
        let ok = payload("alpha");
        let s = "hub.presence.alpha";
        let long = |n: usize| "x".repeat(n);
        use Rejection::*;
        // (whole body, reason, what the detail says)
        let bodies = [
            (format!("{ok:<5000}"), TooLarge, "exceeds 4096"),
            ("not json".into(), NotJson, "not JSON"),
            ("{\"project_slug\":".into(), NotJson, "not JSON"),
            ("[1,2]".into(), WrongType, "not a JSON object"),
            ("7".into(), WrongType, "not a JSON object"),
            (
                r#"{"hub_url":"http://a"}"#.into(),
                WrongType,
                "missing field project_slug",
            ),
            (
                payload("beta"),
                SubjectMismatch,
                "differs from the slug in the subject",
            ),
        ];
        // (a field beside project_slug alpha, reason, what the detail says)
        let fields = [
            (r#""seq":-1"#.into(), OutOfRange, "seq is out of range"),
            (
                r#""seq":9223372036854775808"#.into(),
                OutOfRange,
                "seq is out of range",
            ),
            (r#""seq":1.5"#.into(), WrongType, "seq must be an integer"),
            (
                r#""interval_s":0"#.into(),
                OutOfRange,
                "interval_s is out of range",
            ),
            (r#""interval_s":86401"#.into(), OutOfRange, "interval_s"),
            (r#""interval_s":"30""#.into(), WrongType, "wrong type"),
            (
                r#""agent_id":"a\u0000b""#.into(),
                BadText,
                "agent_id contains control characters",
            ),
            (
                r#""version":"1\n2""#.into(),
                BadText,
                "version contains control characters",
            ),
            (
                format!(r#""agent_id":"{}""#, long(129)),
                BadText,
                "agent_id is longer than 128",
            ),
            (
                format!(r#""version":"{}""#, long(65)),
                BadText,
                "version is longer than 64",
            ),
        ];
        // (text of the good payload, replaced by, reason, what the detail says)
        let url = "http://alpha:9001";
        let long_url = format!("http://a/{}", long(2048));
        #[rustfmt::skip]
        let edits = [
            ("\"online\"", "5", WrongType, "wrong type"),
            ("\"alpha\"", "\"al_pha\"", BadSlug, "slug rule"),
            ("hub.alpha", "hub.beta", NamespaceMismatch, "mesh_namespace is not hub.alpha"),
            ("\"online\"", "\"up\"", BadStatus, "status is not"),
            (url, "ftp://alpha", BadUrl, "hub_url is not http(s)"),
            (url, "not a url", BadUrl, "hub_url contains control characters or spaces"),
            (url, "nourl", BadUrl, "hub_url is not a URL"),
            (url, "http://u:p@alpha", BadUrl, "credentials"),
            (url, "http://alpha\\u0000x:9001", BadUrl, "control characters"),
            (url, "http://-alpha-/x", BadUrl, "no valid host"),
            (url, &long_url, BadUrl, "longer than 2048"),
            ("2026-01-01T00:00:00Z", "1900-01-01T00:00:00Z", BadTimestamp, "outside"),
        ];
        let mut cases: Vec<(&str, String, Rejection, &str)> = vec![];
        cases.extend(bodies.into_iter().map(|(b, want, d)| (s, b, want, d)));
        cases.extend(
            fields
                .into_iter()
                .map(|(f, want, d)| (s, format!(r#"{{"project_slug":"alpha",{f}}}"#), want, d)),
        );
        cases.extend(
            edits
                .into_iter()
                .map(|(from, to, want, d)| (s, ok.replace(from, to), want, d)),
        );
        cases.push(("hub.presence.Alpha", ok.clone(), BadSlug, "subject"));
        for (subject, body, want, detail) in cases {
            let got = Heartbeat::parse(subject, body.as_bytes(), MAX);
            let Err(r) = got else {
                panic!("{subject} {body}: accepted, expected {want}");
            };
            assert_eq!(r.reason, want, "{subject} {body}: {r}");
            assert!(
                r.detail.contains(detail),
                "{subject} {body}: detail {:?} should mention {detail:?}",
                r.detail
            );
        }
    }

    /// A year outside RFC 3339's four digits is no date to us: not stored,
    /// never stored as year -5000 (which PostgreSQL cannot hold).
    #[test]
    fn an_unparseable_ancient_date_is_not_stored() {
        let hb = parse(
            "hub.presence.alpha",
            r#"{"project_slug":"alpha","timestamp":"-5000-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(hb.timestamp, None);
    }

    #[test]
    fn labels_are_unique() {
        let mut labels: Vec<_> = Rejection::ALL.iter().map(|r| r.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Rejection::ALL.len());
    }
}
