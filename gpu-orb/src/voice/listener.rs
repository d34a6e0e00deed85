//! The listener thread ("voice-ears"): decodes each peer's Opus, finds speech and the
//! end of each turn ([`Vad`]), and hands finished utterances, already at 16 kHz in a
//! WAV for speech-to-text, to the conductor. Audio work never runs on the orb's
//! runtime; the thread blocks only on its own input queue.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::dsp::{EndReason, FrameSlicer, OpusDecoder, TurnEvent, Vad, VadConfig, resample, wav_mono_16bit};
use super::engine::EarInput;

/// Rate of the speech-to-text upload.
pub const STT_RATE: u32 = 16_000;
/// Connections silent this long are forgotten (a lost `Closed`).
const FORGET_AFTER: Duration = Duration::from_secs(60);

/// What the listener tells the conductor.
#[derive(Debug)]
pub enum Heard {
    /// `peer` started speaking (barge-in).
    SpeechStarted {
        /// The speaker's userId.
        peer: Arc<str>,
    },
    /// `peer` finished an utterance.
    Utterance(Utterance),
}

/// A finished utterance.
#[derive(Debug)]
pub struct Utterance {
    /// The speaker's userId.
    pub peer: Arc<str>,
    /// The audio as a 16 kHz mono WAV.
    pub wav: Vec<u8>,
    /// Its length, ms.
    pub audio_ms: u64,
    /// Voiced time in it, ms.
    pub speech_ms: u32,
    /// The silence the detector waited for before deciding the turn had ended, ms.
    pub silence_waited_ms: u32,
    /// Whether it ended at the maximum length rather than in silence.
    pub cut_at_max: bool,
    /// When the end of turn was decided.
    pub decided: Instant,
}

struct Ear {
    peer: Arc<str>,
    decoder: OpusDecoder,
    slicer: FrameSlicer,
    vad: Vad,
    last: std::time::Instant,
}

/// Starts the thread: it reads `input` until every sender is gone.
pub fn spawn(
    input: Receiver<EarInput>,
    heard: mpsc::Sender<Heard>,
    config: VadConfig,
    paused: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("voice-ears".into())
        .spawn(move || run(&input, &heard, &config, &paused))
}

fn run(input: &Receiver<EarInput>, heard: &mpsc::Sender<Heard>, config: &VadConfig, paused: &AtomicBool) {
    let mut ears: HashMap<u64, Ear> = HashMap::new();
    loop {
        match input.recv_timeout(Duration::from_secs(1)) {
            Ok(EarInput::Frame { id, peer, opus }) => {
                if paused.load(Ordering::Relaxed) {
                    // Paused: hear nothing, and start afresh when listening again.
                    ears.remove(&id);
                    continue;
                }
                let ear = match ears.entry(id) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => match OpusDecoder::new() {
                        Ok(decoder) => e.insert(Ear {
                            peer,
                            decoder,
                            slicer: FrameSlicer::new(),
                            vad: Vad::new(config.clone()),
                            last: std::time::Instant::now(),
                        }),
                        Err(error) => {
                            tracing::error!(%error, "no Opus decoder");
                            continue;
                        }
                    },
                };
                ear.last = std::time::Instant::now();
                hear(ear, &opus, heard);
            }
            Ok(EarInput::Closed(id)) => {
                ears.remove(&id);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        ears.retain(|_, ear| ear.last.elapsed() < FORGET_AFTER);
    }
}

fn hear(ear: &mut Ear, opus: &[u8], heard: &mpsc::Sender<Heard>) {
    let pcm = match ear.decoder.decode(opus) {
        Ok(pcm) => pcm.to_vec(),
        Err(error) => {
            tracing::debug!(peer = %ear.peer, %error, "undecodable Opus frame skipped");
            return;
        }
    };
    for frame in ear.slicer.push(&pcm) {
        let Some(event) = ear.vad.push(&frame) else { continue };
        let message = match event {
            TurnEvent::SpeechStarted => Heard::SpeechStarted { peer: ear.peer.clone() },
            TurnEvent::TurnEnded {
                audio,
                reason,
                speech_ms,
                silence_waited_ms,
            } => {
                let decided = Instant::now();
                let audio_ms = audio.len() as u64 * 1000 / 48_000;
                let low = resample(&audio, 48_000, STT_RATE).unwrap_or_default();
                Heard::Utterance(Utterance {
                    peer: ear.peer.clone(),
                    wav: wav_mono_16bit(&low, STT_RATE),
                    audio_ms,
                    speech_ms,
                    silence_waited_ms,
                    cut_at_max: reason == EndReason::MaxLength,
                    decided,
                })
            }
        };
        if heard.try_send(message).is_err() {
            tracing::warn!(peer = %ear.peer, "voice conductor behind: a speech event was dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::voice::dsp::{FRAME_SAMPLES, Frame, OpusEncoder, parse_wav};

    fn tone(amplitude: f32, n: usize) -> Frame {
        let mut f = [0i16; FRAME_SAMPLES];
        for (i, s) in f.iter_mut().enumerate() {
            let t = (n * FRAME_SAMPLES + i) as f32 / 48_000.0;
            *s = (amplitude * 32767.0 * (2.0 * std::f32::consts::PI * 440.0 * t).sin()) as i16;
        }
        f
    }

    #[tokio::test]
    async fn a_spoken_second_then_silence_becomes_one_utterance_at_16_khz() {
        let (tx, rx) = std::sync::mpsc::sync_channel(4000);
        let (heard_tx, mut heard) = mpsc::channel(8);
        let thread = spawn(rx, heard_tx, VadConfig::default(), Arc::default()).expect("thread");
        let mut encoder = OpusEncoder::new().expect("encoder");
        let peer: Arc<str> = Arc::from("coach-1");
        for n in 0..100 {
            let frame = if n < 50 { tone(0.3, n) } else { [0i16; FRAME_SAMPLES] };
            let opus = encoder.encode(&frame).expect("encode");
            tx.send(EarInput::Frame {
                id: 1,
                peer: peer.clone(),
                opus: Arc::from(opus),
            })
            .expect("send");
        }
        let started = heard.recv().await.expect("speech started");
        assert!(matches!(started, Heard::SpeechStarted { .. }), "{started:?}");
        let Some(Heard::Utterance(u)) = heard.recv().await else {
            panic!("no utterance")
        };
        assert_eq!(&*u.peer, "coach-1");
        assert!((1000..1600).contains(&u.audio_ms), "audio {} ms", u.audio_ms);
        let (rate, channels, samples) = parse_wav(&u.wav).expect("wav");
        assert_eq!((rate, channels), (16_000, 1));
        assert!(
            (samples.len() as i64 - (u.audio_ms * 16) as i64).abs() <= 32,
            "{} samples",
            samples.len()
        );
        drop(tx);
        thread.join().expect("joined");
    }

    #[tokio::test]
    async fn paused_hears_nothing() {
        let (tx, rx) = std::sync::mpsc::sync_channel(4000);
        let (heard_tx, mut heard) = mpsc::channel(8);
        let thread = spawn(rx, heard_tx, VadConfig::default(), Arc::new(AtomicBool::new(true))).expect("thread");
        let mut encoder = OpusEncoder::new().expect("encoder");
        for n in 0..100 {
            let opus = encoder.encode(&tone(0.3, n)).expect("encode");
            tx.send(EarInput::Frame {
                id: 1,
                peer: Arc::from("p"),
                opus: Arc::from(opus),
            })
            .expect("send");
        }
        drop(tx);
        thread.join().expect("joined");
        assert!(heard.try_recv().is_err());
    }
}
