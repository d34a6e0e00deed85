//! SIGTERM and SIGINT as one async stream of shutdown requests.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// The signals that ask the orb to stop. The first starts a graceful
/// shutdown; a second one during it makes the orb exit at once.
pub struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    /// Registers the handlers (inside the runtime).
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for the next signal; returns its name.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
