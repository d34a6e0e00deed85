//! SIGTERM and SIGINT as one async stream of stop requests, for both binaries.
//!
//! Each binary treats the first as "stop gracefully" and a second one during
//! the drain as "exit now"; this module only delivers them, in order.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// SIGTERM and SIGINT, merged.
#[derive(Debug)]
pub struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    /// Installs the handlers, inside a tokio runtime. Do it before serving so
    /// that no signal is lost (from here on they no longer kill the process).
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for the next SIGTERM or SIGINT; returns its name.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_signal_is_delivered_by_name() {
        let mut signals = Signals::install().expect("install");
        nix::sys::signal::raise(nix::sys::signal::Signal::SIGTERM).expect("raise");
        assert_eq!(signals.recv().await, "SIGTERM");
        nix::sys::signal::raise(nix::sys::signal::Signal::SIGINT).expect("raise");
        assert_eq!(signals.recv().await, "SIGINT");
    }
}
