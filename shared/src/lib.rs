//! Wire formats and settings shared by `cpu-server` and `gpu-orb`.
//!
//! This crate owns what crosses a process boundary and nothing that runs:
//! the room WebSocket protocol, the manager ↔ orb IPC channel and the
//! layered settings helpers both binaries use, plus the few small helpers
//! both binaries would otherwise each write (secrets, clock, stop signals).
//! It holds no supervision logic.
//!
//! # Layout
//! - [`clock`]: wall-clock timestamps (`epoch_ms`, `epoch_secs`) for the wire.
//! - [`room`]: the room protocol of `/ws-simple/{roomId}` — typed messages,
//!   the size-capped envelope parser used by the relay, error codes.
//! - [`ipc`]: Node's `NODE_CHANNEL_FD` convention — newline-delimited JSON over
//!   a Unix stream socket, its size-capped codec and typed messages both ways.
//! - [`settings`]: `.env` parsing compatible with Node's `dotenv`, and a
//!   validator that collects every bad setting before start-up stops (exit 64).
//! - [`signals`]: SIGTERM/SIGINT as one async stream (both binaries' stop requests).
//! - [`secret`]: [`secret::Secret`] (never printed) and the one constant-time compare.

pub mod clock;
pub mod ipc;
pub mod room;
pub mod secret;
pub mod settings;
pub mod signals;
