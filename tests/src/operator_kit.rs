//! Helpers of the operator tests: a cpu-server with fake orbs and its own
//! state/log directories, admin API requests, CLI runs, and a strict parser
//! of the Prometheus text format.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::room_harness::RoomServer;

/// A fake orb that prints numbered lines to stdout, becomes ready and
/// heartbeats (reporting no memory, so RSS comes from the sampler only).
pub const COUNTING_ORB: &str = r#"ready
i=0
while printf '{"type":"orb_heartbeat","roomId":"%s","timestamp":0,"metrics":{"cpu":0,"memory":0,"latency":0}}\n' "$room" >&3; do
  i=$((i+1)); echo "orb-line $i"; sleep 0.05
done
"#;

/// A cpu-server whose orbs are a fake script, with its state and logs in `dir`.
pub struct OpServer {
    /// The server.
    pub server: RoomServer,
    /// `STATE_DIR`, `ORB_LOG_DIR` (`dir/logs`) and the fake orb live here.
    pub dir: PathBuf,
    /// `ADMIN_HOST` port, when set.
    pub admin_port: Option<u16>,
}

fn path_env() -> String {
    std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".to_owned())
}

/// The environment a server with the fake orb `program` gets (plus `extra`).
pub fn server_env(dir: &Path, program: &Path) -> Vec<(String, String)> {
    let d = dir.display().to_string();
    vec![
        ("PATH".into(), path_env()),
        ("GPU_SERVER_PATH".into(), d.clone()),
        ("ORB_COMMAND".into(), program.display().to_string()),
        ("ORB_TEST_DIR".into(), d.clone()),
        ("ORB_LOG_DIR".into(), format!("{d}/logs")),
        ("STATE_DIR".into(), format!("{d}/state")),
        ("ORB_HEALTH_CHECK_INTERVAL".into(), "200".into()),
        ("ORB_READY_TIMEOUT".into(), "5000".into()),
        ("ROOM_EMPTY_GRACE".into(), "0".into()),
        ("ORB_STOP_GRACE".into(), "500".into()),
        ("ORB_KILL_GRACE".into(), "500".into()),
    ]
}

impl OpServer {
    /// Starts a server in `dir` running fake orbs with `body`; `extra` env on top.
    pub fn start(dir: &Path, body: &str, extra: &[(&str, &str)]) -> Self {
        let program = crate::manager_kit::fake_orb(dir, "fake-orb", body);
        let mut env = server_env(dir, &program);
        let admin_port = extra
            .iter()
            .find(|(k, _)| *k == "ADMIN_HOST")
            .and_then(|(_, v)| v.rsplit(':').next()?.parse().ok());
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let server = RoomServer::start(&refs);
        Self {
            server,
            dir: dir.to_path_buf(),
            admin_port,
        }
    }

    /// The port the admin API is on.
    pub fn api_port(&self) -> u16 {
        self.admin_port.unwrap_or(self.server.port)
    }

    /// The token the server generated into `STATE_DIR/admin-token`.
    pub fn token_file(&self) -> PathBuf {
        self.dir.join("state/admin-token")
    }

    /// The generated token (waits, bounded, for the file).
    pub fn token(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(text) = std::fs::read_to_string(self.token_file()) {
                return text.trim().to_owned();
            }
            assert!(Instant::now() < deadline, "no token file {:?}", self.token_file());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// An admin API request with the generated token.
    pub fn api(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let (status, text) = request(self.api_port(), method, path, Some(&self.token()), body);
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Runs the CLI against this server (CPU_HOST, ADMIN_HOST, STATE_DIR and
    /// ORB_LOG_DIR as the server has them, no ADMIN_TOKEN).
    pub fn cli(&self, args: &[&str]) -> CliRun {
        let d = self.dir.display().to_string();
        let mut env = vec![
            ("CPU_HOST".to_owned(), format!("127.0.0.1:{}", self.server.port)),
            ("STATE_DIR".to_owned(), format!("{d}/state")),
            ("ORB_LOG_DIR".to_owned(), format!("{d}/logs")),
            ("GPU_SERVER_PATH".to_owned(), d),
        ];
        if let Some(port) = self.admin_port {
            env.push(("ADMIN_HOST".to_owned(), format!("127.0.0.1:{port}")));
        }
        let refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        cli(&self.dir, &refs, args, Duration::from_secs(30))
    }
}

/// What a CLI run printed and how it ended.
#[derive(Debug)]
pub struct CliRun {
    /// Exit code (`None`: killed by a signal or by the timeout).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs `cpu-server ARGS` with a clean environment (`env` only, plus PATH), bounded by `timeout`.
pub fn cli(cwd: &Path, env: &[(&str, &str)], args: &[&str], timeout: Duration) -> CliRun {
    let out = cwd.join(format!("cli-{}.out", fastish_id()));
    let err = cwd.join(format!("cli-{}.err", fastish_id()));
    let mut command = Command::new(crate::binaries::cpu_server());
    command
        .current_dir(cwd)
        .env_clear()
        .env("PATH", path_env())
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("cli stdout"))
        .stderr(std::fs::File::create(&err).expect("cli stderr"));
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("spawn cpu-server CLI");
    let deadline = Instant::now() + timeout;
    let code = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status.code();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    CliRun {
        code,
        stdout: std::fs::read_to_string(&out).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err).unwrap_or_default(),
    }
}

fn fastish_id() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// One HTTP/1.1 request (`Connection: close`, 30 s bound): status and body;
/// panics when the server does not answer.
pub fn request(port: u16, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> (u16, String) {
    let headers: Vec<String> = token.map(crate::http_client::bearer).into_iter().collect();
    crate::http_client::request(port, method, path, &headers, body, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no HTTP answer to {method} {path} on port {port}"))
}

/// Parses Prometheus/OpenMetrics text strictly: every line is a `# HELP`,
/// `# TYPE`, `# UNIT`, `# EOF` or `name{labels} value`; panics on anything else.
/// Returns series (`name{labels}` as written) → value.
pub fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut series = BTreeMap::new();
    let mut saw_eof = false;
    for line in text.lines() {
        assert!(!saw_eof, "line after # EOF: {line:?}");
        if line == "# EOF" {
            saw_eof = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let kind = rest.split(' ').next().unwrap_or_default();
            assert!(matches!(kind, "HELP" | "TYPE" | "UNIT"), "bad comment: {line:?}");
            continue;
        }
        let (name_labels, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line:?}"));
        let name_end = name_labels.find('{').unwrap_or(name_labels.len());
        let name = &name_labels[..name_end];
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        if name_end < name_labels.len() {
            let labels = &name_labels[name_end..];
            assert!(labels.ends_with('}'), "bad labels in {line:?}");
            for pair in labels[1..labels.len() - 1].split("\",").filter(|p| !p.is_empty()) {
                let (key, val) = pair.split_once('=').unwrap_or_else(|| panic!("bad label in {line:?}"));
                assert!(
                    key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "bad label name in {line:?}"
                );
                assert!(val.starts_with('"'), "unquoted label value in {line:?}");
            }
        }
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        series.insert(name_labels.to_owned(), value);
    }
    assert!(saw_eof, "no # EOF at the end");
    series
}
