//! The expressions of the dashboards and alert rules, the metric names they
//! use, and the names the service exports.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::support::{files_in, list_of, read_json, read_yaml, str_of};

/// One PromQL expression and where it comes from.
#[derive(Debug, Clone)]
pub struct Expression {
    /// e.g. `federation-overview.json: "Online" (A)` or `alerts.yml: FederationServiceDown`.
    pub origin: String,
    /// As written, before Grafana variables are substituted.
    pub raw: String,
    /// What is sent to Prometheus.
    pub promql: String,
}

pub const DASHBOARD_DIR: &str = "monitoring/grafana/dashboards";
pub const ALERTS: &str = "monitoring/alerts.yml";

/// What Grafana's built-in interval variables become when an expression is
/// evaluated outside Grafana.
const GRAFANA_BUILTINS: [(&str, &str); 6] = [
    ("__rate_interval", "1m"),
    ("__interval", "15s"),
    ("__interval_ms", "15000"),
    ("__range", "1h"),
    ("__range_s", "3600"),
    ("__range_ms", "3600000"),
];

/// Every expression in every dashboard and in the alert rules.
pub fn all_expressions() -> Vec<Expression> {
    let mut out = Vec::new();
    for file in files_in(DASHBOARD_DIR, ".json") {
        out.extend(dashboard_expressions(&file, &read_json(&file)));
    }
    out.extend(rule_expressions(&read_yaml(ALERTS), "alerts.yml"));
    out
}

/// The expressions of one dashboard: every `expr` (panel targets, nested
/// rows, annotations) and every template variable query.
pub fn dashboard_expressions(file: &str, dashboard: &Value) -> Vec<Expression> {
    let name = file.rsplit('/').next().unwrap_or(file);
    let vars = dashboard_variables(dashboard);
    let mut found = Vec::new();
    collect_exprs(dashboard, "", &mut found);
    let mut out = Vec::new();
    for (title, ref_id, raw) in found {
        out.push(Expression {
            origin: format!("{name}: \"{title}\" ({ref_id})"),
            promql: substitute(&raw, &vars)
                .unwrap_or_else(|e| panic!("{name}: \"{title}\": {e} in {raw}")),
            raw,
        });
    }
    for var in list_of(&dashboard["templating"], "list") {
        if str_of(var, "type") != "query" {
            continue;
        }
        let query = match &var["query"] {
            Value::String(s) => s.clone(),
            q => str_of(q, "query").to_owned(),
        };
        if let Some(expr) = variable_query_expression(&query) {
            out.push(Expression {
                origin: format!("{name}: variable ${}", str_of(var, "name")),
                promql: substitute(&expr, &vars)
                    .unwrap_or_else(|e| panic!("{name}: variable: {e} in {query}")),
                raw: query,
            });
        }
    }
    out
}

fn collect_exprs(v: &Value, title: &str, out: &mut Vec<(String, String, String)>) {
    match v {
        Value::Object(map) => {
            let title = map.get("title").and_then(Value::as_str).unwrap_or(title);
            if let Some(expr) = map.get("expr").and_then(Value::as_str) {
                let ref_id = map.get("refId").and_then(Value::as_str).unwrap_or("-");
                out.push((title.to_owned(), ref_id.to_owned(), expr.to_owned()));
            }
            for (k, child) in map {
                if k != "templating" {
                    collect_exprs(child, title, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|c| collect_exprs(c, title, out)),
        _ => {}
    }
}

/// Dashboard template variables and the value used for each when querying
/// outside Grafana: its "All" value, else a regex matching anything.
pub fn dashboard_variables(dashboard: &Value) -> BTreeMap<String, String> {
    let mut vars: BTreeMap<String, String> = GRAFANA_BUILTINS
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    for var in list_of(&dashboard["templating"], "list") {
        let value = match str_of(var, "allValue") {
            "" => ".*",
            all => all,
        };
        vars.insert(str_of(var, "name").to_owned(), value.to_owned());
    }
    vars
}

/// The PromQL inside a Grafana Prometheus variable query, if it has one:
/// `label_values(expr, label)` and `query_result(expr)` do;
/// `label_values(label)`, `label_names()` and `metrics(regex)` do not.
pub fn variable_query_expression(query: &str) -> Option<String> {
    let q = query.trim();
    let inner = |prefix: &str| {
        q.strip_prefix(prefix)
            .and_then(|r| r.trim_start().strip_prefix('('))
            .and_then(|r| r.strip_suffix(')'))
            .map(str::trim)
    };
    if let Some(args) = inner("label_values") {
        return top_level_last_comma(args).map(|(expr, _label)| expr.trim().to_owned());
    }
    if let Some(expr) = inner("query_result") {
        return Some(expr.to_owned());
    }
    if inner("label_names").is_some() || inner("metrics").is_some() {
        return None;
    }
    Some(q.to_owned())
}

fn top_level_last_comma(s: &str) -> Option<(&str, &str)> {
    let (mut depth, mut quote, mut last) = (0i32, None, None);
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'' | '`') => quote = Some(c),
            (None, '(' | '{' | '[') => depth += 1,
            (None, ')' | '}' | ']') => depth -= 1,
            (None, ',') if depth == 0 => last = Some(i),
            _ => {}
        }
    }
    last.map(|i| (&s[..i], &s[i + 1..]))
}

/// Replaces Grafana variables (`$name`, `${name}`, `${name:format}`,
/// `[[name]]`) with their values. An unknown variable is an error: Grafana
/// would send it to Prometheus as it is. `$1`-style regex references (as in
/// label_replace) are left alone.
pub fn substitute(expr: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(expr.len());
    let mut rest = expr;
    while let Some(i) = rest.find(['$', '[']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let (name, len) = if let Some(t) = tail.strip_prefix("${") {
            let end = t.find('}').ok_or("unclosed ${")?;
            let name = t[..end].split(':').next().unwrap_or_default();
            (Some(name), end + 3)
        } else if let Some(t) = tail.strip_prefix("[[") {
            match t.find("]]") {
                Some(end) if t[..end].chars().all(is_ident_char) => (
                    Some(t[..end].split(':').next().unwrap_or_default()),
                    end + 4,
                ),
                _ => (None, 1),
            }
        } else if let Some(t) = tail.strip_prefix('$') {
            let end = t.find(|c: char| !is_ident_char(c)).unwrap_or(t.len());
            (Some(&t[..end]), end + 1)
        } else {
            (None, 1)
        };
        match name {
            Some(n) if !n.is_empty() && !n.chars().all(|c| c.is_ascii_digit()) => {
                let value = vars
                    .get(n)
                    .ok_or_else(|| format!("unknown Grafana variable ${n}"))?;
                out.push_str(value);
            }
            _ => out.push_str(&tail[..len]),
        }
        rest = &tail[len..];
    }
    out.push_str(rest);
    Ok(out)
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The alerting and recording rules of a rules file.
pub fn rule_expressions(rules: &Value, file: &str) -> Vec<Expression> {
    let mut out = Vec::new();
    for group in list_of(rules, "groups") {
        for rule in list_of(group, "rules") {
            let name = match (str_of(rule, "alert"), str_of(rule, "record")) {
                ("", record) => record,
                (alert, _) => alert,
            };
            let expr = str_of(rule, "expr").trim().to_owned();
            out.push(Expression {
                origin: format!("{file}: {name}"),
                raw: expr.clone(),
                promql: expr,
            });
        }
    }
    out
}

/// Words of PromQL that are not metric names even when not followed by `(`.
const KEYWORDS: [&str; 30] = [
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
    "start",
    "end",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// Keywords followed by a parenthesised list of label names.
const LABEL_LIST_KEYWORDS: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The metric names a PromQL expression selects: bare identifiers that are
/// neither functions, aggregations nor keywords, and `__name__="..."`
/// matchers. Label names, strings, durations and numbers are skipped.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&chars, i);
        } else if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '{' {
            let end = matching(&chars, i, '{', '}');
            names.extend(name_matchers(&chars[i + 1..end]));
            i = end + 1;
        } else if c == '[' {
            i = matching(&chars, i, '[', ']') + 1;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            i += 1;
            // Digits, units (5m30s), hex, and an exponent's sign (1e-3).
            while i < chars.len() {
                let d = chars[i];
                let exponent_sign = (d == '+' || d == '-') && matches!(chars[i - 1], 'e' | 'E');
                if !(d.is_ascii_alphanumeric() || d == '.' || d == '_' || exponent_sign) {
                    break;
                }
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            let call = chars.get(j) == Some(&'(');
            let lower = word.to_ascii_lowercase();
            if LABEL_LIST_KEYWORDS.contains(&lower.as_str()) && call {
                i = matching(&chars, j, '(', ')') + 1;
            } else if !call && !KEYWORDS.contains(&lower.as_str()) {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() && chars[i] != quote {
        if chars[i] == '\\' && quote != '`' {
            i += 1;
        }
        i += 1;
    }
    i + 1
}

/// Index of the bracket closing the one at `open_at` (or the end).
fn matching(chars: &[char], open_at: usize, open: char, close: char) -> usize {
    let mut depth = 0;
    let mut i = open_at;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(chars, i);
            continue;
        }
        if c == open {
            depth += 1;
        } else if c == close {
            depth -= 1;
            if depth == 0 {
                return i;
            }
        }
        i += 1;
    }
    chars.len()
}

/// `__name__="x"` matchers inside a selector's braces.
fn name_matchers(inside: &[char]) -> Vec<String> {
    let text: String = inside.iter().collect();
    let mut out = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        if let Some(rest) = part.strip_prefix("__name__") {
            let rest = rest.trim_start();
            if let Some(value) = rest.strip_prefix('=').filter(|r| !r.starts_with('~')) {
                out.push(value.trim().trim_matches(['"', '\'', '`']).to_owned());
            }
        }
    }
    out
}

/// The series names a scrape of the service can produce, from its
/// exposition text: the sample names present, and for every `# TYPE` line
/// the names its family's samples take, so a family that has no sample yet
/// (a labelled counter nothing incremented) still counts.
pub fn exported_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(family), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total", "_created"],
                "histogram" => &["_bucket", "_sum", "_count", "_created"],
                "gaugehistogram" => &["_bucket", "_gsum", "_gcount"],
                "summary" => &["", "_sum", "_count", "_created"],
                "info" => &["_info"],
                _ => &[""],
            };
            for s in suffixes {
                names.insert(format!("{family}{s}"));
            }
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_owned());
        }
    }
    names
}

/// Series Prometheus itself records for every scrape target; an expression
/// may use them when Prometheus really has them.
pub const SCRAPE_SERIES: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// Metric names used by `expressions` and found neither in `exported` nor
/// in `prometheus_names` (restricted to [`SCRAPE_SERIES`]), each with the
/// places that use it.
pub fn missing_names(
    expressions: &[Expression],
    exported: &BTreeSet<String>,
    prometheus_names: &BTreeSet<String>,
) -> BTreeMap<String, Vec<String>> {
    let mut missing: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in expressions {
        for name in metric_names(&e.promql) {
            let synthetic =
                SCRAPE_SERIES.contains(&name.as_str()) && prometheus_names.contains(&name);
            if !exported.contains(&name) && !synthetic {
                missing.entry(name).or_default().push(e.origin.clone());
            }
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(expr: &str) -> Vec<String> {
        metric_names(expr).into_iter().collect()
    }

    #[test]
    fn metric_names_skip_functions_aggregations_labels_and_durations() {
        assert_eq!(
            names(
                r#"sum by (route, le) (rate(http_request_duration_seconds_bucket{route=~"/api/.*"}[5m] offset 1m))"#
            ),
            ["http_request_duration_seconds_bucket"]
        );
        assert_eq!(
            names(
                r#"max(catalog_projects_by_status{status="online"}) == 0 and on () sum(max by (status) (catalog_projects_by_status)) > 0"#
            ),
            ["catalog_projects_by_status"]
        );
        assert_eq!(
            names("a_total / ignoring(reason) group_left(x) b_total unless c:recorded offset 5m"),
            ["a_total", "b_total", "c:recorded"]
        );
        assert_eq!(
            names("histogram_quantile(0.99, sum without (instance) (rate(x_bucket[1m:10s])))"),
            ["x_bucket"]
        );
        assert_eq!(
            names(r#"{__name__="by_name", job="x"} + 1e-3 * Inf"#),
            ["by_name"]
        );
        assert_eq!(
            names(r#"label_replace(up, "a", "$1", "instance", "(.*):.*")"#),
            ["up"]
        );
        assert_eq!(names("absent(up{job=\"federation\"}) or vector(1)"), ["up"]);
        assert_eq!(
            names("count_values(\"version\", build_info) > bool 1"),
            ["build_info"]
        );
    }

    #[test]
    fn exported_names_map_families_to_sample_names() {
        let text = "# TYPE http_requests counter\n\
                    http_requests_total{method=\"GET\"} 3\n\
                    # TYPE heartbeat_rejected counter\n\
                    # HELP heartbeat_rejected Rejected heartbeats\n\
                    # TYPE flush_seconds histogram\n\
                    # TYPE build info\n\
                    build_info{version=\"1\"} 1\n\
                    # TYPE outbox_pending gauge\n\
                    # EOF\n";
        let names = exported_names(text);
        for present in [
            "http_requests_total",
            "heartbeat_rejected_total",
            "flush_seconds_bucket",
            "flush_seconds_sum",
            "flush_seconds_count",
            "build_info",
            "outbox_pending",
        ] {
            assert!(names.contains(present), "{present} in {names:?}");
        }
        for absent in [
            "http_requests",
            "heartbeat_rejected",
            "flush_seconds",
            "build",
            "EOF",
        ] {
            assert!(!names.contains(absent), "{absent} in {names:?}");
        }
    }

    #[test]
    fn a_name_neither_exported_nor_scraped_is_reported_with_its_users() {
        let exprs = [
            Expression {
                origin: "d.json: \"A\" (A)".into(),
                raw: String::new(),
                promql: "rate(heartbeat_total[1m]) + up + scrape_series_added".into(),
            },
            Expression {
                origin: "alerts.yml: X".into(),
                raw: String::new(),
                promql: "heartbeat_total > 0 and catalog_lookup_total > 0".into(),
            },
        ];
        let exported = exported_names("# TYPE catalog_lookup counter\n");
        let prometheus: BTreeSet<String> = ["up".to_owned()].into();
        let missing = missing_names(&exprs, &exported, &prometheus);
        assert_eq!(
            missing.keys().collect::<Vec<_>>(),
            ["heartbeat_total", "scrape_series_added"]
        );
        assert_eq!(
            missing["heartbeat_total"],
            ["d.json: \"A\" (A)", "alerts.yml: X"]
        );
    }

    #[test]
    fn grafana_variables_are_substituted_and_unknown_ones_refused() {
        let dashboard = serde_json::json!({"templating": {"list": [
            {"name": "route", "type": "query", "allValue": ".*"},
            {"name": "job", "type": "custom"},
        ]}});
        let vars = dashboard_variables(&dashboard);
        assert_eq!(
            substitute(r#"rate(x{route=~"$route", job=~"${job:regex}"}[$__rate_interval]) and [[route]] $1"#, &vars).unwrap(),
            r#"rate(x{route=~".*", job=~".*"}[1m]) and .* $1"#
        );
        assert_eq!(
            substitute("increase(x[$__range]) / $__range_s", &vars).unwrap(),
            "increase(x[1h]) / 3600"
        );
        assert!(substitute("rate(x[$nope])", &vars)
            .unwrap_err()
            .contains("$nope"));
    }

    #[test]
    fn variable_queries_yield_their_promql() {
        assert_eq!(
            variable_query_expression("label_values(http_requests_total{job=\"a,b\"}, route)")
                .as_deref(),
            Some("http_requests_total{job=\"a,b\"}")
        );
        assert_eq!(variable_query_expression("label_values(route)"), None);
        assert_eq!(
            variable_query_expression("query_result(topk(5, x))").as_deref(),
            Some("topk(5, x)")
        );
        assert_eq!(variable_query_expression("metrics(http_.*)"), None);
    }

    #[test]
    fn dashboard_expressions_include_nested_rows_and_variables() {
        let dashboard = serde_json::json!({
            "panels": [
                {"type": "row", "title": "R", "panels": [
                    {"title": "Inner", "targets": [{"refId": "A", "expr": "rate(a_total[$__rate_interval])"}]}
                ]},
                {"title": "Outer", "targets": [{"refId": "B", "expr": "b{route=~\"$route\"}"}]}
            ],
            "templating": {"list": [{"name": "route", "type": "query",
                "query": {"query": "label_values(c_total, route)"}}]}
        });
        let exprs = dashboard_expressions("x/d.json", &dashboard);
        let got: Vec<(&str, &str)> = exprs
            .iter()
            .map(|e| (e.origin.as_str(), e.promql.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("d.json: \"Inner\" (A)", "rate(a_total[1m])"),
                ("d.json: \"Outer\" (B)", "b{route=~\".*\"}"),
                ("d.json: variable $route", "c_total"),
            ]
        );
    }
}
