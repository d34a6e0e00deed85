//! The real `promtool` on real scrapes: scrapes of a running cpu-server become
//! promtool `input_series` (one scrape per evaluation step, or held for several),
//! expectations become `alert_rule_test`s whose labels and annotations are
//! rendered from `deploy/prometheus/alerts.yml` itself.
//!
//! The test file is written as JSON, which promtool's YAML reader accepts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use system_tests::operator_kit::{parse_metrics, request};
use system_tests::room_harness::RoomServer;

/// The admin token of the servers under test.
pub const TOKEN: &str = "monitoring-admin-token-0123456789";
/// The `job` label a Prometheus scrape job would add.
pub const JOB: &str = "cpu-server";

/// The workspace root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The shipped alert rules.
pub fn alerts_file() -> PathBuf {
    repo().join("deploy/prometheus/alerts.yml")
}

/// One scrape of `/metrics`: series (`name{labels}` as written) → value, and
/// the `instance` label Prometheus would give it.
#[derive(Clone, Debug)]
pub struct Scrape {
    /// `127.0.0.1:PORT`.
    pub instance: String,
    /// Every sample of the scrape.
    pub series: BTreeMap<String, f64>,
    /// The raw text (for the exported-names check).
    pub text: String,
}

/// Scrapes `server` with the admin token.
pub fn scrape(server: &RoomServer) -> Scrape {
    let (status, text) = request(server.port, "GET", "/metrics", Some(TOKEN), None);
    assert_eq!(status, 200, "GET /metrics: {text}");
    Scrape {
        instance: format!("127.0.0.1:{}", server.port),
        series: parse_metrics(&text),
        text,
    }
}

impl Scrape {
    /// The value of `series` (exactly as rendered), if present.
    pub fn get(&self, series: &str) -> Option<f64> {
        self.series.get(series).copied()
    }
}

/// Series with `job`/`instance` added → one value (or none) per 1-minute step.
#[derive(Default, Debug)]
pub struct Input {
    series: BTreeMap<String, Vec<Option<f64>>>,
    steps: usize,
}

/// `name{a="b"}` → `name{a="b",job="…",instance="…"}`.
pub fn with_target(series: &str, instance: &str) -> String {
    let target = format!("job=\"{JOB}\",instance=\"{instance}\"");
    match series.strip_suffix('}') {
        Some(head) => format!("{head},{target}}}"),
        None => format!("{series}{{{target}}}"),
    }
}

impl Input {
    /// Appends `scrape` held for `steps` evaluation steps (histogram buckets left out).
    pub fn hold(mut self, scrape: &Scrape, steps: usize) -> Self {
        for (name, value) in &scrape.series {
            if name.contains("_bucket{") {
                continue;
            }
            let values = self.series.entry(with_target(name, &scrape.instance)).or_default();
            values.resize(self.steps, None);
            values.extend(std::iter::repeat_n(Some(*value), steps));
        }
        self.steps += steps;
        for values in self.series.values_mut() {
            values.resize(self.steps, None);
        }
        self
    }

    /// Replaces the values of `series` (with target labels) by `f(step)` where present.
    pub fn map(mut self, series: &str, f: impl Fn(usize, f64) -> f64) -> Self {
        let values = self
            .series
            .get_mut(series)
            .unwrap_or_else(|| panic!("no series {series}"));
        for (step, value) in values.iter_mut().enumerate() {
            *value = value.map(|v| f(step, v));
        }
        self
    }

    fn to_json(&self) -> Value {
        let rows: Vec<Value> = self
            .series
            .iter()
            .map(|(series, values)| {
                let values: Vec<String> = values
                    .iter()
                    .map(|v| v.map_or_else(|| "_".to_owned(), |v| v.to_string()))
                    .collect();
                json!({"series": series, "values": values.join(" ")})
            })
            .collect();
        Value::Array(rows)
    }
}

/// What one alert should do at one evaluation time.
pub struct Expect {
    /// `eval_time` in minutes from the first step.
    pub at_min: usize,
    /// The alert.
    pub alert: &'static str,
    /// The labels of each firing instance (without the rule's own labels); empty: silent.
    pub firing: Vec<BTreeMap<String, String>>,
}

/// An alert firing with `labels` (plus the target's job/instance) at minute `at_min`.
pub fn fires(at_min: usize, alert: &'static str, instance: &str, labels: &[(&str, &str)]) -> Expect {
    let mut map: BTreeMap<String, String> = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    map.insert("job".into(), JOB.into());
    map.insert("instance".into(), instance.into());
    Expect {
        at_min,
        alert,
        firing: vec![map],
    }
}

/// An alert silent at minute `at_min`.
pub fn silent(at_min: usize, alert: &'static str) -> Expect {
    Expect {
        at_min,
        alert,
        firing: Vec::new(),
    }
}

/// A rule's own labels and annotation templates, as written in the rules file.
#[derive(Default, Debug)]
pub struct Rule {
    /// `labels:`.
    pub labels: BTreeMap<String, String>,
    /// `annotations:` (templates).
    pub annotations: BTreeMap<String, String>,
}

/// Reads each `- alert:` block's labels and annotations (the file keeps to one-line
/// double-quoted or bare values, as its header says).
pub fn rules() -> BTreeMap<String, Rule> {
    let text = std::fs::read_to_string(alerts_file()).expect("read alerts.yml");
    let mut rules: BTreeMap<String, Rule> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut section: Option<(usize, bool)> = None; // (indent, is_labels)
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        if let Some(name) = trimmed.strip_prefix("- alert:") {
            current = Some(name.trim().to_owned());
            rules.entry(name.trim().to_owned()).or_default();
            section = None;
            continue;
        }
        if let Some((at, _)) = section
            && indent <= at
        {
            section = None;
        }
        match trimmed {
            "labels:" => section = Some((indent, true)),
            "annotations:" => section = Some((indent, false)),
            _ => {
                if let (Some((_, is_labels)), Some(rule)) = (section, current.as_ref()) {
                    let (key, value) = trimmed.split_once(':').expect("key: value");
                    let value = value.trim();
                    let value = value
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .unwrap_or(value);
                    let rule = rules.get_mut(rule).expect("rule");
                    let map = if is_labels {
                        &mut rule.labels
                    } else {
                        &mut rule.annotations
                    };
                    map.insert(key.trim().to_owned(), value.to_owned());
                }
            }
        }
    }
    rules
}

/// `template` with every `{{ $labels.NAME }}` replaced.
fn render(template: &str, labels: &BTreeMap<String, String>) -> String {
    let mut out = template.to_owned();
    for (name, value) in labels {
        out = out.replace(&format!("{{{{ $labels.{name} }}}}"), value);
    }
    assert!(!out.contains("{{"), "unrendered template in {template:?}");
    out
}

/// Runs `promtool test rules` on `input` with `expects`; panics with promtool's output on failure.
pub fn test_rules(name: &str, input: Input, expects: &[Expect]) {
    let rules = rules();
    let tests: Vec<Value> = expects
        .iter()
        .map(|e| {
            let rule = rules
                .get(e.alert)
                .unwrap_or_else(|| panic!("no alert {} in alerts.yml", e.alert));
            let alerts: Vec<Value> = e
                .firing
                .iter()
                .map(|labels| {
                    let mut labels = labels.clone();
                    labels.extend(rule.labels.clone());
                    let annotations: BTreeMap<&String, String> =
                        rule.annotations.iter().map(|(k, t)| (k, render(t, &labels))).collect();
                    json!({"exp_labels": labels, "exp_annotations": annotations})
                })
                .collect();
            json!({"eval_time": format!("{}m", e.at_min), "alertname": e.alert, "exp_alerts": alerts})
        })
        .collect();
    let file = json!({
        "rule_files": [alerts_file()],
        "evaluation_interval": "1m",
        "tests": [{"name": name, "interval": "1m", "input_series": input.to_json(), "alert_rule_test": tests}],
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(format!("{name}.test.yml"));
    std::fs::write(&path, serde_json::to_string_pretty(&file).expect("json")).expect("write test file");
    let (ok, output) = promtool(&["test", "rules", &path.display().to_string()]);
    assert!(
        ok,
        "promtool test rules ({name}) failed:\n{output}\n--- test file ---\n{}",
        std::fs::read_to_string(&path).unwrap_or_default()
    );
}

/// Runs `promtool ARGS` (killed after 30 s): success and stdout+stderr.
/// Panics when promtool is not installed: a missing tool fails the test.
pub fn promtool(args: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| {
            panic!("promtool not runnable ({e}): install Debian's `prometheus` package (tests/run.sh does)")
        });
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait promtool") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = format!(
        "{}{}",
        std::fs::read_to_string(&out).unwrap_or_default(),
        std::fs::read_to_string(&err).unwrap_or_default()
    );
    let text = if status.is_none() {
        format!("promtool killed after 30 s\n{text}")
    } else {
        text
    };
    (status.is_some_and(|s| s.success()), text)
}
