//! The registry actor driven in-process: events on the seam, replacement, slow consumers.

use std::time::Duration;

use serde_json::Value;
use shared::room::parse_inbound;

use super::*;
use crate::rooms::events::{RoomEventReceiver, room_event_channel};
use crate::rooms::outbox::{Kick, Outbound, OutboxReceiver, outbox};

fn request(user_id: &str, role: &str) -> JoinRequest {
    JoinRequest {
        user_id: user_id.to_owned(),
        user_name: user_id.to_owned(),
        user_role: role.to_owned(),
        participant_type: if role == "ai" { "ai" } else { "human" }.to_owned(),
    }
}

fn frame(text: &str) -> Inbound {
    parse_inbound(text, 4096).expect("valid frame")
}

async fn next_event(events: &mut RoomEventReceiver) -> RoomEvent {
    tokio::time::timeout(Duration::from_secs(2), events.recv())
        .await
        .expect("an event within 2 s")
        .expect("channel open")
}

/// The `type`s of every text frame queued so far.
fn queued_types(rx: &mut OutboxReceiver) -> Vec<String> {
    let mut types = Vec::new();
    while let Ok(item) = rx.frames.try_recv() {
        if let Outbound::Text(text) = item {
            let value: Value = serde_json::from_str(text.as_str()).expect("json");
            types.push(value["type"].as_str().unwrap_or_default().to_owned());
        }
    }
    types
}

#[tokio::test]
async fn room_events_follow_joins_ai_frames_replacement_and_leaves() {
    let (tx, mut events) = room_event_channel();
    let registry = spawn_registry(RoomSettings::default(), tx, Arc::default(), Arc::default());
    let (coach, mut coach_rx) = outbox(16);
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
    let (ai, mut ai_rx) = outbox(16);
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
    registry
        .relay(2, frame(r#"{"type":"orb_heartbeat","metrics":{}}"#))
        .await;
    assert_eq!(
        next_event(&mut events).await,
        RoomEvent::AiActivity { room: "r".into() }
    );
    registry.ai_activity(2).await;
    assert_eq!(
        next_event(&mut events).await,
        RoomEvent::AiActivity { room: "r".into() }
    );
    registry.ai_activity(1).await; // a human's ping is no AI activity

    // A rejoin of the coach: the old socket is kicked with 4000, no HumanLeft.
    let (coach2, mut coach2_rx) = outbox(16);
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
        coach_rx.kicks.try_recv().ok(),
        Some(Kick {
            code: 4000,
            reason: "replaced"
        })
    );
    assert_eq!(
        queued_types(&mut coach_rx),
        ["peer-discovery", "user-joined"],
        "no heartbeat relayed"
    );
    assert_eq!(queued_types(&mut coach2_rx), ["peer-discovery"]);
    assert_eq!(
        queued_types(&mut ai_rx),
        ["peer-discovery", "user-joined"],
        "no user-left for a replacement"
    );
    registry.leave(1).await; // the stale socket's late close: nothing happens

    registry
        .relay(2, frame(r#"{"type":"ai-orb-shutdown","reason":"session_complete"}"#))
        .await;
    assert_eq!(
        next_event(&mut events).await,
        RoomEvent::AiActivity { room: "r".into() }
    );
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
    assert_eq!(queued_types(&mut coach2_rx), ["user-left"]);
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
    let (sender, mut sender_rx) = outbox(16);
    let (slow, mut slow_rx) = outbox(2);
    registry
        .join(1, "r", request("a", "coach"), sender)
        .await
        .expect("join");
    registry.join(2, "r", request("b", "client"), slow).await.expect("join");
    next_event(&mut events).await;
    next_event(&mut events).await;
    // b's queue holds its peer-discovery; one relay fits, the next overflows.
    registry
        .relay(1, frame(r#"{"type":"client_signal","action":"x"}"#))
        .await;
    registry
        .relay(1, frame(r#"{"type":"client_signal","action":"y"}"#))
        .await;
    assert_eq!(
        next_event(&mut events).await,
        RoomEvent::HumanLeft {
            room: "r".into(),
            user_id: "b".into(),
            humans: 1
        }
    );
    assert_eq!(
        slow_rx.kicks.try_recv().ok(),
        Some(Kick {
            code: 1008,
            reason: "slow consumer"
        })
    );
    assert_eq!(queued_types(&mut slow_rx), ["peer-discovery", "client_signal"]);
    assert_eq!(
        queued_types(&mut sender_rx),
        ["peer-discovery", "user-joined", "user-left"]
    );
    // The sender is still in the room: a targeted relay to b is now an error.
    registry.relay(1, frame(r#"{"type":"offer","toId":"b"}"#)).await;
    let reply = tokio::time::timeout(Duration::from_secs(2), sender_rx.frames.recv())
        .await
        .expect("a reply within 2 s");
    let Some(Outbound::Text(reply)) = reply else {
        panic!("expected an error frame, got {reply:?}");
    };
    let reply: Value = serde_json::from_str(reply.as_str()).expect("json");
    assert_eq!(reply["code"], "peer_not_found");
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
        registry
            .relay(1, frame(r#"{"type":"orb_heartbeat","metrics":{}}"#))
            .await;
    }
    let (x, _x_rx) = outbox(4096);
    let (y, mut y_rx) = outbox(4096);
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
        registry.join(2, "b", request("x", "client"), x).await.expect("x joins");
        registry.join(3, "b", request("y", "client"), y).await.expect("y joins");
        registry.relay(2, frame(r#"{"type":"client_signal","n":1}"#)).await;
    })
    .await
    .expect("the registry answers while the manager is stuck");
    let relayed = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            if queued_types(&mut y_rx).iter().any(|t| t == "client_signal") {
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
    let (ai, mut ai_rx) = outbox(16);
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
    assert!(ai_rx.kicks.try_recv().is_err(), "the AI was not replaced");
    assert_eq!(queued_types(&mut ai_rx), ["peer-discovery"], "nobody joined");
}
