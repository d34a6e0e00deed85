//! What an orb's exit leads to, and the closed set of causes it is counted under.
//!
//! Pure: the manager passes what it knows (the stop it asked for, the exit,
//! who is in the room) and carries out the answer.

use super::record::ExitRecord;

/// What to do after a room's current orb process exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterExit {
    /// The orb's life is over: forget the room's orb. `tell_room` is the cause
    /// to tell the humans still there (none when the room is empty or the
    /// server is stopping); `respawn` when a stop for emptiness found
    /// somebody back in the room.
    Remove {
        /// Cause for the room's `ai_status` `ended`, when humans are there to read it.
        tell_room: Option<&'static str>,
        /// Start a fresh orb at once.
        respawn: bool,
    },
    /// The orb ended itself for idleness while humans are present (an orb
    /// with its own idle rule): start it again after a short pause, without
    /// counting a failure toward the crash loop.
    RestartNotFailure,
    /// An unexpected end with humans present: the restart policy decides.
    Failure,
}

/// The rule (audit item 1: the AI must not walk out of a live call):
/// - a stop the manager asked for, or the server draining, ends the orb;
/// - with nobody in the room any end is final;
/// - an orb's own `idle_timeout` with humans present is not an end: restart;
/// - any other normal end (`end_session`, lifetime, an operator's kill) is
///   final, and the humans are told why;
/// - anything else is a failure.
pub fn after_exit(stop_requested: Option<&str>, exit: &ExitRecord, humans: usize, draining: bool) -> AfterExit {
    let tell = |cause| (humans > 0 && !draining).then_some(cause);
    if let Some(reason) = stop_requested {
        let emptied = matches!(reason, "room_empty_timeout" | "idle_timeout");
        return AfterExit::Remove {
            tell_room: if emptied { None } else { tell(cause_label(reason)) },
            respawn: emptied && humans > 0 && !draining,
        };
    }
    if draining || humans == 0 {
        return AfterExit::Remove {
            tell_room: None,
            respawn: false,
        };
    }
    if exit.normal && cause_label(&exit.reason) == "idle_timeout" {
        return AfterExit::RestartNotFailure;
    }
    if exit.normal {
        return AfterExit::Remove {
            tell_room: tell(cause_label(&exit.reason)),
            respawn: false,
        };
    }
    AfterExit::Failure
}

/// Every cause an orb's end is counted, labelled and told under. Reasons
/// come partly from the orb (`orb_shutdown`, `ai-orb-shutdown`): mapping them
/// onto this closed set keeps metric labels bounded whatever an orb sends.
pub const CAUSES: &[&str] = &[
    "crash",
    "exited",
    "unresponsive",
    "ready_timeout",
    "max_lifetime",
    "memory_limit",
    "manual_termination",
    "system_shutdown",
    "room_empty_timeout",
    "idle_timeout",
    "orb_error",
    "spawn_failed",
    "session_complete",
    "signal",
    "manager_gone",
    "connection_lost",
    "refused",
    "other",
];

/// The cause in [`CAUSES`] that `reason` stands for; `other` for anything unknown.
pub fn cause_label(reason: &str) -> &'static str {
    // The orb's own name for its lifetime end (as the old orbs send it).
    if reason == "timeout" {
        return "max_lifetime";
    }
    if reason.starts_with("spawn_failed") {
        return "spawn_failed";
    }
    if reason.starts_with("crash") {
        return "crash";
    }
    CAUSES.iter().copied().find(|c| *c == reason).unwrap_or("other")
}

/// What the room is told when its AI leaves for good because of `cause`.
pub fn ended_message(cause: &str) -> &'static str {
    match cause {
        "session_complete" => "The AI session was ended.",
        "max_lifetime" => "The AI session reached its time limit.",
        "manual_termination" => "An operator stopped the AI.",
        _ => "The AI left the room.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(reason: &str, normal: bool) -> ExitRecord {
        ExitRecord {
            code: Some(if normal { 0 } else { 1 }),
            signal: None,
            reason: reason.to_owned(),
            normal,
        }
    }

    /// Rule: an orb's own idle end while humans are present is restarted, not counted as a failure.
    #[test]
    fn idle_end_with_humans_present_restarts() {
        assert_eq!(
            after_exit(None, &exit("idle_timeout", true), 2, false),
            AfterExit::RestartNotFailure
        );
        assert_eq!(
            after_exit(None, &exit("idle_timeout", true), 0, false),
            AfterExit::Remove {
                tell_room: None,
                respawn: false
            }
        );
    }

    /// Rule: end_session and the lifetime stay final, and the humans are told why.
    #[test]
    fn final_ends_tell_the_room() {
        for (reason, cause) in [("session_complete", "session_complete"), ("timeout", "max_lifetime")] {
            assert_eq!(
                after_exit(None, &exit(reason, true), 1, false),
                AfterExit::Remove {
                    tell_room: Some(cause),
                    respawn: false
                }
            );
        }
        assert_eq!(
            after_exit(Some("max_lifetime"), &exit("max_lifetime", true), 1, false),
            AfterExit::Remove {
                tell_room: Some("max_lifetime"),
                respawn: false
            }
        );
        assert_eq!(
            after_exit(Some("manual_termination"), &exit("manual_termination", true), 0, false),
            AfterExit::Remove {
                tell_room: None,
                respawn: false
            },
            "nobody to tell"
        );
    }

    /// Rule: a stop for emptiness that finds somebody back starts a fresh orb; draining never does.
    #[test]
    fn stop_for_emptiness_with_somebody_back_respawns() {
        assert_eq!(
            after_exit(Some("room_empty_timeout"), &exit("room_empty_timeout", true), 1, false),
            AfterExit::Remove {
                tell_room: None,
                respawn: true
            }
        );
        assert_eq!(
            after_exit(Some("system_shutdown"), &exit("system_shutdown", true), 3, true),
            AfterExit::Remove {
                tell_room: None,
                respawn: false
            }
        );
    }

    #[test]
    fn crashes_with_humans_are_failures() {
        assert_eq!(after_exit(None, &exit("crash", false), 1, false), AfterExit::Failure);
        assert_eq!(
            after_exit(None, &exit("unresponsive", false), 1, false),
            AfterExit::Failure
        );
    }

    /// Rule: labels are a closed set whatever the orb says.
    #[test]
    fn causes_are_a_closed_set() {
        assert_eq!(cause_label("crash after session_complete"), "crash");
        assert_eq!(cause_label("spawn_failed: cannot start"), "spawn_failed");
        assert_eq!(cause_label("x-1f3a9c"), "other");
        assert_eq!(cause_label("timeout"), "max_lifetime");
        for cause in CAUSES {
            assert_eq!(cause_label(cause), *cause);
        }
    }
}
