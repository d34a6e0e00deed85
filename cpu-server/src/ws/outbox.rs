//! The sending side of one socket, shared by every task that sends to it.
//!
//! A sender whose frame has nothing ahead of it writes the frame straight into
//! the socket from its own task (one vectored `try_write`: no copy of the
//! payload, no wake-up of the socket's task, no poll of it). Otherwise it appends
//! the encoded frame to a bounded buffer that the socket's task writes, in order.
//! A kick (an out-of-band close) overtakes everything.
//!
//! One party at a time may write to the socket ([`Writer`]): nobody, when nothing
//! is pending anywhere; one sender during its direct write; or the socket's task
//! while it holds bytes not yet written. The claim is taken and given back under
//! the lock, the write happens outside it and never waits, so no lock is held
//! across IO and nobody ever waits on a sender. A sender may claim the socket only
//! when the buffer is empty and the task holds nothing, so no frame overtakes one
//! queued before it: per-sender order holds, and so does every order the queue
//! gave (a `user-joined` before the joiner's frames).

use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Waker};

use tokio::io::Interest;
use tokio::net::TcpStream;

use super::frame::{self, TextFrame};

/// A close that overtakes the queue (replaced, slow consumer, shutdown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kick {
    /// WebSocket close code.
    pub code: u16,
    /// Close reason.
    pub reason: &'static str,
}

impl From<(u16, &'static str)> for Kick {
    /// A kick with a `(code, reason)` pair.
    fn from((code, reason): (u16, &'static str)) -> Self {
        Self { code, reason }
    }
}

/// Why a frame could not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    /// The queue is full: the peer reads too slowly.
    Full,
    /// The socket is closing or closed: it takes no more frames.
    Closed,
    /// The sender of a relayed frame is no longer a member: the frame is dropped.
    SenderLeft,
}

/// Who may write to the socket now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Writer {
    /// Nobody: the task holds nothing to write.
    #[default]
    Idle,
    /// A sender is writing its frame directly.
    Sender,
    /// The socket's task holds bytes not yet written, or has queued bytes to take.
    Task,
}

#[derive(Debug, Default)]
struct State {
    /// Encoded frames for the task to write, in order.
    queued: Vec<u8>,
    /// How many frames `queued` holds (the bound counts frames).
    frames: usize,
    /// Bytes at the front of `queued` that finish a frame a sender began writing:
    /// they go out even when the queue is dropped, or the stream would be torn.
    rest: usize,
    writer: Writer,
    /// Set by the first kick: later ones are no-ops.
    kicked: bool,
    /// A kick the task has not taken yet.
    kick: Option<Kick>,
    /// The close the socket's own reader queued after its frames.
    close_after: Option<Kick>,
    /// No more frames: the socket is closing.
    ended: bool,
    /// The socket, for direct writes (plain TCP only; dropped when the socket ends,
    /// or by the sender writing with it then; `None` during a direct write).
    direct: Option<Arc<TcpStream>>,
    /// The socket's task, woken by appends, kicks and the end of a direct write.
    waker: Option<Waker>,
}

impl State {
    /// Appends one encoded frame for the task; the waker to wake.
    fn append(&mut self, put: impl FnOnce(&mut Vec<u8>)) -> Option<Waker> {
        put(&mut self.queued);
        self.frames += 1;
        if self.writer == Writer::Idle {
            self.writer = Writer::Task;
        }
        self.waker.take()
    }
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Most frames `queued` may hold.
    max_frames: usize,
    /// Set (under the lock) when a turn found nothing for the socket's task with
    /// its waker registered; cleared (under the lock) by whatever gives the task
    /// something to do. While set, the task's turn needs no lock.
    quiet: AtomicBool,
}

/// Cloneable sending side of one socket.
#[derive(Debug, Clone)]
pub struct Outbox {
    shared: Arc<Shared>,
}

/// What the socket's task may do with its write buffer now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Closed out of band: stop.
    Kicked(Kick),
    /// The task owns the socket's write side: write its buffer.
    Write,
    /// Nothing to write.
    Nothing,
    /// A sender is writing; the task is woken when it is done.
    SenderWrites,
}

/// How a socket's task ends its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Drop whatever is queued: the close overtakes it (a kick, a peer's close).
    Drop,
    /// Write what was queued before the reader's own close, then close.
    Flush,
}

fn wake(waker: Option<Waker>) {
    if let Some(waker) = waker {
        waker.wake();
    }
}

impl Outbox {
    /// An outbox holding at most `max_frames` queued frames; `direct` lets senders
    /// write to the socket themselves.
    pub fn new(max_frames: usize, direct: Option<Arc<TcpStream>>) -> Self {
        Self::resumed(max_frames, direct, Vec::new())
    }

    /// Like [`Outbox::new`], with `unsent` (encoded frames a previous program
    /// image had not written yet, possibly the rest of one first) to write
    /// before anything else.
    pub fn resumed(max_frames: usize, direct: Option<Arc<TcpStream>>, unsent: Vec<u8>) -> Self {
        let pending = !unsent.is_empty();
        let state = State {
            direct,
            rest: unsent.len(),
            frames: usize::from(pending),
            writer: if pending { Writer::Task } else { Writer::Idle },
            queued: unsent,
            ..State::default()
        };
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                max_frames: max_frames.max(1),
                quiet: AtomicBool::new(false),
            }),
        }
    }

    /// The task has something to do (called under the lock).
    fn busy(&self) {
        self.shared.quiet.store(false, Ordering::Release);
    }

    /// Whether the last turn found nothing and nothing came since, the task's
    /// waker (the one it gave that turn) still registered: the task may skip its
    /// turn. Only for a task that holds no bytes of its own.
    pub fn quiet(&self) -> bool {
        self.shared.quiet.load(Ordering::Acquire)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No code panics while holding this lock; its fields stay consistent anyway.
        self.shared
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sends a text frame without waiting: written now when nothing is ahead of it,
    /// else queued.
    pub fn try_text(&self, text: &[u8]) -> Result<(), QueueError> {
        let (head, n) = frame::text_header(text.len());
        self.send(&head[..n], text, None)
    }

    /// Like [`Outbox::try_text`], for a frame (already encoded) relayed from a
    /// member whose membership is `sender` (cleared by the owner of membership
    /// before it tells anyone the member left or was replaced). It is read under
    /// this outbox's lock, so a relayed frame either goes before whatever that
    /// owner queues here next (a `user-left`, a `user-joined` of the rejoin) or
    /// not at all.
    pub fn try_relay(&self, frame: &TextFrame, sender: &AtomicBool) -> Result<(), QueueError> {
        self.send(frame.bytes(), &[], Some(sender))
    }

    /// Sends the frame `head` then `body`.
    fn send(&self, head: &[u8], body: &[u8], sender: Option<&AtomicBool>) -> Result<(), QueueError> {
        let mut state = self.lock();
        if state.ended {
            return Err(QueueError::Closed);
        }
        if sender.is_some_and(|member| !member.load(Ordering::Acquire)) {
            return Err(QueueError::SenderLeft);
        }
        if state.writer == Writer::Idle
            && state.queued.is_empty()
            && let Some(stream) = state.direct.take()
        {
            // Moved out for the write, not cloned: no count bumped on the line the
            // socket's own task reads its stream from (it lives on another loop).
            state.writer = Writer::Sender;
            drop(state);
            self.write_direct(stream, head, body);
            return Ok(());
        }
        if state.frames >= self.shared.max_frames {
            return Err(QueueError::Full);
        }
        self.busy();
        let waker = state.append(|out| {
            out.extend_from_slice(head);
            out.extend_from_slice(body);
        });
        drop(state);
        wake(waker);
        Ok(())
    }

    /// Writes the frame `head` then `body` into `stream` as the claimed writer,
    /// then gives the socket back: to nobody when it all went out and nothing was
    /// queued meanwhile, else to its task (woken), with the frame's rest first.
    /// The stream goes back for the next direct write, unless the socket ended
    /// meanwhile (then it is dropped here, as the end would have).
    fn write_direct(&self, stream: Arc<TcpStream>, head: &[u8], body: &[u8]) {
        let written = write_now(&stream, head, body);
        let total = head.len() + body.len();
        let mut state = self.lock();
        let ended = if state.ended {
            Some(stream)
        } else {
            state.direct = Some(stream);
            None
        };
        if written < total {
            // The rest goes first; anything appended meanwhile follows it.
            let mut rest = Vec::with_capacity(total - written + state.queued.len());
            rest.extend_from_slice(&head[written.min(head.len())..]);
            rest.extend_from_slice(&body[written.saturating_sub(head.len())..]);
            state.rest = rest.len();
            rest.extend_from_slice(&state.queued);
            state.queued = rest;
            state.frames += 1;
            self.busy();
        }
        let waker = if state.queued.is_empty() {
            state.writer = Writer::Idle;
            None
        } else {
            state.writer = Writer::Task;
            state.waker.take()
        };
        drop(state);
        // Outside the lock: the last handle closes the descriptor.
        drop(ended);
        wake(waker);
    }

    /// The socket's task queues a control frame of its own (ping, pong, close),
    /// after everything queued; even once ended. A pong is skipped while the
    /// queue is full (the peer is not reading).
    pub fn put_own(&self, put: impl FnOnce(&mut Vec<u8>), skippable: bool) {
        let mut state = self.lock();
        if skippable && state.frames >= self.shared.max_frames {
            return;
        }
        // The task is the caller: no wake-up needed.
        self.busy();
        let _ = state.append(put);
    }

    /// Asks the socket to close now with `(code, reason)`; the first kick wins.
    /// `true` for that first one.
    pub fn kick(&self, (code, reason): (u16, &'static str)) -> bool {
        let mut state = self.lock();
        if state.kicked || state.ended {
            return false;
        }
        state.kicked = true;
        state.kick = Some(Kick { code, reason });
        self.busy();
        let waker = state.waker.take();
        drop(state);
        wake(waker);
        true
    }

    /// The socket's own reader closes it after everything queued so far; no
    /// frame is taken after this.
    pub fn close_after_queued(&self, (code, reason): (u16, &'static str)) {
        let mut state = self.lock();
        state.ended = true;
        state.close_after.get_or_insert(Kick { code, reason });
    }

    /// The socket's task: takes a kick, or moves queued frames into `wbuf` (when
    /// `wbuf[written..]`, the bytes it still holds, are fewer than `high`) and
    /// claims the write side if it has bytes to write. Registers the task's waker.
    pub fn turn(&self, cx: &Context<'_>, wbuf: &mut Vec<u8>, written: usize, high: usize) -> Turn {
        let mut state = self.lock();
        if let Some(kick) = state.kick {
            return Turn::Kicked(kick);
        }
        match &state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => state.waker = Some(cx.waker().clone()),
        }
        if state.writer == Writer::Sender {
            // The task holds nothing while a sender writes (it would own the socket).
            return Turn::SenderWrites;
        }
        if wbuf.len() - written < high && !state.queued.is_empty() {
            if wbuf.is_empty() {
                std::mem::swap(wbuf, &mut state.queued);
            } else {
                wbuf.extend_from_slice(&state.queued);
                state.queued.clear();
            }
            state.frames = 0;
            state.rest = 0;
        }
        if wbuf.len() > written {
            state.writer = Writer::Task;
            Turn::Write
        } else {
            self.shared.quiet.store(state.writer == Writer::Idle, Ordering::Release);
            Turn::Nothing
        }
    }

    /// The socket's task wrote everything it held: `true` when more was queued
    /// meanwhile (take another turn); otherwise senders may write directly again.
    pub fn written(&self) -> bool {
        let mut state = self.lock();
        if state.queued.is_empty() {
            if state.writer == Writer::Task {
                state.writer = Writer::Idle;
            }
            false
        } else {
            true
        }
    }

    /// For a handover, once nobody sends to this socket any more: ends the queue
    /// and returns every byte queued and not written, in order.
    pub fn take_unsent(&self) -> Vec<u8> {
        let mut state = self.lock();
        self.busy();
        state.ended = true;
        state.direct = None;
        state.frames = 0;
        state.rest = 0;
        std::mem::take(&mut state.queued)
    }

    /// The socket's task ends the queue: no frame is taken after this and no
    /// sender writes to the socket any more. Returns the close to send, if one
    /// is due: a kick first (it drops what was queued, but for the rest of a
    /// frame already begun), else with [`Ending::Flush`] the reader's own close
    /// (what was queued before it stays).
    pub fn end(&self, ending: Ending) -> Option<Kick> {
        let mut state = self.lock();
        self.busy();
        state.ended = true;
        state.direct = None;
        let close = match (state.kick.take(), ending) {
            (Some(kick), _) => Some(kick),
            (None, Ending::Flush) => return state.close_after,
            (None, Ending::Drop) => None,
        };
        let rest = state.rest;
        state.queued.truncate(rest);
        state.frames = usize::from(rest > 0);
        close
    }
}

/// One `send(2)` of `bytes` (never waiting; a would-block clears the stream's
/// write readiness, as `try_write` does), made as a raw syscall: glibc's wrapper
/// is a cancellation point, which in a multi-threaded process costs two more
/// calls around every send.
fn send(stream: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    stream.try_io(Interest::WRITABLE, || {
        rustix::net::send(stream, bytes, rustix::net::SendFlags::NOSIGNAL).map_err(io::Error::from)
    })
}

/// Writes `head` then `body` without waiting (one plain `send` when `body` is
/// empty, else one vectored write); how many bytes went out. An error writes
/// nothing here: the socket's task meets it on its own write.
fn write_now(stream: &TcpStream, head: &[u8], body: &[u8]) -> usize {
    let total = head.len() + body.len();
    let mut written = 0;
    // Bounded: each round writes at least one byte or stops.
    while written < total {
        let result = if written >= head.len() {
            send(stream, &body[written - head.len()..])
        } else if body.is_empty() {
            send(stream, &head[written..])
        } else {
            stream.try_write_vectored(&[IoSlice::new(&head[written..]), IoSlice::new(body)])
        };
        match result {
            Ok(0) => break,
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    written
}

#[cfg(test)]
impl Outbox {
    /// Takes the text frames queued so far (tests only).
    pub fn take_texts(&self) -> Vec<String> {
        let mut state = self.lock();
        let bytes = std::mem::take(&mut state.queued);
        state.frames = 0;
        state.rest = 0;
        let mut texts = Vec::new();
        let mut rest = &bytes[..];
        while let [first, second, tail @ ..] = rest {
            let (len, tail) = match second & 0x7f {
                126 => (u16::from_be_bytes([tail[0], tail[1]]) as usize, &tail[2..]),
                127 => (
                    u64::from_be_bytes(tail[..8].try_into().expect("8 bytes")) as usize,
                    &tail[8..],
                ),
                n => (n as usize, tail),
            };
            if first & 0x0f == 0x1 {
                texts.push(String::from_utf8(tail[..len].to_vec()).expect("utf-8"));
            }
            rest = &tail[len..];
        }
        texts
    }

    /// Takes the kick not yet taken (tests only).
    pub fn take_kick(&self) -> Option<Kick> {
        self.lock().kick.take()
    }
}

#[cfg(test)]
mod tests;
