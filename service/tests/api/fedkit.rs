//! Support for the federation tests: spokes, outbox reads, JetStream
//! consumption and a small Server-Sent-Events client.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

/// A registration of `code` whose IdP answers at these URLs.
pub fn registration_with(code: &str, idp_public_url: &str, idp_internal_url: &str) -> Value {
    json!({
        "instance_code": code,
        "name": format!("{code} Instance"),
        "base_url": format!("https://{}.example:3010", code.to_lowercase()),
        "idp_public_url": idp_public_url,
        "idp_internal_url": idp_internal_url,
    })
}

/// A full registration: contact and certificate fingerprint too.
pub fn spoke_body(code: &str) -> Value {
    let lower = code.to_lowercase();
    let mut body = registration_with(
        code,
        &format!("https://idp.{lower}.example:8453"),
        &format!("https://keycloak-{lower}:8443"),
    );
    body["contact"] = json!(format!("ops@{lower}.example"));
    body["cert_fingerprint"] = json!("AB".repeat(32));
    body
}

/// `POST /api/federation/register` with `key`.
pub async fn post_registration(app: &TestApp, key: &str, body: &Value) -> reqwest::Response {
    app.post_json("/api/federation/register", Some(key), body)
        .await
}

/// Registers a spoke (agent key) and returns it.
pub async fn register(app: &TestApp, code: &str) -> Value {
    let res = post_registration(app, AGENT_KEY, &spoke_body(code)).await;
    assert_eq!(res.status(), 201, "registering {code}");
    res.json().await.unwrap()
}

/// Applies a lifecycle action with the admin key.
pub async fn act(app: &TestApp, id: &str, action: &str) -> reqwest::Response {
    app.post_json(
        &format!("/api/federation/spokes/{id}/{action}"),
        Some(ADMIN_KEY),
        &json!({"reason": format!("test {action}"), "operator": "alice"}),
    )
    .await
}

pub async fn act_ok(app: &TestApp, id: &str, action: &str) -> Value {
    let res = act(app, id, action).await;
    assert_eq!(res.status(), 200, "{action} {id}");
    res.json().await.unwrap()
}

/// A registered spoke brought to `status` through the API.
pub async fn spoke_in(app: &TestApp, code: &str, status: &str) -> String {
    let id = register(app, code).await["id"].as_str().unwrap().to_owned();
    let path: &[&str] = match status {
        "pending" => &[],
        "approved" => &["approve"],
        "suspended" => &["approve", "suspend"],
        "revoked" => &["revoke"],
        other => panic!("no path to {other}"),
    };
    for action in path {
        act_ok(app, &id, action).await;
    }
    id
}

/// A service with one spoke, `code`, brought to `status`: the app and the
/// spoke's id.
pub async fn app_with_spoke(code: &str, status: &str) -> (TestApp, String) {
    let app = spawn_app().await;
    let id = spoke_in(&app, code, status).await;
    (app, id)
}

/// Outbox event ids in log order.
pub async fn outbox_ids(pool: &sqlx::PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT id::text FROM outbox ORDER BY xid, seq")
        .fetch_all(pool)
        .await
        .unwrap()
}

pub async fn outbox_unpublished(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Settings that turn NATS on against `url`, with a fast relay.
pub fn nats_yaml(url: &str) -> String {
    format!("nats:\n  url: \"{url}\"\nevents:\n  poll_interval: 100ms\n  publish_timeout: 1s\n")
}

/// One message of the events stream.
#[derive(Debug, Clone)]
pub struct StreamEvent {
    pub msg_id: String,
    pub subject: String,
    pub event: Value,
}

/// Number of messages in the events stream (0 if it does not exist yet).
pub async fn stream_len(js: &async_nats::jetstream::Context) -> u64 {
    match js.get_stream("FEDERATION_EVENTS").await {
        Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
        Err(_) => 0,
    }
}

/// Waits up to `limit` until the outbox holds no unpublished event.
pub async fn wait_all_published(pool: &sqlx::PgPool, limit: Duration) {
    testkit::eventually(limit, "every outbox event to be published", || async {
        (outbox_unpublished(pool).await == 0).then_some(())
    })
    .await;
}

/// A JetStream context on one node that waits up to 30 s per API request:
/// on two busy cores a clustered request can outlast the client's default
/// 5 s while the cluster settles after a node died.
pub async fn patient_jetstream(url: &str) -> async_nats::jetstream::Context {
    let client = async_nats::connect(url).await.unwrap();
    async_nats::jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(30))
        .build(client)
}

pub async fn jetstream(url: &str) -> async_nats::jetstream::Context {
    let client = async_nats::connect(url).await.unwrap();
    async_nats::jetstream::new(client)
}

/// Every message of the events stream, in stream order, read with a
/// JetStream pull consumer.
pub async fn stream_events(js: &async_nats::jetstream::Context) -> Vec<StreamEvent> {
    use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
    let stream = js.get_stream("FEDERATION_EVENTS").await.unwrap();
    let total = stream_len(js).await as usize;
    let consumer = stream
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut out = Vec::with_capacity(total);
    let batches = (1000, Duration::from_secs(1));
    pull_each(&consumer, total, batches, "the consumer", |m| {
        let msg_id = m
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        out.push(StreamEvent {
            msg_id,
            subject: m.subject.to_string(),
            event: serde_json::from_slice(&m.payload).unwrap(),
        });
        async {}
    })
    .await;
    out
}

/// Pulls `want` messages from `consumer`, in batches of up to `max` that
/// each wait up to `expires`, handing each to `each` in order; a batch that
/// brings none fails the test (`who` names the consumer).
pub async fn pull_each<F, Fut>(
    consumer: &PullConsumer,
    want: usize,
    (max, expires): (usize, Duration),
    who: &str,
    mut each: F,
) where
    F: FnMut(async_nats::jetstream::Message) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    use futures::StreamExt;
    let mut got = 0;
    while got < want {
        let mut batch = consumer
            .fetch()
            .max_messages(max)
            .expires(expires)
            .messages()
            .await
            .unwrap();
        let before = got;
        while let Some(m) = batch.next().await {
            each(m.unwrap()).await;
            got += 1;
        }
        assert!(got > before, "{who} stopped delivering");
    }
}

/// A JetStream pull consumer.
pub type PullConsumer =
    async_nats::jetstream::consumer::Consumer<async_nats::jetstream::consumer::pull::Config>;

/// `GET path` (the watch route) with the agent key and `Last-Event-ID`.
pub async fn watch_resuming(app: &TestApp, path: &str, last_event_id: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .header("X-API-Key", AGENT_KEY)
        .header("Last-Event-ID", last_event_id)
        .send()
        .await
        .unwrap()
}

/// A minimal Server-Sent-Events reader over a streaming response.
pub struct SseClient {
    res: reqwest::Response,
    buf: String,
}

impl SseClient {
    pub async fn connect(app: &TestApp, last_event_id: Option<&str>) -> SseClient {
        let mut req = app
            .client
            .get(app.url("/api/fed/watch"))
            .header("X-API-Key", AGENT_KEY)
            .header("Accept", "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 200);
        let ct = content_type(&res).to_owned();
        assert!(ct.starts_with("text/event-stream"), "{ct}");
        SseClient {
            res,
            buf: String::new(),
        }
    }

    /// Reads until the server ends the stream; `false` if it is still open
    /// after `timeout`.
    pub async fn ends_within(&mut self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, async {
            while let Ok(Some(_)) = self.res.chunk().await {}
        })
        .await
        .is_ok()
    }

    /// The next event's id and CloudEvent, or a panic after `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> (String, Value) {
        tokio::time::timeout(timeout, self.next_inner())
            .await
            .unwrap_or_else(|_| panic!("no event within {timeout:?}"))
    }

    async fn next_inner(&mut self) -> (String, Value) {
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..end + 2).collect();
                let mut id = None;
                let mut data = String::new();
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if let Some(id) = id {
                    return (id, serde_json::from_str(&data).unwrap());
                }
                // A keep-alive comment: keep reading.
            }
            let chunk = self.res.chunk().await.unwrap().expect("the stream ended");
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}
