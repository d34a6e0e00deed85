//! The server as child subreaper: orphaned descendants of orbs come back to it
//! and are killed and reaped here.
//!
//! When an orb dies, a grandchild that escaped its process group (e.g. by
//! `setsid`) would otherwise be adopted by init and live on. With
//! `PR_SET_CHILD_SUBREAPER` it is adopted by cpu-server instead; this task
//! finds such adoptees — children of ours that are not orbs in the
//! [`ProcessTable`] — SIGKILLs them and reaps them, so no zombie remains either.
//! Orbs themselves are reaped by their supervisors.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use super::process_table::ProcessTable;

/// Makes this process a child subreaper. Call once at start-up.
pub fn become_subreaper() {
    if let Err(error) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::warn!(%error, "cannot become child subreaper; orphaned orb descendants go to init");
    }
}

/// Reaps adopted orphans on every SIGCHLD and at least every `period`.
pub fn spawn_reaper(table: ProcessTable, period: Duration, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut sigchld = signal(SignalKind::child()).ok();
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
                Some(()) = async { match sigchld.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => {}
            }
            let table = table.clone();
            let _ = tokio::task::spawn_blocking(move || reap_orphans(&table)).await;
        }
    })
}

/// One pass: kill and reap every child of ours that is not a tracked orb.
pub fn reap_orphans(table: &ProcessTable) -> usize {
    let me = std::process::id() as i32;
    // Scan without the lock; then decide under it. A child seen in the scan is
    // either in the table by now, or a spawn is still between fork and its
    // entry (then nothing is decided this pass), or it is an orphan.
    let children = children_of(me);
    let tracked = table.lock();
    if table.spawn_in_progress() {
        return 0;
    }
    let mut handled = 0;
    for (pid, state) in children {
        if tracked.contains_key(&(pid as u32)) {
            continue;
        }
        let pid = Pid::from_raw(pid);
        if state != 'Z' {
            tracing::info!(pid = pid.as_raw(), "killing orphaned orb descendant");
            let _ = kill(pid, Signal::SIGKILL);
        }
        let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
        handled += 1;
    }
    handled
}

/// Children of `parent`, with their state letter, from `/proc`.
fn children_of(parent: i32) -> Vec<(i32, char)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let after = stat.get(stat.rfind(')')? + 2..)?;
            let mut fields = after.split_whitespace();
            let state = fields.next()?.chars().next()?;
            let ppid: i32 = fields.next()?.parse().ok()?;
            (ppid == parent).then_some((pid, state))
        })
        .collect()
}
