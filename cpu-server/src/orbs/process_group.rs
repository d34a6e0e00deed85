//! Where an orb's process group gets a signal: every group kill (the stop
//! escalation, the end of a driver, the emergency kill, the stray sweep) goes
//! through here. (The reaper kills single orphaned processes, not groups.)
//! An orb's pid is its process group id; ESRCH (already gone) is success.

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Sends `signal` to the process group `pgid`.
pub fn signal(pgid: u32, signal: Signal) {
    let _ = killpg(Pid::from_raw(pgid as i32), signal);
}

/// SIGTERM, then SIGCONT (a stopped process handles SIGTERM only once continued).
pub fn terminate(pgid: u32) {
    signal(pgid, Signal::SIGTERM);
    signal(pgid, Signal::SIGCONT);
}

/// SIGKILL to the whole group.
pub fn kill(pgid: u32) {
    signal(pgid, Signal::SIGKILL);
}
