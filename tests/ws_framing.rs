//! cpu-server owns its room sockets' WebSocket framing (`cpu-server/src/ws/`):
//! these tests speak RFC 6455 byte by byte to the real binary and check what a
//! library client would hide:
//! - frames sent in the same TCP segment as the upgrade request are served;
//! - a fragmented text message (with a ping between its fragments) is assembled
//!   and relayed like any other, and the ping gets its pong with the same payload;
//! - an unmasked frame closes its socket with 1002, invalid UTF-8 with 1007, and
//!   the rest of the room carries on;
//! - a peer's close is answered with a close carrying its code, then the server
//!   ends the TCP connection; server frames are never masked.
//!
//! Orbs are spawned by hand only. Every wait and every loop is bounded.

use std::time::Duration;

use serde_json::json;
use system_tests::raw_ws::{CLOSE, CONTINUATION, PING, PONG, RawWs, TEXT, client_frame};
use system_tests::room_harness::RoomServer;
use system_tests::ws::Client;

const T: Duration = Duration::from_secs(5);

fn join_frame(user: &str) -> Vec<u8> {
    let join = json!({"type": "join", "userId": user, "userName": user, "userRole": "client"});
    client_frame(true, TEXT, join.to_string().as_bytes())
}

/// A raw socket joined as `user` (its join sent with the upgrade request).
async fn raw_member(server: &RoomServer, room: &str, user: &str) -> RawWs {
    let mut raw = RawWs::open(server.port, &format!("/ws-simple/{room}"), &join_frame(user))
        .await
        .expect("upgrade");
    let discovery = raw.json(T).await.expect("peer-discovery");
    assert_eq!(discovery["type"], "peer-discovery", "{discovery}");
    raw
}

#[tokio::test]
async fn a_join_in_the_same_segment_as_the_upgrade_request_is_served() {
    let server = RoomServer::start(&[]);
    let (mut b, _) = Client::join(&server.url("early"), "b", "coach").await;
    let mut raw = raw_member(&server, "early", "a").await;
    let joined = b.recv_type("user-joined", T).await;
    assert_eq!(joined["userId"], "a");
    raw.send_text(r#"{"type":"client_signal","action":"hi"}"#).await;
    let got = b.recv_type("client_signal", T).await;
    assert_eq!(got["fromId"], "a", "{got}");
}

#[tokio::test]
async fn a_fragmented_message_is_assembled_and_relayed_and_pings_get_their_pong() {
    let server = RoomServer::start(&[]);
    let (mut b, _) = Client::join(&server.url("frag"), "b", "coach").await;
    let mut raw = raw_member(&server, "frag", "a").await;
    b.recv_type("user-joined", T).await;
    let text = json!({"type": "client_signal", "action": "pieces", "value": "x".repeat(300)}).to_string();
    let (one, rest) = text.as_bytes().split_at(7);
    let (two, three) = rest.split_at(200);
    let mut bytes = client_frame(false, TEXT, one);
    bytes.extend(client_frame(false, CONTINUATION, two));
    bytes.extend(client_frame(true, PING, b"are you there"));
    bytes.extend(client_frame(true, CONTINUATION, three));
    raw.send_raw(&bytes).await;
    let pong = raw.frame(T).await.expect("pong");
    assert_eq!((pong.opcode, pong.payload.as_slice()), (PONG, &b"are you there"[..]));
    assert!(!pong.masked, "server frames are never masked");
    let got = b.recv_type("client_signal", T).await;
    assert_eq!(got["fromId"], "a");
    assert_eq!(got["value"].as_str().map(str::len), Some(300), "{got}");
}

#[tokio::test]
async fn protocol_breaches_close_their_socket_with_their_code_and_the_room_carries_on() {
    let server = RoomServer::start(&[]);
    let (mut b, _) = Client::join(&server.url("breach"), "b", "coach").await;
    let (mut c, _) = Client::join(&server.url("breach"), "c", "client").await;

    let mut unmasked = raw_member(&server, "breach", "u").await;
    unmasked.send_raw(&[0x81, 0x02, b'{', b'}']).await;
    let close = unmasked.close_frame(T).await.expect("close");
    assert_eq!(close.close_code(), Some(1002), "{}", close.text());
    assert!(unmasked.ends(T).await, "the server ends the connection after its close");

    let mut bad_utf8 = raw_member(&server, "breach", "v").await;
    bad_utf8
        .send_raw(&client_frame(true, TEXT, &[b'"', 0xff, 0xfe, b'"']))
        .await;
    let close = bad_utf8.close_frame(T).await.expect("close");
    assert_eq!(close.close_code(), Some(1007), "{}", close.text());

    // Both left the room; b and c still relay.
    for user in ["u", "v"] {
        let left = b
            .try_recv_where(T, |v| v["type"] == "user-left" && v["userId"] == user)
            .await;
        assert!(left.is_some(), "{user} left");
    }
    c.send(json!({"type": "client_signal", "action": "still here"})).await;
    let got = b.recv_type("client_signal", T).await;
    assert_eq!(
        (got["fromId"].as_str(), got["action"].as_str()),
        (Some("c"), Some("still here"))
    );
}

#[tokio::test]
async fn a_peers_close_is_answered_with_its_code_and_the_connection_ends() {
    let server = RoomServer::start(&[]);
    let (mut b, _) = Client::join(&server.url("bye"), "b", "coach").await;
    let mut raw = raw_member(&server, "bye", "a").await;
    b.recv_type("user-joined", T).await;
    let mut payload = 4321u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"done");
    raw.send_raw(&client_frame(true, CLOSE, &payload)).await;
    let close = raw.close_frame(T).await.expect("close answered");
    assert_eq!(close.close_code(), Some(4321));
    assert!(!close.masked);
    assert!(raw.ends(T).await, "the server ends the connection");
    let left = b.recv_type("user-left", T).await;
    assert_eq!(left["userId"], "a");
}
