//! Finding orbs left behind by an earlier cpu-server (old weakness 7).
//!
//! Orbs themselves die with their server (parent-death signal), but what an
//! orb started can outlive a server that was SIGKILLed: it is re-parented to
//! init. Every orb and its descendants carry `ORB_SUPERVISED=1` and the
//! server's `CPU_SERVER_HOST` in their environment; at start-up, before the
//! first spawn, the manager SIGKILLs every process (readable by us) that
//! carries both with our own address.
//!
//! A server that is not root cannot read the environment of another user's
//! process: when orbs run as `ORB_USER` (not our own user), a process of that
//! user whose environment we cannot read counts as a stray too. `ORB_USER`
//! must therefore be dedicated to the orbs of this one server.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Passes over `/proc` at most: a stray that forks while a pass reads `/proc`
/// can hand the marker to a child the pass does not see.
const MAX_PASSES: usize = 10;

/// Kills leftovers of an earlier server at `cpu_host`; returns how many.
/// `orb_uid`: the uid orbs run as (`ORB_USER`), when they are switched to it.
/// Repeats until a pass finds nothing (bounded), killing each stray's whole
/// process group too, except the groups in `spare` (the orbs an upgrade handed
/// over, alive and ours). Blocking (reads `/proc`): run it off the async runtime.
pub fn sweep(cpu_host: &str, orb_uid: Option<u32>, spare: &[i32]) -> usize {
    let mut killed = 0;
    for _ in 0..MAX_PASSES {
        let found = sweep_once(cpu_host, orb_uid, spare);
        if found == 0 {
            break;
        }
        killed += found;
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    killed
}

fn sweep_once(cpu_host: &str, orb_uid: Option<u32>, spare: &[i32]) -> usize {
    let me = std::process::id() as i32;
    let foreign_orb_uid = orb_uid.filter(|uid| *uid != nix::unistd::geteuid().as_raw());
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
        let stray = match std::fs::read(format!("/proc/{pid}/environ")) {
            Ok(raw) => {
                let mut supervised = false;
                let mut ours = false;
                for var in raw.split(|b| *b == 0) {
                    supervised |= var == b"ORB_SUPERVISED=1";
                    ours |= var == marker.as_bytes();
                }
                supervised && ours
            }
            // Not ours to read: a process of the dedicated orb user is a stray.
            Err(_) => foreign_orb_uid.is_some_and(|uid| super::reaper::real_uid(pid) == Some(uid)),
        };
        if !stray {
            continue;
        }
        // Read the group before the kill: afterwards the process may be gone.
        let group = process_group(pid);
        if group.is_some_and(|g| spare.contains(&g)) {
            continue; // an orb an upgrade handed over (or one of its descendants)
        }
        if kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
            tracing::warn!(pid, "killed a stray orb process left by an earlier cpu-server");
            killed += 1;
        }
        // Its group holds only orb descendants (each orb leads its own group).
        if let Some(group) = group.filter(|g| *g != my_group && *g > 1) {
            super::process_group::kill(group as u32);
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
