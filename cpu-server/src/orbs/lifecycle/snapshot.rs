//! The lifecycle as a document, for an upgrade that hands its orbs over: what
//! the running image exports ([`Lifecycle::export`]) and the new image imports
//! ([`Lifecycle::import`]), so that every orb carries on as the same process
//! with the same record (generation, restarts and their history, uptime, last
//! exit, GPU slot, queue position).
//!
//! Instants do not survive `execve` (they are the monotonic clock, which does,
//! but tokio's `Instant` cannot be built from a number): each is written as a
//! distance from the moment of the export and read back against the moment of
//! the import. Only settled phases are exported: [`Lifecycle::handover_blocker`]
//! says what must settle first (a stop under way, a launch not answered yet),
//! and what cannot be handed over at all (warm orbs, orbs without a local
//! process).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::restart_policy::PolicyState;
use super::*;

/// Every room's orb entry and the queue, in a form that crosses an exec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct LifeSnapshot {
    /// The next process generation to give.
    pub next_generation: u64,
    /// Rooms waiting for a slot, first first.
    pub queue: Vec<String>,
    /// One per room with an orb entry (and per warm pool member, by its entry `warm+N`).
    pub rooms: Vec<RoomSnapshot>,
    /// The warm pool (`ORB_WARM_POOL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm: Option<super::warm_pool::WarmSnapshot>,
}

/// One room's orb entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomSnapshot {
    /// The room.
    pub room: String,
    /// Its session id.
    pub session: String,
    /// Where the orb is.
    pub phase: PhaseSnapshot,
    /// The restart history.
    pub policy: PolicyState,
    /// How the previous process ended.
    pub last_exit: Option<ExitRecord>,
    /// Spawn → ready of the current (or last) process, ms.
    pub spawn_to_ready_ms: Option<f64>,
    /// The GPU device of the current (or last) process.
    pub gpu: Option<String>,
    /// Where its cluster job is, when it is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
}

/// A settled phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PhaseSnapshot {
    /// Waiting for a slot.
    Queued {
        /// The position the room was last told.
        told: Option<usize>,
    },
    /// Started, not ready yet.
    Starting {
        /// Which process of the room.
        generation: u64,
        /// The process.
        process: ProcessSnapshot,
    },
    /// Ready.
    Ready {
        /// Which process of the room.
        generation: u64,
        /// The process.
        process: ProcessSnapshot,
    },
    /// Failed; started again after `due_in_ms`.
    Restarting {
        /// Time left until the restart.
        due_in_ms: u64,
    },
    /// Crash loop, for `until_in_ms` more.
    Parked {
        /// Time left in the window.
        until_in_ms: u64,
    },
}

/// An orb process (local, or a cluster job).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessSnapshot {
    /// Its pid (= its process group), when local.
    pub pid: Option<u32>,
    /// How long it has run.
    pub started_ago_ms: u64,
    /// How long since it was last heard from.
    pub last_heard_ago_ms: u64,
    /// What it announced about its end, if anything.
    pub announced: Option<String>,
}

/// A handed-over process, as the shell must adopt it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Adopted {
    /// Which process.
    pub generation: u64,
    /// Its pid, when local.
    pub pid: Option<u32>,
}

pub(crate) fn ago(now: Instant, then: Instant) -> u64 {
    now.saturating_duration_since(then).as_millis() as u64
}

pub(crate) fn ahead(now: Instant, then: Instant) -> u64 {
    then.saturating_duration_since(now).as_millis() as u64
}

pub(crate) fn back(now: Instant, ago_ms: u64) -> Instant {
    now.checked_sub(Duration::from_millis(ago_ms)).unwrap_or(now)
}

impl ProcessSnapshot {
    /// Whether `live` can be handed over: a process supervised over IPC (a local
    /// one, or a cluster job over its supervision link).
    fn can_hand_over(live: &Live) -> bool {
        live.supervision == Supervision::Ipc
    }

    fn of(live: &Live, now: Instant) -> Option<Self> {
        Self::can_hand_over(live).then_some(())?;
        Some(Self {
            pid: live.pid,
            started_ago_ms: ago(now, live.started),
            last_heard_ago_ms: ago(now, live.last_heard),
            announced: live.announced.clone(),
        })
    }

    fn live(&self, now: Instant) -> Live {
        Live {
            pid: self.pid,
            supervision: Supervision::Ipc,
            started: back(now, self.started_ago_ms),
            last_heard: back(now, self.last_heard_ago_ms),
            announced: self.announced.clone(),
        }
    }
}

impl Lifecycle {
    /// Why the orbs cannot be exported now (`None`: they can). Some reasons pass
    /// (a stop, a launch or a warm orb's assignment under way), one does not
    /// (orbs heard only over their room socket).
    pub fn handover_blocker(&self) -> Option<Blocker> {
        for (room, orb) in &self.orbs {
            if orb.assigning.is_some() {
                return Some(Blocker::Settling(format!("room {room}'s warm orb is taking the room")));
            }
            match &orb.phase {
                OrbPhase::Stopping { .. } => return Some(Blocker::Settling(format!("room {room}'s orb is stopping"))),
                OrbPhase::Starting { live: None, .. } => {
                    return Some(Blocker::Settling(format!("room {room}'s orb is being launched")));
                }
                OrbPhase::Starting { live: Some(live), .. } | OrbPhase::Ready { live, .. }
                    if !ProcessSnapshot::can_hand_over(live) =>
                {
                    return Some(Blocker::Never(
                        "orbs heard only over their room socket are not handed over",
                    ));
                }
                OrbPhase::Starting { live: Some(live), .. } | OrbPhase::Ready { live, .. }
                    if live.pid.is_none() && !has_job(orb.placement.as_ref()) =>
                {
                    return Some(Blocker::Settling(format!("room {room}'s orb job is being submitted")));
                }
                _ => {}
            }
        }
        None
    }

    /// The lifecycle at `now`, and the processes it names. Call only when
    /// [`Lifecycle::handover_blocker`] is `None` (an entry in another phase is left out).
    pub fn export(&self, now: Instant) -> (LifeSnapshot, Vec<Adopted>) {
        let mut rooms = Vec::new();
        let mut processes = Vec::new();
        let mut names: Vec<&String> = self.orbs.keys().collect();
        names.sort();
        for room in names {
            let orb = &self.orbs[room];
            let phase = match &orb.phase {
                OrbPhase::Queued { told } => PhaseSnapshot::Queued { told: *told },
                OrbPhase::Starting {
                    generation,
                    live: Some(live),
                } => match ProcessSnapshot::of(live, now) {
                    Some(process) => PhaseSnapshot::Starting {
                        generation: *generation,
                        process,
                    },
                    None => continue,
                },
                OrbPhase::Ready { generation, live } => match ProcessSnapshot::of(live, now) {
                    Some(process) => PhaseSnapshot::Ready {
                        generation: *generation,
                        process,
                    },
                    None => continue,
                },
                OrbPhase::Restarting { due } => PhaseSnapshot::Restarting {
                    due_in_ms: ahead(now, *due),
                },
                OrbPhase::Parked { until } => PhaseSnapshot::Parked {
                    until_in_ms: ahead(now, *until),
                },
                OrbPhase::Starting { live: None, .. } | OrbPhase::Stopping { .. } => continue,
            };
            if let PhaseSnapshot::Starting { generation, process } | PhaseSnapshot::Ready { generation, process } =
                &phase
            {
                processes.push(Adopted {
                    generation: *generation,
                    pid: process.pid,
                });
            }
            rooms.push(RoomSnapshot {
                room: room.clone(),
                session: orb.session.clone(),
                phase,
                policy: PolicyState::of(&orb.policy, now),
                last_exit: orb.last_exit.clone(),
                spawn_to_ready_ms: orb.spawn_to_ready_ms,
                gpu: orb.gpu.clone(),
                placement: orb.placement.clone(),
            });
        }
        let snapshot = LifeSnapshot {
            next_generation: self.next_generation,
            queue: self.queue.iter().cloned().collect(),
            rooms,
            warm: Some(self.warm.export(now)),
        };
        (snapshot, processes)
    }

    /// Takes over `snapshot` (a lifecycle with no orbs yet, at its start):
    /// every entry as it was, each process holding its slot (and its GPU slot).
    /// Returns the processes the shell must adopt; the timers are the shell's
    /// to restore.
    pub fn import(&mut self, snapshot: LifeSnapshot, now: Instant) -> Vec<Adopted> {
        let mut adopted = Vec::new();
        self.next_generation = self.next_generation.max(snapshot.next_generation);
        for entry in snapshot.rooms {
            let mut life = OrbLife::new(
                entry.session,
                entry
                    .policy
                    .policy(self.rules.max_restarts, self.rules.restart_window, now),
            );
            life.last_exit = entry.last_exit;
            life.spawn_to_ready_ms = entry.spawn_to_ready_ms;
            life.gpu = entry.gpu;
            life.placement = entry.placement;
            life.phase = match entry.phase {
                PhaseSnapshot::Queued { told } => OrbPhase::Queued { told },
                PhaseSnapshot::Starting { generation, process } | PhaseSnapshot::Ready { generation, process }
                    if self.orbs.values().any(|o| o.phase.generation() == Some(generation)) =>
                {
                    // A document naming one process twice: the second entry has none.
                    let _ = process;
                    OrbPhase::Queued { told: None }
                }
                PhaseSnapshot::Starting { generation, process } => {
                    adopted.push(self.hold_slots(generation, &process, life.gpu.as_deref()));
                    OrbPhase::Starting {
                        generation,
                        live: Some(process.live(now)),
                    }
                }
                PhaseSnapshot::Ready { generation, process } => {
                    adopted.push(self.hold_slots(generation, &process, life.gpu.as_deref()));
                    OrbPhase::Ready {
                        generation,
                        live: process.live(now),
                    }
                }
                PhaseSnapshot::Restarting { due_in_ms } => OrbPhase::Restarting {
                    due: now + Duration::from_millis(due_in_ms),
                },
                PhaseSnapshot::Parked { until_in_ms } => OrbPhase::Parked {
                    until: now + Duration::from_millis(until_in_ms),
                },
            };
            self.next_generation = self.next_generation.max(life.phase.generation().map_or(0, |g| g + 1));
            self.orbs.insert(entry.room, life);
        }
        if let Some(warm) = snapshot.warm {
            let orbs = &self.orbs;
            let (max_restarts, window) = (self.rules.max_restarts, self.rules.restart_window);
            self.warm
                .import(warm, now, |key| orbs.contains_key(key), max_restarts, window);
        }
        for room in snapshot.queue {
            let queued = self
                .orbs
                .get(&room)
                .is_some_and(|o| matches!(o.phase, OrbPhase::Queued { .. }));
            if queued && !self.queue.contains(&room) {
                self.queue.push_back(room);
            }
        }
        adopted
    }

    /// After a handover: the orbs belong to the next program image; this
    /// lifecycle forgets them, and starts nothing any more (it is draining).
    pub fn forget_all(&mut self) {
        self.orbs.clear();
        self.people.clear();
        self.queue.clear();
        self.slots_used = 0;
        self.gpu_slots = gpu_slots::GpuSlots::new(Vec::new(), 1);
        self.draining = true;
        self.out.clear();
    }

    /// The room whose entry holds process `generation`.
    pub fn room_of(&self, generation: u64) -> Option<String> {
        self.orbs
            .iter()
            .find(|(_, orb)| orb.phase.generation() == Some(generation))
            .map(|(room, _)| room.clone())
    }

    fn hold_slots(&mut self, generation: u64, process: &ProcessSnapshot, gpu: Option<&str>) -> Adopted {
        self.slots_used += 1;
        if let Some(device) = gpu {
            self.gpu_slots.hold(generation, device);
        }
        Adopted {
            generation,
            pid: process.pid,
        }
    }
}

/// Whether the cluster has given the job an id yet.
fn has_job(placement: Option<&Placement>) -> bool {
    match placement {
        Some(Placement::Running { .. }) | Some(Placement::Pending { job: Some(_), .. }) => true,
        Some(Placement::Pending { job: None, .. }) | None => false,
    }
}

/// Why orbs cannot be handed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocker {
    /// Not yet: wait for this to settle.
    Settling(String),
    /// Not in this configuration.
    Never(&'static str),
}

impl std::fmt::Display for Blocker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Settling(why) => f.write_str(why),
            Self::Never(why) => f.write_str(why),
        }
    }
}
