//! [`AdminState`]: what the operator routes (admin API, `/metrics`,
//! `/api/events`) read. It sits below them so that none imports another.

use std::sync::Arc;

use tokio_util::task::TaskTracker;

use crate::metrics::Metrics;
use crate::orbs::OrbsHandle;
use crate::rooms::registry::RegistryHandle;
use crate::rooms::stats::RelayStats;
use crate::upgrade::UpgradeHandle;

/// What the admin handlers use; cheap to clone.
#[derive(Clone)]
pub struct AdminState {
    /// The OrbManager.
    pub orbs: OrbsHandle,
    /// The room registry.
    pub registry: RegistryHandle,
    /// Relay counters (for `/metrics`).
    pub stats: Arc<RelayStats>,
    /// The server's metrics (rendered by `/metrics`, counted into by API errors).
    pub metrics: Arc<Metrics>,
    /// Open client sockets (for `/metrics`).
    pub connections: TaskTracker,
    /// The bearer token.
    pub token: Arc<str>,
    /// In-place upgrades (`/api/upgrade`).
    pub upgrades: UpgradeHandle,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState")
            .field("orbs", &self.orbs)
            .finish_non_exhaustive()
    }
}
