//! The relay's guarantees (docs/protocol.md §1.4, §1.5), proved on the real cpu-server
//! binary over loopback WebSockets, whatever the relay's inside looks like:
//! - under load from many concurrent senders, every recipient gets every other
//!   sender's frames exactly once, in that sender's order, with the server's `fromId`
//!   (plain frames and frames with a forged `fromId` interleaved);
//! - a joiner's first frame is its `peer-discovery`, and every member hears its
//!   `user-joined` before any frame from it, even while the room is busy;
//! - a target that left gets the sender `peer_not_found` (and the sender carries on);
//!   a socket replaced by a rejoin is closed 4000 and relays nothing more;
//! - every target-honouring type (`toId`, else `targetId`) reaches its target only,
//!   and `ai_response` reaches all others whatever it names;
//! - large frames from many senders to a reader that stalls arrive whole, once, in
//!   each sender's order (direct writes that stop part-way, queued frames behind them).
//!
//! Orbs are spawned by hand only; the AI is a test client (`ORB_AUTH=false`).
//! Every wait and every loop is bounded.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use system_tests::room_harness::{RoomServer, drain};
use system_tests::ws::{Client, Read};
use tokio::time::Instant;

const T: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(300);
/// Settings under which no test client is dropped as a slow consumer or rate limited.
const ROOMY: [(&str, &str); 2] = [("MAX_MESSAGES_PER_SECOND", "100000"), ("WS_SEND_QUEUE", "16384")];

fn peer_ids(discovery: &Value) -> Vec<String> {
    discovery["peers"]
        .as_array()
        .expect("peers array")
        .iter()
        .map(|p| p["userId"].as_str().expect("userId").to_owned())
        .collect()
}

/// The `seq` of every `client_signal` in `frames` from `from`, in arrival order.
fn seqs_from(frames: &[Value], from: &str) -> Vec<u64> {
    frames
        .iter()
        .filter(|f| f["type"] == "client_signal" && f["fromId"] == from)
        .map(|f| f["seq"].as_u64().expect("seq"))
        .collect()
}

/// Reads whatever has already arrived (at most `max` frames, no waiting) into `got`.
async fn take_ready(client: &mut Client, got: &mut Vec<Value>, max: usize) -> Result<(), String> {
    for _ in 0..max {
        match client.read(Duration::ZERO).await {
            Read::Json(v) => got.push(v),
            Read::Timeout => break,
            Read::Closed(close) => return Err(format!("closed: {close:?}")),
        }
    }
    Ok(())
}

const SENDERS: usize = 8;
const PER_SENDER: u64 = 300;

/// One participant of the load test: sends its `PER_SENDER` broadcasts while
/// reading, then reads (bounded) until it has everyone else's, then a quiet
/// window for extras. Returns every frame it got, and the client (kept open
/// until every participant is done, so that no one hears a `user-left`).
async fn send_and_read(mut client: Client, me: String, deadline: Instant) -> Result<(Client, Vec<Value>), String> {
    let expected = (SENDERS - 1) * PER_SENDER as usize;
    let mut got = Vec::with_capacity(expected);
    let mut seq = 0;
    while seq < PER_SENDER || got.len() < expected {
        if Instant::now() >= deadline {
            return Err(format!("{me}: sent {seq}, got {} of {expected} in time", got.len()));
        }
        if seq < PER_SENDER {
            // Odd frames forge a `fromId` (the server must overwrite it), even ones
            // are plain: both ways a relay may read a frame, interleaved in one stream.
            let mut frame = json!({"type":"client_signal","action":"load","seq":seq});
            if seq % 2 == 1 {
                frame["fromId"] = json!("forged");
            }
            client.send(frame).await;
            seq += 1;
            take_ready(&mut client, &mut got, 64)
                .await
                .map_err(|e| format!("{me}: {e}"))?;
        } else {
            match client.read(deadline.saturating_duration_since(Instant::now())).await {
                Read::Json(v) => got.push(v),
                Read::Timeout => {}
                Read::Closed(close) => return Err(format!("{me}: closed: {close:?}")),
            }
        }
    }
    got.extend(drain(&mut client, QUIET).await);
    Ok((client, got))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_senders_keep_their_own_order_under_load() {
    // 8 is half the default MAX_ROOM_PARTICIPANTS (16).
    let server = RoomServer::start(&ROOMY);
    let url = server.url("load");
    let ids: Vec<String> = (0..SENDERS).map(|i| format!("p{i}")).collect();
    let mut clients = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let (client, discovery) = Client::join(&url, id, "client").await;
        assert_eq!(peer_ids(&discovery), ids[..i], "{discovery}");
        clients.push(client);
    }
    // Settle the joins, so that only relayed frames are left to read.
    for (i, client) in clients.iter_mut().enumerate() {
        for later in &ids[i + 1..] {
            assert_eq!(client.recv_type("user-joined", T).await["userId"], later.as_str());
        }
    }
    let deadline = Instant::now() + Duration::from_secs(12);
    let tasks: Vec<_> = clients
        .into_iter()
        .zip(&ids)
        .map(|(client, id)| tokio::spawn(send_and_read(client, id.clone(), deadline)))
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        let result = tokio::time::timeout(Duration::from_secs(15), task)
            .await
            .expect("participant task ends")
            .expect("participant task");
        results.push(result);
    }
    let expected: Vec<u64> = (0..PER_SENDER).collect();
    for (result, me) in results.iter().zip(&ids) {
        let got = &result.as_ref().unwrap_or_else(|e| panic!("{e}")).1;
        let strays: Vec<&Value> = got
            .iter()
            .filter(|f| f["type"] != "client_signal" || !ids.iter().any(|id| f["fromId"] == id.as_str()))
            .take(5)
            .collect();
        assert!(
            strays.is_empty(),
            "{me} got frames that are no peer's broadcast: {strays:?}"
        );
        assert!(seqs_from(got, me).is_empty(), "{me} got its own frames back");
        for sender in ids.iter().filter(|id| *id != me) {
            let seqs = seqs_from(got, sender);
            assert!(
                seqs == expected,
                "{me} got {} frames from {sender}, not 0..{PER_SENDER} in order (first 20: {:?})",
                seqs.len(),
                &seqs[..seqs.len().min(20)]
            );
        }
        assert_eq!(got.len(), (SENDERS - 1) * PER_SENDER as usize, "{me}: extra frames");
    }
}

/// Most frames one broadcaster sends (the time bound is the other limit).
const MAX_BROADCAST: u64 = 20_000;
/// Frames each broadcaster still sends after hearing the joiner.
const AFTER_JOINER: u64 = 50;

/// Broadcasts numbered `client_signal`s (reading between sends) until it
/// has heard a frame from `joiner` and sent `AFTER_JOINER` more, or a bound is hit.
async fn broadcast_until_heard(
    mut client: Client,
    joiner: &'static str,
    sent: Arc<AtomicU64>,
) -> Result<(Client, Vec<Value>), String> {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut got = Vec::new();
    let mut heard_at: Option<u64> = None;
    let mut seq = 0;
    while seq < MAX_BROADCAST && Instant::now() < deadline && heard_at.is_none_or(|at| seq < at + AFTER_JOINER) {
        client
            .send(json!({"type":"client_signal","action":"busy","seq":seq}))
            .await;
        seq += 1;
        sent.store(seq, Ordering::SeqCst);
        take_ready(&mut client, &mut got, 64).await?;
        if heard_at.is_none() && got.iter().any(|f| f["fromId"] == joiner) {
            heard_at = Some(seq);
        }
        tokio::task::yield_now().await;
    }
    Ok((client, got))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_joiner_hears_peer_discovery_first_and_the_room_before_its_frames() {
    let server = RoomServer::start(&ROOMY);
    let url = server.url("busy");
    let (mut alice, _) = Client::join(&url, "alice", "coach").await;
    let (bob, _) = Client::join(&url, "bob", "client").await;
    alice.recv_type("user-joined", T).await;
    let counters = [Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0))];
    let tasks = [
        tokio::spawn(broadcast_until_heard(alice, "carol", Arc::clone(&counters[0]))),
        tokio::spawn(broadcast_until_heard(bob, "carol", Arc::clone(&counters[1]))),
    ];
    let busy = system_tests::wait::until_true(T, || counters.iter().all(|c| c.load(Ordering::SeqCst) >= 100)).await;
    assert!(busy, "the broadcasters did not get going");

    // Carol joins by hand: her very first frame must be the discovery.
    let mut carol = Client::connect(&url).await.expect("connect");
    carol
        .send(json!({"type":"join","userId":"carol","userName":"carol","userRole":"client"}))
        .await;
    let first = carol.recv(T).await;
    assert_eq!(first["type"], "peer-discovery", "carol's first frame: {first}");
    assert_eq!(peer_ids(&first), ["alice", "bob"]);
    carol
        .send(json!({"type":"client_signal","action":"hello","seq":0}))
        .await;
    // Carol reads while the others broadcast, then a quiet window after they stop.
    let mut heard = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(8);
    while !tasks.iter().all(|t| t.is_finished()) && Instant::now() < deadline {
        match carol.read(Duration::from_millis(50)).await {
            Read::Json(v) => heard.push(v),
            Read::Timeout => {}
            Read::Closed(close) => panic!("carol closed: {close:?}"),
        }
    }
    let mut members = Vec::new();
    for task in tasks {
        let (client, got) = tokio::time::timeout(T, task)
            .await
            .expect("broadcaster ends")
            .expect("broadcaster task")
            .unwrap_or_else(|e| panic!("{e}"));
        members.push((client, got));
    }
    heard.extend(drain(&mut carol, QUIET).await);
    let sent: Vec<u64> = counters.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    eprintln!(
        "broadcast {sent:?} frames; carol heard {} of them, from alice's #{:?} and bob's #{:?}",
        heard.len(),
        seqs_from(&heard, "alice").first(),
        seqs_from(&heard, "bob").first()
    );

    for (i, (name, other)) in [("alice", "bob"), ("bob", "alice")].into_iter().enumerate() {
        let (client, got) = &mut members[i];
        got.extend(drain(client, QUIET).await);
        let joined: Vec<usize> = (0..got.len())
            .filter(|&k| got[k]["type"] == "user-joined" && got[k]["userId"] == "carol")
            .collect();
        assert_eq!(joined.len(), 1, "{name}: carol's user-joined, once: {joined:?}");
        let from_carol: Vec<usize> = (0..got.len()).filter(|&k| got[k]["fromId"] == "carol").collect();
        assert!(!from_carol.is_empty(), "{name} never heard carol's frame");
        assert!(
            from_carol.iter().all(|&k| k > joined[0]),
            "{name} got a frame from carol (at {from_carol:?}) before her user-joined (at {})",
            joined[0]
        );
        // The other broadcaster's frames, all of them, in order, despite the join.
        let expected: Vec<u64> = (0..sent[1 - i]).collect();
        assert!(
            seqs_from(got, other) == expected,
            "{name} did not get {other}'s {} frames in order",
            sent[1 - i]
        );
    }
    // Carol hears each broadcaster from some point on, in order and without a gap, to its last frame.
    for (i, name) in ["alice", "bob"].into_iter().enumerate() {
        let seqs = seqs_from(&heard, name);
        assert!(!seqs.is_empty(), "carol heard nothing from {name}");
        let expected: Vec<u64> = (seqs[0]..sent[i]).collect();
        assert!(
            seqs == expected,
            "carol's frames from {name} are not {}..{} in order",
            seqs[0],
            sent[i]
        );
    }
    assert!(
        heard.iter().all(|f| f["type"] == "client_signal"),
        "carol got other frames"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_target_that_left_gets_peer_not_found_and_a_replaced_socket_relays_nothing() {
    let server = RoomServer::start(&ROOMY);
    let url = server.url("gone");
    let (mut a, _) = Client::join(&url, "a", "coach").await;
    let (mut b, _) = Client::join(&url, "b", "client").await;
    let (mut c_old, _) = Client::join(&url, "c", "client").await;
    a.recv_type("user-joined", T).await;
    a.recv_type("user-joined", T).await;
    b.recv_type("user-joined", T).await;

    b.send(json!({"type":"leave"})).await;
    for other in [&mut a, &mut c_old] {
        assert_eq!(other.recv_type("user-left", T).await["userId"], "b");
    }
    for spelling in ["toId", "targetId"] {
        a.send(json!({"type":"offer", spelling: "b", "offer":{"sdp":"v=0"}}))
            .await;
        let reply = a.recv(T).await;
        assert_eq!(reply["type"], "error", "{reply}");
        assert_eq!(reply["code"], "peer_not_found", "{reply}");
    }
    a.send(json!({"type":"ping"})).await;
    assert_eq!(a.recv(T).await, json!({"type":"pong"}), "a's connection carries on");
    for other in [&mut b, &mut c_old] {
        let frames = drain(other, QUIET).await;
        assert!(
            frames.is_empty(),
            "the offer to a departed peer went somewhere: {frames:?}"
        );
    }

    // C's old socket broadcasts while C rejoins on a new one, and goes on a little
    // after the new join (before it reads anything): none of that reaches the new
    // socket, and nothing of it reaches A after A heard of the new join.
    let sent = Arc::new(AtomicU64::new(0));
    let rejoined = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stream = tokio::spawn({
        let (sent, rejoined) = (Arc::clone(&sent), Arc::clone(&rejoined));
        async move {
            let (mut after, deadline) = (0, Instant::now() + Duration::from_secs(3));
            for seq in 0..5000u64 {
                if after >= 5 || Instant::now() >= deadline {
                    break;
                }
                after += u64::from(rejoined.load(Ordering::SeqCst));
                c_old
                    .send(json!({"type":"client_signal","action":"stale","seq":seq}))
                    .await;
                sent.store(seq + 1, Ordering::SeqCst);
                tokio::task::yield_now().await;
            }
            let mut before_close = Vec::new();
            let close = loop {
                match c_old.read(T).await {
                    Read::Json(v) => before_close.push(v),
                    Read::Closed(close) => break close,
                    Read::Timeout => panic!("the replaced socket was not closed within {T:?}"),
                }
            };
            (after, close, before_close)
        }
    });
    let streaming = system_tests::wait::until_true(T, || sent.load(Ordering::SeqCst) >= 50).await;
    assert!(streaming, "the old socket did not get going");
    let (mut c_new, discovery) = Client::join(&url, "c", "client").await;
    assert_eq!(peer_ids(&discovery), ["a"]);
    rejoined.store(true, Ordering::SeqCst);
    let (after, close, before_close) = tokio::time::timeout(Duration::from_secs(10), stream)
        .await
        .expect("the old socket's task ends")
        .expect("the old socket's task");
    assert_eq!(after, 5, "the old socket sent after the new join");
    assert_eq!(close, Some((4000, "replaced".to_owned())));
    assert!(
        before_close.is_empty(),
        "the replaced socket got frames: {before_close:?}"
    );
    let frames = drain(&mut a, QUIET).await;
    let joins: Vec<usize> = (0..frames.len())
        .filter(|&k| frames[k]["type"] == "user-joined" && frames[k]["userId"] == "c")
        .collect();
    assert_eq!(joins.len(), 1, "a hears c's rejoin once");
    let stale = seqs_from(&frames, "c");
    assert_eq!(
        frames.len(),
        stale.len() + 1,
        "a gets the old socket's frames and c's user-joined, no user-left: {:?}",
        frames
            .iter()
            .filter(|f| f["type"] != "client_signal")
            .collect::<Vec<_>>()
    );
    assert_eq!(
        stale,
        (0..joins[0] as u64).collect::<Vec<_>>(),
        "a got the old socket's frames in order, all before c's new user-joined (at {})",
        joins[0]
    );
    let frames = drain(&mut c_new, Duration::ZERO).await;
    assert!(frames.is_empty(), "the new socket heard the old one: {frames:?}");
    // The new socket relays.
    c_new.send(json!({"type":"client_signal","action":"fresh"})).await;
    let fresh = a.recv(T).await;
    assert_eq!(
        (fresh["action"].as_str(), fresh["fromId"].as_str()),
        (Some("fresh"), Some("c"))
    );
}

#[tokio::test]
async fn every_relayed_type_honours_its_target() {
    let server = RoomServer::start(&[("ORB_AUTH", "false")]);
    let url = server.url("aim");
    let ids = ["h1", "h2", "h3", "ai-orb-t"];
    let mut clients = Vec::new();
    for id in &ids[..3] {
        clients.push(Client::join(&url, id, "client").await.0);
    }
    clients.push(Client::join_ai(&url, ids[3]).await.0);
    for (i, client) in clients.iter_mut().enumerate() {
        for later in &ids[i + 1..] {
            assert_eq!(client.recv_type("user-joined", T).await["userId"], *later);
        }
    }

    // Every frame carries a unique `mark`; `expected` is who must get which.
    let mut expected: BTreeMap<&str, Vec<String>> = ids.iter().map(|id| (*id, Vec::new())).collect();
    let human_types = ["offer", "answer", "ice-candidate", "client_signal", "ai_control"];
    for (s, sender) in ids.iter().enumerate() {
        let kinds: Vec<&str> = if s == 3 {
            human_types.iter().copied().chain(["ai_status"]).collect()
        } else {
            human_types.to_vec()
        };
        for kind in kinds {
            for target in ids.iter().filter(|id| *id != sender) {
                let decoy = ids.iter().find(|id| *id != sender && *id != target).expect("a decoy");
                for how in ["toId", "targetId", "both"] {
                    let mark = format!("{kind} {sender}->{target} {how}");
                    let mut frame = json!({"type": kind, "mark": mark});
                    match how {
                        "both" => {
                            // `toId` wins over `targetId`; the forged `fromId` is overwritten.
                            frame["toId"] = json!(target);
                            frame["targetId"] = json!(decoy);
                            frame["fromId"] = json!(decoy);
                        }
                        spelling => frame[spelling] = json!(target),
                    }
                    clients[s].send(frame).await;
                    expected.get_mut(target).expect("target").push(mark);
                }
            }
        }
    }
    // ai_response is not targeted: every human gets it, whatever it names.
    for spelling in ["toId", "targetId"] {
        let mark = format!("ai_response ai-orb-t->all {spelling}");
        clients[3]
            .send(json!({"type":"ai_response","text":"hi", spelling: "h1","mark": mark}))
            .await;
        for human in &ids[..3] {
            expected.get_mut(human).expect("human").push(mark.clone());
        }
    }

    let mut got: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for (client, id) in clients.iter_mut().zip(ids) {
        let want = expected[id].len();
        let mut frames = Vec::new();
        let deadline = Instant::now() + T;
        while frames.len() < want {
            match client.read(deadline.saturating_duration_since(Instant::now())).await {
                Read::Json(v) => frames.push(v),
                other => panic!("{id} got {} of {want} frames, then {other:?}", frames.len()),
            }
        }
        got.insert(id, frames);
    }
    // Anything misdirected would have arrived by now.
    tokio::time::sleep(QUIET).await;
    for (client, id) in clients.iter_mut().zip(ids) {
        let frames = got.get_mut(id).expect("frames");
        frames.extend(drain(client, Duration::ZERO).await);
        for frame in frames.iter() {
            let mark = frame["mark"].as_str().unwrap_or_else(|| panic!("{id} got {frame}"));
            let kind = mark.split(' ').next().expect("kind");
            let sender = mark
                .split(' ')
                .nth(1)
                .and_then(|s| s.split("->").next())
                .expect("sender");
            assert_eq!(frame["type"], kind, "{id}: {frame}");
            assert_eq!(frame["fromId"], sender, "{id}: {frame}");
        }
        let mut marks: Vec<&str> = frames.iter().filter_map(|f| f["mark"].as_str()).collect();
        marks.sort_unstable();
        let mut want: Vec<&str> = expected[id].iter().map(String::as_str).collect();
        want.sort_unstable();
        let missing: Vec<&&str> = want.iter().filter(|m| !marks.contains(m)).collect();
        let extra: Vec<&&str> = marks.iter().filter(|m| !want.contains(m)).collect();
        assert!(marks == want, "{id}: missing {missing:?}, not its own {extra:?}");
    }
}

/// Regression: a recipient kicked as a slow consumer by another member's relay left
/// the room only when its own socket had closed (up to the 2 s close grace), and its
/// frames were still relayed meanwhile. It must leave at once.
#[tokio::test]
async fn a_kicked_slow_consumer_leaves_at_once_and_relays_nothing_more() {
    let server = RoomServer::start(&[("WS_SEND_QUEUE", "8"), ("MAX_MESSAGES_PER_SECOND", "100000")]);
    let url = server.url("kicked");
    let (mut flooder, _) = Client::join(&url, "flooder", "coach").await;
    let (mut observer, _) = Client::join(&url, "observer", "client").await;
    let (mut sleepy, _) = Client::join(&url, "sleepy", "client").await;
    flooder.recv_type("user-joined", T).await;
    flooder.recv_type("user-joined", T).await;
    observer.recv_type("user-joined", T).await;
    // `sleepy` reads nothing: 250 frames of 60 KiB to it (15 MiB) fill the loopback
    // socket buffers (about 10 MiB at most here), then its queue of 8, so it is kicked
    // during the flood, well before its end.
    let pad = "z".repeat(60 * 1024);
    let mut left_at = None;
    let mut seen = Vec::new();
    for i in 0..250 {
        flooder
            .send(json!({"type":"ice-candidate","toId":"sleepy","candidate":{"i":i,"pad":pad}}))
            .await;
        take_ready(&mut observer, &mut seen, 16).await.expect("observer open");
    }
    let burst_end = Instant::now();
    // Sent while the old code still relayed it (it removed a kicked member 2 s later).
    sleepy.send(json!({"type":"client_signal","action":"late"})).await;
    if seen.iter().any(|f| f["type"] == "user-left" && f["userId"] == "sleepy") {
        left_at = Some(burst_end);
    }
    let left_at = match left_at {
        Some(at) => at,
        None => loop {
            match observer.read(Duration::from_secs(5)).await {
                Read::Json(f) if f["type"] == "user-left" && f["userId"] == "sleepy" => break Instant::now(),
                Read::Json(f) => seen.push(f),
                other => panic!("no user-left for the slow consumer: {other:?}"),
            }
        },
    };
    let after_burst = left_at.saturating_duration_since(burst_end);
    assert!(
        after_burst < Duration::from_millis(500),
        "the slow consumer left {after_burst:?} after the flood ended (the close grace is 2 s)"
    );
    // What it sent after its kick reached nobody.
    let mut late = seen;
    late.extend(drain(&mut observer, QUIET).await);
    assert!(
        !late.iter().any(|f| f["type"] == "client_signal"),
        "a kicked member's frame was relayed: {late:?}"
    );
}

const BIG_SENDERS: usize = 6;
const BIG_FAST: u64 = 40;
const BIG_PACED: u64 = 20;

/// One sender of the large-frame test: `BIG_FAST` frames at once, then
/// `BIG_PACED` more 10 ms apart, each carrying 60 KiB, all to `reader`.
async fn send_big(mut client: Client, pad: Arc<String>) -> Client {
    for seq in 0..BIG_FAST + BIG_PACED {
        if seq >= BIG_FAST {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        client
            .send(json!({"type":"client_signal","toId":"reader","seq":seq,"pad":pad.as_str()}))
            .await;
    }
    client
}

/// Several senders' large frames to one reader that stalls first. Its socket's
/// buffers fill (the first frames are 14 MiB, loopback buffers hold about 10), so
/// senders' direct writes stop part-way, what follows queues behind their rest and
/// the reader's own task writes it; once the reader reads, the paced frames race
/// that task's draining. Every frame must arrive whole (a torn or interleaved frame
/// would be no JSON, or break the framing), once, in its sender's order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_frames_from_many_senders_to_a_stalled_reader_arrive_whole_and_in_order() {
    let server = RoomServer::start(&ROOMY);
    let url = server.url("big");
    let (mut reader, _) = Client::join(&url, "reader", "coach").await;
    let ids: Vec<String> = (0..BIG_SENDERS).map(|i| format!("s{i}")).collect();
    let mut senders = Vec::new();
    for id in &ids {
        senders.push(Client::join(&url, id, "client").await.0);
        assert_eq!(reader.recv_type("user-joined", T).await["userId"], id.as_str());
    }
    let pad = Arc::new("p".repeat(60 * 1024));
    let tasks: Vec<_> = senders
        .into_iter()
        .map(|client| tokio::spawn(send_big(client, pad.clone())))
        .collect();
    // Stalled while the fast frames pile up; then reads while the paced ones come.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let total = BIG_SENDERS * (BIG_FAST + BIG_PACED) as usize;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = Vec::with_capacity(total);
    while got.len() < total {
        match reader.read(deadline.saturating_duration_since(Instant::now())).await {
            Read::Json(frame) => got.push(frame),
            other => panic!("after {} of {total} frames: {other:?}", got.len()),
        }
    }
    let mut kept = Vec::new();
    for task in tasks {
        kept.push(
            tokio::time::timeout(T, task)
                .await
                .expect("sender ends")
                .expect("sender"),
        );
    }
    got.extend(drain(&mut reader, QUIET).await);
    let torn: Vec<String> = got
        .iter()
        .filter(|f| f["type"] != "client_signal" || f["pad"].as_str() != Some(pad.as_str()))
        .map(|f| f.to_string().chars().take(80).collect())
        .take(3)
        .collect();
    assert!(torn.is_empty(), "frames not whole: {torn:?}");
    let expected: Vec<u64> = (0..BIG_FAST + BIG_PACED).collect();
    for sender in &ids {
        let seqs = seqs_from(&got, sender);
        assert!(
            seqs == expected,
            "from {sender}: {} frames, not in order: {seqs:?}",
            seqs.len()
        );
    }
    assert_eq!(got.len(), total, "extra frames");
}
