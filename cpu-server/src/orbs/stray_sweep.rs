//! Finding orbs left behind by an earlier cpu-server (old weakness 7).
//!
//! Orbs themselves die with their server (parent-death signal), but what an
//! orb started can outlive a server that was SIGKILLed: it is re-parented to
//! init. Every orb and its descendants carry `ORB_SUPERVISED=1` and the
//! server's `CPU_SERVER_HOST` in their environment; at start-up, before the
//! first spawn, the manager SIGKILLs every process (readable by us) that
//! carries both with our own address.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Kills leftovers of an earlier server at `cpu_host`; returns how many.
/// Blocking (reads `/proc`): run it off the async runtime.
pub fn sweep(cpu_host: &str) -> usize {
    let me = std::process::id() as i32;
    let marker = format!("CPU_SERVER_HOST={cpu_host}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut killed = 0;
    for pid in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
        if pid == me {
            continue;
        }
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let mut supervised = false;
        let mut ours = false;
        for var in raw.split(|b| *b == 0) {
            supervised |= var == b"ORB_SUPERVISED=1";
            ours |= var == marker.as_bytes();
        }
        if supervised && ours && kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
            tracing::warn!(pid, "killed a stray orb process left by an earlier cpu-server");
            killed += 1;
        }
    }
    killed
}
