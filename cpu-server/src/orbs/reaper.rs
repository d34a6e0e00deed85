//! The server as child subreaper: orphaned descendants of orbs come back to it
//! and are killed and reaped here.
//!
//! When an orb dies, a grandchild that escaped its process group (e.g. by
//! `setsid`) would otherwise be adopted by init and live on. With
//! `PR_SET_CHILD_SUBREAPER` it is adopted by cpu-server instead; this task
//! finds such adoptees — children of ours that are not orbs in the
//! [`ProcessTable`] — SIGKILLs them and reaps them, so no zombie remains either.
//! Orbs themselves are reaped by their supervisors.
//!
//! Only orb descendants are killed: a live child must carry the
//! `ORB_SUPERVISED=1` marker every orb gets (and its descendants inherit), or
//! run as the configured `ORB_USER` when that is not our own user (a server
//! that is not root cannot read the environment of another user's process, so
//! `ORB_USER` must be dedicated to this server's orbs). A zombie has no
//! environment left to check: an untracked zombie child is reaped (in the
//! server every child is an orb or an adopted orb descendant; reaping never
//! harms a live process).
//!
//! Each pass reads `/proc`, then checks which children are tracked in the
//! manager's latest [`ProcessTable`] snapshot (nothing is locked meanwhile). An orb is recorded
//! there shortly *after* its fork, so a child is acted upon only once it was
//! already an untracked child on an earlier pass at least [`MIN_AGE`] before
//! (remembered by pid and start time, so a reused pid starts afresh; at most
//! [`MAX_REMEMBERED`] of them).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use super::process_table::ProcessTable;

/// How long a child must have been seen untracked before it is killed or reaped.
pub const MIN_AGE: Duration = Duration::from_secs(1);

/// Most untracked children remembered between passes (bounded memory).
pub const MAX_REMEMBERED: usize = 4096;

/// Makes this process a child subreaper. Call once at start-up.
pub fn become_subreaper() {
    if let Err(error) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::warn!(%error, "cannot become child subreaper; orphaned orb descendants go to init");
    }
}

/// Reaps adopted orphans on every SIGCHLD and at least every `period`.
/// `orb_uid`: the uid orbs run as (`ORB_USER`), when they are switched to it.
pub fn spawn_reaper(
    table: ProcessTable,
    orb_uid: Option<u32>,
    period: Duration,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut sigchld = signal(SignalKind::child()).ok();
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut reaper = Some(Reaper::new(table.clone(), orb_uid));
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
                Some(()) = async { match sigchld.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => {}
            }
            let mut current = reaper.take().unwrap_or_else(|| Reaper::new(table.clone(), orb_uid));
            reaper = tokio::task::spawn_blocking(move || {
                current.pass(Instant::now());
                current
            })
            .await
            .ok();
        }
    })
}

/// A child of ours as one `/proc` scan saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildProc {
    /// Process id.
    pub pid: i32,
    /// Start time (`/proc/<pid>/stat` field 22, clock ticks since boot): with
    /// the pid, identifies the process across passes.
    pub start_time: u64,
    /// Exited, waiting to be reaped.
    pub zombie: bool,
    /// Carries the orb marker (or runs as the dedicated orb user).
    pub orb_descendant: bool,
}

/// What one pass does with one child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not ours to touch: a tracked orb, or a live child that is no orb descendant.
    Leave,
    /// A candidate not yet seen untracked for [`MIN_AGE`]: look again later.
    Wait,
    /// An orphaned orb descendant: SIGKILL it (and reap it if already gone).
    Kill,
    /// An untracked zombie: reap it.
    Reap,
}

/// The decision for `child` (pure). `first_seen`: when it was first seen as
/// an untracked candidate (`None`: never).
pub fn decide(child: &ChildProc, tracked: bool, first_seen: Option<Instant>, now: Instant) -> Verdict {
    if tracked || !(child.zombie || child.orb_descendant) {
        return Verdict::Leave;
    }
    match first_seen {
        Some(seen) if now.saturating_duration_since(seen) >= MIN_AGE => {
            if child.zombie {
                Verdict::Reap
            } else {
                Verdict::Kill
            }
        }
        _ => Verdict::Wait,
    }
}

/// The reaper's state between passes.
#[derive(Debug)]
pub struct Reaper {
    table: ProcessTable,
    orb_uid: Option<u32>,
    /// Untracked candidates by (pid, start time): when first seen.
    seen: HashMap<(i32, u64), Instant>,
}

impl Reaper {
    /// A reaper of children of this process not in `table`.
    pub fn new(table: ProcessTable, orb_uid: Option<u32>) -> Self {
        Self {
            table,
            orb_uid,
            seen: HashMap::new(),
        }
    }

    /// One pass over our children at `now`: returns how many were killed or reaped.
    /// Blocking (reads `/proc`): run it off the async runtime.
    pub fn pass(&mut self, now: Instant) -> usize {
        let children = scan_children(std::process::id() as i32, self.orb_uid);
        self.apply(&children, now)
    }

    /// Decides and acts on `children` (one scan's result).
    pub fn apply(&mut self, children: &[ChildProc], now: Instant) -> usize {
        // The manager's latest snapshot, taken after the scan.
        let table = self.table.current();
        if table.launching > 0 {
            // A child of this scan may be an orb between fork and its table entry.
            return 0;
        }
        let tracked: Vec<bool> = children
            .iter()
            .map(|c| table.pids.contains_key(&(c.pid as u32)))
            .collect();
        let mut remembered = HashMap::with_capacity(self.seen.len().min(MAX_REMEMBERED));
        let mut handled = 0;
        for (child, tracked) in children.iter().zip(tracked) {
            let key = (child.pid, child.start_time);
            let first_seen = self.seen.get(&key).copied();
            let verdict = decide(child, tracked, first_seen, now);
            let pid = Pid::from_raw(child.pid);
            match verdict {
                Verdict::Leave => continue,
                Verdict::Wait => {
                    if remembered.len() < MAX_REMEMBERED {
                        remembered.insert(key, first_seen.unwrap_or(now));
                    }
                    continue;
                }
                Verdict::Kill => {
                    tracing::info!(pid = child.pid, "killing orphaned orb descendant");
                    let _ = kill(pid, Signal::SIGKILL);
                }
                Verdict::Reap => {}
            }
            handled += 1;
            // Still remembered if it is not gone yet (a kill takes a moment).
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(nix::sys::wait::WaitStatus::StillAlive) if remembered.len() < MAX_REMEMBERED => {
                    remembered.insert(key, first_seen.unwrap_or(now));
                }
                _ => {}
            }
        }
        // Forget what is gone: memory stays bounded by our children.
        self.seen = remembered;
        handled
    }
}

/// Our children from `/proc`, with what [`decide`] needs. `orb_uid`: a live
/// child running as this uid (when it is not ours) counts as an orb descendant.
pub fn scan_children(parent: i32, orb_uid: Option<u32>) -> Vec<ChildProc> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let foreign_orb_uid = orb_uid.filter(|uid| *uid != nix::unistd::geteuid().as_raw());
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (state, ppid, start_time) = parse_stat(&stat)?;
            if ppid != parent {
                return None;
            }
            let zombie = state == 'Z';
            let orb_descendant =
                !zombie && (has_orb_marker(pid) || foreign_orb_uid.is_some_and(|uid| real_uid(pid) == Some(uid)));
            Some(ChildProc {
                pid,
                start_time,
                zombie,
                orb_descendant,
            })
        })
        .collect()
}

/// State letter, parent pid and start time from the text of `/proc/<pid>/stat`.
fn parse_stat(stat: &str) -> Option<(char, i32, u64)> {
    // The command name is in parentheses and may contain spaces.
    let after = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `fields[0]` is field 3 (state); field 22 (start time) is `fields[19]`.
    let state = fields.first()?.chars().next()?;
    let ppid = fields.get(1)?.parse().ok()?;
    let start_time = fields.get(19)?.parse().ok()?;
    Some((state, ppid, start_time))
}

/// Whether `/proc/<pid>/environ` (readable) holds `ORB_SUPERVISED=1`.
pub(crate) fn has_orb_marker(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|raw| raw.split(|b| *b == 0).any(|var| var == b"ORB_SUPERVISED=1"))
}

/// The real uid of `pid`, from `/proc/<pid>/status` (readable for any process).
pub(crate) fn real_uid(pid: i32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child(zombie: bool, orb_descendant: bool) -> ChildProc {
        ChildProc {
            pid: 42,
            start_time: 7,
            zombie,
            orb_descendant,
        }
    }

    #[test]
    fn only_orb_descendants_and_zombies_seen_untracked_long_enough_are_handled() {
        let now = Instant::now();
        let old = now.checked_sub(MIN_AGE).expect("clock");
        let recent = now.checked_sub(MIN_AGE / 2).expect("clock");
        let orphan = child(false, true);
        let stranger = child(false, false);
        let zombie = child(true, false);
        // A tracked orb is never touched, however old.
        for c in [orphan, stranger, zombie] {
            assert_eq!(decide(&c, true, Some(old), now), Verdict::Leave);
        }
        // A live child without the marker (not an orb descendant) is left alone.
        for seen in [None, Some(recent), Some(old)] {
            assert_eq!(decide(&stranger, false, seen, now), Verdict::Leave);
        }
        // A candidate first seen now or recently may be an orb the manager has
        // not recorded yet: wait.
        for c in [orphan, zombie] {
            assert_eq!(decide(&c, false, None, now), Verdict::Wait);
            assert_eq!(decide(&c, false, Some(recent), now), Verdict::Wait);
        }
        assert_eq!(decide(&orphan, false, Some(old), now), Verdict::Kill);
        assert_eq!(decide(&zombie, false, Some(old), now), Verdict::Reap);
    }

    #[test]
    fn stat_fields_survive_a_command_name_with_spaces_and_parentheses() {
        let stat = "1234 (a (b) c) S 77 1234 1234 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 98765 1000 10";
        assert_eq!(parse_stat(stat), Some(('S', 77, 98765)));
        assert_eq!(parse_stat("1 (x) S 0"), None);
    }

    /// A child of this test process, with or without the orb marker; killed on drop.
    struct Sleeper(std::process::Child);

    impl Sleeper {
        fn start(marked: bool) -> Self {
            let mut command = std::process::Command::new("sleep");
            command.arg("30").env_clear();
            if marked {
                command.env("ORB_SUPERVISED", "1");
            }
            Self(command.spawn().expect("spawn sleep"))
        }

        fn pid(&self) -> i32 {
            self.0.id() as i32
        }

        /// Our scan's view of this child, once its environment is the new one (after exec).
        fn scanned(&self, want_marked: bool) -> ChildProc {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let mine = scan_children(std::process::id() as i32, None)
                    .into_iter()
                    .find(|c| c.pid == self.pid());
                if let Some(found) = mine.filter(|c| c.orb_descendant == want_marked) {
                    return found;
                }
                assert!(
                    Instant::now() < deadline,
                    "sleep {} never scanned as expected: {mine:?}",
                    self.pid()
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    impl Drop for Sleeper {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// Runs two passes over `child` only, [`MIN_AGE`] apart (simulated).
    fn two_passes(child: ChildProc) -> usize {
        let mut reaper = Reaper::new(super::super::process_table::TableWriter::new().1, None);
        let start = Instant::now();
        reaper.apply(&[child], start) + reaper.apply(&[child], start + MIN_AGE * 2)
    }

    #[test]
    fn a_child_without_the_orb_marker_is_left_alone() {
        let sleeper = Sleeper::start(false);
        let child = sleeper.scanned(false);
        assert!(!child.zombie);
        assert_eq!(two_passes(child), 0);
        let state = std::fs::read_to_string(format!("/proc/{}/stat", sleeper.pid())).expect("still there");
        assert!(parse_stat(&state).is_some_and(|(s, _, _)| s != 'Z'), "killed: {state}");
    }

    #[test]
    fn an_untracked_child_with_the_orb_marker_is_killed_on_the_second_pass_and_reaped() {
        let mut sleeper = Sleeper::start(true);
        let child = sleeper.scanned(true);
        let mut reaper = Reaper::new(super::super::process_table::TableWriter::new().1, None);
        let start = Instant::now();
        assert_eq!(reaper.apply(&[child], start), 0, "first sight: wait");
        assert_eq!(reaper.apply(&[child], start + MIN_AGE * 2), 1, "killed");
        // Reaped by that pass or, once dead, by the next one: then it is gone.
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::metadata(format!("/proc/{}", sleeper.pid())).is_ok() {
            let zombie = scan_children(std::process::id() as i32, None)
                .into_iter()
                .filter(|c| c.pid == sleeper.pid())
                .collect::<Vec<_>>();
            reaper.apply(&zombie, start + MIN_AGE * 4);
            assert!(Instant::now() < deadline, "sleep {} was not reaped", sleeper.pid());
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(sleeper.0.try_wait().is_err(), "the reaper, not the test, reaped it");
    }
}
