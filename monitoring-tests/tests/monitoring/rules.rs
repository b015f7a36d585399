//! The alert rules: promtool's checks and unit tests, the conventions every
//! alert follows, and proof that the unit tests would catch a broken rule.

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::{json, Value};

use crate::promql::ALERTS;
use crate::support::*;

const RULE_TESTS: &str = "monitoring/tests";
const RUNBOOK_DOC: &str = "docs/operations.md";

/// The alerts the issues ask for, by what they watch.
const REQUIRED_ALERTS: [&str; 11] = [
    "FederationNoProjectOnline",
    "FederationProjectsGoingStale",
    "FederationServiceDown",
    "FederationServiceNotReady",
    "FederationNatsDisconnected",
    "FederationHeartbeatRejectionsSpiking",
    "FederationHeartbeatsDropped",
    "FederationHeartbeatWritesFailing",
    "FederationOutboxBacklogGrowing",
    "FederationSyncFailing",
    "FederationSyncCircuitOpen",
];

fn groups() -> Vec<Value> {
    list_of(&read_yaml(ALERTS), "groups").to_vec()
}

fn alerts_of(group: &Value) -> Vec<&Value> {
    list_of(group, "rules")
        .iter()
        .filter(|r| !str_of(r, "alert").is_empty())
        .collect()
}

fn test_file_of(group: &Value) -> String {
    format!("{RULE_TESTS}/{}.test.yml", str_of(group, "name"))
}

#[test]
fn promtool_accepts_the_prometheus_config_and_its_rule_files() {
    let rule_files = list_of(&read_yaml("monitoring/prometheus.yml"), "rule_files").len();
    assert!(
        rule_files >= 1,
        "monitoring/prometheus.yml loads no rule files"
    );
    let out = run_ok(
        Command::new(promtool())
            .args(["check", "config"])
            .arg(repo_path("monitoring/prometheus.yml")),
    );
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains(&format!("SUCCESS: {rule_files} rule files found")),
        "the rule files were not loaded:\n{text}"
    );
}

#[test]
fn promtool_accepts_the_alert_rules() {
    let out = run_ok(
        Command::new(promtool())
            .args(["check", "rules"])
            .arg(repo_path(ALERTS)),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let expected: usize = groups().iter().map(|g| list_of(g, "rules").len()).sum();
    assert!(
        text.contains(&format!("SUCCESS: {expected} rules found")),
        "expected {expected} rules:\n{text}"
    );
}

#[test]
fn promtool_rule_unit_tests_pass() {
    let files = files_in(RULE_TESTS, ".test.yml");
    assert!(!files.is_empty(), "no rule tests in {RULE_TESTS}");
    let mut cmd = Command::new(promtool());
    cmd.args(["test", "rules"]);
    for f in &files {
        cmd.arg(repo_path(f));
    }
    run_ok(&mut cmd);
}

#[test]
fn the_required_alerts_exist() {
    let names: BTreeSet<String> = groups()
        .iter()
        .flat_map(|g| {
            alerts_of(g)
                .into_iter()
                .map(|r| str_of(r, "alert").to_owned())
        })
        .collect();
    for required in REQUIRED_ALERTS {
        assert!(names.contains(required), "{required} missing from {ALERTS}");
    }
}

#[test]
fn every_alert_has_for_severity_summary_description_and_a_runbook_that_exists() {
    let anchors = markdown_anchors(&read(RUNBOOK_DOC));
    let mut problems = Vec::new();
    for group in groups() {
        for rule in alerts_of(&group) {
            let name = str_of(rule, "alert");
            let for_ = str_of(rule, "for");
            if !is_positive_duration(for_) {
                problems.push(format!("{name}: `for:` missing or zero ({for_:?})"));
            }
            let severity = str_of(&rule["labels"], "severity");
            if !["critical", "warning"].contains(&severity) {
                problems.push(format!(
                    "{name}: severity {severity:?} is not critical|warning"
                ));
            }
            let ann = &rule["annotations"];
            for key in ["summary", "description"] {
                if str_of(ann, key).trim().is_empty() {
                    problems.push(format!("{name}: no {key}"));
                }
            }
            let runbook = str_of(ann, "runbook_url");
            match runbook.strip_prefix(&format!("{RUNBOOK_DOC}#")) {
                None => problems.push(format!(
                    "{name}: runbook_url {runbook:?} is not {RUNBOOK_DOC}#<anchor>"
                )),
                Some(anchor) if !anchors.contains(anchor) => problems.push(format!(
                    "{name}: {RUNBOOK_DOC} has no heading with anchor #{anchor}"
                )),
                Some(anchor) if anchor != name.to_ascii_lowercase() => problems.push(format!(
                    "{name}: runbook anchor #{anchor} is not the alert's own section"
                )),
                Some(_) => {}
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Each group has its test file, and each alert there has a case where it
/// fires and a case where it stays quiet; every tested alert exists.
#[test]
fn every_rule_group_has_a_test_file_where_each_alert_fires_and_stays_quiet() {
    let mut problems = Vec::new();
    let mut expected_files = BTreeSet::new();
    for group in groups() {
        let file = test_file_of(&group);
        expected_files.insert(file.clone());
        if !repo_path(&file).is_file() {
            problems.push(format!(
                "group {}: no test file {file}",
                str_of(&group, "name")
            ));
            continue;
        }
        let tests = read_yaml(&file);
        let rule_files: Vec<&str> = list_of(&tests, "rule_files")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        if rule_files != ["../alerts.yml"] {
            problems.push(format!(
                "{file}: rule_files should be [../alerts.yml], is {rule_files:?}"
            ));
        }
        let cases: Vec<&Value> = list_of(&tests, "tests")
            .iter()
            .flat_map(|t| list_of(t, "alert_rule_test"))
            .collect();
        let names: Vec<&str> = alerts_of(&group)
            .iter()
            .map(|r| str_of(r, "alert"))
            .collect();
        for case in &cases {
            let tested = str_of(case, "alertname");
            if !names.contains(&tested) {
                problems.push(format!(
                    "{file}: tests {tested}, which is not an alert of this group"
                ));
            }
        }
        for name in names {
            let of_alert: Vec<&&Value> = cases
                .iter()
                .filter(|c| str_of(c, "alertname") == name)
                .collect();
            if !of_alert
                .iter()
                .any(|c| !list_of(c, "exp_alerts").is_empty())
            {
                problems.push(format!("{file}: no case where {name} fires"));
            }
            if !of_alert.iter().any(|c| list_of(c, "exp_alerts").is_empty()) {
                problems.push(format!("{file}: no case where {name} stays quiet"));
            }
        }
    }
    for file in files_in(RULE_TESTS, ".yml") {
        if !expected_files.contains(&file) {
            problems.push(format!("{file} tests no rule group of {ALERTS}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The unit tests have teeth: for every alert, its group's tests fail when
/// the alert can never fire, and (with its firing cases removed) when it
/// always fires.
#[test]
fn the_rule_unit_tests_fail_when_an_alert_is_broken() {
    let rules = read_yaml(ALERTS);
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("tests")).expect("tests dir");
    let mut problems = Vec::new();
    for group in groups() {
        let test_file = test_file_of(&group);
        let tests = read_yaml(&test_file);
        for rule in alerts_of(&group) {
            let name = str_of(rule, "alert");
            for (mutation, expr) in [
                ("never fires", "vector(1) == 0"),
                ("always fires", "vector(1)"),
            ] {
                let mut broken_rules = rules.clone();
                set_expr(&mut broken_rules, name, expr);
                let mut broken_tests = tests.clone();
                if mutation == "always fires" {
                    keep_only_quiet_cases(&mut broken_tests, name);
                }
                std::fs::write(dir.path().join("alerts.yml"), broken_rules.to_string())
                    .expect("write rules");
                let path = dir.path().join("tests/case.test.yml");
                std::fs::write(&path, broken_tests.to_string()).expect("write tests");
                let out = run(Command::new(promtool()).args(["test", "rules"]).arg(&path));
                if out.status.success() {
                    problems.push(format!("{test_file} still passes when {name} {mutation}"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn set_expr(rules: &mut Value, alert: &str, expr: &str) {
    for group in rules["groups"].as_array_mut().expect("groups") {
        for rule in group["rules"].as_array_mut().expect("rules") {
            if str_of(rule, "alert") == alert {
                rule["expr"] = json!(expr);
            }
        }
    }
}

fn keep_only_quiet_cases(tests: &mut Value, alert: &str) {
    for t in tests["tests"].as_array_mut().expect("tests") {
        if let Some(cases) = t.get_mut("alert_rule_test").and_then(Value::as_array_mut) {
            cases
                .retain(|c| str_of(c, "alertname") != alert || list_of(c, "exp_alerts").is_empty());
        }
    }
}

fn is_positive_duration(s: &str) -> bool {
    let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
    let unit = &s[digits.len()..];
    digits.parse::<u64>().is_ok_and(|n| n > 0) && ["s", "m", "h", "d", "w"].contains(&unit)
}

/// GitHub's anchors for the headings of a Markdown document.
pub fn markdown_anchors(markdown: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut out = BTreeSet::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code || !line.starts_with('#') {
            continue;
        }
        let text = line.trim_start_matches('#').trim();
        let anchor: String = text
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        out.insert(anchor);
    }
    out
}

#[test]
fn markdown_anchors_follow_github() {
    let anchors = markdown_anchors("# Operations\n## Backup & restore (pg_dump)\n```\n# not a heading\n```\n### FederationServiceDown\n");
    let expected: BTreeSet<String> = [
        "operations",
        "backup--restore-pg_dump",
        "federationservicedown",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(anchors, expected);
}
