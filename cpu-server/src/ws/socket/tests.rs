//! A socket handed over between program images, against a real loopback
//! socket: taken at a frame boundary with half a frame read and frames queued
//! (one begun by a partial direct write), resumed from a duplicate of its
//! descriptor; the peer sees one stream, the resumed socket parses the rest.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::ws::outbox::QueueError;

/// A connected loopback pair: (the server's side, the peer).
async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let peer = TcpStream::connect(listener.local_addr().expect("addr"))
        .await
        .expect("connect");
    let (server, _) = listener.accept().await.expect("accept");
    (server, peer)
}

/// A client's masked text frame (payload under 126 bytes).
fn masked(text: &str) -> Vec<u8> {
    let mask = [7u8, 1, 9, 3];
    let mut out = vec![0x81, 0x80 | text.len() as u8];
    out.extend_from_slice(&mask);
    out.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// The texts of the server frames in `bytes` and whether they end on a boundary.
fn texts(mut bytes: &[u8]) -> (Vec<String>, bool) {
    let mut out = Vec::new();
    // Bounded: each round consumes a frame or returns.
    loop {
        let [_, second, ..] = bytes else {
            return (out, bytes.is_empty());
        };
        let (len, skip) = match second & 0x7f {
            126 if bytes.len() >= 4 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            126 | 127 => return (out, false),
            n => (n as usize, 2),
        };
        if bytes.len() < skip + len {
            return (out, false);
        }
        out.push(String::from_utf8(bytes[skip..skip + len].to_vec()).expect("utf-8"));
        bytes = &bytes[skip + len..];
    }
}

#[tokio::test]
async fn a_socket_handed_over_mid_frame_resumes_with_nothing_lost_or_reordered() {
    let (server, mut peer) = pair().await;
    let mut socket = WsSocket::new(RoomStream::Tcp(server, bytes::Bytes::new()), 1 << 20, 64);
    // The peer sent one whole frame and half of the next.
    let second = masked("second from the peer");
    let mut sent = masked("first from the peer");
    sent.extend_from_slice(&second[..9]);
    peer.write_all(&sent).await.expect("peer writes");
    let mut first = None;
    for _ in 0..50 {
        if let Ok(Some(Frame::Text(text))) = socket.next_frame() {
            first = Some(text.to_owned());
            break;
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), socket.drive()).await;
    }
    assert_eq!(first.as_deref(), Some("first from the peer"));
    assert!(
        matches!(socket.next_frame(), Ok(None)),
        "the second frame is not complete yet"
    );
    // Frames queued for the peer and not written: the task holds them.
    let outbox = socket.outbox().clone();
    for n in 0..3 {
        outbox.put_own(|out| frame::put_text(out, format!("queued {n}").as_bytes()), false);
    }
    let parts = socket.hand_over().expect("plain TCP at a frame boundary");
    assert_eq!(parts.unread, second[..9], "the half frame read, not parsed");
    assert_eq!(
        outbox.try_text(b"late"),
        Err(QueueError::Closed),
        "nothing enters after the handover"
    );

    // The new image: the same socket from its duplicate descriptor.
    let std_stream = std::net::TcpStream::from(parts.fd);
    std_stream.set_nonblocking(true).expect("nonblocking");
    let tcp = TcpStream::from_std(std_stream).expect("tokio stream");
    let mut resumed = WsSocket::resume(tcp, &parts.unread, parts.unsent, 1 << 20, 64);
    resumed.outbox().try_text(b"after the handover").expect("a new frame");
    peer.write_all(&second[9..]).await.expect("the rest of the frame");
    let mut got = None;
    for _ in 0..50 {
        if let Ok(Some(Frame::Text(text))) = resumed.next_frame() {
            got = Some(text.to_owned());
            break;
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), resumed.drive()).await;
    }
    assert_eq!(got.as_deref(), Some("second from the peer"), "the half frame completed");
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(200), peer.read(&mut chunk)).await {
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&chunk[..n]);
    }
    let (frames, whole) = texts(&bytes);
    assert!(whole, "the stream ends on a frame boundary");
    assert_eq!(frames, ["queued 0", "queued 1", "queued 2", "after the handover"]);
}
