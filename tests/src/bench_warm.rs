//! The suite's `warm` scenario: coach `join` → the AI's `user-joined` with a
//! warm pool (`ORB_WARM_POOL=2`: a ready warm orb is given the room) against a
//! cold spawn, one room at a time, in the same run.

use std::time::{Duration, Instant};

use crate::bench_kit::{Latency, Report};
use crate::bench_server::{api, join_to_ai, start};

/// Measures `rooms` rooms with a warm pool and as many with cold spawns.
pub fn warm(report: &mut Report, runtime: &tokio::runtime::Runtime, rooms: usize) {
    let cold = start(&[("ORB_SPAWN_ON", "coach")]);
    let cold_ms = runtime.block_on(join_to_ai(&cold, "cold", rooms, |_| ()));
    drop(cold);
    let pooled = start(&[("ORB_SPAWN_ON", "coach"), ("ORB_WARM_POOL", "2")]);
    // Before each room the pool has a ready orb again (its refill is not measured).
    let warm_ms = runtime.block_on(join_to_ai(&pooled, "warm", rooms, wait_for_ready_member));
    let assigned = api(pooled.port, "GET", "/api/warm-pool", None).1["assignments"]
        .as_u64()
        .unwrap_or(0);
    let (w, c) = (Latency::of(warm_ms), Latency::of(cold_ms));
    report.latency("warm", "coach join -> AI user-joined, warm orb (ORB_WARM_POOL=2)", w);
    report.latency("warm", "reference: the same with a cold spawn", c);
    report.value("warm", "rooms that got a warm orb", assigned as f64, "rooms");
    report.value("warm", "cold median / warm median", c.median / w.median, "x faster");
}

/// Polls (every 5 ms, ≤ 10 s) until the pool has a ready member.
fn wait_for_ready_member(port: u16) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if api(port, "GET", "/api/warm-pool", None).1["ready"].as_u64() > Some(0) {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
