//! A tiny stand-in for cpu-server's room socket, for testing the orb alone.
//!
//! It listens on 127.0.0.1:0, accepts WebSocket upgrades on any path,
//! records every frame received (per connection), answers `join` with a
//! `peer-discovery` (or a configured reply) and `ping` with `pong`, and lets
//! the test inject frames, drop connections or go away entirely.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;

/// One frame received from a client.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// Index of the connection (0 for the first accepted).
    pub conn: usize,
    /// The frame as JSON, or `Value::String` with the raw text when it was not JSON.
    pub frame: Value,
}

/// What the upgrade request carried.
#[derive(Debug, Clone, Default)]
pub struct Upgrade {
    /// Request path, e.g. `/ws-simple/r1`.
    pub path: String,
    /// Request headers, names lower-cased.
    pub headers: Vec<(String, String)>,
}

enum Out {
    Text(String),
    Drop,
}

struct Conn {
    upgrade: Upgrade,
    out: mpsc::UnboundedSender<Out>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    conns: Vec<Conn>,
    peers: Vec<Value>,
    join_reply: Option<Value>,
    stall_on_close: bool,
    reject_upgrade: Option<u16>,
}

/// The fake room server. Dropping it stops it.
pub struct FakeRoom {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    accept: JoinHandle<()>,
}

impl FakeRoom {
    /// Starts listening on 127.0.0.1 on a free port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State::default()));
        let accept = tokio::spawn(accept_loop(listener, state.clone()));
        Self { addr, state, accept }
    }

    /// `127.0.0.1:PORT`, for `--cpu-host`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The peers listed in the `peer-discovery` sent to later joiners.
    pub fn set_peers(&self, peers: Vec<Value>) {
        self.lock().peers = peers;
    }

    /// Replaces the `peer-discovery` reply to a join (e.g. with an `error`).
    pub fn set_join_reply(&self, reply: Value) {
        self.lock().join_reply = Some(reply);
    }

    /// Refuses every later upgrade with this HTTP status (e.g. 401).
    pub fn set_reject_upgrade(&self, status: u16) {
        self.lock().reject_upgrade = Some(status);
    }

    /// When set, a client's close frame is never answered: the connection
    /// just stays open (a server hanging during the orb's shutdown).
    pub fn set_stall_on_close(&self, stall: bool) {
        self.lock().stall_on_close = stall;
    }

    /// Every frame received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    /// The frames of `kind` received so far.
    pub fn frames_of(&self, kind: &str) -> Vec<Value> {
        self.received()
            .into_iter()
            .map(|r| r.frame)
            .filter(|f| f["type"] == kind)
            .collect()
    }

    /// Waits up to `timeout` for the `n`th (1-based) frame of `kind`.
    pub async fn wait_for_nth(&self, kind: &str, n: usize, timeout: Duration) -> Option<Value> {
        crate::wait::until(timeout, || self.frames_of(kind).into_iter().nth(n - 1)).await
    }

    /// Waits up to `timeout` for a frame of `kind` matching `check`.
    pub async fn wait_for(&self, kind: &str, timeout: Duration, check: impl Fn(&Value) -> bool) -> Option<Value> {
        crate::wait::until(timeout, || self.frames_of(kind).into_iter().find(|f| check(f))).await
    }

    /// Number of connections accepted so far.
    pub fn connections(&self) -> usize {
        self.lock().conns.len()
    }

    /// The upgrade request of connection `conn`.
    pub fn upgrade(&self, conn: usize) -> Option<Upgrade> {
        self.lock().conns.get(conn).map(|c| c.upgrade.clone())
    }

    /// Sends `frame` on the newest connection.
    pub fn send(&self, frame: Value) {
        self.send_raw(frame.to_string());
    }

    /// Sends raw text on the newest connection.
    pub fn send_raw(&self, text: impl Into<String>) {
        if let Some(conn) = self.lock().conns.last() {
            let _ = conn.out.send(Out::Text(text.into()));
        }
    }

    /// Drops every open connection abruptly (no close frame).
    pub fn drop_connections(&self) {
        for conn in &self.lock().conns {
            let _ = conn.out.send(Out::Drop);
        }
    }

    /// Stops listening and drops every connection: the server is gone.
    pub fn shutdown(&self) {
        self.accept.abort();
        for conn in &self.lock().conns {
            conn.task.abort();
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for FakeRoom {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<Mutex<State>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move { serve(stream, state).await });
    }
}

// The callback's signature (and its large error type) is tungstenite's.
#[allow(clippy::result_large_err)]
async fn serve(stream: TcpStream, state: Arc<Mutex<State>>) {
    let seen = Arc::new(Mutex::new(Upgrade::default()));
    let record = seen.clone();
    let reject = state.lock().unwrap_or_else(|e| e.into_inner()).reject_upgrade;
    let callback = move |request: &Request, response: Response| {
        let mut upgrade = record.lock().unwrap_or_else(|e| e.into_inner());
        upgrade.path = request.uri().path().to_owned();
        upgrade.headers = request
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_ascii_lowercase(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        match reject.and_then(|status| StatusCode::from_u16(status).ok()) {
            Some(status) => {
                let mut refusal = ErrorResponse::new(Some(String::from("refused by the fake room")));
                *refusal.status_mut() = status;
                Err(refusal)
            }
            None => Ok(response),
        }
    };
    let Ok(Ok(socket)) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::accept_hdr_async(stream, callback),
    )
    .await
    else {
        return;
    };
    let (out_tx, mut out_rx) = mpsc::unbounded_channel();
    let upgrade = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let (conn_index, reply_tx) = {
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        let index = st.conns.len();
        // The task handle is filled in below; a placeholder keeps indices stable.
        st.conns.push(Conn {
            upgrade,
            out: out_tx.clone(),
            task: tokio::spawn(async {}),
        });
        (index, out_tx)
    };
    let task_state = state.clone();
    let task = tokio::spawn(async move {
        let (mut sink, mut stream) = socket.split();
        loop {
            tokio::select! {
                out = out_rx.recv() => match out {
                    Some(Out::Text(text)) => { let _ = sink.send(Message::text(text)).await; }
                    Some(Out::Drop) | None => return,
                },
                frame = stream.next() => match frame {
                    Some(Ok(Message::Text(text))) => {
                        let value = serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text.to_string()));
                        let reply = {
                            let mut st = task_state.lock().unwrap_or_else(|e| e.into_inner());
                            st.received.push(Received { conn: conn_index, frame: value.clone() });
                            match value["type"].as_str() {
                                Some("join") => Some(st.join_reply.clone().unwrap_or_else(|| {
                                    json!({"type":"peer-discovery","peers":st.peers,"roomId":"fake"})
                                })),
                                Some("ping") => Some(json!({"type":"pong"})),
                                _ => None,
                            }
                        };
                        if let Some(reply) = reply {
                            let _ = reply_tx.send(Out::Text(reply.to_string()));
                        }
                    }
                    Some(Ok(Message::Close(_))) => {
                        let stall = task_state.lock().unwrap_or_else(|e| e.into_inner()).stall_on_close;
                        if stall {
                            // Stop reading (so no close reply goes out) until told to drop.
                            while let Some(Out::Text(_)) = out_rx.recv().await {}
                            return;
                        }
                        let _ = sink.send(Message::Close(None)).await;
                        return;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return,
                },
            }
        }
    });
    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(conn) = st.conns.get_mut(conn_index) {
        conn.task = task;
    }
}
