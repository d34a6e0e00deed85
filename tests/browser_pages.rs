//! The browser pages and the legacy Node orb, end to end with the real binaries.
//!
//! - `room_and_dashboard_pages_in_chromium` starts cpu-server with real gpu-orbs and runs
//!   `tests/browser/*.test.js` (`node --test`, playwright-core driving Chromium) against it.
//! - `legacy_node_orb_is_supervised_and_answers_in_the_room` runs `tests/browser/legacy_aiorb.js`
//!   (IPC through `process.send` only, the room over WebSocket) as the orb.
//!
//! Both need `bash tests/browser/setup.sh` (Chromium, `npm ci`); without it they fail
//! with that instruction rather than pass.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use system_tests::browser_kit::{self, browser_dir, require_browser_setup};
use system_tests::http_client;
use system_tests::manager_kit::orb_pids;
use system_tests::manager_kit::path_env;
use system_tests::procfs;
use system_tests::room_harness::RoomServer;
use system_tests::wait::until_true;
use system_tests::ws::Client;

const SECOND: Duration = Duration::from_secs(1);
const ADMIN_TOKEN: &str = "browser-tests-admin-token-0123456789";
/// Bound of the whole `node --test` run.
const NODE_TIMEOUT: Duration = Duration::from_secs(600);

/// Runs `node args…` in `tests/browser` (log `tests/artifacts/browser-node.log`), bounded.
fn run_node(args: &[&str], env: &[(&str, String)]) -> (bool, String) {
    browser_kit::run_node(args, env, "browser-node.log", NODE_TIMEOUT)
}

/// A server whose orbs are the real gpu-orb (test mode), with a known admin token.
fn server_with_real_orbs() -> RoomServer {
    let target = system_tests::binaries::target_dir().display().to_string();
    let path = path_env();
    RoomServer::start(&[
        ("PATH", &path),
        ("ORB_SPAWN_ON", "coach"),
        ("GPU_SERVER_PATH", &target),
        ("ADMIN_TOKEN", ADMIN_TOKEN),
        ("ORB_HEALTH_CHECK_INTERVAL", "500"),
        // Not 3 × 500 ms: under CI load (Chromium and two test threads on 2 cores) a debug
        // orb once went 1.5 s without a heartbeat and was replaced mid-test. Liveness has
        // its own tests (orb_manager); these pages need a stable orb.
        ("ORB_UNRESPONSIVE_TIMEOUT", "5000"),
        ("ROOM_EMPTY_GRACE", "0"),
        ("ORB_STOP_GRACE", "2000"),
        ("ORB_KILL_GRACE", "1000"),
    ])
}

#[test]
fn room_and_dashboard_pages_in_chromium() {
    require_browser_setup();
    // The room page joins the call's media (WebRTC): browser, server and orbs
    // talk over a private loopback only.
    browser_kit::enter_loopback_namespace();
    let server = server_with_real_orbs();
    let base = format!("http://127.0.0.1:{}", server.port);
    let mut env = vec![
        ("BASE_URL", base),
        ("ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
        (
            "CPU_SERVER_BIN",
            system_tests::binaries::cpu_server().display().to_string(),
        ),
        (
            "GPU_SERVER_PATH",
            system_tests::binaries::target_dir().display().to_string(),
        ),
    ];
    if let Ok(update) = std::env::var("UPDATE_DOCS_SCREENSHOTS") {
        env.push(("UPDATE_DOCS_SCREENSHOTS", update));
    }
    let (passed, output) = run_node(
        &[
            "--test",
            "--test-concurrency=1",
            "room.test.js",
            "dashboard.test.js",
            "own_server.test.js",
        ],
        &env,
    );
    println!("{output}");
    assert!(
        passed,
        "browser tests failed (full log in tests/artifacts/browser-node.log):\n{output}\n--- cpu-server stderr ---\n{}",
        server.proc.stderr()
    );
    assert!(output.contains("# fail 0"), "unexpected node --test summary:\n{output}");
}

/// An admin API request with the bearer token: status and JSON body.
fn admin(port: u16, method: &str, path: &str) -> Option<(u16, Value)> {
    let headers = [http_client::bearer(ADMIN_TOKEN)];
    let (status, body) = http_client::request(port, method, path, &headers, None, 20 * SECOND)?;
    Some((status, serde_json::from_str(&body).unwrap_or(Value::Null)))
}

/// What the legacy orb logged: one JSON object a line.
fn legacy_log(dir: &Path, room: &str) -> Vec<Value> {
    std::fs::read_to_string(dir.join(format!("legacy-{room}.log")))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

#[tokio::test]
async fn legacy_node_orb_is_supervised_and_answers_in_the_room() {
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "node is required: run `bash tests/browser/setup.sh` (or tests/run.sh)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let dir_s = dir.path().display().to_string();
    let gpu_path = browser_dir().display().to_string();
    let path = path_env();
    let server = RoomServer::start(&[
        ("PATH", &path),
        ("ORB_SPAWN_ON", "coach"),
        ("GPU_SERVER_PATH", &gpu_path),
        ("ORB_COMMAND", "node --experimental-websocket legacy_aiorb.js"),
        ("ORB_TEST_DIR", &dir_s),
        ("ADMIN_TOKEN", ADMIN_TOKEN),
        ("ORB_HEALTH_CHECK_INTERVAL", "200"),
        ("ORB_UNRESPONSIVE_TIMEOUT", "2000"),
        ("ROOM_EMPTY_GRACE", "0"),
        ("ORB_STOP_GRACE", "3000"),
    ]);
    let room = "r-legacy";
    let (mut coach, _) = Client::join(&server.url(room), "coach-1", "coach").await;
    let joined = coach.recv_type("user-joined", 15 * SECOND).await;
    assert_eq!(joined["participantType"], "ai", "{joined}");
    assert_eq!(joined["userName"], "AI Assistant");
    let ai_id = joined["userId"].as_str().expect("ai userId").to_owned();
    assert!(ai_id.starts_with("ai-orb-"), "{ai_id}");
    let pids = orb_pids(room);
    let [pid] = pids.as_slice() else {
        panic!("expected one orb process: {pids:?}\n{}", server.proc.stderr());
    };
    let pid = *pid;
    let argv = procfs::cmdline(pid);
    assert!(argv.iter().any(|a| a.ends_with("legacy_aiorb.js")), "{argv:?}");
    assert_eq!(argv.first().map(|a| a.ends_with("node")), Some(true), "{argv:?}");

    // orb_ready over IPC, then alive past the unresponsive timeout: heartbeats heard.
    let port = server.port;
    assert!(
        until_true(10 * SECOND, || admin(port, "GET", &format!("/api/orbs/{room}"))
            .is_some_and(|(s, b)| s == 200 && b["state"] == "ready"))
        .await,
        "legacy orb never ready: {:?}",
        admin(port, "GET", &format!("/api/orbs/{room}"))
    );
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let (status, record) = admin(port, "GET", &format!("/api/orbs/{room}")).expect("orb record");
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["pid"], json!(pid), "legacy orb was replaced: {record}");
    assert_eq!(record["state"], "ready", "{record}");
    assert_eq!(record["restarts"], 0, "{record}");
    let beat_age = record["last_heartbeat_ms"].as_u64().expect("heartbeat age");
    assert!(beat_age < 2000, "heartbeat {beat_age} ms old: {record}");

    // The coach's say, answered through the server by the Node orb.
    coach
        .send(json!({"type":"ai_control","action":"say","text":"hello"}))
        .await;
    let reply = coach.recv_type("ai_response", 10 * SECOND).await;
    assert_eq!(reply["text"], "echo: hello");
    assert_eq!(reply["fromId"], json!(ai_id));
    assert_eq!(reply["inReplyTo"], "coach-1");

    // A kill through the admin API: shutdown_graceful over IPC, orb_shutdown back, exit 0.
    let (status, killed) = admin(port, "DELETE", &format!("/api/orbs/{room}")).expect("kill");
    assert_eq!(status, 200, "{killed}");
    assert_eq!(killed["exit"]["code"], 0, "{killed}");
    assert_eq!(killed["exit"]["normal"], true, "{killed}");
    assert!(
        procfs::stat(pid).is_none(),
        "legacy orb still running after the kill answered"
    );
    let left = coach.recv_type("user-left", 5 * SECOND).await;
    assert_eq!(left["userId"], json!(ai_id));
    let log = legacy_log(dir.path(), room);
    let graceful = log
        .iter()
        .find(|e| e["kind"] == "ipc" && e["type"] == "shutdown_graceful")
        .unwrap_or_else(|| panic!("no shutdown_graceful received: {log:?}"));
    assert_eq!(graceful["reason"], "manual_termination", "{graceful}");
    assert!(
        log.iter()
            .any(|e| e["kind"] == "exit" && e["reason"] == "manual_termination"),
        "orb_shutdown not acknowledged before exit: {log:?}"
    );
    coach.close().await;
}
