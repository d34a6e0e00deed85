//! Spawn benchmark: how fast a room gets its AI.
//!
//! Drives the real release binaries (build them first:
//! `cargo build --release --workspace --bins`), sequentially over N rooms:
//! - coach `join` sent → coach receives `user-joined` for the AI (through the server);
//! - process spawn → `orb_ready` over IPC, as the server logs it (`ready_ms`);
//! - references: fork/exec of a trivial program writing one line to a pipe, and a
//!   minimal Node child sending `orb_ready` over Node's IPC channel (the old way).
//!
//! Usage: `cargo bench -p system-tests --bench spawn_ready -- [ROOMS]` (default 100).
//! Prints a table and writes `target/bench-spawn.json`.

use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use system_tests::room_harness::RoomServer;
use system_tests::ws::Client;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn summary(name: &str, mut samples: Vec<f64>) -> serde_json::Value {
    samples.sort_by(|a, b| a.total_cmp(b));
    let (median, p99) = (percentile(&samples, 50.0), percentile(&samples, 99.0));
    println!("{name:<44} {:>6} {median:>10.2} {p99:>10.2}", samples.len());
    serde_json::json!({"name": name, "n": samples.len(), "median_ms": median, "p99_ms": p99})
}

/// fork/exec of `echo` with a pipe, until its line is read.
fn trivial_spawn_ms() -> f64 {
    let start = Instant::now();
    let mut child = Command::new("echo")
        .arg("ready")
        .stdout(Stdio::piped())
        .spawn()
        .expect("echo");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    let elapsed = start.elapsed();
    let _ = child.wait();
    elapsed.as_secs_f64() * 1000.0
}

/// A Node child with an IPC channel at fd 3, until its `orb_ready` line arrives.
fn node_spawn_ms() -> Option<f64> {
    let (parent, child_end) = std::os::unix::net::UnixStream::pair().ok()?;
    // Let the child inherit its end (std marks descriptors close-on-exec).
    fcntl(&child_end, FcntlArg::F_SETFD(FdFlag::empty())).ok()?;
    let start = Instant::now();
    let mut child = Command::new("node")
        .args([
            "-e",
            "process.send({type:'orb_ready',roomId:'bench'}); process.disconnect();",
        ])
        .env("NODE_CHANNEL_FD", child_end.as_raw_fd().to_string())
        .stdout(Stdio::null())
        .spawn()
        .ok()?;
    drop(child_end);
    let mut line = String::new();
    parent.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    BufReader::new(&parent).read_line(&mut line).ok()?;
    let elapsed = start.elapsed();
    let _ = child.wait();
    line.contains("orb_ready").then_some(elapsed.as_secs_f64() * 1000.0)
}

fn main() {
    let rooms: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(100);
    let target = system_tests::binaries::target_dir();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!("spawn benchmark: {rooms} rooms, binaries from {}", target.display());

    let trivial: Vec<f64> = (0..rooms).map(|_| trivial_spawn_ms()).collect();
    let node: Vec<f64> = (0..rooms.min(50)).filter_map(|_| node_spawn_ms()).collect();

    let path = std::env::var("PATH").unwrap_or_default();
    let target_s = target.display().to_string();
    let server = RoomServer::start(&[
        ("PATH", &path),
        ("ORB_SPAWN_ON", "coach"),
        ("GPU_SERVER_PATH", &target_s),
        ("ROOM_EMPTY_GRACE", "0"),
        ("ORB_STOP_GRACE", "2000"),
        ("RUST_LOG", "info"),
    ]);
    let joined: Vec<f64> = runtime.block_on(async {
        let mut out = Vec::new();
        for i in 0..rooms {
            let url = server.url(&format!("bench{i}"));
            let mut coach = Client::connect(&url).await.expect("connect");
            let start = Instant::now();
            coach
                .send(serde_json::json!({"type":"join","userId":"coach","userName":"c","userRole":"coach"}))
                .await;
            loop {
                let frame = coach.recv(Duration::from_secs(15)).await;
                if frame["type"] == "user-joined" && frame["participantType"] == "ai" {
                    break;
                }
            }
            out.push(start.elapsed().as_secs_f64() * 1000.0);
            coach.close().await;
            // Sequential rooms: wait for this orb to go before the next one.
            system_tests::wait::until_true(Duration::from_secs(10), || {
                system_tests::procfs::with_arg(&format!("--room=bench{i}")).is_empty()
            })
            .await;
        }
        out
    });
    let log = server.proc.stderr();
    let ready: Vec<f64> = log
        .lines()
        .filter(|l| l.contains("orb ready"))
        .filter_map(|l| {
            let plain: String = strip_ansi(l);
            plain.split("ready_ms=").nth(1)?.split_whitespace().next()?.parse().ok()
        })
        .collect();

    println!("{:<44} {:>6} {:>10} {:>10}", "scenario", "n", "median ms", "p99 ms");
    let results = vec![
        summary("coach join -> AI user-joined (cpu-server)", joined),
        summary("spawn -> orb_ready over IPC (gpu-orb)", ready),
        summary("reference: fork/exec echo, line on a pipe", trivial),
        summary("reference: node child, orb_ready over IPC", node),
    ];
    let out = target.parent().unwrap_or(&target).join("bench-spawn.json");
    let _ = std::fs::write(&out, serde_json::to_string_pretty(&results).unwrap_or_default());
    println!("written {}", out.display());
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
