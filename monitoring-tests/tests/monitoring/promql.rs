//! The expressions of the dashboards and alert rules, the metric names they
//! use, and the names the service exports.

use std::collections::{BTreeMap, BTreeSet};

use promql_parser::label::MatchOp;
use promql_parser::parser::Expr;
use promql_parser::util::{walk_expr, ExprVisitor};
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

/// Every rule of every group of a rules file, in order.
pub fn rules_of(rules: &Value) -> impl Iterator<Item = &Value> {
    list_of(rules, "groups")
        .iter()
        .flat_map(|g| list_of(g, "rules"))
}

/// The names of the alerts of the repository's rule file.
pub fn alert_names() -> BTreeSet<String> {
    rules_of(&read_yaml(ALERTS))
        .map(|r| str_of(r, "alert").to_owned())
        .filter(|a| !a.is_empty())
        .collect()
}

/// The alerting and recording rules of a rules file.
pub fn rule_expressions(rules: &Value, file: &str) -> Vec<Expression> {
    rules_of(rules)
        .map(|rule| {
            let name = match (str_of(rule, "alert"), str_of(rule, "record")) {
                ("", record) => record,
                (alert, _) => alert,
            };
            let expr = str_of(rule, "expr").trim().to_owned();
            Expression {
                origin: format!("{file}: {name}"),
                raw: expr.clone(),
                promql: expr,
            }
        })
        .collect()
}

/// Parses an expression with `promql-parser` (Prometheus's grammar), so a
/// mistake is reported here, with its origin, before any Prometheus runs.
pub fn parse(expr: &str) -> Result<Expr, String> {
    promql_parser::parser::parse(expr)
}

/// The metric names an expression selects: the name of every vector and
/// range selector, and `__name__="..."` matchers (also inside `or`
/// alternatives). Functions, aggregations, label names, strings, durations
/// and numbers are not names; the parser tells them apart.
pub fn metric_names(expr: &str) -> Result<BTreeSet<String>, String> {
    struct Names(BTreeSet<String>);
    impl ExprVisitor for Names {
        type Error = std::convert::Infallible;
        fn pre_visit(&mut self, e: &Expr) -> Result<bool, Self::Error> {
            let selector = match e {
                Expr::VectorSelector(vs) => vs,
                Expr::MatrixSelector(ms) => &ms.vs,
                _ => return Ok(true),
            };
            self.0.extend(selector.name.clone());
            let matchers = &selector.matchers;
            for m in matchers
                .matchers
                .iter()
                .chain(matchers.or_matchers.iter().flatten())
            {
                if m.name == "__name__" && matches!(m.op, MatchOp::Equal) {
                    self.0.insert(m.value.clone());
                }
            }
            Ok(true)
        }
    }
    let parsed = parse(expr)?;
    let mut names = Names(BTreeSet::new());
    let Ok(_) = walk_expr(&mut names, &parsed);
    Ok(names.0)
}

/// [`metric_names`] of an expression that must parse: a parse error fails
/// the test, naming where the expression comes from.
pub fn names_of(e: &Expression) -> BTreeSet<String> {
    metric_names(&e.promql)
        .unwrap_or_else(|err| panic!("{}: not valid PromQL: {err}\n    {}", e.origin, e.promql))
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
        for name in names_of(e) {
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
        metric_names(expr)
            .unwrap_or_else(|e| panic!("{expr}: {e}"))
            .into_iter()
            .collect()
    }

    #[test]
    fn every_dashboard_and_alert_expression_parses() {
        let exprs = all_expressions();
        assert!(!exprs.is_empty());
        let invalid: Vec<String> = exprs
            .iter()
            .filter_map(|e| {
                parse(&e.promql)
                    .err()
                    .map(|err| format!("{}\n    {}\n    {err}", e.origin, e.promql))
            })
            .collect();
        assert!(
            invalid.is_empty(),
            "not valid PromQL:\n{}",
            invalid.join("\n")
        );
    }

    #[test]
    fn an_invalid_expression_is_refused() {
        for bad in ["rate(x[5m]", "sum by (a) (", "x{a=}", "x +"] {
            assert!(metric_names(bad).is_err(), "{bad} parsed");
        }
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
