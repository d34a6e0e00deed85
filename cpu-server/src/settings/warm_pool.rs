//! Settings of the warm pool: orbs started ahead of need, in no room, each
//! handed to the next room that needs one (`ORB_WARM_POOL`).

use std::time::Duration;

use clap::Args;
use shared::settings::{Key, Setting, Validator};

const ORB_WARM_POOL: Setting = Setting::new(
    Key::new("ORB_WARM_POOL", "orb-warm-pool"),
    "0",
    "Orbs kept started and ready in no room (gpu-orb --warm), each handed to the next room that needs one; they count against MAX_CONCURRENT_ORBS and GPU slots. 0 = off",
);
const ORB_WARM_ASSIGN_TIMEOUT: Setting = Setting::new(
    Key::new("ORB_WARM_ASSIGN_TIMEOUT", "orb-warm-assign-timeout"),
    "2000",
    "Longest wait for a warm orb's orb_assigned after it was given a room, ms; else it is discarded and the room gets the next one (or a cold start)",
);

/// This area's declarations (for the documentation checks).
#[cfg(test)]
pub(super) const SETTINGS: &[&Setting] = &[&ORB_WARM_POOL, &ORB_WARM_ASSIGN_TIMEOUT];

/// Raw warm pool flags; every one also readable from its environment variable.
#[derive(Debug, Clone, Default, Args)]
pub struct WarmPoolArgs {
    /// `ORB_WARM_POOL`.
    #[arg(long = ORB_WARM_POOL.long(), env = ORB_WARM_POOL.env(), help = ORB_WARM_POOL.help())]
    pub orb_warm_pool: Option<String>,
    /// `ORB_WARM_ASSIGN_TIMEOUT`.
    #[arg(long = ORB_WARM_ASSIGN_TIMEOUT.long(), env = ORB_WARM_ASSIGN_TIMEOUT.env(), help = ORB_WARM_ASSIGN_TIMEOUT.help())]
    pub orb_warm_assign_timeout: Option<String>,
}

/// Typed warm pool settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WarmPoolSettings {
    /// Orbs kept warm (0: off).
    pub size: usize,
    /// Bound of `orb_assign` → `orb_assigned`.
    pub assign_timeout: Duration,
}

impl Default for WarmPoolSettings {
    fn default() -> Self {
        Self {
            size: 0,
            assign_timeout: Duration::from_millis(2000),
        }
    }
}

impl WarmPoolArgs {
    /// Validates into [`WarmPoolSettings`].
    pub fn validate(self, v: &mut Validator<'_>) -> WarmPoolSettings {
        let size = v.number(&ORB_WARM_POOL, self.orb_warm_pool, 0, 1000) as usize;
        let assign_timeout = v.millis(&ORB_WARM_ASSIGN_TIMEOUT, self.orb_warm_assign_timeout, 100);
        WarmPoolSettings { size, assign_timeout }
    }
}
