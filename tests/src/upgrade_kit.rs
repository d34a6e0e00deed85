//! Helpers of the upgrade tests: a cpu-server run from its own installed path
//! (a copy of the built binary that the test replaces, as a deploy does), a
//! second build told apart by its build id, stand-ins for binaries that fail
//! the preflight, and a prober that opens a new connection again and again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::operator_kit::{CliRun, cli};
use crate::process::Proc;

/// A cpu-server started from `dir/bin/cpu-server`.
pub struct InstalledServer {
    /// The process (killed with its group on drop).
    pub proc: Proc,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Where its binary, state and logs are.
    pub dir: PathBuf,
    /// Its `ADMIN_HOST` port, when it has one (the CLI and the API go there).
    pub admin_port: Option<u16>,
}

/// The installed path in `dir`.
pub fn installed_path(dir: &Path) -> PathBuf {
    dir.join("bin/cpu-server")
}

/// Installs `binary` at `dir`'s installed path the way a deploy does: a copy
/// next to it, renamed over it (the running image keeps the old file).
pub fn install(dir: &Path, binary: &Path) {
    let target = installed_path(dir);
    std::fs::create_dir_all(target.parent().expect("bin dir")).expect("bin dir");
    let staged = target.with_extension("new");
    copy_out_of_process(binary, &staged);
    std::fs::rename(&staged, &target).expect("install the binary");
}

/// Copies `from` to `to` with `cp`, so that no process this test process forks
/// can inherit a descriptor open for writing on a file that is executed next
/// (`execve` fails with "Text file busy" while one exists; tests run in parallel).
fn copy_out_of_process(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("--")
        .arg(from)
        .arg(to)
        .status()
        .expect("run cp");
    assert!(status.success(), "cp {} {}: {status}", from.display(), to.display());
}

/// Installs a shell script as the binary.
pub fn install_script(dir: &Path, script: &str) {
    let staged = dir.join("script.new");
    std::fs::write(&staged, script).expect("write script");
    set_mode(&staged, 0o755);
    install(dir, &staged);
}

/// Sets a file's permission bits.
pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A copy of the built cpu-server whose GNU build id differs in its last byte:
/// the same program, told apart on `/health` as a second build is.
pub fn second_build(dir: &Path, build_id: &str) -> PathBuf {
    let original = std::fs::read(crate::binaries::cpu_server()).expect("read cpu-server");
    let id: Vec<u8> = (0..build_id.len() / 2)
        .map(|i| u8::from_str_radix(&build_id[2 * i..2 * i + 2], 16).expect("hex build id"))
        .collect();
    let at = original
        .windows(id.len())
        .position(|w| w == id.as_slice())
        .expect("the build id's bytes are in the file");
    let mut copy = original;
    copy[at + id.len() - 1] ^= 0x5a;
    let written = dir.join("cpu-server-b.written");
    std::fs::write(&written, copy).expect("write second build");
    set_mode(&written, 0o755);
    let path = dir.join("cpu-server-b");
    copy_out_of_process(&written, &path);
    path
}

/// The environment of the server and of its CLI.
pub fn env(dir: &Path, port: u16) -> Vec<(String, String)> {
    let d = dir.display().to_string();
    vec![
        (
            "PATH".into(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
        ),
        ("CPU_HOST".into(), format!("127.0.0.1:{port}")),
        ("STATE_DIR".into(), format!("{d}/state")),
        ("ORB_LOG_DIR".into(), format!("{d}/logs")),
        ("ORB_SPAWN_ON".into(), "manual".into()),
        (
            "GPU_SERVER_PATH".into(),
            crate::binaries::target_dir().display().to_string(),
        ),
        ("RUST_LOG".into(), "info".into()),
    ]
}

impl InstalledServer {
    /// Installs the built cpu-server in `dir` and starts it from there with
    /// `extra` on top of [`env`]; waits (bounded) for `/healthz`.
    pub fn start(dir: &Path, extra: &[(&str, &str)]) -> Self {
        Self::start_with_admin(dir, extra, None)
    }

    /// Like [`InstalledServer::start`], with the admin API on its own port
    /// (`ADMIN_HOST`: needed when `CPU_HOST` speaks TLS); ready once that answers.
    pub fn start_with_admin(dir: &Path, extra: &[(&str, &str)], admin_port: Option<u16>) -> Self {
        install(dir, &crate::binaries::cpu_server());
        let port = crate::free_port();
        let mut command = std::process::Command::new(installed_path(dir));
        command.current_dir(dir).env_clear();
        for (k, v) in env(dir, port) {
            command.env(k, v);
        }
        for (k, v) in extra {
            command.env(k, v);
        }
        if let Some(admin) = admin_port {
            command.env("ADMIN_HOST", format!("127.0.0.1:{admin}"));
        }
        crate::room_harness::register_server_host(&format!("127.0.0.1:{port}"));
        let proc = Proc::spawn("cpu-server", command, dir);
        let server = Self {
            proc,
            port,
            dir: dir.to_path_buf(),
            admin_port,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while crate::room_harness::http_get(server.api_port(), "/api/upgrade").map(|(s, _)| s) != Some(401) {
            assert!(
                Instant::now() < deadline,
                "cpu-server did not start:\n{}",
                server.proc.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// Where the admin API listens.
    pub fn api_port(&self) -> u16 {
        self.admin_port.unwrap_or(self.port)
    }

    /// `cpu-server ARGS` (the built binary) against this server, bounded.
    pub fn cli(&self, args: &[&str]) -> CliRun {
        let mut env = env(&self.dir, self.port);
        if let Some(admin) = self.admin_port {
            env.push(("ADMIN_HOST".into(), format!("127.0.0.1:{admin}")));
        }
        let refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        cli(&self.dir, &refs, args, Duration::from_secs(120))
    }

    /// `/health` as JSON.
    pub fn health(&self) -> Value {
        let (_, body) = crate::room_harness::http_get(self.port, "/health").expect("/health answers");
        serde_json::from_str(&body).expect("health JSON")
    }

    /// `GET /api/upgrade` as JSON.
    pub fn upgrade_status(&self) -> Value {
        let (status, body) = self.api("GET", "/api/upgrade", None);
        assert_eq!(status, 200, "{body}");
        body
    }

    /// `cpu_server_start_time_seconds` from `/metrics`.
    pub fn start_time(&self) -> f64 {
        let token = std::fs::read_to_string(self.dir.join("state/admin-token")).expect("token file");
        let (_, text) = crate::operator_kit::request(self.api_port(), "GET", "/metrics", Some(token.trim()), None);
        crate::operator_kit::parse_metrics(&text)
            .get("cpu_server_start_time_seconds")
            .copied()
            .expect("start time metric")
    }

    /// An admin API request with the server's generated token: status and JSON body.
    pub fn api(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let token = std::fs::read_to_string(self.dir.join("state/admin-token")).expect("token file");
        let (status, text) = crate::operator_kit::request(self.api_port(), method, path, Some(token.trim()), body);
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// The server's open descriptors.
    pub fn fd_count(&self) -> usize {
        crate::procfs::fds(self.proc.pid() as i32).len()
    }
}

/// Opens a new connection to `port` and asks `/healthz`, again and again on
/// its own thread, counting answers and failures (a refused connection is one)
/// until stopped. Each request is bounded (5 s), and so is the whole run (5 min).
pub struct Prober {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Prober {
    /// Starts probing.
    pub fn start(port: u16) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (s, o, f) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failures));
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(300);
            while !s.load(Ordering::SeqCst) && Instant::now() < deadline {
                match crate::room_harness::http_get(port, "/healthz") {
                    Some((200, _)) => {
                        o.fetch_add(1, Ordering::SeqCst);
                    }
                    other => f.lock().unwrap_or_else(|p| p.into_inner()).push(format!("{other:?}")),
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Self {
            stop,
            ok,
            failures,
            thread: Some(thread),
        }
    }

    /// Stops; the answers counted and the failures seen.
    pub fn finish(mut self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let failures = std::mem::take(&mut *self.failures.lock().unwrap_or_else(|p| p.into_inner()));
        (self.ok.load(Ordering::SeqCst), failures)
    }
}
