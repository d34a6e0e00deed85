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
        self.to_json_within(summary, usize::MAX)
    }

    /// Like [`Transcript::to_json`], at most `max_bytes` serialised: the oldest entries
    /// go first (`truncated` is then true), and a summary that alone is too long is cut.
    /// The manager refuses a bigger one, so an unbounded one would be lost whole.
    pub fn to_json_within(&self, summary: Option<String>, max_bytes: usize) -> serde_json::Value {
        let size = |entries: &[&Entry]| serde_json::to_vec(entries).map_or(0, |v| v.len());
        let summary = summary.map(|text| cut_to(&text, max_bytes / 4));
        let envelope = serde_json::to_vec(&serde_json::json!({
            "transcript": [], "summary": summary, "turns": self.turns, "truncated": true,
        }))
        .map_or(0, |v| v.len());
        let room = max_bytes.saturating_sub(envelope);
        let all: Vec<&Entry> = self.entries.iter().collect();
        let mut skip = 0;
        // Each entry costs its serialised size plus a comma: drop the oldest until it fits.
        let mut total = size(&all);
        while total > room && skip < all.len() {
            total -= serde_json::to_vec(all[skip]).map_or(0, |v| v.len()) + 1;
            skip += 1;
        }
        serde_json::json!({
            "transcript": &all[skip..],
            "summary": summary,
            "turns": self.turns,
            "truncated": self.truncated() || skip > 0,
        })
    }
}

/// `text` cut at a character boundary so that its JSON string is at most `max` bytes.
fn cut_to(text: &str, max: usize) -> String {
    let mut out = String::new();
    let mut bytes = 2;
    for c in text.chars() {
        let mut buf = [0u8; 4];
        let cost = serde_json::to_string(c.encode_utf8(&mut buf)).map_or(6, |s| s.len() - 2);
        if bytes + cost > max {
            break;
        }
        bytes += cost;
        out.push(c);
    }
    out
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

    #[test]
    fn a_summary_is_trimmed_to_fit_oldest_entries_first() {
        let mut t = Transcript::default();
        // Control characters serialise to six bytes each: 60 KiB of text is ~360 KiB of JSON.
        for i in 0..60 {
            t.push(entry(&format!("u{i}"), &"\u{1}".repeat(1024)));
        }
        assert!(!t.truncated());
        let max = 256 * 1024;
        let long = "s".repeat(max);
        let json = t.to_json_within(Some(long), max);
        let bytes = serde_json::to_vec(&json).expect("json").len();
        assert!(bytes <= max, "{bytes} > {max}");
        assert_eq!(json["truncated"], true);
        assert_eq!(json["turns"], 60);
        let kept = json["transcript"].as_array().expect("entries");
        assert!(!kept.is_empty() && kept.len() < 60, "{}", kept.len());
        assert_eq!(kept.last().expect("newest")["speaker"], "u59", "the newest stay");
        assert_eq!(json["summary"].as_str().expect("summary").len(), max / 4 - 2);
        // What fits is left whole.
        let small = t.to_json_within(Some("ok".into()), usize::MAX);
        assert_eq!(small["transcript"].as_array().map(Vec::len), Some(60));
        assert_eq!(small["truncated"], false);
    }
}
