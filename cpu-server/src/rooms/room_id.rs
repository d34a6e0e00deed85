//! Room id validation: room ids end up in log file names, so only a safe alphabet passes.

/// Longest room id accepted.
pub const MAX_ROOM_ID_LEN: usize = 64;

/// Why a room id was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RoomIdError {
    /// Empty or longer than [`MAX_ROOM_ID_LEN`].
    #[error("room id must be 1 to 64 characters long")]
    Length,
    /// A character outside `[A-Za-z0-9_.-]`, or `.`/`..`.
    #[error("room id may only contain A-Z, a-z, 0-9, '_', '.' and '-', and may not be '.' or '..'")]
    Characters,
}

/// Accepts 1–64 characters of `[A-Za-z0-9_.-]`, except `.` and `..`.
pub fn validate_room_id(id: &str) -> Result<(), RoomIdError> {
    if id.is_empty() || id.len() > MAX_ROOM_ID_LEN {
        return Err(RoomIdError::Length);
    }
    let safe = id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !safe || id == "." || id == ".." {
        return Err(RoomIdError::Characters);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_ids_pass() {
        for id in ["r", "room-1", "Room_2.session", "a..b", "...", &"x".repeat(64)] {
            assert_eq!(validate_room_id(id), Ok(()), "{id}");
        }
    }

    #[test]
    fn bad_ids_are_refused() {
        assert_eq!(validate_room_id(""), Err(RoomIdError::Length));
        assert_eq!(validate_room_id(&"x".repeat(65)), Err(RoomIdError::Length));
        for id in [".", "..", "a/b", "a b", "é", "a\0", "room%2F", "a\\b"] {
            assert_eq!(validate_room_id(id), Err(RoomIdError::Characters), "{id:?}");
        }
    }
}
