//! The speech providers of the voice pipeline: [`SpeechToText`] and
//! [`TextToSpeech`], two small object-safe traits the pipeline's tokio tasks
//! hold as `Arc<dyn …>`, and their HTTP implementations:
//!
//! - [`OpenAiStt`]: OpenAI-compatible `POST {base}/audio/transcriptions` (multipart WAV).
//! - [`OpenAiTts`]: OpenAI-compatible `POST {base}/audio/speech`, `pcm` (24 kHz).
//! - [`ElevenLabsTts`]: ElevenLabs `POST {base}/v1/text-to-speech/{voice}/stream`, `pcm_24000`.
//!
//! [`build`] makes the pair from [`ProviderSettings`] (the `VoicePlan::On` of
//! [`crate::voice::settings`]).
//!
//! # Bounds
//! Every call makes at most `1 + ORB_PROVIDER_RETRIES` attempts ([`with_retries`]):
//! it retries on a timeout, a 5xx or a connection error, never on a 4xx nor
//! an unusable answer. Each attempt is bounded by `ORB_PROVIDER_TIMEOUT`:
//! speech-to-text the whole request, text-to-speech until the answer's status
//! arrives; then each gap between two audio chunks has the same bound. Audio
//! already handed out is never re-requested: a stream failing midway is
//! reported, not retried. Answers are size-capped.
//!
//! # Error codes
//! [`ProviderError::code`] gives the stable code for the room's `ai_status` errors:
//! `stt_timeout`, `stt_failed`, `tts_timeout`, `tts_failed`.
//!
//! Keys are [`shared::secret::Secret`]s: sent in a header, never logged.

mod elevenlabs_tts;
mod error;
mod http;
mod openai_stt;
mod openai_tts;
mod pcm;
mod retry;
#[cfg(test)]
mod test_server;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use elevenlabs_tts::ElevenLabsTts;
pub use error::{ProviderError, Side};
pub use http::ERROR_BODY_CHARS;
pub use openai_stt::{OpenAiStt, multipart_body};
pub use openai_tts::OpenAiTts;
pub use pcm::{MAX_PCM_BYTES, PcmStream};
pub use retry::{MAX_ATTEMPTS, MAX_DELAY, retry_delay, with_retries};

use crate::voice::settings::{ProviderSettings, TtsSettings};

/// Sample rate of the providers' PCM answers (OpenAI `pcm`, ElevenLabs `pcm_24000`).
pub const TTS_RATE: u32 = 24_000;

/// What a provider call returns: a boxed future, so that the traits stay object-safe.
pub type ProviderFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, ProviderError>> + Send + 'a>>;

/// Turns an utterance into text.
pub trait SpeechToText: Send + Sync + 'static {
    /// The transcript of `wav` (a 16-bit mono WAV file; the pipeline uploads
    /// 16 kHz), trimmed; empty when nothing was said.
    fn transcribe(&self, wav: Vec<u8>) -> ProviderFuture<'_, String>;
}

/// Turns the AI's answer into speech.
pub trait TextToSpeech: Send + Sync + 'static {
    /// `text` spoken, as a stream of PCM chunks that starts before the whole
    /// answer is synthesised. Empty (or blank) text is an empty stream, without a call.
    fn speak<'a>(&'a self, text: &'a str) -> ProviderFuture<'a, PcmStream>;
}

/// The two providers of one orb.
#[derive(Clone)]
pub struct Providers {
    /// Speech-to-text.
    pub stt: Arc<dyn SpeechToText>,
    /// Text-to-speech.
    pub tts: Arc<dyn TextToSpeech>,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Providers")
    }
}

/// Builds the providers `settings` names (each with its own HTTP client).
pub fn build(settings: &ProviderSettings) -> Result<Providers, reqwest::Error> {
    let stt: Arc<dyn SpeechToText> = Arc::new(OpenAiStt::new(settings.stt.clone(), settings.call)?);
    let tts: Arc<dyn TextToSpeech> = match &settings.tts {
        TtsSettings::OpenAi(openai) => Arc::new(OpenAiTts::new(openai.clone(), settings.call)?),
        TtsSettings::ElevenLabs(eleven) => Arc::new(ElevenLabsTts::new(eleven.clone(), settings.call)?),
    };
    Ok(Providers { stt, tts })
}
