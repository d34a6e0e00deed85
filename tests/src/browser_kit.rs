//! What every browser test needs: a private network namespace with only `lo`
//! (so Chromium pairs loopback with loopback and no packet leaves the test),
//! the browser tools check, and a bounded `node --test` run.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `tests/browser`.
pub fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// Moves the calling thread into a new network namespace whose only interface is
/// `lo`, up. Every process it starts afterwards (cpu-server, its orbs, node,
/// Chromium) lives there too. Panics with the fix when that is not possible.
pub fn enter_loopback_namespace() {
    if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET) {
        panic!(
            "cannot create a network namespace ({e}): the WebRTC tests run as root (CI does) \
             so that browser, server and orb talk over a private loopback only"
        );
    }
    let up = Command::new("ip").args(["link", "set", "lo", "up"]).output();
    match up {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!("ip link set lo up failed: {}", String::from_utf8_lossy(&out.stderr)),
        Err(e) => panic!("`ip` is required (apt-get install iproute2): {e}"),
    }
    let links = Command::new("ip").args(["-o", "link"]).output().expect("ip -o link");
    let links = String::from_utf8_lossy(&links.stdout).into_owned();
    assert_eq!(links.lines().count(), 1, "the namespace should hold only lo:\n{links}");
}

/// Panics with the fix when node, Chromium or playwright-core is missing.
pub fn require_browser_setup() {
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "node is required: run `bash tests/browser/setup.sh` (or tests/run.sh)"
    );
    let chromium = std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(
        Path::new(&chromium).is_file(),
        "Chromium not found at {chromium}: run `bash tests/browser/setup.sh` (apt-get install chromium)"
    );
    assert!(
        browser_dir()
            .join("node_modules/playwright-core/package.json")
            .is_file(),
        "playwright-core is not installed: run `bash tests/browser/setup.sh` (npm ci in tests/browser)"
    );
}

/// Runs `node args…` in `tests/browser` with `env`, killed with its group (Chromium
/// included) after `timeout`; whether it passed, and its output (also kept in
/// `tests/artifacts/<log_name>`).
pub fn run_node(args: &[&str], env: &[(&str, String)], log_name: &str, timeout: Duration) -> (bool, String) {
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("artifacts");
    std::fs::create_dir_all(&artifacts).expect("tests/artifacts");
    let log_path = artifacts.join(log_name);
    let log = std::fs::File::create(&log_path).expect("node log");
    let mut command = Command::new("node");
    command
        .args(args)
        .current_dir(browser_dir())
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log fd"))
        .stderr(log)
        .process_group(0);
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("spawn node");
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait node") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let pgid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    match status {
        Some(status) => (status.success(), output),
        None => (false, format!("node timed out after {timeout:?}\n{output}")),
    }
}
