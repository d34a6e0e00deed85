//! The Grafana dashboard's queries: read from its JSON, their metric names
//! picked out of the PromQL, the server's exported names read from a scrape.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

/// Dashboard variables and the values the checks put in their place.
const VARIABLES: [(&str, &str); 4] = [
    ("$__rate_interval", "5m"),
    ("$__interval", "1m"),
    ("$__range", "1h"),
    ("$instance", ".+"),
];

/// PromQL words that are not metric names (aggregations may be followed by `by (…)`).
const KEYWORDS: [&str; 25] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
];

/// Every query of the dashboard: each `expr`, and each templating variable's
/// query, with the variables filled in.
pub fn queries(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let dashboard: Value = serde_json::from_str(&text).expect("dashboard JSON");
    let mut out = Vec::new();
    collect(&dashboard, &mut out);
    for variable in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        if let Some(query) = variable["query"]["query"].as_str().or(variable["query"].as_str()) {
            out.push(query.to_owned());
        }
    }
    out.into_iter()
        .map(|q| VARIABLES.iter().fold(q, |q, (var, value)| q.replace(var, value)))
        .collect()
}

fn collect(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", Value::String(expr)) => out.push(expr.clone()),
                    _ => collect(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
        _ => {}
    }
}

/// The metric names a PromQL expression (or `label_values(METRIC, label)`) reads.
pub fn metric_names(query: &str) -> BTreeSet<String> {
    if let Some(args) = query.trim().strip_prefix("label_values(") {
        let metric = args.split([',', '{', ')']).next().unwrap_or_default().trim();
        return BTreeSet::from([metric.to_owned()]);
    }
    // Drop strings, matchers `{…}`, ranges `[…]` and label lists after by/without/on/….
    let mut text = String::new();
    let mut depth: Option<char> = None;
    for c in query.chars() {
        match (depth, c) {
            (None, '"') => depth = Some('"'),
            (None, '{') => depth = Some('}'),
            (None, '[') => depth = Some(']'),
            (Some(end), c) if c == end => {
                depth = None;
                text.push(' ');
            }
            (Some(_), _) => {}
            (None, c) => text.push(c),
        }
    }
    let chars: Vec<char> = text.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            let grouping = matches!(
                word.as_str(),
                "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
            );
            if grouping && next == Some(&'(') {
                // Skip the label list.
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
            } else if next != Some(&'(') && !KEYWORDS.contains(&word.to_lowercase().as_str()) {
                names.insert(word);
            }
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    names
}

/// The sample names a scrape can hold: every sample line's name, and for each
/// `# TYPE` family its names (counter `_total`, histogram `_bucket`/`_sum`/`_count`),
/// so a labelled family with no sample yet still counts as exported.
pub fn exported_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            match kind {
                "counter" => names.insert(format!("{name}_total")),
                "histogram" => {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        names.insert(format!("{name}{suffix}"));
                    }
                    true
                }
                _ => names.insert(name.to_owned()),
            };
        } else if !line.starts_with('#') {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_owned());
        }
    }
    names
}

/// `promtool check rules` on a rules file holding each PromQL query as a recording rule.
pub fn check_syntax(queries: &[String]) -> (bool, String) {
    let rules: Vec<Value> = queries
        .iter()
        .filter(|q| !q.trim_start().starts_with("label_values("))
        .enumerate()
        .map(|(i, q)| serde_json::json!({"record": format!("grafana:query_{i}"), "expr": q}))
        .collect();
    let file = serde_json::json!({"groups": [{"name": "grafana", "rules": rules}]});
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("grafana-queries.yml");
    std::fs::write(&path, file.to_string()).expect("write rules");
    super::promtool::promtool(&["check", "rules", &path.display().to_string()])
}

#[test]
fn metric_names_skip_functions_labels_and_ranges() {
    let names = metric_names(
        "histogram_quantile(0.95, sum by (le) (rate(cpu_server_orb_spawn_to_ready_seconds_bucket{instance=~\".+\"}[5m])))",
    );
    assert_eq!(
        names,
        BTreeSet::from(["cpu_server_orb_spawn_to_ready_seconds_bucket".to_owned()])
    );
    let names = metric_names("cpu_server_orb_slots_used / on (instance) cpu_server_orb_slots_max > bool 0.5");
    assert_eq!(
        names,
        BTreeSet::from([
            "cpu_server_orb_slots_max".to_owned(),
            "cpu_server_orb_slots_used".to_owned()
        ])
    );
    assert_eq!(
        metric_names("label_values(cpu_server_start_time_seconds, instance)"),
        BTreeSet::from(["cpu_server_start_time_seconds".to_owned()])
    );
}
