//! The service running in this process on its own database, as the
//! monitoring tests need it.

use std::time::Duration;

use figment::providers::Format;
use figment::Figment;
use serde_json::{json, Value};
use serde_saphyr::figment::Yaml;
use service::app::Application;
use service::config::Settings;
use testkit::{eventually, NatsServer, TestDb};
use tokio_util::sync::CancellationToken;

use crate::support::register_project;

const ADMIN_KEY: &str = "monitoring-admin-key-0123456789";
const AGENT_KEY: &str = "monitoring-agent-key-0123456789";

/// The service, running in this process on its own database.
pub struct RunningService {
    pub base: String,
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
    db: TestDb,
}

impl RunningService {
    /// Starts the service on `db` (migrating it), without NATS, and waits
    /// until it is ready.
    pub async fn start(db: TestDb) -> RunningService {
        Self::start_with(db, None).await
    }

    /// As [`Self::start`], ingesting heartbeats from `nats` when given.
    pub async fn start_with(db: TestDb, nats: Option<&NatsServer>) -> RunningService {
        let nats = match nats {
            Some(n) => format!("nats:\n  enabled: true\n  url: \"{}\"\n", n.url()),
            None => "nats:\n  enabled: false\n".to_owned(),
        };
        let yaml = format!(
            "server:\n  host: 127.0.0.1\n  port: 0\n  shutdown_grace: 2s\n\
             database:\n  url: \"{}\"\n  startup_timeout: 30s\n  max_connections: 5\n\
             {nats}\
             auth:\n  admin_keys: [\"{ADMIN_KEY}\"]\n  agent_keys: [\"{AGENT_KEY}\"]\n",
            db.url
        );
        let settings = Settings::from_figment(&Figment::from(Yaml::string(&yaml)))
            .unwrap_or_else(|e| panic!("{e}"));
        let app = Application::build(settings, Vec::new())
            .await
            .expect("build the service");
        let base = format!("http://127.0.0.1:{}", app.port());
        let shutdown = app.shutdown_token();
        let handle = tokio::spawn(app.run_until_stopped());
        let ready = format!("{base}/ready");
        testkit::wait_ok(&ready, Duration::from_secs(30), "the service to be ready").await;
        RunningService {
            base,
            shutdown,
            handle,
            db,
        }
    }

    /// Registrations, lookups, a miss, a refused key and an unmatched route,
    /// so the HTTP and catalog series have samples.
    pub async fn demo_traffic(&self) {
        let client = reqwest::Client::new();
        for slug in ["alpha", "beta"] {
            let more = json!({"tags": ["demo"], "allow_fanout": []});
            register_project(&self.base, AGENT_KEY, slug, more).await;
        }
        for (path, key, status) in [
            ("/api/fed/projects", Some(ADMIN_KEY), 200),
            ("/api/fed/projects/alpha", Some(ADMIN_KEY), 200),
            ("/api/fed/projects/nope", Some(ADMIN_KEY), 404),
            ("/api/fed/projects", None, 401),
            ("/no/such/route", None, 404),
            ("/health", None, 200),
        ] {
            let mut req = client.get(format!("{}{path}", self.base));
            if let Some(k) = key {
                req = req.header("X-API-Key", k);
            }
            let res = req.send().await.expect("request");
            assert_eq!(res.status().as_u16(), status, "GET {path}");
        }
    }

    /// Heartbeats through `nats`: alpha and beta (registered by
    /// [`Self::demo_traffic`]) go online, and one for an unknown project and
    /// one that is not JSON are rejected. Returns once the service has
    /// counted them all.
    pub async fn heartbeat_traffic(&self, nats: &NatsServer) {
        let client = async_nats::connect(nats.url())
            .await
            .expect("connect to NATS");
        // The service subscribes after start-up: publish until it has heard.
        eventually(
            Duration::from_secs(20),
            "the heartbeats to be counted",
            || {
                let client = client.clone();
                async move {
                    for slug in ["alpha", "beta", "ghost"] {
                        let beat = json!({
                            "project_slug": slug,
                            "mesh_namespace": format!("hub.{slug}"),
                            "hub_url": format!("http://{slug}.example:9001"),
                            "status": "online",
                            "timestamp": "2026-01-01T00:00:00Z",
                        });
                        let subject = format!("hub.presence.{slug}");
                        client
                            .publish(subject, beat.to_string().into())
                            .await
                            .ok()?;
                    }
                    client
                        .publish("hub.presence.alpha", "not json".into())
                        .await
                        .ok()?;
                    client.flush().await.ok()?;
                    let text = self.exposition().await;
                    let counted = [
                        "heartbeat_total",
                        "heartbeat_rejected_total{reason=\"unknown_project\"}",
                        "heartbeat_rejected_total{reason=\"not_json\"}",
                    ];
                    let all_counted = counted
                        .iter()
                        .all(|c| sample(&text, c).is_some_and(|v| v > 0.0));
                    let online = sample(&text, "catalog_projects_by_status{status=\"online\"}");
                    (all_counted && online == Some(2.0)).then_some(())
                }
            },
        )
        .await;
    }

    pub async fn exposition(&self) -> String {
        let res = reqwest::get(format!("{}/metrics", self.base))
            .await
            .expect("scrape");
        assert_eq!(res.status(), 200);
        res.text().await.expect("exposition")
    }

    pub fn target(&self) -> String {
        self.base.trim_start_matches("http://").to_owned()
    }

    /// The slugs `GET /api/fed/projects` lists, sorted.
    pub async fn slugs(&self) -> Vec<String> {
        let res = reqwest::Client::new()
            .get(format!("{}/api/fed/projects", self.base))
            .header("X-API-Key", ADMIN_KEY)
            .send()
            .await
            .expect("list projects");
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.expect("project list");
        let mut slugs: Vec<String> = body
            .as_array()
            .expect("a bare JSON array")
            .iter()
            .filter_map(|p| {
                p["slug"]
                    .as_str()
                    .or(p["project_slug"].as_str())
                    .map(String::from)
            })
            .collect();
        slugs.sort();
        slugs
    }

    pub fn db(&self) -> &TestDb {
        &self.db
    }

    /// Stops the service; its database lives on.
    pub async fn stop(self) -> TestDb {
        self.shutdown.cancel();
        let _ = self.handle.await;
        self.db
    }
}

/// The value of the sample `series` (name and labels exactly as exposed).
pub fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
}
