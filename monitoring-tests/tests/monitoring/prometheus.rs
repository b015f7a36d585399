//! The real thing: the service (in-process, own database, some demo
//! traffic) scraped by a real `prometheus` on a free port, using the
//! `federation` job of monitoring/prometheus.yml and loading
//! monitoring/alerts.yml. Every dashboard and alert expression is evaluated
//! through Prometheus' query API, and every metric it names must be in the
//! service's exposition.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};
use testkit::{eventually, NatsServer, TestDb};
use tokio::process::Command;

use crate::promql::{all_expressions, exported_names, missing_names, ALERTS};
use crate::running::RunningService;
use crate::support::*;

/// A real Prometheus on a free port of 127.0.0.1, killed when dropped; on
/// a failed test, its own log says why.
pub struct Prometheus {
    server: Server,
}

impl Prometheus {
    /// Scrapes `target` every second with the repository's `federation`
    /// job, and evaluates monitoring/alerts.yml every second.
    async fn start(target: &str) -> Prometheus {
        Self::start_with_rules(target, &repo_path(ALERTS)).await
    }

    /// As [`Self::start`], evaluating the rule file `rules` instead.
    pub async fn start_with_rules(target: &str, rules: &std::path::Path) -> Prometheus {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = test_config(target, rules);
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config.to_string()).expect("write config");
        let port = testkit::free_port();
        let mut cmd = Command::new(prometheus());
        cmd.arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn");
        let limit = Duration::from_secs(30);
        let server = Server::start("prometheus", cmd, (dir, port), "/-/ready", limit);
        Prometheus {
            server: server.await,
        }
    }

    pub async fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let url = url::Url::parse_with_params(&format!("{}{path}", self.server.base), params)
            .expect("url");
        let res = reqwest::get(url).await.expect("prometheus API");
        res.json().await.expect("prometheus API answers JSON")
    }

    /// Evaluates `expr` now: its result, or Prometheus' error.
    pub async fn query(&self, expr: &str) -> Result<Value, String> {
        let body = self.api("/api/v1/query", &[("query", expr)]).await;
        match str_of(&body, "status") {
            "success" => Ok(body["data"]["result"].clone()),
            _ => Err(format!(
                "{}: {}",
                str_of(&body, "errorType"),
                str_of(&body, "error")
            )),
        }
    }

    /// Waits until Prometheus has scraped the service successfully and the
    /// sample is queryable.
    pub async fn wait_for_scrape(&self) {
        eventually(
            Duration::from_secs(30),
            "a successful scrape of the service",
            || async move {
                let result = self.query("up{job=\"federation\"} == 1").await.ok()?;
                result
                    .as_array()
                    .is_some_and(|r| !r.is_empty())
                    .then_some(())
            },
        )
        .await;
    }

    /// Every metric name Prometheus holds series for.
    async fn names(&self) -> BTreeSet<String> {
        let body = self.api("/api/v1/label/__name__/values", &[]).await;
        list_of(&body, "data")
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect()
    }
}

/// The repository's Prometheus config, reduced to its `federation` job
/// pointed at `target`, with the alert rules of `rules`.
fn test_config(target: &str, rules: &std::path::Path) -> Value {
    let repo = read_yaml("monitoring/prometheus.yml");
    let mut job = list_of(&repo, "scrape_configs")
        .iter()
        .find(|j| str_of(j, "job_name") == "federation")
        .cloned()
        .expect("monitoring/prometheus.yml has a `federation` job");
    job["static_configs"] = json!([{ "targets": [target] }]);
    job["scrape_interval"] = json!("1s");
    job["scrape_timeout"] = json!("1s");
    json!({
        "global": { "scrape_interval": "1s", "evaluation_interval": "1s" },
        "rule_files": [rules.canonicalize().expect("the rule file exists")],
        "scrape_configs": [job],
    })
}

/// The service with NATS, demo API and heartbeat traffic, scraped by a real
/// Prometheus that has scraped it at least once.
async fn running_stack() -> (RunningService, Prometheus, NatsServer) {
    let nats = NatsServer::start().await;
    let service = RunningService::start_with(TestDb::create().await, Some(&nats)).await;
    service.demo_traffic().await;
    service.heartbeat_traffic(&nats).await;
    let prometheus = Prometheus::start(&service.target()).await;
    prometheus.wait_for_scrape().await;
    (service, prometheus, nats)
}

#[tokio::test]
async fn every_dashboard_and_alert_expression_is_valid_promql() {
    let (service, prometheus, _nats) = running_stack().await;
    let expressions = all_expressions();
    assert!(
        expressions.len() > 40,
        "only {} expressions found",
        expressions.len()
    );
    let mut invalid = Vec::new();
    for e in &expressions {
        if let Err(error) = prometheus.query(&e.promql).await {
            invalid.push(format!("{}\n    {}\n    {error}", e.origin, e.promql));
        }
    }
    // The check bites: a broken expression is refused.
    assert!(prometheus
        .query("sum(rate(http_requests_total[1m])")
        .await
        .is_err());
    // And the traffic arrived: the catalog panels have data.
    let lookups = prometheus
        .query("sum(catalog_lookup_total)")
        .await
        .expect("query");
    assert_eq!(lookups[0]["value"][1], "2", "{lookups}");
    service.stop().await;
    assert!(
        invalid.is_empty(),
        "{} invalid expression(s):\n{}",
        invalid.len(),
        invalid.join("\n")
    );
}

#[tokio::test]
async fn every_metric_the_dashboards_and_alerts_use_is_exported_by_the_service() {
    let (service, prometheus, _nats) = running_stack().await;
    let exposition = service.exposition().await;
    let exported = exported_names(&exposition);
    let scraped = prometheus.names().await;
    // The service's families reached Prometheus under the names we derive.
    for name in [
        "catalog_projects_by_status",
        "http_requests_total",
        "build_info",
    ] {
        assert!(exported.contains(name) && scraped.contains(name), "{name}");
    }
    let missing = missing_names(&all_expressions(), &exported, &scraped);
    service.stop().await;
    let report: Vec<String> = missing
        .iter()
        .map(|(name, users)| format!("{name}\n    used by: {}", users.join("; ")))
        .collect();
    assert!(
        missing.is_empty(),
        "{} metric name(s) used by the dashboards or alerts are not exported by the service \
         (/metrics):\n{}\n\nmissing: {}",
        missing.len(),
        report.join("\n"),
        missing.keys().cloned().collect::<Vec<_>>().join(" ")
    );
}

#[tokio::test]
async fn prometheus_loads_the_alert_rules_and_evaluates_each_without_error() {
    let (service, prometheus, _nats) = running_stack().await;
    let rules = read_yaml(ALERTS);
    let expected: BTreeSet<(String, String)> = list_of(&rules, "groups")
        .iter()
        .flat_map(|g| {
            list_of(g, "rules").iter().map(move |r| {
                let name = match str_of(r, "alert") {
                    "" => str_of(r, "record"),
                    a => a,
                };
                (str_of(g, "name").to_owned(), name.to_owned())
            })
        })
        .collect();
    // Wait until every rule has been evaluated on scraped data: after the
    // first successful scrape (running_stack waited for it).
    let scraped_at = chrono::Utc::now();
    let prom = &prometheus;
    let loaded = eventually(
        Duration::from_secs(30),
        "every rule to be evaluated after the first scrape",
        || async move {
            let body = prom.api("/api/v1/rules", &[]).await;
            let mut seen = Vec::new();
            for g in list_of(&body["data"], "groups") {
                for r in list_of(g, "rules") {
                    let evaluated =
                        chrono::DateTime::parse_from_rfc3339(str_of(r, "lastEvaluation"))
                            .is_ok_and(|t| t > scraped_at);
                    if !evaluated {
                        return None;
                    }
                    seen.push((
                        str_of(g, "name").to_owned(),
                        str_of(r, "name").to_owned(),
                        str_of(r, "health").to_owned(),
                        str_of(r, "lastError").to_owned(),
                    ));
                }
            }
            (!seen.is_empty()).then_some(seen)
        },
    )
    .await;
    service.stop().await;
    let names: BTreeSet<(String, String)> = loaded
        .iter()
        .map(|(g, r, _, _)| (g.clone(), r.clone()))
        .collect();
    assert_eq!(
        names, expected,
        "prometheus loaded other rules than {ALERTS}"
    );
    let failing: Vec<String> = loaded
        .iter()
        .filter(|(_, _, health, _)| health != "ok")
        .map(|(g, r, h, e)| format!("{g}/{r}: {h}: {e}"))
        .collect();
    assert!(failing.is_empty(), "{}", failing.join("\n"));
}
