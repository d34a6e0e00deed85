//! TLS clients that trust only a test CA: HTTPS GET and `wss://` room sockets
//! through the reverse proxy.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

/// A rustls client configuration trusting only the CA in `ca_pem`.
pub fn client_config(ca_pem: &Path) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem).expect("read CA") {
        roots.add(cert.expect("CA PEM")).expect("add CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// `GET path` over HTTPS to `localhost:port` (bounded): status, head and body.
pub fn https_get(config: &Arc<ClientConfig>, port: u16, path: &str) -> Result<(u16, String, String), String> {
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(Arc::clone(config), name).map_err(|e| e.to_string())?;
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    // nginx closes after the answer (Connection: close); a TLS close without
    // close_notify still leaves the whole answer in `raw`.
    let _ = tls.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP answer: {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {head:?}"))?;
    Ok((status, head.to_owned(), body.to_owned()))
}

/// A `wss://` room socket.
pub struct WssClient {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl WssClient {
    /// Connects to `wss://localhost:PORT/ws-simple/ROOM` trusting only `config`'s CA (5 s bound).
    pub async fn connect(config: &Arc<ClientConfig>, port: u16, room: &str) -> Result<Self, String> {
        let url = format!("wss://localhost:{port}/ws-simple/{room}");
        let connect = tokio_tungstenite::connect_async_tls_with_config(
            url.as_str(),
            None,
            true,
            Some(Connector::Rustls(Arc::clone(config))),
        );
        match tokio::time::timeout(Duration::from_secs(5), connect).await {
            Ok(Ok((socket, _))) => Ok(Self { socket }),
            Ok(Err(e)) => Err(format!("{url}: {e}")),
            Err(_) => Err(format!("{url}: connect timed out")),
        }
    }

    /// Sends a JSON text frame.
    pub async fn send(&mut self, value: Value) {
        tokio::time::timeout(
            Duration::from_secs(5),
            self.socket.send(Message::text(value.to_string())),
        )
        .await
        .expect("send timed out")
        .expect("send");
    }

    /// The next JSON frame of `kind` (skipping others) within `timeout`; `None` otherwise.
    pub async fn recv_type(&mut self, kind: &str, timeout: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => {
                    let value: Value = serde_json::from_str(&text).ok()?;
                    if value["type"] == kind {
                        return Some(value);
                    }
                }
                Ok(Some(Ok(_))) => continue,
                _ => return None,
            }
        }
    }

    /// Reads (skipping frames) until the server's close frame: its code; `None`
    /// when the socket ended otherwise or nothing came within `timeout`.
    pub async fn close_code(&mut self, timeout: Duration) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
                Ok(Some(Ok(_))) => continue,
                _ => return None,
            }
        }
    }

    /// Closes politely (bounded).
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.socket.close(None)).await;
    }
}
