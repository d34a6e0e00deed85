//! The room server end to end: the real cpu-server binary on loopback, driven
//! by real WebSocket clients (docs/protocol.md §1). Orbs are spawned by hand only
//! (`ORB_SPAWN_ON=manual`), so no orb process is involved; the `ai` participant
//! is a test client joining as the AI.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{Value, json};
use system_tests::room_harness::{RoomServer, drain, http_get, read_until_closed, upgrade_request};
use system_tests::ws::{Client, Read};

const T: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(300);

async fn join_as(server: &RoomServer, room: &str, user: &str, role: &str) -> (Client, Value) {
    Client::join(&server.url(room), user, role).await
}

/// Joins a test client as the AI (its server runs with `ORB_AUTH=false`).
async fn join_ai(server: &RoomServer, room: &str, user: &str) -> (Client, Value) {
    Client::join_ai(&server.url(room), user).await
}

fn peer_ids(discovery: &Value) -> Vec<String> {
    let mut ids: Vec<String> = discovery["peers"]
        .as_array()
        .expect("peers array")
        .iter()
        .map(|p| p["userId"].as_str().expect("userId").to_owned())
        .collect();
    ids.sort();
    ids
}

/// A `ping` on `client` still gets its `pong` (the connection carries on).
async fn assert_alive(client: &mut Client) {
    client.send(json!({"type":"ping"})).await;
    assert_eq!(client.recv_type("pong", T).await, json!({"type":"pong"}));
}

async fn expect_error(client: &mut Client, frame: &str, code: &str) {
    client.send_text(frame.to_owned()).await;
    let reply = client.recv(T).await;
    assert_eq!(reply["type"], "error", "reply to {frame}: {reply}");
    assert_eq!(reply["code"], code, "reply to {frame}: {reply}");
    assert!(reply["message"].as_str().is_some_and(|m| !m.is_empty()), "{reply}");
}

fn count_type(frames: &[Value], kind: &str) -> usize {
    frames.iter().filter(|f| f["type"] == kind).count()
}

#[tokio::test]
async fn three_participants_discover_signal_and_leave() {
    let server = RoomServer::start(&[("ORB_AUTH", "false")]);
    let (mut coach, d1) = join_as(&server, "r1", "coach-1", "coach").await;
    assert_eq!(d1["roomId"], "r1");
    assert!(peer_ids(&d1).is_empty(), "{d1}");

    let (mut client, d2) = join_as(&server, "r1", "client-1", "client").await;
    assert_eq!(peer_ids(&d2), ["coach-1"]);
    assert_eq!(d2["peers"][0]["userRole"], "coach");
    assert_eq!(d2["peers"][0]["participantType"], "human");
    let joined = coach.recv_type("user-joined", T).await;
    assert_eq!(joined["userId"], "client-1");
    assert_eq!(joined["userRole"], "client");
    assert_eq!(joined["participantType"], "human");
    assert_eq!(
        joined["shouldCreateOffer"], true,
        "existing coach offers to a joining client"
    );

    let (mut ai, d3) = join_ai(&server, "r1", "ai-orb-s1").await;
    assert_eq!(peer_ids(&d3), ["client-1", "coach-1"]);
    for human in [&mut coach, &mut client] {
        let joined = human.recv_type("user-joined", T).await;
        assert_eq!(joined["userId"], "ai-orb-s1");
        assert_eq!(joined["participantType"], "ai");
        assert_eq!(joined["shouldCreateOffer"], true, "humans offer to a joining AI");
    }

    // Targeted offer, answer and candidate reach only their target, with fromId.
    coach
        .send(json!({"type":"offer","toId":"client-1","offer":{"sdp":"v=0 coach","type":"offer"},"fromId":"forged"}))
        .await;
    let offer = client.recv_type("offer", T).await;
    assert_eq!(offer["fromId"], "coach-1");
    assert_eq!(offer["offer"]["sdp"], "v=0 coach");
    client
        .send(json!({"type":"answer","targetId":"coach-1","answer":{"sdp":"v=0 client"}}))
        .await;
    let answer = coach.recv_type("answer", T).await;
    assert_eq!(answer["fromId"], "client-1");
    assert_eq!(answer["answer"]["sdp"], "v=0 client");
    coach
        .send(json!({"type":"ice-candidate","toId":"ai-orb-s1","candidate":{"candidate":"c1","sdpMid":"0"}}))
        .await;
    let candidate = ai.recv_type("ice-candidate", T).await;
    assert_eq!(candidate["fromId"], "coach-1");
    assert_eq!(candidate["candidate"]["candidate"], "c1");
    // Nobody else saw them.
    assert!(
        drain(&mut ai, QUIET).await.is_empty(),
        "the AI saw someone else's signalling"
    );
    assert!(drain(&mut client, QUIET).await.is_empty());
    assert!(drain(&mut coach, QUIET).await.is_empty());

    // Broadcasts (no target) reach all others but not the sender.
    client
        .send(json!({"type":"client_signal","action":"hand_raised","value":true}))
        .await;
    for other in [&mut coach, &mut ai] {
        let signal = other.recv_type("client_signal", T).await;
        assert_eq!(signal["fromId"], "client-1");
        assert_eq!(signal["value"], true);
    }
    ai.send(json!({"type":"ai_status","status":"listening","sessionId":"s1"}))
        .await;
    for other in [&mut coach, &mut client] {
        let status = other.recv_type("ai_status", T).await;
        assert_eq!(status["fromId"], "ai-orb-s1");
        assert_eq!(status["status"], "listening");
    }
    // ai_status, client_signal and ai_control naming a target reach only it.
    ai.send(json!({"type":"ai_status","status":"error","code":"invalid_field","toId":"coach-1"}))
        .await;
    let status = coach.recv_type("ai_status", T).await;
    assert_eq!(
        (status["fromId"].as_str(), status["code"].as_str()),
        (Some("ai-orb-s1"), Some("invalid_field"))
    );
    client
        .send(json!({"type":"client_signal","action":"note","toId":"coach-1"}))
        .await;
    assert_eq!(coach.recv_type("client_signal", T).await["fromId"], "client-1");
    coach
        .send(json!({"type":"ai_control","action":"pause","toId":"ai-orb-s1"}))
        .await;
    assert_eq!(ai.recv_type("ai_control", T).await["fromId"], "coach-1");
    assert!(
        drain(&mut client, QUIET).await.is_empty(),
        "the client saw targeted frames"
    );
    assert!(
        drain(&mut ai, Duration::ZERO).await.is_empty(),
        "the AI saw targeted frames"
    );
    assert!(drain(&mut coach, Duration::ZERO).await.is_empty());

    // orb_heartbeat is for the server only.
    ai.send(json!({"type":"orb_heartbeat","metrics":{"cpu":1.0}})).await;
    assert!(
        drain(&mut client, QUIET).await.is_empty(),
        "heartbeat relayed to a human"
    );
    assert!(drain(&mut coach, Duration::ZERO).await.is_empty());
    assert!(drain(&mut client, Duration::ZERO).await.is_empty());

    // A leave message: user-left exactly once to each remaining participant.
    client.send(json!({"type":"leave"})).await;
    let mut seen = Vec::new();
    for other in [&mut coach, &mut ai] {
        let frames = drain(other, Duration::from_millis(500)).await;
        assert_eq!(count_type(&frames, "user-left"), 1, "{frames:?}");
        let left = frames.iter().find(|f| f["type"] == "user-left").expect("user-left");
        assert_eq!(left["userId"], "client-1");
        assert_eq!(left["userRole"], "client");
        seen.push(left.clone());
    }
    // Closing the socket after its leave does not announce it twice.
    client.close().await;
    for other in [&mut coach, &mut ai] {
        assert_eq!(count_type(&drain(other, QUIET).await, "user-left"), 0);
    }

    // An abrupt close (no leave) is announced once too.
    drop(ai);
    let frames = drain(&mut coach, Duration::from_millis(800)).await;
    assert_eq!(count_type(&frames, "user-left"), 1, "{frames:?}");
    assert_eq!(frames[0]["userId"], "ai-orb-s1");
    assert_eq!(frames[0]["participantType"], "ai");
    assert_alive(&mut coach).await;
}

#[tokio::test]
async fn offer_direction_between_humans_follows_ids_and_roles() {
    let server = RoomServer::start(&[]);
    let (mut b, _) = join_as(&server, "dir", "bob", "coach").await;
    let (mut a, _) = join_as(&server, "dir", "alice", "coach").await;
    // Two coaches: the smaller id offers, so bob (existing) does not.
    assert_eq!(b.recv_type("user-joined", T).await["shouldCreateOffer"], false);
    let (_c, _) = join_as(&server, "dir", "carl", "coach").await;
    assert_eq!(b.recv_type("user-joined", T).await["shouldCreateOffer"], true);
    assert_eq!(a.recv_type("user-joined", T).await["shouldCreateOffer"], true);
    // An existing client waits for a joining coach.
    let server2 = RoomServer::start(&[("ORB_AUTH", "false")]);
    let (mut client, _) = join_as(&server2, "dir", "a-client", "client").await;
    let (_coach, _) = join_as(&server2, "dir", "z-coach", "coach").await;
    assert_eq!(client.recv_type("user-joined", T).await["shouldCreateOffer"], false);
    // An existing AI never offers.
    let (mut ai, _) = join_ai(&server2, "ai-room", "ai-orb-x").await;
    let (_human, _) = join_as(&server2, "ai-room", "zz", "coach").await;
    assert_eq!(ai.recv_type("user-joined", T).await["shouldCreateOffer"], false);
}

#[tokio::test]
async fn rejoin_replaces_the_old_socket_without_a_spurious_leave() {
    let server = RoomServer::start(&[]);
    let (mut coach, _) = join_as(&server, "rj", "coach-1", "coach").await;
    let (mut old, _) = join_as(&server, "rj", "client-1", "client").await;
    coach.recv_type("user-joined", T).await;

    let (mut new, discovery) = join_as(&server, "rj", "client-1", "client").await;
    assert_eq!(peer_ids(&discovery), ["coach-1"], "the replaced socket is not a peer");
    assert_eq!(
        read_until_closed(&mut old, T).await,
        Some(Some((4000, "replaced".to_owned()))),
        "old socket closed with 4000 replaced"
    );
    drop(old);
    let frames = drain(&mut coach, Duration::from_millis(600)).await;
    assert_eq!(count_type(&frames, "user-left"), 0, "spurious user-left: {frames:?}");
    assert_eq!(count_type(&frames, "user-joined"), 1, "{frames:?}");

    // The new socket works both ways.
    new.send(json!({"type":"offer","toId":"coach-1","offer":{"n":1}})).await;
    assert_eq!(coach.recv_type("offer", T).await["fromId"], "client-1");
    coach
        .send(json!({"type":"answer","toId":"client-1","answer":{"n":2}}))
        .await;
    assert_eq!(new.recv_type("answer", T).await["answer"]["n"], 2);
    // And its own leave is announced once.
    drop(new);
    let frames = drain(&mut coach, Duration::from_millis(600)).await;
    assert_eq!(count_type(&frames, "user-left"), 1, "{frames:?}");
}

#[tokio::test]
async fn each_bad_input_gets_its_error_code_and_the_connection_carries_on() {
    let server = RoomServer::start(&[]);
    let mut c = Client::connect(&server.url("errs")).await.expect("connect");
    for (frame, code) in [
        ("{nope", "invalid_json"),
        ("[1,2]", "not_object"),
        (r#"{"a":1}"#, "missing_type"),
        (r#"{"type":"dance"}"#, "unknown_type"),
        (r#"{"type":"join"}"#, "missing_field"),
        (
            r#"{"type":"join","userId":"u","participantType":"robot"}"#,
            "invalid_field",
        ),
        (r#"{"type":"offer","toId":"x"}"#, "not_joined"),
        (r#"{"type":"leave"}"#, "not_joined"),
    ] {
        expect_error(&mut c, frame, code).await;
        assert_alive(&mut c).await;
    }
    c.send(json!({"type":"join","userId":"u1","userRole":"coach"})).await;
    c.recv_type("peer-discovery", T).await;
    let (mut other, _) = join_as(&server, "errs", "u2", "client").await;
    c.recv_type("user-joined", T).await;
    for (frame, code) in [
        (r#"{"type":"join","userId":"u3"}"#, "already_joined"),
        (r#"{"type":"offer","toId":"ghost","offer":{}}"#, "peer_not_found"),
        (r#"{"type":"ice-candidate","targetId":"ghost"}"#, "peer_not_found"),
        (r#"{"type":"offer","toId":5}"#, "invalid_field"),
        (r#"{"type":"ai_status","status":"ready"}"#, "forbidden"),
        (r#"{"type":"ai-orb-shutdown","reason":"x"}"#, "forbidden"),
        (r#"{"type":"orb_heartbeat"}"#, "forbidden"),
        (r#"{"type":"ai_response","text":"hi"}"#, "forbidden"),
    ] {
        expect_error(&mut c, frame, code).await;
        assert_alive(&mut c).await;
    }
    // The room carried on: nothing refused was relayed, and relay still works.
    let frames = drain(&mut other, QUIET).await;
    assert!(frames.is_empty(), "refused frames leaked: {frames:?}");
    c.send(json!({"type":"offer","toId":"u2","offer":{"ok":true}})).await;
    assert_eq!(other.recv_type("offer", T).await["offer"]["ok"], true);
}

#[tokio::test]
async fn messages_over_the_rate_are_refused_and_the_connection_stays() {
    let server = RoomServer::start(&[("MAX_MESSAGES_PER_SECOND", "5")]);
    let (mut a, _) = join_as(&server, "rate", "a", "coach").await;
    let (mut b, _) = join_as(&server, "rate", "b", "client").await;
    a.recv_type("user-joined", T).await;
    for i in 0..12 {
        a.send(json!({"type":"client_signal","action":"n","value":i})).await;
    }
    let frames = drain(&mut a, Duration::from_millis(500)).await;
    let limited = frames.iter().filter(|f| f["code"] == "rate_limited").count();
    assert!(limited >= 5, "expected refusals, got {frames:?}");
    let relayed = drain(&mut b, Duration::from_millis(300)).await;
    assert_eq!(
        relayed.len() + limited,
        12,
        "every message either relayed or refused: {relayed:?}"
    );
    assert!(relayed.len() <= 7, "at most the burst passed: {relayed:?}");
    // Once the bucket refilled, the same connection works: pings are refused
    // (`rate_limited`) until it has, then answered; bounded by T.
    let deadline = Instant::now() + T;
    loop {
        a.send(json!({"type":"ping"})).await;
        let reply = a.recv(T).await;
        if reply["type"] == "pong" {
            break;
        }
        assert_eq!(reply["code"], "rate_limited", "{reply}");
        assert!(Instant::now() < deadline, "the bucket never refilled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_full_room_and_a_full_server_refuse_joins() {
    let server = RoomServer::start(&[("MAX_ROOM_PARTICIPANTS", "2"), ("MAX_ROOMS", "1")]);
    let (_a, _) = join_as(&server, "full", "a", "coach").await;
    let (_b, _) = join_as(&server, "full", "b", "client").await;
    let mut c = Client::connect(&server.url("full")).await.expect("connect");
    expect_error(&mut c, r#"{"type":"join","userId":"c"}"#, "room_full").await;
    assert_alive(&mut c).await;
    // A rejoin with an id already in the room takes no extra place.
    let (_b2, discovery) = join_as(&server, "full", "b", "client").await;
    assert_eq!(peer_ids(&discovery), ["a"]);
    let mut d = Client::connect(&server.url("other")).await.expect("connect");
    expect_error(&mut d, r#"{"type":"join","userId":"d"}"#, "too_many_rooms").await;
    assert_alive(&mut d).await;
}

#[tokio::test]
async fn oversized_frames_close_only_their_connection() {
    let server = RoomServer::start(&[("MAX_MESSAGE_BYTES", "1024")]);
    let (mut a, _) = join_as(&server, "big", "a", "coach").await;
    let (mut b, _) = join_as(&server, "big", "b", "client").await;
    a.recv_type("user-joined", T).await;

    // Just over the cap: a `too_large` error, then close 1009.
    let (mut c, _) = join_as(&server, "big", "c", "client").await;
    let pad = "x".repeat(1100);
    c.send(json!({"type":"client_signal","action":"pad","pad":pad})).await;
    let reply = c.recv(T).await;
    assert_eq!(reply["code"], "too_large", "{reply}");
    assert_eq!(
        read_until_closed(&mut c, T).await.map(|c| c.map(|(code, _)| code)),
        Some(Some(1009))
    );

    // 1 MiB: that connection is closed (error then 1009 when the peer can still read it).
    let (mut d, _) = join_as(&server, "big", "d", "client").await;
    d.send_text(format!(r#"{{"type":"client_signal","pad":"{}"}}"#, "y".repeat(1 << 20)))
        .await;
    let closed = read_until_closed(&mut d, T).await;
    assert!(closed.is_some(), "the 1 MiB sender was not disconnected");

    // The others were not touched and still relay; the big ones left.
    let frames = drain(&mut b, Duration::from_millis(500)).await;
    assert!(
        frames.iter().all(|f| f["type"] != "client_signal"),
        "oversized frame relayed: {frames:?}"
    );
    let mut left: Vec<_> = frames
        .iter()
        .filter(|f| f["type"] == "user-left")
        .map(|f| f["userId"].as_str().unwrap_or("").to_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["c", "d"]);
    a.send(json!({"type":"offer","toId":"b","offer":{"after":"big"}})).await;
    assert_eq!(b.recv_type("offer", T).await["offer"]["after"], "big");
    assert_alive(&mut a).await;
}

#[tokio::test]
async fn bad_room_ids_are_refused_before_the_upgrade() {
    let server = RoomServer::start(&[]);
    let long = "a".repeat(65);
    for path in [
        "/ws-simple/..".to_owned(),
        "/ws-simple/.".to_owned(),
        format!("/ws-simple/{long}"),
        "/ws-simple/a%2Fb".to_owned(),
        "/ws-simple/a%20b".to_owned(),
    ] {
        let (status, body) = upgrade_request(server.port, &path).expect("answer");
        assert_eq!(status, 400, "{path}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("JSON body for {path}: {body}"));
        assert_eq!(body["type"], "error", "{body}");
        assert!(
            body["message"].as_str().is_some_and(|m| m.contains("room id")),
            "{body}"
        );
    }
    let ok = "a".repeat(64);
    let (status, _) = upgrade_request(server.port, &format!("/ws-simple/{ok}")).expect("answer");
    assert_eq!(status, 101, "a 64-character id is fine");
    assert!(Client::connect(&server.url("Room_1.a-b")).await.is_ok());
}

#[tokio::test]
async fn sockets_per_address_are_limited() {
    let server = RoomServer::start(&[("MAX_CONNECTIONS_PER_IP", "2")]);
    let a = Client::connect(&server.url("ip")).await.expect("first");
    let _b = Client::connect(&server.url("ip")).await.expect("second");
    let (status, body) = upgrade_request(server.port, "/ws-simple/ip").expect("answer");
    assert_eq!(status, 429, "{body}");
    // A closed socket gives its place back.
    a.close().await;
    let ok = system_tests::wait::until_true(T, || {
        upgrade_request(server.port, "/ws-simple/ip").is_some_and(|(s, _)| s == 101)
    })
    .await;
    assert!(ok, "the place was not given back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_and_the_room_carries_on() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let server = RoomServer::start(&[("WS_SEND_QUEUE", "64"), ("MAX_MESSAGES_PER_SECOND", "100000")]);
    let (mut flooder, _) = join_as(&server, "slow", "flooder", "coach").await;
    let (mut observer, _) = join_as(&server, "slow", "observer", "client").await;
    let (mut slow, _) = join_as(&server, "slow", "sleepy", "client").await;
    flooder.recv_type("user-joined", T).await;
    flooder.recv_type("user-joined", T).await;
    observer.recv_type("user-joined", T).await;

    // The observer keeps reading (counting what it gets) until `sleepy` leaves;
    // `sleepy` reads nothing from here on.
    let counted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&counted);
    let watcher = tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match observer.read(left).await {
                Read::Json(f) if f["type"] == "ice-candidate" => {
                    count.fetch_add(1, Ordering::SeqCst);
                }
                Read::Json(f) if f["type"] == "user-left" && f["userId"] == "sleepy" => {
                    return (observer, count.load(Ordering::SeqCst), true);
                }
                Read::Json(_) => {}
                _ => return (observer, count.load(Ordering::SeqCst), false),
            }
        }
    });
    // Flood both with targeted 32 KiB messages, alternately, never letting the
    // observer fall more than 8 messages behind: only `sleepy` can fill its queue.
    let pad = "z".repeat(32 * 1024);
    let started = Instant::now();
    let mut sent_to_observer = 0usize;
    for i in 0..6000 {
        if watcher.is_finished() {
            break;
        }
        let target = if i % 2 == 0 { "sleepy" } else { "observer" };
        flooder
            .send(json!({"type":"ice-candidate","toId":target,"candidate":{"i":i,"pad":pad}}))
            .await;
        sent_to_observer += i % 2;
        // A bounded poll on the observer's count (not a fixed wait): flow control.
        while sent_to_observer > counted.load(Ordering::SeqCst) + 8 && !watcher.is_finished() {
            assert!(started.elapsed() < Duration::from_secs(60), "observer stalled");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "flood took too long");
    }
    let (mut observer, received, saw_left) = tokio::time::timeout(Duration::from_secs(60), watcher)
        .await
        .expect("watcher ends")
        .expect("watcher task");
    eprintln!("slow consumer dropped; the reading observer got {received} of {sent_to_observer} sent to it");
    assert!(
        saw_left,
        "slow consumer never dropped (observer got {received} of {sent_to_observer})"
    );
    assert!(
        received >= 100,
        "the reading participant kept up while the other was dropped: got {received}"
    );
    // The room still works for the others, promptly.
    let t0 = Instant::now();
    observer
        .send(json!({"type":"offer","toId":"flooder","offer":{"rt":1}}))
        .await;
    assert_eq!(flooder.recv_type("offer", T).await["offer"]["rt"], 1);
    flooder
        .send(json!({"type":"answer","toId":"observer","answer":{"rt":2}}))
        .await;
    assert_eq!(observer.recv_type("answer", T).await["answer"]["rt"], 2);
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "round trip took {:?}",
        t0.elapsed()
    );
    // The slow socket was closed (1008 if the close frame got through, else a bare close).
    let close = read_until_closed(&mut slow, Duration::from_secs(30)).await;
    assert!(close.is_some(), "the slow socket was never closed");
    if let Some(Some((code, reason))) = close {
        assert_eq!((code, reason.as_str()), (1008, "slow consumer"));
    }
}

#[tokio::test]
async fn unknown_fields_are_relayed_intact_with_the_server_from_id() {
    let server = RoomServer::start(&[]);
    let (mut a, _) = join_as(&server, "fields", "a", "coach").await;
    let (mut b, _) = join_as(&server, "fields", "b", "client").await;
    a.recv_type("user-joined", T).await;
    b.send(json!({"type":"client_signal","action":"hand_raised","x":{"nested":[1,2]},"fromId":"mallory"}))
        .await;
    let got = a.recv_type("client_signal", T).await;
    assert_eq!(
        got,
        json!({"type":"client_signal","action":"hand_raised","x":{"nested":[1,2]},"fromId":"b"})
    );
}

#[tokio::test]
async fn signalling_arrives_in_the_order_sent() {
    // The 500 are sent before any is read: the queue is sized for the burst,
    // so that a writer slowed by a busy test machine is not taken for a slow consumer.
    let server = RoomServer::start(&[("MAX_MESSAGES_PER_SECOND", "100000"), ("WS_SEND_QUEUE", "1024")]);
    let (mut a, _) = join_as(&server, "order", "a", "coach").await;
    let (mut b, _) = join_as(&server, "order", "b", "client").await;
    a.recv_type("user-joined", T).await;
    for seq in 0..500 {
        a.send(json!({"type":"ice-candidate","toId":"b","candidate":{"seq":seq}}))
            .await;
    }
    for seq in 0..500 {
        let candidate = b.recv_type("ice-candidate", T).await;
        assert_eq!(candidate["candidate"]["seq"], seq, "out of order");
        assert_eq!(candidate["fromId"], "a");
    }
}

#[tokio::test]
async fn the_ai_leaves_when_it_announces_its_shutdown() {
    let server = RoomServer::start(&[("ORB_AUTH", "false")]);
    let (mut coach, _) = join_as(&server, "ai", "coach-1", "coach").await;
    let (mut ai, _) = join_ai(&server, "ai", "ai-orb-s9").await;
    coach.recv_type("user-joined", T).await;
    ai.send(json!({"type":"ai_response","text":"echo: hi","inReplyTo":"coach-1"}))
        .await;
    let response = coach.recv_type("ai_response", T).await;
    assert_eq!(
        (response["text"].clone(), response["fromId"].clone()),
        (json!("echo: hi"), json!("ai-orb-s9"))
    );
    coach
        .send(json!({"type":"ai_control","action":"say","text":"hi"}))
        .await;
    assert_eq!(ai.recv_type("ai_control", T).await["fromId"], "coach-1");
    ai.send(json!({"type":"ai-orb-shutdown","sessionId":"s9","reason":"session_complete"}))
        .await;
    let frames = drain(&mut coach, Duration::from_millis(500)).await;
    assert_eq!(count_type(&frames, "user-left"), 1, "{frames:?}");
    assert_eq!(count_type(&frames, "ai-orb-shutdown"), 0, "not relayed: {frames:?}");
    // The AI's socket is no longer in the room; its later close announces nothing.
    assert_alive(&mut ai).await;
    drop(ai);
    assert_eq!(count_type(&drain(&mut coach, QUIET).await, "user-left"), 0);
}

#[tokio::test]
async fn a_peer_that_does_not_answer_pings_is_dropped() {
    let server = RoomServer::start(&[("WS_PING_INTERVAL", "200")]);
    let (mut a, _) = join_as(&server, "live", "a", "coach").await;
    let (_mute, _) = join_as(&server, "live", "mute", "client").await;
    a.recv_type("user-joined", T).await;
    // `a` reads (so its client answers pings); `mute` never reads again.
    let left = a.try_recv_type("user-left", T).await.expect("mute dropped within 5 s");
    assert_eq!(left["userId"], "mute");
    assert_alive(&mut a).await;
}

#[tokio::test]
async fn health_endpoints_have_their_shapes() {
    let server = RoomServer::start(&[("MAX_CONCURRENT_ORBS", "3")]);
    let (_a, _) = join_as(&server, "h1", "a", "coach").await;
    let (_b, _) = join_as(&server, "h2", "b", "coach").await;
    let (status, body) = http_get(server.port, "/health").expect("health");
    assert_eq!(status, 200, "{body}");
    let health: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["service"], "cpu-server");
    assert!(health["version"].as_str().is_some_and(|v| !v.is_empty()), "{health}");
    // The build id is the executable's own GNU build id, as binutils reads it.
    let exe = system_tests::binaries::cpu_server();
    let notes = std::process::Command::new("readelf")
        .arg("-n")
        .arg(&exe)
        .output()
        .expect("readelf (binutils, installed by tests/install.sh)");
    let notes = String::from_utf8_lossy(&notes.stdout);
    let expected = notes
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: "))
        .expect("the binary has a GNU build id note");
    assert_eq!(health["build_id"], expected, "{health}");
    assert!(
        server.proc.stderr().contains(expected),
        "the listening line names the build id"
    );
    assert_eq!(health["orbs"]["max"], 3, "{health}");
    assert!(health["orbs"]["active"].is_u64(), "{health}");
    assert_eq!(health["rooms"], 2, "{health}");
    let (status, body) = http_get(server.port, "/healthz").expect("healthz");
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json"),
        json!({"status":"ok"})
    );
}

#[tokio::test]
async fn sigterm_closes_clients_and_exits_zero() {
    let mut server = RoomServer::start(&[]);
    let (mut a, _) = join_as(&server, "bye", "a", "coach").await;
    let mut idle = Client::connect(&server.url("bye")).await.expect("connect");
    server.proc.signal(Signal::SIGTERM);
    assert_eq!(
        read_until_closed(&mut a, Duration::from_secs(15)).await,
        Some(Some((1001, "server shutting down".to_owned())))
    );
    assert!(matches!(idle.read(Duration::from_secs(15)).await, Read::Closed(_)));
    let status = server
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("exited within 15 s");
    assert_eq!(status.code(), Some(0), "{}", server.proc.stderr());
}

#[tokio::test]
async fn bad_settings_are_all_reported_with_exit_64() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = RoomServer::command(dir.path());
    command
        .env("CPU_HOST", "nonsense")
        .env("MAX_ROOM_PARTICIPANTS", "abc")
        .env("WS_SEND_QUEUE", "0");
    let mut proc = system_tests::process::Proc::spawn("cpu-server-bad", command, dir.path());
    let status = proc.wait_exit_async(Duration::from_secs(10)).await.expect("exits");
    assert_eq!(status.code(), Some(64));
    let stderr = proc.stderr();
    for name in ["CPU_HOST", "MAX_ROOM_PARTICIPANTS", "WS_SEND_QUEUE"] {
        assert!(stderr.contains(name), "{name} not named in:\n{stderr}");
    }
}

/// The names of `pid`'s threads.
fn thread_names(pid: u32) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("task dir")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn room_sockets_run_on_relay_loops_and_relay_across_them() {
    let server = RoomServer::start(&[("ORB_AUTH", "false"), ("RELAY_THREADS", "3")]);
    let loops: Vec<String> = thread_names(server.proc.pid())
        .into_iter()
        .filter(|name| name.starts_with("relay-"))
        .collect();
    assert_eq!(loops, ["relay-0", "relay-1", "relay-2"]);
    // Sockets are spread over the loops in turn: four members sit on three loops,
    // and every frame reaches every other member whichever loop each is on.
    let mut clients = Vec::new();
    for i in 0..4 {
        clients.push(join_as(&server, "loops", &format!("m{i}"), "client").await.0);
    }
    for (i, client) in clients.iter_mut().enumerate() {
        client
            .send(json!({"type":"client_signal","action":"hello","n":i}))
            .await;
    }
    for (i, client) in clients.iter_mut().enumerate() {
        let mut heard: Vec<u64> = drain(client, QUIET)
            .await
            .iter()
            .filter(|f| f["type"] == "client_signal")
            .map(|f| f["n"].as_u64().expect("n"))
            .collect();
        heard.sort_unstable();
        let others: Vec<u64> = (0..4).filter(|n| *n != i as u64).collect();
        assert_eq!(heard, others, "m{i}");
    }
    // A bad value stops start-up with the setting's name.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = RoomServer::command(dir.path());
    command.env("RELAY_THREADS", "many");
    let mut proc = system_tests::process::Proc::spawn("cpu-server-bad-loops", command, dir.path());
    let status = proc.wait_exit_async(Duration::from_secs(10)).await.expect("exits");
    assert_eq!(status.code(), Some(64));
    assert!(proc.stderr().contains("RELAY_THREADS"), "{}", proc.stderr());
}

#[tokio::test]
async fn native_tls_serves_health_over_https() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let openssl = system_tests::deploy_tools::require_tool("openssl", "openssl");
    let made = std::process::Command::new(&openssl)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ])
        .args(["-days", "1", "-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let (cert, key) = (cert.to_string_lossy().into_owned(), key.to_string_lossy().into_owned());
    let server = RoomServer::start_with_probe(&[("TLS_CERT", &cert), ("TLS_KEY", &key)], |port| {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    // Plain HTTP on the TLS port gets no HTTP answer.
    assert_eq!(http_get(server.port, "/healthz").map(|(s, _)| s), None);
    let script = format!(
        "printf 'GET /healthz HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' | \
         timeout 10 {} s_client -connect 127.0.0.1:{} -servername localhost -quiet 2>/dev/null",
        openssl.display(),
        server.port
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &script])
        .output()
        .expect("openssl s_client");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains(r#"{"status":"ok"}"#), "{text}");
}

/// Native TLS (`TLS_CERT`): a room over `wss://` straight to cpu-server, whose room
/// sockets then run on hyper's upgraded TLS stream (not the raw TCP socket).
#[tokio::test]
async fn native_tls_serves_a_room_over_wss() {
    use std::sync::Arc;

    use system_tests::deploy_tls::{WssClient, client_config};
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = system_tests::deploy_tools::TestCert::generate(dir.path());
    let (pem, key) = (cert.cert.to_string_lossy(), cert.key.to_string_lossy());
    let server = RoomServer::start_with_probe(&[("TLS_CERT", &pem), ("TLS_KEY", &key)], |port| {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let config = client_config(&cert.ca);
    let join = |user: &'static str, role: &'static str| {
        let config = Arc::clone(&config);
        async move {
            let mut client = WssClient::connect(&config, server.port, "tls-room").await.expect("wss");
            client
                .send(json!({"type":"join","userId":user,"userName":user,"userRole":role}))
                .await;
            assert!(
                client.recv_type("peer-discovery", T).await.is_some(),
                "{user} joined over wss"
            );
            client
        }
    };
    let mut a = join("a", "coach").await;
    let mut b = join("b", "client").await;
    assert!(a.recv_type("user-joined", T).await.is_some());
    let pad = "t".repeat(20_000); // several TLS records
    b.send(json!({"type":"client_signal","action":"over tls","pad":pad}))
        .await;
    let got = a.recv_type("client_signal", T).await.expect("relayed over TLS");
    assert_eq!(got["fromId"], "b", "{got}");
    assert_eq!(got["pad"].as_str().map(str::len), Some(20_000));
    b.close().await;
    assert!(
        a.recv_type("user-left", T).await.is_some(),
        "b's close reached the room"
    );
}

#[tokio::test]
async fn tls_files_that_do_not_exist_are_refused_with_exit_64() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = RoomServer::command(dir.path());
    command
        .env("CPU_HOST", format!("127.0.0.1:{}", system_tests::free_port()))
        .env("TLS_CERT", dir.path().join("missing.pem"));
    let mut proc = system_tests::process::Proc::spawn("cpu-server-tls", command, dir.path());
    let status = proc.wait_exit_async(Duration::from_secs(10)).await.expect("exits");
    assert_eq!(status.code(), Some(64));
    let stderr = proc.stderr();
    assert!(stderr.contains("TLS_CERT") && stderr.contains("TLS_KEY"), "{stderr}");
}

#[tokio::test]
async fn a_busy_port_is_reported_with_cpu_host_and_exit_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let mut command = RoomServer::command(dir.path());
    command.env("CPU_HOST", format!("127.0.0.1:{port}"));
    let mut proc = system_tests::process::Proc::spawn("cpu-server-busy", command, dir.path());
    let status = proc.wait_exit_async(Duration::from_secs(10)).await.expect("exits");
    assert_eq!(status.code(), Some(1));
    let stderr = proc.stderr();
    assert!(stderr.contains(&format!("CPU_HOST=127.0.0.1:{port}")), "{stderr}");
}

/// Opens a room socket that claims to be forwarded for `client`; `Err` carries the refusal.
async fn forwarded_socket(
    port: u16,
    client: &str,
) -> Result<tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>, String> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!("ws://127.0.0.1:{port}/ws-simple/xff");
    let mut request = url.into_client_request().map_err(|e| e.to_string())?;
    request
        .headers_mut()
        .insert("x-forwarded-for", client.parse().map_err(|_| "header".to_owned())?);
    match tokio::time::timeout(T, tokio_tungstenite::connect_async(request)).await {
        Ok(Ok((socket, _))) => Ok(socket),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".to_owned()),
    }
}

#[tokio::test]
async fn behind_a_trusted_proxy_limits_apply_to_each_forwarded_client() {
    let server = RoomServer::start(&[("MAX_CONNECTIONS_PER_IP", "1"), ("TRUSTED_PROXIES", "127.0.0.1")]);
    let _a = forwarded_socket(server.port, "198.51.100.1").await.expect("client 1");
    let _b = forwarded_socket(server.port, "198.51.100.2")
        .await
        .expect("client 2, same proxy");
    let again = forwarded_socket(server.port, "198.51.100.1").await;
    assert!(
        again.as_ref().is_err_and(|e| e.contains("429")),
        "client 1's second socket: {:?}",
        again.err()
    );
    // Without TRUSTED_PROXIES the header is ignored: everyone is the proxy's address.
    let plain = RoomServer::start(&[("MAX_CONNECTIONS_PER_IP", "1")]);
    let _c = forwarded_socket(plain.port, "198.51.100.9")
        .await
        .expect("first socket");
    let other = forwarded_socket(plain.port, "198.51.100.10").await;
    assert!(
        other.as_ref().is_err_and(|e| e.contains("429")),
        "an untrusted X-Forwarded-For was believed"
    );
}
