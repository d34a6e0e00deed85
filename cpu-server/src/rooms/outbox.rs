//! The outgoing side of one connection as rooms see it: its id, the close codes
//! rooms use, and its [`Outbox`] (owned by the socket layer: frames written
//! straight into the socket when nothing is ahead of them, else queued, bounded;
//! kicks overtake the queue).

pub use crate::ws::outbox::{Kick, Outbox, QueueError};

/// Identifies one accepted socket for its whole life (never reused).
pub type ConnId = u64;

/// Close code of a socket replaced by a rejoin with the same `userId`.
pub const CLOSE_REPLACED: (u16, &str) = (4000, "replaced");
/// Close code of a socket whose outgoing queue overflowed.
pub const CLOSE_SLOW_CONSUMER: (u16, &str) = (1008, "slow consumer");
/// Close code sent to every socket on server shutdown.
pub const CLOSE_SHUTDOWN: (u16, &str) = (1001, "server shutting down");
/// Close code sent to every socket the drain of an upgrade in place closes
/// (1012 Service Restart): the server is back at once, reconnect.
pub const CLOSE_RESTART: (u16, &str) = (1012, "server restarting for an upgrade: reconnect");
/// Close code of a peer that stopped answering pings.
pub const CLOSE_PING_TIMEOUT: (u16, &str) = (1001, "ping timeout");
/// Close code of a frame over `MAX_MESSAGE_BYTES`.
pub const CLOSE_TOO_LARGE: (u16, &str) = (1009, "message too large");
/// Close code of the AI socket of an orb process the manager counts as ended (a
/// cluster job Slurm says is over while its orb may still run): its token is revoked.
pub const CLOSE_REVOKED: (u16, &str) = (4001, "orb process ended");
/// Close code of an orderly end.
pub const CLOSE_NORMAL: (u16, &str) = (1000, "");

/// A detached outbox holding `capacity` frames and a second handle on it, to
/// look at what was queued (tests only).
#[cfg(test)]
pub fn outbox(capacity: usize) -> (Outbox, Outbox) {
    let outbox = Outbox::new(capacity, None);
    (outbox.clone(), outbox)
}
