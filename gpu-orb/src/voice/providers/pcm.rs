//! [`PcmStream`]: synthesised speech as it arrives, in whole 16-bit samples.

use std::time::Duration;

use tokio::sync::mpsc;

use super::{ProviderError, Side};

/// Most PCM bytes one answer may bring: 10 minutes at 24 kHz.
pub const MAX_PCM_BYTES: usize = 24_000 * 2 * 600;

/// Raw PCM, 16-bit little-endian mono at [`PcmStream::rate`], yielded chunk by
/// chunk as the provider sends it (the first audio can go out before the whole
/// answer is synthesised).
///
/// Every chunk holds whole samples (an even number of bytes): an odd trailing
/// byte is kept for the next chunk; one left at the end of the answer (half a
/// sample) is dropped. Waiting for a chunk is bounded: a provider stalling
/// longer than its timeout is [`ProviderError::Timeout`] (`tts_timeout`).
#[derive(Debug)]
pub struct PcmStream {
    rate: u32,
    source: Source,
    carry: Option<u8>,
    received: usize,
    done: bool,
}

#[derive(Debug)]
enum Source {
    /// A provider's answer; `gap` bounds the wait for each chunk.
    Http { response: reqwest::Response, gap: Duration },
    /// Chunks from elsewhere (a fake provider, a test).
    Channel(mpsc::Receiver<Result<Vec<u8>, ProviderError>>),
}

impl PcmStream {
    /// The body of `response`, at `rate` Hz, waiting at most `gap` for each chunk.
    pub fn from_response(rate: u32, response: reqwest::Response, gap: Duration) -> Self {
        Self::new(rate, Source::Http { response, gap })
    }

    /// Chunks sent on a channel (for fakes): the stream ends when every sender is dropped.
    pub fn from_channel(rate: u32, chunks: mpsc::Receiver<Result<Vec<u8>, ProviderError>>) -> Self {
        Self::new(rate, Source::Channel(chunks))
    }

    /// Fixed chunks (for fakes and an empty answer).
    pub fn from_chunks(rate: u32, chunks: Vec<Vec<u8>>) -> Self {
        let (tx, rx) = mpsc::channel(chunks.len().max(1));
        for chunk in chunks {
            // The channel holds them all.
            let _ = tx.try_send(Ok(chunk));
        }
        Self::from_channel(rate, rx)
    }

    fn new(rate: u32, source: Source) -> Self {
        Self {
            rate,
            source,
            carry: None,
            received: 0,
            done: false,
        }
    }

    /// Samples per second.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// The next chunk of whole samples (never empty), or `None` at the end.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, ProviderError> {
        // Bounded: each turn consumes a piece of the answer, at most MAX_PCM_BYTES in all.
        while !self.done {
            let Some(piece) = self.next_piece().await? else {
                self.done = true;
                self.carry = None;
                break;
            };
            self.received = self.received.saturating_add(piece.len());
            if self.received > MAX_PCM_BYTES {
                self.done = true;
                return Err(ProviderError::BadAnswer {
                    side: Side::Tts,
                    why: format!("more than {MAX_PCM_BYTES} bytes of audio"),
                });
            }
            let mut chunk = Vec::with_capacity(piece.len() + 1);
            chunk.extend(self.carry.take());
            chunk.extend_from_slice(&piece);
            if chunk.len() % 2 == 1 {
                self.carry = chunk.pop();
            }
            if !chunk.is_empty() {
                return Ok(Some(chunk));
            }
        }
        Ok(None)
    }

    /// Every remaining chunk, joined (for tests and callers that need it all).
    pub async fn collect(mut self) -> Result<Vec<u8>, ProviderError> {
        let mut all = Vec::new();
        while let Some(chunk) = self.next_chunk().await? {
            all.extend_from_slice(&chunk);
        }
        Ok(all)
    }

    async fn next_piece(&mut self) -> Result<Option<Vec<u8>>, ProviderError> {
        match &mut self.source {
            Source::Http { response, gap } => {
                let gap = *gap;
                match tokio::time::timeout(gap, response.chunk()).await {
                    Err(_) => Err(ProviderError::Timeout {
                        side: Side::Tts,
                        after: gap,
                    }),
                    Ok(Err(e)) => Err(ProviderError::request(Side::Tts, e, gap)),
                    Ok(Ok(piece)) => Ok(piece.map(|b| b.to_vec())),
                }
            }
            Source::Channel(rx) => rx.recv().await.transpose(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn odd_bytes_wait_for_the_next_chunk() {
        let mut s = PcmStream::from_chunks(24_000, vec![vec![1, 2, 3], vec![4], vec![5, 6, 7, 8, 9]]);
        assert_eq!(s.rate(), 24_000);
        assert_eq!(s.next_chunk().await.ok().flatten(), Some(vec![1, 2]));
        assert_eq!(s.next_chunk().await.ok().flatten(), Some(vec![3, 4]));
        assert_eq!(s.next_chunk().await.ok().flatten(), Some(vec![5, 6, 7, 8]));
        assert_eq!(
            s.next_chunk().await.ok().flatten(),
            None,
            "the half sample 9 is dropped"
        );
        assert_eq!(s.next_chunk().await.ok().flatten(), None);
        let empty = PcmStream::from_chunks(16_000, Vec::new());
        assert_eq!(empty.collect().await.ok(), Some(Vec::new()));
    }
}
