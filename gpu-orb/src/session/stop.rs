//! Ending a session: why, with which exit code, and the bounded drain.

use std::time::Duration;

use serde_json::Map;
use shared::ipc::{OrbError, OrbShutdown, OrbToManager};
use shared::room::{OrbShutdownFrame, RoomMessage};

use super::Session;
use crate::brain::Brain;
use crate::exit;
use crate::room_link::RoomCommand;
use crate::settings::Settings;
use crate::signals::Signals;

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
        self.brain.abort_all();
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
            done = tokio::time::timeout(stop.bound, drain) => {
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
