//! 20 ms framing: cuts 48 kHz PCM arriving in chunks of any length (speech synthesis comes
//! in network chunks) into the 960-sample frames that Opus encodes and RTP carries.

/// The call's sample rate: Opus in WebRTC is always clocked at 48 kHz.
pub const SAMPLE_RATE: u32 = 48_000;

/// Samples in one 20 ms frame at [`SAMPLE_RATE`].
pub const FRAME_SAMPLES: usize = 960;

/// Milliseconds in one frame.
pub const FRAME_MS: u32 = 20;

/// One 20 ms frame of 48 kHz mono PCM.
pub type Frame = [i16; FRAME_SAMPLES];

/// Collects PCM chunks and hands out whole frames; holds less than one frame in between.
#[derive(Debug, Clone)]
pub struct FrameSlicer {
    partial: Vec<i16>,
}

impl Default for FrameSlicer {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameSlicer {
    /// An empty slicer.
    pub fn new() -> Self {
        Self {
            partial: Vec::with_capacity(FRAME_SAMPLES),
        }
    }

    /// Adds `chunk` and returns every frame it completes, oldest first.
    pub fn push(&mut self, mut chunk: &[i16]) -> Vec<Frame> {
        let mut frames = Vec::with_capacity((self.partial.len() + chunk.len()) / FRAME_SAMPLES);
        while !chunk.is_empty() {
            let take = (FRAME_SAMPLES - self.partial.len()).min(chunk.len());
            let (head, rest) = chunk.split_at(take);
            self.partial.extend_from_slice(head);
            chunk = rest;
            if self.partial.len() == FRAME_SAMPLES {
                let mut frame = [0; FRAME_SAMPLES];
                frame.copy_from_slice(&self.partial);
                frames.push(frame);
                self.partial.clear();
            }
        }
        frames
    }

    /// Samples waiting for the rest of their frame.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }

    /// The last partial frame padded with zeros (silence), or `None` when nothing is waiting;
    /// the slicer is empty afterwards.
    pub fn finish(&mut self) -> Option<Frame> {
        if self.partial.is_empty() {
            return None;
        }
        let mut frame = [0; FRAME_SAMPLES];
        frame[..self.partial.len()].copy_from_slice(&self.partial);
        self.partial.clear();
        Some(frame)
    }

    /// Drops whatever is waiting (the speech it belonged to was cut off).
    pub fn clear(&mut self) {
        self.partial.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(n: usize) -> Vec<i16> {
        (0..n).map(|i| i16::try_from(i % 30_000).expect("small") + 1).collect()
    }

    #[test]
    fn chunks_of_seven_make_whole_frames_and_finish_pads_the_rest() {
        let pcm = ramp(2500);
        let mut slicer = FrameSlicer::new();
        let mut frames = Vec::new();
        for chunk in pcm.chunks(7) {
            frames.extend(slicer.push(chunk));
        }
        assert_eq!(frames.len(), 2);
        assert_eq!(slicer.pending(), 2500 - 2 * FRAME_SAMPLES);
        let last = slicer.finish().expect("a partial frame was waiting");
        frames.push(last);
        let flat: Vec<i16> = frames.iter().flatten().copied().collect();
        assert_eq!(&flat[..2500], &pcm[..], "samples come out in order, none lost");
        assert!(flat[2500..].iter().all(|&s| s == 0), "the padding is silence");
        assert_eq!(slicer.pending(), 0);
        assert_eq!(slicer.finish(), None, "nothing left after finish");
    }

    #[test]
    fn one_big_chunk_gives_the_same_frames_as_small_ones() {
        let pcm = ramp(FRAME_SAMPLES * 3 + 5);
        let whole = FrameSlicer::new().push(&pcm);
        let mut slicer = FrameSlicer::new();
        let pieces: Vec<Frame> = pcm.chunks(333).flat_map(|c| slicer.push(c)).collect();
        assert_eq!(whole.len(), 3);
        assert_eq!(whole, pieces);
    }

    #[test]
    fn an_exact_frame_leaves_nothing_to_finish_and_clear_drops_a_partial_one() {
        let mut slicer = FrameSlicer::new();
        assert_eq!(slicer.push(&[1; FRAME_SAMPLES]).len(), 1);
        assert_eq!(slicer.finish(), None);
        assert!(slicer.push(&[1; 10]).is_empty());
        slicer.clear();
        assert_eq!(slicer.finish(), None);
    }
}
