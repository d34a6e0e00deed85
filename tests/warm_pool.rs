//! The warm pool (`ORB_WARM_POOL`) through the real binaries: cpu-server keeps
//! gpu-orbs started with `--warm` in no room; a coach's room takes one (the
//! AI that joins is that very process) and the pool refills; a warm orb
//! SIGKILLed or SIGSTOPped is never the room's AI and is replaced; a program
//! whose warm start crashes at once parks the pool while rooms still get cold
//! orbs; a burst larger than the pool is served without exceeding capacity.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use system_tests::operator_kit::request;
use system_tests::procfs;
use system_tests::room_harness::RoomServer;
use system_tests::wait::{until, until_true};
use system_tests::ws::Client;

const ADMIN_TOKEN: &str = "warm-pool-admin-token-0123456789";
const SECOND: Duration = Duration::from_secs(1);

fn server(extra: &[(&str, &str)]) -> RoomServer {
    let target = system_tests::binaries::target_dir().display().to_string();
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".to_owned());
    let mut env = vec![
        ("PATH", path.as_str()),
        ("ORB_SPAWN_ON", "coach"),
        ("GPU_SERVER_PATH", target.as_str()),
        ("ADMIN_TOKEN", ADMIN_TOKEN),
        ("ORB_HEALTH_CHECK_INTERVAL", "300"),
        ("ORB_UNRESPONSIVE_TIMEOUT", "1500"),
        ("ORB_STOP_GRACE", "500"),
        ("ORB_KILL_GRACE", "500"),
        ("ROOM_EMPTY_GRACE", "0"),
        ("ORB_MEDIA", "false"),
        ("RUST_LOG", "info"),
    ];
    env.extend_from_slice(extra);
    RoomServer::start(&env)
}

fn api(port: u16, method: &str, path: &str) -> Value {
    let (status, body) = request(port, method, path, Some(ADMIN_TOKEN), None);
    assert_eq!(status, 200, "{method} {path}: {body}");
    serde_json::from_str(&body).expect("json")
}

fn pool(port: u16) -> Value {
    api(port, "GET", "/api/warm-pool")
}

/// Pids of the pool's ready members.
fn ready_members(port: u16) -> Vec<i32> {
    pool(port)["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["state"] == "ready")
        .filter_map(|m| m["pid"].as_i64().map(|p| p as i32))
        .collect()
}

/// Waits until the pool has `n` ready members; their pids.
async fn ready(port: u16, n: usize, timeout: Duration) -> Vec<i32> {
    until(timeout, || Some(ready_members(port)).filter(|m| m.len() >= n))
        .await
        .unwrap_or_else(|| panic!("the pool never had {n} ready: {}", pool(port)))
}

/// The pid of the room's orb once it is ready.
async fn room_pid(port: u16, room: &str, timeout: Duration) -> i32 {
    until(timeout, || {
        let (status, body) = request(port, "GET", &format!("/api/orbs/{room}"), Some(ADMIN_TOKEN), None);
        let record: Value = serde_json::from_str(&body).unwrap_or_default();
        (status == 200 && record["state"] == "ready")
            .then(|| record["pid"].as_i64().map(|p| p as i32))
            .flatten()
    })
    .await
    .unwrap_or_else(|| panic!("no ready orb in {room}"))
}

/// Joins `room` as its coach and waits for the AI; asks it something.
async fn coach_with_ai(server: &RoomServer, room: &str) -> Client {
    let (mut coach, _) = Client::join(&server.url(room), &format!("coach-{room}"), "coach").await;
    let joined = coach.recv_type("user-joined", 15 * SECOND).await;
    assert_eq!(joined["participantType"], "ai", "{joined}");
    coach
        .send(json!({"type":"ai_control","action":"say","text":"hi"}))
        .await;
    let reply = coach.recv_type("ai_response", 10 * SECOND).await;
    assert_eq!(reply["text"], "echo: hi");
    coach
}

#[tokio::test]
async fn a_room_gets_a_warm_orb_and_the_pool_refills() {
    let server = server(&[("ORB_WARM_POOL", "1"), ("MAX_CONCURRENT_ORBS", "4")]);
    let port = server.port;
    let warm = ready(port, 1, 15 * SECOND).await[0];
    let argv = procfs::cmdline(warm);
    assert!(argv.iter().any(|a| a == "--warm"), "{argv:?}");
    assert!(!argv.iter().any(|a| a.starts_with("--room=")), "{argv:?}");
    assert!(
        procfs::environ(warm)
            .iter()
            .all(|kv| !kv.starts_with("ROOM_ID=") && !kv.starts_with("SESSION_ID=")),
        "a warm orb has no room until it is given one"
    );
    let _coach = coach_with_ai(&server, "w-a").await;
    assert_eq!(
        room_pid(port, "w-a", 5 * SECOND).await,
        warm,
        "the room's AI is the warm process"
    );
    let refilled = ready(port, 1, 15 * SECOND).await;
    assert!(
        !refilled.contains(&warm),
        "the pool refilled with a new orb: {refilled:?}"
    );
    let view = pool(port);
    assert_eq!(view["assignments"], 1, "{view}");
    let (_, metrics) = request(port, "GET", "/metrics", Some(ADMIN_TOKEN), None);
    assert!(
        metrics.contains("cpu_server_warm_pool_assignments_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains("cpu_server_warm_pool_ready 1"), "{metrics}");
    let (_, list) = request(port, "GET", "/api/orbs", Some(ADMIN_TOKEN), None);
    assert!(!list.contains("warm+"), "pool members are not rooms: {list}");
    // A clean stop ends the warm orbs too (shutdown_graceful while they wait).
    let mut server = server;
    server.proc.signal(Signal::SIGTERM);
    let status = server
        .proc
        .wait_exit_async(20 * SECOND)
        .await
        .expect("the server stopped");
    assert!(status.success(), "{status:?}");
    assert!(
        refilled.iter().all(|pid| procfs::stat(*pid).is_none()),
        "a warm orb outlived its server"
    );
}

#[tokio::test]
async fn killed_or_stopped_warm_orbs_are_never_the_rooms_ai() {
    let server = server(&[("ORB_WARM_POOL", "1"), ("MAX_CONCURRENT_ORBS", "4")]);
    let port = server.port;
    // SIGKILLed in the pool: replaced (after the pool's first backoff), never handed out.
    let first = ready(port, 1, 15 * SECOND).await[0];
    kill(Pid::from_raw(first), Signal::SIGKILL).expect("kill");
    let second = until(10 * SECOND, || ready_members(port).into_iter().find(|p| *p != first))
        .await
        .expect("the killed warm orb was replaced");
    assert_eq!(pool(port)["failures"], 1);
    // SIGSTOPped, and a room comes at once: the hung orb is given the room, never
    // says orb_assigned, is discarded after ORB_WARM_ASSIGN_TIMEOUT, and the room's
    // AI is another process.
    kill(Pid::from_raw(second), Signal::SIGSTOP).expect("stop");
    let _coach = coach_with_ai(&server, "w-stop").await;
    let ai = room_pid(port, "w-stop", 5 * SECOND).await;
    assert_ne!(ai, second, "the stopped orb became the room's AI");
    assert!(
        until_true(5 * SECOND, || procfs::stat(second).is_none()).await,
        "the stopped warm orb was not killed"
    );
    let (_, events) = request(port, "GET", "/api/orbs/w-stop/events", Some(ADMIN_TOKEN), None);
    assert!(events.contains("warm_discarded"), "{events}");
}

#[tokio::test]
async fn a_pool_whose_orbs_crash_is_parked_and_rooms_get_cold_orbs() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The real gpu-orb, except that its warm start fails at once.
    let target = system_tests::binaries::target_dir();
    let wrapper = dir.path().join("orb.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\ncase \"$1\" in --warm) exit 3;; esac\nexec {} \"$@\"\n",
            target.join("gpu-orb").display()
        ),
    )
    .expect("write wrapper");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let command = wrapper.display().to_string();
    let server = server(&[
        ("ORB_WARM_POOL", "1"),
        ("ORB_COMMAND", &command),
        ("ORB_MAX_RESTARTS", "2"),
    ]);
    let port = server.port;
    let parked = until(15 * SECOND, || Some(pool(port)).filter(|p| p["parked_for_ms"].is_u64())).await;
    let parked = parked.unwrap_or_else(|| panic!("never parked: {}", pool(port)));
    assert_eq!(parked["failures"], 3, "{parked}");
    let host = format!("127.0.0.1:{port}");
    let cli_env = [("CPU_HOST", host.as_str()), ("ADMIN_TOKEN", ADMIN_TOKEN)];
    let shown = system_tests::operator_kit::cli(dir.path(), &cli_env, &["orbs", "warm"], 30 * SECOND);
    assert_eq!(shown.code, Some(0), "{}", shown.stderr);
    assert!(
        shown
            .stdout
            .starts_with("warm pool: 0 ready of 1, 0 starting; 0 assigned, 3 failed; parked for"),
        "{}",
        shown.stdout
    );
    let _coach = coach_with_ai(&server, "w-cold").await;
    let pid = room_pid(port, "w-cold", 5 * SECOND).await;
    assert!(procfs::cmdline(pid).iter().any(|a| a == "--room=w-cold"), "a cold orb");
    // A window in which nothing may happen: a parked pool starts nothing.
    tokio::time::sleep(SECOND).await;
    assert_eq!(pool(port)["failures"], 3);
    let reset = system_tests::operator_kit::cli(
        dir.path(),
        &cli_env,
        &["orbs", "warm", "--reset", "--json"],
        30 * SECOND,
    );
    assert_eq!(reset.code, Some(0), "{}", reset.stderr);
    let reset: Value = serde_json::from_str(&reset.stdout).expect("json");
    assert!(reset["parked_for_ms"].is_null(), "{reset}");
    let after = until(10 * SECOND, || {
        Some(pool(port)).filter(|p| p["failures"].as_u64() > Some(3))
    })
    .await;
    assert!(after.is_some(), "a reset pool tries again");
}

#[tokio::test]
async fn a_burst_larger_than_the_pool_is_served_within_capacity() {
    let server = server(&[("ORB_WARM_POOL", "2"), ("MAX_CONCURRENT_ORBS", "3")]);
    let port = server.port;
    let warm = ready(port, 2, 15 * SECOND).await;
    // This server's orb processes (the other tests run their own servers meanwhile).
    let server_pid = server.proc.pid() as i32;
    let orbs = || {
        procfs::descendants(server_pid)
            .iter()
            .filter(|p| procfs::cmdline(p.pid).first().is_some_and(|a| a.ends_with("gpu-orb")))
            .count()
    };
    let mut coaches = Vec::new();
    for room in ["b-1", "b-2", "b-3", "b-4"] {
        let (coach, _) = Client::join(&server.url(room), &format!("coach-{room}"), "coach").await;
        coaches.push(coach);
        assert!(orbs() <= 3, "over MAX_CONCURRENT_ORBS");
    }
    let first = room_pid(port, "b-1", 10 * SECOND).await;
    let second = room_pid(port, "b-2", 10 * SECOND).await;
    assert_eq!([first, second], [warm[0], warm[1]], "the pool first");
    room_pid(port, "b-3", 10 * SECOND).await;
    let (_, b4) = request(port, "GET", "/api/orbs/b-4", Some(ADMIN_TOKEN), None);
    assert!(b4.contains("\"queued\""), "{b4}");
    assert!(orbs() <= 3, "over MAX_CONCURRENT_ORBS");
    // b-1 leaves: b-4 gets its slot.
    coaches.remove(0).close().await;
    room_pid(port, "b-4", 15 * SECOND).await;
    assert!(orbs() <= 3, "over MAX_CONCURRENT_ORBS");
}

#[tokio::test]
async fn a_program_that_cannot_be_warm_disables_the_pool_and_rooms_get_cold_orbs() {
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "node is required: run `bash tests/browser/setup.sh` (or tests/run.sh)"
    );
    // The old Node orb knows no --warm: it never says orb_warm.
    let gpu_path = system_tests::browser_kit::browser_dir().display().to_string();
    let server = server(&[
        ("ORB_WARM_POOL", "1"),
        ("GPU_SERVER_PATH", &gpu_path),
        ("ORB_COMMAND", "node --experimental-websocket legacy_aiorb.js"),
        ("ORB_READY_TIMEOUT", "2000"),
    ]);
    let port = server.port;
    let disabled = until(10 * SECOND, || pool(port)["disabled"].as_str().map(str::to_owned)).await;
    let why = disabled.unwrap_or_else(|| panic!("the pool stayed on: {}", pool(port)));
    assert!(why.contains("does not support --warm"), "{why}");
    assert!(
        server.proc.stderr().contains("ORB_WARM_POOL disabled"),
        "a clear message in the log"
    );
    let _coach = coach_with_ai(&server, "w-legacy").await;
    // A window in which nothing may happen: a disabled pool starts nothing more.
    tokio::time::sleep(SECOND).await;
    let view = pool(port);
    assert!(view["members"].as_array().is_some_and(Vec::is_empty), "{view}");
}
