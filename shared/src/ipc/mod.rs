//! The manager ↔ orb IPC channel (docs/protocol.md §3), in Node's convention.
//!
//! A Unix stream socket pair; the orb's end is inherited at the descriptor
//! named by `NODE_CHANNEL_FD`. Each message is one JSON object on one line.
//! An unchanged Node orb using `process.send` / `process.on('message')` can be
//! supervised, and a Rust orb uses [`IpcCodec`] on the same socket.

mod codec;
mod fd;
mod messages;

pub use codec::{IpcCodec, IpcEvent, IpcLineError};
pub use fd::{ChannelFdError, NODE_CHANNEL_FD, channel_from_env};
pub use messages::{
    IpcMessage, ManagerToOrb, OrbAssign, OrbAssigned, OrbError, OrbHeartbeat, OrbMetrics, OrbReady, OrbShutdown,
    OrbToManager, OrbWarm, ParticipantJoined, ParticipantLeft, SessionSummary, ShutdownGraceful,
};

/// Default cap on one IPC line, in bytes (64 KiB).
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024;

/// Largest `session_summary` payload (its `summary` object, serialised) the manager keeps.
pub const MAX_SUMMARY_BYTES: usize = 256 * 1024;

/// Cap on one line from the orb to the manager: room for a `session_summary` of
/// [`MAX_SUMMARY_BYTES`] and its envelope. Both ends use it: the orb never writes a
/// line the manager would discard.
pub const MAX_ORB_LINE_BYTES: usize = MAX_SUMMARY_BYTES + 16 * 1024;
