//! Counters of the relay, kept for a later metrics endpoint.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::upgrade::handover::Counters;

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

    /// Counters starting where a previous image's stopped.
    pub fn starting_at(counters: Counters) -> Self {
        let stats = Self::default();
        stats.connections.store(counters.connections, Ordering::Relaxed);
        stats.relayed.store(counters.relayed, Ordering::Relaxed);
        stats.errors.store(counters.errors, Ordering::Relaxed);
        stats.slow_consumers.store(counters.slow_consumers, Ordering::Relaxed);
        stats
    }

    /// The counters now.
    pub fn counters(&self) -> Counters {
        Counters {
            connections: Self::get(&self.connections),
            relayed: Self::get(&self.relayed),
            errors: Self::get(&self.errors),
            slow_consumers: Self::get(&self.slow_consumers),
        }
    }
}
