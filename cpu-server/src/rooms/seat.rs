//! A warm orb's seat: the room socket a warm orb opens before it has a room
//! (`GET /orb-seat`, docs/protocol.md §3.3), and what the OrbManager sends it
//! when it gives that orb a room.
//!
//! The manager keeps the sending half with the orb's handle; the socket's
//! [`Connection`](super::connection::Connection) waits on the receiving half.
//! Once given its room, the socket accepts the orb's own `join`, into that room
//! and as that session's AI only: the orb joins with one frame on a socket that
//! is already open, instead of a connection and an upgrade. An orb that hangs
//! never sends it, so a hung warm orb is never seen in a room.

use shared::room::orb_user_id;
use tokio::sync::oneshot;

/// Where a seated socket goes: its room and the session of the orb.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seat {
    /// The room the orb was given.
    pub room: String,
    /// Its session id (the AI's `userId` is `ai-orb-<session>`).
    pub session: String,
}

impl Seat {
    /// The only `userId` the socket may join with: the session's AI (`ai-orb-<session>`).
    pub fn user_id(&self) -> String {
        orb_user_id(&self.session)
    }
}

/// The manager's half: sends the seat at the assignment.
pub type SeatSender = oneshot::Sender<Seat>;
/// The connection's half.
pub type SeatReceiver = oneshot::Receiver<Seat>;

/// A seat channel.
pub fn seat_channel() -> (SeatSender, SeatReceiver) {
    oneshot::channel()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seat_admits_the_sessions_ai_only() {
        let seat = Seat {
            room: "r1".into(),
            session: "s1".into(),
        };
        assert_eq!(seat.user_id(), "ai-orb-s1");
    }
}
