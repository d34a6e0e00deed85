//! The voice's side of the media seam: [`VoiceEngine`] is the [`AudioEngine`] of an
//! orb with a voice. Each peer's incoming Opus frames go, without blocking the peer's
//! task, to the listener thread ([`super::listener`]); each peer's [`AudioOut`] is kept
//! in [`Mouths`] so that the pacer ([`super::speaker`]) speaks to every human at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, PoisonError};

use crate::media::{AudioEngine, AudioFrame, AudioOut, AudioSink};

/// Frames queued towards the listener thread before new ones are dropped (1 s for 50 peers).
pub const EAR_QUEUE: usize = 2500;

/// What the peers' tasks hand the listener thread.
#[derive(Debug)]
pub enum EarInput {
    /// One Opus frame of one peer connection.
    Frame {
        /// The connection (one per `open`).
        id: u64,
        /// The peer's userId.
        peer: Arc<str>,
        /// The Opus payload.
        opus: Arc<[u8]>,
    },
    /// The connection closed.
    Closed(u64),
}

/// The senders towards every open peer connection. Locked only to copy or change the
/// map, never across a send (sends never block: [`AudioOut::send`] is `try_send`).
#[derive(Debug, Default, Clone)]
pub struct Mouths(Arc<Mutex<Senders>>);

/// Each open connection's peer and sender, by connection id.
type Senders = HashMap<u64, (Arc<str>, AudioOut)>;

impl Mouths {
    fn insert(&self, id: u64, peer: Arc<str>, out: AudioOut) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, (peer, out));
    }

    fn remove(&self, id: u64) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
    }

    /// The senders now (a copy: the lock is released before anything is sent).
    pub fn all(&self) -> Vec<AudioOut> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(|(_, out)| out.clone())
            .collect()
    }

    /// How many connections are open.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The engine the media hub opens a sink of per peer.
#[derive(Debug)]
pub struct VoiceEngine {
    ears: SyncSender<EarInput>,
    mouths: Mouths,
    next_id: AtomicU64,
    dropped: Arc<AtomicU64>,
}

impl VoiceEngine {
    /// An engine feeding `ears` and speaking through `mouths`.
    pub fn new(ears: SyncSender<EarInput>, mouths: Mouths) -> Self {
        Self {
            ears,
            mouths,
            next_id: AtomicU64::new(1),
            dropped: Arc::default(),
        }
    }

    /// Frames dropped because the listener was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

struct VoiceSink {
    id: u64,
    peer: Arc<str>,
    ears: SyncSender<EarInput>,
    mouths: Mouths,
    dropped: Arc<AtomicU64>,
}

impl AudioSink for VoiceSink {
    fn frame(&mut self, frame: AudioFrame) {
        let input = EarInput::Frame {
            id: self.id,
            peer: self.peer.clone(),
            opus: frame.opus,
        };
        if self.ears.try_send(input).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for VoiceSink {
    fn drop(&mut self) {
        self.mouths.remove(self.id);
        // A full queue loses the close; the listener also forgets connections that stay silent.
        let _ = self.ears.try_send(EarInput::Closed(self.id));
    }
}

impl AudioEngine for VoiceEngine {
    fn open(&self, peer: &str, out: AudioOut) -> Box<dyn AudioSink> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let peer: Arc<str> = Arc::from(peer);
        self.mouths.insert(id, peer.clone(), out);
        Box::new(VoiceSink {
            id,
            peer,
            ears: self.ears.clone(),
            mouths: self.mouths.clone(),
            dropped: self.dropped.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_reach_the_ears_and_a_closed_peer_leaves_the_mouths() {
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        let mouths = Mouths::default();
        let engine = VoiceEngine::new(tx, mouths.clone());
        let (out, _out_rx) = AudioOut::channel();
        let mut sink = engine.open("coach-1", out);
        assert_eq!(mouths.len(), 1);
        sink.frame(AudioFrame {
            opus: Arc::from(vec![1u8, 2]),
            rtp_time: 0,
            received: None,
        });
        match rx.try_recv() {
            Ok(EarInput::Frame { peer, opus, .. }) => {
                assert_eq!(&*peer, "coach-1");
                assert_eq!(&*opus, &[1, 2]);
            }
            other => panic!("expected a frame, got {other:?}"),
        }
        drop(sink);
        assert!(mouths.is_empty());
        assert!(matches!(rx.try_recv(), Ok(EarInput::Closed(_))));
    }

    #[test]
    fn a_full_listener_queue_drops_and_counts() {
        let (tx, _rx) = std::sync::mpsc::sync_channel(1);
        let engine = VoiceEngine::new(tx, Mouths::default());
        let (out, _out_rx) = AudioOut::channel();
        let mut sink = engine.open("p", out);
        for _ in 0..3 {
            sink.frame(AudioFrame {
                opus: Arc::from(vec![0u8]),
                rtp_time: 0,
                received: None,
            });
        }
        assert_eq!(engine.dropped(), 2);
    }
}
