//! Counters of the relay, kept for a later metrics endpoint.

use std::sync::atomic::{AtomicU64, Ordering};

/// Monotonic relay counters; cheap to bump from any task.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Messages delivered to a recipient's queue (one per recipient).
    pub relayed: AtomicU64,
    /// `error` replies sent.
    pub errors: AtomicU64,
    /// Connections dropped because their outgoing queue was full.
    pub slow_consumers: AtomicU64,
    /// Connections accepted (upgraded).
    pub connections: AtomicU64,
}

impl RelayStats {
    /// Adds one to `counter`.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Current value of `counter`.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
