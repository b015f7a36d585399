//! `GET /api/fed/watch`: Server-Sent Events from now, resumed from
//! Last-Event-ID, never skipping an event that commits late.

use std::time::Duration;

use serde_json::json;
use service::events::outbox;

use crate::fedkit::*;
use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn the_watch_stream_follows_changes_from_now() {
    let app = spawn_app().await;
    // Before the client connects: not part of "from now".
    let fra = register(&app, "FRA").await;
    let mut sse = SseClient::connect(&app, None).await;
    let fra_id = fra["id"].as_str().unwrap();
    act_ok(&app, fra_id, "approve").await;
    let (id, event) = sse.next(WAIT).await;
    assert_eq!(event["id"], id.as_str());
    assert_eq!(event["type"], "federation.spoke.approved");
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["subject"], fra_id);
    assert_eq!(event["data"]["status"], "approved");
    let ids = outbox_ids(&app.pool).await;
    assert_eq!(ids[1], id);

    app.post_project(Some(AGENT_KEY), &project("alpha")).await;
    let (_, event) = sse.next(WAIT).await;
    assert_eq!(event["type"], "federation.project.registered");
    assert_eq!(event["subject"], "alpha");
    assert_eq!(
        app.get_text("/metrics", None)
            .await
            .lines()
            .find(|l| l.starts_with("event_watch_clients "))
            .unwrap(),
        "event_watch_clients 1"
    );
}

#[tokio::test]
async fn a_client_resumes_after_its_last_event_id_without_gap_or_repeat() {
    let app = spawn_app().await;
    for code in ["FRA", "DEU", "GBR", "NLD", "BEL"] {
        register(&app, code).await;
    }
    let ids = outbox_ids(&app.pool).await;
    assert_eq!(ids.len(), 5);
    let mut sse = SseClient::connect(&app, Some(&ids[1])).await;
    for expected in &ids[2..] {
        let (id, _) = sse.next(WAIT).await;
        assert_eq!(&id, expected);
    }
    // Then live.
    register(&app, "ITA").await;
    let (id, event) = sse.next(WAIT).await;
    assert_eq!(event["data"]["instance_code"], "ITA");
    assert_eq!(id, *outbox_ids(&app.pool).await.last().unwrap());

    // The query parameter works the same (for clients that cannot set headers).
    let res = app
        .get(
            &format!("/api/fed/watch?last_event_id={}", ids[3]),
            Some(AGENT_KEY),
        )
        .await;
    assert_eq!(res.status(), 200);
    drop(res);

    // Unknown and malformed ids are refused, so a client never silently
    // misses events.
    let unknown = uuid::Uuid::now_v7().to_string();
    let res = watch_resuming(&app, "/api/fed/watch", &unknown).await;
    assert_problem(res, 410).await;
    let res = watch_resuming(&app, "/api/fed/watch", "not-an-id").await;
    let problem = assert_problem(res, 422).await;
    assert_eq!(problem["errors"][0]["field"], "Last-Event-ID");
    // Both are checked, even when the header would win; an empty id is no id.
    let res = watch_resuming(&app, "/api/fed/watch?last_event_id=", "null").await;
    let problem = assert_problem(res, 422).await;
    let fields = error_fields(&problem);
    assert_eq!(fields, ["Last-Event-ID", "last_event_id"], "{problem}");
}

#[tokio::test]
async fn an_event_that_commits_late_reaches_watchers_and_resumers() {
    let app = spawn_app().await;
    let mut live = SseClient::connect(&app, None).await;
    register(&app, "FRA").await;
    let (marker, _) = live.next(WAIT).await;

    let kind = protocol::EventKind::ProjectUpdated;
    let mut early = app.pool.begin().await.unwrap();
    let a = outbox::enqueue(&mut early, kind, Some("a"), &json!({"n": 1}))
        .await
        .unwrap();
    let mut late = app.pool.begin().await.unwrap();
    let b = outbox::enqueue(&mut late, kind, Some("b"), &json!({"n": 2}))
        .await
        .unwrap();
    late.commit().await.unwrap();
    // A client resuming now, while a is still open, must not jump past it.
    let mut resumer = SseClient::connect(&app, Some(&marker)).await;
    early.commit().await.unwrap();
    for sse in [&mut live, &mut resumer] {
        let (first, _) = sse.next(WAIT).await;
        let (second, _) = sse.next(WAIT).await;
        assert_eq!([first, second], [a.to_string(), b.to_string()]);
    }
}

#[tokio::test]
async fn many_watchers_each_get_every_event_in_the_same_order() {
    let app = spawn_app().await;
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(SseClient::connect(&app, None).await);
    }
    let codes = ["FRA", "DEU", "GBR", "NLD", "BEL", "ITA", "ESP", "POL"];
    let writers = codes.iter().map(|code| {
        let (client, url) = (app.client.clone(), app.url("/api/federation/register"));
        async move {
            client
                .post(url)
                .header("X-API-Key", AGENT_KEY)
                .json(&spoke_body(code))
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    for status in futures::future::join_all(writers).await {
        assert_eq!(status, 201);
    }
    let ids = outbox_ids(&app.pool).await;
    for sse in &mut clients {
        let mut got = Vec::new();
        for _ in 0..codes.len() {
            got.push(sse.next(WAIT).await.0);
        }
        assert_eq!(got, ids);
    }
}

#[tokio::test]
async fn open_watch_streams_end_when_the_service_stops() {
    let app = spawn_app().await;
    let mut sse = SseClient::connect(&app, None).await;
    register(&app, "FRA").await;
    sse.next(WAIT).await;
    app.shutdown.cancel();
    assert!(sse.ends_within(WAIT).await, "the stream stayed open");
    let (_, result) = app.stop().await;
    result.unwrap();
}
