//! The room protocol spoken on `/ws-simple/{roomId}` (docs/protocol.md §1).
//!
//! Two views of the same frames:
//! - [`RoomMessage`] is the typed, round-trippable model of every message
//!   (used by the orb and by tests);
//! - [`Inbound`] is what the relay uses: a size-capped parse of the envelope
//!   (`type`, target) that keeps the sender's whole object so that relayed
//!   messages carry every field, unknown ones too;
//! - [`Envelope`] is the relay's fast path for plain frames: the same decisions
//!   without a map of the fields, `fromId` spliced into the sender's text.

mod envelope;
mod error_code;
mod inbound;
mod messages;
mod scan;

pub use envelope::{Envelope, parse_envelope, relayed, with_from_id};
pub use error_code::ErrorCode;
pub use inbound::{FrameError, Inbound, JoinRequest, MessageKind, parse_inbound};
pub use messages::{
    AiControl, AiResponse, AiStatus, ClientSignal, ErrorReply, Join, OrbHeartbeatFrame, OrbShutdownFrame, Participant,
    PeerDiscovery, RoomMessage, Signal, UserJoined,
};

/// Default cap on one room message, in bytes (64 KiB).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// `participantType` of the AI participant.
pub const PARTICIPANT_AI: &str = "ai";
/// `participantType` of a human participant (the default).
pub const PARTICIPANT_HUMAN: &str = "human";

/// Prefix of every orb's `userId`; no human may join with it.
pub const AI_USER_ID_PREFIX: &str = "ai-orb-";

/// The `userName` an orb joins with.
pub const AI_USER_NAME: &str = "AI Assistant";

/// The `userId` an orb joins with for a session.
pub fn orb_user_id(session_id: &str) -> String {
    format!("{AI_USER_ID_PREFIX}{session_id}")
}
