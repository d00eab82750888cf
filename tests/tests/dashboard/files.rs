//! The dashboard and the rules as files: where they are, what they query.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;

use portcullis_tests::paths::workspace_root;

use crate::promql::{self, MetricRef};

pub fn dashboard_path() -> PathBuf {
    workspace_root().join("envoy-config/grafana/portcullis.json")
}

pub fn rules_path() -> PathBuf {
    workspace_root().join("envoy-config/prometheus/portcullis-alerts.yaml")
}

pub fn rules_tests_path() -> PathBuf {
    workspace_root().join("envoy-config/prometheus/portcullis-alerts.test.yaml")
}

pub fn prometheus_config_path() -> PathBuf {
    workspace_root().join("envoy-config/prometheus/prometheus.yml")
}

pub fn dashboard() -> Value {
    let path = dashboard_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn rules() -> serde_yaml_ng::Value {
    yaml(&rules_path())
}

pub fn yaml(path: &std::path::Path) -> serde_yaml_ng::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Grafana's own variables, which any query may use.
pub const BUILTIN_VARIABLES: &[&str] = &[
    "__rate_interval",
    "__interval",
    "__interval_ms",
    "__range",
    "__range_s",
    "__range_ms",
];

/// One query and where it is: `panel 12 "jwt: accepted and rejected" target A`.
#[derive(Clone, Debug)]
pub struct Query {
    pub place: String,
    pub expr: String,
    /// The target's legend (`{{reason}}`), for a panel target.
    pub legend: Option<String>,
}

/// Every panel, those inside rows included, in order.
pub fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in list.as_array().into_iter().flatten() {
            out.push(panel);
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

pub fn panel_queries(dashboard: &Value) -> Vec<Query> {
    let mut out = Vec::new();
    for panel in panels(dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push(Query {
                place: format!(
                    "panel {} {:?} target {}",
                    panel["id"],
                    panel["title"].as_str().unwrap_or(""),
                    target["refId"].as_str().unwrap_or("?")
                ),
                expr: target["expr"].as_str().unwrap_or("").to_owned(),
                legend: target["legendFormat"].as_str().map(str::to_owned),
            });
        }
    }
    out
}

/// The selector of each query variable (`label_values(<selector>, <label>)`).
pub fn variable_queries(dashboard: &Value) -> Vec<Query> {
    variables(dashboard)
        .iter()
        .filter(|v| v["type"] == "query")
        .map(|v| {
            let query = v["query"]
                .as_str()
                .or_else(|| v["query"]["query"].as_str())
                .unwrap_or("");
            let place = format!("variable {}", v["name"]);
            let selector = query
                .strip_prefix("label_values(")
                .and_then(|rest| rest.strip_suffix(')'))
                .and_then(|args| args.rsplit_once(','))
                .map(|(selector, _label)| selector.trim().to_owned())
                .unwrap_or_else(|| {
                    panic!("{place}: not label_values(<selector>, <label>): {query:?}")
                });
            Query {
                place,
                expr: selector,
                legend: None,
            }
        })
        .collect()
}

pub fn variables(dashboard: &Value) -> Vec<&Value> {
    dashboard["templating"]["list"]
        .as_array()
        .map(|list| list.iter().collect())
        .unwrap_or_default()
}

/// Every alert rule: (group, rule).
pub fn alert_rules(rules: &serde_yaml_ng::Value) -> Vec<(String, &serde_yaml_ng::Value)> {
    let mut out = Vec::new();
    for group in rules["groups"].as_sequence().into_iter().flatten() {
        let name = group["name"].as_str().unwrap_or("?").to_owned();
        for rule in group["rules"].as_sequence().into_iter().flatten() {
            out.push((name.clone(), rule));
        }
    }
    out
}

pub fn rule_queries(rules: &serde_yaml_ng::Value) -> Vec<Query> {
    alert_rules(rules)
        .into_iter()
        .map(|(group, rule)| Query {
            place: format!(
                "alert {} (group {group})",
                rule["alert"].as_str().unwrap_or("?")
            ),
            expr: rule["expr"].as_str().unwrap_or("").to_owned(),
            legend: None,
        })
        .collect()
}

/// Every query of the dashboard (panels and variables) and of the rules.
pub fn all_queries() -> Vec<Query> {
    let dashboard = dashboard();
    let mut all = panel_queries(&dashboard);
    all.extend(variable_queries(&dashboard));
    all.extend(rule_queries(&rules()));
    all
}

/// Each metric the queries read, with the places that read it.
pub fn metrics_read(queries: &[Query]) -> Vec<(MetricRef, BTreeSet<String>)> {
    let mut by_metric: std::collections::BTreeMap<MetricRef, BTreeSet<String>> =
        std::collections::BTreeMap::new();
    for query in queries {
        let refs =
            promql::metric_refs(&query.expr).unwrap_or_else(|e| panic!("{}: {e}", query.place));
        assert!(
            !refs.is_empty(),
            "{}: reads no metric: {}",
            query.place,
            query.expr
        );
        for r in refs {
            by_metric.entry(r).or_default().insert(query.place.clone());
        }
    }
    by_metric.into_iter().collect()
}

/// `expr` as Prometheus would receive it from Grafana: the interval variables given
/// values, each dashboard variable (used only as `=~"$name"`) matching anything.
pub fn as_sent(expr: &str, rate_interval: &str, interval: &str) -> String {
    let mut out = expr
        .replace("$__rate_interval", rate_interval)
        .replace("$__interval", interval)
        .replace("$__range", "1h");
    while let Some(at) = out.find("=~\"$") {
        let rest = &out[at + 4..];
        let end = rest.find('"').unwrap_or(rest.len());
        out.replace_range(at + 3..at + 4 + end, ".+");
    }
    out
}
