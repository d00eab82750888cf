//! The files' structure: the dashboard importable, the rules file what Prometheus loads
//! with what an operator reads, every query readable by the extractor.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::files;

/// The datasource every panel, target and variable must use: the import's input.
fn input_datasource() -> Value {
    json!({"type": "prometheus", "uid": "${DS_PROMETHEUS}"})
}

/// Each `$name` or `${name}` in `expr`: (name, byte offset of the `$`).
fn variables_used(expr: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for (at, _) in expr.match_indices('$') {
        let rest = &expr[at + 1..];
        let name: String = rest
            .strip_prefix('{')
            .unwrap_or(rest)
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        // `$1` is label_replace's capture group, which Grafana leaves alone (no variable
        // is called 1).
        if name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            out.push((name, at));
        }
    }
    out
}

#[test]
fn the_dashboard_imports_with_its_datasource_as_an_input() {
    let dashboard = files::dashboard();
    let ds = input_datasource();
    let mut problems: Vec<String> = Vec::new();

    let inputs = dashboard["__inputs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let input = inputs.iter().find(|i| i["name"] == "DS_PROMETHEUS");
    match input {
        Some(i) if i["type"] == "datasource" && i["pluginId"] == "prometheus" => {}
        other => problems.push(format!(
            "__inputs: no DS_PROMETHEUS datasource input of plugin prometheus: {other:?}"
        )),
    }
    if inputs.len() != 1 {
        problems.push(format!(
            "__inputs: {} inputs, expected only DS_PROMETHEUS",
            inputs.len()
        ));
    }
    for field in ["title", "uid"] {
        if dashboard[field].as_str().is_none_or(str::is_empty) {
            problems.push(format!("{field}: missing"));
        }
    }
    if !dashboard["schemaVersion"].is_u64() {
        problems.push("schemaVersion: missing".to_owned());
    }
    if !dashboard["id"].is_null() {
        problems.push("id: must be null in an importable dashboard".to_owned());
    }

    let mut ids = BTreeSet::new();
    let panels = files::panels(&dashboard);
    for panel in &panels {
        let title = panel["title"].as_str().unwrap_or("");
        let here = format!("panel {} {title:?}", panel["id"]);
        match panel["id"].as_u64() {
            Some(id) if ids.insert(id) => {}
            Some(id) => problems.push(format!("{here}: id {id} is used twice")),
            None => problems.push(format!("{here}: no numeric id")),
        }
        let grid = &panel["gridPos"];
        let dims: Vec<Option<u64>> = ["h", "w", "x", "y"]
            .iter()
            .map(|k| grid[k].as_u64())
            .collect();
        match dims.as_slice() {
            [Some(h), Some(w), Some(x), Some(_)] if *h > 0 && *w > 0 && x + w <= 24 => {}
            _ => problems.push(format!("{here}: gridPos {grid} is not within 24 columns")),
        }
        if title.is_empty() {
            problems.push(format!("{here}: no title"));
        }
        if panel["type"] == "row" {
            continue;
        }
        if panel["datasource"] != ds {
            problems.push(format!(
                "{here}: datasource {} is not {ds}",
                panel["datasource"]
            ));
        }
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            problems.push(format!("{here}: no targets"));
        }
        let mut ref_ids = BTreeSet::new();
        for target in &targets {
            let ref_id = target["refId"].as_str().unwrap_or("");
            if ref_id.is_empty() || !ref_ids.insert(ref_id.to_owned()) {
                problems.push(format!("{here}: refId {ref_id:?} missing or repeated"));
            }
            if target["datasource"] != ds {
                problems.push(format!(
                    "{here} target {ref_id}: datasource {} is not {ds}",
                    target["datasource"]
                ));
            }
            if target["expr"].as_str().is_none_or(|e| e.trim().is_empty()) {
                problems.push(format!("{here} target {ref_id}: no expr"));
            }
        }
    }
    let graphs = panels.iter().filter(|p| p["type"] != "row").count();
    assert!(
        graphs >= 20,
        "only {graphs} panels: the dashboard lost its panels"
    );

    let variables = files::variables(&dashboard);
    let mut names = BTreeSet::new();
    for variable in &variables {
        let name = variable["name"].as_str().unwrap_or("");
        if name.is_empty() || !names.insert(name.to_owned()) {
            problems.push(format!("variable {name:?}: missing or repeated name"));
        }
        if variable["type"] == "query" && variable["datasource"] != ds {
            problems.push(format!(
                "variable {name}: datasource {} is not {ds}",
                variable["datasource"]
            ));
        }
    }
    // A multi-value variable becomes `(a|b)`: only a regex matcher takes that.
    let queries: Vec<files::Query> = files::panel_queries(&dashboard)
        .into_iter()
        .chain(files::variable_queries(&dashboard))
        .collect();
    for query in &queries {
        for (name, at) in variables_used(&query.expr) {
            if files::BUILTIN_VARIABLES.contains(&name.as_str()) {
                continue;
            }
            if !names.contains(&name) {
                problems.push(format!(
                    "{}: ${name} is not a dashboard variable",
                    query.place
                ));
            }
            let regex_value = query.expr[..at].ends_with("=~\"")
                && (query.expr[at..].starts_with(&format!("${name}\""))
                    || query.expr[at..].starts_with(&format!("${{{name}}}\"")));
            if !regex_value {
                problems.push(format!(
                    "{}: ${name} is used other than as a whole regex matcher value =~\"${name}\"",
                    query.place
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{}:\n{}",
        files::dashboard_path().display(),
        problems.join("\n")
    );
    println!(
        "{} panels, {} targets, {} variables: importable",
        graphs,
        files::panel_queries(&dashboard).len(),
        variables.len()
    );
}

/// A Prometheus duration (`5m`, `1h30m`, `500ms`), in milliseconds.
fn duration_ms(text: &str) -> Option<u64> {
    let units: [(&str, u64); 7] = [
        ("ms", 1),
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ];
    let mut rest = text;
    let mut total = 0u64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let n: u64 = rest[..digits].parse().ok()?;
        let (unit, scale) = units.iter().find(|(u, _)| rest[digits..].starts_with(u))?;
        total = total.checked_add(n.checked_mul(*scale)?)?;
        rest = &rest[digits + unit.len()..];
    }
    Some(total)
}

#[test]
fn durations_read_as_prometheus_writes_them() {
    assert_eq!(duration_ms("5m"), Some(300_000));
    assert_eq!(duration_ms("1h30m"), Some(5_400_000));
    assert_eq!(duration_ms("500ms"), Some(500));
    for bad in ["", "5", "m", "5 m", "1.5m", "5M"] {
        assert_eq!(duration_ms(bad), None, "{bad:?}");
    }
}

#[test]
fn the_rules_file_is_what_prometheus_loads_with_what_an_operator_reads() {
    let rules = files::rules();
    let mut problems: Vec<String> = Vec::new();
    let keys = |v: &serde_yaml_ng::Value| -> Vec<String> {
        v.as_mapping()
            .map(|m| {
                m.keys()
                    .filter_map(|k| k.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    if keys(&rules) != ["groups"] {
        problems.push(format!(
            "top level: {:?}, expected only groups",
            keys(&rules)
        ));
    }
    let groups = rules["groups"].as_sequence().cloned().unwrap_or_default();
    if groups.is_empty() {
        problems.push("groups: none".to_owned());
    }
    let mut group_names = BTreeSet::new();
    let mut alerts = BTreeSet::new();
    for group in &groups {
        let name = group["name"].as_str().unwrap_or("");
        if name.is_empty() || !group_names.insert(name.to_owned()) {
            problems.push(format!("group {name:?}: missing or repeated name"));
        }
        for key in keys(group) {
            if !["name", "interval", "rules", "limit", "query_offset"].contains(&key.as_str()) {
                problems.push(format!("group {name}: unknown field {key}"));
            }
        }
        let rules = group["rules"].as_sequence().cloned().unwrap_or_default();
        if rules.is_empty() {
            problems.push(format!("group {name}: no rules"));
        }
        for rule in &rules {
            let alert = rule["alert"].as_str().unwrap_or("");
            let here = format!("group {name} alert {alert:?}");
            if alert.is_empty() {
                problems.push(format!(
                    "{here}: not an alert (recording rules go elsewhere)"
                ));
            } else if !alerts.insert(alert.to_owned()) {
                problems.push(format!("{here}: repeated"));
            } else if !alert.starts_with("Portcullis")
                || !alert.chars().all(|c| c.is_ascii_alphanumeric())
            {
                problems.push(format!("{here}: not a Portcullis<CamelCase> name"));
            }
            for key in keys(rule) {
                if ![
                    "alert",
                    "expr",
                    "for",
                    "keep_firing_for",
                    "labels",
                    "annotations",
                ]
                .contains(&key.as_str())
                {
                    problems.push(format!("{here}: unknown field {key}"));
                }
            }
            if rule["expr"].as_str().is_none_or(|e| e.trim().is_empty()) {
                problems.push(format!("{here}: no expr"));
            }
            match rule["for"].as_str().map(duration_ms) {
                Some(Some(ms)) if ms > 0 => {}
                other => problems.push(format!(
                    "{here}: for: {:?} is not a duration above 0 ({other:?})",
                    rule["for"]
                )),
            }
            let severity = rule["labels"]["severity"].as_str().unwrap_or("");
            if !["critical", "warning"].contains(&severity) {
                problems.push(format!(
                    "{here}: severity {severity:?}, not critical or warning"
                ));
            }
            for key in ["summary", "description"] {
                if rule["annotations"][key]
                    .as_str()
                    .is_none_or(|t| t.trim().is_empty())
                {
                    problems.push(format!("{here}: no {key} annotation"));
                }
            }
            for key in keys(&rule["annotations"]) {
                if !["summary", "description", "runbook_url"].contains(&key.as_str()) {
                    problems.push(format!("{here}: unknown annotation {key}"));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{}:\n{}",
        files::rules_path().display(),
        problems.join("\n")
    );
    println!(
        "{} groups, {} alerts: well formed",
        groups.len(),
        alerts.len()
    );
}

#[test]
fn every_query_reads_metrics_the_extractor_can_name() {
    let queries = files::all_queries();
    let read = files::metrics_read(&queries);
    assert!(read.len() >= 40, "only {} metrics read", read.len());
    for (metric, places) in &read {
        println!(
            "{metric}: {}",
            places.iter().cloned().collect::<Vec<_>>().join("; ")
        );
    }
}
