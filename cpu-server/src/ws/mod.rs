//! Room sockets' WebSocket layer, owned here rather than by a library so that a
//! socket is one task with its own buffers: the opening handshake, RFC 6455
//! framing, and the socket that reads and writes frames.
//!
//! # Layout
//! - [`handshake`]: the upgrade request's checks, the `101` answer, the upgraded stream.
//! - [`frame`]: decoding client frames in place and encoding server frames (pure).
//! - [`loops`]: the single-threaded event loops plain-TCP room sockets run on.
//! - [`outbox`]: the sending side everyone shares: direct writes when nothing is ahead, else a bounded queue.
//! - [`read_buffer`]: a socket's bytes read and not consumed yet.
//! - [`socket`]: one socket's read and write buffers and its one wait.

pub mod frame;
pub mod handshake;
pub mod loops;
pub mod outbox;
pub mod read_buffer;
pub mod socket;
