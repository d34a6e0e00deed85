//! Slow and idle clients for the connection-limit tests: raw TCP (or TLS)
//! connections from a chosen loopback source address that send nothing or half
//! a request, and bounded checks of whether the server closed them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// `127.0.0.1`, the default source.
pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// `127.0.0.2`: loopback too, but another client address for the server.
pub const LOOPBACK_2: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// `127.0.0.3`: a third loopback client address.
pub const LOOPBACK_3: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

/// The first line of a request whose header never ends.
pub const HALF_HEADER: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";

/// A TCP connection from `source` to `127.0.0.1:port` (2 s bound); panics on failure.
pub async fn connect_from(source: IpAddr, port: u16) -> TcpStream {
    try_connect_from(source, port).await.expect("connect")
}

/// Like [`connect_from`], with the failure as a message.
pub async fn try_connect_from(source: IpAddr, port: u16) -> Result<TcpStream, String> {
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket
        .bind(SocketAddr::new(source, 0))
        .map_err(|e| format!("bind {source}: {e}"))?;
    let server = SocketAddr::new(LOOPBACK, port);
    match tokio::time::timeout(Duration::from_secs(2), socket.connect(server)).await {
        Ok(connected) => connected.map_err(|e| e.to_string()),
        Err(_) => Err("connect timed out".to_owned()),
    }
}

/// `count` connections from `source`, each sending `prefix` (maybe nothing).
pub async fn open(source: IpAddr, port: u16, count: usize, prefix: &[u8]) -> Vec<TcpStream> {
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        let mut stream = connect_from(source, port).await;
        if !prefix.is_empty() {
            stream.write_all(prefix).await.expect("write");
        }
        streams.push(stream);
    }
    streams
}

/// A TLS connection to `localhost:port` whose handshake completed (5 s bound).
pub async fn tls_connect(config: &Arc<ClientConfig>, port: u16) -> TlsStream<TcpStream> {
    let tcp = connect_from(LOOPBACK, port).await;
    let name = ServerName::try_from("localhost").expect("name");
    tokio::time::timeout(
        Duration::from_secs(5),
        TlsConnector::from(Arc::clone(config)).connect(name, tcp),
    )
    .await
    .expect("TLS handshake timed out")
    .expect("TLS handshake")
}

/// Whether the server closed `stream` (EOF or reset) by `deadline`; whatever
/// it sent first is skipped.
pub async fn closed_by<S: AsyncRead + Unpin>(stream: &mut S, deadline: Instant) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// Waits (until `deadline`) for the server to close every stream; returns how
/// many it closed and when the last of them closed, measured from `since`.
pub async fn wait_all_closed<S: AsyncRead + Unpin>(
    streams: &mut [S],
    since: Instant,
    deadline: Instant,
) -> (usize, Duration) {
    let reads = streams.iter_mut().map(|s| async move {
        let closed = closed_by(s, deadline).await;
        (closed, since.elapsed())
    });
    let results = futures_util::future::join_all(reads).await;
    let closed = results.iter().filter(|(c, _)| *c).count();
    let last = results
        .iter()
        .filter(|(c, _)| *c)
        .map(|(_, t)| *t)
        .max()
        .unwrap_or_default();
    (closed, last)
}

/// `GET /healthz` from `source` (5 s bound): the status, `None` without an answer.
pub async fn healthz_from(source: IpAddr, port: u16) -> Option<u16> {
    let exchange = async {
        let mut stream = try_connect_from(source, port).await.ok()?;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.ok()?;
        String::from_utf8_lossy(&raw).split_whitespace().nth(1)?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
}
