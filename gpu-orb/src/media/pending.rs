//! Bounded bookkeeping of the peer table that needs no socket: candidates that
//! arrived before their offer, and the participants whose media was closed (so a
//! late candidate of theirs is answered with an error instead of being kept).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use super::signal::RemoteCandidate;

/// Participants with candidates waiting for their offer, at most.
pub const MAX_PENDING_PEERS: usize = 16;
/// Candidates kept per participant before its offer.
pub const MAX_PENDING_PER_PEER: usize = 64;
/// Closed participants remembered.
pub const MAX_CLOSED: usize = 64;

/// Candidates waiting for their offer, per sender. Bounded in senders
/// (the oldest buffer goes first), in candidates per sender and in age.
#[derive(Debug)]
pub struct PendingCandidates {
    max_age: Duration,
    by_peer: HashMap<String, Waiting>,
}

#[derive(Debug)]
struct Waiting {
    since: Instant,
    candidates: Vec<RemoteCandidate>,
}

/// The sender already has [`MAX_PENDING_PER_PEER`] candidates waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

impl PendingCandidates {
    /// Candidates older than `max_age` (from the first one of their sender) are dropped.
    pub fn new(max_age: Duration) -> Self {
        Self {
            max_age,
            by_peer: HashMap::new(),
        }
    }

    /// Keeps `candidate` for `from`'s coming offer.
    pub fn push(&mut self, from: &str, candidate: RemoteCandidate, now: Instant) -> Result<(), Full> {
        self.expire(now);
        if !self.by_peer.contains_key(from) && self.by_peer.len() >= MAX_PENDING_PEERS {
            let oldest = self
                .by_peer
                .iter()
                .min_by_key(|(_, w)| w.since)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                tracing::debug!(peer = %oldest, "pending candidates dropped for a newer sender");
                self.by_peer.remove(&oldest);
            }
        }
        let waiting = self.by_peer.entry(from.to_owned()).or_insert_with(|| Waiting {
            since: now,
            candidates: Vec::new(),
        });
        if waiting.candidates.len() >= MAX_PENDING_PER_PEER {
            return Err(Full);
        }
        waiting.candidates.push(candidate);
        Ok(())
    }

    /// Every candidate `from` sent before its offer, oldest first; forgets them.
    pub fn take(&mut self, from: &str, now: Instant) -> Vec<RemoteCandidate> {
        self.expire(now);
        self.by_peer.remove(from).map(|w| w.candidates).unwrap_or_default()
    }

    /// Forgets `from`'s candidates (it left).
    pub fn forget(&mut self, from: &str) {
        self.by_peer.remove(from);
    }

    /// How many candidates wait, over all senders.
    pub fn len(&self) -> usize {
        self.by_peer.values().map(|w| w.candidates.len()).sum()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.by_peer.is_empty()
    }

    fn expire(&mut self, now: Instant) {
        let max_age = self.max_age;
        self.by_peer.retain(|_, w| now.duration_since(w.since) < max_age);
    }
}

/// The last [`MAX_CLOSED`] participants whose media connection was closed.
#[derive(Debug, Default)]
pub struct ClosedPeers(VecDeque<String>);

impl ClosedPeers {
    /// Remembers `id` as closed (the oldest is forgotten beyond the bound).
    pub fn insert(&mut self, id: &str) {
        if !self.contains(id) {
            if self.0.len() >= MAX_CLOSED {
                self.0.pop_front();
            }
            self.0.push_back(id.to_owned());
        }
    }

    /// Whether `id`'s connection was closed and no new offer came since.
    pub fn contains(&self, id: &str) -> bool {
        self.0.iter().any(|c| c == id)
    }

    /// `id` offered again (or left): no longer closed.
    pub fn remove(&mut self, id: &str) {
        self.0.retain(|c| c != id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(n: usize) -> RemoteCandidate {
        RemoteCandidate {
            line: format!("candidate:{n} 1 udp 1 127.0.0.1 {n} typ host"),
            ufrag: None,
        }
    }

    #[test]
    fn candidates_wait_in_order_and_are_taken_once() {
        let now = Instant::now();
        let mut pending = PendingCandidates::new(Duration::from_secs(30));
        pending.push("a", cand(1), now).expect("room");
        pending.push("a", cand(2), now).expect("room");
        pending.push("b", cand(3), now).expect("room");
        assert_eq!(pending.len(), 3);
        assert_eq!(pending.take("a", now), vec![cand(1), cand(2)]);
        assert!(pending.take("a", now).is_empty());
        pending.forget("b");
        assert!(pending.is_empty());
    }

    #[test]
    fn every_dimension_is_bounded() {
        let now = Instant::now();
        let mut pending = PendingCandidates::new(Duration::from_secs(30));
        for n in 0..MAX_PENDING_PER_PEER {
            pending.push("a", cand(n), now).expect("room");
        }
        assert_eq!(pending.push("a", cand(999), now), Err(Full));
        for peer in 0..MAX_PENDING_PEERS + 5 {
            let later = now + Duration::from_millis(u64::try_from(peer).expect("small") + 1);
            pending.push(&format!("p{peer}"), cand(peer), later).expect("room");
        }
        assert!(pending.by_peer.len() <= MAX_PENDING_PEERS);
        assert!(pending.take("a", now).is_empty(), "the oldest sender was dropped first");
        let old = pending.len();
        assert!(old > 0);
        assert!(pending.take("p20", now + Duration::from_secs(31)).is_empty(), "expired");
        assert!(pending.is_empty());
    }

    #[test]
    fn closed_peers_are_bounded_and_reopened_by_an_offer() {
        let mut closed = ClosedPeers::default();
        for n in 0..MAX_CLOSED + 3 {
            closed.insert(&format!("u{n}"));
        }
        assert!(!closed.contains("u0"), "the oldest was forgotten");
        assert!(closed.contains(&format!("u{}", MAX_CLOSED + 2)));
        closed.remove("u10");
        assert!(!closed.contains("u10"));
    }
}
