//! RFC 6455 framing, server side: decoding a client's masked frames out of a
//! read buffer (in place, no allocation for a whole message in one frame) and
//! encoding the server's unmasked frames into a write buffer.
//!
//! The size cap is checked from a frame's header, before its payload is
//! buffered; a fragmented message is capped by its total. Anything a server must
//! refuse is a [`ProtocolError`] naming the close code to send.

use std::ops::Range;

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Close code of a frame that breaks the protocol.
pub const CLOSE_PROTOCOL: u16 = 1002;
/// Close code of a text message that is not UTF-8.
pub const CLOSE_INVALID_UTF8: u16 = 1007;

/// One decoded item. `Text` and `Ping` borrow the read buffer (or the decoder's
/// fragment buffer); the caller consumes the reported length once done with it.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete text message.
    Text(&'a str),
    /// A complete binary message (its contents are not kept).
    Binary,
    /// A ping, whose payload the pong must carry.
    Ping(&'a [u8]),
    /// A pong.
    Pong,
    /// A close, with the peer's code if it gave one.
    Close(Option<u16>),
    /// A fragment of a message not complete yet.
    Fragment,
}

/// Why the frames of a socket can no longer be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A message over the cap (known from its header).
    #[error("message of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Its size so far (a frame's length, or a fragmented message's total).
        size: u64,
        /// The cap.
        max: usize,
    },
    /// A frame breaking RFC 6455 (close 1002).
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// A text message that is not UTF-8 (close 1007).
    #[error("text message is not valid UTF-8")]
    InvalidUtf8,
}

impl ProtocolError {
    /// The close code this error ends the socket with.
    pub fn close_code(&self) -> u16 {
        self.close().0
    }

    /// The close code and reason this error ends the socket with.
    pub fn close(&self) -> (u16, &'static str) {
        match self {
            Self::TooLarge { .. } => (1009, "message too large"),
            Self::Protocol(_) => (CLOSE_PROTOCOL, "protocol error"),
            Self::InvalidUtf8 => (CLOSE_INVALID_UTF8, "invalid UTF-8"),
        }
    }
}

/// A frame header read from the buffer.
#[derive(Debug, Clone, Copy)]
struct Header {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    /// Header length in bytes.
    len: usize,
    /// Payload length in bytes.
    payload: u64,
}

/// Reads a header from the start of `buf`; `None` until it is all there.
fn header(buf: &[u8]) -> Result<Option<Header>, ProtocolError> {
    let [b0, b1, ..] = *buf else { return Ok(None) };
    if b0 & 0x70 != 0 {
        return Err(ProtocolError::Protocol(
            "reserved bits set (no extension was negotiated)",
        ));
    }
    if b1 & 0x80 == 0 {
        return Err(ProtocolError::Protocol("client frames must be masked"));
    }
    let (payload, at) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let mut n = [0; 8];
                n.copy_from_slice(b);
                (u64::from_be_bytes(n), 10)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    let Some(mask) = buf.get(at..at + 4) else {
        return Ok(None);
    };
    Ok(Some(Header {
        fin: b0 & 0x80 != 0,
        opcode: b0 & 0x0F,
        mask: [mask[0], mask[1], mask[2], mask[3]],
        len: at + 4,
        payload,
    }))
}

/// Unmasks a frame's whole payload in place.
fn unmask(data: &mut [u8], mask: [u8; 4]) {
    let word = u32::from_ne_bytes(mask);
    let mut chunks = data.chunks_exact_mut(4);
    for chunk in &mut chunks {
        let v = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) ^ word;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i];
    }
}

/// A fragmented message being assembled.
#[derive(Debug)]
struct Partial {
    text: bool,
    data: Vec<u8>,
}

/// Decodes one socket's client frames; holds a fragmented message in progress.
#[derive(Debug)]
pub struct Decoder {
    max_message: usize,
    partial: Option<Partial>,
    /// The partial message was delivered by the last call: dropped by the next.
    delivered: bool,
}

impl Decoder {
    /// No fragmented message is half received: the next byte starts a message.
    pub fn between_messages(&self) -> bool {
        self.partial.is_none()
    }
}

/// What [`Decoder::decode`] found at the start of the buffer.
#[derive(Debug)]
pub struct Decoded<'a> {
    /// The frame.
    pub frame: Frame<'a>,
    /// How many bytes of the buffer it took (to consume after use).
    pub consumed: usize,
}

impl Decoder {
    /// A decoder refusing messages over `max_message` bytes.
    pub fn new(max_message: usize) -> Self {
        Self {
            max_message,
            partial: None,
            delivered: false,
        }
    }

    /// How many bytes of buffer the frame starting `buf` needs in all, once its
    /// header is there (for the caller to reserve at once).
    pub fn frame_len(buf: &[u8]) -> Option<usize> {
        match header(buf) {
            Ok(Some(h)) => usize::try_from(h.payload).ok().map(|p| p + h.len),
            _ => None,
        }
    }

    /// Decodes the frame at the start of `buf` (unmasking it in place); `None`
    /// until it is complete. The size cap is checked from the header.
    pub fn decode<'a>(&'a mut self, buf: &'a mut [u8]) -> Result<Option<Decoded<'a>>, ProtocolError> {
        if std::mem::take(&mut self.delivered) {
            self.partial = None;
        }
        let Some(h) = header(buf)? else { return Ok(None) };
        let control = h.opcode & 0x8 != 0;
        if control && (!h.fin || h.payload > 125) {
            return Err(ProtocolError::Protocol(
                "control frames must be whole and at most 125 bytes",
            ));
        }
        let so_far = self.partial.as_ref().map_or(0, |p| p.data.len() as u64);
        let total = so_far.saturating_add(h.payload);
        if !control && total > self.max_message as u64 {
            return Err(ProtocolError::TooLarge {
                size: total,
                max: self.max_message,
            });
        }
        // Within the cap (or at most 125 bytes): fits in usize.
        let end = h.len + h.payload as usize;
        if buf.len() < end {
            return Ok(None);
        }
        let payload: Range<usize> = h.len..end;
        unmask(&mut buf[payload.clone()], h.mask);
        let frame = match h.opcode {
            OP_TEXT | OP_BINARY if self.partial.is_some() => {
                return Err(ProtocolError::Protocol("a new message began before the last one ended"));
            }
            OP_TEXT | OP_BINARY if !h.fin => {
                self.partial = Some(Partial {
                    text: h.opcode == OP_TEXT,
                    data: buf[payload].to_vec(),
                });
                Frame::Fragment
            }
            OP_TEXT => Frame::Text(std::str::from_utf8(&buf[payload]).map_err(|_| ProtocolError::InvalidUtf8)?),
            OP_BINARY => Frame::Binary,
            OP_CONTINUATION => {
                let Some(partial) = self.partial.as_mut() else {
                    return Err(ProtocolError::Protocol(
                        "a continuation frame with no message to continue",
                    ));
                };
                partial.data.extend_from_slice(&buf[payload]);
                if !h.fin {
                    Frame::Fragment
                } else if !partial.text {
                    self.delivered = true;
                    Frame::Binary
                } else {
                    // Dropped by the next call, once the caller is done with the text.
                    self.delivered = true;
                    Frame::Text(std::str::from_utf8(&partial.data).map_err(|_| ProtocolError::InvalidUtf8)?)
                }
            }
            OP_CLOSE => match &buf[payload] {
                [] => Frame::Close(None),
                [_] => return Err(ProtocolError::Protocol("a close payload of one byte")),
                [a, b, reason @ ..] => {
                    if std::str::from_utf8(reason).is_err() {
                        return Err(ProtocolError::InvalidUtf8);
                    }
                    Frame::Close(Some(u16::from_be_bytes([*a, *b])))
                }
            },
            OP_PING => Frame::Ping(&buf[payload]),
            OP_PONG => Frame::Pong,
            _ => return Err(ProtocolError::Protocol("unknown opcode")),
        };
        Ok(Some(Decoded { frame, consumed: end }))
    }
}

/// The unmasked header of a frame for `opcode` with `len` payload bytes, and its length.
fn header_bytes(opcode: u8, len: usize) -> ([u8; 10], usize) {
    let mut head = [0u8; 10];
    head[0] = 0x80 | opcode;
    if len < 126 {
        head[1] = len as u8;
        (head, 2)
    } else if let Ok(short) = u16::try_from(len) {
        head[1] = 126;
        head[2..4].copy_from_slice(&short.to_be_bytes());
        (head, 4)
    } else {
        head[1] = 127;
        head[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        (head, 10)
    }
}

/// The header of a text frame carrying `len` bytes, and its length (for a
/// vectored write of header and payload without copying the payload).
pub fn text_header(len: usize) -> ([u8; 10], usize) {
    header_bytes(OP_TEXT, len)
}

/// Appends an unmasked frame header for `opcode` with `len` payload bytes.
fn put_header(out: &mut Vec<u8>, opcode: u8, len: usize) {
    let (head, n) = header_bytes(opcode, len);
    out.extend_from_slice(&head[..n]);
}

/// Appends a text frame carrying `text`.
pub fn put_text(out: &mut Vec<u8>, text: &[u8]) {
    put_header(out, OP_TEXT, text.len());
    out.extend_from_slice(text);
}

/// Capacity a [`TextFrame`] keeps between frames; a larger one is given back.
const KEEP_FRAME: usize = 16 * 1024;

/// One text frame encoded once (header and payload in one buffer), for every
/// recipient of a relay: each gets it with one plain `send`, or one copy into
/// its queue. Reused from frame to frame.
#[derive(Debug, Default)]
pub struct TextFrame {
    bytes: Vec<u8>,
    head: usize,
}

impl TextFrame {
    /// Encodes the text made of `parts` in order, replacing the last frame.
    pub fn encode(&mut self, parts: &[&str]) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let (head, n) = text_header(len);
        if self.bytes.capacity() > KEEP_FRAME && n + len <= KEEP_FRAME {
            self.bytes = Vec::new();
        }
        self.bytes.clear();
        self.bytes.reserve(n + len);
        self.bytes.extend_from_slice(&head[..n]);
        for part in parts {
            self.bytes.extend_from_slice(part.as_bytes());
        }
        self.head = n;
    }

    /// The whole frame, header first.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// How many payload (text) bytes it carries.
    pub fn payload_len(&self) -> usize {
        self.bytes.len() - self.head
    }
}

/// Appends a ping with an empty payload.
pub fn put_ping(out: &mut Vec<u8>) {
    put_header(out, OP_PING, 0);
}

/// Appends the pong answering a ping of `payload`.
pub fn put_pong(out: &mut Vec<u8>, payload: &[u8]) {
    put_header(out, OP_PONG, payload.len());
    out.extend_from_slice(payload);
}

/// Appends a close frame with `code` and `reason` (cut to fit 125 bytes on a
/// character boundary).
pub fn put_close(out: &mut Vec<u8>, code: u16, reason: &str) {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    put_header(out, OP_CLOSE, 2 + end);
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&reason.as_bytes()[..end]);
}

#[cfg(test)]
mod tests;
