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
//! - holds no capability at all: the hook clears the ambient set and then the
//!   permitted, effective and inheritable sets. A server that is not root but
//!   has `CAP_SETUID` (the shipped unit's ambient capabilities) keeps its
//!   permitted set across the switch to `ORB_USER`, and ambient capabilities
//!   survive `exec`: without this the orb would inherit them;
//! - inherits exactly stdin (`/dev/null`), stdout and stderr (pipes) and the IPC
//!   socket at fd 3, named by `NODE_CHANNEL_FD=3` (Node's convention); every
//!   other descriptor is marked close-on-exec before `exec`: by
//!   `close_range(CLOSE_RANGE_CLOEXEC)`, or on kernels without it (before 5.11:
//!   `EINVAL` or `ENOSYS`) one by one up to the `RLIMIT_NOFILE` soft limit read
//!   before the fork. `MUC_TEST_NO_CLOSE_RANGE=1` in the server's environment
//!   makes it behave as if the kernel lacked `close_range` (for the tests of
//!   that path; not a setting);
//! - sees only the environment it is given (`env_clear` first).
//!
//! The hook runs between `fork` and `exec` in a copy of a multi-threaded
//! process: it only makes system calls, allocates nothing (its errors are bare
//! errno values) and takes no lock; everything it needs is computed before the
//! fork.
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

/// Defined with the settings that produce it (`ORB_USER`, `ORB_GROUP`, `ORB_NOFILE`, `ORB_NPROC`).
use crate::settings::Isolation;

/// The descriptor number the orb finds its IPC channel at.
pub const CHANNEL_FD: RawFd = 3;

/// Test knob: `1` makes the child skip `close_range` as if the kernel lacked it.
pub const NO_CLOSE_RANGE_KNOB: &str = "MUC_TEST_NO_CLOSE_RANGE";

/// Highest descriptor count the fallback walks: the kernel's default
/// `fs.nr_open`, above which no descriptor can exist by default. Caps an
/// unlimited `RLIMIT_NOFILE`.
const MAX_FALLBACK_FDS: u64 = 1 << 20;

/// How the child marks inherited descriptors close-on-exec, decided before the fork.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdSweep {
    /// Go straight to the one-by-one fallback (as on a kernel before 5.11).
    pub skip_close_range: bool,
    /// The fallback marks descriptors `CHANNEL_FD + 1 .. end`.
    pub end: RawFd,
}

impl FdSweep {
    /// The sweep for this process now: the `RLIMIT_NOFILE` soft limit bounds
    /// every open descriptor (capped at 2^20), and the test knob is read once
    /// per spawn.
    pub fn current() -> Self {
        let soft = getrlimit(Resource::RLIMIT_NOFILE).map_or(MAX_FALLBACK_FDS, |(soft, _)| soft);
        Self {
            skip_close_range: std::env::var_os(NO_CLOSE_RANGE_KNOB).is_some_and(|v| v == "1"),
            end: RawFd::try_from(soft.min(MAX_FALLBACK_FDS)).unwrap_or(RawFd::MAX),
        }
    }
}

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
    let sweep = FdSweep::current();
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls (prctl, getppid, getrlimit, setrlimit,
    // capset, dup2, fcntl, close_range); it allocates nothing and takes no
    // locks: its inputs are plain values computed above, before the fork.
    unsafe {
        command.pre_exec(move || child_setup(child_fd, server_pid, limits, sweep));
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

/// Runs in the child between fork and exec. Allocation-free: every error is
/// a bare errno (`io::Error::from_raw_os_error`, nix's `Errno`), which is all
/// std passes back to the parent anyway.
fn child_setup(
    child_fd: RawFd,
    server_pid: nix::unistd::Pid,
    limits: Isolation,
    sweep: FdSweep,
) -> std::io::Result<()> {
    prctl::set_pdeathsig(Signal::SIGKILL)?;
    // The server may have died between fork and prctl: then nobody would signal us.
    if nix::unistd::getppid() != server_pid {
        return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
    }
    prctl::set_no_new_privs()?;
    drop_all_capabilities()?;
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
    }
    mark_cloexec_above_channel(sweep)
}

/// `struct __user_cap_header_struct` of `<linux/capability.h>`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct` of `<linux/capability.h>`.
#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets as two `CapData`.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Empties the ambient set, then the permitted, effective and inheritable
/// sets of this (child) process. Lowering capabilities is always allowed.
fn drop_all_capabilities() -> std::io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    let cleared = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    // EINVAL: a kernel before 4.3 has no ambient set, so nothing to clear.
    if cleared == -1 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
        return Err(std::io::Error::last_os_error());
    }
    let header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let none = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capset reads one header and two data structs, both on our stack
    // and laid out as the kernel's (repr(C)).
    let set = unsafe { libc::syscall(libc::SYS_capset, &raw const header, none.as_ptr()) };
    if set == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Marks every descriptor above [`CHANNEL_FD`] close-on-exec, whatever its flags were.
fn mark_cloexec_above_channel(sweep: FdSweep) -> std::io::Result<()> {
    let first = CHANNEL_FD + 1;
    if !sweep.skip_close_range {
        // The raw system call: works with any libc, and reports ENOSYS itself
        // on kernels before 5.9 (EINVAL for the CLOEXEC flag before 5.11).
        // SAFETY: close_range only changes descriptor flags.
        let done = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                first as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            )
        };
        if done == 0 {
            return Ok(());
        }
        let error = std::io::Error::last_os_error();
        if !matches!(error.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) {
            return Err(error);
        }
    }
    for fd in first..sweep.end {
        // SAFETY: fcntl on a descriptor number; EBADF (not open) is skipped.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0
                && flags & libc::FD_CLOEXEC == 0
                && libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) == -1
            {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(())
}
