//! The last session summary of each room (`session_summary`, sent by an orb
//! as its session ends), kept after its orb is gone for
//! `GET /api/orbs/{room}/summary`.
//!
//! Owned by the manager actor. Bounded like the timelines: at most
//! [`MAX_ROOMS`] rooms and [`MAX_TOTAL_BYTES`] in all (the oldest go first),
//! each kept [`RETENTION_MS`], each at most [`MAX_SUMMARY_BYTES`] serialised
//! (a bigger one is refused with a warning). A summary is opaque JSON, kept
//! serialised; it holds a transcript (personal data), so its content is never
//! logged: only its size, its `turns` and whether it was `truncated`.

use std::collections::HashMap;

use serde_json::{Value, json};

/// Largest summary kept, serialised (shared with the orb, which trims to fit).
pub use shared::ipc::MAX_SUMMARY_BYTES;
/// Rooms whose summaries are kept.
pub const MAX_ROOMS: usize = 1024;
/// All summaries together, serialised.
pub const MAX_TOTAL_BYTES: usize = 32 * 1024 * 1024;
/// How long a summary is kept after it arrived, ms.
pub const RETENTION_MS: u64 = 60 * 60 * 1000;

/// One room's last summary.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredSummary {
    /// The room.
    pub room: String,
    /// The orb's session.
    pub session: String,
    /// When it arrived, ms since the Unix epoch.
    pub received_at_ms: u64,
    /// The summary, serialised JSON.
    pub summary: String,
}

impl StoredSummary {
    /// The answer of `GET /api/orbs/{room}/summary`: `{"room", "session", "receivedAt", "summary"}`.
    pub fn to_api_json(&self) -> Value {
        json!({
            "room": self.room,
            "session": self.session,
            "receivedAt": self.received_at_ms,
            "summary": serde_json::from_str::<Value>(&self.summary).unwrap_or(Value::Null),
        })
    }
}

/// What [`Summaries::keep`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// Kept (replacing the room's earlier one), `bytes` serialised.
    Kept {
        /// Its size.
        bytes: usize,
    },
    /// Refused: over [`MAX_SUMMARY_BYTES`].
    TooLarge {
        /// Its size.
        bytes: usize,
    },
}

/// Every room's last summary.
#[derive(Debug, Default)]
pub struct Summaries {
    rooms: HashMap<String, StoredSummary>,
    total_bytes: usize,
}

impl Summaries {
    /// Keeps `summary` as `room`'s last, received at `at_ms`; logs its size and turn count only.
    pub fn keep(&mut self, room: &str, session: &str, at_ms: u64, summary: &Value) -> Kept {
        let text = summary.to_string();
        let bytes = text.len();
        let turns = summary.get("turns").and_then(Value::as_u64);
        let truncated = summary.get("truncated").and_then(Value::as_bool);
        if bytes > MAX_SUMMARY_BYTES {
            tracing::warn!(
                %room, %session, bytes, max = MAX_SUMMARY_BYTES, ?turns,
                "session summary refused: too large"
            );
            return Kept::TooLarge { bytes };
        }
        self.forget(room);
        self.make_room(at_ms, bytes);
        self.total_bytes += bytes;
        let stored = StoredSummary {
            room: room.to_owned(),
            session: session.to_owned(),
            received_at_ms: at_ms,
            summary: text,
        };
        self.rooms.insert(room.to_owned(), stored);
        tracing::info!(%room, %session, bytes, ?turns, ?truncated, "session summary kept");
        Kept::Kept { bytes }
    }

    /// Every summary kept and not expired at `now_ms` (for an upgrade's handover).
    pub fn export(&self, now_ms: u64) -> Vec<StoredSummary> {
        let mut all: Vec<StoredSummary> = self
            .rooms
            .values()
            .filter(|s| now_ms.saturating_sub(s.received_at_ms) < RETENTION_MS)
            .cloned()
            .collect();
        all.sort_by_key(|s| s.received_at_ms);
        all
    }

    /// Takes over summaries a previous program image kept, oldest first, under
    /// the same bounds as [`Summaries::keep`] (their contents are not logged).
    pub fn import(&mut self, summaries: Vec<StoredSummary>, now_ms: u64) {
        for stored in summaries {
            let bytes = stored.summary.len();
            if bytes > MAX_SUMMARY_BYTES || now_ms.saturating_sub(stored.received_at_ms) >= RETENTION_MS {
                continue;
            }
            self.forget(&stored.room);
            self.make_room(now_ms, bytes);
            self.total_bytes += bytes;
            self.rooms.insert(stored.room.clone(), stored);
        }
    }

    /// `room`'s last summary, unless older than [`RETENTION_MS`] at `now_ms`.
    pub fn get(&self, room: &str, now_ms: u64) -> Option<StoredSummary> {
        self.rooms
            .get(room)
            .filter(|s| now_ms.saturating_sub(s.received_at_ms) < RETENTION_MS)
            .cloned()
    }

    /// Rooms kept.
    pub fn len(&self) -> usize {
        self.rooms.len()
    }

    /// No room kept.
    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }

    /// Serialised bytes kept in all.
    pub fn total_bytes(&self) -> usize {
        self.total_bytes
    }

    fn forget(&mut self, room: &str) {
        if let Some(old) = self.rooms.remove(room) {
            self.total_bytes -= old.summary.len();
        }
    }

    /// Drops summaries past the retention, then the oldest until one more of `bytes` fits.
    fn make_room(&mut self, now_ms: u64, bytes: usize) {
        let expired: Vec<String> = self
            .rooms
            .values()
            .filter(|s| now_ms.saturating_sub(s.received_at_ms) >= RETENTION_MS)
            .map(|s| s.room.clone())
            .collect();
        for room in expired {
            self.forget(&room);
        }
        while self.rooms.len() >= MAX_ROOMS || self.total_bytes + bytes > MAX_TOTAL_BYTES {
            let oldest = self
                .rooms
                .values()
                .min_by_key(|s| s.received_at_ms)
                .map(|s| s.room.clone());
            match oldest {
                Some(room) => self.forget(&room),
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(text: &str) -> Value {
        json!({
            "transcript": [{"speaker": "coach-1", "role": "coach", "text": text, "atMs": 5}],
            "summary": null, "turns": 1, "truncated": false
        })
    }

    /// Rule: the last summary of a room replaces the earlier one and is kept as sent.
    #[test]
    fn the_last_summary_of_a_room_is_kept() {
        let mut s = Summaries::default();
        assert_eq!(s.get("r", 0), None);
        s.keep("r", "s1", 10, &summary("first"));
        let kept = s.keep("r", "s2", 20, &summary("second"));
        let stored = s.get("r", 30).expect("kept");
        assert_eq!((stored.session.as_str(), stored.received_at_ms), ("s2", 20));
        assert_eq!(
            kept,
            Kept::Kept {
                bytes: stored.summary.len()
            }
        );
        assert_eq!(
            s.total_bytes(),
            stored.summary.len(),
            "the earlier one's bytes are freed"
        );
        let api = stored.to_api_json();
        assert_eq!(api["summary"], summary("second"));
        assert_eq!(
            (api["room"].as_str(), api["receivedAt"].as_u64()),
            (Some("r"), Some(20))
        );
    }

    /// Rule: a summary over MAX_SUMMARY_BYTES is refused, and the room's earlier one stays.
    #[test]
    fn an_oversized_summary_is_refused() {
        let mut s = Summaries::default();
        s.keep("r", "s1", 10, &summary("small"));
        let big = summary(&"x".repeat(MAX_SUMMARY_BYTES));
        assert!(matches!(s.keep("r", "s2", 20, &big), Kept::TooLarge { bytes } if bytes > MAX_SUMMARY_BYTES));
        assert_eq!(s.get("r", 30).map(|x| x.session), Some("s1".to_owned()));
    }

    /// Rule: summaries expire after RETENTION_MS; beyond MAX_ROOMS or
    /// MAX_TOTAL_BYTES the oldest go first.
    #[test]
    fn summaries_are_bounded() {
        let mut s = Summaries::default();
        s.keep("old", "s", 0, &summary("a"));
        assert!(s.get("old", RETENTION_MS - 1).is_some());
        assert!(
            s.get("old", RETENTION_MS).is_none(),
            "expired, even before it is dropped"
        );
        for i in 0..(MAX_ROOMS as u64 + 5) {
            s.keep(&format!("room-{i}"), "s", 1000 + i, &summary("b"));
        }
        assert_eq!(s.len(), MAX_ROOMS);
        assert!(s.get("room-0", 2000).is_none(), "the oldest went first");
        assert!(s.get(&format!("room-{}", MAX_ROOMS + 4), 2000).is_some());

        let mut s = Summaries::default();
        let chunk = summary(&"y".repeat(MAX_SUMMARY_BYTES - 200));
        let rooms = MAX_TOTAL_BYTES / MAX_SUMMARY_BYTES + 3;
        for i in 0..rooms as u64 {
            s.keep(&format!("big-{i}"), "s", i, &chunk);
        }
        assert!(s.total_bytes() <= MAX_TOTAL_BYTES, "{}", s.total_bytes());
        assert!(s.get("big-0", 100).is_none());
        s.keep("late", "s", RETENTION_MS + 1000, &summary("c"));
        assert_eq!(s.len(), 1, "everything older than the retention is gone");
    }

    #[test]
    fn summaries_exported_then_imported_are_kept_as_they_were_and_the_expired_are_not() {
        let mut old = Summaries::default();
        let now = 10 * RETENTION_MS;
        old.keep("r1", "s1", now - 1000, &json!({"summary": "one", "turns": 1}));
        old.keep("r2", "s2", now - 500, &json!({"summary": "two", "turns": 2}));
        old.keep("gone", "s0", now - RETENTION_MS - 1, &json!({"summary": "old"}));
        let exported = old.export(now);
        assert_eq!(
            exported.iter().map(|s| s.room.as_str()).collect::<Vec<_>>(),
            ["r1", "r2"]
        );
        let mut new = Summaries::default();
        new.import(exported, now);
        assert_eq!(new.get("r1", now), old.get("r1", now));
        assert_eq!(new.get("r2", now).map(|s| s.session), Some("s2".to_owned()));
        assert_eq!(new.get("gone", now), None);
        assert_eq!(
            new.total_bytes(),
            old.get("r1", now).map_or(0, |s| s.summary.len()) + old.get("r2", now).map_or(0, |s| s.summary.len())
        );
    }
}
