//! The caps on accepted connections: `MAX_CONNECTIONS` open in total (room
//! sockets included) and `MAX_PENDING_CONNECTIONS_PER_IP` open from one TCP
//! peer before they become room sockets.
//!
//! Each accepted connection holds a [`ConnSlot`]: its place in the total (given
//! back when the last holder drops it, so an upgraded room socket keeps it) and,
//! until its WebSocket upgrade completes, its place among its peer's pending
//! connections. The slot also tells the connection's upgrade deadline when it
//! may stop ([`ConnSlot::settled`]).
//!
//! Peers listed in `TRUSTED_PROXIES` are exempt from the per-address cap: behind
//! nginx every client arrives from the proxy's address, so the cap would limit
//! the whole site to a few requests at once. The proxy limits its clients
//! (nginx `limit_conn`, `client_header_timeout`); the total cap still applies.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::rooms::limits::{IpLimiter, IpSlot};

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `MAX_CONNECTIONS` connections are open.
    Total,
    /// The peer has `MAX_PENDING_CONNECTIONS_PER_IP` connections that are not room sockets.
    PendingPerIp,
}

/// The caps of one listener; cheap to clone.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    total: Arc<Semaphore>,
    pending: IpLimiter,
    exempt: Arc<[IpAddr]>,
}

impl ConnLimits {
    /// At most `max_total` open connections and `max_pending_per_ip` pending
    /// ones per peer; peers in `exempt` (trusted proxies) have no per-peer cap.
    pub fn new(max_total: usize, max_pending_per_ip: usize, exempt: &[IpAddr]) -> Self {
        Self {
            total: Arc::new(Semaphore::new(max_total.min(Semaphore::MAX_PERMITS))),
            pending: IpLimiter::new(max_pending_per_ip),
            exempt: exempt.into(),
        }
    }

    /// A slot for a connection just accepted from `peer`, or why it must be closed.
    pub fn admit(&self, peer: IpAddr) -> Result<ConnSlot, Refusal> {
        let total = Arc::clone(&self.total)
            .try_acquire_owned()
            .map_err(|_| Refusal::Total)?;
        let pending = if self.exempt.contains(&peer) {
            None
        } else {
            Some(self.pending.acquire(peer).ok_or(Refusal::PendingPerIp)?)
        };
        Ok(ConnSlot {
            _total: total,
            pending: Mutex::new(pending),
            settled: CancellationToken::new(),
        })
    }
}

/// One accepted connection's places in the caps; see the module docs.
#[derive(Debug)]
pub struct ConnSlot {
    _total: OwnedSemaphorePermit,
    pending: Mutex<Option<IpSlot>>,
    settled: CancellationToken,
}

impl ConnSlot {
    /// The connection sent a complete request that is not an upgrade: its
    /// upgrade deadline no longer applies (the header timeout still does).
    pub fn request_received(&self) {
        self.settled.cancel();
    }

    /// The connection became a room socket: it leaves its peer's pending count
    /// (room sockets are capped by `MAX_CONNECTIONS_PER_IP`) and its deadline.
    pub fn upgraded(&self) {
        drop(
            self.pending
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .take(),
        );
        self.settled.cancel();
    }

    /// Cancelled once the connection's upgrade deadline no longer applies.
    pub fn settled(&self) -> &CancellationToken {
        &self.settled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 2));
    const PROXY: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn per_peer_cap_counts_until_the_upgrade_and_the_total_until_the_last_holder() {
        let limits = ConnLimits::new(4, 2, &[PROXY]);
        let a1 = Arc::new(limits.admit(A).expect("a1"));
        let _a2 = limits.admit(A).expect("a2");
        assert_eq!(limits.admit(A).err(), Some(Refusal::PendingPerIp));
        let _b1 = limits.admit(B).expect("another address still connects");
        // a1 becomes a room socket: a new pending one from A fits, the total is full.
        a1.upgraded();
        let _a3 = limits.admit(A).expect("a3");
        assert_eq!(limits.admit(B).err(), Some(Refusal::Total));
        drop(a1);
        let _b2 = limits.admit(B).expect("a place came back");
    }

    #[test]
    fn trusted_proxies_have_no_per_peer_cap() {
        let limits = ConnLimits::new(10, 1, &[PROXY]);
        let slots: Vec<_> = (0..5).map(|_| limits.admit(PROXY).expect("proxy")).collect();
        assert_eq!(slots.len(), 5);
        assert!(limits.admit(A).is_ok());
    }

    #[test]
    fn a_plain_request_settles_the_deadline_but_keeps_the_pending_place() {
        let limits = ConnLimits::new(10, 1, &[]);
        let slot = limits.admit(A).expect("a");
        slot.request_received();
        assert!(slot.settled().is_cancelled());
        assert_eq!(limits.admit(A).err(), Some(Refusal::PendingPerIp));
    }
}
