//! Each room's orb timeline: what the lifecycle noted, stamped with the wall
//! clock, kept bounded in memory per room and for a while after the room's
//! orb is gone, and written to the log as structured events (target
//! `orb_timeline`). [`why::explain`] turns it into one line.

pub mod why;

use std::collections::{HashMap, VecDeque};

use serde::Serialize;

use super::lifecycle::Note;

/// Entries kept per room (the oldest go first).
pub const MAX_ENTRIES: usize = 256;
/// Rooms whose timelines are kept (the least recently noted go first).
pub const MAX_ROOMS: usize = 1024;
/// How long a timeline is kept after its last entry, ms.
pub const RETENTION_MS: u64 = 60 * 60 * 1000;

/// One entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
    /// What.
    #[serde(flatten)]
    pub note: Note,
}

/// Every room's timeline. Owned by the manager.
#[derive(Debug, Default)]
pub struct Timelines {
    rooms: HashMap<String, VecDeque<Entry>>,
}

impl Timelines {
    /// Adds `note` to `room`'s timeline at `at_ms` and logs it.
    pub fn push(&mut self, room: &str, at_ms: u64, note: Note) {
        log(room, &note);
        if !self.rooms.contains_key(room) {
            self.forget_old(at_ms);
        }
        let entries = self.rooms.entry(room.to_owned()).or_default();
        if entries.len() >= MAX_ENTRIES {
            entries.pop_front();
        }
        entries.push_back(Entry { at_ms, note });
    }

    /// `room`'s timeline, oldest first (`None`: nothing known of it).
    pub fn get(&self, room: &str) -> Option<Vec<Entry>> {
        self.rooms.get(room).map(|e| e.iter().cloned().collect())
    }

    /// Rooms kept.
    pub fn len(&self) -> usize {
        self.rooms.len()
    }

    /// No room kept.
    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }

    /// Drops timelines past [`RETENTION_MS`], then the least recently noted beyond [`MAX_ROOMS`] - 1.
    fn forget_old(&mut self, now_ms: u64) {
        let last = |e: &VecDeque<Entry>| e.back().map_or(0, |x| x.at_ms);
        self.rooms.retain(|_, e| now_ms.saturating_sub(last(e)) < RETENTION_MS);
        while self.rooms.len() >= MAX_ROOMS {
            let oldest = self
                .rooms
                .iter()
                .min_by_key(|(_, e)| last(e))
                .map(|(room, _)| room.clone());
            match oldest {
                Some(room) => self.rooms.remove(&room),
                None => break,
            };
        }
    }
}

/// The structured log line of one note.
fn log(room: &str, note: &Note) {
    let fields = serde_json::to_string(note).unwrap_or_default();
    match note {
        Note::HeartbeatLate { .. }
        | Note::OverMemoryLimit { .. }
        | Note::OverGpuMemoryLimit { .. }
        | Note::Stalled { .. }
        | Note::SpawnFailed { .. }
        | Note::WarmDiscarded { .. }
        | Note::Parked { .. } => {
            tracing::warn!(target: "orb_timeline", %room, event = note.name(), %fields, "orb event")
        }
        _ => tracing::info!(target: "orb_timeline", %room, event = note.name(), %fields, "orb event"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rule: a timeline keeps its last MAX_ENTRIES entries; rooms beyond
    /// MAX_ROOMS or older than RETENTION_MS are forgotten.
    #[test]
    fn timelines_are_bounded() {
        let mut t = Timelines::default();
        for i in 0..(MAX_ENTRIES as u64 + 10) {
            t.push("r", i, Note::AiJoined);
        }
        let entries = t.get("r").expect("kept");
        assert_eq!(entries.len(), MAX_ENTRIES);
        assert_eq!(entries[0].at_ms, 10, "the oldest went first");
        for i in 0..(MAX_ROOMS as u64 + 5) {
            t.push(&format!("room-{i}"), 1000 + i, Note::AiJoined);
        }
        assert!(t.len() <= MAX_ROOMS);
        assert!(t.get("r").is_none(), "the least recently noted room went first");
        t.push("late", 1000 + RETENTION_MS + 10_000, Note::AiJoined);
        assert_eq!(t.len(), 1, "everything older than the retention is gone");
    }
}
