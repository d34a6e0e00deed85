//! A WebSocket test client that speaks JSON frames, with bounded waits.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

/// One test participant's socket.
pub struct Client {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What a read produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Read {
    /// A JSON text frame.
    Json(Value),
    /// A close frame: code and reason.
    Closed(Option<(u16, String)>),
    /// Nothing within the timeout.
    Timeout,
}

impl Client {
    /// Connects to `url` (e.g. `ws://127.0.0.1:PORT/ws-simple/room`) within 5 s.
    pub async fn connect(url: &str) -> Result<Self, String> {
        match tokio::time::timeout(Duration::from_secs(5), connect_async(url)).await {
            Ok(Ok((socket, _))) => Ok(Self { socket }),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("connect to {url} timed out")),
        }
    }

    /// Connects to `url` with `Authorization: Bearer <token>` within 5 s.
    pub async fn connect_with_token(url: &str, token: &str) -> Result<Self, String> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = url.into_client_request().map_err(|e| e.to_string())?;
        let bearer = format!("Bearer {token}").parse().map_err(|_| "bad token".to_owned())?;
        request.headers_mut().insert("authorization", bearer);
        match tokio::time::timeout(Duration::from_secs(5), connect_async(request)).await {
            Ok(Ok((socket, _))) => Ok(Self { socket }),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("connect to {url} timed out")),
        }
    }

    /// Connects and joins; returns the client and its `peer-discovery`.
    pub async fn join(url: &str, user_id: &str, role: &str) -> (Self, Value) {
        let mut client = Self::connect(url).await.expect("connect");
        client
            .send(serde_json::json!({"type":"join","userId":user_id,"userName":user_id,"userRole":role}))
            .await;
        let discovery = client.recv_type("peer-discovery", Duration::from_secs(5)).await;
        (client, discovery)
    }

    /// Connects and joins as the AI (`participantType: ai`; the server must run with
    /// `ORB_AUTH=false`, orb tokens are tested in `tests/security.rs`).
    pub async fn join_ai(url: &str, user_id: &str) -> (Self, Value) {
        let mut client = Self::connect(url).await.expect("connect");
        client
            .send(serde_json::json!({"type":"join","userId":user_id,"userName":"AI Assistant","userRole":"ai","participantType":"ai"}))
            .await;
        let discovery = client.recv_type("peer-discovery", Duration::from_secs(5)).await;
        (client, discovery)
    }

    /// Sends one JSON value as a text frame.
    pub async fn send(&mut self, value: Value) {
        self.send_text(value.to_string()).await;
    }

    /// Sends raw text.
    pub async fn send_text(&mut self, text: String) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.socket.send(Message::text(text))).await;
    }

    /// Reads the next JSON frame, close, or times out.
    pub async fn read(&mut self, timeout: Duration) -> Read {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let next = tokio::time::timeout_at(deadline, self.socket.next()).await;
            match next {
                Err(_) => return Read::Timeout,
                Ok(None) | Ok(Some(Err(_))) => return Read::Closed(None),
                Ok(Some(Ok(Message::Text(text)))) => {
                    return Read::Json(serde_json::from_str(&text).unwrap_or(Value::String(text.to_string())));
                }
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return Read::Closed(frame.map(|f| (u16::from(f.code), f.reason.to_string())));
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// The next JSON frame; panics on close or timeout.
    pub async fn recv(&mut self, timeout: Duration) -> Value {
        match self.read(timeout).await {
            Read::Json(v) => v,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// The next frame of `kind`, skipping others; panics on close or timeout.
    pub async fn recv_type(&mut self, kind: &str, timeout: Duration) -> Value {
        self.try_recv_type(kind, timeout)
            .await
            .unwrap_or_else(|| panic!("no {kind:?} frame within {timeout:?}"))
    }

    /// The next frame of `kind`, skipping others; `None` on close or timeout.
    pub async fn try_recv_type(&mut self, kind: &str, timeout: Duration) -> Option<Value> {
        self.try_recv_where(timeout, |v| v["type"] == kind).await
    }

    /// The next frame that `pick` accepts, skipping others; `None` on close or timeout.
    pub async fn try_recv_where(&mut self, timeout: Duration, pick: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read(left).await {
                Read::Json(v) if pick(&v) => return Some(v),
                Read::Json(_) => continue,
                _ => return None,
            }
        }
    }

    /// Closes the socket politely.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.socket.close(None)).await;
    }
}
