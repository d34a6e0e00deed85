//! One room socket's bytes, owned by its connection task: a read buffer
//! frames are decoded from in place, and a write buffer of encoded frames.
//!
//! [`WsSocket::drive`] is the socket's one wait: it writes whatever is pending
//! and reads more, so a task can wait on it beside its outbox and timers without
//! splitting the socket (no lock between a reader and a writer half).

use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use rustix::net::RecvFlags;
use tokio::io::Interest;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::frame::{self, Decoder, Frame, ProtocolError};
use super::handshake::RoomStream;
use super::outbox::{Ending, Kick, Outbox, Turn};
use super::read_buffer::{KEEP_BUFFER, ReadBuffer};

/// Spare room ensured before each read (the initial buffer, too).
const READ_CHUNK: usize = 4096;
/// Queued frames are taken while fewer bytes than this wait to be written.
const WRITE_HIGH: usize = 64 * 1024;
/// Turns of taking and writing queued frames in one poll, before yielding.
const TURNS: usize = 8;
/// How long a closed socket waits for its peer's end after the close frame.
const LINGER: Duration = Duration::from_secs(1);

/// What a wait on the socket brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// More bytes are buffered (frames may be ready).
    Bytes,
    /// The peer closed its side.
    Eof,
    /// The socket was closed out of band.
    Kicked(Kick),
}

/// The socket's stream: shared for plain TCP (senders write to it directly),
/// owned otherwise.
#[derive(Debug)]
enum Io {
    Tcp(Arc<TcpStream>),
    Other(TokioIo<Upgraded>),
}

impl Io {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut Vec<u8>) -> Poll<io::Result<usize>> {
        match self {
            // Bounded: a would-block clears readiness, so the next poll waits.
            Self::Tcp(tcp) => loop {
                ready!(tcp.poll_read_ready(cx))?;
                let spare = buf.capacity() - buf.len();
                let mut read = None;
                // One raw recv(2) into the spare capacity (glibc's wrapper is a
                // cancellation point, two calls more in a multi-threaded process).
                // A short read drained the socket: readiness is cleared (as tokio's
                // own `poll_read` does), so the next poll waits for the next event
                // instead of trying a read that would block.
                let outcome = tcp.try_io(Interest::READABLE, || {
                    let (n, _) = rustix::net::recv(&**tcp, rustix::buffer::spare_capacity(buf), RecvFlags::empty())?;
                    read = Some(n);
                    if 0 < n && n < spare {
                        Err(io::ErrorKind::WouldBlock.into())
                    } else {
                        Ok(())
                    }
                });
                match (read, outcome) {
                    (Some(n), _) => return Poll::Ready(Ok(n)),
                    (None, Err(e)) if e.kind() != io::ErrorKind::WouldBlock => return Poll::Ready(Err(e)),
                    (None, _) => {}
                }
            },
            Self::Other(io) => tokio_util::io::poll_read_buf(Pin::new(io), cx, buf),
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self {
            // Bounded as above.
            Self::Tcp(tcp) => loop {
                ready!(tcp.poll_write_ready(cx))?;
                match tcp.try_write(buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    result => return Poll::Ready(result),
                }
            },
            Self::Other(io) => Pin::new(io).poll_write(cx, buf),
        }
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Self::Tcp(_) => Poll::Ready(Ok(())),
            // TLS streams buffer records until flushed.
            Self::Other(io) => Pin::new(io).poll_flush(cx),
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Self::Tcp(tcp) => {
                nix::sys::socket::shutdown(tcp.as_raw_fd(), nix::sys::socket::Shutdown::Write).map_err(io::Error::from)
            }
            Self::Other(io) => io.shutdown().await,
        }
    }
}

/// What a plain-TCP room socket gives a new program image: its stream and the
/// bytes on either side of the framing.
#[derive(Debug)]
pub struct SocketParts {
    /// The socket (a duplicate: dropping the original does not close it).
    pub fd: std::os::fd::OwnedFd,
    /// Bytes read and not parsed yet; they start a frame.
    pub unread: Vec<u8>,
    /// Encoded frames not written yet (the rest of one may come first).
    pub unsent: Vec<u8>,
}

/// A room socket's stream, buffers and outbox.
#[derive(Debug)]
pub struct WsSocket {
    io: Io,
    /// Bytes read and not consumed yet; starts with a frame boundary.
    rbuf: ReadBuffer,
    /// Bytes of the frame handed out by the last `next_frame`, consumed by the next call.
    handed: usize,
    decoder: Decoder,
    /// What everyone sends to this socket.
    outbox: Outbox,
    /// Frames taken from the outbox; `wbuf[written..]` still to write.
    wbuf: Vec<u8>,
    written: usize,
    /// The waker `drive` last gave the outbox's turn.
    registered: Option<Waker>,
}

impl WsSocket {
    /// Frames over `max_message` bytes are refused from their header; at most
    /// `max_queued` frames wait in the outbox.
    pub fn new(io: RoomStream, max_message: usize, max_queued: usize) -> Self {
        let mut rbuf = ReadBuffer::default();
        let (io, outbox) = match io {
            RoomStream::Tcp(tcp, early) => {
                // Bytes hyper read past the upgrade request are the first frames.
                rbuf = ReadBuffer::with(&early);
                let tcp = Arc::new(tcp);
                (Io::Tcp(tcp.clone()), Outbox::new(max_queued, Some(tcp)))
            }
            RoomStream::Other(io) => (Io::Other(io), Outbox::new(max_queued, None)),
        };
        Self {
            io,
            rbuf,
            handed: 0,
            decoder: Decoder::new(max_message),
            outbox,
            wbuf: Vec::new(),
            written: 0,
            registered: None,
        }
    }

    /// A socket a previous program image handed over: `unread` bytes are
    /// parsed first and `unsent` ones written before anything else.
    pub fn resume(tcp: TcpStream, parts_unread: &[u8], unsent: Vec<u8>, max_message: usize, max_queued: usize) -> Self {
        let tcp = Arc::new(tcp);
        let rbuf = ReadBuffer::with(parts_unread);
        Self {
            io: Io::Tcp(tcp.clone()),
            rbuf,
            handed: 0,
            decoder: Decoder::new(max_message),
            outbox: Outbox::resumed(max_queued, Some(tcp), unsent),
            wbuf: Vec::new(),
            written: 0,
            registered: None,
        }
    }

    /// A plain TCP socket (one a handover can keep; TLS sessions cannot be).
    pub fn is_plain(&self) -> bool {
        matches!(self.io, Io::Tcp(_))
    }

    /// Hands the socket over at a frame boundary, once nobody sends to it any
    /// more; `None` (the socket is then dropped: closed) when it cannot be
    /// (TLS, a fragmented message half received, no descriptor left).
    pub fn hand_over(mut self) -> Option<SocketParts> {
        let Io::Tcp(tcp) = &self.io else { return None };
        if !self.decoder.between_messages() {
            return None;
        }
        let fd = std::os::fd::AsFd::as_fd(&**tcp).try_clone_to_owned().ok()?;
        self.rbuf.consume(std::mem::take(&mut self.handed));
        let mut unsent = self.wbuf.split_off(self.written);
        unsent.extend(self.outbox.take_unsent());
        Some(SocketParts {
            fd,
            unread: self.rbuf.unread().to_vec(),
            unsent,
        })
    }

    /// The sending side, for everyone who sends to this socket.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The next complete frame already read (a ping's pong is queued here).
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, ProtocolError> {
        self.rbuf.consume(std::mem::take(&mut self.handed));
        let Some(decoded) = self.decoder.decode(self.rbuf.unread_mut())? else {
            return Ok(None);
        };
        self.handed = decoded.consumed;
        if let Frame::Ping(payload) = decoded.frame {
            self.outbox.put_own(|out| frame::put_pong(out, payload), true);
        }
        Ok(Some(decoded.frame))
    }

    /// Queues a ping.
    pub fn put_ping(&mut self) {
        self.outbox.put_own(frame::put_ping, false);
    }

    /// Ends the outbox: see [`Outbox::end`].
    pub fn end(&mut self, ending: Ending) -> Option<Kick> {
        self.outbox.end(ending)
    }

    /// Queues the close frame, after everything else.
    pub fn close(&mut self, kick: Kick) {
        self.outbox
            .put_own(|out| frame::put_close(out, kick.code, kick.reason), false);
    }

    /// Writes what is pending and reads more: returns once bytes (or the end)
    /// were read, the socket was kicked, or it failed. Cancel-safe: nothing is
    /// lost if dropped.
    pub async fn drive(&mut self) -> io::Result<Read> {
        self.rbuf.consume(std::mem::take(&mut self.handed));
        std::future::poll_fn(|cx| {
            let same = self.registered.as_ref().is_some_and(|w| w.will_wake(cx.waker()));
            if !same {
                self.registered = Some(cx.waker().clone());
            }
            // Nothing came since the last turn found nothing: no turn (no lock).
            let quiet = same && self.written == self.wbuf.len() && self.outbox.quiet();
            match if quiet {
                Poll::Ready(Ok(None))
            } else {
                self.poll_write_side(cx)
            } {
                Poll::Ready(Ok(Some(kick))) => return Poll::Ready(Ok(Read::Kicked(kick))),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(None)) | Poll::Pending => {}
            }
            // Room for the frame being read, whole, once its header is in.
            let unread = self.rbuf.unread();
            let need = Decoder::frame_len(unread).unwrap_or(0);
            let spare = need.saturating_sub(unread.len()).max(READ_CHUNK);
            let read = self.io.poll_read(cx, self.rbuf.spare(spare));
            read.map(|r| r.map(|n| if n == 0 { Read::Eof } else { Read::Bytes }))
        })
        .await
    }

    /// Takes queued frames and writes them while the socket takes them: `Some`
    /// kick when closed out of band, `None` once everything is written.
    fn poll_write_side(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Kick>>> {
        for _ in 0..TURNS {
            match self.outbox.turn(cx, &mut self.wbuf, self.written, WRITE_HIGH) {
                Turn::Kicked(kick) => return Poll::Ready(Ok(Some(kick))),
                Turn::Nothing => return Poll::Ready(Ok(None)),
                Turn::SenderWrites => return Poll::Pending,
                Turn::Write => {}
            }
            ready!(self.poll_flush_pending(cx))?;
            if !self.outbox.written() {
                return Poll::Ready(Ok(None));
            }
        }
        // Senders keep queueing: let the reads and timers have their turn.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Writes `wbuf[written..]` until done or the socket would block.
    fn poll_flush_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.wbuf.len() {
            match ready!(self.io.poll_write(cx, &self.wbuf[self.written..])) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => self.written += n,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        self.wbuf.clear();
        self.written = 0;
        if self.wbuf.capacity() > KEEP_BUFFER {
            self.wbuf = Vec::new();
        }
        self.io.poll_flush(cx)
    }

    /// Writes everything pending (a close frame last, after [`WsSocket::end`]),
    /// sends our end, then waits up to [`LINGER`] for the peer's end so that
    /// nothing it still sends resets the connection before it read the close
    /// frame. Bounded by `grace` for the writes.
    pub async fn finish(mut self, grace: Duration) {
        let flushed = tokio::time::timeout(grace, async {
            std::future::poll_fn(|cx| self.poll_write_side(cx).map_ok(|_| ())).await?;
            self.io.shutdown().await
        })
        .await;
        if !matches!(flushed, Ok(Ok(()))) {
            return;
        }
        let _ = tokio::time::timeout(LINGER, async {
            let mut sink = Vec::with_capacity(1024);
            // Bounded by LINGER; each read is a chunk the peer sent after our close.
            loop {
                sink.clear();
                match std::future::poll_fn(|cx| self.io.poll_read(cx, &mut sink)).await {
                    Ok(n) if n > 0 => {}
                    _ => break,
                }
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests;
