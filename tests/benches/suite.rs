//! The benchmark suite: every figure of docs/PERFORMANCE.md, each measured in
//! the same run as its reference so that ratios hold on a noisy machine.
//!
//! Drives the release binaries (build them first: `cargo build --release --workspace --bins`).
//!
//! Usage: `cargo bench -p system-tests --bench suite -- [SCENARIO...] [--quick]`
//! Scenarios: spawn relay throughput ai memory scale connections churn isolation media voice slurm warm upgrade
//! (none named: all). Prints a table and writes `target/bench-suite.json`.

use std::time::{Duration, Instant};

use serde_json::json;
use system_tests::bench_kit::{Latency, Report, machine, node_spawn_ms, raise_nofile, ready_ms, trivial_spawn_ms};
use system_tests::bench_peers::{self, message_256, relay_pairs, round_trips, start_echo, start_nginx};
use system_tests::bench_server::start;
use system_tests::ws::Client;

const ALL: [&str; 14] = [
    "spawn",
    "relay",
    "throughput",
    "ai",
    "memory",
    "scale",
    "connections",
    "churn",
    "isolation",
    "media",
    "voice",
    "slurm",
    "warm",
    "upgrade",
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--echo-server") {
        bench_peers::run_echo_server(args.get(i + 1).map_or("127.0.0.1:0", String::as_str));
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--responders") {
        bench_peers::run_responders(&args[i + 1..]);
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let named: Vec<&str> = args.iter().map(String::as_str).filter(|a| ALL.contains(a)).collect();
    let unknown: Vec<&String> = args
        .iter()
        .filter(|a| !a.starts_with("--") && !ALL.contains(&a.as_str()))
        .collect();
    if !unknown.is_empty() {
        eprintln!("unknown scenario(s) {unknown:?}; known: {ALL:?}");
        std::process::exit(64);
    }
    let scenarios: Vec<&str> = if named.is_empty() { ALL.to_vec() } else { named };
    let nofile = raise_nofile(500_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let target = system_tests::binaries::target_dir();
    println!(
        "bench suite {scenarios:?}{} — binaries from {}, ulimit -n {nofile}",
        if quick { " (quick)" } else { "" },
        target.display()
    );
    let machine_at_start = machine();
    let mut report = Report::default();
    let begun = Instant::now();
    for scenario in &scenarios {
        let t = Instant::now();
        match *scenario {
            "spawn" => spawn(&mut report, &runtime, if quick { 30 } else { 100 }),
            "relay" => runtime.block_on(relay(&mut report, if quick { 2_000 } else { 10_000 })),
            "throughput" => runtime.block_on(throughput(&mut report, secs(if quick { 3 } else { 10 }))),
            "ai" => runtime.block_on(ai(&mut report, if quick { 200 } else { 1_000 })),
            "memory" => system_tests::bench_orbs::memory(&mut report),
            "scale" => {
                let sizes: &[usize] = if quick { &[100] } else { &[100, 500, 1000] };
                system_tests::bench_orbs::scale(&mut report, sizes, secs(if quick { 5 } else { 10 }));
            }
            "connections" => runtime.block_on(connections(&mut report, if quick { 2_000 } else { 10_000 })),
            "churn" => runtime.block_on(system_tests::bench_orbs::churn(
                &mut report,
                if quick { 200 } else { 1_000 },
                4,
            )),
            "isolation" => runtime.block_on(system_tests::bench_orbs::isolation(
                &mut report,
                20,
                20,
                secs(if quick { 3 } else { 10 }),
            )),
            "media" => system_tests::bench_media::media(&mut report, quick),
            "voice" => system_tests::bench_voice::voice(&mut report, quick),
            "slurm" => system_tests::bench_slurm::slurm(&mut report, &runtime, if quick { 10 } else { 20 }),
            "warm" => system_tests::bench_warm::warm(&mut report, &runtime, if quick { 30 } else { 100 }),
            "upgrade" => runtime.block_on(system_tests::bench_upgrade::upgrade(
                &mut report,
                if quick { 5 } else { 20 },
                if quick { 2 } else { 4 },
                secs(if quick { 1 } else { 3 }),
            )),
            _ => {}
        }
        println!("{scenario:<12} ({:.1} s)", t.elapsed().as_secs_f64());
    }
    let meta = json!({
        "machine": machine_at_start,
        "quick": quick,
        "scenarios": scenarios,
        "seconds": begun.elapsed().as_secs_f64(),
        "loadavg_at_end": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
    });
    let out = target.parent().unwrap_or(&target).join("bench-suite.json");
    let text = serde_json::to_string_pretty(&report.json(meta)).unwrap_or_default();
    match std::fs::write(&out, text) {
        Ok(()) => println!("written {}", out.display()),
        Err(e) => eprintln!("cannot write {}: {e}", out.display()),
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Coach join → AI `user-joined`, spawn → `orb_ready`, against fork/exec and Node.
fn spawn(report: &mut Report, runtime: &tokio::runtime::Runtime, rooms: usize) {
    let trivial: Vec<f64> = (0..rooms).filter_map(|_| trivial_spawn_ms()).collect();
    let node: Vec<f64> = (0..rooms.min(50)).filter_map(|_| node_spawn_ms()).collect();
    let server = start(&[("ORB_SPAWN_ON", "coach"), ("RUST_LOG", "info")]);
    let joined: Vec<f64> = runtime.block_on(async {
        let mut out = Vec::new();
        for i in 0..rooms {
            let Ok(mut coach) = Client::connect(&server.url(&format!("bench{i}"))).await else {
                continue;
            };
            let start = Instant::now();
            coach
                .send(json!({"type":"join","userId":"coach","userName":"c","userRole":"coach"}))
                .await;
            let mut ok = false;
            while let Some(frame) = coach.try_recv_type("user-joined", Duration::from_secs(15)).await {
                if frame["participantType"] == "ai" {
                    ok = true;
                    break;
                }
            }
            if ok {
                out.push(start.elapsed().as_secs_f64() * 1000.0);
            }
            coach.close().await;
            // Sequential rooms: wait for this orb to go before the next one.
            system_tests::wait::until_true(Duration::from_secs(10), || {
                system_tests::manager_kit::orb_pids(&format!("bench{i}")).is_empty()
            })
            .await;
        }
        out
    });
    let ready = ready_ms(&server.proc.stderr());
    let (j, r, t, n) = (
        Latency::of(joined),
        Latency::of(ready),
        Latency::of(trivial),
        Latency::of(node),
    );
    report.latency("spawn", "coach join -> AI user-joined (cpu-server + gpu-orb)", j);
    report.latency("spawn", "spawn -> orb_ready over IPC (server log ready_ms)", r);
    report.latency("spawn", "reference: fork/exec echo, one line on a pipe", t);
    report.latency("spawn", "reference: node child, orb_ready over IPC", n);
    report.value(
        "spawn",
        "node median / orb_ready median",
        n.median / r.median,
        "x faster",
    );
    report.value(
        "spawn",
        "node median / AI user-joined median",
        n.median / j.median,
        "x faster",
    );
}

/// 256-byte round trips: cpu-server relay, direct echo, echo through nginx; interleaved rounds.
async fn relay(report: &mut Report, count: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(&[]);
    let (_echo, echo_port) = start_echo(dir.path());
    let nginx = start_nginx(dir.path(), echo_port);
    let msg = message_256();
    let (_responders, mut pairs) = relay_pairs(dir.path(), &[server.url("relay")])
        .await
        .expect("relay pair");
    let mut relay_ws = pairs.pop().expect("one pair");
    let mut echo_ws = bench_peers::connect(&format!("ws://127.0.0.1:{echo_port}/"))
        .await
        .expect("echo");
    let mut nginx_ws = match &nginx {
        Ok((_, port)) => Some(
            bench_peers::connect(&format!("ws://127.0.0.1:{port}/"))
                .await
                .expect("nginx"),
        ),
        Err(e) => {
            report.note("relay", e);
            None
        }
    };
    let (mut r, mut e, mut n) = (Vec::new(), Vec::new(), Vec::new());
    let rounds = 10;
    for _ in 0..rounds {
        r.extend(round_trips(&mut relay_ws, &msg, 50, count / rounds).await);
        e.extend(round_trips(&mut echo_ws, &msg, 50, count / rounds).await);
        if let Some(ws) = nginx_ws.as_mut() {
            n.extend(round_trips(ws, &msg, 50, count / rounds).await);
        }
    }
    let (r, e, n) = (Latency::of(r), Latency::of(e), Latency::of(n));
    report.latency("relay", "cpu-server: A -> server -> B -> server -> A", r);
    report.latency("relay", "reference: direct echo (client -> echo -> client)", e);
    report.latency("relay", "reference: nginx proxy -> echo -> nginx -> client", n);
    report.value(
        "relay",
        "cpu-server median / nginx median",
        r.median / n.median,
        "ratio",
    );
    report.value("relay", "cpu-server p99 / nginx p99", r.p99 / n.p99, "ratio");
}

/// 50 rooms ping-ponging for `window`: messages/s and server CPU, against echo and nginx.
async fn throughput(report: &mut Report, window: Duration) {
    let rooms = 50;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(&[]);
    let (echo, echo_port) = start_echo(dir.path());
    let nginx = start_nginx(dir.path(), echo_port);
    let msg = message_256();
    let mut targets: Vec<(String, Vec<i32>, Vec<bench_peers::Ws>)> = Vec::new();
    let urls: Vec<String> = (0..rooms).map(|i| server.url(&format!("tp{i}"))).collect();
    let (responders, pairs) = relay_pairs(dir.path(), &urls).await.expect("relay pairs");
    targets.push((
        "cpu-server relay (A -> server -> B -> server -> A)".into(),
        vec![server.proc.pid() as i32],
        pairs,
    ));
    let mut echoes = Vec::new();
    for _ in 0..rooms {
        if let Ok(ws) = bench_peers::connect(&format!("ws://127.0.0.1:{echo_port}/")).await {
            echoes.push(ws);
        }
    }
    targets.push(("reference: direct echo".into(), vec![echo.pid() as i32], echoes));
    match &nginx {
        Ok((proc, port)) => {
            let mut via = Vec::new();
            for _ in 0..rooms {
                if let Ok(ws) = bench_peers::connect(&format!("ws://127.0.0.1:{port}/")).await {
                    via.push(ws);
                }
            }
            let master = proc.pid() as i32;
            let mut pids = vec![master];
            pids.extend(system_tests::procfs::descendants(master).iter().map(|p| p.pid));
            targets.push(("reference: nginx proxy -> echo".into(), pids, via));
        }
        Err(e) => report.note("throughput", e),
    }
    let mut rates = Vec::new();
    for (name, pids, sockets) in targets {
        let n = sockets.len();
        let meter = system_tests::bench_kit::CpuMeter::start(pids);
        let peer = if name.starts_with("cpu-server") {
            responders.pid()
        } else {
            echo.pid()
        };
        let peer_meter = system_tests::bench_kit::CpuMeter::start(vec![peer as i32]);
        let start = Instant::now();
        let (trips, _) = bench_peers::ping_pong(sockets, &msg, window).await;
        let secs = start.elapsed().as_secs_f64();
        let rate = trips as f64 * 2.0 / secs;
        report.value("throughput", &format!("{name}, {n} rooms: messages/s"), rate, "msg/s");
        report.value("throughput", &format!("{name}: CPU"), meter.percent(), "% of one core");
        let peer_name = if name.starts_with("cpu-server") {
            "  (B responders process: CPU)"
        } else {
            "  (echo peer: CPU)"
        };
        report.value("throughput", peer_name, peer_meter.percent(), "% of one core");
        rates.push(rate);
    }
    if let [relay, _, nginx] = rates[..] {
        report.value("throughput", "cpu-server msg/s / nginx msg/s", relay / nginx, "ratio");
    }
}

/// `say` → `ai_response` through a real test-mode orb.
async fn ai(report: &mut Report, count: usize) {
    let server = start(&[("ORB_SPAWN_ON", "coach")]);
    let (mut coach, _) = Client::join(&server.url("ai-path"), "coach", "coach").await;
    let _ = coach.recv_type("user-joined", Duration::from_secs(20)).await;
    let mut samples = Vec::with_capacity(count);
    for i in 0..count + 20 {
        let start = Instant::now();
        coach
            .send(json!({"type":"ai_control","action":"say","text":format!("hello {i}")}))
            .await;
        if coach
            .try_recv_type("ai_response", Duration::from_secs(10))
            .await
            .is_none()
        {
            report.note("ai", &format!("no ai_response to say #{i}"));
            break;
        }
        if i >= 20 {
            samples.push(start.elapsed().as_secs_f64() * 1000.0);
        }
    }
    report.latency(
        "ai",
        "say -> ai_response (coach -> server -> orb -> server -> coach)",
        Latency::of(samples),
    );
}

/// `count` idle joined sockets across 1,000 rooms: server RSS per connection.
async fn connections(report: &mut Report, count: usize) {
    let server = start(&[("MAX_ROOM_PARTICIPANTS", "64"), ("WS_PING_INTERVAL", "30000")]);
    let pid = server.proc.pid() as i32;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = system_tests::procfs::rss_bytes(pid).unwrap_or(0);
    let started = Instant::now();
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let url = server.url(&format!("conn{}", i % 1000));
        let limit = limit.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = limit.acquire_owned().await.ok()?;
            bench_peers::join(&url, &format!("u{i}"), "client").await.ok()
        }));
    }
    let mut sockets = Vec::with_capacity(count);
    for t in tasks {
        if let Ok(Some(ws)) = t.await {
            sockets.push(ws);
        }
    }
    let connect_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = system_tests::procfs::rss_bytes(pid).unwrap_or(0);
    let n = sockets.len();
    report.value("connections", "idle joined sockets held", n as f64, "sockets");
    report.value("connections", "time to open and join them", connect_secs, "s");
    report.value("connections", "cpu-server RSS before", before as f64 / 1048576.0, "MiB");
    report.value(
        "connections",
        "cpu-server RSS with the sockets",
        after as f64 / 1048576.0,
        "MiB",
    );
    report.value(
        "connections",
        "cpu-server RSS per idle connection",
        after.saturating_sub(before) as f64 / n.max(1) as f64 / 1024.0,
        "KiB",
    );
    drop(sockets);
}
