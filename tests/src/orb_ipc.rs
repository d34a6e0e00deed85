//! The manager's side of an orb's `NODE_CHANNEL_FD` channel, for tests.
//!
//! [`ManagerEnd::pair`] makes a Unix socket pair and leaves the child's end
//! inheritable (close-on-exec cleared) so that `std::process::Command` passes
//! it through at the same descriptor number, named in `NODE_CHANNEL_FD`.
//! Spawns must hold [`SPAWN_LOCK`] so that no other child inherits it.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Mutex;
use std::time::Duration;

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

/// Held around every spawn in a test binary that passes inheritable descriptors.
pub static SPAWN_LOCK: Mutex<()> = Mutex::new(());

/// The manager's end: JSON lines in, JSON lines out.
pub struct ManagerEnd {
    lines: Lines<BufReader<OwnedReadHalf>>,
    writer: OwnedWriteHalf,
    /// Every message read so far.
    pub seen: Vec<Value>,
}

/// The child's end, to keep open until the child is spawned, then drop.
pub struct ChildEnd(OwnedFd);

impl ChildEnd {
    /// The value for `NODE_CHANNEL_FD`.
    pub fn fd_number(&self) -> String {
        self.0.as_raw_fd().to_string()
    }
}

impl ManagerEnd {
    /// A connected pair (must be called inside a tokio runtime).
    pub fn pair() -> (Self, ChildEnd) {
        let (parent, child) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        let child = OwnedFd::from(child);
        fcntl(&child, FcntlArg::F_SETFD(FdFlag::empty())).expect("clear FD_CLOEXEC");
        parent.set_nonblocking(true).expect("nonblocking");
        let (read, writer) = UnixStream::from_std(parent).expect("tokio socket").into_split();
        let end = Self {
            lines: BufReader::new(read).lines(),
            writer,
            seen: Vec::new(),
        };
        (end, ChildEnd(child))
    }

    /// Writes raw bytes (a line should end with `\n`).
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        tokio::time::timeout(Duration::from_secs(5), self.writer.write_all(bytes))
            .await
            .expect("IPC write timed out")
            .expect("IPC write");
    }

    /// Writes one JSON message.
    pub async fn send(&mut self, value: Value) {
        self.send_raw(format!("{value}\n").as_bytes()).await;
    }

    /// The next message of `kind` within `timeout` (others are kept in `seen`).
    pub async fn recv_type(&mut self, kind: &str, timeout: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.next_line())
                .await
                .ok()?
                .ok()??;
            let value: Value = serde_json::from_str(&line).unwrap_or(Value::String(line));
            self.seen.push(value.clone());
            if value["type"] == kind {
                return Some(value);
            }
        }
    }
}
