//! Adopting the orb's end of the channel from `NODE_CHANNEL_FD`.
//!
//! This is the only place in the crate that needs `unsafe`: turning an
//! inherited descriptor number into an owned socket.
#![allow(unsafe_code)]

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::stat::{SFlag, fstat};

/// The environment variable naming the inherited channel descriptor (Node's name).
pub const NODE_CHANNEL_FD: &str = "NODE_CHANNEL_FD";

/// Why `NODE_CHANNEL_FD` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ChannelFdError {
    /// Not a descriptor number.
    #[error("NODE_CHANNEL_FD={0:?} is not a descriptor number")]
    NotANumber(String),
    /// The descriptor is not open.
    #[error("NODE_CHANNEL_FD={0}: descriptor is not open ({1})")]
    NotOpen(RawFd, nix::Error),
    /// The descriptor is open but not a socket.
    #[error("NODE_CHANNEL_FD={0}: descriptor is not a socket")]
    NotASocket(RawFd),
    /// Could not configure it.
    #[error("NODE_CHANNEL_FD={0}: {1}")]
    Setup(RawFd, std::io::Error),
}

/// Takes ownership of the channel named by `NODE_CHANNEL_FD`, if set.
///
/// Returns `None` when the variable is absent (an orb run by hand). The
/// descriptor is marked close-on-exec so that the orb's own children never
/// inherit the channel, and put in non-blocking mode for async use.
/// Call it once, early in `main`: it takes ownership of the descriptor.
pub fn channel_from_env() -> Option<Result<UnixStream, ChannelFdError>> {
    let raw = std::env::var(NODE_CHANNEL_FD).ok()?;
    Some(adopt(&raw))
}

fn adopt(raw: &str) -> Result<UnixStream, ChannelFdError> {
    let fd: RawFd = raw
        .trim()
        .parse()
        .map_err(|_| ChannelFdError::NotANumber(raw.to_owned()))?;
    if fd < 0 {
        return Err(ChannelFdError::NotANumber(raw.to_owned()));
    }
    // SAFETY: `fstat` with a raw number only reads descriptor metadata.
    let stat = fstat(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }).map_err(|e| ChannelFdError::NotOpen(fd, e))?;
    if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFSOCK {
        return Err(ChannelFdError::NotASocket(fd));
    }
    // SAFETY: the descriptor is open (fstat succeeded), is a socket, was
    // inherited for exactly this purpose, and nothing else in this process
    // owns it: `channel_from_env` is called once at start-up.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    fcntl(&owned, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
        .map_err(|e| ChannelFdError::Setup(fd, std::io::Error::from(e)))?;
    let stream = UnixStream::from(owned);
    stream.set_nonblocking(true).map_err(|e| ChannelFdError::Setup(fd, e))?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_numbers_and_closed_descriptors() {
        assert!(matches!(adopt("abc"), Err(ChannelFdError::NotANumber(_))));
        assert!(matches!(adopt("-3"), Err(ChannelFdError::NotANumber(_))));
        assert!(matches!(adopt("987654"), Err(ChannelFdError::NotOpen(..))));
    }
}
