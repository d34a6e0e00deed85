//! The voice pipeline's signal processing: pure, synchronous leaves with no I/O and no clock.
//!
//! Audio inside the orb is 48 kHz mono i16 in 20 ms frames of 960 samples, the call's own
//! format; the speech providers' rates are reached through [`resample`].
//!
//! - [`codec`]: Opus in ([`OpusDecoder`]: any browser packet to mono PCM) and out ([`OpusEncoder`]).
//! - [`resample`]: [`Resampler`], streaming rate conversion (16/22.05/24/44.1/48 kHz).
//! - [`vad`]: [`Vad`], the speech-start / end-of-turn detector; [`level_dbfs`].
//! - [`wav`]: [`wav_mono_16bit`] for speech-to-text uploads, [`parse_wav`].
//! - [`frames`]: [`FrameSlicer`], PCM chunks of any length into 20 ms frames.

pub mod codec;
pub mod frames;
pub mod resample;
pub mod vad;
pub mod wav;

pub use codec::{CodecError, OpusDecoder, OpusEncoder};
pub use frames::{FRAME_MS, FRAME_SAMPLES, Frame, FrameSlicer, SAMPLE_RATE};
pub use resample::{RateError, Resampler, resample};
pub use vad::{EndReason, TurnEvent, Vad, VadConfig, level_dbfs};
pub use wav::{parse_wav, wav_mono_16bit};
