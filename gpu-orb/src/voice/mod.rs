//! The AI's voice: hears the call, speaks into it.
//!
//! - [`dsp`]: the signal-processing leaves (Opus, resampling, turn detection, WAV, 20 ms framing).

pub mod dsp;
