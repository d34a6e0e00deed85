//! Opus, the WebRTC audio codec, through libopus (the reference implementation): decoding
//! what a human sends to 48 kHz mono PCM, encoding what the AI says into 20 ms packets.
//!
//! A browser may send stereo Opus (`stereo=1` in the fmtp); a decoder created mono makes
//! libopus downmix, so callers always get mono. A corrupt payload is a [`CodecError`], never
//! a panic. A lost packet can be concealed ([`OpusDecoder::conceal`], libopus' PLC) or, when
//! the next packet carries in-band FEC (browsers send `useinbandfec=1`), recovered from it
//! ([`OpusDecoder::recover`]).

use super::frames::{FRAME_SAMPLES, Frame, SAMPLE_RATE};

/// The AI's bit rate: ample for wide-band speech, small next to the call's video.
pub const BITRATE: i32 = 32_000;

/// The longest Opus packet is 120 ms: 5760 samples per channel at 48 kHz.
const MAX_PACKET_SAMPLES: usize = 5_760;

/// libopus' recommended ceiling for one encoded packet.
const MAX_PACKET_BYTES: usize = 4_000;

/// libopus refused a payload or a setting.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// libopus' own error (`opus_decode: corrupted stream`, …).
    #[error("{0}")]
    Opus(#[from] opus::Error),
}

/// Decodes one peer's Opus packets to 48 kHz mono i16; keeps libopus' state between packets,
/// so one decoder per incoming stream.
pub struct OpusDecoder {
    inner: opus::Decoder,
    pcm: Box<[i16; MAX_PACKET_SAMPLES]>,
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusDecoder").finish_non_exhaustive()
    }
}

impl OpusDecoder {
    /// A 48 kHz mono decoder.
    pub fn new() -> Result<Self, CodecError> {
        Ok(Self {
            inner: opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono)?,
            pcm: Box::new([0; MAX_PACKET_SAMPLES]),
        })
    }

    /// The PCM of one packet (960 samples for the usual 20 ms; 2.5 to 120 ms are valid),
    /// borrowed until the next call. An empty payload means "lost": see [`Self::conceal`].
    pub fn decode(&mut self, payload: &[u8]) -> Result<&[i16], CodecError> {
        if payload.is_empty() {
            return self.conceal();
        }
        let n = self.inner.decode(payload, &mut self.pcm[..], false)?;
        Ok(&self.pcm[..n.min(MAX_PACKET_SAMPLES)])
    }

    /// Stands in for one lost packet (as long as the last one, 20 ms before any): libopus
    /// extrapolates the last sound and fades it out over successive losses.
    pub fn conceal(&mut self) -> Result<&[i16], CodecError> {
        let len = self.last_duration();
        let n = self.inner.decode(&[], &mut self.pcm[..len], false)?;
        Ok(&self.pcm[..n.min(len)])
    }

    /// Rebuilds the packet lost just before `next` from the forward error correction inside
    /// `next` (libopus falls back to concealment when `next` carries none). Decode `next`
    /// itself afterwards as usual.
    pub fn recover(&mut self, next: &[u8]) -> Result<&[i16], CodecError> {
        if next.is_empty() {
            return self.conceal();
        }
        let len = self.last_duration();
        let n = self.inner.decode(next, &mut self.pcm[..len], true)?;
        Ok(&self.pcm[..n.min(len)])
    }

    /// Forgets the stream's state (a new stream from the same peer).
    pub fn reset(&mut self) -> Result<(), CodecError> {
        Ok(self.inner.reset_state()?)
    }

    fn last_duration(&mut self) -> usize {
        match self.inner.get_last_packet_duration() {
            Ok(n) if n > 0 => usize::try_from(n).unwrap_or(FRAME_SAMPLES).min(MAX_PACKET_SAMPLES),
            _ => FRAME_SAMPLES,
        }
    }
}

/// Encodes the AI's 48 kHz mono PCM, one 20 ms frame per packet, tuned for speech
/// (`Application::Voip`, [`BITRATE`] bit/s, in-band FEC on).
pub struct OpusEncoder {
    inner: opus::Encoder,
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEncoder").finish_non_exhaustive()
    }
}

impl OpusEncoder {
    /// A 48 kHz mono speech encoder.
    pub fn new() -> Result<Self, CodecError> {
        let mut inner = opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, opus::Application::Voip)?;
        inner.set_bitrate(opus::Bitrate::Bits(BITRATE))?;
        // Lets a receiver rebuild a lost packet from the next one; costs a little bit rate.
        inner.set_inband_fec(true)?;
        inner.set_packet_loss_perc(5)?;
        Ok(Self { inner })
    }

    /// One packet for exactly one 20 ms frame.
    pub fn encode(&mut self, frame: &Frame) -> Result<Vec<u8>, CodecError> {
        Ok(self.inner.encode_vec(frame, MAX_PACKET_BYTES)?)
    }

    /// Forgets the stream's state (after a pause, so the next speech starts clean).
    pub fn reset(&mut self) -> Result<(), CodecError> {
        Ok(self.inner.reset_state()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::voice::dsp::vad::level_dbfs;

    fn tone(freq: f64, amplitude: f64, samples: usize) -> Vec<i16> {
        (0..samples)
            .map(|i| {
                let t = i as f64 / f64::from(SAMPLE_RATE);
                (amplitude * (2.0 * std::f64::consts::PI * freq * t).sin()).round() as i16
            })
            .collect()
    }

    fn zero_crossings(pcm: &[i16]) -> usize {
        pcm.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count()
    }

    fn frame(pcm: &[i16]) -> Frame {
        pcm.try_into().expect("960 samples")
    }

    #[test]
    fn a_tone_survives_encode_then_decode_with_its_level_and_frequency() {
        let input = tone(440.0, 8_000.0, FRAME_SAMPLES * 50);
        let mut encoder = OpusEncoder::new().expect("encoder");
        let mut decoder = OpusDecoder::new().expect("decoder");
        let mut output = Vec::new();
        for chunk in input.chunks(FRAME_SAMPLES) {
            let packet = encoder.encode(&frame(chunk)).expect("encodes");
            assert!(
                !packet.is_empty() && packet.len() < 400,
                "a 20 ms packet at 32 kbit/s: {}",
                packet.len()
            );
            let pcm = decoder.decode(&packet).expect("decodes");
            assert_eq!(pcm.len(), FRAME_SAMPLES);
            output.extend_from_slice(pcm);
        }
        // Skip the codec's start-up (lookahead and warm-up); compare one second of steady state.
        let steady_in = &input[FRAME_SAMPLES * 10..];
        let steady_out = &output[FRAME_SAMPLES * 10..];
        let (level_in, level_out) = (level_dbfs(steady_in), level_dbfs(steady_out));
        assert!(
            (level_in - level_out).abs() < 1.5,
            "level {level_in:.2} dBFS in, {level_out:.2} out"
        );
        let (zc_in, zc_out) = (zero_crossings(steady_in), zero_crossings(steady_out));
        assert!(zc_in.abs_diff(zc_out) <= 4, "{zc_in} zero crossings in, {zc_out} out");
    }

    #[test]
    fn a_corrupt_payload_is_an_error_and_the_decoder_goes_on() {
        let mut encoder = OpusEncoder::new().expect("encoder");
        let mut decoder = OpusDecoder::new().expect("decoder");
        // Code 1 (two equal frames) needs an even body; code 3 with zero frames is invalid.
        for corrupt in [&[0x01u8, 0xAA][..], &[0x03, 0x00], &[0xFF, 0xFF, 0xFF, 0xFF]] {
            assert!(decoder.decode(corrupt).is_err(), "{corrupt:?} decoded");
        }
        let packet = encoder.encode(&[0; FRAME_SAMPLES]).expect("encodes");
        assert_eq!(
            decoder.decode(&packet).expect("a good packet after bad ones").len(),
            FRAME_SAMPLES
        );
    }

    #[test]
    fn a_lost_packet_is_concealed_or_recovered_with_a_frame_of_audio() {
        let mut encoder = OpusEncoder::new().expect("encoder");
        let mut decoder = OpusDecoder::new().expect("decoder");
        assert_eq!(
            decoder.conceal().expect("conceals before any packet").len(),
            FRAME_SAMPLES
        );
        let input = tone(440.0, 8_000.0, FRAME_SAMPLES * 12);
        let packets: Vec<Vec<u8>> = input
            .chunks(FRAME_SAMPLES)
            .map(|c| encoder.encode(&frame(c)).expect("encodes"))
            .collect();
        for packet in &packets[..10] {
            decoder.decode(packet).expect("decodes");
        }
        assert_eq!(
            decoder.decode(&[]).expect("an empty payload is a loss").len(),
            FRAME_SAMPLES
        );
        let rebuilt = decoder.recover(&packets[11]).expect("recovers").to_vec();
        assert_eq!(rebuilt.len(), FRAME_SAMPLES);
        assert!(level_dbfs(&rebuilt) > -40.0, "the lost tone is rebuilt, not silence");
        assert_eq!(decoder.decode(&packets[11]).expect("decodes").len(), FRAME_SAMPLES);
    }

    #[test]
    fn stereo_packets_decode_to_mono() {
        let mut stereo =
            opus::Encoder::new(SAMPLE_RATE, opus::Channels::Stereo, opus::Application::Voip).expect("stereo encoder");
        let left = tone(440.0, 8_000.0, FRAME_SAMPLES * 20);
        let interleaved: Vec<i16> = left.iter().flat_map(|&s| [s, s]).collect();
        let mut decoder = OpusDecoder::new().expect("decoder");
        let mut output = Vec::new();
        for chunk in interleaved.chunks(FRAME_SAMPLES * 2) {
            let packet = stereo.encode_vec(chunk, MAX_PACKET_BYTES).expect("encodes");
            let pcm = decoder.decode(&packet).expect("decodes");
            assert_eq!(pcm.len(), FRAME_SAMPLES, "one channel's worth");
            output.extend_from_slice(pcm);
        }
        let (level_in, level_out) = (
            level_dbfs(&left[FRAME_SAMPLES * 10..]),
            level_dbfs(&output[FRAME_SAMPLES * 10..]),
        );
        assert!(
            (level_in - level_out).abs() < 1.5,
            "level {level_in:.2} dBFS in, {level_out:.2} out"
        );
    }
}
