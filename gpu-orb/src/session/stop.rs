//! Ending a session: why, with which exit code, and the bounded drain.
//!
//! The bound holds for the whole process, not only for the drain: once the
//! session has ended, the runtime waits at most [`RUNTIME_SHUTDOWN`] for its
//! blocking threads (a DNS lookup of the brain or the room link can hang
//! there for good), and a watchdog thread armed when the shutdown starts ends
//! the process [`EXIT_MARGIN`] after the bound whatever the runtime is doing
//! (a blocking call on the runtime thread itself, such as a log write into a
//! full pipe).

use std::time::Duration;

use serde_json::Map;
use shared::ipc::{OrbError, OrbShutdown, OrbToManager};
use shared::room::{OrbShutdownFrame, RoomMessage};
use shared::signals::Signals;

use super::Session;
use crate::brain::Brain;
use crate::exit;
use crate::room_link::RoomCommand;
use crate::settings::Settings;

/// How long `main` lets the runtime wait for blocking work once the session ended.
pub const RUNTIME_SHUTDOWN: Duration = Duration::from_millis(250);

/// How long after its bound a shutdown may still run before the watchdog ends the process.
pub const EXIT_MARGIN: Duration = Duration::from_secs(1);

/// A decision to end the session.
#[derive(Debug, Clone, PartialEq)]
pub struct Stop {
    /// `reason` of `ai-orb-shutdown` and `orb_shutdown`.
    pub reason: String,
    /// Process exit code.
    pub code: i32,
    /// How long the drain may take before the orb exits anyway.
    pub bound: Duration,
    /// Whether the room can still be told (false once it is unreachable).
    pub tell_room: bool,
    /// Error text for `orb_error` (critical) before the shutdown notice.
    pub error: Option<String>,
}

impl Stop {
    /// A normal end (exit 0) within the configured shutdown timeout.
    pub fn normal(reason: &str, settings: &Settings) -> Self {
        Self::requested(reason.to_owned(), settings.shutdown_timeout)
    }

    /// A normal end (exit 0) within `bound` (from `shutdown_graceful`).
    pub fn requested(reason: String, bound: Duration) -> Self {
        Self {
            reason,
            code: exit::OK,
            bound,
            tell_room: true,
            error: None,
        }
    }

    /// The room stayed unreachable: exit [`exit::ROOM_UNREACHABLE`].
    pub fn room_lost(why: &str) -> Self {
        Self {
            reason: String::from("connection_lost"),
            code: exit::ROOM_UNREACHABLE,
            bound: Duration::from_secs(2),
            tell_room: false,
            error: Some(why.to_owned()),
        }
    }

    /// The server refused the orb: exit [`exit::REFUSED`].
    pub fn refused(why: &str) -> Self {
        Self {
            reason: String::from("refused"),
            code: exit::REFUSED,
            bound: Duration::from_secs(2),
            tell_room: false,
            error: Some(format!("refused by the room server: {why}")),
        }
    }
}

impl<B: Brain> Session<B> {
    /// Tells the room and the manager, closes both links, all within
    /// `stop.bound`; a second signal meanwhile exits at once.
    pub(super) async fn finish(mut self, stop: Stop, signals: &mut Signals) -> i32 {
        if stop.code == exit::OK {
            tracing::info!(reason = %stop.reason, bound_ms = stop.bound.as_millis(), "shutting down");
        } else {
            tracing::error!(reason = %stop.reason, code = stop.code, error = stop.error.as_deref().unwrap_or(""), "exiting");
        }
        arm_exit_watchdog(stop.bound + EXIT_MARGIN, stop.code);
        self.brain.abort_all();
        let begun = tokio::time::Instant::now();
        // The transcript (and its summary) first, within half the bound: the manager keeps it.
        self.send_summary(stop.bound / 2).await;
        let left = stop.bound.saturating_sub(begun.elapsed());
        let drain = async {
            if stop.tell_room {
                let frame = RoomMessage::AiOrbShutdown(OrbShutdownFrame {
                    session_id: Some(self.settings.session.clone()),
                    reason: Some(stop.reason.clone()),
                    extra: Map::new(),
                });
                self.send_room(RoomCommand::Send(frame));
            }
            self.send_room(RoomCommand::Close);
            if let Some(ipc) = self.ipc.take() {
                if let Some(error) = &stop.error {
                    let _ = ipc
                        .send(OrbToManager::OrbError(OrbError {
                            error: error.clone(),
                            critical: true,
                            extra: Map::new(),
                        }))
                        .await;
                }
                let _ = ipc
                    .send(OrbToManager::OrbShutdown(OrbShutdown {
                        reason: stop.reason.clone(),
                        extra: Map::new(),
                    }))
                    .await;
            }
            let _ = (&mut self.room_task).await;
            if let Some(task) = self.ipc_task.take() {
                let _ = task.await;
            }
        };
        tokio::select! {
            done = tokio::time::timeout(left, drain) => {
                if done.is_err() {
                    tracing::warn!(bound_ms = stop.bound.as_millis(), "shutdown did not finish in time; exiting anyway");
                }
                stop.code
            }
            name = signals.recv() => {
                tracing::warn!(signal = name, "second signal: exiting now");
                exit::FORCED
            }
        }
    }
}

/// Ends the process with `code` after `after`, from a thread of its own, in
/// case the runtime never gets there. Normally `main` exits first.
fn arm_exit_watchdog(after: Duration, code: i32) {
    let spawned = std::thread::Builder::new()
        .name(String::from("exit-watchdog"))
        .spawn(move || {
            std::thread::sleep(after);
            // Nothing is written here: a stuck log write may be why we are here.
            std::process::exit(code);
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot start the exit watchdog; the shutdown bound relies on the runtime alone");
    }
}
