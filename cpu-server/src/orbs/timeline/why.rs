//! One line saying why a room's last orb ended or is not running, from its
//! timeline (pure).

use super::Entry;
use crate::orbs::lifecycle::stall_rule::Stall;
use crate::orbs::lifecycle::{ExitCause, Note};
use crate::orbs::record::OrbState;

/// Why the room's orb is where it is. `state`: the orb's state now (`None`: the room has no orb).
pub fn explain(entries: &[Entry], state: Option<OrbState>) -> String {
    let Some(exit_at) = entries
        .iter()
        .rposition(|e| matches!(e.note, Note::Exited { .. } | Note::SpawnFailed { .. }))
    else {
        return match state {
            Some(state) => format!("{}; it has not ended yet", now_line(entries, state)),
            None => "no orb has run in this room yet".to_owned(),
        };
    };
    let mut line = end_line(entries, exit_at);
    line.push_str(&after_line(entries, exit_at));
    if let Some(state) = state
        && matches!(state, OrbState::Ready | OrbState::Spawning)
        && entries[exit_at..]
            .iter()
            .any(|e| matches!(e.note, Note::Started { .. }))
    {
        line.push_str(&format!("; now {}", state_word(state)));
    }
    line
}

fn now_line(entries: &[Entry], state: OrbState) -> String {
    let ready = entries.iter().rev().find_map(|e| match e.note {
        Note::Ready { after_ms, .. } => Some((e.at_ms, after_ms)),
        _ => None,
    });
    match (state, ready) {
        (OrbState::Ready, Some((at, after))) => format!("running since {} (ready after {after} ms)", clock(at)),
        (state, _) => state_word(state).to_owned(),
    }
}

fn state_word(state: OrbState) -> &'static str {
    match state {
        OrbState::Queued => "queued for a slot (MAX_CONCURRENT_ORBS)",
        OrbState::Spawning => "starting",
        OrbState::Ready => "running",
        OrbState::Unresponsive => "being killed for silence",
        OrbState::Stopping => "stopping",
        OrbState::Restarting => "waiting to restart",
        OrbState::Parked => "parked (crash loop)",
    }
}

/// How the process ended at `entries[at]`.
fn end_line(entries: &[Entry], at: usize) -> String {
    let when = clock(entries[at].at_ms);
    let (cause, code, signal, by_us) = match &entries[at].note {
        Note::SpawnFailed { error } => return format!("could not start at {when}: {error}"),
        Note::Exited {
            cause,
            code,
            signal,
            by_us,
            ..
        } => (*cause, *code, *signal, *by_us),
        _ => return format!("ended at {when}"),
    };
    let asked = entries[..at]
        .iter()
        .rev()
        .take_while(|e| !matches!(e.note, Note::Started { .. }))
        .find_map(|e| match &e.note {
            Note::StopAsked {
                reason,
                origin,
                silent_ms,
            } => Some((*reason, origin.clone(), *silent_ms)),
            _ => None,
        });
    let how = match signal {
        Some(9) => " (SIGKILL)",
        Some(15) => " (SIGTERM)",
        _ => "",
    };
    match (cause, asked) {
        (ExitCause::ManualTermination, Some((_, origin, _))) => match origin {
            Some(origin) => format!("stopped by an operator ({origin}) at {when}{how}"),
            None => format!("stopped by an operator at {when}{how}"),
        },
        (ExitCause::Unresponsive, Some((_, _, silent))) => format!(
            "killed{how} at {when}: unresponsive (no heartbeat for {})",
            silent.map_or("UNRESPONSIVE_TIMEOUT".to_owned(), seconds)
        ),
        (ExitCause::ReadyTimeout, _) => format!("killed{how} at {when}: no orb_ready within ORB_READY_TIMEOUT"),
        (ExitCause::MemoryLimit, _) => {
            let over = entries[..at].iter().rev().find_map(|e| match e.note {
                Note::OverMemoryLimit { rss_bytes, limit_bytes } => Some(("memory", rss_bytes, limit_bytes)),
                Note::OverGpuMemoryLimit { gpu_bytes, limit_bytes } => Some(("GPU memory", gpu_bytes, limit_bytes)),
                _ => None,
            });
            match over {
                Some((what, used, limit)) => format!(
                    "killed{how} at {when}: {what} limit {} MB exceeded ({} MB)",
                    limit >> 20,
                    used >> 20
                ),
                None => format!("killed{how} at {when}: memory limit exceeded"),
            }
        }
        (ExitCause::VoiceStalled | ExitCause::MediaStalled, _) => {
            let stall = entries[..at].iter().rev().find_map(|e| match &e.note {
                Note::Stalled { stall } => Some(stall),
                _ => None,
            });
            format!("replaced{how} at {when}: {}", stall_words(cause, stall))
        }
        (ExitCause::MaxLifetime, _) => format!("stopped at {when}: MAX_ORB_LIFETIME reached"),
        (ExitCause::IdleTimeout, Some(_)) => format!("stopped at {when}: nobody in the room for IDLE_TIMEOUT"),
        (ExitCause::IdleTimeout, None) => format!("ended itself for idleness at {when}"),
        (ExitCause::RoomEmptyTimeout, _) => format!("stopped at {when}: the room was empty for ROOM_EMPTY_GRACE"),
        (ExitCause::SystemShutdown, _) => format!("stopped at {when}: the server was shutting down"),
        (ExitCause::OrbError, _) => format!("stopped at {when} after a critical error it reported"),
        (ExitCause::SessionComplete, _) => format!("ended the session itself (end_session) at {when}"),
        (ExitCause::Crash, _) if !by_us && signal.is_some() => {
            let number = signal.unwrap_or_default();
            format!(
                "killed by {} (signal {number}) at {when}, not by us",
                signal_name(number)
            )
        }
        (ExitCause::Crash, _) => match code {
            Some(code) => format!("exited with code {code} at {when}, unasked (a crash)"),
            None => format!("crashed at {when}"),
        },
        (cause, _) => format!("exited ({cause}) at {when}"),
    }
}

/// What followed the end at `entries[at]`.
fn after_line(entries: &[Entry], at: usize) -> String {
    let end_ms = entries[at].at_ms;
    let mut scheduled = None;
    for entry in &entries[at + 1..] {
        match &entry.note {
            Note::Started { .. } if scheduled.is_some() => {
                return format!("; restarted after {}", seconds(entry.at_ms.saturating_sub(end_ms)));
            }
            Note::RestartScheduled { delay_ms, .. } => scheduled = Some(*delay_ms),
            Note::Parked { for_ms } => {
                return format!(
                    "; parked (crash loop) for {} or until an operator resets it",
                    seconds(*for_ms)
                );
            }
            Note::Ended { told_room } => {
                return match told_room {
                    Some(cause) => format!("; not restarted (the room was told: {cause})"),
                    None => "; not restarted".to_owned(),
                };
            }
            _ => {}
        }
    }
    match scheduled {
        Some(delay) => format!("; restart due after {}", seconds(delay)),
        None => String::new(),
    }
}

/// What the stall was, in words.
fn stall_words(cause: ExitCause, stall: Option<&Stall>) -> String {
    match stall {
        Some(Stall::Voice { pending_ms }) => format!(
            "voice stalled (an utterance had no answer for {}, ORB_MEDIA_STALL_TIMEOUT)",
            seconds(*pending_ms)
        ),
        Some(Stall::Media {
            peer,
            silent_ms,
            any_packet,
        }) => format!(
            "media stalled (no packet from {peer} for {}{}, ORB_MEDIA_STALL_TIMEOUT)",
            seconds(*silent_ms),
            if *any_packet { "" } else { " since it connected" }
        ),
        None if cause == ExitCause::VoiceStalled => "voice stalled (ORB_MEDIA_STALL_TIMEOUT)".to_owned(),
        None => "media stalled (ORB_MEDIA_STALL_TIMEOUT)".to_owned(),
    }
}

fn signal_name(number: i32) -> &'static str {
    match number {
        9 => "SIGKILL",
        15 => "SIGTERM",
        6 => "SIGABRT",
        11 => "SIGSEGV",
        2 => "SIGINT",
        1 => "SIGHUP",
        _ => "a signal",
    }
}

/// `1.2 s`.
fn seconds(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

/// `10:42:03 UTC`.
fn clock(at_ms: u64) -> String {
    let secs = (at_ms / 1000) % 86_400;
    format!("{:02}:{:02}:{:02} UTC", secs / 3600, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orbs::lifecycle::StopReason;

    fn at(at_ms: u64, note: Note) -> Entry {
        Entry { at_ms, note }
    }

    fn exited(cause: ExitCause, code: Option<i32>, signal: Option<i32>, by_us: bool) -> Note {
        Note::Exited {
            generation: 1,
            code,
            signal,
            cause,
            reason: cause.label().to_owned(),
            by_us,
        }
    }

    const T: u64 = 38_523_000; // 10:42:03 UTC

    /// Rule: a kill we did not send is named as such, with what followed.
    #[test]
    fn a_foreign_sigkill_then_a_restart() {
        let entries = [
            at(
                T - 5000,
                Note::Started {
                    generation: 1,
                    pid: Some(7),
                },
            ),
            at(T, exited(ExitCause::Crash, None, Some(9), false)),
            at(
                T,
                Note::RestartScheduled {
                    delay_ms: 700,
                    counted: true,
                },
            ),
            at(
                T + 1200,
                Note::Started {
                    generation: 2,
                    pid: Some(8),
                },
            ),
        ];
        assert_eq!(
            explain(&entries, Some(OrbState::Spawning)),
            "killed by SIGKILL (signal 9) at 10:42:03 UTC, not by us; restarted after 1.2 s; now starting"
        );
    }

    /// Rule: an operator's stop names the endpoint; a memory kill names the figures.
    #[test]
    fn operator_and_memory_ends() {
        let asked = Note::StopAsked {
            reason: StopReason::ManualTermination,
            origin: Some("DELETE /api/orbs/{room}".into()),
            silent_ms: None,
        };
        let entries = [
            at(T - 1, asked),
            at(T, exited(ExitCause::ManualTermination, Some(0), None, true)),
            at(
                T,
                Note::Ended {
                    told_room: Some(ExitCause::ManualTermination),
                },
            ),
        ];
        assert_eq!(
            explain(&entries, None),
            "stopped by an operator (DELETE /api/orbs/{room}) at 10:42:03 UTC; not restarted (the room was told: manual_termination)"
        );
        let over = Note::OverMemoryLimit {
            rss_bytes: 530 << 20,
            limit_bytes: 512 << 20,
        };
        let entries = [
            at(T - 1, over),
            at(T, exited(ExitCause::MemoryLimit, None, Some(9), true)),
        ];
        assert_eq!(
            explain(&entries, Some(OrbState::Restarting)),
            "killed (SIGKILL) at 10:42:03 UTC: memory limit 512 MB exceeded (530 MB)"
        );
    }

    /// Rule: a stall names what stalled and for how long, then the restart.
    #[test]
    fn a_stall_then_a_restart() {
        let stalled = Note::Stalled {
            stall: Stall::Media {
                peer: "coach-1".into(),
                silent_ms: 10_400,
                any_packet: false,
            },
        };
        let entries = [
            at(T - 600, stalled),
            at(T, exited(ExitCause::MediaStalled, Some(0), None, true)),
            at(
                T,
                Note::RestartScheduled {
                    delay_ms: 600,
                    counted: true,
                },
            ),
        ];
        assert_eq!(
            explain(&entries, Some(OrbState::Restarting)),
            "replaced at 10:42:03 UTC: media stalled (no packet from coach-1 for 10.4 s since it connected, \
             ORB_MEDIA_STALL_TIMEOUT); restart due after 0.6 s"
        );
        let voice = [
            at(
                T - 1,
                Note::Stalled {
                    stall: Stall::Voice { pending_ms: 12_000 },
                },
            ),
            at(T, exited(ExitCause::VoiceStalled, None, Some(15), true)),
        ];
        assert_eq!(
            explain(&voice, None),
            "replaced (SIGTERM) at 10:42:03 UTC: voice stalled (an utterance had no answer for 12.0 s, ORB_MEDIA_STALL_TIMEOUT)"
        );
    }

    /// Rule: with no end yet, the line says what the orb is doing.
    #[test]
    fn no_end_yet() {
        assert_eq!(explain(&[], None), "no orb has run in this room yet");
        let entries = [at(
            T,
            Note::Ready {
                generation: 1,
                after_ms: 80,
            },
        )];
        assert_eq!(
            explain(&entries, Some(OrbState::Ready)),
            "running since 10:42:03 UTC (ready after 80 ms); it has not ended yet"
        );
    }
}
