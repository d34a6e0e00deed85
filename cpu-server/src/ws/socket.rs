//! One room socket's bytes, owned by its connection task: a read buffer
//! frames are decoded from in place, and a write buffer of encoded frames.
//!
//! [`WsSocket::drive`] is the socket's one wait: it writes whatever is pending
//! and reads more, so a task can wait on it beside its outbox and timers without
//! splitting the socket (no lock between a reader and a writer half).

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::frame::{self, Decoder, Frame, ProtocolError};
use super::handshake::RoomStream;

/// Spare room ensured before each read (the initial buffer, too).
const READ_CHUNK: usize = 4096;
/// A buffer grown past this for a large frame is given back once empty.
const KEEP_BUFFER: usize = 64 * 1024;
/// Frames are taken from the outbox while fewer bytes than this wait to be written.
const WRITE_HIGH: usize = 64 * 1024;
/// How long a closed socket waits for its peer's end after the close frame.
const LINGER: Duration = Duration::from_secs(1);

/// What a read brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// More bytes are buffered (frames may be ready).
    Bytes,
    /// The peer closed its side.
    Eof,
    /// Nothing read, but the write buffer, full before, takes frames again.
    Room,
}

/// A room socket's stream and buffers.
#[derive(Debug)]
pub struct WsSocket {
    io: RoomStream,
    /// Bytes read and not consumed yet; starts with a frame boundary.
    rbuf: BytesMut,
    /// Bytes of the frame handed out by the last `next_frame`, consumed by the next call.
    handed: usize,
    decoder: Decoder,
    /// Encoded frames; `wbuf[written..]` still to write.
    wbuf: Vec<u8>,
    written: usize,
}

impl WsSocket {
    /// Frames over `max_message` bytes are refused from their header.
    pub fn new(mut io: RoomStream, max_message: usize) -> Self {
        let mut rbuf = BytesMut::new();
        if let RoomStream::Tcp(_, early) = &mut io {
            // Bytes hyper read past the upgrade request are the first frames.
            rbuf.extend_from_slice(early);
            *early = Default::default();
        }
        Self {
            io,
            rbuf,
            handed: 0,
            decoder: Decoder::new(max_message),
            wbuf: Vec::new(),
            written: 0,
        }
    }

    /// The next complete frame already read (a ping's pong is queued here).
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, ProtocolError> {
        self.rbuf.advance(std::mem::take(&mut self.handed));
        if self.rbuf.is_empty() && self.rbuf.capacity() > KEEP_BUFFER {
            self.rbuf = BytesMut::new();
        }
        let Some(decoded) = self.decoder.decode(&mut self.rbuf[..])? else {
            return Ok(None);
        };
        self.handed = decoded.consumed;
        if let Frame::Ping(payload) = decoded.frame {
            frame::put_pong(&mut self.wbuf, payload);
        }
        Ok(Some(decoded.frame))
    }

    /// Whether the write buffer takes more frames from the outbox now.
    pub fn wants_frames(&self) -> bool {
        self.wbuf.len() - self.written < WRITE_HIGH
    }

    /// Queues a text frame.
    pub fn put_text(&mut self, text: &[u8]) {
        frame::put_text(&mut self.wbuf, text);
    }

    /// Queues a ping.
    pub fn put_ping(&mut self) {
        frame::put_ping(&mut self.wbuf);
    }

    /// Queues a close frame.
    pub fn put_close(&mut self, code: u16, reason: &str) {
        frame::put_close(&mut self.wbuf, code, reason);
    }

    /// Writes what is pending and reads more: returns once bytes (or the end)
    /// were read, the write buffer takes frames again after it was full, or the
    /// socket failed. Cancel-safe: nothing is lost if dropped.
    pub async fn drive(&mut self) -> io::Result<Read> {
        self.rbuf.advance(std::mem::take(&mut self.handed));
        std::future::poll_fn(|cx| {
            let full = !self.wants_frames();
            if let Poll::Ready(Err(e)) = self.poll_flush_pending(cx) {
                return Poll::Ready(Err(e));
            }
            if full && self.wants_frames() {
                return Poll::Ready(Ok(Read::Room));
            }
            // Room for the frame being read, whole, once its header is in.
            let need = Decoder::frame_len(&self.rbuf).unwrap_or(0);
            let spare = need.saturating_sub(self.rbuf.len()).max(READ_CHUNK);
            self.rbuf.reserve(spare);
            let read = pin!(self.io.read_buf(&mut self.rbuf)).poll(cx);
            read.map(|r| r.map(|n| if n == 0 { Read::Eof } else { Read::Bytes }))
        })
        .await
    }

    /// Writes `wbuf[written..]` until done or the socket would block.
    fn poll_flush_pending(&mut self, cx: &mut std::task::Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.wbuf.len() {
            match Pin::new(&mut self.io).poll_write(cx, &self.wbuf[self.written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        if !self.wbuf.is_empty() {
            self.wbuf.clear();
            self.written = 0;
            if self.wbuf.capacity() > KEEP_BUFFER {
                self.wbuf = Vec::new();
            }
        }
        // TLS streams buffer records until flushed; a TCP socket's flush is a no-op.
        Pin::new(&mut self.io).poll_flush(cx)
    }

    /// Writes everything pending (a close frame last), sends our end, then waits
    /// up to [`LINGER`] for the peer's end so that nothing it still sends resets
    /// the connection before it read the close frame. Bounded by `grace` for the writes.
    pub async fn finish(mut self, grace: Duration) {
        let flushed = tokio::time::timeout(grace, async {
            std::future::poll_fn(|cx| self.poll_flush_pending(cx)).await?;
            self.io.shutdown().await
        })
        .await;
        if !matches!(flushed, Ok(Ok(()))) {
            return;
        }
        let _ = tokio::time::timeout(LINGER, async {
            let mut sink = [0u8; 1024];
            // Bounded by LINGER; each read is a chunk the peer sent after our close.
            while matches!(self.io.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
    }
}
