//! A cpu-server started for one room test: the real binary on a free loopback
//! port, in its own temp directory, with orbs spawned only by hand.

use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use crate::process::Proc;
use crate::ws::{Client, Read};

/// A running cpu-server and where to reach it.
pub struct RoomServer {
    /// The process (killed with its group on drop).
    pub proc: Proc,
    /// Its port on 127.0.0.1.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl RoomServer {
    /// Starts cpu-server with `env` on top of the test defaults and waits (bounded) for `/healthz`.
    pub fn start(env: &[(&str, &str)]) -> Self {
        Self::start_with_probe(env, |port| {
            http_get(port, "/healthz").map(|(status, _)| status) == Some(200)
        })
    }

    /// Like [`RoomServer::start`], on a given port (e.g. to restart a server where it was).
    pub fn start_on(port: u16, env: &[(&str, &str)]) -> Self {
        Self::start_on_with_probe(port, env, |port| {
            http_get(port, "/healthz").map(|(status, _)| status) == Some(200)
        })
    }

    /// Like [`RoomServer::start`], waiting (bounded) until `ready(port)` holds.
    pub fn start_with_probe(env: &[(&str, &str)], ready: impl Fn(u16) -> bool) -> Self {
        Self::launch_on_free_port(env, ready, None, None)
    }

    /// Like [`RoomServer::start`], with `dotenv` as the `.env` file of its working directory.
    pub fn start_with_dotenv(env: &[(&str, &str)], dotenv: &str) -> Self {
        Self::launch_on_free_port(env, healthy, None, Some(dotenv))
    }

    /// Like [`RoomServer::start`], the server being exec'd by `sh -c SCRIPT`
    /// (where `"$0"` is the server binary), e.g. `exec 7</dev/null; exec "$0"`
    /// to hand it a descriptor that is not close-on-exec.
    pub fn start_through_shell(script: &str, env: &[(&str, &str)]) -> Self {
        Self::launch_on_free_port(env, healthy, Some(script), None)
    }

    fn start_on_with_probe(port: u16, env: &[(&str, &str)], ready: impl Fn(u16) -> bool) -> Self {
        Self::launch(port, env, ready, None, None).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`RoomServer::launch`] on a port picked now; picked again (at most 3
    /// times) when something else took it between the pick and the server's
    /// bind (a pick is a bind and release, so another process may win the race).
    fn launch_on_free_port(
        env: &[(&str, &str)],
        ready: impl Fn(u16) -> bool,
        shell: Option<&str>,
        dotenv: Option<&str>,
    ) -> Self {
        let mut last = String::new();
        for _ in 0..3 {
            match Self::launch(crate::free_port(), env, &ready, shell, dotenv) {
                Ok(server) => return server,
                Err(e) if e.contains("Address already in use") => last = e,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("{last}")
    }

    fn launch(
        port: u16,
        env: &[(&str, &str)],
        ready: impl Fn(u16) -> bool,
        shell: Option<&str>,
        dotenv: Option<&str>,
    ) -> Result<Self, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        if let Some(text) = dotenv {
            std::fs::write(dir.path().join(".env"), text).expect("write .env");
        }
        let mut command = Self::command(dir.path());
        if let Some(script) = shell {
            // Same environment and directory, started through the shell.
            let mut wrapped = Command::new("sh");
            wrapped.arg("-c").arg(script).arg(crate::binaries::cpu_server());
            wrapped.current_dir(dir.path()).env_clear();
            for (name, value) in command.get_envs() {
                if let Some(value) = value {
                    wrapped.env(name, value);
                }
            }
            command = wrapped;
        }
        command.env("CPU_HOST", format!("127.0.0.1:{port}"));
        for (name, value) in env {
            command.env(name, value);
        }
        let host = env
            .iter()
            .rev()
            .find(|(name, _)| *name == "CPU_HOST")
            .map_or_else(|| format!("127.0.0.1:{port}"), |(_, host)| (*host).to_owned());
        register_server_host(&host);
        let proc = Proc::spawn("cpu-server", command, dir.path());
        let server = Self { proc, port, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(15);
        while !ready(port) {
            let stderr = server.proc.stderr();
            let lost_port = stderr.contains("Address already in use") && stderr.contains("CPU_HOST");
            if lost_port || Instant::now() >= deadline {
                return Err(format!("cpu-server was not ready within 15 s:\n{stderr}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    /// The bare command: a clean environment, orbs by hand only, info logs.
    pub fn command(dir: &std::path::Path) -> Command {
        let mut command = Command::new(crate::binaries::cpu_server());
        command
            .current_dir(dir)
            .env_clear()
            .env("ORB_SPAWN_ON", "manual")
            .env("ORB_LOG_DIR", dir.join("logs"))
            .env("RUST_LOG", "info");
        command
    }

    /// `ws://127.0.0.1:PORT/ws-simple/ROOM`.
    pub fn url(&self, room: &str) -> String {
        format!("ws://127.0.0.1:{}/ws-simple/{room}", self.port)
    }

    /// Waits up to `timeout` for the exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.proc.wait_exit_async(timeout).await
    }
}

/// The `CPU_HOST`s of the servers this test process started: their orbs carry
/// `--cpu-host=<host>`, which is how the kits count only the orbs of the
/// servers under test, never other processes on the machine.
static SERVER_HOSTS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Records a server started by this test process (done by every `RoomServer`).
pub fn register_server_host(host: &str) {
    let mut hosts = SERVER_HOSTS.lock().unwrap_or_else(|p| p.into_inner());
    if !hosts.iter().any(|h| h == host) {
        hosts.push(host.to_owned());
    }
}

/// Whether `argv` is an orb of a server this test process started.
pub fn is_our_orb(argv: &[String]) -> bool {
    let hosts = SERVER_HOSTS.lock().unwrap_or_else(|p| p.into_inner());
    argv.iter()
        .filter_map(|a| a.strip_prefix("--cpu-host="))
        .any(|host| hosts.iter().any(|h| h == host))
}

/// The default readiness probe: `/healthz` answers 200.
fn healthy(port: u16) -> bool {
    http_get(port, "/healthz").map(|(status, _)| status) == Some(200)
}

pub use crate::http_client::get as http_get;

/// A WebSocket upgrade request for `path`: status and body of the answer.
pub fn upgrade_request(port: u16, path: &str) -> Option<(u16, String)> {
    crate::http_client::upgrade(port, path, &[])
}

/// Every JSON frame that arrives within `window`, stopping early on close.
pub async fn drain(client: &mut Client, window: Duration) -> Vec<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + window;
    let mut frames = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match client.read(left).await {
            Read::Json(v) => frames.push(v),
            _ => return frames,
        }
    }
}

/// Reads until the socket closes (skipping frames); the close, or `None` on timeout.
pub async fn read_until_closed(client: &mut Client, timeout: Duration) -> Option<Option<(u16, String)>> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match client.read(left).await {
            Read::Json(_) => continue,
            Read::Closed(close) => return Some(close),
            Read::Timeout => return None,
        }
    }
}
