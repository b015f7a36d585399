//! Alertmanager's configuration: amtool accepts it, routes by severity, and
//! its inhibition rules name alerts that exist.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::promql::{alert_names, ALERTS};
use crate::support::*;

const CONFIG: &str = "monitoring/alertmanager.yml";

#[test]
fn amtool_accepts_the_alertmanager_config() {
    let out = run_ok(
        Command::new(amtool())
            .arg("check-config")
            .arg(repo_path(CONFIG)),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("SUCCESS"), "{text}");
}

fn route_of(labels: &[&str]) -> String {
    let out = run_ok(
        Command::new(amtool())
            .args(["config", "routes", "test", "--config.file"])
            .arg(repo_path(CONFIG))
            .args(labels),
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn critical_alerts_go_to_oncall_and_the_rest_to_the_team() {
    assert_eq!(
        route_of(&["alertname=FederationServiceDown", "severity=critical"]),
        "oncall"
    );
    assert_eq!(
        route_of(&["alertname=FederationDrift", "severity=warning"]),
        "team"
    );
    assert_eq!(route_of(&["alertname=Unknown"]), "team");
}

#[test]
fn inhibition_rules_name_alerts_that_exist() {
    let alerts = alert_names();
    let config = read_yaml(CONFIG);
    let rules = list_of(&config, "inhibit_rules");
    assert!(!rules.is_empty(), "no inhibit_rules");
    let mut named = 0;
    for rule in rules {
        for side in ["source_matchers", "target_matchers"] {
            for matcher in list_of(rule, side).iter().filter_map(|m| m.as_str()) {
                let Some(value) = matcher
                    .strip_prefix("alertname=~")
                    .or_else(|| matcher.strip_prefix("alertname="))
                else {
                    continue;
                };
                for name in value.trim_matches('"').split('|') {
                    named += 1;
                    assert!(
                        alerts.contains(name),
                        "{CONFIG}: {side} names {name}, which {ALERTS} does not define"
                    );
                }
            }
        }
    }
    assert!(named > 0, "no inhibition rule names an alert");
}

/// An alert, its labels, and whether it must be muted.
type Case = (&'static str, &'static [(&'static str, &'static str)], bool);

/// The inhibition rules, in a real Alertmanager running this config: each
/// cause mutes its consequence, and only where the labels say so.
#[tokio::test]
async fn a_real_alertmanager_mutes_exactly_what_the_inhibition_rules_say() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = testkit::free_port();
    let _server = tokio::process::Command::new(alertmanager())
        .arg(format!("--config.file={}", repo_path(CONFIG).display()))
        .arg(format!("--storage.path={}", dir.path().display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start alertmanager: {e}"));
    let api = format!("http://127.0.0.1:{port}/api/v2/alerts");
    let client = reqwest::Client::new();
    let alert = |name: &str, labels: &[(&str, &str)]| {
        let mut l: BTreeMap<&str, &str> = labels.iter().copied().collect();
        l.insert("alertname", name);
        json!({ "labels": l })
    };
    #[rustfmt::skip]
    let cases: [Case; 10] = [
        ("FederationNatsDisconnected", &[("instance", "fed-1"), ("severity", "critical")], false),
        ("FederationHeartbeatWritesFailing", &[("instance", "fed-3"), ("severity", "critical")], false),
        ("FederationServiceNotReady", &[("instance", "fed-3"), ("severity", "warning")], true),
        ("FederationServiceNotReady", &[("instance", "fed-1"), ("severity", "warning")], true),
        ("FederationServiceNotReady", &[("instance", "fed-2"), ("severity", "warning")], false),
        ("FederationSyncCircuitOpen", &[("target", "keycloak"), ("severity", "critical")], false),
        ("FederationSyncFailing", &[("target", "keycloak"), ("severity", "warning")], true),
        ("FederationSyncFailing", &[("target", "tfvars"), ("severity", "warning")], false),
        ("FederationNoProjectOnline", &[("severity", "critical")], false),
        ("FederationProjectsGoingStale", &[("severity", "warning")], true),
    ];
    let body: Vec<Value> = cases.iter().map(|(n, l, _)| alert(n, l)).collect();
    let key = |v: &Value| -> String {
        let labels = &v["labels"];
        let mut parts: Vec<String> = labels
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                    .collect()
            })
            .unwrap_or_default();
        parts.sort();
        parts.join(",")
    };
    let (client, api, posted) = (&client, &api, &body);
    let states = testkit::eventually(
        Duration::from_secs(30),
        "alertmanager to hold every alert",
        || async move {
            // Posting again is harmless (same labels) and covers start-up.
            client
                .post(api)
                .json(posted)
                .send()
                .await
                .ok()?
                .error_for_status()
                .ok()?;
            let listed: Vec<Value> = client.get(api).send().await.ok()?.json().await.ok()?;
            let states: BTreeMap<String, String> = listed
                .iter()
                .map(|a| (key(a), str_of(&a["status"], "state").to_owned()))
                .collect();
            (states.len() == posted.len()).then_some(states)
        },
    )
    .await;
    for (i, (name, _, muted)) in cases.iter().enumerate() {
        let state = &states[&key(&body[i])];
        let expected = if *muted { "suppressed" } else { "active" };
        assert_eq!(state, expected, "{name} {}", body[i]["labels"]);
    }
}
