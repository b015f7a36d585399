//! Alertmanager's configuration: amtool accepts it, routes by severity, and
//! its inhibition rules name alerts that exist.

use std::collections::BTreeSet;
use std::process::Command;

use crate::promql::ALERTS;
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
    let alerts: BTreeSet<String> = list_of(&read_yaml(ALERTS), "groups")
        .iter()
        .flat_map(|g| list_of(g, "rules"))
        .map(|r| str_of(r, "alert").to_owned())
        .collect();
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
