//! Upgrading the server in place: the running process replaces its program
//! image with the cpu-server binary now at its installed path (`execve`, same
//! pid, same unit, same environment), keeping its listening sockets, its
//! rooms' sockets and its orbs throughout, so that no connection is refused and
//! no room notices.
//!
//! What happens, in order (docs/architecture.md has the whole story):
//! 1. a request arrives (`POST /api/upgrade`, i.e. `cpu-server upgrade`, or
//!    SIGUSR2); one at a time;
//! 2. the [`preflight`] runs the new binary's `check --handover -`; if it
//!    fails, the request is refused with its reason and nothing changes;
//! 3. the commit: systemd is told `RELOADING=1`; every joined room socket (the
//!    AIs' too) parks at a frame boundary, still in its room ([`sockets`]); the
//!    listening sockets stay open (connections wait in their backlog);
//! 4. the registry is frozen, the OrbManager lets its orbs go
//!    (`crate::orbs::handover`), the [`handover`] is written into a memory file
//!    and the image is replaced from the main thread, where every orb was
//!    forked ([`Exec`]); the new image adopts the listeners, the room sockets
//!    and the orbs ([`inherit`]), restores the rooms and resumes the sockets
//!    ([`resume`]), serves, and tells systemd `READY=1`.
//!
//! When the request says `restart_orbs` (or the orbs turn out not to be handed
//! over), they are stopped instead, and each room gets a new one. TLS room sockets are closed with 1012 (no TLS session is handed over).
//!
//! # Layout
//! - [`handover`]: the versioned document.
//! - [`inherit`]: descriptors across `execve`.
//! - [`listeners`]: the listening sockets kept open for the new image.
//! - [`preflight`]: running the new binary's check.
//! - [`sockets`]: the room sockets handed over (parked, written into the document).
//! - [`resume`]: the new image resuming them as joined connections.
//! - [`controller`]: the task that takes requests, runs the preflight and hands the commit to the server.

pub mod controller;
pub mod handover;
pub mod inherit;
pub mod listeners;
pub mod preflight;
pub mod resume;
pub mod sockets;

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;

pub use controller::{Commit, Origin, Outcome, Status, UpgradeHandle};
use handover::{HANDOVER_FD_ENV, Handover};
pub use listeners::KeptListeners;
use preflight::Installed;

/// Everything the image replacement needs, prepared after the drain.
#[derive(Debug)]
pub struct Exec {
    /// What to run.
    pub installed: Installed,
    /// The document, in a memory file left open across `execve`.
    pub document: std::fs::File,
    /// The descriptors the document names (kept open until the exec).
    pub keep: Vec<OwnedFd>,
}

impl Exec {
    /// Clears close-on-exec on the document and every kept descriptor.
    pub fn prepare(handover: &Handover, keep: Vec<OwnedFd>, installed: Installed) -> std::io::Result<Self> {
        let document = inherit::memory_file(&handover.to_json())?;
        inherit::inheritable(&document)?;
        for fd in &keep {
            inherit::inheritable(fd)?;
        }
        Ok(Self {
            installed,
            document,
            keep,
        })
    }

    /// Replaces the program image. Call it from the thread that forked every
    /// orb (the binary's main thread, where the orb spawner runs:
    /// `PR_SET_PDEATHSIG` of the orbs is tied to the thread that forked them,
    /// and `execve` ends every other thread). Returns only if the exec failed,
    /// with why.
    pub fn run(self) -> std::io::Error {
        let Self {
            installed,
            document,
            keep,
        } = self;
        let mut command = std::process::Command::new(&installed.path);
        command
            .args(&installed.args)
            .env(HANDOVER_FD_ENV, document.as_raw_fd().to_string());
        let error = command.exec();
        drop((document, keep));
        error
    }
}
