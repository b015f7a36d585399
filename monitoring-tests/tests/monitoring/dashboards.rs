//! The Grafana dashboards and their provisioning: the three dashboards the
//! operators use, each showing what it promises, all on the provisioned
//! Prometheus. (Whether their queries are valid and their metrics exported
//! is checked against a real Prometheus in `prometheus.rs`.)

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::promql::{dashboard_expressions, names_of, DASHBOARD_DIR};
use crate::support::*;

const DATASOURCES: &str = "monitoring/grafana/provisioning/datasources/prometheus.yml";
const PROVIDERS: &str = "monitoring/grafana/provisioning/dashboards/federation.yml";

fn dashboards() -> BTreeMap<String, Value> {
    files_in(DASHBOARD_DIR, ".json")
        .into_iter()
        .map(|f| {
            let d = read_json(&f);
            (str_of(&d, "title").to_owned(), d)
        })
        .collect()
}

/// Every panel, rows' nested panels included.
fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in list_of(d, "panels") {
        out.push(p);
        out.extend(list_of(p, "panels"));
    }
    out
}

fn datasource_uid() -> String {
    let ds = read_yaml(DATASOURCES);
    let sources = list_of(&ds, "datasources");
    assert_eq!(sources.len(), 1, "{DATASOURCES}: expected one datasource");
    assert_eq!(str_of(&sources[0], "type"), "prometheus");
    assert_eq!(
        str_of(&sources[0], "url"),
        "http://prometheus:9090",
        "the compose service"
    );
    str_of(&sources[0], "uid").to_owned()
}

#[test]
fn the_three_dashboards_are_there_with_unique_uids() {
    let all = dashboards();
    let titles: BTreeSet<&str> = all.keys().map(String::as_str).collect();
    assert_eq!(
        titles,
        BTreeSet::from([
            "Catalog Operations",
            "Federation Overview",
            "Stale Detection"
        ])
    );
    let uids: BTreeSet<&str> = all.values().map(|d| str_of(d, "uid")).collect();
    assert_eq!(uids.len(), all.len(), "duplicate dashboard uid");
    assert!(
        uids.iter().all(|u| !u.is_empty() && u.len() <= 40),
        "{uids:?}"
    );
}

#[test]
fn every_panel_queries_the_provisioned_datasource() {
    let uid = datasource_uid();
    assert!(
        !uid.is_empty(),
        "{DATASOURCES}: the datasource needs a fixed uid"
    );
    for (title, d) in dashboards() {
        for p in panels(&d) {
            if str_of(p, "type") == "row" {
                continue;
            }
            let name = str_of(p, "title");
            assert_eq!(
                str_of(&p["datasource"], "uid"),
                uid,
                "{title}: panel {name}"
            );
            let targets = list_of(p, "targets");
            assert!(!targets.is_empty(), "{title}: panel {name} has no query");
            for t in targets {
                assert_eq!(
                    str_of(&t["datasource"], "uid"),
                    uid,
                    "{title}: panel {name}"
                );
                assert!(
                    !str_of(t, "expr").trim().is_empty(),
                    "{title}: panel {name}: empty query"
                );
            }
        }
        for var in list_of(&d["templating"], "list") {
            if str_of(var, "type") == "query" {
                assert_eq!(str_of(&var["datasource"], "uid"), uid, "{title}: variable");
            }
        }
    }
}

#[test]
fn panels_fit_the_grid_and_have_unique_ids() {
    for (title, d) in dashboards() {
        let mut ids = BTreeSet::new();
        for p in panels(&d) {
            let id = p["id"]
                .as_u64()
                .unwrap_or_else(|| panic!("{title}: a panel has no id"));
            assert!(ids.insert(id), "{title}: panel id {id} used twice");
            let pos = &p["gridPos"];
            let (x, w, h) = (pos["x"].as_u64(), pos["w"].as_u64(), pos["h"].as_u64());
            let (Some(x), Some(w), Some(h)) = (x, w, h) else {
                panic!("{title}: panel {id} has no gridPos");
            };
            assert!(
                x + w <= 24 && w > 0 && h > 0,
                "{title}: panel {id} is off the grid"
            );
            assert!(
                !str_of(p, "title").is_empty(),
                "{title}: panel {id} has no title"
            );
        }
    }
}

/// What each dashboard was asked to show, as the metrics it must query.
#[test]
fn each_dashboard_shows_what_it_promises() {
    let promised: [(&str, &[&str]); 3] = [
        (
            "Federation Overview",
            &[
                "catalog_projects_by_status",
                "heartbeat_total",
                "heartbeat_rejected_total",
                "nats_connection_status",
            ],
        ),
        (
            "Catalog Operations",
            &[
                "http_requests_total",
                "http_request_duration_seconds_bucket",
                "catalog_register_total",
                "catalog_lookup_total",
            ],
        ),
        (
            "Stale Detection",
            &[
                "stale_projects_total",
                "project_status_transitions_total",
                "heartbeat_flush_duration_seconds_bucket",
                "heartbeat_batch_size_bucket",
                "sweeper_leader",
                "sweeper_self_preservation",
            ],
        ),
    ];
    let all = dashboards();
    for (title, metrics) in promised {
        let d = &all[title];
        let exprs = dashboard_expressions(title, d);
        let used: BTreeSet<String> = exprs.iter().flat_map(names_of).collect();
        for m in metrics {
            assert!(used.contains(*m), "{title} does not show {m}");
        }
    }
    // Latency quantiles are per route, and rejections per reason.
    let ops = dashboard_expressions("ops", &all["Catalog Operations"]);
    assert!(
        ops.iter()
            .any(|e| e.raw.contains("histogram_quantile") && e.raw.contains("by (route, le)")),
        "Catalog Operations: no latency quantile by route"
    );
    let overview = dashboard_expressions("overview", &all["Federation Overview"]);
    assert!(
        overview
            .iter()
            .any(|e| e.raw.contains("by (reason)") && e.raw.contains("heartbeat_rejected_total")),
        "Federation Overview: no rejections by reason"
    );
}

#[test]
fn the_dashboard_provider_reads_where_compose_mounts_the_dashboards() {
    let providers = read_yaml(PROVIDERS);
    let list = list_of(&providers, "providers");
    assert_eq!(list.len(), 1, "{PROVIDERS}: expected one provider");
    assert_eq!(str_of(&list[0], "type"), "file");
    let path = str_of(&list[0]["options"], "path");
    let compose = read("docker-compose.yml");
    assert!(
        compose.contains(&format!("./{DASHBOARD_DIR}:{path}:ro")),
        "docker-compose.yml does not mount {DASHBOARD_DIR} at {path}"
    );
    assert!(
        compose.contains("./monitoring/grafana/provisioning:/etc/grafana/provisioning:ro"),
        "docker-compose.yml does not mount the provisioning folder"
    );
}
