//! Hearing when a human speaks: an energy-based speech and end-of-turn detector.
//!
//! [`Vad`] is a pure state machine with no clock of its own: it is fed the call's 48 kHz
//! PCM one frame at a time (20 ms, 960 samples, as Opus decodes it; other lengths are
//! counted as what they are) and time is the audio it has been fed.
//!
//! A frame is *voiced* when its level ([`level_dbfs`]) is above both the noise floor plus
//! [`VadConfig::margin_db`] and [`VadConfig::absolute_floor_dbfs`]. The noise floor follows
//! the quiet: it starts at the first frame's level (at most the absolute floor, so a call
//! that opens with speech is still heard), falls quickly towards quieter frames (~100 ms time
//! constant) and rises slowly towards louder ones ([`VadConfig::noise_rise_db_per_s`]), so a
//! steady hum that appears mid-call is absorbed within seconds while speech, with its pauses
//! between words, keeps pulling the floor back down. It never goes below the level where it
//! would stop mattering (absolute floor − margin), so it cannot sink into digital silence
//! and then take a minute to climb back when a muted microphone opens.
//!
//! Speech starts after [`VadConfig::start_ms`] of consecutive voiced frames:
//! [`TurnEvent::SpeechStarted`] at once (it drives barge-in). The turn ends after
//! [`VadConfig::end_silence_ms`] of unvoiced frames ([`EndReason::Silence`]), or when the
//! utterance reaches [`VadConfig::max_utterance_ms`] ([`EndReason::MaxLength`]; if the human
//! goes on, the next frames start a new utterance and a new `SpeechStarted`). An utterance with
//! less than [`VadConfig::min_speech_ms`] of voiced frames (a cough, a click) ends without
//! an event: `SpeechStarted` may have fired for it, `TurnEnded` does not.
//!
//! Memory is bounded: while idle it holds the pre-roll and the voiced run being judged; in
//! an utterance, at most pre-roll + `max_utterance_ms` of audio.

use std::collections::VecDeque;

use super::frames::SAMPLE_RATE;

/// The level reported for digital silence (and an empty frame).
pub const SILENCE_DBFS: f32 = -100.0;

/// Samples per millisecond at 48 kHz.
const PER_MS: usize = (SAMPLE_RATE / 1_000) as usize;

/// Time constant of the noise floor's fall towards quieter frames, in seconds.
const FALL_TAU_S: f32 = 0.1;

/// The RMS level of `frame` in dBFS: 0 dBFS is a full-scale square wave, a full-scale sine
/// is about −3; [`SILENCE_DBFS`] for silence or an empty frame.
pub fn level_dbfs(frame: &[i16]) -> f32 {
    if frame.is_empty() {
        return SILENCE_DBFS;
    }
    let energy: f64 = frame.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    let rms = (energy / frame.len() as f64).sqrt();
    if rms <= 0.0 {
        return SILENCE_DBFS;
    }
    (20.0 * (rms / 32_768.0).log10()).max(f64::from(SILENCE_DBFS)) as f32
}

/// The detector's tuning; every duration in milliseconds of audio.
#[derive(Debug, Clone, PartialEq)]
pub struct VadConfig {
    /// Voiced audio needed, without a break, before speech counts as started (60).
    pub start_ms: u32,
    /// Unvoiced audio that ends the turn (700).
    pub end_silence_ms: u32,
    /// Voiced audio an utterance needs to be reported at all (200).
    pub min_speech_ms: u32,
    /// The longest utterance, from its first voiced frame (15000).
    pub max_utterance_ms: u32,
    /// Audio kept from before speech started, for the soft onset the threshold missed (200).
    pub pre_roll_ms: u32,
    /// Trailing silence kept at the end of a turn (200).
    pub tail_ms: u32,
    /// How far above the noise floor a frame must be to be voiced, in dB (10).
    pub margin_db: f32,
    /// A frame at or below this is never voiced, in dBFS (−45).
    pub absolute_floor_dbfs: f32,
    /// How fast the noise floor climbs towards louder frames, in dB per second (1).
    pub noise_rise_db_per_s: f32,
}

impl Default for VadConfig {
    fn default() -> Self {
        Self {
            start_ms: 60,
            end_silence_ms: 700,
            min_speech_ms: 200,
            max_utterance_ms: 15_000,
            pre_roll_ms: 200,
            tail_ms: 200,
            margin_db: 10.0,
            absolute_floor_dbfs: -45.0,
            noise_rise_db_per_s: 1.0,
        }
    }
}

/// Why a turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The human stopped for [`VadConfig::end_silence_ms`].
    Silence,
    /// The utterance reached [`VadConfig::max_utterance_ms`].
    MaxLength,
}

/// What one frame changed.
#[derive(Debug, Clone, PartialEq)]
pub enum TurnEvent {
    /// A human started speaking (stop the AI talking: barge-in).
    SpeechStarted,
    /// The human's turn is over: what they said, for speech-to-text.
    TurnEnded {
        /// 48 kHz mono samples: pre-roll, the utterance, at most [`VadConfig::tail_ms`] of the silence after.
        audio: Vec<i16>,
        /// Why it ended.
        reason: EndReason,
        /// Voiced audio in the utterance, in ms.
        speech_ms: u32,
        /// The unvoiced run at the end (≈ `end_silence_ms` for [`EndReason::Silence`]), in ms.
        silence_waited_ms: u32,
    },
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Waiting for speech; `run` voiced samples in a row so far.
    Idle { run: usize },
    /// In an utterance: samples since its first voiced one, voiced samples, the current unvoiced run.
    Speaking {
        since_start: usize,
        voiced: usize,
        silence: usize,
    },
}

/// The speech / turn detector for one human's audio.
#[derive(Debug, Clone)]
pub struct Vad {
    config: VadConfig,
    start: usize,
    end_silence: usize,
    min_speech: usize,
    max_utterance: usize,
    pre_roll: usize,
    tail: usize,
    noise_floor: Option<f32>,
    last_level: f32,
    state: State,
    /// While idle: the pre-roll and the voiced run being judged.
    recent: VecDeque<i16>,
    /// While speaking: the utterance so far.
    utterance: Vec<i16>,
}

impl Default for Vad {
    fn default() -> Self {
        Self::new(VadConfig::default())
    }
}

impl Vad {
    /// A detector with `config`.
    pub fn new(config: VadConfig) -> Self {
        let samples = |ms: u32| {
            usize::try_from(ms)
                .unwrap_or(usize::MAX / PER_MS)
                .saturating_mul(PER_MS)
        };
        Self {
            start: samples(config.start_ms),
            end_silence: samples(config.end_silence_ms),
            min_speech: samples(config.min_speech_ms),
            max_utterance: samples(config.max_utterance_ms).max(1),
            pre_roll: samples(config.pre_roll_ms),
            tail: samples(config.tail_ms),
            config,
            noise_floor: None,
            last_level: SILENCE_DBFS,
            state: State::Idle { run: 0 },
            recent: VecDeque::new(),
            utterance: Vec::new(),
        }
    }

    /// The tuning in use.
    pub fn config(&self) -> &VadConfig {
        &self.config
    }

    /// Feeds the next frame; at most one event per frame.
    pub fn push(&mut self, frame: &[i16]) -> Option<TurnEvent> {
        if frame.is_empty() {
            return None;
        }
        let level = level_dbfs(frame);
        self.last_level = level;
        let lowest = self.config.absolute_floor_dbfs - self.config.margin_db;
        // The first frame sets the floor, at most the absolute floor: steady background from the
        // call's start is not speech, and speech from its start still clears the threshold.
        self.noise_floor
            .get_or_insert(level.min(self.config.absolute_floor_dbfs).max(lowest));
        let voiced = level > self.threshold_dbfs();
        self.track_noise(level, frame.len());
        match self.state {
            State::Idle { run } => self.idle(frame, voiced, run),
            State::Speaking {
                since_start,
                voiced: v,
                silence,
            } => self.speaking(frame, voiced, since_start, v, silence),
        }
    }

    /// The level of the last frame pushed, in dBFS (for heartbeats).
    pub fn last_level_dbfs(&self) -> f32 {
        self.last_level
    }

    /// The current noise floor estimate in dBFS ([`SILENCE_DBFS`] before any frame).
    pub fn noise_floor_dbfs(&self) -> f32 {
        self.noise_floor.unwrap_or(SILENCE_DBFS)
    }

    /// The level a frame must exceed now to be voiced, in dBFS.
    pub fn threshold_dbfs(&self) -> f32 {
        (self.noise_floor_dbfs() + self.config.margin_db).max(self.config.absolute_floor_dbfs)
    }

    /// Whether an utterance is under way (speech started, turn not ended).
    pub fn is_speaking(&self) -> bool {
        matches!(self.state, State::Speaking { .. })
    }

    /// Samples of audio held now (bounded; see the module doc).
    pub fn buffered_samples(&self) -> usize {
        self.recent.len() + self.utterance.len()
    }

    /// Forgets the audio and the utterance under way; keeps the noise floor (same room).
    pub fn reset(&mut self) {
        self.state = State::Idle { run: 0 };
        self.recent.clear();
        self.utterance = Vec::new();
    }

    fn track_noise(&mut self, level: f32, samples: usize) {
        let seconds = samples as f32 / SAMPLE_RATE as f32;
        let lowest = self.config.absolute_floor_dbfs - self.config.margin_db;
        let floor = self.noise_floor.get_or_insert(lowest);
        if level < *floor {
            *floor += (level - *floor) * (1.0 - (-seconds / FALL_TAU_S).exp());
        } else {
            *floor += (level - *floor).min(self.config.noise_rise_db_per_s * seconds);
        }
        *floor = floor.max(lowest);
    }

    fn idle(&mut self, frame: &[i16], voiced: bool, run: usize) -> Option<TurnEvent> {
        let run = if voiced { run + frame.len() } else { 0 };
        self.recent.extend(frame);
        let keep = self.pre_roll + run;
        if self.recent.len() > keep {
            self.recent.drain(..self.recent.len() - keep);
        }
        if !voiced || run < self.start {
            self.state = State::Idle { run };
            return None;
        }
        // A second to start with; `append` grows it, never past the bound.
        self.utterance =
            Vec::with_capacity((self.recent.len() + 1_000 * PER_MS).min(self.pre_roll + self.max_utterance));
        self.utterance.extend(self.recent.drain(..));
        self.state = State::Speaking {
            since_start: run,
            voiced: run,
            silence: 0,
        };
        Some(TurnEvent::SpeechStarted)
    }

    fn speaking(
        &mut self,
        frame: &[i16],
        is_voiced: bool,
        since_start: usize,
        voiced: usize,
        silence: usize,
    ) -> Option<TurnEvent> {
        let take = frame.len().min(self.max_utterance.saturating_sub(since_start));
        self.append(&frame[..take]);
        let since_start = since_start + take;
        let (voiced, silence) = if is_voiced {
            (voiced + take, 0)
        } else {
            (voiced, silence + take)
        };
        let reason = if silence >= self.end_silence {
            EndReason::Silence
        } else if since_start >= self.max_utterance {
            EndReason::MaxLength
        } else {
            self.state = State::Speaking {
                since_start,
                voiced,
                silence,
            };
            return None;
        };
        let mut audio = std::mem::take(&mut self.utterance);
        audio.truncate(audio.len() - silence.saturating_sub(self.tail).min(audio.len()));
        self.state = State::Idle { run: 0 };
        // What did not fit in the utterance is the next one's pre-roll.
        self.recent.extend(&frame[take..]);
        if voiced < self.min_speech {
            return None;
        }
        let ms = |samples: usize| u32::try_from(samples / PER_MS).unwrap_or(u32::MAX);
        Some(TurnEvent::TurnEnded {
            audio,
            reason,
            speech_ms: ms(voiced),
            silence_waited_ms: ms(silence),
        })
    }

    /// Appends to the utterance without ever growing its buffer past pre-roll + max utterance.
    fn append(&mut self, samples: &[i16]) {
        let needed = self.utterance.len() + samples.len();
        if needed > self.utterance.capacity() {
            let bound = self.pre_roll + self.max_utterance;
            let target = (self.utterance.capacity() * 2).clamp(needed, bound.max(needed));
            self.utterance.reserve_exact(target - self.utterance.len());
        }
        self.utterance.extend_from_slice(samples);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::voice::dsp::frames::FRAME_SAMPLES;

    /// Frames of a 440 Hz tone at `dbfs` (RMS), continuing its phase across frames.
    fn tone(dbfs: f32, ms: usize) -> Vec<Vec<i16>> {
        let amplitude = 32_768.0 * 10f64.powf(f64::from(dbfs) / 20.0) * std::f64::consts::SQRT_2;
        let samples: Vec<i16> = (0..ms * PER_MS)
            .map(|i| (amplitude * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / 48_000.0).sin()) as i16)
            .collect();
        samples.chunks(FRAME_SAMPLES).map(<[i16]>::to_vec).collect()
    }

    /// Frames of uniform white noise at `dbfs` (RMS).
    fn noise(rng: &mut fastrand::Rng, dbfs: f32, ms: usize) -> Vec<Vec<i16>> {
        let a = 32_768.0 * 10f32.powf(dbfs / 20.0) * 3f32.sqrt();
        let bound = a as i16;
        (0..ms / 20)
            .map(|_| (0..FRAME_SAMPLES).map(|_| rng.i16(-bound..=bound)).collect())
            .collect()
    }

    fn silence(ms: usize) -> Vec<Vec<i16>> {
        vec![vec![0; FRAME_SAMPLES]; ms / 20]
    }

    fn mix(a: &[Vec<i16>], b: &[Vec<i16>]) -> Vec<Vec<i16>> {
        a.iter()
            .zip(b)
            .map(|(x, y)| x.iter().zip(y).map(|(p, q)| p.saturating_add(*q)).collect())
            .collect()
    }

    /// Every event with the index of the frame that caused it.
    fn run(vad: &mut Vad, frames: &[Vec<i16>]) -> Vec<(usize, TurnEvent)> {
        frames
            .iter()
            .enumerate()
            .filter_map(|(i, f)| vad.push(f).map(|e| (i, e)))
            .collect()
    }

    fn ended(event: &TurnEvent) -> Option<(usize, EndReason, u32, u32)> {
        match event {
            TurnEvent::TurnEnded {
                audio,
                reason,
                speech_ms,
                silence_waited_ms,
            } => Some((audio.len(), *reason, *speech_ms, *silence_waited_ms)),
            TurnEvent::SpeechStarted => None,
        }
    }

    #[test]
    fn levels_are_rms_in_dbfs() {
        assert_eq!(level_dbfs(&[]), SILENCE_DBFS);
        assert_eq!(level_dbfs(&[0; 960]), SILENCE_DBFS);
        assert!(level_dbfs(&[i16::MIN; 960]).abs() < 0.01, "full-scale square is 0 dBFS");
        let sine = tone(-3.0103, 20).remove(0);
        assert!(
            (level_dbfs(&sine) + 3.01).abs() < 0.1,
            "a -3 dBFS sine: {}",
            level_dbfs(&sine)
        );
        let quiet = tone(-40.0, 20).remove(0);
        assert!((level_dbfs(&quiet) + 40.0).abs() < 0.1);
    }

    #[test]
    fn silence_gives_nothing() {
        let mut vad = Vad::default();
        assert!(run(&mut vad, &silence(5_000)).is_empty());
        assert!(!vad.is_speaking());
        assert!(vad.buffered_samples() <= 200 * PER_MS, "idle holds only the pre-roll");
    }

    #[test]
    fn a_second_of_tone_then_silence_is_one_turn_with_pre_roll_and_a_short_tail() {
        let frames = [silence(500), tone(-20.0, 1_000), silence(800)].concat();
        let events = run(&mut Vad::default(), &frames);
        assert_eq!(events.len(), 2, "{events:?}");
        let (started_at, ref started) = events[0];
        assert_eq!(*started, TurnEvent::SpeechStarted);
        assert!(
            (25..30).contains(&started_at),
            "started {} ms into the tone",
            (started_at - 25 + 1) * 20
        );
        let (ended_at, ref end) = events[1];
        let (len, reason, speech_ms, waited) = ended(end).expect("turn ended");
        assert_eq!(reason, EndReason::Silence);
        let silent_ms = (ended_at - 75 + 1) * 20;
        assert!(
            (700..=740).contains(&silent_ms),
            "ended after {silent_ms} ms of silence"
        );
        assert_eq!(speech_ms, 1_000);
        assert!((700..=740).contains(&waited));
        let ms = len / PER_MS;
        assert!(
            (1_200..=1_400).contains(&ms),
            "audio is tone + pre-roll + at most 200 ms: {ms} ms"
        );
    }

    #[test]
    fn the_turn_audio_is_the_tone_between_pre_roll_and_tail() {
        let frames = [silence(500), tone(-20.0, 1_000), silence(800)].concat();
        let mut vad = Vad::default();
        let audio = run(&mut vad, &frames)
            .into_iter()
            .find_map(|(_, e)| match e {
                TurnEvent::TurnEnded { audio, .. } => Some(audio),
                TurnEvent::SpeechStarted => None,
            })
            .expect("a turn");
        let frame_ms = |ms: usize| &audio[ms * PER_MS..(ms + 20) * PER_MS];
        assert_eq!(
            level_dbfs(frame_ms(0)),
            SILENCE_DBFS,
            "starts with the pre-roll's silence"
        );
        assert!(
            (level_dbfs(frame_ms(200)) + 20.0).abs() < 0.5,
            "the tone follows 200 ms in"
        );
        assert_eq!(
            level_dbfs(&audio[audio.len() - 960..]),
            SILENCE_DBFS,
            "ends in the tail's silence"
        );
        assert!(
            vad.buffered_samples() <= 200 * PER_MS,
            "after the turn only a pre-roll is held"
        );
    }

    #[test]
    fn a_click_is_not_a_turn_but_the_speech_after_it_is() {
        let frames = [
            silence(500),
            tone(-15.0, 100),
            silence(1_000),
            tone(-20.0, 600),
            silence(800),
        ]
        .concat();
        let events = run(&mut Vad::default(), &frames);
        let ends: Vec<_> = events.iter().filter_map(|(i, e)| ended(e).map(|d| (*i, d))).collect();
        assert_eq!(ends.len(), 1, "only the real speech ends a turn: {events:?}");
        assert!(ends[0].0 > 25 + 5 + 50, "the turn is the later speech");
        assert_eq!(ends[0].1.2, 600);
    }

    #[test]
    fn sixteen_seconds_of_tone_end_at_fifteen_and_start_again() {
        let frames = [silence(500), tone(-20.0, 16_000)].concat();
        let mut vad = Vad::default();
        let mut events = Vec::new();
        let mut most_held = 0;
        for (i, frame) in frames.iter().enumerate() {
            if let Some(e) = vad.push(frame) {
                events.push((i, e));
            }
            most_held = most_held.max(vad.buffered_samples());
        }
        assert_eq!(events[0], (27, TurnEvent::SpeechStarted));
        let (at, ref end) = events[1];
        let (len, reason, speech_ms, _) = ended(end).expect("turn ended");
        assert_eq!(reason, EndReason::MaxLength);
        assert_eq!(at, 25 + 750 - 1, "ends on the frame that completes 15 s");
        assert_eq!(speech_ms, 15_000);
        assert_eq!(len, (15_000 + 200) * PER_MS, "15 s and the pre-roll");
        assert!(most_held <= (15_000 + 200) * PER_MS, "held {most_held} samples");
        assert_eq!(
            events[2],
            (at + 3, TurnEvent::SpeechStarted),
            "the speech goes on as a new utterance"
        );
        assert!(vad.is_speaking());
    }

    #[test]
    fn low_level_noise_never_triggers() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut vad = Vad::default();
        assert!(run(&mut vad, &noise(&mut rng, -50.0, 10_000)).is_empty());
        // Background above the absolute floor, from the call's first frame, is not speech either.
        let mut vad = Vad::default();
        assert!(run(&mut vad, &noise(&mut rng, -38.0, 10_000)).is_empty());
        assert!(
            (vad.noise_floor_dbfs() + 38.0).abs() < 1.0,
            "the floor found the noise: {}",
            vad.noise_floor_dbfs()
        );
    }

    #[test]
    fn speech_modestly_above_steady_background_is_heard() {
        let mut rng = fastrand::Rng::with_seed(11);
        let background = noise(&mut rng, -40.0, 5_000);
        let speech = mix(&tone(-28.0, 1_000), &background[150..200]);
        let frames = [&background[..150], &speech[..], &background[200..]].concat();
        let events = run(&mut Vad::default(), &frames);
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(events[0].1, TurnEvent::SpeechStarted);
        assert!((150..155).contains(&events[0].0));
        let (_, reason, speech_ms, _) = ended(&events[1].1).expect("turn ended");
        assert_eq!(reason, EndReason::Silence);
        assert!((900..=1_000).contains(&speech_ms), "{speech_ms} ms voiced");
    }

    #[test]
    fn a_hum_that_starts_mid_call_is_absorbed_into_the_floor() {
        let mut rng = fastrand::Rng::with_seed(3);
        let frames = [silence(1_000), noise(&mut rng, -35.0, 30_000)].concat();
        let mut vad = Vad::default();
        let events = run(&mut vad, &frames);
        assert!(!vad.is_speaking(), "the hum stopped counting as speech");
        let last = events.last().map_or(0, |(i, _)| *i);
        assert!(last < 50 + 20 * 50, "nothing after the first 20 s of hum: {events:?}");
    }

    #[test]
    fn reset_drops_the_utterance_under_way() {
        let mut vad = Vad::default();
        run(&mut vad, &[silence(200), tone(-20.0, 500)].concat());
        assert!(vad.is_speaking());
        vad.reset();
        assert!(!vad.is_speaking());
        assert_eq!(vad.buffered_samples(), 0);
        assert!(
            run(&mut vad, &silence(1_000)).is_empty(),
            "no turn ends for audio that was dropped"
        );
    }
}
