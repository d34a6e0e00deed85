//! The descriptors an upgrade keeps open across `execve`: writing the
//! handover into a memory file, clearing close-on-exec on what is handed over,
//! and, in the new image, adopting them again.
//!
//! This module holds the upgrade's only `unsafe`: turning descriptor numbers
//! named by the handover into owned descriptors, once, at start-up.
#![allow(unsafe_code)]

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::stat::{SFlag, fstat};

use super::handover::{HANDOVER_FD_ENV, Handover, HandoverError, ListenerRole};
use crate::orbs::handover::{OrbsDocument, OrbsTakeover};
use crate::orbs::process_control::HandedOver;

/// Why the new image could not take over what the previous one handed over.
#[derive(Debug, thiserror::Error)]
pub enum TakeOverError {
    /// The variable is not a descriptor number.
    #[error("{HANDOVER_FD_ENV}={0:?} is not a descriptor number")]
    NotANumber(String),
    /// A named descriptor is not open, or not of the expected kind.
    #[error("descriptor {fd} ({what}): {problem}")]
    Descriptor {
        /// Its number.
        fd: RawFd,
        /// What it should be.
        what: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// The document itself.
    #[error(transparent)]
    Handover(#[from] HandoverError),
    /// Reading it.
    #[error("cannot read the handover: {0}")]
    Io(#[from] std::io::Error),
    /// An orb's entry.
    #[error("{0}")]
    Orb(String),
}

/// What the new image took over: its listening sockets, and what it serves on.
#[derive(Debug)]
pub struct TakenOver {
    /// The public listener (`CPU_HOST`).
    pub public: std::net::TcpListener,
    /// The admin listener (`ADMIN_HOST`), when there was one.
    pub admin: Option<std::net::TcpListener>,
    /// The rest, for the server.
    pub carried: Carried,
}

/// What the server carries on with: the document and what it named besides the listeners.
#[derive(Debug)]
pub struct Carried {
    /// The document.
    pub handover: Handover,
    /// The room sockets, each with its entry (non-blocking).
    pub sockets: Vec<(super::sockets::SocketEntry, std::net::TcpStream)>,
    /// The warm orbs' seats, each with its entry (non-blocking; format 3).
    pub seats: Vec<(super::sockets::SeatEntry, std::net::TcpStream)>,
    /// The orbs, each process with its descriptors (format 3).
    pub orbs: Option<OrbsTakeover>,
}

/// Set once the handover was taken: its descriptors have an owner.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// Writes `document` into a new memory file (close-on-exec until
/// [`inheritable`] clears it), positioned at its start.
pub fn memory_file(document: &[u8]) -> std::io::Result<File> {
    let fd = memfd_create("cpu-server-handover", MFdFlags::MFD_CLOEXEC)?;
    let mut file = File::from(fd);
    file.write_all(document)?;
    file.seek(SeekFrom::Start(0))?;
    Ok(file)
}

/// Lets `fd` survive `execve` (clears `FD_CLOEXEC`).
pub fn inheritable(fd: &impl AsFd) -> std::io::Result<()> {
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty()))?;
    Ok(())
}

/// In a new image: takes over the handover named by [`HANDOVER_FD_ENV`], if
/// set. Only the first call looks; later ones return `None`.
pub fn take_over_from_env() -> Option<Result<TakenOver, TakeOverError>> {
    let raw = std::env::var(HANDOVER_FD_ENV).ok()?;
    if TAKEN.swap(true, Ordering::SeqCst) {
        return None;
    }
    Some(take_over(&raw))
}

fn take_over(raw: &str) -> Result<TakenOver, TakeOverError> {
    let fd: RawFd = raw
        .trim()
        .parse()
        .ok()
        .filter(|fd| *fd >= 0)
        .ok_or_else(|| TakeOverError::NotANumber(raw.to_owned()))?;
    let mut file = File::from(adopt(fd, "the handover memory file", SFlag::S_IFREG)?);
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    drop(file);
    let handover = Handover::parse(&bytes)?;
    let listener = |role: ListenerRole| -> Result<Option<std::net::TcpListener>, TakeOverError> {
        let Some(entry) = handover.listener(role) else {
            return Ok(None);
        };
        let what = match role {
            ListenerRole::Public => "the CPU_HOST listener",
            ListenerRole::Admin => "the ADMIN_HOST listener",
        };
        let listener = std::net::TcpListener::from(adopt(entry.fd, what, SFlag::S_IFSOCK)?);
        let problem = |problem: String| TakeOverError::Descriptor {
            fd: entry.fd,
            what,
            problem,
        };
        let bound = listener.local_addr().map_err(|e| problem(e.to_string()))?;
        if bound != entry.addr {
            return Err(problem(format!("bound to {bound}, the handover says {}", entry.addr)));
        }
        listener.set_nonblocking(true).map_err(|e| problem(e.to_string()))?;
        Ok(Some(listener))
    };
    let public = listener(ListenerRole::Public)?.ok_or_else(|| TakeOverError::Descriptor {
        fd: -1,
        what: "the CPU_HOST listener",
        problem: "missing from the handover".to_owned(),
    })?;
    let admin = listener(ListenerRole::Admin)?;
    let mut sockets = Vec::with_capacity(handover.sockets.len());
    for entry in &handover.sockets {
        sockets.push((entry.clone(), adopt_stream(entry.fd, "a room socket")?));
    }
    let mut seats = Vec::with_capacity(handover.seats.len());
    for entry in &handover.seats {
        seats.push((entry.clone(), adopt_stream(entry.fd, "a warm orb's seat")?));
    }
    let orbs = handover.orbs.clone().map(take_over_orbs).transpose()?;
    Ok(TakenOver {
        public,
        admin,
        carried: Carried {
            handover,
            sockets,
            seats,
            orbs,
        },
    })
}

/// Each orb process's channel and output pipes, adopted.
fn take_over_orbs(document: OrbsDocument) -> Result<OrbsTakeover, TakeOverError> {
    let mut processes = Vec::with_capacity(document.processes.len());
    for entry in &document.processes {
        let (unread, unsent) = entry.buffered().map_err(TakeOverError::Orb)?;
        let ipc = entry
            .ipc_fd
            .map(|fd| adopt(fd, "an orb's IPC channel", SFlag::S_IFSOCK))
            .transpose()?;
        let output = match entry.output_fds {
            Some((out, err)) => Some((
                adopt(out, "an orb's stdout pipe", SFlag::S_IFIFO)?,
                adopt(err, "an orb's stderr pipe", SFlag::S_IFIFO)?,
            )),
            None => None,
        };
        let handed = HandedOver {
            pid: entry.pid,
            job: entry.job.clone(),
            ipc,
            unread,
            unsent,
            output,
        };
        processes.push((entry.clone(), handed));
    }
    Ok(OrbsTakeover { document, processes })
}

/// Owns descriptor `fd`, a connected TCP socket, in non-blocking mode.
fn adopt_stream(fd: RawFd, what: &'static str) -> Result<std::net::TcpStream, TakeOverError> {
    let stream = std::net::TcpStream::from(adopt(fd, what, SFlag::S_IFSOCK)?);
    stream.set_nonblocking(true).map_err(|e| TakeOverError::Descriptor {
        fd,
        what,
        problem: e.to_string(),
    })?;
    Ok(stream)
}

/// Owns descriptor `fd`, which must be open and of `kind`; marks it close-on-exec.
fn adopt(fd: RawFd, what: &'static str, kind: SFlag) -> Result<OwnedFd, TakeOverError> {
    let problem = |problem: String| TakeOverError::Descriptor { fd, what, problem };
    // SAFETY: `fstat` through a borrowed raw number only reads the descriptor's metadata.
    let stat = fstat(unsafe { BorrowedFd::borrow_raw(fd) }).map_err(|e| problem(format!("not open ({e})")))?;
    if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != kind {
        return Err(problem("not the kind of file the handover says".to_owned()));
    }
    // SAFETY: the descriptor is open (fstat succeeded) and of the expected kind;
    // the previous image of this process left it open for exactly this, and
    // nothing else here owns it: the handover is taken once (`TAKEN`), at
    // start-up, before anything opens a descriptor it could be confused with.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    fcntl(&owned, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(|e| problem(e.to_string()))?;
    Ok(owned)
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    #[test]
    fn a_memory_file_reads_back_and_can_be_made_inheritable() {
        let mut file = memory_file(b"{\"format\":1}").expect("memfd");
        let flags = fcntl(&file, FcntlArg::F_GETFD).expect("flags");
        assert_ne!(flags & FdFlag::FD_CLOEXEC.bits(), 0, "close-on-exec until handed over");
        inheritable(&file).expect("clear");
        let flags = fcntl(&file, FcntlArg::F_GETFD).expect("flags");
        assert_eq!(flags & FdFlag::FD_CLOEXEC.bits(), 0);
        let mut text = String::new();
        file.read_to_string(&mut text).expect("read");
        assert_eq!(text, "{\"format\":1}");
    }

    #[test]
    fn bad_numbers_closed_descriptors_and_wrong_kinds_are_refused() {
        assert!(matches!(take_over("x"), Err(TakeOverError::NotANumber(_))));
        assert!(matches!(take_over("-1"), Err(TakeOverError::NotANumber(_))));
        assert!(matches!(take_over("987654"), Err(TakeOverError::Descriptor { .. })));
        // A socket where the handover's memory file should be.
        let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let fd = socket.as_raw_fd().to_string();
        let err = take_over(&fd).expect_err("a socket is not the memory file");
        assert!(err.to_string().contains("not the kind of file"), "{err}");
        drop(socket); // refused before it was owned: still ours to close
    }

    #[test]
    fn a_handover_and_its_listener_are_taken_over_by_number() {
        use std::os::fd::IntoRawFd;

        use super::super::handover::{Listener, UpgradeRecord};

        let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = socket.local_addr().expect("addr");
        let handover = |fd: RawFd, addr: std::net::SocketAddr| {
            let listener = Listener {
                role: ListenerRole::Public,
                fd,
                addr,
            };
            Handover::bare(UpgradeRecord::default(), vec![listener])
        };
        // Given up as a number, as `execve` would leave it.
        let fd = socket.into_raw_fd();
        let memfd = memory_file(&handover(fd, addr).to_json()).expect("memfd").into_raw_fd();
        let taken = take_over(&memfd.to_string()).expect("taken over");
        assert_eq!(taken.public.local_addr().expect("addr"), addr);
        assert!(taken.admin.is_none());
        let client = std::net::TcpStream::connect(addr).expect("still listening");
        drop(client);

        // A listener bound elsewhere than the document says is refused.
        let other = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let wrong: std::net::SocketAddr = "127.0.0.1:1".parse().expect("addr");
        let memfd = memory_file(&handover(other.into_raw_fd(), wrong).to_json())
            .expect("memfd")
            .into_raw_fd();
        let err = take_over(&memfd.to_string()).expect_err("address differs");
        assert!(err.to_string().contains("the handover says 127.0.0.1:1"), "{err}");
    }
}
