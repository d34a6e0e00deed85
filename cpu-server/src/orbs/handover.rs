//! The OrbManager's part of an upgrade's handover (format 3): every orb
//! carried over to the new program image alive, as the same process, with its
//! record, its timers, its token, its IPC channel (and what its codec had
//! buffered) and its output pipes.
//!
//! The running image's manager writes [`OrbsDocument`] when every orb is in a
//! settled phase ([`crate::orbs::lifecycle::Lifecycle::handover_blocker`]);
//! the descriptors it names travel with it ([`OrbsHandover::fds`]). The new
//! image adopts each descriptor (`upgrade::inherit`), and its manager imports
//! the document before it takes any event ([`OrbsTakeover`]). A process the
//! lifecycle names without an entry here (it exited while being handed over)
//! counts as exited, and the restart rule decides.

use std::os::fd::OwnedFd;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::lifecycle::snapshot::LifeSnapshot;
use super::lifecycle::{Timer, TimerKind};
use super::process_control::HandedOver;

/// The orbs, as the document carries them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct OrbsDocument {
    /// When it was written, on `CLOCK_MONOTONIC` (ns), which goes on across the
    /// exec: every age and time left in it is from that moment, so the new image
    /// adds the time the upgrade took.
    pub written_at_ns: u64,
    /// The lifecycle: every room's entry and the queue.
    pub lifecycle: LifeSnapshot,
    /// Every armed timer.
    pub timers: Vec<TimerEntry>,
    /// Every process handed over.
    pub processes: Vec<ProcessEntry>,
    /// Unexpired one-time operator tokens (`gpu-orb --room` by hand).
    pub operator_tokens: Vec<OperatorToken>,
    /// Every room's orb timeline (`orbs why`), oldest entry first.
    #[serde(default)]
    pub timelines: Vec<(String, Vec<super::timeline::Entry>)>,
}

/// An armed timer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerEntry {
    /// The room.
    pub room: String,
    /// Which.
    pub kind: TimerKind,
    /// Time left, ms.
    pub in_ms: u64,
}

impl TimerEntry {
    /// The timer it arms.
    pub fn timer(&self) -> Timer {
        Timer {
            room: self.room.clone(),
            kind: self.kind,
        }
    }
}

/// A one-time operator token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorToken {
    /// The room.
    pub room: String,
    /// The token.
    pub token: String,
    /// Time left before it expires, ms.
    pub expires_in_ms: u64,
}

/// One orb process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessEntry {
    /// Its room.
    pub room: String,
    /// Which process of the room.
    pub generation: u64,
    /// Its pid (= its process group), when it is a local process.
    pub pid: Option<u32>,
    /// Its Slurm job, when it is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// The token its room socket joined with.
    pub token: Option<String>,
    /// The manager's end of its IPC channel (`None`: the channel had failed).
    pub ipc_fd: Option<i32>,
    /// Bytes read from the channel and not parsed (base64).
    pub ipc_unread: String,
    /// Bytes queued for the channel and not written (base64).
    pub ipc_unsent: String,
    /// The read ends of its stdout and stderr pipes.
    pub output_fds: Option<(i32, i32)>,
}

impl ProcessEntry {
    /// The entry of `handed`, whose descriptors keep their numbers across the exec.
    pub fn new(room: &str, generation: u64, token: Option<String>, handed: &HandedOver) -> Self {
        use std::os::fd::AsRawFd;
        Self {
            room: room.to_owned(),
            generation,
            pid: handed.pid,
            job: handed.job.clone(),
            token,
            ipc_fd: handed.ipc.as_ref().map(AsRawFd::as_raw_fd),
            ipc_unread: STANDARD.encode(&handed.unread),
            ipc_unsent: STANDARD.encode(&handed.unsent),
            output_fds: handed
                .output
                .as_ref()
                .map(|(out, err)| (out.as_raw_fd(), err.as_raw_fd())),
        }
    }

    /// The buffered bytes (unread, unsent).
    pub fn buffered(&self) -> Result<(Vec<u8>, Vec<u8>), String> {
        let decode = |what: &str, text: &str| {
            STANDARD.decode(text).map_err(|e| {
                format!(
                    "orb {:?} of {}: its IPC {what} bytes are not base64: {e}",
                    self.pid, self.room
                )
            })
        };
        Ok((decode("unread", &self.ipc_unread)?, decode("unsent", &self.ipc_unsent)?))
    }
}

/// `CLOCK_MONOTONIC` now, ns (0 if unreadable).
pub fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

impl OrbsDocument {
    /// The moment it was written, on this image's clock: `now` less the time
    /// since (none when the clock is unreadable; at most a minute: a bound on a bad document).
    pub fn written_at(&self, now: tokio::time::Instant) -> tokio::time::Instant {
        let since = monotonic_ns().saturating_sub(self.written_at_ns);
        let since = std::time::Duration::from_nanos(since).min(std::time::Duration::from_secs(60));
        match self.written_at_ns {
            0 => now,
            _ => now.checked_sub(since).unwrap_or(now),
        }
    }
}

/// What the running image's manager hands over: the document and the descriptors it names.
#[derive(Debug, Default)]
pub struct OrbsHandover {
    /// The document.
    pub document: OrbsDocument,
    /// The descriptors (kept open until the exec).
    pub fds: Vec<OwnedFd>,
}

/// What the new image's manager takes over: the document and each process adopted.
#[derive(Debug, Default)]
pub struct OrbsTakeover {
    /// The document.
    pub document: OrbsDocument,
    /// Each process with its adopted descriptors, by generation.
    pub processes: Vec<(ProcessEntry, HandedOver)>,
}

impl OrbsTakeover {
    /// The process groups of the orbs taken over (the start-up sweep spares them).
    pub fn groups(&self) -> Vec<i32> {
        self.processes
            .iter()
            .filter_map(|(entry, _)| entry.pid.map(|pid| pid as i32))
            .collect()
    }

    /// The Slurm jobs taken over (the start-up sweep of leftover jobs spares them).
    pub fn jobs(&self) -> Vec<String> {
        self.processes
            .iter()
            .filter_map(|(entry, _)| entry.job.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_keeps_its_buffered_bytes() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().expect("pair");
        let handed = HandedOver {
            pid: Some(42),
            ipc: Some(OwnedFd::from(a)),
            unread: b"{\"type\":\"orb_hea".to_vec(),
            unsent: b"\n".to_vec(),
            ..HandedOver::default()
        };
        let entry = ProcessEntry::new("r1", 3, Some("t".into()), &handed);
        let json = serde_json::to_string(&entry).expect("json");
        let back: ProcessEntry = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, entry);
        assert_eq!(
            back.buffered().expect("base64"),
            (handed.unread.clone(), handed.unsent.clone())
        );
        let broken = ProcessEntry {
            ipc_unread: "***".into(),
            ..back
        };
        assert!(broken.buffered().is_err());
    }
}
