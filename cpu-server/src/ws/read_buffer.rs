//! A room socket's read buffer: the bytes read and not consumed yet, which
//! always start at a frame boundary. Consumed frames are skipped by an offset
//! (no copy per frame); the unconsumed tail moves to the front only when a read
//! needs the room. Reads fill the spare capacity of a plain `Vec`, so a raw
//! `recv(2)` can write into it without an `unsafe` length update.

/// A buffer grown past this for a large frame is given back once empty (the
/// socket's write buffer follows the same rule).
pub const KEEP_BUFFER: usize = 64 * 1024;

/// Bytes read and not consumed: `bytes[start..]`.
#[derive(Debug, Default)]
pub struct ReadBuffer {
    bytes: Vec<u8>,
    start: usize,
}

impl ReadBuffer {
    /// A buffer holding `unread` (bytes read before this socket's task began).
    pub fn with(unread: &[u8]) -> Self {
        Self {
            bytes: unread.to_vec(),
            start: 0,
        }
    }

    /// The bytes not consumed yet.
    pub fn unread(&self) -> &[u8] {
        &self.bytes[self.start..]
    }

    /// The same, to decode (unmask) in place.
    pub fn unread_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[self.start..]
    }

    /// Consumes the first `n` unread bytes (a whole frame).
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.bytes.len());
        if self.start == self.bytes.len() {
            self.bytes.clear();
            self.start = 0;
            if self.bytes.capacity() > KEEP_BUFFER {
                self.bytes = Vec::new();
            }
        }
    }

    /// Makes room for at least `spare` more bytes after the unread ones and
    /// gives the vector to read into (its spare capacity).
    pub fn spare(&mut self, spare: usize) -> &mut Vec<u8> {
        if self.bytes.capacity() - self.bytes.len() < spare && self.start > 0 {
            self.bytes.drain(..self.start);
            self.start = 0;
        }
        self.bytes.reserve(spare);
        &mut self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumed_bytes_are_skipped_then_reclaimed_when_room_is_needed() {
        let mut buf = ReadBuffer::with(b"abcdef");
        buf.consume(2);
        assert_eq!(buf.unread(), b"cdef");
        buf.unread_mut()[0] = b'C';
        // Room already there: nothing moves.
        let capacity = buf.spare(0).capacity();
        assert_eq!(buf.unread(), b"Cdef");
        // More room than is spare: the unread tail moves to the front.
        let vec = buf.spare(capacity + 1);
        assert_eq!(&vec[..], b"Cdef");
        vec.extend_from_slice(b"gh");
        assert_eq!(buf.unread(), b"Cdefgh");
        buf.consume(6);
        assert!(buf.unread().is_empty());
        buf.consume(1);
        assert!(buf.unread().is_empty(), "consuming past the end is harmless");
    }

    #[test]
    fn a_large_buffer_is_given_back_once_empty() {
        let mut buf = ReadBuffer::default();
        buf.spare(KEEP_BUFFER * 2).resize(KEEP_BUFFER * 2, 0);
        buf.consume(KEEP_BUFFER);
        assert!(buf.spare(0).capacity() >= KEEP_BUFFER * 2, "kept while it holds bytes");
        buf.consume(KEEP_BUFFER);
        assert_eq!(buf.spare(0).capacity(), 0);
    }
}
