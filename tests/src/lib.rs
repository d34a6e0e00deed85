//! Helpers for the workspace-level tests that drive the real binaries.
//!
//! Every helper is bounded: waits take a timeout, spawned processes are
//! killed (their whole process group) when the guard drops, and only
//! loopback addresses are used.
//!
//! # Layout
//! - [`binaries`]: where the built `cpu-server` and `gpu-orb` are.
//! - [`process`]: [`process::Proc`], a kill-on-drop guard for a spawned binary.
//! - [`procfs`]: reading `/proc` to prove process hygiene (zombies, groups, fds).
//! - [`ws`]: a small WebSocket test client speaking JSON frames.
//! - [`wait`]: bounded polling.

pub mod binaries;
pub mod process;
pub mod procfs;
pub mod wait;
pub mod ws;

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}
pub mod orb_fake_server;
pub mod orb_ipc;
pub mod orb_chat_stub;
pub mod room_harness;
