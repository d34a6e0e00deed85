//! Starting one orb process with the hygiene the old manager lacked.
//!
//! The child:
//! - leads its own process group, so a kill reaches its grandchildren;
//! - gets SIGKILL when cpu-server dies (`PR_SET_PDEATHSIG`), even by SIGKILL;
//! - has `no_new_privs` set;
//! - runs as `ORB_USER`/`ORB_GROUP` when configured (std switches groups, gid
//!   and uid in the child before our hook, so the parent-death signal set by
//!   the hook is not cleared by the credential change) with `ORB_NOFILE` and
//!   `ORB_NPROC` as its resource limits;
//! - inherits exactly stdin (`/dev/null`), stdout and stderr (pipes) and the IPC
//!   socket at fd 3, named by `NODE_CHANNEL_FD=3` (Node's convention); every
//!   other descriptor is marked close-on-exec before `exec`;
//! - sees only the environment it is given (`env_clear` first).
//!
//! This module holds the only `unsafe` of the crate: the `pre_exec` hook.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::Path;
use std::process::Stdio;

use nix::sys::prctl;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::signal::Signal;
use tokio::net::UnixStream;
use tokio::process::{Child, Command};

/// The descriptor number the orb finds its IPC channel at.
pub const CHANNEL_FD: RawFd = 3;

/// A started orb process and the manager's end of its channel.
#[derive(Debug)]
pub struct SpawnedProcess {
    /// The process (stdout and stderr piped).
    pub child: Child,
    /// Its process id, which is also its process group id.
    pub pid: u32,
    /// The manager's end of the IPC socket pair.
    pub ipc: UnixStream,
}

/// Everything needed to start one orb process.
#[derive(Debug, Clone)]
pub struct ProcessSpec<'a> {
    /// Executable.
    pub program: &'a Path,
    /// Full argument list (after the program).
    pub args: &'a [String],
    /// Working directory.
    pub cwd: &'a Path,
    /// The complete environment.
    pub env: &'a [(String, String)],
    /// User, group and resource limits of the process.
    pub isolation: &'a Isolation,
}

/// Who the orb runs as and what it may use (`ORB_USER`, `ORB_GROUP`, `ORB_NOFILE`, `ORB_NPROC`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Isolation {
    /// Switch to this uid (needs a root server).
    pub uid: Option<u32>,
    /// Switch to this gid, dropping supplementary groups (needs a root server).
    pub gid: Option<u32>,
    /// `RLIMIT_NOFILE` (soft and hard), capped at the current hard limit.
    pub nofile: Option<u64>,
    /// `RLIMIT_NPROC` (soft and hard), capped at the current hard limit.
    pub nproc: Option<u64>,
}

/// Starts the process described by `spec`.
///
/// Must be called from a thread that outlives the child (a runtime worker,
/// not a blocking-pool thread): the parent-death signal fires when the thread
/// that forked exits.
pub fn spawn_process(spec: &ProcessSpec<'_>) -> std::io::Result<SpawnedProcess> {
    let (parent_end, child_end) = StdUnixStream::pair()?;
    let child_fd = child_end.as_raw_fd();
    let server_pid = nix::unistd::getpid();
    let mut command = Command::new(spec.program);
    command
        .args(spec.args)
        .current_dir(spec.cwd)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("NODE_CHANNEL_FD", CHANNEL_FD.to_string())
        .env("PWD", spec.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(gid) = spec.isolation.gid {
        // With a uid change from root, std also clears the supplementary groups.
        command.gid(gid);
    }
    if let Some(uid) = spec.isolation.uid {
        command.uid(uid);
    }
    let limits = *spec.isolation;
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls (prctl, getppid, getrlimit, setrlimit,
    // dup2, fcntl, close_range); it allocates nothing and takes no locks.
    unsafe {
        command.pre_exec(move || child_setup(child_fd, server_pid, limits));
    }
    let child = command.spawn()?;
    drop(child_end);
    let pid = child
        .id()
        .ok_or_else(|| std::io::Error::other("orb exited before its pid was read"))?;
    parent_end.set_nonblocking(true)?;
    let ipc = UnixStream::from_std(parent_end)?;
    Ok(SpawnedProcess { child, pid, ipc })
}

/// Runs in the child between fork and exec.
fn child_setup(child_fd: RawFd, server_pid: nix::unistd::Pid, limits: Isolation) -> std::io::Result<()> {
    prctl::set_pdeathsig(Signal::SIGKILL)?;
    // The server may have died between fork and prctl: then nobody would signal us.
    if nix::unistd::getppid() != server_pid {
        return Err(std::io::Error::other("cpu-server exited during spawn"));
    }
    prctl::set_no_new_privs()?;
    for (resource, value) in [
        (Resource::RLIMIT_NOFILE, limits.nofile),
        (Resource::RLIMIT_NPROC, limits.nproc),
    ] {
        if let Some(value) = value {
            // Lowering is always allowed; raising past the hard limit is not
            // (the uid switch already dropped that privilege), so cap there.
            let (_, hard) = getrlimit(resource)?;
            let value = value.min(hard);
            setrlimit(resource, value, value)?;
        }
    }
    // SAFETY (whole block): plain system calls on descriptor numbers.
    unsafe {
        if child_fd == CHANNEL_FD {
            // Already in place: only clear close-on-exec.
            if libc::fcntl(CHANNEL_FD, libc::F_SETFD, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
        } else if libc::dup2(child_fd, CHANNEL_FD) == -1 {
            return Err(std::io::Error::last_os_error());
        }
        // Everything above the channel closes on exec, whatever its flags were.
        if libc::close_range(
            (CHANNEL_FD + 1) as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC as i32,
        ) == -1
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
