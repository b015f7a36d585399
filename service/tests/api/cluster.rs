//! The service on a three-node NATS cluster (routes on 127.0.0.1, JetStream
//! on every node): the events stream is created with three replicas, the
//! service is given every node's URL, and losing any one node — the stream's
//! leader first, then another once the first is back — loses no event,
//! duplicates none and keeps their order, while heartbeats published on any
//! node reach the catalog.

use std::time::Duration;

use serde_json::json;
use testkit::{eventually, NatsCluster};

use crate::fedkit::*;
use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(60);

/// The stream, read through a node that is up, holds exactly the outbox's
/// events once each in log order.
async fn stream_matches_outbox(app: &TestApp, url: &str) {
    let js = patient_jetstream(url).await;
    let expected = outbox_ids(&app.pool).await;
    // Read message by message (STREAM.MSG.GET, answered by the stream's
    // leader): right after a node died the cluster may still be electing
    // its JetStream meta leader, which creating a consumer would need.
    let ids = eventually(WAIT, "the stream to be readable", || {
        let js = js.clone();
        let n = expected.len() as u64;
        async move {
            let stream = js.get_stream("FEDERATION_EVENTS").await.ok()?;
            let mut ids = Vec::new();
            for seq in 1..=n {
                let m = stream.get_raw_message(seq).await.ok()?;
                let id = m.headers.get("Nats-Msg-Id")?.as_str().to_owned();
                ids.push(id);
            }
            if stream.get_raw_message(n + 1).await.is_ok() {
                panic!("the stream holds more than the outbox's {n} events");
            }
            Some(ids)
        }
    })
    .await;
    assert_eq!(ids, expected, "stream vs outbox, read at {url}");
}

/// Index of the node leading the events stream's replica group (its
/// server name is `n<i>`), asked through node `via`.
async fn stream_leader(cluster: &NatsCluster, via: usize) -> usize {
    let js = patient_jetstream(&cluster.node(via).url()).await;
    eventually(WAIT, "the events stream to have a leader", || {
        let js = js.clone();
        async move {
            let mut stream = js.get_stream("FEDERATION_EVENTS").await.ok()?;
            let info = stream.info().await.ok()?;
            let leader = info.cluster.clone()?.leader?;
            leader.strip_prefix('n')?.parse().ok()
        }
    })
    .await
}

async fn beat_via(url: &str, slug: &str) {
    let client = async_nats::connect(url).await.unwrap();
    let beat = json!({"project_slug": slug, "status": "online", "interval_s": 30});
    client
        .publish(format!("hub.presence.{slug}"), beat.to_string().into())
        .await
        .unwrap();
    client.flush().await.unwrap();
}

async fn online(app: &TestApp, slug: &str) {
    let path = format!("/api/fed/projects/{slug}");
    eventually(WAIT, &format!("{slug} online"), || async {
        let p = app.try_get_value(&path, Some(AGENT_KEY)).await?;
        (p["status"] == "online").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_three_node_cluster_losing_any_node_loses_no_event_and_no_heartbeat() {
    let mut cluster = NatsCluster::start(3).await;
    let app = spawn_app_yaml(&format!(
        "{}  stream_replicas: 3\n",
        nats_yaml(&cluster.urls())
    ))
    .await;

    // Created with three replicas, one on each node.
    let fra = spoke_in(&app, "FRA", "approved").await;
    wait_all_published(&app.pool, WAIT).await;
    let js = patient_jetstream(&cluster.node(0).url()).await;
    let info = js
        .get_stream("FEDERATION_EVENTS")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(info.config.num_replicas, 3);
    let group = info
        .cluster
        .expect("a clustered stream reports its replica group");
    assert_eq!(
        group.replicas.len(),
        2,
        "two followers beside the leader: {group:?}"
    );

    // Hubs publish on whichever node is near them; the service hears all.
    for (i, slug) in ["alpha", "beta", "gamma"].into_iter().enumerate() {
        app.post_project(Some(AGENT_KEY), &project(slug)).await;
        beat_via(&cluster.node(i).url(), slug).await;
        online(&app, slug).await;
    }

    // The stream's leader dies: the others elect one and events keep going.
    let leader = stream_leader(&cluster, 0).await;
    cluster.node_mut(leader).kill().await;
    let up = (leader + 1) % 3;
    act_ok(&app, &fra, "suspend").await;
    for code in ["DEU", "GBR", "NLD"] {
        spoke_in(&app, code, "approved").await;
    }
    wait_all_published(&app.pool, WAIT).await;
    stream_matches_outbox(&app, &cluster.node(up).url()).await;
    app.post_project(Some(AGENT_KEY), &project("delta")).await;
    beat_via(&cluster.node(up).url(), "delta").await;
    online(&app, "delta").await;

    // It comes back and catches up; then another node dies, so the stream
    // now depends on the one that was down.
    cluster.node_mut(leader).restart().await;
    let other = (leader + 2) % 3;
    let js_back = patient_jetstream(&cluster.node(leader).url()).await;
    let expected = outbox_ids(&app.pool).await.len() as u64;
    eventually(WAIT, "the restarted node to hold every event again", || {
        let js = js_back.clone();
        async move { (stream_len(&js).await == expected).then_some(()) }
    })
    .await;
    cluster.node_mut(other).kill().await;
    act_ok(&app, &fra, "reinstate").await;
    for code in ["BEL", "ITA"] {
        spoke_in(&app, code, "pending").await;
    }
    wait_all_published(&app.pool, WAIT).await;
    stream_matches_outbox(&app, &cluster.node(leader).url()).await;
    stream_matches_outbox(&app, &cluster.node(up).url()).await;
}
