//! Fixtures for the OrbManager tests: fake orb programs and process counting.
//!
//! A fake orb is a small `sh` script speaking Node's IPC convention on fd 3,
//! so each test can give the manager exactly the misbehaviour it checks.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::room_harness::RoomServer;
use crate::wait::until;

/// The start of every fake orb: parses `--room=`, records its start, and
/// defines `ready` and `beat` (one heartbeat) over the IPC descriptor.
const PRELUDE: &str = r#"#!/bin/sh
room=""
for a in "$@"; do case "$a" in --room=*) room="${a#--room=}";; esac; done
echo "$$" >> "$ORB_TEST_DIR/starts-$room"
ready() { printf '{"type":"orb_ready","roomId":"%s"}\n' "$room" >&3; }
beat() { printf '{"type":"orb_heartbeat","roomId":"%s","timestamp":0,"metrics":{"cpu":0,"memory":1,"latency":0}}\n' "$room" >&3; }
"#;

/// A fake orb that becomes ready and heartbeats every 100 ms until its channel closes.
pub const HEALTHY: &str = r#"ready
while beat; do sleep 0.1; done
"#;

/// A fake orb body that heartbeats in the background and, on `shutdown_graceful`,
/// sends `summary` (the summary object's JSON; `%s` in it is not substituted) as its
/// `session_summary`, then `orb_shutdown` with `reason`, and exits at once.
pub fn summarising_orb(summary: &str, reason: &str) -> String {
    format!(
        r#"ready
( while beat; do sleep 0.1; done ) &
while read -r line <&3; do
  case "$line" in *shutdown_graceful*)
    printf '{{"type":"session_summary","roomId":"%s","sessionId":"%s","summary":{summary}}}\n' "$room" "$SESSION_ID" >&3
    printf '{{"type":"orb_shutdown","reason":"{reason}"}}\n' >&3
    kill $!; exit 0;;
  esac
done
"#
    )
}

/// Writes an executable fake orb `dir/name` with the prelude and `body`.
pub fn fake_orb(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{PRELUDE}{body}")).expect("write fake orb");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod fake orb");
    path
}

/// Pids recorded by fake orbs of `room` (one line per start).
pub fn starts(dir: &Path, room: &str) -> Vec<i32> {
    std::fs::read_to_string(dir.join(format!("starts-{room}")))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Orb leaders alive whose argv holds `--room=<room>` (a process leading its
/// own group: not a shell orb's forked child that has not exec'd yet), of the
/// servers this test process started (see [`crate::room_harness::is_our_orb`]).
pub fn orb_pids(room: &str) -> Vec<i32> {
    crate::procfs::with_arg(&format!("--room={room}"))
        .into_iter()
        .filter(|pid| crate::room_harness::is_our_orb(&crate::procfs::cmdline(*pid)))
        .filter(|pid| crate::procfs::stat(*pid).is_some_and(|s| s.pgrp == *pid))
        .collect()
}

/// Orbs (process groups) alive whose argv holds a `--room=<prefix>…` argument.
/// Counted by group: a shell orb's forked-but-not-yet-exec'd child has the same argv.
pub fn orb_groups_with_prefix(prefix: &str) -> usize {
    let mut groups: Vec<i32> = orb_pids_with_prefix(prefix)
        .into_iter()
        .filter_map(|pid| crate::procfs::stat(pid).map(|s| s.pgrp))
        .collect();
    groups.sort_unstable();
    groups.dedup();
    groups.len()
}

/// Live processes whose argv holds any `--room=<prefix>…` argument.
pub fn orb_pids_with_prefix(prefix: &str) -> Vec<i32> {
    let needle = format!("--room={prefix}");
    crate::procfs::all()
        .into_iter()
        .filter(|p| {
            let argv = crate::procfs::cmdline(p.pid);
            p.state != 'Z' && argv.iter().any(|a| a.starts_with(&needle)) && crate::room_harness::is_our_orb(&argv)
        })
        .map(|p| p.pid)
        .collect()
}

/// The `PATH` to hand to servers (and so to their orbs).
pub fn path_env() -> String {
    std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".to_owned())
}

/// A cpu-server whose orbs are the fake `body`, with short timings.
pub fn server_with_fake(dir: &Path, body: &str, extra: &[(&str, &str)]) -> RoomServer {
    let program = fake_orb(dir, "fake-orb", body);
    let dir_s = dir.display().to_string();
    let program_s = program.display().to_string();
    let path = path_env();
    let mut env: Vec<(&str, &str)> = vec![
        ("PATH", &path),
        ("ORB_SPAWN_ON", "coach"),
        ("GPU_SERVER_PATH", &dir_s),
        ("ORB_COMMAND", &program_s),
        ("ORB_TEST_DIR", &dir_s),
        ("ORB_HEALTH_CHECK_INTERVAL", "200"),
        ("ORB_UNRESPONSIVE_TIMEOUT", "1500"),
        ("ORB_READY_TIMEOUT", "5000"),
        ("ROOM_EMPTY_GRACE", "0"),
        ("ORB_STOP_GRACE", "500"),
        ("ORB_KILL_GRACE", "500"),
    ];
    env.extend_from_slice(extra);
    RoomServer::start(&env)
}

/// A server whose orbs are the real gpu-orb (test mode: no AI key).
pub fn server_with_real_orbs(extra: &[(&str, &str)]) -> RoomServer {
    let target = crate::binaries::target_dir().display().to_string();
    let path = path_env();
    let mut env: Vec<(&str, &str)> = vec![
        ("PATH", &path),
        ("ORB_SPAWN_ON", "coach"),
        ("GPU_SERVER_PATH", &target),
        ("ORB_HEALTH_CHECK_INTERVAL", "500"),
        ("ROOM_EMPTY_GRACE", "0"),
        ("ORB_STOP_GRACE", "2000"),
        ("ORB_KILL_GRACE", "1000"),
    ];
    env.extend_from_slice(extra);
    RoomServer::start(&env)
}

/// The one orb leader of `room`, waiting up to `timeout`; panics when there is none or several.
pub async fn single_orb(room: &str, timeout: Duration) -> i32 {
    until(timeout, || match orb_pids(room).as_slice() {
        [pid] => Some(*pid),
        _ => None,
    })
    .await
    .unwrap_or_else(|| panic!("no single orb for {room} within {timeout:?}: {:?}", orb_pids(room)))
}

/// The pid a fake orb wrote to `dir/grandchild` (its backgrounded child), within 5 s.
pub async fn grandchild_pid(dir: &Path) -> i32 {
    until(Duration::from_secs(5), || {
        std::fs::read_to_string(dir.join("grandchild"))
            .ok()?
            .trim()
            .parse()
            .ok()
    })
    .await
    .expect("grandchild pid")
}

/// The orb leader of `room` that replaced `old`, waiting up to `timeout`.
pub async fn replacement_orb(room: &str, old: i32, timeout: Duration) -> Option<i32> {
    until(timeout, || orb_pids(room).into_iter().find(|p| *p != old)).await
}
