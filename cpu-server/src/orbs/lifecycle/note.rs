//! What the lifecycle observed and decided, as typed notes for a room's
//! timeline (`orbs::timeline`) and the structured log. Emitted with
//! [`super::Action::Note`]; the shell stamps them with the wall clock.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::cause::{ExitCause, StopReason};
use super::stall_rule::Stall;

/// One thing that happened to a room's orb.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Note {
    /// Waiting for a slot, at this position.
    Queued {
        /// 1 = next.
        position: usize,
    },
    /// A slot was taken and the launcher asked to start process `generation`.
    Launching {
        /// Which process of the room.
        generation: u64,
    },
    /// The launcher started it.
    Started {
        /// Which process.
        generation: u64,
        /// Its pid, when local.
        pid: Option<u32>,
    },
    /// The launcher could not start it.
    SpawnFailed {
        /// Why.
        error: String,
    },
    /// Its cluster job waits in the scheduler's queue, or runs on a node now.
    Placed {
        /// Where it is.
        placement: crate::orbs::process_control::Placement,
    },
    /// It became ready.
    Ready {
        /// Which process.
        generation: u64,
        /// Start → ready, ms.
        after_ms: u64,
    },
    /// An IPC heartbeat arrived late.
    HeartbeatLate {
        /// Its delay, ms.
        delay_ms: u64,
    },
    /// The AI joined its room (WebSocket).
    AiJoined,
    /// The AI left its room (WebSocket).
    AiLeft,
    /// The orb's media peers changed (one joined or left, or its ICE/DTLS state moved):
    /// each as `peer ice/dtls`, from its heartbeat.
    MediaChanged {
        /// The peers now.
        peers: Vec<String>,
    },
    /// Resident memory crossed `ORB_MEMORY_LIMIT_MB`.
    OverMemoryLimit {
        /// What was measured, bytes.
        rss_bytes: u64,
        /// The limit, bytes.
        limit_bytes: u64,
    },
    /// GPU memory (NVML) crossed `ORB_GPU_MEMORY_LIMIT_MB`.
    OverGpuMemoryLimit {
        /// What was measured, bytes.
        gpu_bytes: u64,
        /// The limit, bytes.
        limit_bytes: u64,
    },
    /// A heartbeat showed the call stalled for `ORB_MEDIA_STALL_TIMEOUT`
    /// (`what`: `voice` with `pending_ms`, or `media` with `peer`, `silent_ms`, `any_packet`).
    Stalled {
        /// What stalled.
        #[serde(flatten)]
        stall: Stall,
    },
    /// A stop began.
    StopAsked {
        /// Why.
        reason: StopReason,
        /// Who asked, when from outside (e.g. `DELETE /api/orbs/{room}`).
        origin: Option<Cow<'static, str>>,
        /// For a silent orb: how long it had been silent, ms.
        silent_ms: Option<u64>,
    },
    /// A step of the stop was delivered (`shutdown_graceful`, `SIGTERM`, `SIGKILL`).
    Signalled {
        /// What was sent.
        sent: Cow<'static, str>,
    },
    /// The process is gone.
    Exited {
        /// Which process.
        generation: u64,
        /// Exit status.
        code: Option<i32>,
        /// Signal number.
        signal: Option<i32>,
        /// What it counts as.
        cause: ExitCause,
        /// In words.
        reason: String,
        /// Whether a stop of ours was under way (a signal then was ours).
        by_us: bool,
    },
    /// A restart is due after `delay_ms`.
    RestartScheduled {
        /// The backoff, ms.
        delay_ms: u64,
        /// Whether it counts toward the crash-loop limit.
        counted: bool,
    },
    /// Crash loop: parked for `for_ms`.
    Parked {
        /// Until the window has passed, ms.
        for_ms: u64,
    },
    /// A warm orb's process `generation` was given this room (from pool entry `from`).
    WarmAssigned {
        /// Which process.
        generation: u64,
        /// Its pool entry (`warm+N`).
        from: String,
    },
    /// The warm orb took the room (`orb_assigned`) after `after_ms`.
    WarmTook {
        /// Which process.
        generation: u64,
        /// Assignment → `orb_assigned`, ms.
        after_ms: u64,
    },
    /// The warm orb did not take the room in time: it was discarded and the room
    /// goes on with the next warm orb or a cold start.
    WarmDiscarded {
        /// Which process.
        generation: u64,
    },
    /// The room's orb is over (the room was told `cause`, when it was).
    Ended {
        /// What the room was told.
        told_room: Option<ExitCause>,
    },
}

/// The peers of a heartbeat's `metrics.media` as `peer ice/dtls`, sorted (`None`: no media).
pub fn media_peers(media: Option<&serde_json::Value>) -> Option<Vec<String>> {
    let peers = media?.as_array()?;
    let field = |p: &serde_json::Value, k: &str| p[k].as_str().unwrap_or("?").to_owned();
    let mut states: Vec<String> = peers
        .iter()
        .map(|p| format!("{} {}/{}", field(p, "peer"), field(p, "ice"), field(p, "dtls")))
        .collect();
    states.sort();
    Some(states)
}

impl Note {
    /// Process `generation` ended as `exit`; `by_us`: a stop of ours was under way.
    pub fn exited(generation: u64, exit: &crate::orbs::record::ExitRecord, by_us: bool) -> Self {
        Self::Exited {
            generation,
            code: exit.code,
            signal: exit.signal,
            cause: exit.cause,
            reason: exit.reason.clone(),
            by_us,
        }
    }

    /// The event name (the `event` field of its JSON).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Queued { .. } => "queued",
            Self::Launching { .. } => "launching",
            Self::Started { .. } => "started",
            Self::SpawnFailed { .. } => "spawn_failed",
            Self::Placed { .. } => "placed",
            Self::Ready { .. } => "ready",
            Self::HeartbeatLate { .. } => "heartbeat_late",
            Self::AiJoined => "ai_joined",
            Self::AiLeft => "ai_left",
            Self::MediaChanged { .. } => "media_changed",
            Self::OverMemoryLimit { .. } => "over_memory_limit",
            Self::OverGpuMemoryLimit { .. } => "over_gpu_memory_limit",
            Self::Stalled { .. } => "stalled",
            Self::StopAsked { .. } => "stop_asked",
            Self::Signalled { .. } => "signalled",
            Self::Exited { .. } => "exited",
            Self::RestartScheduled { .. } => "restart_scheduled",
            Self::Parked { .. } => "parked",
            Self::WarmAssigned { .. } => "warm_assigned",
            Self::WarmTook { .. } => "warm_took",
            Self::WarmDiscarded { .. } => "warm_discarded",
            Self::Ended { .. } => "ended",
        }
    }
}
