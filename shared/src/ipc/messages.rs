//! Typed IPC messages in both directions (docs/protocol.md §3).

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};

/// A message family of one direction: the `type` tags it knows.
pub trait IpcMessage: Serialize + DeserializeOwned {
    /// Every `type` this family knows; any other type is "unknown", not an error.
    const TYPES: &'static [&'static str];
}

/// Orb → manager.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OrbToManager {
    /// The orb joined its room.
    OrbReady(OrbReady),
    /// Periodic health report.
    OrbHeartbeat(OrbHeartbeat),
    /// Something went wrong; `critical` asks for a restart.
    OrbError(OrbError),
    /// A session summary, passed on to whoever consumes it.
    SessionSummary(SessionSummary),
    /// The orb is about to exit.
    OrbShutdown(OrbShutdown),
    /// A warm orb (`--warm`) is started, in no room, and can be assigned one.
    OrbWarm(OrbWarm),
    /// A warm orb took the room of an `orb_assign`; it joins it now.
    OrbAssigned(OrbAssigned),
}

impl IpcMessage for OrbToManager {
    const TYPES: &'static [&'static str] = &[
        "orb_ready",
        "orb_heartbeat",
        "orb_error",
        "session_summary",
        "orb_shutdown",
        "orb_warm",
        "orb_assigned",
    ];
}

/// Manager → orb.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ManagerToOrb {
    /// Finish up and exit within `timeout` ms.
    ShutdownGraceful(ShutdownGraceful),
    /// A participant joined the room.
    ParticipantJoined(ParticipantJoined),
    /// A participant left the room.
    ParticipantLeft(ParticipantLeft),
    /// A warm orb's room, session and credential.
    OrbAssign(OrbAssign),
}

impl IpcMessage for ManagerToOrb {
    const TYPES: &'static [&'static str] = &[
        "shutdown_graceful",
        "participant_joined",
        "participant_left",
        "orb_assign",
    ];
}

/// `orb_warm`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrbWarm {
    /// Other fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `orb_assigned`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrbAssigned {
    /// The room it took.
    pub room_id: String,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `orb_assign`: what `--room`, `--session`, `--coach`, `--client` and
/// `ORB_AUTH_TOKEN` give a cold orb (the token travels only on this private channel).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrbAssign {
    /// The room to join.
    pub room_id: String,
    /// The session id.
    pub session_id: String,
    /// The coach's user id, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coach_id: Option<String>,
    /// The client's user id, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The room socket credential of this process in that room.
    pub token: String,
    /// The orb's warm room socket (`/orb-seat`) is already in the room: the server
    /// joined it as the AI, and `peer-discovery` is on its way on that socket.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub seated: bool,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `orb_ready`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrbReady {
    /// The orb's room.
    pub room_id: String,
    /// Participants it saw when joining.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participants: Option<Value>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `orb_heartbeat`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrbHeartbeat {
    /// The orb's room.
    pub room_id: String,
    /// When it was sent, milliseconds since the Unix epoch.
    pub timestamp: u64,
    /// Resource figures.
    #[serde(default)]
    pub metrics: OrbMetrics,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The metrics of a heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OrbMetrics {
    /// CPU use of the orb process, percent of one core.
    #[serde(default)]
    pub cpu: f64,
    /// Resident memory, MB.
    #[serde(default)]
    pub memory: f64,
    /// WebSocket ping round trip, ms.
    #[serde(default)]
    pub latency: f64,
    /// Other figures.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `orb_error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrbError {
    /// What went wrong.
    pub error: String,
    /// True asks the manager for a restart.
    #[serde(default)]
    pub critical: bool,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `session_summary`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionSummary {
    /// The orb's room.
    pub room_id: String,
    /// The orb's session.
    pub session_id: String,
    /// Opaque summary, passed on as is.
    pub summary: Value,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `orb_shutdown`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrbShutdown {
    /// Why the orb exits.
    pub reason: String,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `shutdown_graceful`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShutdownGraceful {
    /// Why (`manual_termination`, `room_empty_timeout`, `restart`, …).
    pub reason: String,
    /// How long the orb has, in ms.
    pub timeout: u64,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `participant_joined`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantJoined {
    /// Who joined.
    pub user_id: String,
    /// Their role.
    pub user_role: String,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `participant_left`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantLeft {
    /// Who left.
    pub user_id: String,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip<T: IpcMessage + std::fmt::Debug>(value: Value) {
        let parsed: T = serde_json::from_value(value.clone()).expect("parse");
        assert_eq!(serde_json::to_value(&parsed).expect("serialize"), value);
        let tag = value["type"].as_str().expect("type");
        assert!(T::TYPES.contains(&tag), "{tag} listed in TYPES");
    }

    #[test]
    fn every_orb_message_round_trips() {
        round_trip::<OrbToManager>(json!({"type":"orb_ready","roomId":"r1","participants":["u1"]}));
        round_trip::<OrbToManager>(json!({"type":"orb_ready","roomId":"r1"}));
        round_trip::<OrbToManager>(
            json!({"type":"orb_heartbeat","roomId":"r1","timestamp":1700000000000u64,
            "metrics":{"cpu":1.5,"memory":6.25,"latency":0.5}}),
        );
        round_trip::<OrbToManager>(json!({"type":"orb_error","error":"boom","critical":true}));
        round_trip::<OrbToManager>(
            json!({"type":"session_summary","roomId":"r1","sessionId":"s1","summary":{"turns":3}}),
        );
        round_trip::<OrbToManager>(json!({"type":"orb_shutdown","reason":"session_complete"}));
        round_trip::<OrbToManager>(json!({"type":"orb_warm"}));
        round_trip::<OrbToManager>(json!({"type":"orb_assigned","roomId":"r1"}));
    }

    #[test]
    fn every_manager_message_round_trips() {
        round_trip::<ManagerToOrb>(json!({"type":"shutdown_graceful","reason":"manual_termination","timeout":10000}));
        round_trip::<ManagerToOrb>(json!({"type":"participant_joined","userId":"u1","userRole":"coach"}));
        round_trip::<ManagerToOrb>(json!({"type":"participant_left","userId":"u1"}));
        round_trip::<ManagerToOrb>(
            json!({"type":"orb_assign","roomId":"r1","sessionId":"s1","coachId":"c1","token":"t"}),
        );
    }
}
