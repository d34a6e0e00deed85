//! The outgoing side of one connection: a bounded queue of frames, and a
//! separate one-slot channel for out-of-band closes ("kicks") that overtake it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::mpsc;

/// Identifies one accepted socket for its whole life (never reused).
pub type ConnId = u64;

/// Close code of a socket replaced by a rejoin with the same `userId`.
pub const CLOSE_REPLACED: (u16, &str) = (4000, "replaced");
/// Close code of a socket whose outgoing queue overflowed.
pub const CLOSE_SLOW_CONSUMER: (u16, &str) = (1008, "slow consumer");
/// Close code sent to every socket on server shutdown.
pub const CLOSE_SHUTDOWN: (u16, &str) = (1001, "server shutting down");
/// Close code of a peer that stopped answering pings.
pub const CLOSE_PING_TIMEOUT: (u16, &str) = (1001, "ping timeout");
/// Close code of a frame over `MAX_MESSAGE_BYTES`.
pub const CLOSE_TOO_LARGE: (u16, &str) = (1009, "message too large");
/// Close code of the AI socket of an orb process the manager counts as ended (a
/// cluster job Slurm says is over while its orb may still run): its token is revoked.
pub const CLOSE_REVOKED: (u16, &str) = (4001, "orb process ended");
/// Close code of an orderly end.
pub const CLOSE_NORMAL: (u16, &str) = (1000, "");

/// One item of the ordered outgoing queue.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A JSON text frame.
    Text(Utf8Bytes),
    /// A close frame after everything queued before it; the writer stops.
    Close(u16, &'static str),
}

/// A close that overtakes the queue (replaced, slow consumer, shutdown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kick {
    /// WebSocket close code.
    pub code: u16,
    /// Close reason.
    pub reason: &'static str,
}

impl From<(u16, &'static str)> for Kick {
    /// A kick with one of this module's `(code, reason)` pairs.
    fn from((code, reason): (u16, &'static str)) -> Self {
        Self { code, reason }
    }
}

/// Why a frame could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    /// The queue is full: the reader is too slow.
    Full,
    /// The connection's writer is gone.
    Closed,
}

/// Cloneable sending side of one connection's queues.
#[derive(Debug, Clone)]
pub struct Outbox {
    frames: mpsc::Sender<Outbound>,
    kicks: mpsc::Sender<Kick>,
    /// Set by the first kick: later ones are no-ops (and are not counted).
    kicked: Arc<AtomicBool>,
}

/// The writer's receiving side.
#[derive(Debug)]
pub struct OutboxReceiver {
    /// Ordered frames.
    pub frames: mpsc::Receiver<Outbound>,
    /// Out-of-band closes.
    pub kicks: mpsc::Receiver<Kick>,
}

/// An outbox whose frame queue holds `capacity` items.
pub fn outbox(capacity: usize) -> (Outbox, OutboxReceiver) {
    let (frames_tx, frames) = mpsc::channel(capacity.max(1));
    let (kicks_tx, kicks) = mpsc::channel(1);
    (
        Outbox {
            frames: frames_tx,
            kicks: kicks_tx,
            kicked: Arc::default(),
        },
        OutboxReceiver { frames, kicks },
    )
}

impl Outbox {
    /// Queues `item` without waiting.
    pub fn try_push(&self, item: Outbound) -> Result<(), QueueError> {
        self.frames.try_send(item).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => QueueError::Full,
            mpsc::error::TrySendError::Closed(_) => QueueError::Closed,
        })
    }

    /// Queues a text frame without waiting.
    pub fn try_text(&self, text: impl Into<Utf8Bytes>) -> Result<(), QueueError> {
        self.try_push(Outbound::Text(text.into()))
    }

    /// Asks the writer to close now with `(code, reason)`; the first kick wins.
    /// `true` for that first one.
    pub fn kick(&self, (code, reason): (u16, &'static str)) -> bool {
        if self.kicked.swap(true, Ordering::AcqRel) {
            return false;
        }
        let _ = self.kicks.try_send(Kick::from((code, reason)));
        true
    }
}
