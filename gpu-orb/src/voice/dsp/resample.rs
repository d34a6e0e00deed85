//! Sample-rate conversion between the call's 48 kHz and the speech providers' rates
//! (16000, 22050, 24000, 44100, 48000 Hz, either way), streamed chunk by chunk.
//!
//! # Quality trade-off
//! Cheap and good enough for speech, not for music:
//! - **Up** (e.g. 24 kHz speech synthesis → 48 kHz): linear interpolation between neighbouring
//!   samples. Images above the source's Nyquist frequency are only softly damped (a
//!   sinc² response), which speech, with little energy near 8–12 kHz, hardly shows.
//! - **Down** (e.g. 48 kHz → 16 kHz for speech-to-text): each output sample is the mean of the
//!   input over its output period (area averaging, exact for fractional periods). This box
//!   filter is a crude low-pass: about −0.9 dB at a quarter of the output rate, −3.9 dB at its
//!   Nyquist, nulls at multiples of the output rate; so some energy above the new Nyquist still
//!   folds back, much less than plain decimation would let through. Speech recognisers do not
//!   mind.
//!
//! The position is kept as an exact fraction (integers over the reduced rate ratio), so a
//! stream cut into chunks anywhere gives the very samples one long call would: no clicks at
//! chunk boundaries, no drift over hours. Up-sampling holds one input sample back (it needs
//! the next to interpolate towards); [`Resampler::flush`] lets it out at the end.

/// The rates this is tested at (any rate in [`MIN_RATE`]..=[`MAX_RATE`] works).
pub const SUPPORTED_RATES: [u32; 5] = [16_000, 22_050, 24_000, 44_100, 48_000];

/// The lowest rate accepted.
pub const MIN_RATE: u32 = 8_000;

/// The highest rate accepted.
pub const MAX_RATE: u32 = 192_000;

/// A rate outside [`MIN_RATE`]..=[`MAX_RATE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unsupported sample rate {0} Hz (want {MIN_RATE}..={MAX_RATE})")]
pub struct RateError(pub u32);

/// A streaming converter from one rate to another, mono i16.
#[derive(Debug, Clone)]
pub struct Resampler {
    from: u32,
    to: u32,
    /// Input samples per output sample is `step / span` (the reduced ratio from/to).
    step: i64,
    span: i64,
    mode: Mode,
}

#[derive(Debug, Clone)]
enum Mode {
    Same,
    /// Linear interpolation: the next output sits `phase / span` of the way from `prev` to the next input.
    Up {
        prev: Option<i16>,
        phase: i64,
    },
    /// Area averaging in units where an input sample is `span` wide and an output one `step`:
    /// `acc` sums sample × width over the `filled` units of the output sample being built.
    Down {
        acc: i64,
        filled: i64,
    },
}

impl Resampler {
    /// Converts `from` Hz to `to` Hz.
    pub fn new(from: u32, to: u32) -> Result<Self, RateError> {
        for rate in [from, to] {
            if !(MIN_RATE..=MAX_RATE).contains(&rate) {
                return Err(RateError(rate));
            }
        }
        let g = gcd(from, to);
        let (step, span) = (i64::from(from / g), i64::from(to / g));
        let mode = match from.cmp(&to) {
            std::cmp::Ordering::Equal => Mode::Same,
            std::cmp::Ordering::Less => Mode::Up { prev: None, phase: 0 },
            std::cmp::Ordering::Greater => Mode::Down { acc: 0, filled: 0 },
        };
        Ok(Self {
            from,
            to,
            step,
            span,
            mode,
        })
    }

    /// The input rate.
    pub fn from_rate(&self) -> u32 {
        self.from
    }

    /// The output rate.
    pub fn to_rate(&self) -> u32 {
        self.to
    }

    /// Converts the next chunk of the stream.
    pub fn process(&mut self, input: &[i16]) -> Vec<i16> {
        let mut out = Vec::with_capacity(self.output_len_hint(input.len()));
        self.process_into(input, &mut out);
        out
    }

    /// Converts the next chunk of the stream, appending to `out`.
    pub fn process_into(&mut self, input: &[i16], out: &mut Vec<i16>) {
        let (step, span) = (self.step, self.span);
        match &mut self.mode {
            Mode::Same => out.extend_from_slice(input),
            Mode::Up { prev, phase } => {
                for &cur in input {
                    if let Some(p) = *prev {
                        let (p, c) = (i64::from(p), i64::from(cur));
                        while *phase < span {
                            out.push(to_i16(div_round(p * (span - *phase) + c * *phase, span)));
                            *phase += step;
                        }
                        *phase -= span;
                    }
                    *prev = Some(cur);
                }
            }
            Mode::Down { acc, filled } => {
                for &x in input {
                    let x = i64::from(x);
                    let mut width = span;
                    while *filled + width >= step {
                        let take = step - *filled;
                        *acc += x * take;
                        out.push(to_i16(div_round(*acc, step)));
                        *acc = 0;
                        *filled = 0;
                        width -= take;
                    }
                    *acc += x * width;
                    *filled += width;
                }
            }
        }
    }

    /// Ends the stream: the samples still held back (the last input repeated where the next
    /// is missing; a partial output period averaged over what came). Ready for a new stream after.
    pub fn flush(&mut self) -> Vec<i16> {
        let mut out = Vec::new();
        let (step, span) = (self.step, self.span);
        match &mut self.mode {
            Mode::Same => {}
            Mode::Up { prev, phase } => {
                if let Some(p) = prev.take() {
                    while *phase < span {
                        out.push(p);
                        *phase += step;
                    }
                }
                *phase = 0;
            }
            Mode::Down { acc, filled } => {
                if *filled > 0 {
                    out.push(to_i16(div_round(*acc, *filled)));
                }
                *acc = 0;
                *filled = 0;
            }
        }
        out
    }

    /// Drops what is held back, for a new stream.
    pub fn reset(&mut self) {
        let _ = self.flush();
    }

    fn output_len_hint(&self, input: usize) -> usize {
        let n = i64::try_from(input).unwrap_or(i64::MAX / 4);
        usize::try_from(n.saturating_mul(self.span) / self.step + 2).unwrap_or(0)
    }
}

/// Converts a whole clip at once (what [`Resampler::process`] then [`Resampler::flush`] give).
pub fn resample(input: &[i16], from: u32, to: u32) -> Result<Vec<i16>, RateError> {
    let mut resampler = Resampler::new(from, to)?;
    let mut out = resampler.process(input);
    out.extend(resampler.flush());
    Ok(out)
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// `n / d` rounded half away from zero; `d > 0`.
fn div_round(n: i64, d: i64) -> i64 {
    if n >= 0 { (n + d / 2) / d } else { (n - d / 2) / d }
}

fn to_i16(v: i64) -> i16 {
    i16::try_from(v.clamp(i64::from(i16::MIN), i64::from(i16::MAX))).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, rate: u32, amplitude: f64, seconds: f64) -> Vec<i16> {
        let n = (f64::from(rate) * seconds) as usize;
        (0..n)
            .map(|i| {
                (amplitude * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin()).round() as i16
            })
            .collect()
    }

    fn zero_crossings(pcm: &[i16]) -> usize {
        pcm.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count()
    }

    fn rms(pcm: &[i16]) -> f64 {
        (pcm.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / pcm.len() as f64).sqrt()
    }

    #[test]
    fn a_tone_keeps_its_frequency_and_level_between_every_pair_of_rates() {
        for from in SUPPORTED_RATES {
            for to in SUPPORTED_RATES {
                let input = tone(440.0, from, 10_000.0, 1.0);
                let output = resample(&input, from, to).expect("supported");
                let expected = input.len() as f64 * f64::from(to) / f64::from(from);
                assert!(
                    (output.len() as f64 - expected).abs() <= 2.0,
                    "{from}->{to}: {} samples",
                    output.len()
                );
                // 440 Hz for one second: 880 crossings whatever the rate.
                let zc = zero_crossings(&output);
                assert!(zc.abs_diff(880) <= 2, "{from}->{to}: {zc} zero crossings");
                let db = 20.0 * (rms(&output) / rms(&input)).log10();
                assert!(db.abs() < 0.2, "{from}->{to}: level changed by {db:.3} dB");
            }
        }
    }

    #[test]
    fn chunked_streaming_equals_one_shot() {
        for (from, to) in [
            (48_000, 16_000),
            (24_000, 48_000),
            (22_050, 48_000),
            (48_000, 44_100),
            (44_100, 16_000),
        ] {
            let input = tone(997.0, from, 12_000.0, 0.5);
            let whole = resample(&input, from, to).expect("supported");
            let mut resampler = Resampler::new(from, to).expect("supported");
            let mut pieces = Vec::new();
            let mut rest = &input[..];
            let mut size = 1;
            while !rest.is_empty() {
                let (head, tail) = rest.split_at(size.min(rest.len()));
                resampler.process_into(head, &mut pieces);
                rest = tail;
                size = size * 7 % 1_013 + 1;
            }
            pieces.extend(resampler.flush());
            // The phase is an exact fraction: not merely within rounding, identical.
            assert_eq!(pieces, whole, "{from}->{to}");
        }
    }

    #[test]
    fn downsampling_damps_what_would_alias() {
        // Decimated without a filter, 15 kHz would fold onto 1 kHz at full strength.
        let kept = resample(&tone(1_000.0, 48_000, 10_000.0, 0.5), 48_000, 16_000).expect("supported");
        let folded = resample(&tone(15_000.0, 48_000, 10_000.0, 0.5), 48_000, 16_000).expect("supported");
        let damping = 20.0 * (rms(&folded) / rms(&kept)).log10();
        assert!(damping < -6.0, "a 15 kHz tone comes through at {damping:.1} dB");
    }

    #[test]
    fn same_rate_passes_through_and_bad_rates_are_refused() {
        let input = tone(440.0, 48_000, 1_000.0, 0.01);
        assert_eq!(resample(&input, 48_000, 48_000), Ok(input));
        assert_eq!(Resampler::new(0, 48_000).err(), Some(RateError(0)));
        assert_eq!(Resampler::new(48_000, 1_000_000).err(), Some(RateError(1_000_000)));
    }

    #[test]
    fn flush_ends_a_stream_and_the_next_one_starts_clean() {
        let mut up = Resampler::new(24_000, 48_000).expect("supported");
        assert_eq!(up.process(&[100]), Vec::<i16>::new(), "held back for the next sample");
        assert_eq!(up.process(&[200]), vec![100, 150]);
        assert_eq!(up.flush(), vec![200, 200]);
        assert_eq!(
            up.process(&[-100, -200]),
            vec![-100, -150],
            "nothing of the old stream remains"
        );
        let mut down = Resampler::new(48_000, 16_000).expect("supported");
        assert_eq!(down.process(&[3, 6, 9, 30]), vec![6]);
        assert_eq!(down.flush(), vec![30]);
    }
}
