//! Tenant routing (issue 11): the admin API, resolution by weight, region,
//! primary, priority and default, the hubs' liveness, and the gateways'
//! snapshot in NATS KV. Database URLs never come back out.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};

use crate::heartbeats::{rig, Rig};
use crate::helpers::*;

/// A `routing.url_key` for tests (64 hex digits).
const URL_KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
const PASSWORD: &str = "s3cret-Pa55word";

fn routing_yaml() -> String {
    format!("routing:\n  url_key: \"{URL_KEY}\"\n")
}

fn db_url(host: &str) -> String {
    format!("postgres://app:{PASSWORD}@{host}:5432/tenants?sslmode=require")
}

async fn put_node(app: &TestApp, id: &str, body: Value) -> reqwest::Response {
    app.put_json(
        &format!("/api/fed/routing/nodes/{id}"),
        Some(ADMIN_KEY),
        &body,
    )
    .await
}

async fn node(app: &TestApp, id: &str, region: &str, hub: Option<&str>, priority: i32) {
    let res = put_node(
        app,
        id,
        json!({"region": region, "hub": hub, "priority": priority, "database_url": db_url(&format!("{id}.db.internal"))}),
    )
    .await;
    assert!(res.status().is_success(), "{:?}", res.text().await);
}

async fn rule(app: &TestApp, tenant: &str, region: &str, node: &str, primary: bool, weight: i64) {
    let body = json!({"tenant_id": tenant, "region": region, "node_id": node, "is_primary": primary, "weight": weight});
    let res = app
        .post_json("/api/fed/routing/rules", Some(ADMIN_KEY), &body)
        .await;
    assert!(res.status().is_success(), "{:?}", res.text().await);
}

async fn map(app: &TestApp, tenant: &str, node: &str, region: &str) {
    let body = json!({"primary_node_id": node, "primary_region": region, "federation_metadata": {"tier": "gold"}});
    let res = app
        .put_json(
            &format!("/api/fed/routing/tenants/{tenant}"),
            Some(ADMIN_KEY),
            &body,
        )
        .await;
    assert!(res.status().is_success(), "{:?}", res.text().await);
}

async fn resolve(app: &TestApp, query: &str) -> Value {
    app.get_ok(
        &format!("/api/fed/routing/resolve?{query}"),
        Some(ADMIN_KEY),
    )
    .await
}

fn picked(r: &Value) -> (&str, &str) {
    (
        r["node_id"].as_str().unwrap_or(""),
        r["reason"].as_str().unwrap_or(""),
    )
}

/// No part of a stored URL that is a secret or the URL itself.
fn assert_no_url(text: &str, what: &str) {
    assert!(
        !text.contains(PASSWORD),
        "{what} carries a password: {text}"
    );
    assert!(!text.contains("://app"), "{what} carries a URL: {text}");
}

#[tokio::test]
async fn nodes_rules_and_tenants_change_with_audit_and_events_and_never_show_a_url() {
    let app = spawn_app_yaml(&routing_yaml()).await;
    let res = put_node(
        &app,
        "eu-1",
        json!({"region": "eu-west", "priority": 5, "database_url": db_url("db-eu.internal"), "metadata": {"dc": "fra"}}),
    )
    .await;
    assert_eq!(res.status(), 201);
    assert_eq!(
        res.headers()["location"].to_str().unwrap(),
        "/api/fed/routing/nodes/eu-1"
    );
    let created: Value = res.json().await.unwrap();
    assert_eq!(created["database_host"], "db-eu.internal:5432");
    let fingerprint = created["database_fingerprint"].as_str().unwrap().to_owned();
    assert!(fingerprint.starts_with("hmac-sha256:"), "{created}");
    assert_eq!(
        created["effective_status"], "online",
        "no hub: always usable"
    );
    assert!(created.get("database_url").is_none(), "{created}");
    // Replaced without a URL: the stored one stays.
    let res = put_node(&app, "eu-1", json!({"region": "eu-west", "priority": 7})).await;
    assert_eq!(res.status(), 200);
    let replaced: Value = res.json().await.unwrap();
    assert_eq!(replaced["database_fingerprint"], fingerprint.as_str());
    assert_eq!(replaced["priority"], 7);
    assert_eq!(replaced["metadata"], json!({}));

    rule(&app, "acme", "eu-west", "eu-1", true, 100).await;
    map(&app, "acme", "eu-1", "eu-west").await;
    let rules = app
        .get_ok("/api/fed/routing/rules?tenant=acme", Some(ADMIN_KEY))
        .await;
    assert_eq!(rules.as_array().unwrap().len(), 1, "{rules}");
    let rule_id = rules[0]["id"].as_str().unwrap().to_owned();
    let boot = app
        .get_ok("/api/fed/routing/tenants/acme/bootstrap", Some(AGENT_KEY))
        .await;
    assert_eq!(
        boot,
        json!({"federation": {"primaryNodeId": "eu-1", "primaryRegion": "eu-west", "metadata": {"tier": "gold"}}})
    );
    assert_eq!(
        app.get_status("/api/fed/routing/tenants/nobody/bootstrap", Some(ADMIN_KEY))
            .await,
        404
    );

    // In use, and the default node: refused, and nothing changes.
    let p = assert_problem(
        app.delete("/api/fed/routing/nodes/eu-1", Some(ADMIN_KEY))
            .await,
        409,
    )
    .await;
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("1 rule(s) and 1 tenant(s)"),
        "{p}"
    );
    assert_problem(
        app.delete("/api/fed/routing/nodes/default", Some(ADMIN_KEY))
            .await,
        409,
    )
    .await;
    // Agent keys may not change or read the tables.
    assert_problem(
        app.get("/api/fed/routing/nodes", Some(AGENT_KEY)).await,
        403,
    )
    .await;

    let path = format!("/api/fed/routing/rules/{rule_id}");
    assert_eq!(app.delete(&path, Some(ADMIN_KEY)).await.status(), 204);
    assert_eq!(app.get_status(&path, Some(ADMIN_KEY)).await, 404);
    let res = app
        .delete("/api/fed/routing/tenants/acme", Some(ADMIN_KEY))
        .await;
    assert_eq!(res.status(), 204);
    let res = app
        .delete("/api/fed/routing/nodes/eu-1", Some(ADMIN_KEY))
        .await;
    assert_eq!(res.status(), 204);
    let nodes = app.get_ok("/api/fed/routing/nodes", Some(ADMIN_KEY)).await;
    assert_eq!(strings(&nodes, "node_id"), ["default"]);

    let actions: Vec<(String, String, String)> = app.rows("SELECT action, target, outcome FROM audit_log WHERE action LIKE 'routing.%' ORDER BY id").await;
    let actions: Vec<(&str, &str, &str)> = actions
        .iter()
        .map(|(a, t, o)| (a.as_str(), t.as_str(), o.as_str()))
        .collect();
    let rule_target = format!("routing_rule:{rule_id}");
    assert_eq!(
        actions,
        [
            ("routing.node.set", "routing_node:eu-1", "success"),
            ("routing.node.set", "routing_node:eu-1", "success"),
            ("routing.rule.set", rule_target.as_str(), "success"),
            ("routing.tenant.set", "routing_tenant:acme", "success"),
            ("routing.node.delete", "routing_node:eu-1", "refused"),
            ("routing.node.delete", "routing_node:default", "refused"),
            ("routing.rule.delete", rule_target.as_str(), "success"),
            ("routing.tenant.delete", "routing_tenant:acme", "success"),
            ("routing.node.delete", "routing_node:eu-1", "success"),
        ]
    );
    let events: Vec<(String, Value)> = app.rows("SELECT event_type, data FROM outbox WHERE event_type LIKE 'federation.routing.%' ORDER BY seq").await;
    let kinds: Vec<String> = events
        .iter()
        .map(|(t, d)| format!("{t} {}", d["change"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            "federation.routing.node set",
            "federation.routing.node set",
            "federation.routing.rule set",
            "federation.routing.tenant set",
            "federation.routing.rule deleted",
            "federation.routing.tenant deleted",
            "federation.routing.node deleted",
        ]
    );
    assert_eq!(events[0].1["after"]["database_host"], "db-eu.internal:5432");
    // Nowhere in plain text: events, audit log, the table.
    for (_, data) in &events {
        assert_no_url(&data.to_string(), "an event");
    }
    let stored: Vec<String> = app.column("SELECT row_to_json(a)::text FROM audit_log a UNION ALL \
         SELECT encode(database_url_sealed, 'escape') FROM federation_nodes WHERE database_url_sealed IS NOT NULL").await;
    for row in stored {
        assert_no_url(&row, "a stored row");
    }
}

#[tokio::test]
async fn a_sealed_url_is_not_plain_text_in_the_table_and_opens_with_the_key() {
    let app = spawn_app_yaml(&routing_yaml()).await;
    node(&app, "n1", "eu", None, 0).await;
    let sealed: Vec<u8> = app
        .value("SELECT database_url_sealed FROM federation_nodes WHERE node_id = 'n1'")
        .await;
    assert_no_url(&String::from_utf8_lossy(&sealed), "the sealed column");
    let text: String = app
        .value("SELECT row_to_json(n)::text FROM federation_nodes n WHERE node_id = 'n1'")
        .await;
    assert_no_url(&text, "the node's row");
    let mut key = [0u8; 32];
    key.copy_from_slice(&hex::decode(URL_KEY).unwrap());
    let seal = service::fed_routing::seal::UrlSeal::new(key);
    use secrecy::ExposeSecret;
    let opened = seal.open("n1", &sealed).unwrap();
    assert_eq!(opened.expose_secret(), db_url("n1.db.internal"));
}

#[tokio::test]
async fn bad_input_is_refused_with_every_field_and_nothing_changes() {
    let app = spawn_app_yaml(&routing_yaml()).await;
    let p = assert_problem(
        put_node(
            &app,
            "n1",
            json!({"region": "EU West", "hub": "Not_A_Slug", "database_url": "mysql://x@y/z", "priority": 1_i64 << 40}),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(
        error_fields(&p),
        ["database_url", "hub", "priority", "region"],
        "{p}"
    );
    assert_no_url(&p.to_string(), "a problem");
    let p = assert_problem(
        app.post_json(
            "/api/fed/routing/rules",
            Some(ADMIN_KEY),
            &json!({"tenant_id": "-x", "region": "eu", "node_id": "nope", "weight": -1}),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(error_fields(&p), ["tenant_id", "weight"], "{p}");
    // Well formed, but the node is not there: a conflict with the state.
    let p = assert_problem(
        app.post_json(
            "/api/fed/routing/rules",
            Some(ADMIN_KEY),
            &json!({"tenant_id": "t", "region": "eu", "node_id": "nope"}),
        )
        .await,
        409,
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("\"nope\""), "{p}");
    assert_problem(
        app.get("/api/fed/routing/rules?tenant=", Some(ADMIN_KEY))
            .await,
        422,
    )
    .await;
    let p = assert_problem(
        app.get("/api/fed/routing/resolve?tenant=-x", Some(ADMIN_KEY))
            .await,
        422,
    )
    .await;
    assert_eq!(error_fields(&p), ["tenant"], "{p}");
    assert_problem(
        app.get(
            "/api/fed/routing/resolve?tenant=t&region=EU",
            Some(ADMIN_KEY),
        )
        .await,
        422,
    )
    .await;
    app.assert_counts(
        &[
            ("federation_nodes", 1),
            ("federation_routing", 0),
            ("tenant_federation_map", 0),
        ],
        "after refusals",
    )
    .await;

    // Without a key, a URL cannot be stored.
    let keyless = spawn_app().await;
    let p = assert_problem(
        put_node(
            &keyless,
            "n1",
            json!({"region": "eu", "database_url": db_url("h")}),
        )
        .await,
        409,
    )
    .await;
    assert!(
        p["detail"].as_str().unwrap().contains("routing.url_key"),
        "{p}"
    );
    assert_no_url(&p.to_string(), "a problem");
}

#[tokio::test]
async fn weights_share_ten_thousand_keys_within_chi_square_bounds_and_keys_stick() {
    let app = spawn_app_yaml(&routing_yaml()).await;
    let weights = [("w1", 100), ("w2", 300), ("w3", 600)];
    for (id, w) in weights {
        node(&app, id, "eu", None, 0).await;
        rule(&app, "bulk", "eu", id, false, w).await;
    }
    const N: usize = 10_000;
    let counts: HashMap<String, usize> = futures::stream::iter(0..N)
        .map(|i| {
            let app = &app;
            async move {
                let r = resolve(app, &format!("tenant=bulk&key=user-{i}")).await;
                assert_eq!(r["reason"], "weighted", "{r}");
                r["node_id"].as_str().unwrap().to_owned()
            }
        })
        .buffer_unordered(16)
        .fold(HashMap::new(), |mut m, node| async move {
            *m.entry(node).or_insert(0) += 1;
            m
        })
        .await;
    let total: f64 = weights.iter().map(|(_, w)| *w as f64).sum();
    let chi2: f64 = weights
        .iter()
        .map(|(id, w)| {
            let expected = N as f64 * *w as f64 / total;
            let seen = counts.get(*id).copied().unwrap_or(0) as f64;
            (seen - expected).powi(2) / expected
        })
        .sum();
    // Two degrees of freedom: 13.82 is the 99.9th percentile.
    assert!(chi2 < 13.82, "chi-square {chi2:.2} over {counts:?}");
    // The same key, the same node, every time; a region rule says so too.
    for i in 0..20 {
        let q = format!("tenant=bulk&key=session-{i}");
        let first = resolve(&app, &q).await["node_id"].clone();
        for _ in 0..3 {
            assert_eq!(resolve(&app, &q).await["node_id"], first);
        }
        let r = resolve(&app, &format!("{q}&region=eu")).await;
        assert_eq!(
            (r["node_id"].clone(), r["reason"].clone()),
            (first, json!("region_rule"))
        );
    }
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert_contains(&metrics, "routing_resolutions_total{reason=\"weighted\"}");
}

#[tokio::test]
async fn region_rules_then_primary_then_weight_then_priority_then_default() {
    let app = spawn_app_yaml(&routing_yaml()).await;
    node(&app, "eu-1", "eu-west", None, 0).await;
    node(&app, "us-1", "us-east", None, 0).await;
    node(&app, "standby", "eu-west", None, 9).await;
    map(&app, "acme", "eu-1", "eu-west").await;
    rule(&app, "acme", "us-east", "us-1", false, 100).await;
    rule(&app, "acme", "eu-west", "standby", false, 0).await;
    let r = resolve(&app, "tenant=acme&region=us-east").await;
    assert_eq!(picked(&r), ("us-1", "region_rule"));
    assert_eq!(r["region"], "us-east");
    assert_eq!(r["node_region"], "us-east");
    let r = resolve(&app, "tenant=acme").await;
    assert_eq!(picked(&r), ("eu-1", "primary"));
    assert_eq!(r["region"], "eu-west");
    // A region without rules: the primary.
    assert_eq!(
        picked(&resolve(&app, "tenant=acme&region=ap-south").await),
        ("eu-1", "primary")
    );
    // Nodes disabled one after another: the primary, then the weighted
    // rules (the standby, of weight 0, by priority), then the standby.
    for (disabled, region, then) in [
        ("eu-1", "eu-west", ("us-1", "weighted")),
        ("us-1", "us-east", ("standby", "fallback_priority")),
        ("standby", "eu-west", ("default", "default")),
    ] {
        let body = json!({"region": region, "status": "disabled"});
        put_node(&app, disabled, body).await;
        assert_eq!(picked(&resolve(&app, "tenant=acme").await), then);
    }
    let r = resolve(&app, "tenant=stranger&region=eu-west").await;
    assert_eq!(
        r,
        json!({"tenant": "stranger", "region": "eu-west", "node_id": "default", "node_region": "default", "reason": "default"})
    );
    assert_no_url(&r.to_string(), "a resolution");
    // No tenant: the default node, as a gateway routes such a request.
    let r = resolve(&app, "region=eu-west").await;
    assert_eq!(picked(&r), ("default", "default"));
    assert!(r["tenant"].is_null(), "{r}");
}

/// The routing tables changed behind the service's back (psql): the
/// notification brings it in without polling.
#[tokio::test]
async fn a_change_made_elsewhere_is_resolved_at_once() {
    let app = spawn_app_yaml(&routing_yaml()).await;
    assert_eq!(
        picked(&resolve(&app, "tenant=late").await),
        ("default", "default")
    );
    app.sql("INSERT INTO federation_nodes (node_id, region) VALUES ('side', 'eu')")
        .await;
    app.sql("INSERT INTO tenant_federation_map (tenant_id, primary_node_id, primary_region) VALUES ('late', 'side', 'eu')")
        .await;
    testkit::eventually(
        Duration::from_secs(5),
        "the change to be resolved",
        || async {
            let r = app
                .try_get_value("/api/fed/routing/resolve?tenant=late", Some(ADMIN_KEY))
                .await?;
            (r["node_id"] == "side").then_some(())
        },
    )
    .await;
}

async fn kv_snapshot(r: &Rig) -> Option<Value> {
    let js = async_nats::jetstream::new(r.client.clone());
    let kv = js.get_key_value("fed_routing").await.ok()?;
    let bytes = kv.get("snapshot").await.ok()??;
    let text = String::from_utf8(bytes.to_vec()).ok()?;
    assert_no_url(&text, "the KV snapshot");
    serde_json::from_str(&text).ok()
}

fn node_status<'a>(snapshot: &'a Value, id: &str) -> Option<&'a str> {
    snapshot["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["node_id"] == id)?["status"]
        .as_str()
}

#[tokio::test]
async fn a_silent_hub_is_skipped_until_it_beats_again_here_and_in_the_snapshot() {
    let r = rig(&format!(
        "heartbeat:\n  degraded_after: 1s\n  stale_threshold: 2s\n  check_interval: 1s\n  min_threshold: 1s\n  max_threshold: 2s\n{}",
        routing_yaml()
    ))
    .await;
    let app = &r.app;
    r.online("alpha").await;
    node(app, "node-a", "eu", Some("alpha"), 0).await;
    node(app, "node-b", "eu", None, 0).await;
    map(app, "acme", "node-a", "eu").await;
    rule(app, "acme", "eu", "node-b", false, 0).await;
    assert_eq!(
        picked(&resolve(app, "tenant=acme").await),
        ("node-a", "primary")
    );
    testkit::eventually(
        Duration::from_secs(10),
        "the snapshot with node-a online",
        || async {
            let s = kv_snapshot(&r).await?;
            (node_status(&s, "node-a") == Some("online") && s["tenants"][0]["tenant_id"] == "acme")
                .then_some(())
        },
    )
    .await;

    // Silence: the sweeper marks alpha offline; resolution moves at once.
    r.wait_status("alpha", "offline").await;
    assert_eq!(
        picked(&resolve(app, "tenant=acme").await),
        ("node-b", "fallback_priority")
    );
    let nodes = app.get_ok("/api/fed/routing/nodes", Some(ADMIN_KEY)).await;
    let a = nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node_id"] == "node-a")
        .unwrap();
    assert_eq!(a["effective_status"], "offline");
    testkit::eventually(
        Duration::from_secs(10),
        "the snapshot with node-a offline",
        || async {
            (node_status(&kv_snapshot(&r).await?, "node-a") == Some("offline")).then_some(())
        },
    )
    .await;

    // It beats again: back to its primary.
    r.beat("alpha", "online").await;
    r.wait_status("alpha", "online").await;
    assert_eq!(
        picked(&resolve(app, "tenant=acme").await),
        ("node-a", "primary")
    );
    testkit::eventually(
        Duration::from_secs(10),
        "the snapshot with node-a back",
        || async {
            (node_status(&kv_snapshot(&r).await?, "node-a") == Some("online")).then_some(())
        },
    )
    .await;

    // A hub token may resolve (and nothing else here).
    let issued = app
        .post_value(
            "/api/fed/projects/alpha/credentials",
            Some(ADMIN_KEY),
            &json!({}),
        )
        .await;
    let token = issued["token"].as_str().unwrap().to_owned();
    let res = app
        .get("/api/fed/routing/resolve?tenant=acme", Some(&token))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        app.get_status("/api/fed/routing/nodes", Some(&token)).await,
        403
    );
}

#[path = "../../../routing/examples/gateway.rs"]
#[allow(dead_code)]
mod gateway_example;

/// `GET path` on the example gateway with `headers`: the database that
/// answered and why.
async fn whoami(base: &str, path: &str, tenant_header: Option<&str>) -> Option<(String, String)> {
    let mut req = reqwest::Client::new().get(format!("{base}{path}"));
    if let Some(t) = tenant_header {
        req = req.header("X-Tenant-ID", t);
    }
    let v: Value = req.send().await.ok()?.json().await.ok()?;
    Some((
        v["database"].as_str()?.to_owned(),
        v["reason"].as_str()?.to_owned(),
    ))
}

#[tokio::test]
async fn the_example_gateway_runs_each_tenant_on_its_node_and_reroutes_a_silent_hub() {
    let r = rig(&format!(
        "heartbeat:\n  degraded_after: 1s\n  stale_threshold: 2s\n  check_interval: 1s\n  min_threshold: 1s\n  max_threshold: 2s\n{}",
        routing_yaml()
    ))
    .await;
    let app = &r.app;
    let (db_a, db_b) = (
        testkit::TestDb::empty().await,
        testkit::TestDb::empty().await,
    );
    r.online("alpha").await;
    node(app, "node-a", "eu", Some("alpha"), 0).await;
    node(app, "node-b", "eu", None, 0).await;
    map(app, "acme", "node-a", "eu").await;
    rule(app, "acme", "eu", "node-b", false, 0).await;
    map(app, "bravo", "node-b", "eu").await;
    testkit::eventually(Duration::from_secs(10), "the snapshot", || async {
        (kv_snapshot(&r).await?["tenants"].as_array()?.len() == 2).then_some(())
    })
    .await;

    // The gateway: its own URLs for the nodes, the snapshot from KV.
    let urls = gateway_example::parse_node_urls(&format!(
        "node-a={},node-b={},node-x=postgres://postgres@127.0.0.1:1/gone",
        db_a.url, db_b.url
    ));
    let mut registry = prometheus_client::registry::Registry::default();
    let router = ::routing::gateway::TenantRouter::new(urls, app.pool.clone(), &mut registry);
    tokio::spawn(router.clone().follow(
        r.client.clone(),
        ::routing::KV_BUCKET,
        Duration::from_secs(1),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, gateway_example::app(router)).await });

    // A fresh beat: the silence is counted from here.
    r.beat("alpha", "online").await;
    let silent_since = std::time::Instant::now();
    let a = (db_a.name.clone(), "primary".to_owned());
    testkit::eventually(Duration::from_secs(10), "acme on node A", || async {
        (whoami(&base, "/tenants/acme/whoami", None).await? == a).then_some(())
    })
    .await;
    assert_eq!(
        whoami(&base, "/whoami", Some("bravo")).await,
        Some((db_b.name.clone(), "primary".to_owned()))
    );
    let default_db: String = app.value("SELECT current_database()::text").await;
    assert_eq!(
        whoami(&base, "/whoami?tenant=nobody", None).await,
        Some((default_db, "default".to_owned()))
    );

    // alpha goes silent: within one stale threshold (2 s) and a second for
    // the sweep and the snapshot, acme runs on node B; it beats again: back
    // on node A.
    let b = (db_b.name.clone(), "fallback_priority".to_owned());
    testkit::eventually(
        Duration::from_secs(10),
        "acme rerouted to node B",
        || async { (whoami(&base, "/tenants/acme/whoami", None).await? == b).then_some(()) },
    )
    .await;
    let took = silent_since.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "rerouted {took:?} after the last beat"
    );
    r.beat("alpha", "online").await;
    testkit::eventually(Duration::from_secs(10), "acme back on node A", || async {
        (whoami(&base, "/tenants/acme/whoami", None).await? == a).then_some(())
    })
    .await;
    // A node whose database does not answer: once the gateway's health
    // check finds it so, its tenant goes to the standby.
    node(app, "node-x", "eu", None, 0).await;
    map(app, "xray", "node-x", "eu").await;
    rule(app, "xray", "eu", "node-b", false, 0).await;
    // (The gateway learns node-x's URL from its own settings: here, none
    // reachable.)
    testkit::eventually(
        Duration::from_secs(30),
        "xray off the dead node",
        || async {
            let (db, reason) = whoami(&base, "/whoami?tenant=xray", None).await?;
            (db == db_b.name && reason == "fallback_priority").then_some(())
        },
    )
    .await;
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert_contains(
        &text,
        "routing_decisions_total{reason=\"fallback_priority\"}",
    );
}

#[tokio::test]
async fn the_cli_sets_nodes_rules_and_tenants_and_resolves() {
    let app = spawn_app_yaml(&routing_yaml()).await;
    let run = |args: &'static [&'static str], stdin: Option<String>| {
        let base = app.base.clone();
        async move {
            let mut cmd = tokio::process::Command::from(testkit::clean_command(env!(
                "CARGO_BIN_EXE_federation"
            )));
            cmd.args(args)
                .env("FEDERATION_URL", base)
                .env("FEDERATION_API_KEY", ADMIN_KEY)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            let mut child = cmd.spawn().unwrap();
            let mut input = child.stdin.take().unwrap();
            if let Some(text) = stdin {
                use tokio::io::AsyncWriteExt;
                input.write_all(text.as_bytes()).await.unwrap();
            }
            drop(input);
            let out = child.wait_with_output().await.unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            text
        }
    };
    let set = run(
        &[
            "routing",
            "nodes",
            "set",
            "eu-1",
            "--region",
            "eu",
            "--priority",
            "-3",
            "--database-url-stdin",
        ],
        Some(format!("{}\n", db_url("db-eu.internal"))),
    )
    .await;
    assert_eq!(set, "node eu-1 set (online)\n");
    let nodes = run(&["routing", "nodes", "list"], None).await;
    assert_contains(&nodes, "db-eu.internal:5432");
    assert_no_url(&nodes, "the node list");
    run(
        &[
            "routing", "rules", "set", "acme", "eu", "eu-1", "--weight", "5",
        ],
        None,
    )
    .await;
    run(
        &[
            "routing", "tenants", "set", "acme", "eu-1", "--region", "eu",
        ],
        None,
    )
    .await;
    let resolved = run(&["-o", "json", "routing", "resolve", "acme"], None).await;
    let r: Value = serde_json::from_str(&resolved).unwrap();
    assert_eq!(picked(&r), ("eu-1", "primary"));
    let table = run(&["routing", "resolve", "acme", "--region", "eu"], None).await;
    assert!(
        table.contains("eu-1 (eu)") && table.contains("region_rule"),
        "{table}"
    );
    let rules = app.get_ok("/api/fed/routing/rules", Some(ADMIN_KEY)).await;
    assert_eq!(rules[0]["weight"], 5);
    assert_eq!(
        app.get_ok("/api/fed/routing/nodes/eu-1", Some(ADMIN_KEY))
            .await["priority"],
        -3
    );
}

/// The service's own log, at its most verbose, never carries a URL it was
/// given: not the request, not the statements, not the events.
#[tokio::test]
async fn no_database_url_reaches_the_log_even_at_trace() {
    let tmp = tempfile::tempdir().unwrap();
    let db = testkit::TestDb::create().await;
    let port = testkit::free_port();
    let log_path = tmp.path().join("service.log");
    let log_file = std::fs::File::create(&log_path).unwrap();
    let mut child = crate::process::serve(&db.url, port)
        .env("FEDERATION__ROUTING__URL_KEY", URL_KEY)
        .env("FEDERATION__NATS__ENABLED", "false")
        .env("FEDERATION__SERVER__HOST", "127.0.0.1")
        .env("RUST_LOG", "trace")
        // A file, not a pipe that nobody reads until the end.
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .unwrap();
    crate::process::wait_ready(port).await;
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let url = db_url("db-eu.internal");
    for body in [
        json!({"region": "eu", "database_url": url}),
        // Refused: a problem document, and a log line about it.
        json!({"region": "EU", "database_url": format!("{url} ")}),
    ] {
        client
            .put(format!("{base}/api/fed/routing/nodes/eu-1"))
            .header("x-api-key", ADMIN_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
    }
    let listed = client
        .get(format!("{base}/api/fed/routing/nodes"))
        .header("x-api-key", ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_contains(&listed, "db-eu.internal:5432");
    crate::process::signal(child.id(), "-TERM");
    child.wait().unwrap();
    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(logs.contains("routing node set"), "the change is logged");
    assert_no_url(&logs, "the service's log");
}
