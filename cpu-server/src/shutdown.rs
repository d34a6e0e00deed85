//! Shutdown: the bounded drain (the signals come from `shared::signals`).
//!
//! Order of the drain: `/health` turns 503 and upgrades are refused, the
//! listener stops accepting, the OrbManager stops every orb (their sockets
//! stay open so they can say goodbye), then every client socket is closed
//! with 1001 and the connection tasks get a bounded time to finish; last,
//! HTTP connections still open are shut down gracefully (one accepted just
//! before the drain is answered, not closed before its request was read).

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::orbs::OrbsHandle;

/// Longest wait for connection tasks after their close frames were asked for.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The phases of shutdown, as tokens the tasks watch.
#[derive(Debug, Clone, Default)]
pub struct Lifecycle {
    /// Shutdown started: health says draining, no new sockets.
    pub draining: CancellationToken,
    /// Every socket must close now.
    pub closing: CancellationToken,
    /// The connection tasks.
    pub connections: TaskTracker,
    /// HTTP connections must finish now (cancelled at the end of the drain).
    pub http: CancellationToken,
}

impl Lifecycle {
    /// Runs the drain after `draining` was cancelled and the listener stopped.
    pub async fn drain(&self, orbs: &OrbsHandle) {
        info!("stopping orbs");
        orbs.shutdown().await;
        info!(open = self.connections.len(), "closing client sockets");
        self.closing.cancel();
        self.connections.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, self.connections.wait())
            .await
            .is_err()
        {
            warn!(
                open = self.connections.len(),
                "drain timed out; abandoning the remaining sockets"
            );
        }
        self.http.cancel();
    }
}
