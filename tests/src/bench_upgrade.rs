//! The suite's `upgrade` scenario: rooms, each with a real orb, relaying round
//! trips continuously while the server upgrades in place (`cpu-server
//! upgrade`, alternating two builds), against the same rooms' round trips
//! before and after, with a prober opening a new connection every few ms
//! throughout.
//!
//! Figures: round trip p50/p99 before and after; per room, the longest gap
//! between two successful round trips across an upgrade (the relay's pause);
//! room sockets closed by the upgrade (a pair rejoins when one is); refused
//! connections; the server's own pause (commit to serving); orbs that are the
//! same process after every upgrade, and orbs started during them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::bench_kit::{Latency, Report};
use crate::bench_peers::{Ws, join, message_256, next_text, send};
use crate::upgrade_kit::{InstalledServer, Prober, install, second_build};

/// One room's round trips: when each ended and how long it took (ms), and how
/// many times its sockets were closed under it.
#[derive(Debug, Default)]
struct RoomTrace {
    trips: Vec<(Instant, f64)>,
    closes: u64,
}

/// Joins `a` and `b` in the room at `url` (retrying while the server is between images, bounded).
async fn pair(url: &str) -> Option<(Ws, Ws)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let (Ok(a), Ok(b)) = (join(url, "a", "client").await, join(url, "b", "client").await) {
            return Some((a, b));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// Round trips a → b → a until `stop`; a lost socket counts a close and the pair rejoins.
async fn run_room(url: String, stop: Arc<AtomicBool>) -> RoomTrace {
    let msg = message_256();
    let reply = msg.replace(r#""toId":"b""#, r#""toId":"a""#);
    let mut trace = RoomTrace::default();
    let Some((mut a, mut b)) = pair(&url).await else {
        return trace;
    };
    while !stop.load(Ordering::SeqCst) {
        let start = Instant::now();
        let ok = send(&mut a, &msg).await
            && next_relayed(&mut b).await
            && send(&mut b, &reply).await
            && next_relayed(&mut a).await;
        if ok {
            trace
                .trips
                .push((Instant::now(), start.elapsed().as_secs_f64() * 1000.0));
            continue;
        }
        trace.closes += 1;
        // Gone for good: dropped before rejoining, as a browser closes its socket.
        drop((a, b));
        match pair(&url).await {
            Some((na, nb)) => (a, b) = (na, nb),
            None => break,
        }
    }
    trace
}

/// The next `client_signal` (skipping presence frames); false when the socket is gone.
async fn next_relayed(ws: &mut Ws) -> bool {
    for _ in 0..16 {
        match next_text(ws, Duration::from_secs(5)).await {
            Some(text) if text.contains("client_signal") => return true,
            Some(_) => {}
            None => return false,
        }
    }
    false
}

/// Runs the scenario: `rooms` rooms, `upgrades` upgrades, `steady` of round trips before and after.
pub async fn upgrade(report: &mut Report, rooms: usize, upgrades: usize, steady: Duration) {
    const S: &str = "upgrade";
    let dir = tempfile::tempdir().expect("tempdir");
    // The bench servers' limits: rates and per-address sockets out of the way.
    let limits = [
        ("MAX_MESSAGES_PER_SECOND", "1000000"),
        ("MAX_CONNECTIONS_PER_IP", "1000000"),
        ("RUST_LOG", "warn"),
        // Every room gets its orb (the pairs join as clients), all at once.
        ("ORB_SPAWN_ON", "any"),
    ];
    let max_orbs = rooms.to_string();
    let mut env = limits.to_vec();
    env.push(("MAX_CONCURRENT_ORBS", &max_orbs));
    let server = InstalledServer::start(dir.path(), &env);
    let build_a = server.health()["build_id"].as_str().unwrap_or_default().to_owned();
    let build_b = second_build(dir.path(), &build_a);
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..rooms)
        .map(|i| {
            let url = format!("ws://127.0.0.1:{}/ws-simple/up{i}", server.port);
            tokio::spawn(run_room(url, Arc::clone(&stop)))
        })
        .collect();
    let prober = Prober::start(server.port);
    tokio::time::sleep(steady).await;
    let orbs_before = ready_orbs(&server, rooms).await;
    if orbs_before.len() < rooms {
        report.note(
            S,
            &format!("only {} of {rooms} orbs ready before the upgrades", orbs_before.len()),
        );
    }
    let mut windows = Vec::new();
    let mut pauses = Vec::new();
    let server = Arc::new(server);
    for round in 0..upgrades {
        let binary = if round % 2 == 0 {
            build_b.clone()
        } else {
            crate::binaries::cpu_server()
        };
        install(dir.path(), &binary);
        let begun = Instant::now();
        let s = Arc::clone(&server);
        let run = tokio::task::spawn_blocking(move || s.cli(&["upgrade"])).await;
        windows.push((begun, Instant::now()));
        match run {
            Ok(run) if run.code == Some(0) => {
                let status = server.upgrade_status();
                if let Some(ms) = status["last"]["pause_ms"].as_f64() {
                    pauses.push(ms);
                }
            }
            Ok(run) => report.note(S, &format!("upgrade {round} failed: {}", run.stderr.trim())),
            Err(e) => report.note(S, &format!("upgrade {round}: {e}")),
        }
        tokio::time::sleep(steady / 2).await;
    }
    tokio::time::sleep(steady / 2).await;
    let orbs_after = orb_pids(&server);
    let kept = orbs_before
        .iter()
        .filter(|(room, pid)| orbs_after.get(*room) == Some(*pid))
        .count();
    let started = orbs_after.len().saturating_sub(kept);
    stop.store(true, Ordering::SeqCst);
    let mut traces = Vec::new();
    for task in tasks {
        traces.push(task.await.unwrap_or_default());
    }
    let (answered, failures) = prober.finish();
    let first = windows.first().map(|w| w.0);
    let last = windows.last().map(|w| w.1);
    let (mut before, mut after, mut gaps, mut closes) = (Vec::new(), Vec::new(), Vec::new(), 0);
    for trace in &traces {
        closes += trace.closes;
        for (at, ms) in &trace.trips {
            if first.is_some_and(|f| *at < f) {
                before.push(*ms);
            } else if last.is_some_and(|l| *at > l + steady / 4) {
                after.push(*ms);
            }
        }
        for (begun, ended) in &windows {
            // The longest gap between round trips that touches this upgrade's window.
            let gap = trace
                .trips
                .windows(2)
                .filter(|w| w[1].0 >= *begun && w[0].0 <= *ended)
                .map(|w| w[1].0.duration_since(w[0].0).as_secs_f64() * 1000.0)
                .fold(0.0, f64::max);
            gaps.push(gap);
        }
    }
    report.latency(
        S,
        &format!("relay round trip before upgrades ({rooms} rooms)"),
        Latency::of(before),
    );
    report.latency(S, "relay round trip after upgrades", Latency::of(after));
    report.latency(
        S,
        "relay pause per room and upgrade (longest gap between round trips)",
        Latency::of(gaps),
    );
    report.latency(
        S,
        "server pause, commit to serving (its own figure)",
        Latency::of(pauses),
    );
    report.value(S, "upgrades", upgrades as f64, "count");
    report.value(
        S,
        "room sockets closed by upgrades (pairs rejoined)",
        closes as f64,
        "count",
    );
    report.value(S, "new connections refused or failed", failures.len() as f64, "count");
    report.value(S, "new connections answered", answered as f64, "count");
    report.value(
        S,
        &format!("orbs the same process after every upgrade (of {})", orbs_before.len()),
        kept as f64,
        "count",
    );
    report.value(S, "orbs started during the upgrades", started as f64, "count");
}

/// Each room's orb process, as the records say.
fn orb_pids(server: &InstalledServer) -> std::collections::BTreeMap<String, u64> {
    let (_, list) = server.api("GET", "/api/orbs", None);
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| Some((r["room"].as_str()?.to_owned(), r["pid"].as_u64()?)))
        .collect()
}

/// The rooms' orbs once `rooms` of them are ready (or after 60 s, those that are).
async fn ready_orbs(server: &InstalledServer, rooms: usize) -> std::collections::BTreeMap<String, u64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, list) = server.api("GET", "/api/orbs", None);
        let ready: std::collections::BTreeMap<String, u64> = list
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["state"] == "ready")
            .filter_map(|r| Some((r["room"].as_str()?.to_owned(), r["pid"].as_u64()?)))
            .collect();
        if ready.len() >= rooms || Instant::now() > deadline {
            return ready;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
