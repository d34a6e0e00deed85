//! Counters of the relay, mirrored into `/metrics` at each scrape.
//!
//! The two bumped for every relayed frame are [`Tally`]s: one cache line per
//! shard, each thread adding to its own, so the relay loops on different cores
//! never contend for one counter's line; a read sums the shards.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::upgrade::handover::Counters;

/// Shards of a [`Tally`] (threads beyond this many share them).
const SHARDS: usize = 8;

/// One shard, alone on its cache line (two lines: adjacent-line prefetch).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard(AtomicU64);

/// A monotonic counter added to from many threads without contention.
#[derive(Debug, Default)]
pub struct Tally {
    shards: [Shard; SHARDS],
}

/// Hands each thread its shard, in turn.
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
}

impl Tally {
    /// Adds `n` (to this thread's shard).
    pub fn add(&self, n: u64) {
        let shard = SHARD.with(|s| *s);
        self.shards[shard].0.fetch_add(n, Ordering::Relaxed);
    }

    /// The total so far.
    pub fn get(&self) -> u64 {
        self.shards
            .iter()
            .fold(0u64, |sum, s| sum.wrapping_add(s.0.load(Ordering::Relaxed)))
    }

    /// A tally starting at `total`.
    fn starting_at(total: u64) -> Self {
        let tally = Self::default();
        tally.shards[0].0.store(total, Ordering::Relaxed);
        tally
    }
}

/// Monotonic relay counters; cheap to bump from any task.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Messages delivered to a recipient's queue (one per recipient).
    pub relayed: Tally,
    /// Bytes of those messages' text (one copy per recipient).
    pub relayed_bytes: Tally,
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
        let stats = Self {
            relayed: Tally::starting_at(counters.relayed),
            ..Self::default()
        };
        stats.connections.store(counters.connections, Ordering::Relaxed);
        stats.errors.store(counters.errors, Ordering::Relaxed);
        stats.slow_consumers.store(counters.slow_consumers, Ordering::Relaxed);
        stats
    }

    /// The counters now.
    pub fn counters(&self) -> Counters {
        Counters {
            connections: Self::get(&self.connections),
            relayed: self.relayed.get(),
            errors: Self::get(&self.errors),
            slow_consumers: Self::get(&self.slow_consumers),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_tally_sums_what_every_thread_added() {
        let tally = Arc::new(Tally::starting_at(5));
        let threads: Vec<_> = (0..SHARDS + 3)
            .map(|_| {
                let tally = tally.clone();
                std::thread::spawn(move || (0..1000).for_each(|_| tally.add(2)))
            })
            .collect();
        for thread in threads {
            thread.join().expect("adder");
        }
        assert_eq!(tally.get(), 5 + 2 * 1000 * (SHARDS as u64 + 3));
    }
}
