//! The registry actor driven in-process: events on the seam, replacement, slow consumers,
//! and relays through the views it publishes (as the members' readers relay).

use std::time::Duration;

use serde_json::Value;
use shared::room::{parse_envelope, with_from_id};

use super::*;
use crate::rooms::events::{RoomEventReceiver, room_event_channel};
use crate::rooms::outbox::{Kick, Outbox, outbox};
use crate::rooms::room_view::{Relayed, Route};
use crate::ws::frame::TextFrame;

fn request(user_id: &str, role: &str) -> JoinRequest {
    JoinRequest {
        user_id: user_id.to_owned(),
        user_name: user_id.to_owned(),
        user_role: role.to_owned(),
        participant_type: if role == "ai" { "ai" } else { "human" }.to_owned(),
    }
}

/// Relays `text` from `conn` through its room's latest view, as its reader does.
fn relay(link: &RoomLink, conn: ConnId, text: &str) -> Relayed {
    let envelope = parse_envelope(text, 4096).expect("a plain frame");
    let route = envelope.target.map_or(Route::Others, Route::To);
    let mut frame = TextFrame::default();
    frame.encode(&envelope.relayed_parts(text, "\"sender\""));
    let mut reader = link.clone();
    let (member, counters) = (Arc::clone(&link.member), Arc::clone(&link.counters));
    reader
        .view
        .latest()
        .relay((conn, &member), route, &frame, &counters, &mut Vec::new())
}

async fn next_event(events: &mut RoomEventReceiver) -> RoomEvent {
    tokio::time::timeout(Duration::from_secs(2), events.recv())
        .await
        .expect("an event within 2 s")
        .expect("channel open")
}

/// The `type`s of every text frame queued so far.
fn queued_types(rx: &Outbox) -> Vec<String> {
    let mut types = Vec::new();
    for text in rx.take_texts() {
        let value: Value = serde_json::from_str(&text).expect("json");
        types.push(value["type"].as_str().unwrap_or_default().to_owned());
    }
    types
}

#[tokio::test]
async fn room_events_follow_joins_ai_frames_replacement_and_leaves() {
    let (tx, mut events) = room_event_channel();
    let registry = spawn_registry(RoomSettings::default(), tx, Arc::default(), Arc::default());
    let (coach, coach_rx) = outbox(16);
    registry
        .join(1, "r", request("coach", "coach"), coach)
        .await
        .expect("join");
    assert_eq!(
        next_event(&mut events).await,
        RoomEvent::HumanJoined {
            room: "r".into(),
            user_id: "coach".into(),
            user_role: "coach".into(),
            humans: 1
        }
    );
    assert_eq!(registry.rooms(), 1);
    let (ai, ai_rx) = outbox(16);
    registry
        .join(2, "r", request("ai-orb-1", "ai"), ai)
        .await
        .expect("join");
    assert_eq!(
        next_event(&mut events).await,
        RoomEvent::AiJoined {
            room: "r".into(),
            user_id: "ai-orb-1".into()
        }
    );
    registry.ai_activity(2).await;
    assert_eq!(
        next_event(&mut events).await,
        RoomEvent::AiActivity { room: "r".into() }
    );
    registry.ai_activity(1).await; // a human's ping is no AI activity

    // A rejoin of the coach: the old socket is kicked with 4000, no HumanLeft.
    let (coach2, coach2_rx) = outbox(16);
    registry
        .join(3, "r", request("coach", "coach"), coach2)
        .await
        .expect("rejoin");
    assert_eq!(
        next_event(&mut events).await,
        RoomEvent::HumanJoined {
            room: "r".into(),
            user_id: "coach".into(),
            user_role: "coach".into(),
            humans: 1
        }
    );
    assert_eq!(
        coach_rx.take_kick(),
        Some(Kick {
            code: 4000,
            reason: "replaced"
        })
    );
    assert_eq!(
        queued_types(&coach_rx),
        ["peer-discovery", "user-joined"],
        "no heartbeat relayed"
    );
    assert_eq!(queued_types(&coach2_rx), ["peer-discovery"]);
    assert_eq!(
        queued_types(&ai_rx),
        ["peer-discovery", "user-joined"],
        "no user-left for a replacement"
    );
    registry.leave(1).await; // the stale socket's late close: nothing happens

    registry.ai_shutdown(1, Some("stale".into())).await; // not the AI: nothing happens
    registry.ai_shutdown(2, Some("session_complete".into())).await;
    assert_eq!(
        next_event(&mut events).await,
        RoomEvent::AiShutdown {
            room: "r".into(),
            reason: Some("session_complete".into())
        }
    );
    assert_eq!(
        next_event(&mut events).await,
        RoomEvent::AiLeft {
            room: "r".into(),
            user_id: "ai-orb-1".into()
        }
    );
    assert_eq!(queued_types(&coach2_rx), ["user-left"]);
    registry.leave(2).await; // already gone
    registry.leave(3).await;
    assert_eq!(
        next_event(&mut events).await,
        RoomEvent::HumanLeft {
            room: "r".into(),
            user_id: "coach".into(),
            humans: 0
        }
    );
    assert_eq!(registry.rooms(), 0, "the room ends with its last member");
    registry.leave(3).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(100), events.recv())
            .await
            .is_err(),
        "a second leave emits nothing"
    );
}

#[tokio::test]
async fn a_full_outbox_kicks_its_socket_and_the_room_carries_on() {
    let (tx, mut events) = room_event_channel();
    let registry = spawn_registry(RoomSettings::default(), tx, Arc::default(), Arc::default());
    let (sender, sender_rx) = outbox(16);
    let (slow, slow_rx) = outbox(2);
    let a = registry
        .join(1, "r", request("a", "coach"), sender)
        .await
        .expect("join");
    registry.join(2, "r", request("b", "client"), slow).await.expect("join");
    next_event(&mut events).await;
    next_event(&mut events).await;
    // b's queue holds its peer-discovery; one relay fits, the next overflows: kicked once.
    assert_eq!(
        relay(&a, 1, r#"{"type":"client_signal","action":"x"}"#),
        Relayed::Delivered(1)
    );
    assert_eq!(
        relay(&a, 1, r#"{"type":"client_signal","action":"y"}"#),
        Relayed::Delivered(0)
    );
    assert_eq!(
        slow_rx.take_kick(),
        Some(Kick {
            code: 1008,
            reason: "slow consumer"
        })
    );
    // What the registry sends itself to a full queue removes it at once.
    let (c, _c_rx) = outbox(16);
    registry.join(3, "r", request("c", "client"), c).await.expect("join");
    next_event(&mut events).await;
    assert_eq!(
        next_event(&mut events).await,
        RoomEvent::HumanLeft {
            room: "r".into(),
            user_id: "b".into(),
            humans: 2
        }
    );
    assert!(slow_rx.take_kick().is_none(), "kicked once");
    assert_eq!(queued_types(&slow_rx), ["peer-discovery", "client_signal"]);
    assert_eq!(
        queued_types(&sender_rx),
        ["peer-discovery", "user-joined", "user-joined", "user-left"]
    );
    // The sender is still in the room: a targeted relay to b is now refused.
    assert_eq!(relay(&a, 1, r#"{"type":"offer","toId":"b"}"#), Relayed::NoSuchPeer);
    assert_eq!(relay(&a, 1, r#"{"type":"offer","toId":"c"}"#), Relayed::Delivered(1));
    // b's late close changes nothing.
    registry.leave(2).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(100), events.recv())
            .await
            .is_err()
    );
}

/// Rule: a joiner's view is published after its discovery is queued and before the
/// others hear of it; a member that left (or was replaced) relays nothing.
#[tokio::test]
async fn views_follow_membership_in_order() {
    let (tx, _events) = room_event_channel();
    let registry = spawn_registry(RoomSettings::default(), tx, Arc::default(), Arc::default());
    let (a_out, a_rx) = outbox(16);
    let a = registry.join(1, "r", request("a", "coach"), a_out).await.expect("join");
    let (b_out, b_rx) = outbox(16);
    let b = registry
        .join(2, "r", request("b", "client"), b_out)
        .await
        .expect("join");
    // a heard b joined: b is in a's view, and b's discovery is already ahead in its queue.
    assert_eq!(queued_types(&a_rx), ["peer-discovery", "user-joined"]);
    assert_eq!(relay(&a, 1, r#"{"type":"offer","toId":"b"}"#), Relayed::Delivered(1));
    assert_eq!(queued_types(&b_rx), ["peer-discovery", "offer"]);
    // A rejoin of b replaces its socket: the old one relays nothing.
    let (b2_out, b2_rx) = outbox(16);
    let b2 = registry
        .join(3, "r", request("b", "client"), b2_out)
        .await
        .expect("rejoin");
    assert_eq!(relay(&b, 2, r#"{"type":"client_signal"}"#), Relayed::NotMember);
    assert_eq!(relay(&b2, 3, r#"{"type":"client_signal"}"#), Relayed::Delivered(1));
    registry.leave(1).await;
    registry.room_list().await; // the leave is handled
    assert_eq!(relay(&a, 1, r#"{"type":"client_signal"}"#), Relayed::NotMember);
    assert_eq!(relay(&b2, 3, r#"{"type":"client_signal"}"#), Relayed::Delivered(0));
    assert_eq!(queued_types(&b2_rx), ["peer-discovery", "user-left"]);
}

/// Rule: a reader still relaying on the view it read before its socket was
/// replaced (or left) reaches nobody once the others were told: its frame can
/// never arrive after the rejoin's `user-joined` or the `user-left`.
#[tokio::test]
async fn a_frame_relayed_on_a_stale_view_never_follows_the_news_of_its_senders_end() {
    let (tx, _events) = room_event_channel();
    let registry = spawn_registry(RoomSettings::default(), tx, Arc::default(), Arc::default());
    let (a_out, a_rx) = outbox(16);
    registry.join(1, "r", request("a", "coach"), a_out).await.expect("join");
    let (c_out, _c_rx) = outbox(16);
    let c = registry
        .join(2, "r", request("c", "client"), c_out)
        .await
        .expect("join");
    assert_eq!(queued_types(&a_rx), ["peer-discovery", "user-joined"]);
    // c's reader took its view, then c rejoins on another socket before it relays.
    let stale = c.view.borrow().clone();
    let (c2_out, _c2_rx) = outbox(16);
    let c2 = registry
        .join(3, "r", request("c", "client"), c2_out)
        .await
        .expect("rejoin");
    let mut text = TextFrame::default();
    text.encode(&[&with_from_id(r#"{"type":"client_signal"}"#, "\"c\"")]);
    let sent = stale.relay((2, &c.member), Route::Others, &text, &c.counters, &mut Vec::new());
    assert_eq!(sent, Relayed::NotMember, "the old socket's frame reached nobody");
    assert_eq!(
        queued_types(&a_rx),
        ["user-joined"],
        "a heard the rejoin, nothing after it"
    );
    // The same for a leave.
    let stale = c2.view.borrow().clone();
    registry.leave(3).await;
    registry.room_list().await; // the leave is handled
    let sent = stale.relay((3, &c2.member), Route::Others, &text, &c2.counters, &mut Vec::new());
    assert_eq!(sent, Relayed::NotMember);
    assert_eq!(queued_types(&a_rx), ["user-left"]);
}

/// Rule (audit item 9): the relay of every room never waits on the OrbManager.
/// The manager's channel holds one event and nobody reads it; an AI chatting in
/// one room and people joining and leaving another must not stop relaying.
#[tokio::test]
async fn a_stuck_orb_manager_never_stalls_the_relay() {
    let (tx, mut events) = mpsc::channel(1);
    let registry = spawn_registry(RoomSettings::default(), tx, Arc::default(), Arc::default());
    let (ai, _ai_rx) = outbox(4096);
    registry
        .join(1, "a", request("ai-orb-1", "ai"), ai)
        .await
        .expect("ai joins");
    for _ in 0..100 {
        registry.ai_activity(1).await;
    }
    let (x, _x_rx) = outbox(4096);
    let (y, y_rx) = outbox(4096);
    for round in 0..50 {
        let (extra, _extra_rx) = outbox(16);
        let conn = 100 + round;
        tokio::time::timeout(
            Duration::from_secs(2),
            registry.join(conn, "b", request("guest", "client"), extra),
        )
        .await
        .expect("a join answers while the manager is stuck")
        .expect("join");
        registry.leave(conn).await;
    }
    tokio::time::timeout(Duration::from_secs(2), async {
        let x = registry.join(2, "b", request("x", "client"), x).await.expect("x joins");
        registry.join(3, "b", request("y", "client"), y).await.expect("y joins");
        relay(&x, 2, r#"{"type":"client_signal","n":1}"#);
    })
    .await
    .expect("the registry answers while the manager is stuck");
    let relayed = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            if queued_types(&y_rx).iter().any(|t| t == "client_signal") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(relayed.is_ok(), "room b relays while the manager is stuck");
    // The held membership events arrive in order once the manager reads again.
    assert_eq!(
        next_event(&mut events).await,
        RoomEvent::AiJoined {
            room: "a".into(),
            user_id: "ai-orb-1".into()
        }
    );
    let mut joins = 0;
    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(500), events.recv()).await {
        if matches!(event, RoomEvent::HumanJoined { ref user_id, .. } if user_id == "guest") {
            joins += 1;
        }
    }
    assert_eq!(joins, 50, "no membership event lost");
}

/// Rule (audit item 2): a human cannot take the AI's place, whatever the auth
/// mode: a human join with the AI member's userId, or any `ai-orb-` id, is
/// refused with `forbidden` and the AI keeps its socket.
#[tokio::test]
async fn a_human_cannot_join_as_the_ai() {
    let (tx, _events) = room_event_channel();
    let registry = spawn_registry(RoomSettings::default(), tx, Arc::default(), Arc::default());
    let (ai, ai_rx) = outbox(16);
    registry
        .join(1, "r", request("ai-orb-s1", "ai"), ai)
        .await
        .expect("ai joins");
    for (conn, user_id) in [(2, "ai-orb-s1"), (3, "ai-orb-someone-else")] {
        let (human, _rx) = outbox(16);
        let refused = registry
            .join(conn, "r", request(user_id, "client"), human)
            .await
            .expect_err("refused");
        assert_eq!(refused.code, ErrorCode::Forbidden, "{user_id}");
    }
    assert!(ai_rx.take_kick().is_none(), "the AI was not replaced");
    assert_eq!(queued_types(&ai_rx), ["peer-discovery"], "nobody joined");
}

/// Rule (found by the chaos soak): a joiner's discovery is never queued while a reader
/// can still see the view without it. Its client answers the discovery at once (an
/// offer to a peer); if its reader still held the old view, that frame was refused as
/// `peer_not_found` and lost. Here a reader holds the old view (the watch's read lock)
/// while b joins on another worker: b's discovery must wait for the new view.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiners_discovery_is_never_queued_before_its_view() {
    let (tx, _events) = room_event_channel();
    let registry = spawn_registry(RoomSettings::default(), tx, Arc::default(), Arc::default());
    let (a_out, _a_rx) = outbox(16);
    let a = registry.join(1, "r", request("a", "coach"), a_out).await.expect("join");
    let (b_out, b_rx) = outbox(16);
    let joining = {
        // The old view is held before the join is even sent.
        let old_view = a.view.borrow();
        assert_eq!(old_view.members.len(), 1, "the view before b joined");
        let registry = registry.clone();
        let joining = tokio::spawn(async move { registry.join(2, "r", request("b", "client"), b_out).await });
        // 200 polls, 1 ms apart: the join runs on the other worker meanwhile.
        for _ in 0..200 {
            assert!(
                b_rx.take_texts().is_empty(),
                "b's discovery was queued while a reader still saw the view without b"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        joining
    };
    let b = tokio::time::timeout(Duration::from_secs(2), joining)
        .await
        .expect("the join ends once the old view is let go")
        .expect("task")
        .expect("join");
    assert_eq!(b.view.borrow().members.len(), 2);
    assert_eq!(queued_types(&b_rx), ["peer-discovery"]);
    assert_eq!(relay(&b, 2, r#"{"type":"offer","toId":"a"}"#), Relayed::Delivered(1));
}
