//! Rooms: the registry of who is in which room, and the relay between them.
//!
//! # Layout
//! - [`events`]: the seam to the OrbManager (room events out, notifications in).

pub mod events;
