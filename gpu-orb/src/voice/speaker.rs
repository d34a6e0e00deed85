//! The AI's mouth: the speaker thread ("voice-mouth") turns an answer's PCM, at the
//! provider's rate, into 48 kHz Opus frames of 20 ms; the pacer task sends one frame
//! every 20 ms to every human at once ([`Mouths`]). A cancelled answer (barge-in) is
//! dropped by both at their next frame. The thread blocks only on its own queues.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::dsp::{FrameSlicer, OpusEncoder, Resampler};
use super::engine::Mouths;
use crate::media::AudioFrame;

/// Encoded frames queued ahead of the pacer (the encoder runs at most this far ahead: 160 ms).
const AHEAD: usize = 8;
/// PCM chunks queued towards the speaker thread.
const PCM_QUEUE: usize = 32;
/// One frame's duration.
const FRAME: Duration = Duration::from_millis(20);

/// What the conductor sends the speaker thread, for answer `turn`.
#[derive(Debug)]
pub enum Speech {
    /// An answer starts, its PCM at `rate` Hz.
    Begin {
        /// The answer.
        turn: u64,
        /// Its sample rate.
        rate: u32,
    },
    /// More of its PCM.
    Pcm {
        /// The answer.
        turn: u64,
        /// 16-bit mono samples.
        samples: Vec<i16>,
    },
    /// Its PCM is complete.
    End {
        /// The answer.
        turn: u64,
    },
}

/// What the pacer tells the conductor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spoken {
    /// The answer's first frame went out.
    FirstFrame {
        /// The answer.
        turn: u64,
        /// When.
        at: Instant,
    },
    /// The answer's last frame went out.
    Finished {
        /// The answer.
        turn: u64,
    },
}

enum Encoded {
    Frame { turn: u64, opus: Arc<[u8]> },
    End { turn: u64 },
}

/// The conductor's handle on the mouth.
#[derive(Debug, Clone)]
pub struct Mouth {
    speech: mpsc::Sender<Speech>,
    cancelled: Arc<AtomicU64>,
}

impl Mouth {
    /// Queues speech, waiting when the thread is `PCM_QUEUE` chunks behind; `false` when it is gone.
    pub async fn say(&self, speech: Speech) -> bool {
        self.speech.send(speech).await.is_ok()
    }

    /// Drops answer `turn` and every earlier one, wherever they are.
    pub fn cancel(&self, turn: u64) {
        self.cancelled.fetch_max(turn, Ordering::Relaxed);
    }
}

/// Starts the speaker thread and the pacer task (on the current runtime).
pub fn start(mouths: Mouths, spoken: mpsc::Sender<Spoken>) -> std::io::Result<(Mouth, JoinHandle<()>)> {
    let (speech_tx, speech_rx) = mpsc::channel(PCM_QUEUE);
    let (encoded_tx, encoded_rx) = mpsc::channel(AHEAD);
    let cancelled = Arc::new(AtomicU64::new(0));
    let thread_cancelled = cancelled.clone();
    let thread = std::thread::Builder::new()
        .name("voice-mouth".into())
        .spawn(move || encode(speech_rx, &encoded_tx, &thread_cancelled))?;
    tokio::spawn(pace(encoded_rx, mouths, spoken, cancelled.clone()));
    Ok((
        Mouth {
            speech: speech_tx,
            cancelled,
        },
        thread,
    ))
}

fn encode(mut speech: mpsc::Receiver<Speech>, out: &mpsc::Sender<Encoded>, cancelled: &AtomicU64) {
    let mut encoder = match OpusEncoder::new() {
        Ok(encoder) => encoder,
        Err(error) => {
            tracing::error!(%error, "no Opus encoder: the AI cannot speak");
            return;
        }
    };
    let mut current: Option<(u64, Resampler, FrameSlicer)> = None;
    while let Some(item) = speech.blocking_recv() {
        let live = |turn: u64| turn > cancelled.load(Ordering::Relaxed);
        let (turn, frames, end) = match item {
            Speech::Begin { turn, rate } => {
                current = Resampler::new(rate, 48_000)
                    .map_err(|e| tracing::warn!(error = %e, "answer at an unsupported rate dropped"))
                    .ok()
                    .map(|r| (turn, r, FrameSlicer::new()));
                continue;
            }
            Speech::Pcm { turn, samples } => match current.as_mut() {
                Some((t, resampler, slicer)) if *t == turn && live(turn) => {
                    (turn, slicer.push(&resampler.process(&samples)), false)
                }
                _ => continue,
            },
            Speech::End { turn } => match current.take() {
                Some((t, mut resampler, mut slicer)) if t == turn && live(turn) => {
                    let mut frames = slicer.push(&resampler.flush());
                    frames.extend(slicer.finish());
                    (turn, frames, true)
                }
                _ => (turn, Vec::new(), true),
            },
        };
        for frame in frames {
            if !live(turn) {
                break;
            }
            match encoder.encode(&frame) {
                Ok(opus) => {
                    if out
                        .blocking_send(Encoded::Frame {
                            turn,
                            opus: Arc::from(opus),
                        })
                        .is_err()
                    {
                        return;
                    }
                }
                Err(error) => tracing::warn!(%error, "an answer frame could not be encoded"),
            }
        }
        if end && out.blocking_send(Encoded::End { turn }).is_err() {
            return;
        }
    }
}

/// Sends one frame every 20 ms to every open connection; the first frame of an answer
/// goes at once. Frames of cancelled answers are dropped unsent.
async fn pace(
    mut encoded: mpsc::Receiver<Encoded>,
    mouths: Mouths,
    spoken: mpsc::Sender<Spoken>,
    cancelled: Arc<AtomicU64>,
) {
    let epoch = Instant::now();
    let mut due = Instant::now();
    let mut speaking: Option<u64> = None;
    while let Some(item) = encoded.recv().await {
        match item {
            Encoded::Frame { turn, opus } => {
                if turn <= cancelled.load(Ordering::Relaxed) {
                    continue;
                }
                let now = Instant::now();
                if speaking != Some(turn) || due < now - FRAME * 5 {
                    // A new answer, or the pacer fell behind: restart the timeline now.
                    due = now;
                }
                tokio::time::sleep_until(due).await;
                if turn <= cancelled.load(Ordering::Relaxed) {
                    continue;
                }
                let rtp_time = (due - epoch).as_micros() as u64 * 48 / 1000;
                for out in mouths.all() {
                    let _ = out.send(AudioFrame {
                        opus: opus.clone(),
                        rtp_time,
                        received: None,
                    });
                }
                if speaking != Some(turn) {
                    speaking = Some(turn);
                    let _ = spoken.try_send(Spoken::FirstFrame {
                        turn,
                        at: Instant::now(),
                    });
                }
                due += FRAME;
            }
            Encoded::End { turn } => {
                if speaking == Some(turn) {
                    // The last frame plays for 20 ms after it was sent.
                    tokio::time::sleep_until(due).await;
                }
                speaking = None;
                let _ = spoken.send(Spoken::Finished { turn }).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{AudioEngine, AudioOut};
    use crate::voice::engine::VoiceEngine;

    fn tone(n: usize, rate: u32) -> Vec<i16> {
        (0..n)
            .map(|i| (8000.0 * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / rate as f32).sin()) as i16)
            .collect()
    }

    #[tokio::test]
    async fn an_answer_is_paced_in_20_ms_frames_to_every_peer() {
        let mouths = Mouths::default();
        let (ears, _ears_rx) = std::sync::mpsc::sync_channel(10);
        let engine = VoiceEngine::new(ears, mouths.clone());
        let (a, mut a_rx) = AudioOut::channel();
        let (b, mut b_rx) = AudioOut::channel();
        let _sa = engine.open("a", a);
        let _sb = engine.open("b", b);
        let (spoken_tx, mut spoken) = mpsc::channel(8);
        let (mouth, _thread) = start(mouths, spoken_tx).expect("start");
        let started = Instant::now();
        assert!(mouth.say(Speech::Begin { turn: 1, rate: 24_000 }).await);
        // 200 ms at 24 kHz, in two chunks: 10 frames.
        let pcm = tone(4800, 24_000);
        assert!(
            mouth
                .say(Speech::Pcm {
                    turn: 1,
                    samples: pcm[..1000].to_vec()
                })
                .await
        );
        assert!(
            mouth
                .say(Speech::Pcm {
                    turn: 1,
                    samples: pcm[1000..].to_vec()
                })
                .await
        );
        assert!(mouth.say(Speech::End { turn: 1 }).await);
        let first = spoken.recv().await.expect("first frame");
        assert!(matches!(first, Spoken::FirstFrame { turn: 1, .. }));
        assert_eq!(spoken.recv().await, Some(Spoken::Finished { turn: 1 }));
        let elapsed = started.elapsed();
        let mut times = Vec::new();
        while let Ok(f) = a_rx.try_recv() {
            times.push(f.rtp_time);
        }
        let mut b_count = 0;
        while b_rx.try_recv().is_ok() {
            b_count += 1;
        }
        assert!((10..=11).contains(&times.len()), "{} frames", times.len());
        assert_eq!(b_count, times.len(), "every peer hears the same answer");
        assert!(times.windows(2).all(|w| w[1] - w[0] == 960), "{times:?}");
        assert!(elapsed >= Duration::from_millis(180), "paced, not bursted: {elapsed:?}");
    }

    #[tokio::test]
    async fn a_cancelled_answer_stops_at_the_next_frame() {
        let mouths = Mouths::default();
        let (ears, _ears_rx) = std::sync::mpsc::sync_channel(10);
        let engine = VoiceEngine::new(ears, mouths.clone());
        let (a, mut a_rx) = AudioOut::channel();
        let _sa = engine.open("a", a);
        let (spoken_tx, mut spoken) = mpsc::channel(8);
        let (mouth, _thread) = start(mouths, spoken_tx).expect("start");
        assert!(mouth.say(Speech::Begin { turn: 7, rate: 24_000 }).await);
        // 2 s of answer.
        assert!(
            mouth
                .say(Speech::Pcm {
                    turn: 7,
                    samples: tone(48_000, 24_000)
                })
                .await
        );
        assert!(mouth.say(Speech::End { turn: 7 }).await);
        assert!(matches!(spoken.recv().await, Some(Spoken::FirstFrame { turn: 7, .. })));
        tokio::time::sleep(Duration::from_millis(100)).await;
        mouth.cancel(7);
        let cancelled_at = Instant::now();
        assert_eq!(spoken.recv().await, Some(Spoken::Finished { turn: 7 }));
        let mut sent = 0;
        while a_rx.try_recv().is_ok() {
            sent += 1;
        }
        assert!(sent < 12, "{sent} frames went out of a 100-frame answer");
        assert!(cancelled_at.elapsed() < Duration::from_millis(200));
    }
}
