//! The orb's voice: hearing participants and speaking its answers into the call.
//!
//! - [`providers`]: speech-to-text and text-to-speech behind small object-safe
//!   traits (OpenAI-compatible and ElevenLabs), with bounded retries.
//! - [`settings`]: the voice settings and the decision whether voice runs.

pub mod providers;
pub mod settings;
