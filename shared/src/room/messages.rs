//! Typed model of every room message of docs/protocol.md §1, both directions.
//!
//! Each variant's payload keeps the fields it does not know in `extra`, so a
//! parse followed by a serialize gives back the same object.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::ErrorCode;

/// One room frame, tagged by its `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum RoomMessage {
    /// Client → server: join the room of the path.
    #[serde(rename = "join")]
    Join(Join),
    /// WebRTC offer, relayed to `toId`/`targetId` or to all others.
    #[serde(rename = "offer")]
    Offer(Signal),
    /// WebRTC answer, relayed like an offer.
    #[serde(rename = "answer")]
    Answer(Signal),
    /// ICE candidate, relayed like an offer.
    #[serde(rename = "ice-candidate")]
    IceCandidate(Signal),
    /// Client → server: leave the room.
    #[serde(rename = "leave")]
    Leave(Extra),
    /// Client → server: answered with `pong`.
    #[serde(rename = "ping")]
    Ping(Extra),
    /// Server → client: answer to `ping`.
    #[serde(rename = "pong")]
    Pong(Extra),
    /// AI → room: the AI's state.
    #[serde(rename = "ai_status")]
    AiStatus(AiStatus),
    /// Client → room: a signal such as a raised hand.
    #[serde(rename = "client_signal")]
    ClientSignal(ClientSignal),
    /// Client → room (the orb acts on it): pause, resume, end, say.
    #[serde(rename = "ai_control")]
    AiControl(AiControl),
    /// AI → room: an answer of the AI.
    #[serde(rename = "ai_response")]
    AiResponse(AiResponse),
    /// AI → server: a heartbeat of the room's orb.
    #[serde(rename = "orb_heartbeat")]
    OrbHeartbeat(OrbHeartbeatFrame),
    /// AI → server: the AI is leaving.
    #[serde(rename = "ai-orb-shutdown")]
    AiOrbShutdown(OrbShutdownFrame),
    /// Server → joiner: who is already here.
    #[serde(rename = "peer-discovery")]
    PeerDiscovery(PeerDiscovery),
    /// Server → others: someone joined.
    #[serde(rename = "user-joined")]
    UserJoined(UserJoined),
    /// Server → remaining: someone left.
    #[serde(rename = "user-left")]
    UserLeft(Participant),
    /// Server → sender: the frame was refused.
    #[serde(rename = "error")]
    Error(ErrorReply),
}

impl RoomMessage {
    /// Serializes to the JSON text of one frame.
    pub fn to_json(&self) -> String {
        // Serializing these types cannot fail: every map key is a string.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

/// A payload with no fields of its own.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Extra {
    /// Fields the protocol does not name.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `join`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Join {
    /// Who joins.
    pub user_id: String,
    /// Display name.
    #[serde(default)]
    pub user_name: String,
    /// `coach`, `client` or `ai`.
    #[serde(default)]
    pub user_role: String,
    /// `human` (default) or `ai`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participant_type: Option<String>,
    /// Ignored by the server: the path's room id wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_id: Option<String>,
    /// Fields the protocol does not name.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `offer`, `answer` and `ice-candidate`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Signal {
    /// Target participant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_id: Option<String>,
    /// Target participant (older spelling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_id: Option<String>,
    /// Sender, set by the server on relay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_id: Option<String>,
    /// `offer`, `answer`, `candidate` and anything else the sender sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `ai_status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AiStatus {
    /// `ready`, `listening`, `thinking`, `speaking`, `paused`, `queued`, `error`…
    pub status: String,
    /// The orb's session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Sender, set by the server on relay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_id: Option<String>,
    /// Other fields (e.g. `position` with `queued`).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `client_signal`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientSignal {
    /// E.g. `hand_raised`.
    pub action: String,
    /// Optional value of the action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// Sender, set by the server on relay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_id: Option<String>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `ai_control`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AiControl {
    /// `pause`, `resume`, `end_session` or `say`.
    pub action: String,
    /// The text to say, with `say`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Sender, set by the server on relay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_id: Option<String>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `ai_response`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AiResponse {
    /// What the AI says.
    pub text: String,
    /// The participant whose `say` this answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_reply_to: Option<String>,
    /// Sender, set by the server on relay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_id: Option<String>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `orb_heartbeat` on the room socket.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrbHeartbeatFrame {
    /// Free-form metrics of the orb.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Value>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `ai-orb-shutdown`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrbShutdownFrame {
    /// The orb's session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// `session_complete`, `timeout`, `idle_timeout`, `error`…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One participant as others see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Participant {
    /// Its id.
    pub user_id: String,
    /// Its display name.
    pub user_name: String,
    /// `coach`, `client` or `ai`.
    pub user_role: String,
    /// `human` or `ai`.
    pub participant_type: String,
}

/// `peer-discovery`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerDiscovery {
    /// Everyone in the room but the joiner.
    pub peers: Vec<Participant>,
    /// The room.
    pub room_id: String,
}

/// `user-joined`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserJoined {
    /// Who joined.
    #[serde(flatten)]
    pub participant: Participant,
    /// Whether the recipient should send the WebRTC offer to the joiner.
    pub should_create_offer: bool,
}

/// `error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// Human-readable explanation.
    pub message: String,
    /// Machine-readable code.
    pub code: ErrorCode,
}

impl ErrorReply {
    /// An `error` frame with its code and message.
    pub fn frame(code: ErrorCode, message: impl Into<String>) -> RoomMessage {
        RoomMessage::Error(ErrorReply {
            message: message.into(),
            code,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip(value: Value) {
        let parsed: RoomMessage = serde_json::from_value(value.clone()).expect("parse");
        let back = serde_json::to_value(&parsed).expect("serialize");
        assert_eq!(back, value, "round trip of {value}");
    }

    #[test]
    fn every_client_message_round_trips() {
        round_trip(
            json!({"type":"join","userId":"u1","userName":"Ann","userRole":"coach","participantType":"human","roomId":"r"}),
        );
        round_trip(json!({"type":"offer","offer":{"sdp":"v=0","type":"offer"},"toId":"u2"}));
        round_trip(json!({"type":"answer","answer":{"sdp":"v=0"},"targetId":"u1","fromId":"u2"}));
        round_trip(json!({"type":"ice-candidate","candidate":{"candidate":"c","sdpMid":"0"},"toId":"u2"}));
        round_trip(json!({"type":"leave"}));
        round_trip(json!({"type":"ping"}));
        round_trip(json!({"type":"ai_status","status":"thinking","sessionId":"s1"}));
        round_trip(json!({"type":"client_signal","action":"hand_raised","value":true}));
        round_trip(json!({"type":"ai_control","action":"say","text":"hello"}));
        round_trip(json!({"type":"ai_control","action":"pause"}));
        round_trip(json!({"type":"orb_heartbeat","metrics":{"cpu":1.5}}));
        round_trip(json!({"type":"ai-orb-shutdown","sessionId":"s1","reason":"session_complete"}));
        round_trip(json!({"type":"ai_response","text":"echo: hi","inReplyTo":"u1"}));
    }

    #[test]
    fn every_server_message_round_trips() {
        let peer = json!({"userId":"u1","userName":"Ann","userRole":"coach","participantType":"human"});
        round_trip(json!({"type":"peer-discovery","peers":[peer],"roomId":"r1"}));
        round_trip(
            json!({"type":"user-joined","userId":"u2","userName":"Bo","userRole":"client","participantType":"human","shouldCreateOffer":true}),
        );
        round_trip(
            json!({"type":"user-left","userId":"u2","userName":"Bo","userRole":"client","participantType":"human"}),
        );
        round_trip(json!({"type":"pong"}));
        round_trip(json!({"type":"error","message":"no such peer","code":"peer_not_found"}));
        round_trip(json!({"type":"ai_status","status":"queued","position":2}));
    }

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        round_trip(json!({"type":"client_signal","action":"x","x":{"nested":[1,2]}}));
        round_trip(json!({"type":"join","userId":"u","userName":"n","userRole":"client","custom":7}));
    }

    #[test]
    fn join_defaults_participant_type_to_absent() {
        let parsed: RoomMessage = serde_json::from_value(json!({"type":"join","userId":"u"})).expect("parse");
        match parsed {
            RoomMessage::Join(join) => {
                assert_eq!(join.user_id, "u");
                assert_eq!(join.participant_type, None);
            }
            other => panic!("expected join, got {other:?}"),
        }
    }
}
