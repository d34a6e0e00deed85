//! The AI's voice: hears the call, understands, and answers aloud.
//!
//! - [`conductor`]: the task owning the voice's state: utterance → text → brain → speech, barge-in, health.
//! - [`dsp`]: the signal-processing leaves (Opus, resampling, turn detection, WAV, 20 ms framing).
//! - [`engine`]: [`VoiceEngine`], the media seam's engine: peers' frames to the listener, their senders kept.
//! - [`listener`]: the "voice-ears" thread: decode, detect turns, finished utterances as 16 kHz WAV.
//! - [`speaker`]: the "voice-mouth" thread and the pacer: an answer's PCM as 20 ms Opus frames to every human.
//! - [`turns`]: whether the AI answers an utterance (`ORB_VOICE_REPLY`).
//! - [`transcript`]: the bounded transcript (brain context, `session_summary`).
//! - [`providers`]: speech-to-text and text-to-speech behind small object-safe
//!   traits (OpenAI-compatible and ElevenLabs), with bounded retries.
//! - [`settings`]: the voice settings and the decision whether voice runs.

pub mod conductor;
pub mod dsp;
pub mod engine;
pub mod listener;
pub mod providers;
pub mod settings;
pub mod speaker;
pub mod transcript;
pub mod turns;

pub use engine::{Mouths, VoiceEngine};
