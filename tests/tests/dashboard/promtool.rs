//! promtool, Prometheus's own reading: the config and the rules load, every dashboard query
//! parses, the alerts' unit tests pass and cover each alert, and the panels that take a
//! reason or a route from the counter's name split by it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use portcullis_tests::paths::ScratchDir;
use serde_json::{json, Value};

use crate::files;
use crate::promql::{self, MetricRef};

/// `$PORTCULLIS_PROMTOOL`, else `promtool` on the PATH (Debian's `prometheus` package).
fn promtool() -> PathBuf {
    let from_env = std::env::var_os("PORTCULLIS_PROMTOOL")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("promtool"))
            .find(|p| p.is_file())
    });
    from_env.or(on_path).unwrap_or_else(|| {
        panic!(
            "no promtool: install Debian's prometheus package (apt-get install prometheus) \
             or set PORTCULLIS_PROMTOOL"
        )
    })
}

/// Runs promtool with `args` in `dir`: whether it succeeded, and what it printed.
fn run_promtool(dir: &Path, args: &[&str]) -> (bool, String) {
    let output = Command::new(promtool())
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running promtool {args:?}: {e}"));
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), printed)
}

fn write_yaml(path: &Path, value: &serde_yaml_ng::Value) {
    let text = serde_yaml_ng::to_string(value).unwrap();
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn to_yaml(value: &Value) -> serde_yaml_ng::Value {
    serde_yaml_ng::to_value(value).unwrap()
}

#[test]
fn promtool_accepts_the_config_the_rules_and_every_dashboard_query() {
    let prometheus_dir = files::prometheus_config_path()
        .parent()
        .unwrap()
        .to_path_buf();
    // The config loads the rules file: both are checked.
    let (ok, printed) = run_promtool(&prometheus_dir, &["check", "config", "prometheus.yml"]);
    assert!(ok, "promtool check config:\n{printed}");
    assert!(
        printed.contains("portcullis-alerts.yaml"),
        "the config loads no rules:\n{printed}"
    );

    // Each dashboard query as a recording rule, with Grafana's variables as it sends them.
    let queries: Vec<files::Query> = files::panel_queries(&files::dashboard());
    let rules: Vec<Value> = queries
        .iter()
        .enumerate()
        .map(|(n, q)| {
            json!({"record": format!("portcullis_dashboard:query_{n}"),
                   "expr": files::as_sent(&q.expr, "5m", "1m")})
        })
        .collect();
    let dir = ScratchDir::new("dashboard-rules").unwrap();
    let path = dir.path().join("dashboard-queries.yaml");
    write_yaml(
        &path,
        &to_yaml(&json!({"groups": [{"name": "dashboard", "rules": rules}]})),
    );
    let (ok, printed) = run_promtool(dir.path(), &["check", "rules", "dashboard-queries.yaml"]);
    let index: Vec<String> = queries
        .iter()
        .enumerate()
        .map(|(n, q)| format!("query_{n}: {}", q.place))
        .collect();
    assert!(
        ok,
        "promtool check rules on the dashboard's queries:\n{printed}\n{}",
        index.join("\n")
    );
    println!(
        "promtool: the config, the rules and {} dashboard queries parse",
        queries.len()
    );
}

#[test]
fn the_alerts_unit_tests_pass_and_cover_each_alert_firing_and_quiet() {
    let path = files::rules_tests_path();
    let dir = path.parent().unwrap();
    let (ok, printed) = run_promtool(
        dir,
        &["test", "rules", path.file_name().unwrap().to_str().unwrap()],
    );
    assert!(ok, "promtool test rules:\n{printed}");

    let tests = files::yaml(&path);
    let loads: Vec<&str> = tests["rule_files"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str())
        .collect();
    assert_eq!(
        loads,
        ["portcullis-alerts.yaml"],
        "{}: rule_files",
        path.display()
    );
    let mut fired = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for test in tests["tests"].as_sequence().into_iter().flatten() {
        for case in test["alert_rule_test"].as_sequence().into_iter().flatten() {
            let alert = case["alertname"].as_str().unwrap_or("").to_owned();
            let expected = case["exp_alerts"].as_sequence().map_or(0, |a| a.len());
            if expected > 0 {
                fired.insert(alert);
            } else {
                quiet.insert(alert);
            }
        }
    }
    let rules = files::rules();
    let mut missing = Vec::new();
    for (_, rule) in files::alert_rules(&rules) {
        let alert = rule["alert"].as_str().unwrap_or("?");
        if !fired.contains(alert) {
            missing.push(format!("{alert}: no case where it fires"));
        }
        if !quiet.contains(alert) && !quiet_elsewhere(alert, &tests) {
            missing.push(format!("{alert}: no case where it stays quiet"));
        }
    }
    assert!(
        missing.is_empty(),
        "{}:\n{}",
        path.display(),
        missing.join("\n")
    );
    println!(
        "promtool: the alerts' unit tests pass; each of {} alerts fires and stays quiet",
        fired.len()
    );
}

/// Whether a firing case of `alert` also shows it quiet: a node among its input series that
/// the expected alerts leave out (every case names its instances).
fn quiet_elsewhere(alert: &str, tests: &serde_yaml_ng::Value) -> bool {
    for test in tests["tests"].as_sequence().into_iter().flatten() {
        let instances: BTreeSet<String> = test["input_series"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|s| s["series"].as_str())
            .filter_map(|s| {
                let (_, rest) = s.split_once("instance=\"")?;
                Some(rest.split('"').next()?.to_owned())
            })
            .collect();
        for case in test["alert_rule_test"].as_sequence().into_iter().flatten() {
            if case["alertname"].as_str() != Some(alert) {
                continue;
            }
            let firing: BTreeSet<String> = case["exp_alerts"]
                .as_sequence()
                .into_iter()
                .flatten()
                .filter_map(|a| a["exp_labels"]["instance"].as_str().map(str::to_owned))
                .collect();
            if !firing.is_empty() && instances.iter().any(|i| !firing.contains(i)) {
                return true;
            }
        }
    }
    false
}

#[test]
fn the_panels_that_read_a_reason_or_route_from_the_name_split_by_it() {
    // For each such query: two counters of the family at 1/s and 2/s, and two names that
    // must not count (the family's total, a sibling with another ending); the panel must
    // show exactly the two, labelled by the part of the name the wildcard matched.
    let queries = files::panel_queries(&files::dashboard());
    let mut cases = Vec::new();
    for query in &queries {
        let refs = promql::metric_refs(&query.expr).unwrap();
        let patterns: Vec<&promql::NamePattern> = refs
            .iter()
            .filter_map(|r| match r {
                MetricRef::Pattern(p) => Some(p),
                MetricRef::Name(_) => None,
            })
            .collect();
        let [pattern] = patterns.as_slice() else {
            assert!(patterns.is_empty(), "{}: several name regexes", query.place);
            continue;
        };
        let legend = query.legend.as_deref().unwrap_or("");
        let label = legend
            .strip_prefix("{{")
            .and_then(|l| l.strip_suffix("}}"))
            .unwrap_or_else(|| panic!("{}: legend {legend:?} is not {{{{<label>}}}}", query.place));
        let name = |middle: &str| format!("{}{middle}{}", pattern.prefix, pattern.suffix);
        let total = format!("{}{}", pattern.prefix.trim_end_matches('_'), pattern.suffix);
        let sibling = format!("{}alpha_sibling", pattern.prefix);
        for decoy in [&total, &sibling] {
            assert!(!pattern.matches(decoy), "{}: {decoy} matches", query.place);
        }
        let series = |name: &str, per_15s: u32| {
            json!({"series": format!("{name}{{job=\"envoy\",instance=\"gw1\"}}"),
                   "values": format!("0+{per_15s}x80")})
        };
        cases.push(json!({
            "interval": "15s",
            "input_series": [series(&name("alpha"), 15), series(&name("beta"), 30),
                             series(&total, 45), series(&sibling, 60)],
            "promql_expr_test": [{
                "expr": files::as_sent(&query.expr, "1m", "15s"),
                "eval_time": "10m",
                "exp_samples": [{"labels": format!("{{{label}=\"alpha\"}}"), "value": 1},
                                {"labels": format!("{{{label}=\"beta\"}}"), "value": 2}],
            }],
        }));
        println!("{}: split by {label} checked", query.place);
    }
    assert!(cases.len() >= 3, "only {} by-name panels", cases.len());
    let dir = ScratchDir::new("dashboard-promql").unwrap();
    let path = dir.path().join("by-name.test.yaml");
    write_yaml(
        &path,
        &to_yaml(&json!({"evaluation_interval": "15s", "tests": cases})),
    );
    let (ok, printed) = run_promtool(dir.path(), &["test", "rules", "by-name.test.yaml"]);
    assert!(ok, "promtool test rules on the by-name panels:\n{printed}");
}
