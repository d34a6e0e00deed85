//! One room's orb as data: its [`OrbPhase`] (each variant carrying what is
//! true only in it) and what outlives a phase ([`OrbLife`]).

use tokio::time::Instant;

use super::cause::StopReason;
use super::escalation::Escalation;
use super::restart_policy::RestartPolicy;
use crate::orbs::process_control::{Placement, Supervision};
use crate::orbs::record::{ExitRecord, OrbState};

/// A caller waiting for a room's orb process to exit (the shell maps it to a reply channel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WaiterId(pub u64);

/// A stop to carry out: why, who waits for the exit, who asked (for the timeline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopRequest {
    /// Why.
    pub reason: StopReason,
    /// Answered with the exit.
    pub waiter: Option<WaiterId>,
    /// Who asked, when from outside (e.g. `DELETE /api/orbs/{room}`).
    pub origin: Option<&'static str>,
}

impl StopRequest {
    /// A stop the lifecycle decides on itself (nobody waits, nobody outside asked).
    pub fn internal(reason: StopReason) -> Self {
        Self {
            reason,
            waiter: None,
            origin: None,
        }
    }
}

/// A started orb process, as the lifecycle knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Live {
    /// Its pid, when it is a local process.
    pub pid: Option<u32>,
    /// How it is heard from.
    pub supervision: Supervision,
    /// When it started.
    pub started: Instant,
    /// Last sign of life (IPC or WebSocket).
    pub last_heard: Instant,
    /// What it announced about its end (`orb_shutdown`, `ai-orb-shutdown`).
    pub announced: Option<String>,
}

/// Where a room's orb is in its life.
#[derive(Debug, Clone, PartialEq)]
pub enum OrbPhase {
    /// Waiting for a free slot; `told` is the position the room was last told.
    Queued {
        /// Position last delivered to the room.
        told: Option<usize>,
    },
    /// A slot is taken for process `generation`; `live` once the launcher answered.
    Starting {
        /// Which process of the room.
        generation: u64,
        /// The process, once started.
        live: Option<Live>,
    },
    /// The process said `orb_ready` (or joined its room, when supervised over its WebSocket).
    Ready {
        /// Which process of the room.
        generation: u64,
        /// The process.
        live: Live,
    },
    /// Being stopped for `reason`; `waiters` hear when it exits.
    Stopping {
        /// Which process of the room.
        generation: u64,
        /// The process, once started (a stop may come while it is being started).
        live: Option<Live>,
        /// Why.
        reason: StopReason,
        /// Callers to answer when it exited.
        waiters: Vec<WaiterId>,
        /// Where the graceful → TERM → KILL escalation is.
        escalation: Escalation,
    },
    /// Failed; started again at `due`.
    Restarting {
        /// When the restart is due.
        due: Instant,
    },
    /// Crash loop: nothing starts until `until` or an operator's reset.
    Parked {
        /// When the crash-loop window has passed.
        until: Instant,
    },
}

impl OrbPhase {
    /// The generation of the process holding a slot, if any.
    pub fn generation(&self) -> Option<u64> {
        match self {
            Self::Starting { generation, .. } | Self::Ready { generation, .. } | Self::Stopping { generation, .. } => {
                Some(*generation)
            }
            _ => None,
        }
    }

    /// The started process, if any.
    pub fn live(&self) -> Option<&Live> {
        match self {
            Self::Starting { live, .. } | Self::Stopping { live, .. } => live.as_ref(),
            Self::Ready { live, .. } => Some(live),
            _ => None,
        }
    }

    /// The started process, if any, for updating.
    pub fn live_mut(&mut self) -> Option<&mut Live> {
        match self {
            Self::Starting { live, .. } | Self::Stopping { live, .. } => live.as_mut(),
            Self::Ready { live, .. } => Some(live),
            _ => None,
        }
    }

    /// The process of a starting or ready orb: its generation and its handle, if started.
    pub fn into_process(self) -> Option<(u64, Option<Live>)> {
        match self {
            Self::Starting { generation, live } => Some((generation, live)),
            Self::Ready { generation, live } => Some((generation, Some(live))),
            _ => None,
        }
    }

    /// The state operators see.
    pub fn state(&self) -> OrbState {
        match self {
            Self::Queued { .. } => OrbState::Queued,
            Self::Starting { .. } => OrbState::Spawning,
            Self::Ready { .. } => OrbState::Ready,
            Self::Stopping {
                reason: StopReason::Unresponsive,
                ..
            } => OrbState::Unresponsive,
            Self::Stopping { .. } => OrbState::Stopping,
            Self::Restarting { .. } => OrbState::Restarting,
            Self::Parked { .. } => OrbState::Parked,
        }
    }
}

/// A warm orb's process given to the room, until it says `orb_assigned`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assigning {
    /// Which process.
    pub generation: u64,
    /// When it was given the room.
    pub since: Instant,
}

/// One room's orb, from the wish for it to its last exit.
#[derive(Debug, Clone)]
pub struct OrbLife {
    /// The session id (`ai-orb-<session>` in the room).
    pub session: String,
    /// Where it is.
    pub phase: OrbPhase,
    /// Its failure history.
    pub policy: RestartPolicy,
    /// How the previous process ended.
    pub last_exit: Option<ExitRecord>,
    /// Delay of the last IPC heartbeat, ms.
    pub ipc_delay_ms: Option<f64>,
    /// Last CPU (percent) and RSS (bytes) of the current process.
    pub sample: Option<(f64, u64)>,
    /// Last GPU memory (bytes, NVML) of the current process; `None` without NVML.
    pub gpu_bytes: Option<u64>,
    /// Spawn → ready of the current (or last) process, ms.
    pub spawn_to_ready_ms: Option<f64>,
    /// Media health from the last heartbeat (`metrics.media`: per peer), as the orb sent it.
    pub media: Option<serde_json::Value>,
    /// The voice pipeline's state from the last heartbeat (`metrics.voice`), as the orb sent it.
    pub voice: Option<serde_json::Value>,
    /// The GPU device of the current (or last) process (`ORB_GPUS`), if any.
    pub gpu: Option<String>,
    /// Where the current (or last) cluster job is, if the launcher places jobs.
    pub placement: Option<Placement>,
    /// A warm orb given to the room that has not yet taken it.
    pub assigning: Option<Assigning>,
}

impl OrbLife {
    /// A new entry, no process yet.
    pub fn new(session: String, policy: RestartPolicy) -> Self {
        Self {
            session,
            phase: OrbPhase::Queued { told: None },
            policy,
            last_exit: None,
            ipc_delay_ms: None,
            sample: None,
            gpu_bytes: None,
            spawn_to_ready_ms: None,
            media: None,
            voice: None,
            gpu: None,
            placement: None,
            assigning: None,
        }
    }
}
