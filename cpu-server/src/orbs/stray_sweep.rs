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

/// Passes over `/proc` at most: a stray that forks while a pass reads `/proc`
/// can hand the marker to a child the pass does not see.
const MAX_PASSES: usize = 10;

/// Kills leftovers of an earlier server at `cpu_host`; returns how many.
/// Repeats until a pass finds nothing (bounded), killing each stray's whole
/// process group too. Blocking (reads `/proc`): run it off the async runtime.
pub fn sweep(cpu_host: &str) -> usize {
    let mut killed = 0;
    for _ in 0..MAX_PASSES {
        let found = sweep_once(cpu_host);
        if found == 0 {
            break;
        }
        killed += found;
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    killed
}

fn sweep_once(cpu_host: &str) -> usize {
    let me = std::process::id() as i32;
    let my_group = nix::unistd::getpgrp().as_raw();
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
        if !(supervised && ours) {
            continue;
        }
        // Read the group before the kill: afterwards the process may be gone.
        let group = process_group(pid);
        if kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
            tracing::warn!(pid, "killed a stray orb process left by an earlier cpu-server");
            killed += 1;
        }
        // Its group holds only orb descendants (each orb leads its own group).
        if let Some(group) = group.filter(|g| *g != my_group && *g > 1) {
            let _ = nix::sys::signal::killpg(Pid::from_raw(group), Signal::SIGKILL);
        }
    }
    killed
}

/// The process group of `pid`, from `/proc/<pid>/stat`.
fn process_group(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.get(stat.rfind(')')? + 2..)?;
    after.split_whitespace().nth(2)?.parse().ok()
}
