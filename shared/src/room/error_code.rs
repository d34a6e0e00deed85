//! Machine-readable codes carried by `error` replies (`{"type":"error","code":…}`).

use serde::{Deserialize, Serialize};

/// Why the server refused a frame or a request. Serialized in snake_case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not valid JSON (or not valid UTF-8 text).
    InvalidJson,
    /// The frame is JSON but not an object.
    NotObject,
    /// The object has no string `type`.
    MissingType,
    /// The `type` is not one the server knows.
    UnknownType,
    /// A required field is absent.
    MissingField,
    /// A field has the wrong type or an invalid value.
    InvalidField,
    /// The socket sent a message that needs a prior `join`.
    NotJoined,
    /// A second `join` on a socket that already joined.
    AlreadyJoined,
    /// The relay target is not in the room.
    PeerNotFound,
    /// The frame is larger than the configured cap.
    TooLarge,
    /// The sender may not send this (e.g. AI-only messages from a human).
    Forbidden,
    /// The room has reached its participant limit.
    RoomFull,
    /// The server has reached its room limit.
    TooManyRooms,
    /// The sender exceeded its message rate.
    RateLimited,
    /// The server is shutting down.
    Draining,
    /// The token presented is missing, invalid or expired.
    Unauthorized,
    /// Something failed inside the server; details are in its log.
    Internal,
    /// The AI is answering as many requests as it takes; ask again later
    /// (sent by an orb as `ai_status` `error` with `code` `busy`).
    Busy,
}

impl ErrorCode {
    /// The wire spelling of the code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::NotObject => "not_object",
            Self::MissingType => "missing_type",
            Self::UnknownType => "unknown_type",
            Self::MissingField => "missing_field",
            Self::InvalidField => "invalid_field",
            Self::NotJoined => "not_joined",
            Self::AlreadyJoined => "already_joined",
            Self::PeerNotFound => "peer_not_found",
            Self::TooLarge => "too_large",
            Self::Forbidden => "forbidden",
            Self::RoomFull => "room_full",
            Self::TooManyRooms => "too_many_rooms",
            Self::RateLimited => "rate_limited",
            Self::Draining => "draining",
            Self::Unauthorized => "unauthorized",
            Self::Internal => "internal",
            Self::Busy => "busy",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_spelling_matches_as_str() {
        for code in [
            ErrorCode::InvalidJson,
            ErrorCode::PeerNotFound,
            ErrorCode::TooManyRooms,
            ErrorCode::Busy,
        ] {
            let json = serde_json::to_string(&code).expect("serialize");
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }
}
