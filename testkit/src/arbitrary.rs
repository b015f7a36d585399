//! Property-test strategies for what crosses a trust boundary: heartbeat
//! payloads as a hostile or careless hub might send them.

use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// Text that is often hostile: control characters, NUL, astral planes,
/// URL-ish and date-ish fragments.
pub fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z0-9:/._\\-]{0,40}",
        "(http|https|ftp)://[a-zA-Z0-9._\\-@:%\\u{0}\\u{7f}]{0,30}(/[ -~]{0,20})?",
        "[+-]?[0-9]{1,6}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})?",
        "\\PC{0,200}",
    ]
}

/// Numbers at and beyond every bound: negative, huge, fractional.
pub fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        (0u64..100_000).prop_map(Value::from),
    ]
}

/// Any JSON value a field might hold.
pub fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => text().prop_map(Value::from),
        2 => number(),
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::from),
        1 => prop::collection::vec(text().prop_map(Value::from), 0..3).prop_map(Value::from),
    ]
}

/// Every field of the heartbeat contract, plus one it does not know.
pub const HEARTBEAT_FIELDS: [&str; 9] = [
    "mesh_namespace",
    "hub_url",
    "status",
    "timestamp",
    "agent_id",
    "seq",
    "interval_s",
    "version",
    "extra",
];

/// A heartbeat object for `slug` (sometimes upper-cased, sometimes not a
/// string at all) with any subset of fields holding anything.
pub fn heartbeat_payload(slug: &'static str) -> impl Strategy<Value = Value> {
    (
        prop_oneof![Just(json!(slug)), Just(json!(slug.to_uppercase())), value()],
        prop::collection::vec((prop::sample::select(&HEARTBEAT_FIELDS[..]), value()), 0..9),
    )
        .prop_map(|(slug, fields)| {
            let mut m = Map::new();
            m.insert("project_slug".into(), slug);
            for (k, v) in fields {
                m.insert(k.into(), v);
            }
            Value::Object(m)
        })
}

/// A heartbeat for `slug` whose fields are valid more often than not, so
/// that many cases get past validation and reach the database.
pub fn mostly_valid_heartbeat(slug: &'static str) -> impl Strategy<Value = Value> {
    let ns = format!("hub.{slug}");
    (
        prop::option::of(prop_oneof![Just(json!(ns)), value()]),
        prop::option::of(prop_oneof![
            "https?://[a-z][a-z0-9-]{0,20}(\\.[a-z]{2,5})?(:[0-9]{1,5})?(/[!-~]{0,40})?"
                .prop_map(Value::from),
            text().prop_map(Value::from),
        ]),
        prop::option::of(prop::sample::select(&["online", "degraded", "offline"][..])),
        prop::option::of(prop_oneof![
            "(19[7-9][0-9]|2[01][0-9]{2})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])"
                .prop_map(Value::from),
            text().prop_map(Value::from),
        ]),
        prop::option::of(text()),
        prop::option::of(prop_oneof![any::<u64>().prop_map(Value::from), number()]),
        prop::option::of(prop_oneof![(1u64..=86_400).prop_map(Value::from), number()]),
        prop::option::of(text()),
    )
        .prop_map(
            move |(ns, url, status, ts, agent, seq, interval, version)| {
                let mut m = Map::new();
                m.insert("project_slug".into(), json!(slug));
                let mut put = |k: &str, v: Option<Value>| {
                    if let Some(v) = v {
                        m.insert(k.into(), v);
                    }
                };
                put("mesh_namespace", ns);
                put("hub_url", url);
                put("status", status.map(Value::from));
                put("timestamp", ts);
                put("agent_id", agent.map(Value::from));
                put("seq", seq);
                put("interval_s", interval);
                put("version", version.map(Value::from));
                Value::Object(m)
            },
        )
}
