//! Each room's orb timeline: what the lifecycle noted, stamped with the wall
//! clock, kept bounded in memory per room and for a while after the room's
//! orb is gone, and written to the log as structured events (target
//! `orb_timeline`). [`why::explain`] turns it into one line.

pub mod why;

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::lifecycle::Note;

/// Entries kept per room (the oldest go first).
pub const MAX_ENTRIES: usize = 256;
/// Rooms whose timelines are kept (the least recently noted go first).
pub const MAX_ROOMS: usize = 1024;
/// How long a timeline is kept after its last entry, ms.
pub const RETENTION_MS: u64 = 60 * 60 * 1000;

/// One entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

    /// Every room's timeline, rooms sorted (an upgrade's handover).
    pub fn export(&self) -> Vec<(String, Vec<Entry>)> {
        let mut all: Vec<_> = self
            .rooms
            .iter()
            .map(|(room, entries)| (room.clone(), entries.iter().cloned().collect()))
            .collect();
        all.sort_by(|a: &(String, Vec<Entry>), b| a.0.cmp(&b.0));
        all
    }

    /// Takes over the timelines a previous program image kept (before any note
    /// of this one), under the same bounds; nothing is logged again.
    pub fn import(&mut self, kept: Vec<(String, Vec<Entry>)>, now_ms: u64) {
        for (room, entries) in kept {
            let start = entries.len().saturating_sub(MAX_ENTRIES);
            self.rooms.insert(room, entries.into_iter().skip(start).collect());
        }
        self.forget_old(now_ms);
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

    /// Rule: timelines cross an upgrade as JSON, every kind of note readable
    /// back, under the same bounds.
    #[test]
    fn timelines_cross_an_upgrade() {
        use crate::orbs::lifecycle::StopReason;
        use crate::orbs::lifecycle::stall_rule::Stall;

        let mut t = Timelines::default();
        let notes = [
            Note::Started {
                generation: 1,
                pid: Some(7),
            },
            Note::StopAsked {
                reason: StopReason::ManualTermination,
                origin: Some("DELETE /api/orbs/{room}".into()),
                silent_ms: None,
            },
            Note::Signalled { sent: "SIGTERM".into() },
            Note::Stalled {
                stall: Stall::Media {
                    peer: "coach".into(),
                    silent_ms: 10_000,
                    any_packet: false,
                },
            },
        ];
        for (i, note) in notes.iter().enumerate() {
            t.push("r", 100 + i as u64, note.clone());
        }
        let json = serde_json::to_string(&t.export()).expect("json");
        let back: Vec<(String, Vec<Entry>)> = serde_json::from_str(&json).expect("parse");
        let mut next = Timelines::default();
        next.import(back, 200);
        assert_eq!(next.get("r"), t.get("r"));
        let mut old = Timelines::default();
        old.import(
            vec![(
                "gone".into(),
                vec![Entry {
                    at_ms: 1,
                    note: Note::AiLeft,
                }],
            )],
            RETENTION_MS + 10,
        );
        assert!(old.is_empty(), "past the retention: forgotten");
    }
}
