//! Media-flow health against the real cpu-server: fake orbs whose
//! heartbeats keep arriving while their call is dead (an utterance never
//! answered, a connected peer sending nothing) are replaced by the restart
//! path, and the room's humans are told why (`ai_status` `error`).

use std::time::{Duration, Instant};

use serde_json::Value;
use system_tests::manager_kit::starts;
use system_tests::operator_kit::OpServer;
use system_tests::wait::until;
use system_tests::ws::Client;

const SECOND: Duration = Duration::from_secs(1);

/// Heartbeats every 100 ms whose `voice.pending_ms` grows from 0 (an
/// utterance accepted and never answered).
const VOICE_STALLS: &str = r#"ready
n=0
while printf '{"type":"orb_heartbeat","roomId":"%s","timestamp":0,"metrics":{"cpu":0,"memory":1,"latency":0,"voice":{"stage":"thinking","stage_age_ms":%d,"pending_ms":%d,"utterances":1,"answers":0,"errors":0,"last_error":null}}}\n' "$room" $((n*100)) $((n*100)) >&3; do
  n=$((n+1)); sleep 0.1
done
"#;

/// Heartbeats every 100 ms with one media peer connected (ICE and DTLS) for a
/// growing time, from which no packet ever came.
const MEDIA_STALLS: &str = r#"ready
n=0
while printf '{"type":"orb_heartbeat","roomId":"%s","timestamp":0,"metrics":{"cpu":0,"memory":1,"latency":0,"media":[{"peer":"coach-1","ice":"connected","dtls":"connected","packets_in":0,"bytes_in":0,"packets_out":0,"bytes_out":0,"last_packet_age_ms":null,"connected_age_ms":%d}]}}\n' "$room" $((n*100)) >&3; do
  n=$((n+1)); sleep 0.1
done
"#;

fn server(dir: &std::path::Path, body: &str) -> OpServer {
    OpServer::start(
        dir,
        body,
        &[
            ("ORB_SPAWN_ON", "coach"),
            ("ORB_MEDIA_STALL_TIMEOUT", "1000"),
            ("ORB_UNRESPONSIVE_TIMEOUT", "3000"),
        ],
    )
}

/// The `ai_status` `error` frame of `code` the human gets within `timeout`.
async fn told(human: &mut Client, code: &str, timeout: Duration) -> Value {
    human
        .try_recv_where(timeout, |v| {
            v["type"] == "ai_status" && v["status"] == "error" && v["code"] == code
        })
        .await
        .unwrap_or_else(|| panic!("the room was not told {code} within {timeout:?}"))
}

/// Waits (bounded) for a second orb of `room`, then checks how the first ended.
async fn replaced(server: &OpServer, room: &str, cause: &str) {
    let two = until(10 * SECOND, || (starts(&server.dir, room).len() >= 2).then_some(())).await;
    assert!(
        two.is_some(),
        "no replacement orb: starts {:?}",
        starts(&server.dir, room)
    );
    let starts = starts(&server.dir, room);
    assert_ne!(starts[0], starts[1], "a new process");
    let record = until(5 * SECOND, || {
        let (status, record) = server.api("GET", &format!("/api/orbs/{room}"), None);
        (status == 200 && record["last_exit"]["cause"].is_string()).then_some(record)
    })
    .await
    .expect("a record with the first orb's exit");
    assert_eq!(record["last_exit"]["cause"], cause, "{record}");
    assert_eq!(record["last_exit"]["normal"], false, "a failure: {record}");
    let (_, timeline) = server.api("GET", &format!("/api/orbs/{room}/events"), None);
    let why = timeline["why"].as_str().unwrap_or_default();
    assert!(
        why.contains("stalled") && why.contains("ORB_MEDIA_STALL_TIMEOUT"),
        "why: {why}"
    );
    let stops = timeline["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["event"] == "stop_asked" && e["reason"] == cause)
        .count();
    assert_eq!(stops, 1, "one stall, one stop: {timeline}");
}

/// Rule: an orb whose heartbeats show an utterance pending past
/// ORB_MEDIA_STALL_TIMEOUT is replaced, and the human is told `voice_stalled`.
#[tokio::test]
async fn an_orb_whose_answer_never_comes_is_replaced_and_the_room_told() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server(dir.path(), VOICE_STALLS);
    let (mut coach, _) = Client::join(&server.server.url("r-voice"), "coach-1", "coach").await;
    let notice = told(&mut coach, "voice_stalled", 10 * SECOND).await;
    assert!(notice["message"].as_str().is_some_and(|m| !m.is_empty()), "{notice}");
    assert!(notice.get("fromId").is_none(), "sent by the server: {notice}");
    replaced(&server, "r-voice", "voice_stalled").await;
    eprintln!("took {:?}", started.elapsed());
}

/// Rule: a media peer connected with no packet past ORB_MEDIA_STALL_TIMEOUT
/// replaces the orb while its heartbeats keep arriving; the human is told `media_stalled`.
#[tokio::test]
async fn an_orb_receiving_no_media_from_a_connected_peer_is_replaced() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server(dir.path(), MEDIA_STALLS);
    let (mut coach, _) = Client::join(&server.server.url("r-media"), "coach-1", "coach").await;
    told(&mut coach, "media_stalled", 10 * SECOND).await;
    replaced(&server, "r-media", "media_stalled").await;
    let (_, record) = server.api("GET", "/api/orbs/r-media", None);
    assert_ne!(record["last_exit"]["cause"], "unresponsive", "{record}");
    eprintln!("took {:?}", started.elapsed());
}
