//! The alerts, end to end: the real `federation` binary (its own database
//! and nats-server) scraped every second by a real Prometheus that evaluates
//! monitoring/alerts.yml every second. Each test drives the service into an
//! alert's condition and out of it, and asserts through Prometheus' HTTP API
//! that the alert fires, that its expression (as written in the file) holds
//! for the right series, and that it is quiet while the service is healthy.
//!
//! Only the `for:` durations change, to 1s, in a temporary copy of the rule
//! file, so a test takes seconds instead of minutes; every expression is the
//! file's own. The promtool unit tests (monitoring/tests) check the `for:`
//! durations and edge cases on synthetic series; these check that the
//! expressions match what the service really exports.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use testkit::keycloak::{KeycloakStub, StubConfig};
use testkit::{eventually, NatsServer, TestDb};
use tokio::process::Command;

use crate::prometheus::Prometheus;
use crate::promql::{alert_names, rules_of, ALERTS};
use crate::running::sample;
use crate::support::*;

const ADMIN_KEY: &str = "alerting-admin-key-0123456789";
const AGENT_KEY: &str = "alerting-agent-key-0123456789";

/// How long a condition may take to show: a scrape, an evaluation, `for: 1s`
/// and another evaluation take ~3 s; the rest is headroom for a loaded CI
/// machine.
const ALERT_WAIT: Duration = Duration::from_secs(45);

/// For alerts whose expression aggregates every label away.
const NO_LABELS: [(&str, &str); 0] = [];

/// The alerts these tests drive, and the test that drives each.
const DRIVEN: [(&str, &str); 9] = [
    (
        "FederationSyncCircuitOpen",
        "an_unreachable_keycloak_opens_the_breaker_and_fires_circuit_open",
    ),
    (
        "FederationSyncFailing",
        "an_unreachable_keycloak_opens_the_breaker_and_fires_circuit_open",
    ),
    (
        "FederationHeartbeatsDropped",
        "a_subscription_that_overflows_fires_heartbeats_dropped",
    ),
    (
        "FederationHeartbeatRejectionsSpiking",
        "malformed_heartbeats_fire_rejections_spiking",
    ),
    (
        "FederationHeartbeatWritesFailing",
        "heartbeat_writes_the_database_refuses_fire_writes_failing",
    ),
    (
        "FederationNatsDisconnected",
        "losing_nats_fires_nats_disconnected_and_not_ready",
    ),
    (
        "FederationServiceNotReady",
        "losing_nats_fires_nats_disconnected_and_not_ready",
    ),
    (
        "FederationNoProjectOnline",
        "projects_that_stop_beating_fire_no_project_online",
    ),
    (
        "FederationProjectsGoingStale",
        "projects_that_stop_beating_fire_no_project_online",
    ),
];

/// The alerts not driven here, and why.
const NOT_DRIVEN: [(&str, &str); 6] = [
    (
        "FederationServiceDown",
        "Prometheus' own `up` of a target it cannot scrape: no series of the service involved",
    ),
    (
        "FederationServiceMissing",
        "Prometheus' own `up`, absent when its configuration has no federation target",
    ),
    (
        "FederationNoSweeperLeader",
        "not driven yet: needs the sweeper's advisory lock held by a session that is no replica",
    ),
    (
        "FederationApiErrors",
        "not driven yet: needs the API to answer 5xx to more than 5% of requests",
    ),
    (
        "FederationOutboxBacklogGrowing",
        "not driven yet: needs more than 100 events the relay cannot publish",
    ),
    (
        "FederationDrift",
        "not driven yet: needs drift that sync does not repair (docs/sync.md)",
    ),
];

/// A new alert is either driven end to end here or says why not.
#[test]
fn every_alert_is_driven_end_to_end_or_says_why_not() {
    let in_file = alert_names();
    let accounted: BTreeSet<String> = DRIVEN
        .iter()
        .chain(NOT_DRIVEN.iter())
        .map(|(a, _)| (*a).to_owned())
        .collect();
    assert_eq!(
        in_file, accounted,
        "every alert of {ALERTS} belongs in DRIVEN (with its end-to-end test) or NOT_DRIVEN (with the reason)"
    );
    let driven: BTreeSet<&str> = DRIVEN.iter().map(|(a, _)| *a).collect();
    let not_driven: BTreeSet<&str> = NOT_DRIVEN.iter().map(|(a, _)| *a).collect();
    assert!(driven.is_disjoint(&not_driven));
    let this_file = read("monitoring-tests/tests/monitoring/alerting.rs");
    for (_, test) in DRIVEN {
        assert!(
            this_file.contains(&format!("async fn {test}()")),
            "no test {test}"
        );
    }
}

// ---------------------------------------------------------------- the tests

/// Sync against a Keycloak URL that refuses connections: every run fails,
/// the breaker opens (and half-opens for each failing trial). When Keycloak
/// comes up on that port, the next trial closes it and both alerts clear.
#[tokio::test]
async fn an_unreachable_keycloak_opens_the_breaker_and_fires_circuit_open() {
    let keycloak_port = testkit::free_port();
    let stack = Stack::start(json!({
        "sync": {
            "enabled": true,
            "resync_interval": "1h",
            "debounce": "100ms",
            "tfvars": { "enabled": false },
            "keycloak": {
                "base_url": format!("http://127.0.0.1:{keycloak_port}"),
                "realm": "hub",
                "client_id": "federation-sync",
                "client_secret": "stub-client-secret",
                "request_timeout": "2s",
            },
            "breaker": { "failure_threshold": 2, "open_duration": "2s" },
            "retry": { "max_attempts": 1, "base_delay": "10ms", "max_delay": "200ms" },
        }
    }))
    .await;
    let keycloak = [("target", "keycloak")];
    stack.fires("FederationSyncCircuitOpen", &keycloak).await;
    stack.fires("FederationSyncFailing", &keycloak).await;
    // What the service exported meanwhile: open, or half-open during a trial.
    let state = stack
        .service
        .metric("circuit_breaker_state{target=\"keycloak\"}")
        .await;
    assert!(matches!(state, Some(1.0 | 2.0)), "{state:?}");
    // Only the broken target: tfvars (off) has a closed breaker.
    assert_eq!(
        stack
            .active_labels("FederationSyncCircuitOpen", "target")
            .await,
        ["keycloak"]
    );

    let _keycloak = KeycloakStub::start_on(
        ([127, 0, 0, 1], keycloak_port).into(),
        StubConfig::default(),
    )
    .await
    .expect("Keycloak on the port sync calls");
    stack.resolves("FederationSyncCircuitOpen").await;
    assert_eq!(
        stack
            .service
            .metric("circuit_breaker_state{target=\"keycloak\"}")
            .await,
        Some(0.0)
    );
    stack.resolves("FederationSyncFailing").await;
}

/// A subscription buffer of 8 messages: a steady trickle of heartbeats is
/// taken without loss, a burst overflows it and the client drops.
#[tokio::test]
async fn a_subscription_that_overflows_fires_heartbeats_dropped() {
    let stack = Stack::start(json!({ "nats": { "subscription_capacity": 8 } })).await;
    stack.register(&["alpha"]).await;
    let nats = stack.nats_client().await;
    // Healthy: heartbeats at a pace the service keeps up with.
    for _ in 0..5 {
        publish_beats(&nats, &["alpha"], 1).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stack.wait_metric("heartbeat_total", |v| v >= 1.0).await;
    assert_eq!(
        stack.service.metric("nats_slow_consumer_total").await,
        Some(0.0)
    );
    stack.quiet("FederationHeartbeatsDropped").await;

    // A burst far larger than the buffer: the client drops and says so.
    eventually(
        ALERT_WAIT,
        "the NATS client to report a slow consumer",
        || {
            let (nats, service) = (nats.clone(), &stack.service);
            async move {
                publish_beats(&nats, &["alpha"], 20_000).await;
                let dropped = service.metric("nats_slow_consumer_total").await?;
                (dropped > 0.0).then_some(())
            }
        },
    )
    .await;
    stack
        .fires("FederationHeartbeatsDropped", &stack.instance())
        .await;
}

/// Valid heartbeats are quiet; a stream of payloads that are not JSON
/// (well above 5% of the traffic and 0.05/s) fires, labelled with the reason.
#[tokio::test]
async fn malformed_heartbeats_fire_rejections_spiking() {
    let stack = Stack::start(json!({})).await;
    stack.register(&["alpha"]).await;
    let nats = stack.nats_client().await;
    publish_beats(&nats, &["alpha"], 20).await;
    stack.wait_metric("heartbeat_total", |v| v >= 20.0).await;
    stack.quiet("FederationHeartbeatRejectionsSpiking").await;

    for _ in 0..200 {
        nats.publish("hub.presence.alpha", "not json".into())
            .await
            .expect("publish");
    }
    nats.flush().await.expect("flush");
    stack
        .wait_metric("heartbeat_rejected_total{reason=\"not_json\"}", |v| {
            v >= 200.0
        })
        .await;
    stack
        .fires(
            "FederationHeartbeatRejectionsSpiking",
            &[("reason", "not_json")],
        )
        .await;
    assert_eq!(
        stack
            .active_labels("FederationHeartbeatRejectionsSpiking", "reason")
            .await,
        ["not_json"],
        "only the reason that spiked"
    );
}

/// Heartbeat writes refused by the database (a trigger that raises on
/// every update of `projects`: the tests connect as a superuser, whom a
/// revoked privilege would not stop). The flusher keeps retrying; once the
/// trigger is gone the pending heartbeats are written and the alert clears.
#[tokio::test]
async fn heartbeat_writes_the_database_refuses_fire_writes_failing() {
    let stack = Stack::start(json!({})).await;
    stack.register(&["alpha"]).await;
    let nats = stack.nats_client().await;
    eventually(ALERT_WAIT, "a heartbeat to be written", || {
        let (nats, stack) = (nats.clone(), &stack);
        async move {
            publish_beats(&nats, &["alpha"], 1).await;
            let online = stack
                .service
                .metric("catalog_projects_by_status{status=\"online\"}")
                .await?;
            (online == 1.0).then_some(())
        }
    })
    .await;
    assert_eq!(
        stack.service.metric("heartbeat_writes_failing").await,
        Some(0.0)
    );
    stack.quiet("FederationHeartbeatWritesFailing").await;

    let pool = stack.pool().await;
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_writes() RETURNS trigger LANGUAGE plpgsql AS \
           $$ BEGIN RAISE EXCEPTION 'heartbeat writes refused by the test'; END $$; \
         CREATE TRIGGER refuse_writes BEFORE UPDATE ON projects \
           FOR EACH ROW EXECUTE FUNCTION refuse_writes();",
    )
    .execute(&pool)
    .await
    .expect("install the refusing trigger");
    eventually(ALERT_WAIT, "a heartbeat write to fail", || {
        let (nats, service) = (nats.clone(), &stack.service);
        async move {
            publish_beats(&nats, &["alpha"], 1).await;
            let failing = service.metric("heartbeat_writes_failing").await?;
            (failing == 1.0).then_some(())
        }
    })
    .await;
    stack
        .fires("FederationHeartbeatWritesFailing", &stack.instance())
        .await;
    // It cannot judge liveness meanwhile (Alertmanager mutes this one while
    // the writes alert fires for the same instance).
    stack
        .fires("FederationServiceNotReady", &stack.instance())
        .await;

    sqlx::query("DROP TRIGGER refuse_writes ON projects")
        .execute(&pool)
        .await
        .expect("drop the trigger");
    // The flusher's next retry (within 5 s) writes what waited.
    stack.resolves("FederationHeartbeatWritesFailing").await;
    assert_eq!(
        stack.service.metric("heartbeat_writes_failing").await,
        Some(0.0)
    );
    pool.close().await;
}

/// nats-server dies: the service says it is disconnected and blind; when
/// the server is back it reconnects, and after one stale threshold (3 s
/// here) judges again.
#[tokio::test]
async fn losing_nats_fires_nats_disconnected_and_not_ready() {
    let mut stack = Stack::start(json!({})).await;
    // Past the first stale threshold after start-up, the service sees.
    stack
        .wait_metric("sweeper_self_preservation", |v| v == 0.0)
        .await;
    assert_eq!(
        stack.service.metric("nats_connection_status").await,
        Some(1.0)
    );
    stack.quiet("FederationNatsDisconnected").await;
    stack.quiet("FederationServiceNotReady").await;

    stack.nats.kill().await;
    let instance = stack.instance();
    stack.fires("FederationNatsDisconnected", &instance).await;
    stack.fires("FederationServiceNotReady", &instance).await;

    stack.nats.restart().await;
    stack.resolves("FederationNatsDisconnected").await;
    stack.resolves("FederationServiceNotReady").await;
}

/// An empty catalog is quiet; registered projects that beat are quiet; when
/// they all stop beating the sweeper marks them offline (stale threshold 3
/// s here) and both alerts fire; one beat brings a project back online.
#[tokio::test]
async fn projects_that_stop_beating_fire_no_project_online() {
    let stack = Stack::start(json!({})).await;
    stack.quiet("FederationNoProjectOnline").await;

    let slugs = ["alpha", "beta", "gamma"];
    stack.register(&slugs).await;
    let nats = stack.nats_client().await;
    let beating = keep_beating(&nats, &slugs);
    stack
        .wait_metric("catalog_projects_by_status{status=\"online\"}", |v| {
            v == 3.0
        })
        .await;
    stack.quiet("FederationNoProjectOnline").await;
    stack.quiet("FederationProjectsGoingStale").await;

    // Silence.
    beating.abort();
    let _ = beating.await;
    stack
        .wait_metric("catalog_projects_by_status{status=\"offline\"}", |v| {
            v == 3.0
        })
        .await;
    stack.fires("FederationNoProjectOnline", &NO_LABELS).await;
    stack
        .fires("FederationProjectsGoingStale", &NO_LABELS)
        .await;

    let beating = keep_beating(&nats, &["alpha"]);
    stack.resolves("FederationNoProjectOnline").await;
    beating.abort();
}

// ---------------------------------------------------------------- the stack

/// The service, its nats-server and database, and a Prometheus evaluating
/// the repository's alert rules (with `for: 1s`) against it.
struct Stack {
    prometheus: Prometheus,
    service: Federation,
    nats: NatsServer,
    db: TestDb,
    _rules: tempfile::TempDir,
}

impl Stack {
    /// `overrides` is merged into the service's settings.
    async fn start(overrides: Value) -> Stack {
        let nats = NatsServer::start().await;
        let db = TestDb::create().await;
        let service = Federation::start(&db, &nats, overrides).await;
        let rules = tempfile::tempdir().expect("temp dir");
        let rule_file = rules_with_short_for(rules.path());
        let prometheus = Prometheus::start_with_rules(&service.target(), &rule_file).await;
        prometheus.wait_for_scrape().await;
        Stack {
            prometheus,
            service,
            nats,
            db,
            _rules: rules,
        }
    }

    /// The label that names the service's series (alerts that aggregate by
    /// instance drop `job`).
    fn instance(&self) -> [(&'static str, String); 1] {
        [("instance", self.service.target())]
    }

    async fn nats_client(&self) -> async_nats::Client {
        async_nats::connect(self.nats.url())
            .await
            .expect("connect to NATS")
    }

    async fn pool(&self) -> sqlx::PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&self.db.url)
            .await
            .expect("connect to the test database")
    }

    /// Registers projects through the API.
    async fn register(&self, slugs: &[&str]) {
        for slug in slugs {
            let base = &self.service.server.base;
            register_project(base, AGENT_KEY, slug, json!({})).await;
        }
    }

    /// Waits until the service exports `series` with a value `ok` accepts.
    async fn wait_metric(&self, series: &str, ok: impl Fn(f64) -> bool) {
        let what = format!("{series} to reach the expected value");
        eventually(ALERT_WAIT, &what, || async {
            self.service
                .metric(series)
                .await
                .filter(|v| ok(*v))
                .map(|_| ())
        })
        .await;
    }

    /// Instances of `alert` Prometheus holds now: (state, labels).
    async fn active(&self, alert: &str) -> Vec<(String, Value)> {
        let body = self.prometheus.api("/api/v1/alerts", &[]).await;
        list_of(&body["data"], "alerts")
            .iter()
            .filter(|a| str_of(&a["labels"], "alertname") == alert)
            .map(|a| (str_of(a, "state").to_owned(), a["labels"].clone()))
            .collect()
    }

    /// The values of `label` on `alert`'s active instances, sorted.
    async fn active_labels(&self, alert: &str, label: &str) -> Vec<String> {
        let mut values: Vec<String> = self
            .active(alert)
            .await
            .iter()
            .map(|(_, labels)| str_of(labels, label).to_owned())
            .collect();
        values.sort();
        values
    }

    /// Waits until `alert` fires with `labels`, then checks its expression,
    /// as written in the rule file, holds for a series with those labels.
    async fn fires<V: AsRef<str>>(&self, alert: &str, labels: &[(&str, V)]) {
        let matches = |l: &Value| labels.iter().all(|(k, v)| str_of(l, k) == v.as_ref());
        eventually(ALERT_WAIT, &format!("{alert} to fire"), || async {
            self.active(alert)
                .await
                .iter()
                .any(|(state, l)| state == "firing" && matches(l))
                .then_some(())
        })
        .await;
        let expr = expr_of(alert);
        let result = self.prometheus.query(&expr).await.expect("the expression");
        assert!(
            result
                .as_array()
                .is_some_and(|r| r.iter().any(|s| matches(&s["metric"]))),
            "{alert} fires but its expression does not hold for {:?} now:\n{expr}\n{result}",
            labels
                .iter()
                .map(|(k, v)| (*k, v.as_ref()))
                .collect::<Vec<_>>()
        );
    }

    /// After Prometheus has scraped the service and evaluated the rules
    /// since now, `alert` is neither pending nor firing and its expression
    /// has no result.
    async fn quiet(&self, alert: &str) {
        self.evaluated_after_a_fresh_scrape(alert).await;
        let active = self.active(alert).await;
        let expr = expr_of(alert);
        let result = self.prometheus.query(&expr).await.expect("the expression");
        assert!(
            active.is_empty() && result.as_array().is_some_and(Vec::is_empty),
            "{alert} should be quiet while the service is healthy: active {active:?}; \
             its expression gives {result}\n{expr}"
        );
    }

    /// Waits until `alert` is no longer active, then checks it is quiet.
    async fn resolves(&self, alert: &str) {
        eventually(ALERT_WAIT, &format!("{alert} to resolve"), || async {
            self.active(alert).await.is_empty().then_some(())
        })
        .await;
        self.quiet(alert).await;
    }

    /// Waits for a scrape that started after now, then for an evaluation of
    /// `alert`'s rule after that scrape.
    async fn evaluated_after_a_fresh_scrape(&self, alert: &str) {
        let since = unix_now();
        eventually(ALERT_WAIT, "a fresh scrape", || async move {
            let result = self
                .prometheus
                // Not `timestamp(up == 1)`: a comparison's result carries
                // the evaluation time, not the scrape's.
                .query("max(timestamp(up{job=\"federation\"}))")
                .await
                .ok()?;
            let at: f64 = result[0]["value"][1].as_str()?.parse().ok()?;
            (at >= since).then_some(())
        })
        .await;
        // Its samples are stored by now: an evaluation that starts later sees them.
        let stored_by = unix_now();
        eventually(
            ALERT_WAIT,
            &format!("{alert} to be evaluated after the scrape"),
            || async move {
                let body = self
                    .prometheus
                    .api("/api/v1/rules", &[("type", "alert")])
                    .await;
                let rule = list_of(&body["data"], "groups")
                    .iter()
                    .flat_map(|g| list_of(g, "rules"))
                    .find(|r| str_of(r, "name") == alert)?
                    .clone();
                let at = chrono::DateTime::parse_from_rfc3339(str_of(&rule, "lastEvaluation"))
                    .ok()?
                    .timestamp_millis() as f64
                    / 1000.0;
                (at > stored_by).then_some(())
            },
        )
        .await;
    }
}

fn unix_now() -> f64 {
    chrono::Utc::now().timestamp_millis() as f64 / 1000.0
}

/// The expression of `alert` in the repository's rule file.
fn expr_of(alert: &str) -> String {
    rules_of(&read_yaml(ALERTS))
        .find(|r| str_of(r, "alert") == alert)
        .map(|r| str_of(r, "expr").to_owned())
        .unwrap_or_else(|| panic!("{alert} is not in {ALERTS}"))
}

/// A copy of the repository's rule file in `dir` where every `for:` is 1s;
/// nothing else differs.
fn rules_with_short_for(dir: &Path) -> PathBuf {
    let original = read_yaml(ALERTS);
    let mut rules = original.clone();
    for group in rules["groups"].as_array_mut().expect("groups") {
        for rule in group["rules"].as_array_mut().expect("rules") {
            if rule.get("for").is_some() {
                rule["for"] = json!("1s");
            }
        }
    }
    let exprs =
        |v: &Value| -> Vec<String> { rules_of(v).map(|r| str_of(r, "expr").to_owned()).collect() };
    assert_eq!(exprs(&rules), exprs(&original));
    let path = dir.join("alerts.yml");
    std::fs::write(&path, rules.to_string()).expect("write the rule file");
    path
}

/// `n` heartbeats of each slug, then a flush.
async fn publish_beats(nats: &async_nats::Client, slugs: &[&str], n: usize) {
    for slug in slugs {
        let beat = json!({
            "project_slug": slug,
            "mesh_namespace": format!("hub.{slug}"),
            "hub_url": format!("http://{slug}.example:9001"),
            "status": "online",
            "timestamp": chrono::Utc::now().to_rfc3339(),
        })
        .to_string();
        for _ in 0..n {
            nats.publish(format!("hub.presence.{slug}"), beat.clone().into())
                .await
                .expect("publish");
        }
    }
    nats.flush().await.expect("flush");
}

/// Hubs that beat every 300 ms (well inside the 2 s degraded threshold)
/// until the task is aborted.
fn keep_beating(nats: &async_nats::Client, slugs: &[&'static str]) -> tokio::task::JoinHandle<()> {
    let (nats, slugs) = (nats.clone(), slugs.to_vec());
    tokio::spawn(async move {
        loop {
            publish_beats(&nats, &slugs, 1).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
}

// ------------------------------------------------------------ the service

/// The `federation` binary running `serve`, killed when dropped; its log is
/// printed when a test fails.
struct Federation {
    server: Server,
}

impl Federation {
    /// Starts `federation serve` on `db` and `nats`, with short liveness
    /// thresholds (degraded 2 s, offline 3 s) and `overrides` merged into
    /// its settings, and waits until it is ready.
    async fn start(db: &TestDb, nats: &NatsServer, overrides: Value) -> Federation {
        let port = testkit::free_port();
        let mut settings = json!({
            "server": { "host": "127.0.0.1", "port": port, "shutdown_grace": "1s" },
            "database": { "url": db.url, "max_connections": 5, "startup_timeout": "30s" },
            "nats": { "url": nats.url() },
            "auth": { "admin_keys": [ADMIN_KEY], "agent_keys": [AGENT_KEY] },
            "heartbeat": { "stale_threshold": "3s", "degraded_after": "2s", "check_interval": "1s" },
            "log": { "level": "info", "format": "text" },
        });
        merge(&mut settings, overrides);
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("federation.yaml");
        // JSON is YAML.
        std::fs::write(&config, settings.to_string()).expect("write the settings");
        let mut serve = Command::from(testkit::clean_command(federation_bin()));
        serve
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .current_dir(dir.path());
        let limit = Duration::from_secs(60);
        let server = Server::start("federation", serve, (dir, port), "/ready", limit);
        Federation {
            server: server.await,
        }
    }

    /// `host:port`, as Prometheus labels the target.
    fn target(&self) -> String {
        self.server.base.trim_start_matches("http://").to_owned()
    }

    /// The value of one series of its /metrics, if exported.
    async fn metric(&self, series: &str) -> Option<f64> {
        let res = reqwest::get(format!("{}/metrics", self.server.base))
            .await
            .ok()?;
        sample(&res.text().await.ok()?, series)
    }
}

/// Merges `overrides` into `base`, objects key by key.
fn merge(base: &mut Value, overrides: Value) {
    match (base, overrides) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o,
    }
}
