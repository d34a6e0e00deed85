//! Rooms: the registry of who is in which room, and the relay between them.
//!
//! # Layout
//! - [`events`]: the seam to the OrbManager (room events out, notifications in).
//! - [`registry`]: the actor task owning every room; connections talk to it by channel.
//! - [`room_view`]: each room's published members, through which readers relay.
//! - [`connection`]: one socket's task: its frames read and routed, its outbox written.
//! - [`outbox`]: a connection's id, its close codes, and its outbox (from `ws::outbox`).
//! - [`offer_rule`]: who creates the WebRTC offer (pure).
//! - [`room_id`]: which room ids are accepted (pure).
//! - [`limits`]: message-rate token bucket and per-IP socket counts.
//! - [`ping_timer`]: a socket's ping deadline, polled only when due.
//! - [`seat`]: a warm orb's room socket, given its room by the OrbManager.
//! - [`stats`]: relay counters.

pub mod connection;
pub mod events;
pub mod limits;
pub mod offer_rule;
pub mod outbox;
pub mod ping_timer;
pub mod registry;
pub mod room_id;
pub mod room_view;
pub mod seat;
pub mod stats;
