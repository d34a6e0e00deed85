//! Shutdown: the bounded drain (the signals come from `shared::signals`).
//!
//! Order of the drain: `/health` turns 503 and upgrades are refused, the
//! listener stops accepting, the OrbManager stops every orb (their sockets
//! stay open so they can say goodbye), then every client socket is closed
//! with 1001 and the connection tasks get a bounded time to finish; last,
//! HTTP connections still open are shut down gracefully (one accepted just
//! before the drain is answered, not closed before its request was read).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::orbs::OrbsHandle;
use crate::rooms::outbox::{CLOSE_RESTART, CLOSE_SHUTDOWN};
use crate::upgrade::sockets::ParkedSockets;

/// Longest wait for connection tasks after their close frames were asked for.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The phases of shutdown, as tokens the tasks watch.
#[derive(Debug, Clone, Default)]
pub struct Lifecycle {
    /// Shutdown started: health says draining, no new sockets.
    pub draining: CancellationToken,
    /// Every socket must close now.
    pub closing: Closing,
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
        self.closing.close_all(false);
        self.end_connections("drain timed out; abandoning the remaining sockets")
            .await;
    }

    /// The drain of an upgrade that hands room sockets over. With `keep_orbs`
    /// (the orbs are handed over alive, [`OrbsHandle::hand_over`] after this),
    /// every joined plain-TCP socket parks, the AIs' too; otherwise the orbs are
    /// stopped first (their sockets leave) and every joined human's socket parks.
    /// Parked sockets wait in [`Closing::parked`] at a frame boundary, still
    /// members; the others close with 1012.
    pub async fn park(&self, orbs: &OrbsHandle, keep_orbs: bool) {
        if !keep_orbs {
            info!("stopping orbs");
            orbs.shutdown().await;
        }
        info!(
            open = self.connections.len(),
            keep_orbs, "parking room sockets for the new image"
        );
        self.closing.park_all(keep_orbs);
        self.end_connections("parking timed out; the remaining sockets are not handed over")
            .await;
    }

    /// Waits (bounded) for the connection tasks told to end, then has the HTTP
    /// connections finish.
    async fn end_connections(&self, timed_out: &'static str) {
        self.connections.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, self.connections.wait())
            .await
            .is_err()
        {
            warn!(open = self.connections.len(), "{timed_out}");
        }
        self.http.cancel();
    }
}

/// The order to close every room socket, and its code: 1001 on a shutdown,
/// 1012 (service restart: reconnect) when the server restarts for an upgrade;
/// or, for an upgrade that hands room sockets over, to park them.
#[derive(Debug, Clone, Default)]
pub struct Closing {
    token: CancellationToken,
    /// Set before `token` is cancelled: a socket's loop reads it with one load
    /// per poll (the token's own check takes a lock).
    closed: Arc<AtomicBool>,
    restart: Arc<AtomicBool>,
    hand_over: Arc<AtomicBool>,
    hand_over_ai: Arc<AtomicBool>,
    /// Where sockets park for a handover.
    pub parked: ParkedSockets,
}

impl Closing {
    /// Closes every socket (`restart`: with the reconnect code).
    pub fn close_all(&self, restart: bool) {
        self.restart.store(restart, Ordering::SeqCst);
        self.closed.store(true, Ordering::SeqCst);
        self.token.cancel();
    }

    /// Joined humans' sockets park in [`Closing::parked`] (and the AIs' too with
    /// `ai`: their orbs are handed over); the others close with 1012.
    pub fn park_all(&self, ai: bool) {
        self.hand_over_ai.store(ai, Ordering::SeqCst);
        self.hand_over.store(true, Ordering::SeqCst);
        self.close_all(true);
    }

    /// Whether sockets park rather than close.
    pub fn handing_over(&self) -> bool {
        self.hand_over.load(Ordering::SeqCst)
    }

    /// Whether a joined socket parks (`is_ai`: the room's AI) rather than closes.
    pub fn parks(&self, is_ai: bool) -> bool {
        self.handing_over() && (!is_ai || self.hand_over_ai.load(Ordering::SeqCst))
    }

    /// Resolves when every socket must close.
    pub async fn cancelled(&self) {
        self.token.cancelled().await;
    }

    /// Like [`Closing::cancelled`], for a loop that polls it on every turn: a
    /// poll by the task it already woke for costs one atomic load.
    pub fn watch(&self) -> ClosingWatch {
        ClosingWatch {
            closed: self.closed.clone(),
            wait: Box::pin(self.token.clone().cancelled_owned()),
            registered: None,
        }
    }

    /// The close code and reason the sockets get.
    pub fn code(&self) -> (u16, &'static str) {
        if self.restart.load(Ordering::SeqCst) {
            CLOSE_RESTART
        } else {
            CLOSE_SHUTDOWN
        }
    }
}

/// See [`Closing::watch`].
#[derive(Debug)]
pub struct ClosingWatch {
    closed: Arc<AtomicBool>,
    wait: Pin<Box<WaitForCancellationFutureOwned>>,
    /// The waker the token will wake (its future was polled with it).
    registered: Option<Waker>,
}

impl Future for ClosingWatch {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.closed.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        // The flag is set before the token wakes `registered`: nothing is missed.
        if self.registered.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            return Poll::Pending;
        }
        let poll = self.wait.as_mut().poll(cx);
        self.registered = poll.is_pending().then(|| cx.waker().clone());
        poll
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_restart_closes_with_the_reconnect_code_and_a_shutdown_with_going_away() {
        let shutdown = Closing::default();
        shutdown.close_all(false);
        shutdown.cancelled().await;
        assert_eq!(shutdown.code().0, 1001);
        let restart = Closing::default();
        restart.close_all(true);
        restart.cancelled().await;
        assert_eq!(restart.code(), CLOSE_RESTART);
        assert_eq!(restart.code().0, 1012);
    }

    /// Rule: a watch polled again and again by the same task still ends when the
    /// sockets must close, and at once for a watch taken after that.
    #[tokio::test]
    async fn a_watch_polled_on_every_turn_sees_the_close() {
        let closing = Closing::default();
        let mut watch = closing.watch();
        for _ in 0..3 {
            assert!(
                tokio::time::timeout(Duration::from_millis(10), &mut watch)
                    .await
                    .is_err()
            );
        }
        let later = closing.clone();
        let closer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            later.close_all(false);
        });
        tokio::time::timeout(Duration::from_secs(5), &mut watch)
            .await
            .expect("woken by the close");
        closer.await.expect("closer");
        tokio::time::timeout(Duration::from_secs(1), closing.watch())
            .await
            .expect("already closed");
    }
}
