//! The cpu-server the suite measures: the release binary with bench limits,
//! and its admin API (bearer [`ADMIN_TOKEN`]).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::room_harness::RoomServer;
use crate::ws::Client;

/// The admin token every bench server gets.
pub const ADMIN_TOKEN: &str = "bench-admin-token-0123456789";

/// Starts the release cpu-server with limits out of the way (rates, per-IP sockets,
/// rooms), real gpu-orbs from the binaries' directory, and `extra` on top.
pub fn start(extra: &[(&str, &str)]) -> RoomServer {
    start_with(extra, None)
}

/// Like [`start`], on `port` (e.g. a server whose orbs must know its port in advance).
pub fn start_on(port: u16, extra: &[(&str, &str)]) -> RoomServer {
    start_with(extra, Some(port))
}

fn start_with(extra: &[(&str, &str)], port: Option<u16>) -> RoomServer {
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".to_owned());
    let target = crate::binaries::target_dir().display().to_string();
    let mut env: Vec<(&str, &str)> = vec![
        ("PATH", &path),
        ("GPU_SERVER_PATH", &target),
        ("ADMIN_TOKEN", ADMIN_TOKEN),
        ("MAX_MESSAGES_PER_SECOND", "1000000"),
        ("MAX_CONNECTIONS_PER_IP", "1000000"),
        ("MAX_ROOMS", "5000"),
        ("ORB_SPAWN_ON", "manual"),
        ("ROOM_EMPTY_GRACE", "0"),
        ("ORB_STOP_GRACE", "3000"),
        ("ORB_KILL_GRACE", "1000"),
        ("RUST_LOG", "warn"),
    ];
    // `BENCH_SERVER_THREADS=n`: the server's tokio worker threads (its default: one per core).
    let threads = std::env::var("BENCH_SERVER_THREADS").unwrap_or_default();
    if !threads.is_empty() {
        env.push(("TOKIO_WORKER_THREADS", &threads));
    }
    // `BENCH_SERVER_RELAY_THREADS=n`: the server's relay loops (its default: one per core).
    let relay_threads = std::env::var("BENCH_SERVER_RELAY_THREADS").unwrap_or_default();
    if !relay_threads.is_empty() {
        env.push(("RELAY_THREADS", &relay_threads));
    }
    env.extend_from_slice(extra);
    match port {
        Some(port) => RoomServer::start_on(port, &env),
        None => RoomServer::start(&env),
    }
}

/// An admin API request (blocking, ≤ 30 s): status and JSON body.
pub fn api(port: u16, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let (status, text) = crate::operator_kit::request(port, method, path, Some(ADMIN_TOKEN), body);
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// `POST /api/orbs {"room": room}`; true on 200/201/202.
pub fn spawn_orb(port: u16, room: &str) -> bool {
    let body = serde_json::json!({ "room": room }).to_string();
    matches!(api(port, "POST", "/api/orbs", Some(&body)).0, 200..=202)
}

/// Orb records whose state is `state`.
pub fn count_state(port: u16, state: &str) -> usize {
    match api(port, "GET", "/api/orbs", None).1 {
        Value::Array(records) => records.iter().filter(|r| r["state"] == state).count(),
        _ => 0,
    }
}

/// The Prometheus text of `/metrics`.
pub fn metrics(port: u16) -> String {
    crate::operator_kit::request(port, "GET", "/metrics", Some(ADMIN_TOKEN), None).1
}

/// Polls (every 200 ms, ≤ `timeout`) until `count_state(port, "ready") >= n`; the time it took.
pub fn wait_ready(port: u16, n: usize, timeout: Duration) -> Result<Duration, usize> {
    let start = Instant::now();
    loop {
        let ready = count_state(port, "ready");
        if ready >= n {
            return Ok(start.elapsed());
        }
        if start.elapsed() > timeout {
            return Err(ready);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Coach `join` sent → the AI's `user-joined`, ms, per room, one room after the
/// other; each room's orb is stopped (`DELETE /api/orbs/{room}`, which answers once
/// it is gone) before `before_each(port)` and the next room.
pub async fn join_to_ai(
    server: &RoomServer,
    prefix: &str,
    rooms: usize,
    before_each: impl Fn(u16) + Clone + Send + 'static,
) -> Vec<f64> {
    let mut out = Vec::new();
    let port = server.port;
    for i in 0..rooms {
        let wait = before_each.clone();
        let _ = tokio::task::spawn_blocking(move || wait(port)).await;
        let room = format!("{prefix}{i}");
        let Ok(mut coach) = Client::connect(&server.url(&room)).await else {
            continue;
        };
        let start = Instant::now();
        coach
            .send(json!({"type":"join","userId":"coach","userName":"c","userRole":"coach"}))
            .await;
        while let Some(frame) = coach.try_recv_type("user-joined", Duration::from_secs(30)).await {
            if frame["participantType"] == "ai" {
                out.push(start.elapsed().as_secs_f64() * 1000.0);
                break;
            }
        }
        coach.close().await;
        let path = format!("/api/orbs/{room}");
        let _ = tokio::task::spawn_blocking(move || api(port, "DELETE", &path, None)).await;
    }
    out
}
