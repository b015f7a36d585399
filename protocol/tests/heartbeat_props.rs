#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

//! Property tests of heartbeat validation: whatever arrives, parsing never
//! panics, and whatever it accepts stays inside the contract's bounds (so the
//! database can always store it; `service/tests/api/heartbeat_props.rs`
//! checks that end against a real PostgreSQL).

use proptest::prelude::*;
use protocol::heartbeat::{
    Heartbeat, INTERVAL_RANGE_S, MAX_AGENT_ID_LEN, MAX_HUB_URL_LEN, MAX_SEQ, MAX_TIMESTAMP_S,
    MAX_VERSION_LEN, MIN_TIMESTAMP_S,
};
use testkit::arbitrary::{heartbeat_payload, mostly_valid_heartbeat};

fn clean(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

fn check(p: &serde_json::Value) -> Result<bool, TestCaseError> {
    let body = serde_json::to_vec(p).unwrap();
    let Ok(hb) = Heartbeat::parse("hub.presence.alpha", &body, 4096) else {
        return Ok(false);
    };
    prop_assert_eq!(hb.project_slug.as_str(), "alpha");
    if let Some(u) = &hb.hub_url {
        prop_assert!(u.len() <= MAX_HUB_URL_LEN && clean(u), "{u:?}");
        prop_assert!(
            u.starts_with("http://") || u.starts_with("https://"),
            "{u:?}"
        );
    }
    if let Some(a) = &hb.agent_id {
        prop_assert!(a.len() <= MAX_AGENT_ID_LEN && clean(a), "{a:?}");
    }
    if let Some(v) = &hb.version {
        prop_assert!(v.len() <= MAX_VERSION_LEN && clean(v), "{v:?}");
    }
    if let Some(ns) = &hb.mesh_namespace {
        prop_assert_eq!(ns.as_str(), "hub.alpha");
    }
    if let Some(t) = hb.timestamp {
        prop_assert!((MIN_TIMESTAMP_S..MAX_TIMESTAMP_S).contains(&t.timestamp()));
    }
    if let Some(s) = hb.seq {
        prop_assert!(s <= MAX_SEQ);
    }
    if let Some(i) = hb.interval_s {
        prop_assert!(INTERVAL_RANGE_S.contains(&u64::from(i)));
    }
    // What we accept, we can say again, and it means the same.
    let again = Heartbeat::parse("hub.presence.alpha", &hb.to_payload(), 4096);
    prop_assert_eq!(again.as_ref(), Ok(&hb));
    Ok(true)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Heartbeat::parse("hub.presence.alpha", &bytes, 4096);
    }

    #[test]
    fn whatever_is_accepted_is_within_bounds(p in heartbeat_payload("alpha")) {
        check(&p)?;
    }

    #[test]
    fn mostly_valid_heartbeats_too(p in mostly_valid_heartbeat("alpha")) {
        check(&p)?;
    }
}

/// The strategy must reach past validation often, or the properties above
/// would hold vacuously.
#[test]
fn the_strategies_produce_accepted_heartbeats() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = mostly_valid_heartbeat("alpha");
    let mut accepted = 0;
    for _ in 0..500 {
        let p = strategy.new_tree(&mut runner).unwrap().current();
        if check(&p).unwrap() {
            accepted += 1;
        }
    }
    assert!(accepted >= 50, "only {accepted} of 500 accepted");
}
