//! The listening sockets kept for an upgrade: a duplicate of each listener,
//! taken before its accept loop owns it. When the loops let theirs go (the
//! drain), these keep the sockets listening, so that connections wait in the
//! backlog for the new image instead of being refused. A plain shutdown drops
//! them at once (its listeners close as before).

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;

use tokio::net::TcpListener;

use super::handover::{Handover, Listener, ListenerRole, UpgradeRecord};
use crate::rooms::stats::RelayStats;

/// The duplicates, by role, with the address each is bound to.
#[derive(Debug)]
pub struct KeptListeners {
    kept: Vec<(ListenerRole, OwnedFd, SocketAddr)>,
}

impl KeptListeners {
    /// Duplicates `public` and `admin` (close-on-exec until an exec is prepared).
    pub fn of(public: &TcpListener, admin: Option<&TcpListener>) -> std::io::Result<Self> {
        let mut kept = vec![(
            ListenerRole::Public,
            public.as_fd().try_clone_to_owned()?,
            public.local_addr()?,
        )];
        if let Some(admin) = admin {
            kept.push((
                ListenerRole::Admin,
                admin.as_fd().try_clone_to_owned()?,
                admin.local_addr()?,
            ));
        }
        Ok(Self { kept })
    }

    fn entries(&self) -> Vec<Listener> {
        self.kept
            .iter()
            .map(|(role, fd, addr)| Listener {
                role: *role,
                fd: fd.as_raw_fd(),
                addr: *addr,
            })
            .collect()
    }

    /// The handover of `upgrade` as it is written for the exec, without room
    /// sockets (the caller adds them, and lowers the format for a binary that
    /// reads only format 1).
    pub fn handover(
        &self,
        upgrade: UpgradeRecord,
        stats: &RelayStats,
        upgrades_before: u64,
        admin_token: Option<String>,
    ) -> Handover {
        Handover {
            counters: stats.counters(),
            upgrades_before,
            admin_token,
            ..Handover::bare(upgrade, self.entries())
        }
    }

    /// A builder of the preflight's document (the listeners and counters as
    /// they are when it runs).
    pub fn preview(
        &self,
        stats: Arc<RelayStats>,
        upgrades_before: u64,
    ) -> Box<dyn Fn(UpgradeRecord) -> Handover + Send> {
        let listeners = self.entries();
        Box::new(move |upgrade| Handover {
            counters: stats.counters(),
            upgrades_before,
            ..Handover::bare(upgrade, listeners.clone())
        })
    }

    /// The descriptors, to keep open until the exec.
    pub fn into_fds(self) -> Vec<OwnedFd> {
        self.kept.into_iter().map(|(_, fd, _)| fd).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::handover::Counters;
    use super::*;

    #[tokio::test]
    async fn a_kept_copy_keeps_the_socket_listening_after_the_listener_is_dropped() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let kept = KeptListeners::of(&listener, None).expect("dup");
        drop(listener);
        // Accepted into the backlog by the kernel: not refused.
        let client = tokio::net::TcpStream::connect(addr).await.expect("still listening");
        let stats = RelayStats::starting_at(Counters {
            connections: 2,
            relayed: 9,
            errors: 1,
            slow_consumers: 0,
        });
        stats.relayed.add(1);
        let handover = kept.handover(
            UpgradeRecord {
                id: "u".to_owned(),
                from_build: "a".to_owned(),
                to_build: "b".to_owned(),
                origin: "api".to_owned(),
                committed_at_ms: 1,
            },
            &stats,
            3,
            None,
        );
        assert_eq!(handover.counters.relayed, 10);
        assert_eq!(handover.listener(ListenerRole::Public).map(|l| l.addr), Some(addr));
        drop((client, kept));
        // Another test's fork may hold the descriptor for the instant before its
        // exec closes it (close-on-exec): refused once that instant is over.
        let mut refused = false;
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr).await.is_err() {
                refused = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(refused, "refused once the last copy is gone");
    }
}
