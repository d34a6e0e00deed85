//! The pids of live orb processes, as the OrbManager last published them, for
//! those who look at processes from outside it: the resource sampler, the
//! reaper of orphans and the emergency kill on a second shutdown signal.
//!
//! One owner: only the manager's [`TableWriter`] changes it (on a launch, on
//! the launcher's answer, on an exit) and publishes a new snapshot; readers
//! ([`ProcessTable`]) copy the latest snapshot and never hold it across work.

use std::collections::HashMap;

use tokio::sync::watch;

use super::process_group;

/// What the manager knows of its processes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tracked {
    /// Live orb processes: pid (= process group) → room.
    pub pids: HashMap<u32, String>,
    /// Launches under way (a fork may have happened, the pid is not known yet).
    pub launching: usize,
}

/// Read side: a cloneable view of the latest snapshot.
#[derive(Debug, Clone)]
pub struct ProcessTable {
    current: watch::Receiver<Tracked>,
}

impl ProcessTable {
    /// A copy of the latest snapshot.
    pub fn current(&self) -> Tracked {
        self.current.borrow().clone()
    }

    /// The live (pid, room) pairs.
    pub fn snapshot(&self) -> Vec<(u32, String)> {
        self.current
            .borrow()
            .pids
            .iter()
            .map(|(pid, room)| (*pid, room.clone()))
            .collect()
    }

    /// SIGKILLs every orb process group now. For the second shutdown signal
    /// and a manager that is gone, when there is no time for the graceful path.
    pub fn kill_all_groups(&self) -> usize {
        let pids: Vec<u32> = self.current.borrow().pids.keys().copied().collect();
        for pid in &pids {
            process_group::kill(*pid);
        }
        pids.len()
    }
}

/// Write side, owned by the manager.
#[derive(Debug)]
pub struct TableWriter {
    tracked: watch::Sender<Tracked>,
}

impl TableWriter {
    /// An empty table and its read side.
    pub fn new() -> (Self, ProcessTable) {
        let (tracked, current) = watch::channel(Tracked::default());
        (Self { tracked }, ProcessTable { current })
    }

    /// A launch was asked for.
    pub fn launching(&self) {
        self.tracked.send_modify(|t| t.launching += 1);
    }

    /// The launcher answered: `started` is the new process's pid and room, if local.
    pub fn answered(&self, started: Option<(u32, &str)>) {
        self.tracked.send_modify(|t| {
            t.launching = t.launching.saturating_sub(1);
            if let Some((pid, room)) = started {
                t.pids.insert(pid, room.to_owned());
            }
        });
    }

    /// Process `pid` now belongs to `room` (a warm orb given a room).
    pub fn retag(&self, pid: u32, room: &str) {
        self.tracked.send_if_modified(|t| match t.pids.get_mut(&pid) {
            Some(tagged) if tagged != room => {
                room.clone_into(tagged);
                true
            }
            _ => false,
        });
    }

    /// Process `pid` is gone.
    pub fn exited(&self, pid: u32) {
        self.tracked.send_if_modified(|t| t.pids.remove(&pid).is_some());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rule: readers see each published change; a launch counts until it is answered.
    #[test]
    fn readers_follow_the_owner() {
        let (writer, table) = TableWriter::new();
        writer.launching();
        assert_eq!(table.current().launching, 1);
        writer.answered(Some((42, "r1")));
        assert_eq!(table.current().launching, 0);
        assert_eq!(table.snapshot(), vec![(42, "r1".to_owned())]);
        writer.exited(42);
        assert!(table.snapshot().is_empty());
    }
}
