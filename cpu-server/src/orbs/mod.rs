//! The OrbManager: one gpu-orb process per room, supervised.
//!
//! Placeholder interface: the manager lands with its own issue. Until then
//! [`spawn_manager`] only drains room events and reports zero orbs.

use std::sync::Arc;

use tokio::sync::watch;

use crate::rooms::events::{RoomEventReceiver, RoomNotifier};
use crate::settings::OrbSettings;

/// Orb counts for `/health`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrbCounts {
    /// Orb processes alive (slots taken).
    pub active: usize,
    /// `MAX_CONCURRENT_ORBS`.
    pub max: usize,
}

/// Cloneable handle to the OrbManager.
#[derive(Debug, Clone)]
pub struct OrbsHandle {
    counts: watch::Receiver<OrbCounts>,
}

impl OrbsHandle {
    /// Current counts.
    pub fn counts(&self) -> OrbCounts {
        *self.counts.borrow()
    }

    /// Stops every orb (bounded) and waits for them to exit.
    pub async fn shutdown(&self) {}
}

/// Starts the OrbManager task.
pub fn spawn_manager(
    settings: OrbSettings,
    mut events: RoomEventReceiver,
    _notifier: Arc<dyn RoomNotifier>,
    _cpu_host: String,
) -> OrbsHandle {
    let (tx, rx) = watch::channel(OrbCounts {
        active: 0,
        max: settings.max_concurrent,
    });
    tokio::spawn(async move {
        let _keep = tx;
        while events.recv().await.is_some() {}
    });
    OrbsHandle { counts: rx }
}
