//! A tiny scripted HTTP/1.1 server on 127.0.0.1 for the provider tests: the
//! n-th connection gets the n-th reply (the last repeats), every request is
//! recorded, and dropping the server stops it and every connection it holds.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::voice::settings::CallPolicy;

/// A call policy for tests: `timeout_ms` per attempt, `retries`, 10 ms apart.
pub fn call(timeout_ms: u64, retries: u32) -> CallPolicy {
    CallPolicy {
        timeout: Duration::from_millis(timeout_ms),
        retries,
        base_delay: Duration::from_millis(10),
    }
}

/// How the server answers one connection.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A complete answer.
    Json {
        /// HTTP status.
        status: u16,
        /// Body.
        body: String,
    },
    /// Reads the request, then never answers.
    Hang,
    /// Headers and `first`, then waits for the release before sending `rest`.
    Split {
        /// Sent at once.
        first: Vec<u8>,
        /// Sent after the release.
        rest: Vec<u8>,
        /// Becomes `true` on release.
        gate: watch::Receiver<bool>,
    },
}

impl Reply {
    /// A JSON answer with `status`.
    pub fn json(status: u16, body: &str) -> Self {
        Self::Json {
            status,
            body: body.to_owned(),
        }
    }

    /// A streamed PCM answer held after `first` until the returned sender sends `true`.
    pub fn split(first: Vec<u8>, rest: Vec<u8>) -> (Self, watch::Sender<bool>) {
        let (tx, gate) = watch::channel(false);
        (Self::Split { first, rest, gate }, tx)
    }
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Request {
    /// Request line and headers.
    pub head: String,
    /// Body (by `content-length`).
    pub body: Vec<u8>,
}

impl Request {
    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// The server; dropping it stops it.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    requests: Arc<Mutex<Vec<Request>>>,
    task: JoinHandle<()>,
}

impl TestServer {
    /// Serves `replies` in order on 127.0.0.1 (the last repeats).
    pub async fn start(replies: Vec<Reply>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let task = tokio::spawn(async move {
            // Dropped (aborting every connection) when this task is aborted.
            let mut connections = JoinSet::new();
            for n in 0..64 {
                let Ok((socket, _)) = listener.accept().await else {
                    break;
                };
                let Some(reply) = replies.get(n.min(replies.len().saturating_sub(1))).cloned() else {
                    break;
                };
                connections.spawn(serve(socket, reply, seen.clone()));
            }
            // Keep the connections (and a hang) alive until the server drops.
            std::future::pending::<()>().await;
        });
        Self { base, requests, task }
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut socket: TcpStream, reply: Reply, seen: Arc<Mutex<Vec<Request>>>) {
    let Some(request) = read_request(&mut socket).await else {
        return;
    };
    seen.lock().unwrap_or_else(|e| e.into_inner()).push(request);
    match reply {
        Reply::Json { status, body } => {
            let head = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(body.as_bytes()).await;
        }
        Reply::Hang => std::future::pending::<()>().await,
        Reply::Split { first, rest, mut gate } => {
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: audio/pcm\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                first.len() + rest.len()
            );
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(&first).await;
            let _ = socket.flush().await;
            if gate.wait_for(|released| *released).await.is_err() {
                // The test dropped its sender unreleased: hold until the server drops.
                std::future::pending::<()>().await;
            }
            let _ = socket.write_all(&rest).await;
        }
    }
    let _ = socket.shutdown().await;
}

/// Reads one request (head up to 64 KiB, body up to 16 MiB), within 5 s.
async fn read_request(socket: &mut TcpStream) -> Option<Request> {
    let read = async {
        let mut data = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let n = socket.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            data.extend_from_slice(&buf[..n]);
            if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&data[..end]).into_owned();
                let partial = Request { head, body: Vec::new() };
                let length: usize = partial
                    .header("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if length > 16 << 20 {
                    return None;
                }
                if data.len() >= end + 4 + length {
                    let body = data[end + 4..end + 4 + length].to_vec();
                    return Some(Request { body, ..partial });
                }
            } else if data.len() > 64 << 10 {
                return None;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read).await.ok().flatten()
}
