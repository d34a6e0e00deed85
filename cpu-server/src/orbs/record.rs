//! The public record of one room's orb, and the states operators see it in
//! (a view of the lifecycle's `OrbPhase`).

use serde::Serialize;

use super::lifecycle::{ExitCause, StopReason};
use super::process_control::Placement;

/// Where a room's orb is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrbState {
    /// Waiting for a free slot (`MAX_CONCURRENT_ORBS`).
    Queued,
    /// Process started, `orb_ready` not yet received.
    Spawning,
    /// Running and heard from recently.
    Ready,
    /// Silent too long; being killed.
    Unresponsive,
    /// A stop was requested; waiting for the process to exit.
    Stopping,
    /// Exited unexpectedly; restart scheduled after a backoff.
    Restarting,
    /// Crash loop: no restart until the window passes or an operator resets it.
    Parked,
}

/// How a process ended, as far as the manager saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ExitRecord {
    /// Exit code, when it exited.
    pub code: Option<i32>,
    /// Signal number, when killed by one.
    pub signal: Option<i32>,
    /// What it is counted under.
    pub cause: ExitCause,
    /// Why it ended, in words: the stop's label, the orb's own reason, or `crash` (with detail).
    pub reason: String,
    /// Whether the manager counts it as a normal end (no restart).
    pub normal: bool,
}

/// What operators see of one room's orb.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrbRecord {
    /// The room.
    pub room: String,
    /// The orb's session id (`ai-orb-<session>` in the room).
    pub session: String,
    /// Process id, while a process exists.
    pub pid: Option<u32>,
    /// Current state.
    pub state: OrbState,
    /// When the current process started, ms since the Unix epoch.
    pub started_at_ms: Option<u64>,
    /// Uptime of the current process.
    pub uptime_ms: u64,
    /// Restarts so far.
    pub restarts: u32,
    /// How the previous process ended.
    pub last_exit: Option<ExitRecord>,
    /// Age of the last heartbeat (IPC or WebSocket).
    pub last_heartbeat_ms: Option<u64>,
    /// Delay of the last IPC heartbeat (its timestamp to its arrival), ms.
    pub ipc_rtt_ms: Option<f64>,
    /// Spawn → `orb_ready` of the current process, ms.
    pub spawn_to_ready_ms: Option<f64>,
    /// CPU of the orb's process tree, percent of one core (sampled).
    pub cpu_percent: Option<f64>,
    /// Resident memory of the orb's process tree, bytes (sampled).
    pub rss_bytes: Option<u64>,
    /// GPU memory of the orb's process tree, bytes (NVML; absent without the NVIDIA driver).
    pub gpu_memory_bytes: Option<u64>,
    /// Humans in the room.
    pub participants: usize,
    /// Position in the spawn queue, when queued (1 = next).
    pub queue_position: Option<usize>,
    /// Media health of the current process, per peer, from its last heartbeat
    /// (`metrics.media`; absent for an orb without media).
    pub media: Option<serde_json::Value>,
    /// The voice pipeline of the current process from its last heartbeat
    /// (`metrics.voice`: stage, pending utterance, counts; absent without one).
    pub voice: Option<serde_json::Value>,
    /// Why it is being stopped, while it is (`stopping`, `unresponsive`).
    pub stop_reason: Option<StopReason>,
    /// The GPU device of its slot (`ORB_GPUS`; absent without GPU slots).
    pub gpu: Option<String>,
    /// Its cluster job (`ORB_LAUNCHER=slurm`): id, node, or why it waits.
    pub placement: Option<Placement>,
}
