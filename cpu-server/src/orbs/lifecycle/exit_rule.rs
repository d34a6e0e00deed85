//! The restart rule: what an orb's exit leads to (end, restart, failure), and
//! how an exit is classified from what the supervisor and the orb said.
//!
//! Pure: the lifecycle passes what it knows (the stop it was carrying out, the
//! exit status, the orb's last word, who is in the room) and carries out the answer.

use super::cause::{ExitCause, StopReason};
use crate::orbs::record::ExitRecord;

/// What to do after a room's current orb process exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterExit {
    /// The orb's life is over: forget the room's orb. `tell_room` is the cause
    /// to tell the humans still there (none when the room is empty or the
    /// server is stopping); `respawn` when a stop for emptiness found
    /// somebody back in the room.
    Remove {
        /// Cause for the room's `ai_status` `ended`, when humans are there to read it.
        tell_room: Option<ExitCause>,
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

/// The rule (the AI must not walk out of a live call):
/// - a stop that ends the orb's life (operator, server, emptiness), or the
///   server draining, ends the orb;
/// - with nobody in the room any end is final;
/// - an orb's own `idle_timeout` with humans present is not an end: restart;
/// - any other normal end (`end_session`, lifetime) is final, and the humans
///   are told why;
/// - anything else is a failure.
pub fn after_exit(ending: Option<StopReason>, exit: &ExitRecord, humans: usize, draining: bool) -> AfterExit {
    let tell = |cause| (humans > 0 && !draining).then_some(cause);
    if let Some(reason) = ending.filter(|r| r.ends_life()) {
        let emptied = reason.for_emptiness();
        return AfterExit::Remove {
            tell_room: if emptied { None } else { tell(reason.cause()) },
            respawn: emptied && humans > 0 && !draining,
        };
    }
    if draining || humans == 0 {
        return AfterExit::Remove {
            tell_room: None,
            respawn: false,
        };
    }
    if exit.normal && exit.cause == ExitCause::IdleTimeout {
        return AfterExit::RestartNotFailure;
    }
    if exit.normal {
        return AfterExit::Remove {
            tell_room: tell(exit.cause),
            respawn: false,
        };
    }
    AfterExit::Failure
}

/// How an exit counts: the stop the supervisor was carrying out decides
/// first; else the orb's announced reason with a clean status; else a crash.
pub fn classify(
    code: Option<i32>,
    signal: Option<i32>,
    ending: Option<StopReason>,
    announced: Option<&str>,
) -> ExitRecord {
    let success = code == Some(0);
    let (cause, reason, normal) = match (ending, announced) {
        (Some(stop), _) => (stop.cause(), stop.label().to_owned(), stop.normal()),
        (None, Some(said)) if success => (ExitCause::from_orb(said), said.to_owned(), true),
        (None, None) if success => (ExitCause::Exited, "exited".to_owned(), true),
        (None, Some(said)) => (ExitCause::Crash, format!("crash after {said}"), false),
        (None, None) => (ExitCause::Crash, "crash".to_owned(), false),
    };
    ExitRecord {
        code,
        signal,
        cause,
        reason,
        normal,
    }
}

/// The record of a start that produced no process.
pub fn spawn_failed(error: &str) -> ExitRecord {
    ExitRecord {
        code: None,
        signal: None,
        cause: ExitCause::SpawnFailed,
        reason: format!("spawn_failed: {error}"),
        normal: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(reason: &str, normal: bool) -> ExitRecord {
        classify(Some(if normal { 0 } else { 1 }), None, None, Some(reason))
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
        for (reason, cause) in [
            ("session_complete", ExitCause::SessionComplete),
            ("timeout", ExitCause::MaxLifetime),
        ] {
            assert_eq!(
                after_exit(None, &exit(reason, true), 1, false),
                AfterExit::Remove {
                    tell_room: Some(cause),
                    respawn: false
                }
            );
        }
        assert_eq!(
            after_exit(
                Some(StopReason::MaxLifetime),
                &classify(Some(0), None, Some(StopReason::MaxLifetime), None),
                1,
                false
            ),
            AfterExit::Remove {
                tell_room: Some(ExitCause::MaxLifetime),
                respawn: false
            }
        );
        assert_eq!(
            after_exit(
                Some(StopReason::ManualTermination),
                &exit("manual_termination", true),
                0,
                false
            ),
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
            after_exit(
                Some(StopReason::RoomEmptyTimeout),
                &exit("room_empty_timeout", true),
                1,
                false
            ),
            AfterExit::Remove {
                tell_room: None,
                respawn: true
            }
        );
        assert_eq!(
            after_exit(
                Some(StopReason::SystemShutdown),
                &exit("system_shutdown", true),
                3,
                true
            ),
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
            after_exit(
                Some(StopReason::Unresponsive),
                &classify(None, Some(9), Some(StopReason::Unresponsive), None),
                1,
                false
            ),
            AfterExit::Failure
        );
    }

    /// Rule: the stop being carried out decides how the exit counts, whatever the status.
    #[test]
    fn the_stop_decides_whatever_the_status() {
        let exit = classify(None, Some(9), Some(StopReason::ManualTermination), None);
        assert!(exit.normal);
        assert_eq!((exit.signal, exit.cause), (Some(9), ExitCause::ManualTermination));
        let exit = classify(None, Some(9), Some(StopReason::Unresponsive), Some("session_complete"));
        assert!(!exit.normal, "a detected failure stays a failure");
        assert_eq!(exit.cause, ExitCause::Unresponsive);
    }

    /// Rule: unasked, a clean exit takes the orb's word; anything else is a crash.
    #[test]
    fn unasked_exits_take_the_orbs_word_or_crash() {
        let exit = classify(Some(0), None, None, Some("session_complete"));
        assert!(exit.normal);
        assert_eq!(exit.cause, ExitCause::SessionComplete);
        assert_eq!(classify(Some(0), None, None, None).cause, ExitCause::Exited);
        let crash = classify(Some(1), None, None, Some("session_complete"));
        assert!(!crash.normal);
        assert_eq!(
            (crash.cause, crash.reason.as_str()),
            (ExitCause::Crash, "crash after session_complete")
        );
        assert_eq!(classify(Some(0), None, None, Some("x-1f3a9c")).cause, ExitCause::Other);
        assert_eq!(spawn_failed("no such file").cause, ExitCause::SpawnFailed);
    }
}
