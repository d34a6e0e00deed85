//! The relay's view of one inbound frame: a size-capped envelope parse that
//! keeps the sender's whole object for forwarding.

use serde_json::{Map, Value};

use super::{ErrorCode, PARTICIPANT_AI, PARTICIPANT_HUMAN};

/// The `type` of an inbound frame, as far as the server cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// `join`.
    Join,
    /// `offer`.
    Offer,
    /// `answer`.
    Answer,
    /// `ice-candidate`.
    IceCandidate,
    /// `leave`.
    Leave,
    /// `ping`.
    Ping,
    /// `ai_status` (AI only).
    AiStatus,
    /// `client_signal`.
    ClientSignal,
    /// `ai_control`.
    AiControl,
    /// `ai_response` (AI only).
    AiResponse,
    /// `orb_heartbeat` (AI only).
    OrbHeartbeat,
    /// `ai-orb-shutdown` (AI only).
    AiOrbShutdown,
}

impl MessageKind {
    /// Maps a wire `type` to its kind.
    pub fn from_wire(name: &str) -> Option<Self> {
        Some(match name {
            "join" => Self::Join,
            "offer" => Self::Offer,
            "answer" => Self::Answer,
            "ice-candidate" => Self::IceCandidate,
            "leave" => Self::Leave,
            "ping" => Self::Ping,
            "ai_status" => Self::AiStatus,
            "client_signal" => Self::ClientSignal,
            "ai_control" => Self::AiControl,
            "ai_response" => Self::AiResponse,
            "orb_heartbeat" => Self::OrbHeartbeat,
            "ai-orb-shutdown" => Self::AiOrbShutdown,
            _ => return None,
        })
    }

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Join => "join",
            Self::Offer => "offer",
            Self::Answer => "answer",
            Self::IceCandidate => "ice-candidate",
            Self::Leave => "leave",
            Self::Ping => "ping",
            Self::AiStatus => "ai_status",
            Self::ClientSignal => "client_signal",
            Self::AiControl => "ai_control",
            Self::AiResponse => "ai_response",
            Self::OrbHeartbeat => "orb_heartbeat",
            Self::AiOrbShutdown => "ai-orb-shutdown",
        }
    }

    /// Only the room's AI participant may send this kind.
    pub fn is_ai_only(self) -> bool {
        matches!(
            self,
            Self::AiStatus | Self::AiResponse | Self::OrbHeartbeat | Self::AiOrbShutdown
        )
    }

    /// WebRTC signalling.
    pub fn is_signalling(self) -> bool {
        matches!(self, Self::Offer | Self::Answer | Self::IceCandidate)
    }

    /// Relayed to other members (the rest are handled by the server).
    pub fn is_relayed(self) -> bool {
        self.honours_target() || self == Self::AiResponse
    }

    /// Relayed to its target alone when it names one (`toId`/`targetId`):
    /// signalling, `ai_status`, `client_signal`, `ai_control`.
    pub fn honours_target(self) -> bool {
        self.is_signalling() || matches!(self, Self::AiStatus | Self::ClientSignal | Self::AiControl)
    }
}

/// Why an inbound frame was refused. Each has its own [`ErrorCode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Larger than the cap; nothing was parsed.
    #[error("message of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Size of the frame.
        size: usize,
        /// The cap.
        max: usize,
    },
    /// Not JSON.
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// JSON, but not an object.
    #[error("message must be a JSON object")]
    NotObject,
    /// No string `type`.
    #[error("message has no string \"type\" field")]
    MissingType,
    /// A `type` the server does not know.
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    /// A required field is absent.
    #[error("missing required field {0:?}")]
    MissingField(&'static str),
    /// A field has the wrong shape.
    #[error("field {field:?} must be {expected}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
    },
}

impl FrameError {
    /// The code sent in the `error` reply.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::TooLarge { .. } => ErrorCode::TooLarge,
            Self::InvalidJson(_) => ErrorCode::InvalidJson,
            Self::NotObject => ErrorCode::NotObject,
            Self::MissingType => ErrorCode::MissingType,
            Self::UnknownType(_) => ErrorCode::UnknownType,
            Self::MissingField(_) => ErrorCode::MissingField,
            Self::InvalidField { .. } => ErrorCode::InvalidField,
        }
    }
}

/// One parsed inbound frame: its kind and the sender's object, untouched.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    /// What the frame is.
    pub kind: MessageKind,
    /// Every field the sender sent, `type` included.
    pub fields: Map<String, Value>,
}

/// The identity fields of a `join`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    /// Who joins.
    pub user_id: String,
    /// Display name (may be empty).
    pub user_name: String,
    /// `coach`, `client`, `ai` or whatever the client sent.
    pub user_role: String,
    /// `human` or `ai`.
    pub participant_type: String,
}

impl JoinRequest {
    /// Joins as the AI (`participantType: ai` or `userRole: ai`).
    pub fn is_ai(&self) -> bool {
        self.participant_type == PARTICIPANT_AI || self.user_role == PARTICIPANT_AI
    }
}

/// Longest user id accepted in a `join`.
pub const MAX_USER_ID_LEN: usize = 128;

/// Parses one text frame; the size cap is checked before any parsing.
pub fn parse_inbound(text: &str, max_bytes: usize) -> Result<Inbound, FrameError> {
    if text.len() > max_bytes {
        return Err(FrameError::TooLarge {
            size: text.len(),
            max: max_bytes,
        });
    }
    let value: Value = serde_json::from_str(text).map_err(|e| FrameError::InvalidJson(e.to_string()))?;
    let Value::Object(fields) = value else {
        return Err(FrameError::NotObject);
    };
    let kind_name = fields
        .get("type")
        .and_then(Value::as_str)
        .ok_or(FrameError::MissingType)?;
    let kind = MessageKind::from_wire(kind_name).ok_or_else(|| FrameError::UnknownType(truncate(kind_name, 64)))?;
    Ok(Inbound { kind, fields })
}

impl Inbound {
    /// The relay target: `toId`, else `targetId`; `None` means everyone else.
    pub fn target(&self) -> Result<Option<&str>, FrameError> {
        for field in ["toId", "targetId"] {
            match self.fields.get(field) {
                None | Some(Value::Null) => continue,
                Some(Value::String(id)) => return Ok(Some(id.as_str())),
                Some(_) => {
                    return Err(FrameError::InvalidField {
                        field,
                        expected: "a string",
                    });
                }
            }
        }
        Ok(None)
    }

    /// The identity fields of a `join`, checked.
    pub fn join_request(&self) -> Result<JoinRequest, FrameError> {
        let user_id = self.string_field("userId")?.ok_or(FrameError::MissingField("userId"))?;
        if user_id.is_empty() || user_id.len() > MAX_USER_ID_LEN || user_id.chars().any(char::is_control) {
            return Err(FrameError::InvalidField {
                field: "userId",
                expected: "1 to 128 characters without control characters",
            });
        }
        let user_name = self.string_field("userName")?.unwrap_or_default();
        if user_name.chars().any(char::is_control) || user_name.len() > 256 {
            return Err(FrameError::InvalidField {
                field: "userName",
                expected: "at most 256 characters without control characters",
            });
        }
        let user_role = self.string_field("userRole")?.unwrap_or_default();
        let participant_type = self
            .string_field("participantType")?
            .unwrap_or_else(|| PARTICIPANT_HUMAN.to_owned());
        if participant_type != PARTICIPANT_HUMAN && participant_type != PARTICIPANT_AI {
            return Err(FrameError::InvalidField {
                field: "participantType",
                expected: "\"human\" or \"ai\"",
            });
        }
        if user_role.chars().any(char::is_control) || user_role.len() > 32 {
            return Err(FrameError::InvalidField {
                field: "userRole",
                expected: "a short role name",
            });
        }
        Ok(JoinRequest {
            user_id,
            user_name,
            user_role,
            participant_type,
        })
    }

    /// The frame as relayed: every field the sender sent, `fromId` set by the server.
    pub fn into_relayed(mut self, from_id: &str) -> String {
        self.fields
            .insert("fromId".to_owned(), Value::String(from_id.to_owned()));
        Value::Object(self.fields).to_string()
    }

    /// A string field, `None` when absent or null; an error when of another type.
    pub fn string_field(&self, field: &'static str) -> Result<Option<String>, FrameError> {
        match self.fields.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(FrameError::InvalidField {
                field,
                expected: "a string",
            }),
        }
    }
}

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn relayed_message_keeps_unknown_fields_and_gets_server_from_id() {
        let text = r#"{"type":"client_signal","action":"hand_raised","x":{"nested":[1,2]},"fromId":"forged"}"#;
        let inbound = parse_inbound(text, 1024).expect("parse");
        assert_eq!(inbound.kind, MessageKind::ClientSignal);
        let relayed: Value = serde_json::from_str(&inbound.into_relayed("u1")).expect("json");
        assert_eq!(
            relayed,
            json!({"type":"client_signal","action":"hand_raised","x":{"nested":[1,2]},"fromId":"u1"})
        );
    }

    #[test]
    fn each_bad_frame_has_its_own_error() {
        assert_eq!(
            parse_inbound("{nope", 1024).map_err(|e| e.code()),
            Err(ErrorCode::InvalidJson)
        );
        assert_eq!(
            parse_inbound("[1,2]", 1024).map_err(|e| e.code()),
            Err(ErrorCode::NotObject)
        );
        assert_eq!(
            parse_inbound(r#"{"a":1}"#, 1024).map_err(|e| e.code()),
            Err(ErrorCode::MissingType)
        );
        assert_eq!(
            parse_inbound(r#"{"type":7}"#, 1024).map_err(|e| e.code()),
            Err(ErrorCode::MissingType)
        );
        assert_eq!(
            parse_inbound(r#"{"type":"dance"}"#, 1024).map_err(|e| e.code()),
            Err(ErrorCode::UnknownType)
        );
    }

    #[test]
    fn oversized_frame_is_refused_before_parsing() {
        let big = format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(100));
        assert_eq!(
            parse_inbound(&big, 64),
            Err(FrameError::TooLarge {
                size: big.len(),
                max: 64
            })
        );
        // Not even JSON, but refused for its size first.
        assert_eq!(
            parse_inbound(&"{".repeat(65), 64).map_err(|e| e.code()),
            Err(ErrorCode::TooLarge)
        );
    }

    #[test]
    fn target_prefers_to_id_then_target_id() {
        let a = parse_inbound(r#"{"type":"offer","toId":"a","targetId":"b"}"#, 1024).expect("parse");
        assert_eq!(a.target(), Ok(Some("a")));
        let b = parse_inbound(r#"{"type":"offer","targetId":"b"}"#, 1024).expect("parse");
        assert_eq!(b.target(), Ok(Some("b")));
        let none = parse_inbound(r#"{"type":"offer"}"#, 1024).expect("parse");
        assert_eq!(none.target(), Ok(None));
        let bad = parse_inbound(r#"{"type":"offer","toId":5}"#, 1024).expect("parse");
        assert!(matches!(
            bad.target(),
            Err(FrameError::InvalidField { field: "toId", .. })
        ));
    }

    #[test]
    fn join_request_is_checked() {
        let ok = parse_inbound(
            r#"{"type":"join","userId":"u1","userName":"Ann","userRole":"coach"}"#,
            1024,
        )
        .expect("parse")
        .join_request()
        .expect("join");
        assert_eq!(ok.participant_type, "human");
        assert!(!ok.is_ai());
        let missing = parse_inbound(r#"{"type":"join"}"#, 1024).expect("parse").join_request();
        assert_eq!(missing, Err(FrameError::MissingField("userId")));
        let control = parse_inbound(r#"{"type":"join","userId":"a\nb"}"#, 1024)
            .expect("parse")
            .join_request();
        assert!(matches!(control, Err(FrameError::InvalidField { field: "userId", .. })));
        let ai = parse_inbound(r#"{"type":"join","userId":"x","userRole":"ai"}"#, 1024)
            .expect("parse")
            .join_request()
            .expect("join");
        assert!(ai.is_ai());
    }
}
