//! The seam between WebRTC and whatever hears and speaks: audio frames in from a
//! peer ([`AudioSink`]), audio frames out to that peer ([`AudioOut`]). An
//! [`AudioEngine`] opens one sink per peer; the voice pipeline plugs in here
//! without touching the peer tasks. Frames are Opus payloads, one RTP frame each,
//! with their 48 kHz RTP time; nothing here decodes.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;

/// Frames queued towards one peer before new ones are dropped (about 1.3 s of 20 ms frames).
pub const OUT_QUEUE: usize = 64;

/// One Opus frame.
#[derive(Debug, Clone)]
pub struct AudioFrame {
    /// The Opus payload of one RTP frame.
    pub opus: Arc<[u8]>,
    /// Its RTP time at 48 kHz (the sender's timeline for frames in; the engine's own for frames out).
    pub rtp_time: u64,
    /// When its packet arrived (frames in; `None` for generated frames): forwarding delay is measured from it.
    pub received: Option<Instant>,
}

/// Where one peer's incoming audio goes. Called on the peer's task: must not block.
pub trait AudioSink: Send {
    /// One frame received from the peer.
    fn frame(&mut self, frame: AudioFrame);
}

/// The sending side towards one peer; cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct AudioOut(mpsc::Sender<AudioFrame>);

impl AudioOut {
    /// A sender and the receiver the peer task reads.
    pub fn channel() -> (Self, mpsc::Receiver<AudioFrame>) {
        let (tx, rx) = mpsc::channel(OUT_QUEUE);
        (Self(tx), rx)
    }

    /// Queues `frame` for the peer; `false` when the queue is full or the peer is gone (dropped).
    pub fn send(&self, frame: AudioFrame) -> bool {
        self.0.try_send(frame).is_ok()
    }
}

/// Opens a sink per peer, and is handed that peer's [`AudioOut`].
pub trait AudioEngine: Send + Sync {
    /// A peer's audio starts; `out` sends to it.
    fn open(&self, peer: &str, out: AudioOut) -> Box<dyn AudioSink>;
}

/// Test mode: every peer hears its own audio back, frame for frame.
#[derive(Debug, Default, Clone, Copy)]
pub struct EchoEngine;

struct Echo(AudioOut);

impl AudioSink for Echo {
    fn frame(&mut self, frame: AudioFrame) {
        // A full queue means the peer's send side is behind: dropping is the right thing for live audio.
        let _ = self.0.send(frame);
    }
}

impl AudioEngine for EchoEngine {
    fn open(&self, _peer: &str, out: AudioOut) -> Box<dyn AudioSink> {
        Box::new(Echo(out))
    }
}

/// Until the voice pipeline exists: hears nothing, says nothing (the connection still completes).
#[derive(Debug, Default, Clone, Copy)]
pub struct SilentEngine;

struct Discard;

impl AudioSink for Discard {
    fn frame(&mut self, _frame: AudioFrame) {}
}

impl AudioEngine for SilentEngine {
    fn open(&self, _peer: &str, _out: AudioOut) -> Box<dyn AudioSink> {
        Box::new(Discard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: u8) -> AudioFrame {
        AudioFrame {
            opus: Arc::from(vec![n]),
            rtp_time: u64::from(n) * 960,
            received: None,
        }
    }

    #[test]
    fn echo_sends_each_frame_back_and_drops_beyond_the_queue() {
        let (out, mut rx) = AudioOut::channel();
        let mut sink = EchoEngine.open("u1", out);
        for n in 0..=u8::try_from(OUT_QUEUE).expect("small") {
            sink.frame(frame(n));
        }
        let mut got = Vec::new();
        while let Ok(f) = rx.try_recv() {
            got.push(f.opus[0]);
        }
        assert_eq!(got.len(), OUT_QUEUE, "the frame beyond the queue was dropped");
        assert_eq!(got[..3], [0, 1, 2]);
    }

    #[test]
    fn silence_sends_nothing() {
        let (out, mut rx) = AudioOut::channel();
        SilentEngine.open("u1", out).frame(frame(1));
        assert!(rx.try_recv().is_err());
    }
}
