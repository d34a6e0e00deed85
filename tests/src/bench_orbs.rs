//! Suite scenarios about orb supervision: memory, scale, churn, kill isolation.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::bench_kit::{CpuMeter, Latency, Report, fd_count, metric, rss_mib};
use crate::bench_server::{api, spawn_orb, start, wait_ready};
use crate::manager_kit::{orb_groups_with_prefix, orb_pids};

/// RSS of an idle cpu-server and of an idle test-mode orb.
pub fn memory(report: &mut Report) {
    let server = start(&[]);
    std::thread::sleep(Duration::from_secs(2));
    let pid = server.proc.pid() as i32;
    report.value("memory", "cpu-server idle RSS", rss_mib(pid), "MiB");
    if !spawn_orb(server.port, "mem-idle") {
        report.note("memory", "orb spawn refused");
        return;
    }
    if wait_ready(server.port, 1, Duration::from_secs(20)).is_err() {
        report.note("memory", "orb not ready within 20 s");
        return;
    }
    std::thread::sleep(Duration::from_secs(3));
    match orb_pids("mem-idle").first() {
        Some(orb) => report.value("memory", "gpu-orb idle RSS (test mode)", rss_mib(*orb), "MiB"),
        None => report.note("memory", "orb process not found"),
    }
    report.value("memory", "cpu-server RSS with one orb", rss_mib(pid), "MiB");
}

/// N real orbs at once with 1 s heartbeats.
pub fn scale(report: &mut Report, sizes: &[usize], steady: Duration) {
    for &n in sizes {
        let max = (n + 10).to_string();
        let server = start(&[
            ("MAX_CONCURRENT_ORBS", &max),
            ("ORB_HEALTH_CHECK_INTERVAL", "1000"),
            ("IDLE_TIMEOUT", "3600000"),
            ("ORB_READY_TIMEOUT", "120000"),
            ("ORB_STOP_GRACE", "10000"),
        ]);
        let port = server.port;
        let pid = server.proc.pid() as i32;
        let tag = format!("scale-{n}");
        let started = Instant::now();
        let refused = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let refused = refused.clone();
                std::thread::spawn(move || {
                    for i in (t..n).step_by(4) {
                        if !spawn_orb(port, &format!("scale{n}x{i}")) {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            let _ = t.join();
        }
        let reached = wait_ready(port, n, Duration::from_secs(240));
        let ready_now = crate::bench_server::count_state(port, "ready");
        match reached {
            Ok(_) => report.value(&tag, "time to N ready orbs", started.elapsed().as_secs_f64(), "s"),
            Err(got) => {
                report.note(
                    &tag,
                    &format!(
                        "only {got} of {n} ready after 240 s ({} spawn requests refused)",
                        refused.load(Ordering::Relaxed)
                    ),
                );
            }
        }
        // Let start-up settle, then measure a steady window.
        std::thread::sleep(Duration::from_secs(2));
        let before = crate::bench_server::metrics(port);
        let meter = CpuMeter::start(vec![pid]);
        std::thread::sleep(steady);
        let cpu = meter.percent();
        let after = crate::bench_server::metrics(port);
        let beats = metric(&after, "cpu_server_orb_heartbeats") - metric(&before, "cpu_server_orb_heartbeats");
        let expected = ready_now as f64 * steady.as_secs_f64();
        report.value(&tag, "orbs ready", ready_now as f64, "orbs");
        report.value(&tag, "cpu-server CPU at steady state", cpu, "% of one core");
        report.value(&tag, "cpu-server RSS at steady state", rss_mib(pid), "MiB");
        report.value(
            &tag,
            "heartbeats received / expected (1 s period)",
            beats / expected.max(1.0),
            "ratio",
        );
        let restarts = metric(&after, "cpu_server_orb_restarts");
        let unresponsive: f64 = after
            .lines()
            .filter(|l| l.starts_with("cpu_server_orb_kills") && l.contains("unresponsive"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        report.value(
            &tag,
            "missed heartbeats (restarts + unresponsive kills)",
            restarts + unresponsive,
            "count",
        );
        let kill_start = Instant::now();
        let (status, _) = api(port, "DELETE", "/api/orbs", None);
        let kill_time = kill_start.elapsed().as_secs_f64();
        report.value(&tag, &format!("kill-all time (HTTP {status})"), kill_time, "s");
        let gone = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(100));
            orb_groups_with_prefix(&format!("scale{n}x")) == 0
        });
        if !gone {
            report.note(&tag, "orb processes left 10 s after kill-all");
        }
    }
}

/// Spawn → ready → kill cycles through the admin API, `workers` rooms at once.
pub async fn churn(report: &mut Report, cycles: usize, workers: usize) {
    let server = start(&[("MAX_CONCURRENT_ORBS", "64"), ("IDLE_TIMEOUT", "3600000")]);
    let port = server.port;
    let pid = server.proc.pid() as i32;
    let run = |count: usize, prefix: &'static str| {
        let url_base = server.url("");
        async move {
            let done = Arc::new(AtomicU64::new(0));
            let mut tasks = Vec::new();
            for w in 0..workers {
                let room = format!("{prefix}{w}");
                let url = format!("{url_base}{room}");
                let done = done.clone();
                tasks.push(tokio::spawn(async move {
                    let Ok((mut human, _)) = tokio::time::timeout(
                        Duration::from_secs(10),
                        crate::ws::Client::join(&url, "human", "client"),
                    )
                    .await
                    else {
                        return;
                    };
                    for _ in (w..count).step_by(workers) {
                        let r = room.clone();
                        if !tokio::task::spawn_blocking(move || spawn_orb(port, &r))
                            .await
                            .unwrap_or(false)
                        {
                            return;
                        }
                        let joined = async {
                            loop {
                                match human.try_recv_type("user-joined", Duration::from_secs(15)).await {
                                    Some(v) if v["participantType"] == "ai" => return true,
                                    Some(_) => continue,
                                    None => return false,
                                }
                            }
                        };
                        if !joined.await {
                            return;
                        }
                        let r = room.clone();
                        let _ =
                            tokio::task::spawn_blocking(move || api(port, "DELETE", &format!("/api/orbs/{r}"), None))
                                .await;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    human.close().await;
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
            done.load(Ordering::Relaxed)
        }
    };
    // Warm-up: allocator and tables reach their working size.
    run(workers * 5, "churnwarm").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (fd0, rss0) = (fd_count(pid), rss_mib(pid));
    let started = Instant::now();
    let done = run(cycles, "churn").await;
    let secs = started.elapsed().as_secs_f64();
    report.value(
        "churn",
        &format!("cycles done ({workers} rooms at once)"),
        done as f64,
        "cycles",
    );
    report.value(
        "churn",
        "spawn -> ready -> kill cycles per second",
        done as f64 / secs,
        "cycles/s",
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let zombies = crate::procfs::zombie_children(pid).len();
    let left = orb_groups_with_prefix("churn");
    report.value("churn", "zombies after", zombies as f64, "count");
    report.value("churn", "orb processes left after", left as f64, "count");
    report.value(
        "churn",
        &format!("cpu-server fds before -> after ({fd0} -> n)"),
        fd_count(pid) as f64,
        "fds",
    );
    report.value(
        "churn",
        &format!("cpu-server RSS before -> after ({rss0:.1} -> n)"),
        rss_mib(pid),
        "MiB",
    );
}

/// Relay p99 in `busy` rooms with and without other rooms' orbs being killed and restarted.
pub async fn isolation(report: &mut Report, busy: usize, victims: usize, window: Duration) {
    let server = start(&[
        ("MAX_CONCURRENT_ORBS", "64"),
        ("IDLE_TIMEOUT", "3600000"),
        ("ORB_MAX_RESTARTS", "1000"),
    ]);
    let port = server.port;
    for i in 0..victims {
        let room = format!("victim{i}");
        let _ = tokio::task::spawn_blocking(move || spawn_orb(port, &room)).await;
    }
    let ready = tokio::task::spawn_blocking(move || wait_ready(port, victims, Duration::from_secs(60))).await;
    if !matches!(ready, Ok(Ok(_))) {
        report.note("isolation", "victim orbs not all ready within 60 s");
    }
    let msg = crate::bench_peers::message_256();
    let mut phases = Vec::new();
    let dir = tempfile::tempdir().expect("tempdir");
    for with_kills in [false, true] {
        let urls: Vec<String> = (0..busy).map(|i| server.url(&format!("busy{with_kills}{i}"))).collect();
        let (_responders, sockets) = match crate::bench_peers::relay_pairs(dir.path(), &urls).await {
            Ok(pairs) => pairs,
            Err(e) => {
                report.note("isolation", &e);
                return;
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let kills = Arc::new(AtomicU64::new(0));
        let driver = with_kills.then(|| {
            let (stop, kills) = (stop.clone(), kills.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(120);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    // Paced: each victim room is killed and restarted once per second.
                    let round = Instant::now();
                    for i in 0..victims {
                        let room = format!("victim{i}");
                        // Alternate SIGKILL (the manager restarts it) and an admin kill + spawn.
                        if kills.load(Ordering::Relaxed) % 2 == 0 {
                            api(port, "DELETE", &format!("/api/orbs/{room}"), None);
                        } else if let Some(pid) = api(port, "GET", &format!("/api/orbs/{room}"), None).1["pid"].as_i64()
                        {
                            let _ = nix::sys::signal::killpg(
                                nix::unistd::Pid::from_raw(pid as i32),
                                nix::sys::signal::Signal::SIGKILL,
                            );
                        }
                        spawn_orb(port, &room);
                        kills.fetch_add(1, Ordering::Relaxed);
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                    }
                    std::thread::sleep(Duration::from_secs(1).saturating_sub(round.elapsed()));
                }
            })
        });
        let (_, rtts) = crate::bench_peers::ping_pong(sockets, &msg, window).await;
        stop.store(true, Ordering::Relaxed);
        if let Some(d) = driver {
            let _ = tokio::task::spawn_blocking(move || d.join()).await;
        }
        let lat = Latency::of(rtts);
        let name = if with_kills {
            format!(
                "relay RTT, {busy} busy rooms, {} orb kills+restarts",
                kills.load(Ordering::Relaxed)
            )
        } else {
            format!("relay RTT, {busy} busy rooms, no kills")
        };
        report.latency("isolation", &name, lat);
        phases.push(lat.p99);
    }
    if let [quiet, noisy] = phases[..] {
        report.value("isolation", "p99 with kills / p99 without", noisy / quiet, "ratio");
    }
}
