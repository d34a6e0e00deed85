//! The closed sets of why an orb is stopped ([`StopReason`]) and of what its
//! end is counted, labelled and told under ([`ExitCause`]).
//!
//! The API, the CLI, metric labels and logs all use these labels; nothing
//! compares reason strings. Reasons an orb sends about itself (its
//! `orb_shutdown`) are mapped onto [`ExitCause`] by [`ExitCause::from_orb`], so
//! metric labels stay bounded whatever an orb says.

use serde::Serialize;

/// Why the supervisor stops a running orb.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// An operator asked (API, CLI).
    ManualTermination,
    /// The server is stopping.
    SystemShutdown,
    /// The room stayed empty for `ROOM_EMPTY_GRACE`.
    RoomEmptyTimeout,
    /// The room stayed empty for `IDLE_TIMEOUT`.
    IdleTimeout,
    /// `MAX_ORB_LIFETIME` reached.
    MaxLifetime,
    /// Resident memory above `ORB_MEMORY_LIMIT_MB`.
    MemoryLimit,
    /// No heartbeat (IPC or WebSocket) for `UNRESPONSIVE_TIMEOUT`.
    Unresponsive,
    /// No `orb_ready` within `ORB_READY_TIMEOUT`.
    ReadyTimeout,
    /// The orb reported a critical error and asked to be restarted.
    OrbError,
    /// Its heartbeat showed an utterance left without an answer (or an error)
    /// for `ORB_MEDIA_STALL_TIMEOUT` (see `stall_rule`).
    VoiceStalled,
    /// Its heartbeat showed a connected media peer from which no packet came
    /// for `ORB_MEDIA_STALL_TIMEOUT` (see `stall_rule`).
    MediaStalled,
}

/// The first thing a stop does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstStep {
    /// `shutdown_graceful`, then SIGTERM, then SIGKILL (see `escalation`).
    Graceful,
    /// SIGKILL to the process group at once.
    KillNow,
}

impl StopReason {
    /// Every reason.
    pub const ALL: [StopReason; 11] = [
        Self::ManualTermination,
        Self::SystemShutdown,
        Self::RoomEmptyTimeout,
        Self::IdleTimeout,
        Self::MaxLifetime,
        Self::MemoryLimit,
        Self::Unresponsive,
        Self::ReadyTimeout,
        Self::OrbError,
        Self::VoiceStalled,
        Self::MediaStalled,
    ];

    /// The label (API, metrics, logs, the orb's `shutdown_graceful` reason).
    pub fn label(self) -> &'static str {
        self.cause().label()
    }

    /// The cause its exit is counted under.
    pub fn cause(self) -> ExitCause {
        match self {
            Self::ManualTermination => ExitCause::ManualTermination,
            Self::SystemShutdown => ExitCause::SystemShutdown,
            Self::RoomEmptyTimeout => ExitCause::RoomEmptyTimeout,
            Self::IdleTimeout => ExitCause::IdleTimeout,
            Self::MaxLifetime => ExitCause::MaxLifetime,
            Self::MemoryLimit => ExitCause::MemoryLimit,
            Self::Unresponsive => ExitCause::Unresponsive,
            Self::ReadyTimeout => ExitCause::ReadyTimeout,
            Self::OrbError => ExitCause::OrbError,
            Self::VoiceStalled => ExitCause::VoiceStalled,
            Self::MediaStalled => ExitCause::MediaStalled,
        }
    }

    /// A stop asked for from outside the orb's health (an operator, the
    /// server, the room's emptiness): once the process exits, the orb's life
    /// is over whatever the exit looked like.
    pub fn ends_life(self) -> bool {
        matches!(
            self,
            Self::ManualTermination | Self::SystemShutdown | Self::RoomEmptyTimeout | Self::IdleTimeout
        )
    }

    /// Whether the end counts as normal (not a failure of the orb).
    pub fn normal(self) -> bool {
        self.ends_life() || self == Self::MaxLifetime
    }

    /// A stop the room's emptiness asked for (a human coming back during it gets a fresh orb).
    pub fn for_emptiness(self) -> bool {
        matches!(self, Self::RoomEmptyTimeout | Self::IdleTimeout)
    }

    /// How the stop begins: a sick or oversized orb is not asked to stop. A
    /// stalled one still answers (its heartbeats arrive): it is asked, so that
    /// it can send its `session_summary` on the way out.
    pub fn first_step(self) -> FirstStep {
        match self {
            Self::MemoryLimit | Self::Unresponsive | Self::ReadyTimeout => FirstStep::KillNow,
            _ => FirstStep::Graceful,
        }
    }

    /// The reason sent to the orb in `shutdown_graceful`.
    pub fn told_to_orb(self) -> &'static str {
        match self {
            Self::OrbError => "restart",
            other => other.label(),
        }
    }

    /// The reason for `label`, when it is one.
    pub fn parse(label: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.label() == label)
    }
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// Every cause an orb's end is counted, labelled and told under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitCause {
    /// Exited unasked with a failure status or a signal.
    Crash,
    /// Exited unasked with status 0 and no reason.
    Exited,
    /// Killed for silence.
    Unresponsive,
    /// Killed for never becoming ready.
    ReadyTimeout,
    /// Its lifetime was over.
    MaxLifetime,
    /// Killed for memory.
    MemoryLimit,
    /// An operator stopped it.
    ManualTermination,
    /// The server stopped it while stopping.
    SystemShutdown,
    /// Stopped for an empty room.
    RoomEmptyTimeout,
    /// Stopped (or ended itself) for idleness.
    IdleTimeout,
    /// Stopped after a critical error it reported.
    OrbError,
    /// Stopped for an utterance left unanswered (`ORB_MEDIA_STALL_TIMEOUT`).
    VoiceStalled,
    /// Stopped for a connected media peer sending nothing (`ORB_MEDIA_STALL_TIMEOUT`).
    MediaStalled,
    /// Could not be started.
    SpawnFailed,
    /// The session was ended (`ai_control` `end_session`).
    SessionComplete,
    /// Ended by a signal it announced.
    Signal,
    /// Its supervisor disappeared.
    ManagerGone,
    /// It lost its connection to the server.
    ConnectionLost,
    /// The server refused it.
    Refused,
    /// Anything else an orb announced.
    Other,
}

impl ExitCause {
    /// Every cause.
    pub const ALL: [ExitCause; 20] = [
        Self::Crash,
        Self::Exited,
        Self::Unresponsive,
        Self::ReadyTimeout,
        Self::MaxLifetime,
        Self::MemoryLimit,
        Self::ManualTermination,
        Self::SystemShutdown,
        Self::RoomEmptyTimeout,
        Self::IdleTimeout,
        Self::OrbError,
        Self::VoiceStalled,
        Self::MediaStalled,
        Self::SpawnFailed,
        Self::SessionComplete,
        Self::Signal,
        Self::ManagerGone,
        Self::ConnectionLost,
        Self::Refused,
        Self::Other,
    ];

    /// The label (API, metrics, logs, the room's `ai_status` `ended` code).
    pub fn label(self) -> &'static str {
        match self {
            Self::Crash => "crash",
            Self::Exited => "exited",
            Self::Unresponsive => "unresponsive",
            Self::ReadyTimeout => "ready_timeout",
            Self::MaxLifetime => "max_lifetime",
            Self::MemoryLimit => "memory_limit",
            Self::ManualTermination => "manual_termination",
            Self::SystemShutdown => "system_shutdown",
            Self::RoomEmptyTimeout => "room_empty_timeout",
            Self::IdleTimeout => "idle_timeout",
            Self::OrbError => "orb_error",
            Self::VoiceStalled => "voice_stalled",
            Self::MediaStalled => "media_stalled",
            Self::SpawnFailed => "spawn_failed",
            Self::SessionComplete => "session_complete",
            Self::Signal => "signal",
            Self::ManagerGone => "manager_gone",
            Self::ConnectionLost => "connection_lost",
            Self::Refused => "refused",
            Self::Other => "other",
        }
    }

    /// The cause a reason the orb announced about itself stands for; `Other` for anything unknown.
    pub fn from_orb(reason: &str) -> Self {
        // The old orbs' name for their lifetime end.
        if reason == "timeout" {
            return Self::MaxLifetime;
        }
        Self::ALL
            .into_iter()
            .find(|c| c.label() == reason)
            .unwrap_or(Self::Other)
    }

    /// What the room is told when its AI leaves for good because of this.
    pub fn ended_message(self) -> &'static str {
        match self {
            Self::SessionComplete => "The AI session was ended.",
            Self::MaxLifetime => "The AI session reached its time limit.",
            Self::ManualTermination => "An operator stopped the AI.",
            _ => "The AI left the room.",
        }
    }
}

impl std::fmt::Display for ExitCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rule: labels are a closed set whatever the orb says, and every label parses back.
    #[test]
    fn causes_are_a_closed_set() {
        assert_eq!(ExitCause::from_orb("x-1f3a9c"), ExitCause::Other);
        assert_eq!(ExitCause::from_orb("timeout"), ExitCause::MaxLifetime);
        assert_eq!(ExitCause::from_orb("ai-orb-shutdown"), ExitCause::Other);
        for cause in ExitCause::ALL {
            assert_eq!(ExitCause::from_orb(cause.label()), cause);
        }
        let labels: std::collections::HashSet<_> = ExitCause::ALL.iter().map(|c| c.label()).collect();
        assert_eq!(labels.len(), ExitCause::ALL.len(), "labels are distinct");
    }

    /// Rule: a stop reason's label is its cause's label, and parses back.
    #[test]
    fn stop_reasons_round_trip() {
        for reason in StopReason::ALL {
            assert_eq!(StopReason::parse(reason.label()), Some(reason));
            assert_eq!(reason.cause().label(), reason.label());
        }
        assert_eq!(StopReason::parse("crash"), None);
    }

    /// Rule: a sick orb is killed at once; one asked to stop gets the graceful path.
    #[test]
    fn sick_orbs_are_killed_at_once() {
        for reason in [
            StopReason::MemoryLimit,
            StopReason::Unresponsive,
            StopReason::ReadyTimeout,
        ] {
            assert_eq!(reason.first_step(), FirstStep::KillNow, "{reason}");
            assert!(!reason.normal(), "{reason} is a failure");
        }
        assert_eq!(StopReason::ManualTermination.first_step(), FirstStep::Graceful);
        assert!(StopReason::MaxLifetime.normal() && !StopReason::MaxLifetime.ends_life());
        assert_eq!(StopReason::OrbError.told_to_orb(), "restart");
    }

    /// Rule: a stalled orb is asked to stop (it still answers) and its end is a failure (restart).
    #[test]
    fn a_stall_is_a_graceful_failure() {
        for reason in [StopReason::VoiceStalled, StopReason::MediaStalled] {
            assert_eq!(reason.first_step(), FirstStep::Graceful, "{reason}");
            assert!(!reason.normal() && !reason.ends_life(), "{reason} is a failure");
        }
        assert_eq!(StopReason::VoiceStalled.label(), "voice_stalled");
        assert_eq!(StopReason::MediaStalled.told_to_orb(), "media_stalled");
    }
}
