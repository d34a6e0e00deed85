//! WAV (RIFF, 16-bit PCM): the upload format of speech-to-text, written here; and a small
//! parser for checking what was uploaded (tests, stubs) or reading a provider's reply.

/// Bytes in the canonical header [`wav_mono_16bit`] writes before the samples.
pub const HEADER_LEN: usize = 44;

/// A canonical 44-byte-header WAV file: mono, 16-bit little-endian PCM at `rate`.
///
/// A `data` chunk too long for RIFF's 32-bit sizes (over ~2 GiB) is not expected here: the
/// turn detector bounds an utterance to seconds.
pub fn wav_mono_16bit(samples: &[i16], rate: u32) -> Vec<u8> {
    let data_len = u32::try_from(samples.len() * 2).unwrap_or(u32::MAX - 36);
    let mut out = Vec::with_capacity(HEADER_LEN + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVE");
    out.extend_from_slice(b"fmt ");
    out.extend_from_slice(&16u32.to_le_bytes()); // fmt chunk size
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // channels
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&rate.saturating_mul(2).to_le_bytes()); // byte rate
    out.extend_from_slice(&2u16.to_le_bytes()); // block align
    out.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for sample in samples {
        out.extend_from_slice(&sample.to_le_bytes());
    }
    out
}

/// Reads a 16-bit PCM WAV: `(rate, channels, samples)`, the samples interleaved as stored.
///
/// Walks the chunks (so extra ones such as `LIST` are skipped), accepts format 1 (PCM) and
/// WAVE_FORMAT_EXTENSIBLE with 16 bits. A `data` size larger than what follows (streamed
/// WAVs write 0xFFFFFFFF) is read as "to the end". `None` for anything else.
pub fn parse_wav(bytes: &[u8]) -> Option<(u32, u16, Vec<i16>)> {
    if bytes.get(0..4)? != b"RIFF" || bytes.get(8..12)? != b"WAVE" {
        return None;
    }
    let mut rest = &bytes[12..];
    let mut format: Option<(u32, u16)> = None;
    while rest.len() >= 8 {
        let id = &rest[0..4];
        let size = usize::try_from(u32_at(rest, 4)?).ok()?;
        let body_end = (8 + size).min(rest.len());
        let body = &rest[8..body_end];
        match id {
            b"fmt " => {
                let tag = u16_at(body, 0)?;
                let channels = u16_at(body, 2)?;
                let rate = u32_at(body, 4)?;
                let bits = u16_at(body, 14)?;
                if !(tag == 1 || tag == 0xFFFE) || bits != 16 || channels == 0 || rate == 0 {
                    return None;
                }
                format = Some((rate, channels));
            }
            b"data" => {
                let (rate, channels) = format?;
                let samples = body.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
                return Some((rate, channels, samples));
            }
            _ => {}
        }
        // Chunks are padded to an even length.
        let next = 8 + size + (size & 1);
        rest = rest.get(next..)?;
    }
    None
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_rate_and_samples() {
        let samples: Vec<i16> = (0..1000)
            .map(|i| i16::try_from(i * 37 % 65_536 - 32_768).expect("fits"))
            .collect();
        let bytes = wav_mono_16bit(&samples, 16_000);
        assert_eq!(bytes.len(), HEADER_LEN + samples.len() * 2);
        assert_eq!(&bytes[0..4], b"RIFF");
        assert_eq!(u32_at(&bytes, 4), Some(u32::try_from(bytes.len() - 8).expect("small")));
        assert_eq!(u32_at(&bytes, 28), Some(32_000), "byte rate");
        assert_eq!(&bytes[36..40], b"data");
        assert_eq!(parse_wav(&bytes), Some((16_000, 1, samples)));
    }

    #[test]
    fn empty_audio_is_a_valid_file() {
        let bytes = wav_mono_16bit(&[], 48_000);
        assert_eq!(bytes.len(), HEADER_LEN);
        assert_eq!(parse_wav(&bytes), Some((48_000, 1, Vec::new())));
    }

    #[test]
    fn extra_chunks_are_skipped_and_a_streamed_size_reads_to_the_end() {
        let mut bytes = wav_mono_16bit(&[1, -2, 3], 24_000);
        // A LIST chunk of odd length (padded) between fmt and data.
        let list = [b"LIST".as_slice(), &3u32.to_le_bytes(), b"abc", &[0]].concat();
        bytes.splice(36..36, list);
        assert_eq!(parse_wav(&bytes), Some((24_000, 1, vec![1, -2, 3])));
        let data_size_at = bytes.len() - 6 - 4;
        bytes[data_size_at..data_size_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse_wav(&bytes), Some((24_000, 1, vec![1, -2, 3])));
    }

    #[test]
    fn non_wav_and_non_16_bit_input_is_refused() {
        assert_eq!(parse_wav(b""), None);
        assert_eq!(parse_wav(b"RIFF\0\0\0\0WAVX"), None);
        let mut eight_bit = wav_mono_16bit(&[0; 4], 8_000);
        eight_bit[34] = 8;
        assert_eq!(parse_wav(&eight_bit), None);
        let truncated = &wav_mono_16bit(&[0; 4], 8_000)[..30];
        assert_eq!(parse_wav(truncated), None);
    }
}
