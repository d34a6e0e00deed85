//! What a room's connections relay through: a read-mostly snapshot of its members
//! and their outboxes, published by the registry (the one owner of membership) on
//! every change, read by each member's reader task to deliver frames itself.
//!
//! A frame is delivered on the reader's own task, through the recipients'
//! outboxes (never waiting): written straight into a recipient's socket when
//! nothing is queued ahead of it, else queued for the recipient's task; so one
//! room's load never queues behind another's in a shared actor. Per-sender order
//! holds because one reader delivers its frames in the order read, and an
//! outbox never lets a frame overtake one queued before it. The registry publishes a joiner's snapshot after
//! queueing its `peer-discovery` and before telling the others, so nobody relays to
//! a joiner before its discovery, and whoever saw `user-joined` can reach it.
//!
//! A reader keeps the view it last read and reads the watch again only when the
//! room's generation moved: a publish moves it first, before it queues any news,
//! so whoever heard that news finds it moved and waits for the new view.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::watch;
use tracing::warn;

use super::outbox::{CLOSE_SLOW_CONSUMER, ConnId, Outbox, QueueError};
use super::stats::RelayStats;
use crate::metrics::Metrics;
use crate::ws::frame::TextFrame;

/// What relays count into: the relay totals and the server's metrics.
#[derive(Debug)]
pub struct Counters {
    /// Relay totals.
    pub stats: Arc<RelayStats>,
    /// The server's metrics (errors by code).
    pub metrics: Arc<Metrics>,
}

/// One member as the relay sees it.
#[derive(Debug, Clone)]
pub struct ViewMember {
    /// Its socket.
    pub conn: ConnId,
    /// Its `userId` (targets name it).
    pub user_id: String,
    /// Its outgoing queue.
    pub outbox: Outbox,
}

/// A room's members at one moment, in join order.
#[derive(Debug, Default)]
pub struct RoomView {
    /// The members.
    pub members: Vec<ViewMember>,
}

/// The registry's side of a room's view: publishes a new one.
#[derive(Debug)]
pub struct ViewPublisher {
    view: watch::Sender<Arc<RoomView>>,
    /// Moved by every publish before anything else (see [`ViewReader::latest`]).
    generation: Arc<AtomicU64>,
}

impl Default for ViewPublisher {
    fn default() -> Self {
        Self {
            view: watch::Sender::new(Arc::default()),
            generation: Arc::default(),
        }
    }
}

impl ViewPublisher {
    /// Replaces the view with `view`, running `first` (no IO: queueing only)
    /// while readers wait for it: a reader that heard what `first` queued finds
    /// the generation moved and reads the new view.
    pub fn publish_with(&self, view: RoomView, first: impl FnOnce()) {
        self.view.send_modify(|current| {
            self.generation.fetch_add(1, Ordering::SeqCst);
            first();
            *current = Arc::new(view);
        });
    }

    /// A reader's side, for a new member.
    pub fn subscribe(&self) -> ViewReader {
        ViewReader {
            cached: (self.generation.load(Ordering::SeqCst), self.view.borrow().clone()),
            view: self.view.subscribe(),
            generation: Arc::clone(&self.generation),
        }
    }
}

/// A member's side of its room's view: the last one it read, read again when
/// the room's generation moved.
#[derive(Debug, Clone)]
pub struct ViewReader {
    view: watch::Receiver<Arc<RoomView>>,
    generation: Arc<AtomicU64>,
    /// The generation seen before the view was read, and that view.
    cached: (u64, Arc<RoomView>),
}

/// A member's link to its room: the latest view, its membership and the counters.
#[derive(Debug, Clone)]
pub struct RoomLink {
    /// The room's view.
    pub view: ViewReader,
    /// True while it is a member; the registry clears it before it tells anyone
    /// the member left or was replaced (see [`Outbox::try_relay`]).
    pub member: Arc<AtomicBool>,
    /// Where relays count.
    pub counters: Arc<Counters>,
}

impl ViewReader {
    /// The room's latest view. The kept one while the room's generation has not
    /// moved (one load of a line nobody writes in between: no lock, no count);
    /// else read under the watch's lock, so a publish under way (which moved the
    /// generation first, then queues its news to members while it holds the lock)
    /// is waited for: whoever heard that news sees the view that goes with it.
    pub fn latest(&mut self) -> &RoomView {
        let generation = self.generation.load(Ordering::SeqCst);
        if generation != self.cached.0 {
            // The generation is read first: a publish after it moves it again.
            self.cached = (generation, self.view.borrow().clone());
        }
        &self.cached.1
    }

    /// The watch's current view, its read lock held while the guard lives (tests
    /// hold it to stand for a read under way).
    #[cfg(test)]
    pub fn borrow(&self) -> watch::Ref<'_, Arc<RoomView>> {
        self.view.borrow()
    }
}

/// Where a frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// Every member but the sender.
    Others,
    /// The member with this `userId`.
    To(&'a str),
}

/// What became of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relayed {
    /// Sent to this many recipients (slow ones kicked).
    Delivered(usize),
    /// The sender is no longer a member (left, or replaced by a rejoin): dropped
    /// (for every recipient not reached before its end was known).
    NotMember,
    /// No member has the target's `userId`.
    NoSuchPeer,
}

/// Sends `text` to the outbox of `conn` (`user_id`, for the log); a full queue
/// kicks it as a slow consumer (it then leaves through its own connection).
/// `false` when the member must be removed.
pub fn deliver_to(outbox: &Outbox, conn: ConnId, user_id: &str, text: &str, counters: &Counters) -> bool {
    sent(
        outbox.try_text(text.as_bytes()),
        outbox,
        conn,
        user_id,
        text.len(),
        counters,
    )
}

/// Counts what became of one frame of `bytes` text bytes sent to `outbox`:
/// `false` when its member must be removed.
fn sent(
    result: Result<(), QueueError>,
    outbox: &Outbox,
    conn: ConnId,
    user_id: &str,
    bytes: usize,
    counters: &Counters,
) -> bool {
    match result {
        Ok(()) => {
            counters.stats.relayed.add(1);
            counters.stats.relayed_bytes.add(bytes as u64);
            true
        }
        Err(QueueError::Full) => {
            if outbox.kick(CLOSE_SLOW_CONSUMER) {
                warn!(conn, user = %user_id, "outgoing queue full: dropping slow consumer");
                RelayStats::bump(&counters.stats.slow_consumers);
            }
            false
        }
        Err(QueueError::Closed) => false,
        // The sender's end, not the recipient's: nothing to count or remove.
        Err(QueueError::SenderLeft) => true,
    }
}

impl RoomView {
    /// Relays `frame` (encoded once for everyone) from the member on `from`
    /// (whose membership is `sender`) along `route`; recipients that must leave (kicked as slow consumers, or
    /// gone) are added to `dropped`, for the caller to have them removed at once.
    pub fn relay(
        &self,
        (from, sender): (ConnId, &AtomicBool),
        route: Route<'_>,
        frame: &TextFrame,
        counters: &Counters,
        dropped: &mut Vec<ConnId>,
    ) -> Relayed {
        if !self.members.iter().any(|m| m.conn == from) {
            return Relayed::NotMember;
        }
        let mut delivered = 0;
        // Set once the sender's membership ended meanwhile: from then on nobody hears it.
        let mut left = false;
        let bytes = frame.payload_len();
        let mut to = |member: &ViewMember| match member.outbox.try_relay(frame, sender) {
            Err(QueueError::SenderLeft) => left = true,
            result => {
                if sent(result, &member.outbox, member.conn, &member.user_id, bytes, counters) {
                    delivered += 1;
                } else {
                    dropped.push(member.conn);
                }
            }
        };
        match route {
            Route::To(target) => match self.members.iter().find(|m| m.user_id == target) {
                Some(member) => to(member),
                None => return Relayed::NoSuchPeer,
            },
            Route::Others => self.members.iter().filter(|m| m.conn != from).for_each(to),
        }
        if left {
            Relayed::NotMember
        } else {
            Relayed::Delivered(delivered)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rooms::outbox::{Outbox, outbox};

    /// Members `a` (conn 1) and `b` (conn 2) with queues of `a_cap` and `b_cap` frames.
    fn two(a_cap: usize, b_cap: usize) -> (RoomView, Outbox, Outbox) {
        let (a, a_rx) = outbox(a_cap);
        let (b, b_rx) = outbox(b_cap);
        let member = |conn, user_id: &str, outbox| ViewMember {
            conn,
            user_id: user_id.into(),
            outbox,
        };
        let view = RoomView {
            members: vec![member(1, "a", a), member(2, "b", b)],
        };
        (view, a_rx, b_rx)
    }

    fn frame(text: &str) -> TextFrame {
        let mut frame = TextFrame::default();
        frame.encode(&[text]);
        frame
    }

    fn counters() -> Counters {
        Counters {
            stats: Arc::default(),
            metrics: Arc::default(),
        }
    }

    #[test]
    fn routes_reach_others_or_the_target_and_a_stranger_relays_nothing() {
        let yes = AtomicBool::new(true);
        let (view, a_rx, b_rx) = two(4, 4);
        let c = counters();
        let text = &frame("{}");
        let mut dropped = Vec::new();
        assert_eq!(
            view.relay((1, &yes), Route::Others, text, &c, &mut dropped),
            Relayed::Delivered(1)
        );
        assert_eq!(b_rx.take_texts(), ["{}"]);
        assert!(a_rx.take_texts().is_empty(), "not to the sender");
        assert_eq!(
            view.relay((2, &yes), Route::To("a"), text, &c, &mut dropped),
            Relayed::Delivered(1)
        );
        assert_eq!(
            view.relay((2, &yes), Route::To("z"), text, &c, &mut dropped),
            Relayed::NoSuchPeer
        );
        assert_eq!(
            view.relay((9, &yes), Route::Others, text, &c, &mut dropped),
            Relayed::NotMember
        );
        assert!(dropped.is_empty());
        assert_eq!(c.stats.relayed.get(), 2);
    }

    fn link_to(publisher: &ViewPublisher) -> RoomLink {
        RoomLink {
            view: publisher.subscribe(),
            member: Arc::new(AtomicBool::new(true)),
            counters: Arc::new(counters()),
        }
    }

    fn one_member(user_id: &str) -> RoomView {
        let (outbox, _rx) = outbox(4);
        RoomView {
            members: vec![ViewMember {
                conn: 2,
                user_id: user_id.into(),
                outbox,
            }],
        }
    }

    /// Rule: a view read while a publish is under way is the published one, so a
    /// member who heard the news queued during the publish reaches the joiner;
    /// also when that member had already read (and kept) the view before.
    #[test]
    fn a_view_read_during_a_publish_waits_for_it() {
        let publisher = Arc::new(ViewPublisher::default());
        let mut link = link_to(&publisher);
        assert!(link.view.latest().members.is_empty(), "kept: the view before");
        let (queued_tx, queued_rx) = std::sync::mpsc::channel();
        let publishing = Arc::clone(&publisher);
        let thread = std::thread::spawn(move || {
            publishing.publish_with(one_member("b"), || {
                // The news is out (queued to a member) before the view is replaced.
                let _ = queued_tx.send(());
                std::thread::sleep(std::time::Duration::from_millis(100));
            });
        });
        queued_rx.recv().expect("the publish began");
        assert_eq!(link.view.latest().members.len(), 1, "the view that goes with the news");
        thread.join().expect("publisher");
    }

    #[test]
    fn a_kept_view_is_replaced_by_each_publish() {
        let publisher = ViewPublisher::default();
        let mut link = link_to(&publisher);
        let mut late = link.clone();
        publisher.publish_with(one_member("b"), || {});
        assert_eq!(link.view.latest().members[0].user_id, "b");
        publisher.publish_with(one_member("c"), || {});
        assert_eq!(link.view.latest().members[0].user_id, "c");
        assert_eq!(late.view.latest().members[0].user_id, "c", "a clone reads on its own");
        let mut joiner = link_to(&publisher);
        assert_eq!(
            joiner.view.latest().members[0].user_id,
            "c",
            "subscribed after: the current one"
        );
    }

    #[test]
    fn a_full_outbox_is_kicked_once_and_counted_once() {
        let yes = AtomicBool::new(true);
        let (view, _a_rx, b_rx) = two(4, 1);
        let c = counters();
        let text = &frame("{}");
        let mut dropped = Vec::new();
        assert_eq!(
            view.relay((1, &yes), Route::Others, text, &c, &mut dropped),
            Relayed::Delivered(1)
        );
        for _ in 0..3 {
            assert_eq!(
                view.relay((1, &yes), Route::Others, text, &c, &mut dropped),
                Relayed::Delivered(0)
            );
            // The socket's task takes its kick at once; later overflows must not count again.
            let _ = b_rx.take_kick();
        }
        assert_eq!(RelayStats::get(&c.stats.slow_consumers), 1);
        assert_eq!(dropped, [2, 2, 2], "each time, to be removed");
    }
}
