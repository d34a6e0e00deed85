//! The seam between the room registry and the OrbManager.
//!
//! The registry is the source of truth for "who is here"; it tells the
//! OrbManager what happened through a bounded channel of [`RoomEvent`]s.
//! Direction rule (no deadlock): the registry may `send().await` on this
//! channel; the OrbManager never awaits the registry — it talks back only
//! through [`RoomNotifier`], which never blocks (`try_send`).

use shared::room::RoomMessage;
use tokio::sync::mpsc;

/// Capacity of the registry → OrbManager event channel.
pub const ROOM_EVENT_CAPACITY: usize = 4096;

/// Something that happened in a room, as the OrbManager needs to know it.
#[derive(Debug, Clone, PartialEq)]
pub enum RoomEvent {
    /// A human joined (after any replaced socket was removed).
    HumanJoined {
        /// The room.
        room: String,
        /// Who.
        user_id: String,
        /// `coach`, `client`, …
        user_role: String,
        /// Humans in the room now, this one included.
        humans: usize,
    },
    /// A human handed over by a previous program image, back in its room (an
    /// upgrade): a join for the spawn rule, but the room's orb, if it was handed
    /// over too, already knows them.
    HumanRestored {
        /// The room.
        room: String,
        /// Who.
        user_id: String,
        /// `coach`, `client`, …
        user_role: String,
    },
    /// A human left (exactly once per participant).
    HumanLeft {
        /// The room.
        room: String,
        /// Who.
        user_id: String,
        /// Humans remaining.
        humans: usize,
    },
    /// The AI participant joined the room.
    AiJoined {
        /// The room.
        room: String,
        /// Its `userId` (`ai-orb-<session>`).
        user_id: String,
    },
    /// The AI participant left (leave, close or replaced).
    AiLeft {
        /// The room.
        room: String,
        /// Its `userId`.
        user_id: String,
    },
    /// Any frame from the room's AI participant (counts as a heartbeat).
    AiActivity {
        /// The room.
        room: String,
    },
    /// The AI announced it is shutting down (`ai-orb-shutdown`).
    AiShutdown {
        /// The room.
        room: String,
        /// Its reason, e.g. `session_complete`.
        reason: Option<String>,
    },
}

/// Sending side held by the registry.
pub type RoomEventSender = mpsc::Sender<RoomEvent>;
/// Receiving side held by the OrbManager.
pub type RoomEventReceiver = mpsc::Receiver<RoomEvent>;

/// A bounded event channel.
pub fn room_event_channel() -> (RoomEventSender, RoomEventReceiver) {
    mpsc::channel(ROOM_EVENT_CAPACITY)
}

/// How the OrbManager tells a room something (e.g. `ai_status` `queued`).
/// Implemented by the registry's handle; must never block.
pub trait RoomNotifier: Send + Sync + 'static {
    /// Sends `message` to every participant of `room`; dropped if the room is gone
    /// or the registry is busy. False when it was dropped before reaching the registry.
    fn notify_room(&self, room: &str, message: RoomMessage) -> bool;

    /// Closes the room's AI socket: the orb process behind it is over for the manager
    /// (a remote orb may still run, cut off from its cluster). Never blocks.
    fn close_ai(&self, _room: &str) {}
}
