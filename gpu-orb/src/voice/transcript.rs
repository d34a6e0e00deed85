//! The room's transcript as the AI heard it: who said what, bounded in entries and
//! characters (the oldest go first). It feeds the brain's context and, at the end of
//! the session, the `session_summary`. Transcripts are personal data: nothing here logs.

use std::collections::VecDeque;

use serde::Serialize;

/// Entries kept at most.
pub const MAX_ENTRIES: usize = 400;
/// Characters kept at most, over all entries.
pub const MAX_CHARS: usize = 64 * 1024;
/// Entries given to the brain as recent context.
pub const CONTEXT_ENTRIES: usize = 12;

/// One utterance, or one answer of the AI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// The speaker's userId (the AI's own for its answers).
    pub speaker: String,
    /// Their role (`coach`, `client`, `ai`, or empty when unknown).
    pub role: String,
    /// What was said.
    pub text: String,
    /// When, epoch ms.
    pub at_ms: u64,
}

/// The bounded transcript.
#[derive(Debug, Default)]
pub struct Transcript {
    entries: VecDeque<Entry>,
    chars: usize,
    dropped: usize,
    turns: usize,
}

impl Transcript {
    /// Adds an entry, dropping the oldest beyond the bounds.
    pub fn push(&mut self, entry: Entry) {
        self.chars += entry.text.len();
        self.turns += 1;
        self.entries.push_back(entry);
        while self.entries.len() > MAX_ENTRIES || (self.chars > MAX_CHARS && self.entries.len() > 1) {
            if let Some(old) = self.entries.pop_front() {
                self.chars -= old.text.len();
                self.dropped += 1;
            }
        }
    }

    /// Every entry ever pushed (also those dropped since).
    pub fn turns(&self) -> usize {
        self.turns
    }

    /// Whether older entries were dropped.
    pub fn truncated(&self) -> bool {
        self.dropped > 0
    }

    /// The entries kept, oldest first.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }

    /// The brain's prompt for `entry`: the recent transcript, then who asks what.
    pub fn prompt_for(&self, entry: &Entry) -> String {
        let start = self.entries.len().saturating_sub(CONTEXT_ENTRIES + 1);
        let recent: Vec<String> = self
            .entries
            .iter()
            .skip(start)
            .filter(|e| *e != entry)
            .map(line)
            .collect();
        let who = if entry.role.is_empty() {
            entry.speaker.clone()
        } else {
            format!("{} ({})", entry.speaker, entry.role)
        };
        if recent.is_empty() {
            format!("{who} says: {}", entry.text)
        } else {
            format!(
                "Recent conversation:\n{}\n\n{who} says: {}",
                recent.join("\n"),
                entry.text
            )
        }
    }

    /// The transcript part of a `session_summary`.
    pub fn to_json(&self, summary: Option<String>) -> serde_json::Value {
        serde_json::json!({
            "transcript": self.entries.iter().collect::<Vec<_>>(),
            "summary": summary,
            "turns": self.turns,
            "truncated": self.truncated(),
        })
    }
}

fn line(e: &Entry) -> String {
    if e.role.is_empty() {
        format!("{}: {}", e.speaker, e.text)
    } else {
        format!("{} ({}): {}", e.speaker, e.role, e.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(speaker: &str, text: &str) -> Entry {
        Entry {
            speaker: speaker.to_owned(),
            role: "coach".to_owned(),
            text: text.to_owned(),
            at_ms: 1,
        }
    }

    #[test]
    fn the_prompt_holds_the_recent_lines_then_the_question() {
        let mut t = Transcript::default();
        t.push(entry("coach-1", "we talked about goals"));
        let ask = entry("coach-1", "assistant, summarise");
        t.push(ask.clone());
        let prompt = t.prompt_for(&ask);
        assert!(prompt.starts_with("Recent conversation:\ncoach-1 (coach): we talked about goals"));
        assert!(prompt.ends_with("coach-1 (coach) says: assistant, summarise"));
    }

    #[test]
    fn bounds_drop_the_oldest_and_say_so() {
        let mut t = Transcript::default();
        for i in 0..MAX_ENTRIES + 5 {
            t.push(entry("u", &format!("line {i}")));
        }
        assert_eq!(t.entries().count(), MAX_ENTRIES);
        assert_eq!(t.entries().next().map(|e| e.text.as_str()), Some("line 5"));
        let json = t.to_json(None);
        assert_eq!(json["truncated"], true);
        assert_eq!(json["turns"], MAX_ENTRIES + 5);
        let mut big = Transcript::default();
        big.push(entry("u", &"x".repeat(MAX_CHARS)));
        big.push(entry("u", "tail"));
        assert_eq!(big.entries().count(), 1, "the characters bound dropped the big one");
    }
}
