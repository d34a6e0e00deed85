//! A WebSocket client written byte by byte, for tests that must send what a
//! library would not (fragments, unmasked frames, bad UTF-8, frames in the same
//! segment as the upgrade request) and see exactly what the server sends back.
//! Every read is bounded.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Opcodes.
pub const TEXT: u8 = 0x1;
/// A continuation frame.
pub const CONTINUATION: u8 = 0x0;
/// A close frame.
pub const CLOSE: u8 = 0x8;
/// A ping.
pub const PING: u8 = 0x9;
/// A pong.
pub const PONG: u8 = 0xA;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// The accept key the server must answer [`KEY`] with (RFC 6455 §1.3).
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// One server frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFrame {
    /// FIN bit.
    pub fin: bool,
    /// Opcode.
    pub opcode: u8,
    /// Whether the server masked it (it must not).
    pub masked: bool,
    /// Payload.
    pub payload: Vec<u8>,
}

impl ServerFrame {
    /// The payload as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }

    /// A close frame's code.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == CLOSE && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// A masked client frame.
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x1d, 0x9e, 0x42, 0x07];
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// A raw room socket.
pub struct RawWs {
    tcp: TcpStream,
    buf: Vec<u8>,
}

impl RawWs {
    /// Connects to `127.0.0.1:port`, sends the upgrade request for `path` followed
    /// in the same write by `early` (frames), and checks the `101` and its accept key.
    pub async fn open(port: u16, path: &str, early: &[u8]) -> Result<Self, String> {
        let mut tcp = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(("127.0.0.1", port)))
            .await
            .map_err(|_| "connect timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"
        )
        .into_bytes();
        request.extend_from_slice(early);
        tcp.write_all(&request).await.map_err(|e| e.to_string())?;
        let mut ws = Self { tcp, buf: Vec::new() };
        let head = ws.read_head().await?;
        if !head.starts_with("HTTP/1.1 101") {
            return Err(format!("not upgraded: {head}"));
        }
        if !head
            .to_ascii_lowercase()
            .contains(&format!("sec-websocket-accept: {}", ACCEPT.to_ascii_lowercase()))
        {
            return Err(format!("wrong or missing accept key: {head}"));
        }
        Ok(ws)
    }

    async fn fill(&mut self, timeout: Duration) -> Result<(), String> {
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(timeout, self.tcp.read(&mut chunk)).await {
            Err(_) => Err("read timed out".to_owned()),
            Ok(Err(e)) => Err(e.to_string()),
            Ok(Ok(0)) => Err("connection closed".to_owned()),
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
        }
    }

    async fn read_head(&mut self) -> Result<String, String> {
        for _ in 0..64 {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                return Ok(head);
            }
            self.fill(Duration::from_secs(5)).await?;
        }
        Err("response head too long".to_owned())
    }

    /// Sends raw bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.tcp.write_all(bytes)).await;
    }

    /// Sends a whole masked text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.send_raw(&client_frame(true, TEXT, text.as_bytes())).await;
    }

    /// The next server frame within `timeout`.
    pub async fn frame(&mut self, timeout: Duration) -> Result<ServerFrame, String> {
        let deadline = tokio::time::Instant::now() + timeout;
        for _ in 0..10_000 {
            if let Some((frame, used)) = parse(&self.buf) {
                self.buf.drain(..used);
                return Ok(frame);
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            self.fill(left).await?;
        }
        Err("no frame".to_owned())
    }

    /// The next text frame's JSON, skipping pings and pongs.
    pub async fn json(&mut self, timeout: Duration) -> Result<serde_json::Value, String> {
        for _ in 0..100 {
            let frame = self.frame(timeout).await?;
            match frame.opcode {
                TEXT => return serde_json::from_slice(&frame.payload).map_err(|e| e.to_string()),
                PING | PONG => continue,
                _ => return Err(format!("expected text, got {frame:?}")),
            }
        }
        Err("only pings".to_owned())
    }

    /// The close frame, skipping anything before it.
    pub async fn close_frame(&mut self, timeout: Duration) -> Result<ServerFrame, String> {
        for _ in 0..1000 {
            let frame = self.frame(timeout).await?;
            if frame.opcode == CLOSE {
                return Ok(frame);
            }
        }
        Err("no close".to_owned())
    }

    /// Whether the server ends the TCP connection within `timeout` (after a close).
    pub async fn ends(&mut self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut chunk = [0u8; 1024];
        for _ in 0..1000 {
            match tokio::time::timeout_at(deadline, self.tcp.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
        false
    }
}

/// A whole server frame at the start of `buf`, and its length.
fn parse(buf: &[u8]) -> Option<(ServerFrame, usize)> {
    let [b0, b1, ..] = *buf else { return None };
    let (len, mut at) = match b1 & 0x7F {
        126 => (u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as usize, 4),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize, 10),
        n => (n as usize, 2),
    };
    let masked = b1 & 0x80 != 0;
    if masked {
        at += 4;
    }
    let payload = buf.get(at..at + len)?.to_vec();
    let frame = ServerFrame {
        fin: b0 & 0x80 != 0,
        opcode: b0 & 0x0F,
        masked,
        payload,
    };
    Some((frame, at + len))
}
