//! Property: no heartbeat that validation accepts can make the batch write
//! fail. Generated payloads go through the real parser, then through the
//! real statement into a real PostgreSQL, in batches of distinct hubs as the
//! flusher sends them (one refused row would fail its whole batch).

use chrono::Utc;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use protocol::Heartbeat;
use service::ingest::coalescer::Pending;
use service::ingest::write::apply_batch;
use testkit::arbitrary::{heartbeat_payload, mostly_valid_heartbeat};

use crate::helpers::*;

const HUBS: usize = 20;

#[tokio::test]
async fn no_heartbeat_accepted_by_validation_can_make_the_write_fail() {
    let app = spawn_app().await;
    for i in 0..HUBS {
        let res = app
            .post_project(Some(ADMIN_KEY), &project(&format!("h{i}")))
            .await;
        assert_eq!(res.status(), 201);
    }
    let mut runner = TestRunner::default();
    let strategy = proptest::prop_oneof![
        3 => mostly_valid_heartbeat("alpha"),
        1 => heartbeat_payload("alpha"),
    ];
    let mut accepted = 0;
    for round in 0..60 {
        let mut batch = Vec::new();
        let mut values = Vec::new();
        for _ in 0..HUBS * 2 {
            let value = strategy.new_tree(&mut runner).unwrap().current();
            let body = serde_json::to_vec(&value).unwrap();
            if let Ok(mut heartbeat) = Heartbeat::parse("hub.presence.alpha", &body, 4096) {
                if batch.len() == HUBS {
                    break;
                }
                // Validated for alpha; the same fields for another hub.
                heartbeat.project_slug = format!("h{}", batch.len());
                heartbeat.mesh_namespace = None;
                batch.push(Pending {
                    heartbeat,
                    received_at: Utc::now(),
                    count: 1,
                });
                values.push(value);
            }
        }
        accepted += batch.len();
        // Auto-registration on, so the INSERT path is exercised too.
        if let Err(e) = apply_batch(&app.pool, &batch, round % 2 == 0).await {
            panic!(
                "accepted by validation, refused by the database: {e}\n{}",
                serde_json::to_string_pretty(&values).unwrap()
            );
        }
    }
    assert!(
        accepted >= 300,
        "only {accepted} heartbeats got past validation"
    );
}
