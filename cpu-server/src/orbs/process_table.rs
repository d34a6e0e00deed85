//! The pids of live orb processes, for the helpers that look at processes
//! from outside the manager: the resource sampler, the reaper of orphans and
//! the emergency kill on a second shutdown signal.
//!
//! Only the manager writes it (on spawn and on reap); the others read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Live orb processes: pid (= process group) → room.
#[derive(Debug, Clone, Default)]
pub struct ProcessTable {
    inner: Arc<Mutex<HashMap<u32, String>>>,
    /// Spawns between fork and their entry in the table.
    spawning: Arc<AtomicUsize>,
}

impl ProcessTable {
    /// Locks the table. The reaper takes it only briefly, after its `/proc`
    /// scan, and does not rely on a spawn holding it: it leaves a child alone
    /// until it has been untracked for a second (see `reaper`).
    pub fn lock(&self) -> MutexGuard<'_, HashMap<u32, String>> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `spawn` (which forks) and records the pid it returns: while it
    /// runs, [`ProcessTable::spawn_in_progress`] tells the reaper that a child
    /// it does not know yet may be a new orb.
    pub fn record_spawn<T>(&self, room: &str, spawn: impl FnOnce() -> Option<(u32, T)>) -> Option<(u32, T)> {
        self.spawning.fetch_add(1, Ordering::SeqCst);
        let spawned = spawn();
        if let Some((pid, _)) = &spawned {
            self.lock().insert(*pid, room.to_owned());
        }
        self.spawning.fetch_sub(1, Ordering::SeqCst);
        spawned
    }

    /// Whether a spawn is between fork and its entry in the table.
    pub fn spawn_in_progress(&self) -> bool {
        self.spawning.load(Ordering::SeqCst) > 0
    }

    /// A copy of the table.
    pub fn snapshot(&self) -> Vec<(u32, String)> {
        self.lock().iter().map(|(pid, room)| (*pid, room.clone())).collect()
    }

    /// SIGKILLs every orb process group now. For the second shutdown signal,
    /// when there is no time for the graceful path.
    pub fn kill_all_groups(&self) -> usize {
        let pids: Vec<u32> = self.lock().keys().copied().collect();
        for pid in &pids {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(*pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        pids.len()
    }
}
