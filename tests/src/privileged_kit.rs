//! A cpu-server started as an unprivileged user, the way the shipped unit runs
//! it: its own user, only `CAP_SETUID`, `CAP_SETGID` and `CAP_KILL` as ambient
//! capabilities, `no_new_privs`. For the tests of orb isolation, which prove
//! nothing when the server runs as root.
//!
//! Setting this up needs root (throwaway users, `setpriv`, `chown`): every
//! helper here panics with "needs root: …" otherwise, never passes silently.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::unistd::{Gid, Uid, User, chown};

use crate::deploy_tools::require_tool;
use crate::process::Proc;

/// The throwaway user the server runs as.
pub const SERVER_USER: &str = "muc-test-srv";
/// The throwaway user orbs run as (`ORB_USER`).
pub const ORB_USER: &str = "muc-test-orb";

/// Panics with "needs root: `why`" unless the tests run as root.
pub fn require_root(why: &str) {
    assert!(
        Uid::effective().is_root(),
        "needs root: {why} (run the tests as root, e.g. `sudo tests/run.sh`)"
    );
}

/// Uid and primary gid of `name`, creating the system user (with its own group,
/// no home, no login) when it does not exist yet. Idempotent.
pub fn ensure_user(name: &str) -> (u32, u32) {
    require_root("creating the throwaway test users");
    // One useradd at a time in this test binary (they lock /etc/passwd).
    static CREATING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = CREATING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Ok(Some(user)) = User::from_name(name) {
        return (user.uid.as_raw(), user.gid.as_raw());
    }
    let useradd = require_tool("useradd", "passwd");
    let output = Command::new(useradd)
        .args([
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
        ])
        .args(["--shell", "/usr/sbin/nologin", name])
        .output()
        .expect("run useradd");
    // Another test may have created it at the same time (exit 9: exists).
    match User::from_name(name) {
        Ok(Some(user)) => (user.uid.as_raw(), user.gid.as_raw()),
        _ => panic!("useradd {name} failed: {}", String::from_utf8_lossy(&output.stderr)),
    }
}

/// Secrets the server holds; no orb may read any of them.
#[derive(Debug, Clone)]
pub struct Secrets {
    /// `JWT_SECRET` (server environment and env file).
    pub jwt: String,
    /// `TURN_SHARED_SECRET` (server environment and env file).
    pub turn: String,
    /// `ADMIN_TOKEN` as written in the env file only (the server generates its own).
    pub admin_in_env_file: String,
}

impl Secrets {
    /// Fresh, recognisable values.
    pub fn new() -> Self {
        let tag = std::process::id();
        Self {
            jwt: format!("jwt-canary-{tag}-0123456789abcdef0123456789abcdef"),
            turn: format!("turn-canary-{tag}-0123456789"),
            admin_in_env_file: format!("admin-canary-{tag}-0123456789"),
        }
    }
}

impl Default for Secrets {
    fn default() -> Self {
        Self::new()
    }
}

/// A cpu-server running as [`SERVER_USER`] with ambient `CAP_SETUID`,
/// `CAP_SETGID` and `CAP_KILL` (or none) and `no_new_privs`, in its own directory tree:
///
/// - `base/` (0755 root): the server's stdout/stderr, `cpu-server.env` (0600 root:root,
///   as deploy/README.md installs it);
/// - `base/bin/cpu-server`: the binary (a hard link or a copy, reachable by the test users);
/// - `base/orb/` (0755 root): `GPU_SERVER_PATH` with the fake orb;
/// - `base/srv/` (0700 server user): working directory, `STATE_DIR` (`srv/state`, with the
///   generated `admin-token`) and `ORB_LOG_DIR` (`srv/logs`);
/// - `base/report/` (0777): `ORB_TEST_DIR`, where fake orbs write.
pub struct UnprivilegedServer {
    /// The server (killed with its group on drop).
    pub proc: Proc,
    /// Its port on 127.0.0.1 (admin API served there too).
    pub port: u16,
    /// The directory tree above.
    pub base: PathBuf,
    /// What it was given.
    pub secrets: Secrets,
    _dir: tempfile::TempDir,
}

impl UnprivilegedServer {
    /// Starts the server with the fake orb `body` (after the manager kit's prelude) and
    /// `extra` environment; waits (bounded) until it answers `/healthz`.
    pub fn start(body: &str, extra: &[(&str, &str)]) -> Self {
        Self::start_with_caps(body, extra, true)
    }

    /// Like [`UnprivilegedServer::start`]; `caps: false` gives the server no
    /// capability at all (a plain unprivileged service).
    pub fn start_with_caps(body: &str, extra: &[(&str, &str)], caps: bool) -> Self {
        require_root("the server must be started as an unprivileged user with chosen capabilities");
        let setpriv = require_tool("setpriv", "util-linux");
        let (srv_uid, srv_gid) = ensure_user(SERVER_USER);
        assert!(
            nix::unistd::Group::from_gid(Gid::from_raw(srv_gid)).is_ok_and(|g| g.is_some()),
            "{SERVER_USER}'s group {srv_gid} does not exist"
        );
        let dir = tempfile::Builder::new()
            .prefix("muc-priv-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let base = dir.path().to_path_buf();
        let mode = |path: &Path, mode: u32| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod")
        };
        mode(&base, 0o755);
        for sub in ["bin", "orb", "srv", "report"] {
            std::fs::create_dir(base.join(sub)).expect("mkdir");
        }
        mode(&base.join("bin"), 0o755);
        mode(&base.join("orb"), 0o755);
        mode(&base.join("report"), 0o777);
        let srv = base.join("srv");
        chown(&srv, Some(Uid::from_raw(srv_uid)), Some(Gid::from_raw(srv_gid))).expect("chown srv");
        mode(&srv, 0o700);
        let server_bin = base.join("bin/cpu-server");
        if std::fs::hard_link(crate::binaries::cpu_server(), &server_bin).is_err() {
            std::fs::copy(crate::binaries::cpu_server(), &server_bin).expect("copy cpu-server");
        }
        mode(&server_bin, 0o755);
        let program = crate::manager_kit::fake_orb(&base.join("orb"), "fake-orb", body);
        let secrets = Secrets::new();
        let env_file = base.join("cpu-server.env");
        std::fs::write(
            &env_file,
            format!(
                "JWT_SECRET={}\nTURN_SHARED_SECRET={}\nADMIN_TOKEN={}\n",
                secrets.jwt, secrets.turn, secrets.admin_in_env_file
            ),
        )
        .expect("env file");
        mode(&env_file, 0o600);

        let port = crate::free_port();
        let mut command = Command::new(setpriv);
        command
            .arg(format!("--reuid={srv_uid}"))
            .arg(format!("--regid={srv_gid}"))
            .args(["--init-groups", "--no-new-privs"])
            .args(if caps {
                [
                    "--inh-caps=+setuid,+setgid,+kill",
                    "--ambient-caps=+setuid,+setgid,+kill",
                ]
            } else {
                ["--inh-caps=-all", "--ambient-caps=-all"]
            })
            .arg("--")
            .arg(&server_bin)
            .current_dir(&srv)
            .env_clear();
        let p = |path: PathBuf| path.display().to_string();
        crate::room_harness::register_server_host(&format!("127.0.0.1:{port}"));
        let env = [
            ("PATH", crate::manager_kit::path_env()),
            ("CPU_HOST", format!("127.0.0.1:{port}")),
            ("RUST_LOG", "info".to_owned()),
            ("ORB_SPAWN_ON", "manual".to_owned()),
            ("GPU_SERVER_PATH", p(base.join("orb"))),
            ("ORB_COMMAND", p(program)),
            ("ORB_TEST_DIR", p(base.join("report"))),
            ("ORB_TEST_ENV_FILE", p(env_file)),
            ("ORB_TEST_STATE_DIR", p(srv.join("state"))),
            ("STATE_DIR", p(srv.join("state"))),
            ("ORB_LOG_DIR", p(srv.join("logs"))),
            ("ORB_READY_TIMEOUT", "5000".to_owned()),
            ("ROOM_EMPTY_GRACE", "0".to_owned()),
            ("ORB_STOP_GRACE", "300".to_owned()),
            ("ORB_KILL_GRACE", "300".to_owned()),
            ("JWT_SECRET", secrets.jwt.clone()),
            ("TURN_URLS", "turn:127.0.0.1:3478".to_owned()),
            ("TURN_SHARED_SECRET", secrets.turn.clone()),
        ];
        command.envs(env);
        command.envs(extra.iter().copied());
        let proc = Proc::spawn("cpu-server", command, &base);
        let server = Self {
            proc,
            port,
            base,
            secrets,
            _dir: dir,
        };
        let mut server = server;
        let deadline = Instant::now() + Duration::from_secs(15);
        while crate::room_harness::http_get(port, "/healthz").map(|(status, _)| status) != Some(200) {
            if let Some(status) = server.proc.wait_exit(Duration::ZERO) {
                panic!(
                    "cpu-server (as {SERVER_USER}) exited with {status}:\n{}",
                    server.proc.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "cpu-server (as {SERVER_USER}) was not ready within 15 s:\n{}",
                server.proc.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// The admin token the server generated into `STATE_DIR/admin-token`.
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.base.join("srv/state/admin-token"))
            .expect("admin-token")
            .trim()
            .to_owned()
    }

    /// An admin API request with the generated token.
    pub fn api(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        crate::operator_kit::request(self.port, method, path, Some(&self.admin_token()), body)
    }

    /// `base/report/NAME` once it exists, within `timeout`.
    pub async fn report(&self, name: &str, timeout: Duration) -> Option<String> {
        let path = self.base.join("report").join(name);
        crate::wait::until(timeout, || std::fs::read_to_string(&path).ok()).await
    }
}
