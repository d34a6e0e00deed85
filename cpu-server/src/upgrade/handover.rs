//! The handover: what one program image of the server gives the next one when
//! it upgrades in place, as a versioned JSON document.
//!
//! The running image writes it into a memory file it leaves open across
//! `execve`; the new image finds the file's descriptor in
//! [`HANDOVER_FD_ENV`], reads it first thing and adopts the descriptors it
//! names. Before committing, the running image also pipes the same document
//! to the new binary's `check --handover -`, which must read it: a binary
//! that cannot is never executed in place.
//!
//! Compatibility rule: a binary reads its own [`FORMAT`] and the one before it
//! ([`READABLE`]); fields are only ever added, with defaults, inside a format.

use serde::{Deserialize, Serialize};

use super::sockets::SocketEntry;

/// The environment variable naming the handover's descriptor in the new image.
pub const HANDOVER_FD_ENV: &str = "CPU_SERVER_HANDOVER_FD";

/// The format this binary writes: 2 added the room sockets ([`Handover::sockets`]),
/// 3 the orbs ([`Handover::orbs`]) and the rooms' AI sockets ([`SocketEntry::ai`]).
/// For a binary that reads only the previous format (a rollback to the previous
/// release) it writes that one ([`PREVIOUS`]): the room sockets are kept, the
/// orbs are stopped first. An older binary fails the preflight (nothing changes).
pub const FORMAT: u32 = 3;

/// The previous release's format, which this binary can also write.
pub const PREVIOUS: u32 = FORMAT - 1;

/// The formats this binary reads: its own and the previous release's.
pub const READABLE: std::ops::RangeInclusive<u32> = 1..=FORMAT;

/// Test knob: `N` makes this binary read formats only up to N, as an older
/// release does (for the tests of the fallback to [`PREVIOUS`]; not a setting).
pub const READS_UP_TO_KNOB: &str = "MUC_TEST_HANDOVER_READS_UP_TO";

/// The formats this binary reads now: [`READABLE`], narrowed by [`READS_UP_TO_KNOB`].
pub fn readable() -> std::ops::RangeInclusive<u32> {
    let max = std::env::var(READS_UP_TO_KNOB)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|max| READABLE.contains(max))
        .unwrap_or(FORMAT);
    *READABLE.start()..=max
}

/// Largest handover the preflight's check reads from its stdin (a preview: no
/// room sockets). The new image reads its memory file whole: it holds what the
/// old image held in memory (room sockets' unsent bytes included), and a
/// memory file ends.
pub const MAX_BYTES: usize = 16 * 1024 * 1024;

/// One handover document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Handover {
    /// Its format ([`FORMAT`] when written by this binary).
    pub format: u32,
    /// The upgrade being carried out.
    pub upgrade: UpgradeRecord,
    /// Listening sockets, kept open across the exec (no connection refused).
    pub listeners: Vec<Listener>,
    /// Relay counters so far (the new image counts on from them).
    pub counters: Counters,
    /// Upgrades completed before this one, since the service started.
    #[serde(default)]
    pub upgrades_before: u64,
    /// The generated admin token (`STATE_DIR/admin-token`), kept so that the
    /// CLI's token stays valid; absent when `ADMIN_TOKEN` is set, and in the
    /// preflight's copy (the check needs no secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<String>,
    /// When the process started (`cpu_server_start_time_seconds`), Unix seconds;
    /// an upgrade keeps it: the service did not restart.
    #[serde(default)]
    pub started_at_s: f64,
    /// The rooms' last session summaries (format 2): the orbs the upgrade
    /// stopped sent theirs as they stopped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub summaries: Vec<crate::orbs::summaries::StoredSummary>,
    /// Room sockets handed over, joined (format 2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sockets: Vec<SocketEntry>,
    /// Warm orbs' seats, waiting for a room (format 3).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seats: Vec<super::sockets::SeatEntry>,
    /// The orbs, handed over alive (format 3; absent: they were stopped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orbs: Option<crate::orbs::handover::OrbsDocument>,
}

/// Which listener a handed-over socket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListenerRole {
    /// `CPU_HOST`: rooms, pages, health (and the admin API without `ADMIN_HOST`).
    Public,
    /// `ADMIN_HOST`: the admin API and `/metrics` only.
    Admin,
}

/// A listening TCP socket handed over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    /// What it serves.
    pub role: ListenerRole,
    /// Its descriptor number in the new image (inherited as is).
    pub fd: i32,
    /// The address it is bound to (checked against the descriptor on adoption
    /// and against the new image's settings by the preflight).
    pub addr: std::net::SocketAddr,
}

/// The relay's monotonic counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Connections upgraded to room sockets.
    pub connections: u64,
    /// Messages delivered (one per recipient).
    pub relayed: u64,
    /// `error` replies sent.
    pub errors: u64,
    /// Sockets closed as slow consumers.
    pub slow_consumers: u64,
}

/// One upgrade: who asked, from which build to which, when it committed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeRecord {
    /// Its id (given to whoever asked, to recognise the outcome).
    pub id: String,
    /// The build id of the image that handed over.
    pub from_build: String,
    /// The build id the preflight read from the new binary.
    pub to_build: String,
    /// What asked for it (`api`, `SIGUSR2`).
    pub origin: String,
    /// When the running image committed (stopped accepting), in ms since the Unix epoch.
    pub committed_at_ms: u64,
}

/// Why a handover document is not readable by this binary.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HandoverError {
    /// Not JSON, or not a handover.
    #[error("the handover is not a handover document: {0}")]
    Malformed(String),
    /// A format this binary does not read.
    #[error("handover format {found} is not readable by this binary (it reads formats {min} to {max})")]
    Format {
        /// The document's format.
        found: u32,
        /// Oldest readable.
        min: u32,
        /// Newest readable.
        max: u32,
    },
}

/// Only the format, read before the rest (so that a newer document with fields
/// this binary does not know still gets the format error, not a parse error).
#[derive(Deserialize)]
struct FormatOnly {
    format: u32,
}

impl Handover {
    /// A document of this binary's format for `upgrade` and `listeners`,
    /// carrying nothing else yet.
    pub fn bare(upgrade: UpgradeRecord, listeners: Vec<Listener>) -> Self {
        Self {
            format: FORMAT,
            upgrade,
            listeners,
            counters: Counters::default(),
            upgrades_before: 0,
            admin_token: None,
            started_at_s: 0.0,
            summaries: Vec::new(),
            sockets: Vec::new(),
            seats: Vec::new(),
            orbs: None,
        }
    }

    /// The document as JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The same document written for a reader of `format` (this binary's or
    /// [`PREVIOUS`]): for the previous one, without the orbs (they are stopped).
    pub fn written_as(mut self, format: u32) -> Self {
        if format < FORMAT {
            self.orbs = None;
            self.seats.clear();
            for socket in &mut self.sockets {
                socket.ai = false;
            }
        }
        self.format = format;
        self
    }

    /// Reads a document, refusing formats outside [`readable`].
    pub fn parse(bytes: &[u8]) -> Result<Self, HandoverError> {
        let FormatOnly { format } =
            serde_json::from_slice(bytes).map_err(|e| HandoverError::Malformed(e.to_string()))?;
        let readable = readable();
        if !readable.contains(&format) {
            return Err(HandoverError::Format {
                found: format,
                min: *readable.start(),
                max: *readable.end(),
            });
        }
        serde_json::from_slice(bytes).map_err(|e| HandoverError::Malformed(e.to_string()))
    }

    /// The listener of `role`, if handed over.
    pub fn listener(&self, role: ListenerRole) -> Option<&Listener> {
        self.listeners.iter().find(|l| l.role == role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Handover {
        Handover {
            format: FORMAT,
            upgrade: UpgradeRecord {
                id: "u1".to_owned(),
                from_build: "aa".to_owned(),
                to_build: "bb".to_owned(),
                origin: "api".to_owned(),
                committed_at_ms: 1_700_000_000_000,
            },
            listeners: vec![Listener {
                role: ListenerRole::Public,
                fd: 7,
                addr: "127.0.0.1:3000".parse().expect("addr"),
            }],
            counters: Counters {
                connections: 3,
                relayed: 40,
                errors: 1,
                slow_consumers: 0,
            },
            upgrades_before: 2,
            admin_token: Some("t0k3n".to_owned()),
            started_at_s: 1_700_000_000.5,
            summaries: Vec::new(),
            sockets: Vec::new(),
            seats: Vec::new(),
            orbs: Some(crate::orbs::handover::OrbsDocument::default()),
        }
    }

    #[test]
    fn a_document_reads_back_as_written() {
        let handover = sample();
        assert_eq!(Handover::parse(&handover.to_json()), Ok(handover.clone()));
        assert_eq!(handover.listener(ListenerRole::Public).map(|l| l.fd), Some(7));
        assert_eq!(handover.listener(ListenerRole::Admin), None);
    }

    #[test]
    fn other_formats_are_refused_by_number_before_their_fields_are_read() {
        let mut newer: serde_json::Value = serde_json::from_slice(&sample().to_json()).expect("json");
        newer["format"] = (FORMAT + 1).into();
        newer["listeners"] = "a shape this binary does not know".into();
        let err = Handover::parse(newer.to_string().as_bytes()).expect_err("newer format");
        assert_eq!(
            err,
            HandoverError::Format {
                found: FORMAT + 1,
                min: *READABLE.start(),
                max: FORMAT
            }
        );
        assert!(err.to_string().contains("not readable by this binary"), "{err}");
        newer["format"] = 0.into();
        assert!(matches!(
            Handover::parse(newer.to_string().as_bytes()),
            Err(HandoverError::Format { found: 0, .. })
        ));
    }

    /// Rule: written for the previous format, a document carries no orbs and no
    /// AI sockets (a reader of that format would leave them unowned).
    #[test]
    fn the_previous_format_carries_no_orbs() {
        let older = sample().written_as(PREVIOUS);
        assert_eq!((older.format, &older.orbs), (PREVIOUS, &None));
        let json: serde_json::Value = serde_json::from_slice(&older.to_json()).expect("json");
        assert!(json.get("orbs").is_none(), "{json}");
        assert_eq!(sample().written_as(FORMAT), sample(), "this format: as it is");
    }

    #[test]
    fn garbage_and_missing_fields_are_malformed() {
        assert!(matches!(Handover::parse(b"not json"), Err(HandoverError::Malformed(_))));
        assert!(matches!(
            Handover::parse(br#"{"format":1}"#),
            Err(HandoverError::Malformed(_))
        ));
        let mut old: serde_json::Value = serde_json::from_slice(&sample().to_json()).expect("json");
        old.as_object_mut().expect("object").remove("upgrades_before");
        assert_eq!(
            Handover::parse(old.to_string().as_bytes()).map(|h| h.upgrades_before),
            Ok(0),
            "fields added within a format have defaults"
        );
    }
}
