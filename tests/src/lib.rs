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
//! - [`http_client`]: the one HTTP/1.1 client of the kits (raw, upgrade and usual requests).
//! - [`room_harness`]: a cpu-server on a free loopback port.
//! - [`security_kit`]: JWTs, raw upgrades with headers, orb tokens from `/proc`, hostile frames.
//! - [`slow_clients`]: idle and half-request connections from chosen loopback addresses.
//! - [`manager_kit`]: fake orb scripts and orb process counting for OrbManager tests.
//! - [`operator_kit`]: admin API requests, CLI runs and a strict metrics parser.
//! - [`privileged_kit`]: a cpu-server run as an unprivileged user with only the
//!   capabilities of the shipped unit, throwaway users, `require_root`.
//! - [`orb_fake_server`], [`orb_ipc`], [`orb_chat_stub`]: a fake room server, the
//!   manager's end of an orb's IPC channel and an OpenAI-compatible stub for orb tests.
//! - [`deploy_tools`], [`deploy_tls`]: operator tools (nginx, openssl, ...) on the shipped
//!   deploy files, and TLS clients trusting a throwaway CA.
//! - [`turn_coturn`]: a real coturn and `turnutils_uclient`.
//! - [`slurm_kit`]: the local Slurm cluster of `scripts/slurm-local.sh` (up once per test process).
//! - [`media_kit`]: a private loopback-only network namespace and `node --test` runs for the WebRTC tests.
//! - [`bench_kit`], [`bench_peers`], [`bench_server`], [`bench_orbs`]: the benchmark
//!   suite's measures, reference peers (echo, nginx), bench servers and orb scenarios.
//! - [`bench_slurm`]: the suite's orb placement through the local Slurm cluster against local spawn.
//! - [`bench_upgrade`]: the suite's rooms relaying across in-place upgrades, against before and after.
//! - [`voice_stub`]: the speech APIs (transcriptions, OpenAI speech, ElevenLabs stream) for the orb's voice,
//!   servable inside a private network namespace.
//! - [`chaos_kit`]: the chaos soak's misbehaving orb, process counting and sequence checker.
//! - [`upgrade_kit`]: a cpu-server run from an installed path the test replaces, a second
//!   build, binaries that fail the preflight, a prober opening connection after connection.

pub mod bench_kit;
pub mod bench_media;
pub mod bench_orbs;
pub mod bench_peers;
pub mod bench_server;
pub mod bench_slurm;
pub mod bench_upgrade;
pub mod bench_voice;
pub mod bench_warm;
pub mod binaries;
pub mod browser_kit;
pub mod chaos_kit;
pub mod deploy_tls;
pub mod deploy_tools;
pub mod http_client;
pub mod manager_kit;
pub mod media_kit;
pub mod operator_kit;
pub mod orb_chat_stub;
pub mod orb_fake_server;
pub mod orb_ipc;
pub mod privileged_kit;
pub mod process;
pub mod procfs;
pub mod raw_ws;
pub mod room_harness;
pub mod security_kit;
pub mod slow_clients;
pub mod slurm_kit;
pub mod turn_coturn;
pub mod upgrade_kit;
pub mod voice_stub;
pub mod wait;
pub mod ws;

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}
