//! A warm orb's room socket (`GET /orb-seat`, docs/protocol.md §3.3) through the
//! real binaries: a warm gpu-orb opens it with its process token before it has a
//! room; when the manager gives it a room, the server joins that socket as the
//! room's AI at once, and the orb answers what was sent to it meanwhile. The
//! seat refuses other tokens, joins nothing by itself, and an orb whose seat was
//! lost still joins its room by connecting.

use std::time::Duration;

use serde_json::{Value, json};
use system_tests::bench_kit::strip_ansi;
use system_tests::operator_kit::request;
use system_tests::procfs;
use system_tests::room_harness::{RoomServer, upgrade_request};
use system_tests::wait::until;
use system_tests::ws::Client;

const ADMIN_TOKEN: &str = "warm-seat-admin-token-0123456789";
const SECOND: Duration = Duration::from_secs(1);

fn server() -> RoomServer {
    let target = system_tests::binaries::target_dir().display().to_string();
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".to_owned());
    RoomServer::start(&[
        ("PATH", path.as_str()),
        ("ORB_SPAWN_ON", "coach"),
        ("GPU_SERVER_PATH", target.as_str()),
        ("ADMIN_TOKEN", ADMIN_TOKEN),
        ("ORB_WARM_POOL", "1"),
        ("MAX_CONCURRENT_ORBS", "4"),
        ("ORB_STOP_GRACE", "500"),
        ("ORB_KILL_GRACE", "500"),
        ("ROOM_EMPTY_GRACE", "0"),
        ("ORB_MEDIA", "false"),
        ("RUST_LOG", "info"),
    ])
}

fn pool(port: u16) -> Value {
    let (status, body) = request(port, "GET", "/api/warm-pool", Some(ADMIN_TOKEN), None);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("json")
}

/// Waits until the pool has a ready member whose seat is `seated`; its pid.
async fn member(port: u16, seated: bool) -> i32 {
    until(15 * SECOND, || {
        pool(port)["members"].as_array()?.iter().find_map(|m| {
            (m["state"] == "ready" && m["seated"] == seated)
                .then(|| m["pid"].as_i64().map(|p| p as i32))
                .flatten()
        })
    })
    .await
    .unwrap_or_else(|| panic!("no ready member with seated={seated}: {}", pool(port)))
}

/// The server's log line of the warm assignment to `room`.
fn assignment_line(server: &RoomServer, room: &str) -> String {
    let stderr = server.proc.stderr();
    stderr
        .lines()
        .map(strip_ansi)
        .find(|l| l.contains("warm orb assigned") && l.contains(&format!("room={room} ")))
        .unwrap_or_else(|| panic!("no assignment to {room} in the log:\n{stderr}"))
}

/// The coach of `room` sees the AI join and, without waiting, asks it something.
async fn coach_sees_the_ai_answer(server: &RoomServer, room: &str) -> Client {
    let (mut coach, _) = Client::join(&server.url(room), &format!("coach-{room}"), "coach").await;
    let joined = coach.recv_type("user-joined", 15 * SECOND).await;
    assert_eq!(joined["participantType"], "ai", "{joined}");
    coach
        .send(json!({"type":"ai_control","action":"say","text":"right away"}))
        .await;
    let reply = coach.recv_type("ai_response", 10 * SECOND).await;
    assert_eq!(reply["text"], "echo: right away");
    coach
}

#[tokio::test]
async fn a_warm_orbs_socket_is_in_the_room_as_soon_as_it_is_given_it() {
    let server = server();
    let port = server.port;
    let warm = member(port, true).await;
    assert_eq!(pool(port)["seated"], 1, "{}", pool(port));
    let _coach = coach_sees_the_ai_answer(&server, "seat-a").await;
    let line = assignment_line(&server, "seat-a");
    assert!(line.contains("seated=true"), "{line}");
    // A client who comes later finds that very process as the room's AI.
    let (_client, discovery) = Client::join(&server.url("seat-a"), "client-a", "client").await;
    let peers = discovery["peers"].as_array().cloned().unwrap_or_default();
    assert!(peers.iter().any(|p| p["participantType"] == "ai"), "{discovery}");
    let (status, body) = request(port, "GET", "/api/orbs/seat-a", Some(ADMIN_TOKEN), None);
    let record: Value = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!((status, record["pid"].as_i64()), (200, Some(i64::from(warm))), "{body}");
    // The refilled pool's new member opens its seat too.
    let next = member(port, true).await;
    assert_ne!(next, warm);
}

#[tokio::test]
async fn a_seat_needs_a_warm_orbs_token_and_an_orb_that_lost_its_seat_still_joins() {
    let server = server();
    let port = server.port;
    let warm = member(port, true).await;
    for headers in [vec![], vec!["Authorization: Bearer not-a-token".to_owned()]] {
        let answer = system_tests::http_client::upgrade(port, "/orb-seat", &headers);
        assert_eq!(answer.map(|a| a.0), Some(401), "{headers:?}");
    }
    assert_eq!(upgrade_request(port, "/orb-seat").map(|a| a.0), Some(401));
    let token = procfs::environ(warm)
        .into_iter()
        .find_map(|kv| kv.strip_prefix("ORB_AUTH_TOKEN=").map(str::to_owned))
        .expect("a warm orb has its process token");
    let url = format!("ws://127.0.0.1:{port}/orb-seat");
    // The token of a warm process opens a seat (this one replaces the orb's own)...
    let mut stolen = Client::connect_with_token(&url, &token).await.expect("seat");
    // ...which joins nothing by itself.
    stolen
        .send(json!({"type":"join","userId":"intruder","userRole":"ai","participantType":"ai"}))
        .await;
    let refused = stolen.recv_type("error", 5 * SECOND).await;
    assert_eq!(refused["code"], "forbidden", "{refused}");
    stolen.close().await;
    // The orb's own seat was closed when it was replaced; the new one is gone too.
    assert_eq!(member(port, false).await, warm);
    // Given a room, the orb is not seated: it connects and joins like a cold orb.
    let _coach = coach_sees_the_ai_answer(&server, "seat-b").await;
    let line = assignment_line(&server, "seat-b");
    assert!(line.contains("seated=false"), "{line}");
}

#[tokio::test]
async fn every_room_of_a_sequence_gets_its_warm_orb_seated() {
    // Races this covers: a seat opened before the manager heard of its launch's
    // answer, and an orb's join read before its socket was told its room.
    let server = server();
    let port = server.port;
    for n in 0..30 {
        member(port, true).await;
        let room = format!("seq-{n}");
        let (mut coach, _) = Client::join(&server.url(&room), &format!("coach-{n}"), "coach").await;
        let joined = coach.recv_type("user-joined", 10 * SECOND).await;
        assert_eq!(joined["participantType"], "ai", "{room}: {joined}");
        coach.close().await;
    }
    let stderr = server.proc.stderr();
    let assigned: Vec<String> = stderr
        .lines()
        .map(strip_ansi)
        .filter(|l| l.contains("warm orb assigned"))
        .collect();
    assert!(assigned.len() >= 30, "{} assignments:\n{stderr}", assigned.len());
    let unseated: Vec<&String> = assigned.iter().filter(|l| !l.contains("seated=true")).collect();
    assert!(
        unseated.is_empty(),
        "rooms whose warm orb was not seated: {unseated:#?}"
    );
    assert!(!stderr.contains("orb error"), "{stderr}");
}
