//! OrbManager end to end: the real cpu-server spawning real or fake orbs.
//!
//! Fake orbs are `sh` scripts (see `manager_kit`) so that each test controls
//! the misbehaviour it checks; process hygiene is checked from `/proc`.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;
use system_tests::manager_kit::{
    HEALTHY, grandchild_pid, orb_groups_with_prefix, orb_pids, orb_pids_with_prefix, path_env, replacement_orb,
    server_with_fake, server_with_real_orbs, single_orb, starts,
};
use system_tests::procfs;
use system_tests::room_harness::RoomServer;
use system_tests::wait::{until, until_true};
use system_tests::ws::Client;

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn coach_join_starts_a_real_orb_that_answers_through_the_server() {
    let server = server_with_real_orbs(&[]);
    let (mut coach, _) = Client::join(&server.url("r-real"), "coach-1", "coach").await;
    let joined = coach.recv_type("user-joined", 15 * SECOND).await;
    assert_eq!(joined["participantType"], "ai", "{joined}");
    assert_eq!(joined["userRole"], "ai");
    let pid = single_orb("r-real", 5 * SECOND).await;
    let argv = procfs::cmdline(pid);
    assert!(argv[0].ends_with("gpu-orb"), "{argv:?}");
    assert!(
        argv.iter().any(|a| a == "--session=" || a.starts_with("--session=")),
        "{argv:?}"
    );
    assert!(argv.iter().any(|a| a == "--coach=coach-1"), "{argv:?}");
    assert!(argv.iter().any(|a| a == "--test-mode"), "{argv:?}");
    coach
        .send(json!({"type":"ai_control","action":"say","text":"hello"}))
        .await;
    let reply = coach.recv_type("ai_response", 10 * SECOND).await;
    assert_eq!(reply["text"], "echo: hello");
    assert_eq!(reply["fromId"], joined["userId"]);
    // The coach leaves: after the (zero) grace the orb is stopped and gone.
    coach.close().await;
    assert!(
        until_true(10 * SECOND, || orb_pids("r-real").is_empty()).await,
        "orb outlived its room"
    );
}

#[tokio::test]
async fn a_client_alone_starts_no_orb_and_a_coach_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server_with_fake(dir.path(), HEALTHY, &[]);
    let (_client, _) = Client::join(&server.url("r-client"), "client-1", "client").await;
    // A window in which nothing may happen (no orb for a client alone).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(orb_pids("r-client").is_empty(), "a client alone must not start an orb");
    let (_coach, _) = Client::join(&server.url("r-client"), "coach-1", "coach").await;
    single_orb("r-client", 5 * SECOND).await;
}

#[tokio::test]
async fn sigkilled_orb_is_restarted_within_the_first_backoff() {
    let server = server_with_real_orbs(&[]);
    let (_coach, _) = Client::join(&server.url("r-kill"), "coach-1", "coach").await;
    let first = single_orb("r-kill", 10 * SECOND).await;
    kill(Pid::from_raw(first), Signal::SIGKILL).expect("kill orb");
    let started = Instant::now();
    let second = replacement_orb("r-kill", first, 10 * SECOND)
        .await
        .expect("a new orb after SIGKILL");
    assert_ne!(first, second);
    // First backoff is 0.5–0.75 s; allow for spawn time on a loaded machine.
    assert!(started.elapsed() < 5 * SECOND, "restart took {:?}", started.elapsed());
    assert!(
        procfs::zombie_children(server.proc.pid() as i32).is_empty(),
        "zombie left behind"
    );
}

#[tokio::test]
async fn sigstopped_orb_is_found_unresponsive_killed_and_restarted() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The fake notes that its orb_ready is written, so the SIGSTOP below lands
    // on a ready orb (stopped earlier, it would be killed for ready_timeout).
    let body = "ready\necho > \"$ORB_TEST_DIR/ready-$room\"\nwhile beat; do sleep 0.1; done\n";
    let server = server_with_fake(dir.path(), body, &[]);
    let (_coach, _) = Client::join(&server.url("r-stop"), "coach-1", "coach").await;
    let first = single_orb("r-stop", 5 * SECOND).await;
    assert!(
        until_true(5 * SECOND, || dir.path().join("ready-r-stop").exists()).await,
        "the fake orb never became ready"
    );
    kill(Pid::from_raw(first), Signal::SIGSTOP).expect("stop orb");
    let second = replacement_orb("r-stop", first, 10 * SECOND)
        .await
        .expect("the stopped orb was not replaced");
    assert_ne!(first, second);
    assert!(
        until_true(3 * SECOND, || procfs::stat(first).is_none()).await,
        "stopped orb still exists"
    );
    assert!(
        server.proc.stderr().contains("unresponsive"),
        "no unresponsive log line"
    );
}

#[tokio::test]
async fn an_orb_that_exits_at_once_is_parked_after_max_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server_with_fake(dir.path(), "exit 3\n", &[("ORB_MAX_RESTARTS", "3")]);
    let (mut coach, _) = Client::join(&server.url("r-loop"), "coach-1", "coach").await;
    let parked = coach.recv_type("ai_status", 30 * SECOND).await;
    assert_eq!(parked["status"], "error", "{parked}");
    assert_eq!(parked["code"], "orb_parked");
    // One first start and exactly ORB_MAX_RESTARTS restarts, then nothing more.
    assert_eq!(starts(dir.path(), "r-loop").len(), 4);
    // A window in which nothing may happen (a parked orb stays down).
    tokio::time::sleep(2 * SECOND).await;
    assert_eq!(starts(dir.path(), "r-loop").len(), 4, "parked orb was started again");
}

#[tokio::test]
async fn max_concurrent_orbs_is_never_exceeded_and_the_queue_is_served_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server_with_fake(dir.path(), HEALTHY, &[("MAX_CONCURRENT_ORBS", "2")]);
    let mut coaches = Vec::new();
    for i in 0..5 {
        let url = server.url(&format!("q{i}"));
        coaches.push(tokio::spawn(async move {
            Client::join(&url, &format!("coach-{i}"), "coach").await.0
        }));
    }
    let mut clients = Vec::new();
    for handle in coaches {
        clients.push(handle.await.expect("join"));
    }
    let mut peak = 0;
    let deadline = Instant::now() + 2 * SECOND;
    while Instant::now() < deadline {
        peak = peak.max(orb_groups_with_prefix("q"));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(peak, 2, "expected exactly 2 orbs alive at the peak");
    let running: Vec<usize> = (0..5).filter(|i| !orb_pids(&format!("q{i}")).is_empty()).collect();
    let mut queued: Vec<(u64, usize)> = Vec::new();
    for (i, client) in clients.iter_mut().enumerate() {
        if running.contains(&i) {
            continue;
        }
        let status = client.recv_type("ai_status", 5 * SECOND).await;
        assert_eq!(status["status"], "queued", "{status}");
        queued.push((status["position"].as_u64().expect("position"), i));
    }
    assert_eq!(queued.len(), 3);
    queued.sort();
    // Free slots one at a time: the coach of a running room leaves.
    let mut order = Vec::new();
    let mut to_free = running.clone();
    while order.len() < 3 {
        let room = to_free.pop().expect("a running room to free");
        let client = std::mem::replace(
            &mut clients[room],
            Client::connect(&server.url("idle")).await.expect("c"),
        );
        client.close().await;
        let next = until(10 * SECOND, || {
            queued
                .iter()
                .map(|(_, i)| *i)
                .find(|i| !order.contains(i) && !orb_pids(&format!("q{i}")).is_empty())
        })
        .await
        .unwrap_or_else(|| {
            let alive: Vec<_> = (0..5).map(|i| orb_pids(&format!("q{i}"))).collect();
            panic!(
                "no queued room got its orb after freeing q{room}; served {order:?}, queued {queued:?}, alive {alive:?}"
            )
        });
        order.push(next);
        if order.len() < 3 {
            to_free.push(next);
        }
        assert!(orb_groups_with_prefix("q") <= 2, "over the limit");
    }
    let expected: Vec<usize> = queued.iter().map(|(_, i)| *i).collect();
    assert_eq!(
        order,
        expected,
        "queued rooms must be served first in, first out; queued {queued:?}\n{}",
        server.proc.stderr()
    );
}

#[tokio::test]
async fn grandchildren_die_with_their_orb() {
    let dir = tempfile::tempdir().expect("tempdir");
    let body = r#"sleep 30 &
echo $! > "$ORB_TEST_DIR/grandchild"
ready
while beat; do sleep 0.1; done
"#;
    let server = server_with_fake(dir.path(), body, &[]);
    let (coach, _) = Client::join(&server.url("r-gc"), "coach-1", "coach").await;
    let orb = single_orb("r-gc", 5 * SECOND).await;
    let grandchild = grandchild_pid(dir.path()).await;
    assert_eq!(
        procfs::stat(grandchild).map(|s| s.pgrp),
        Some(orb),
        "grandchild is in the orb's group"
    );
    coach.close().await;
    assert!(
        until_true(10 * SECOND, || procfs::live_group_members(orb).is_empty()).await,
        "orb group survived: {:?}",
        procfs::live_group_members(orb)
    );
    assert!(
        procfs::stat(grandchild).is_none_or(|s| s.state == 'Z'),
        "grandchild survived"
    );
    let server_pid = server.proc.pid() as i32;
    assert!(
        until_true(5 * SECOND, || procfs::zombie_children(server_pid).is_empty()).await,
        "zombies left"
    );
}

#[tokio::test]
async fn a_grandchild_that_left_the_orbs_group_is_killed_and_reaped_by_the_server() {
    // `setsid` takes the grandchild out of the orb's process group and session:
    // the group kill misses it, it is re-parented to the server (child
    // subreaper), and the reaper must recognise it by the ORB_SUPERVISED marker.
    let dir = tempfile::tempdir().expect("tempdir");
    let body = r#"setsid sleep 300 &
echo $! > "$ORB_TEST_DIR/grandchild"
ready
while beat; do sleep 0.1; done
"#;
    let server = server_with_fake(dir.path(), body, &[]);
    let server_pid = server.proc.pid() as i32;
    let (coach, _) = Client::join(&server.url("r-escape"), "coach-1", "coach").await;
    let orb = single_orb("r-escape", 5 * SECOND).await;
    let grandchild = grandchild_pid(dir.path()).await;
    assert!(
        until_true(5 * SECOND, || procfs::stat(grandchild)
            .is_some_and(|s| s.pgrp == grandchild))
        .await,
        "the grandchild leads its own group: {:?}",
        procfs::stat(grandchild)
    );
    coach.close().await;
    assert!(
        until_true(10 * SECOND, || procfs::stat(orb).is_none()).await,
        "orb did not stop"
    );
    assert!(
        until_true(10 * SECOND, || procfs::stat(grandchild).is_none()).await,
        "the escaped grandchild survived (or stayed a zombie): {:?}",
        procfs::stat(grandchild)
    );
    assert!(
        until_true(5 * SECOND, || procfs::zombie_children(server_pid).is_empty()).await,
        "zombies left"
    );
}

#[tokio::test]
async fn an_orb_that_ignores_sigterm_is_sigkilled_after_the_grace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let body = r#"trap '' TERM
ready
while beat; do sleep 0.1; done
"#;
    let server = server_with_fake(dir.path(), body, &[]);
    let (coach, _) = Client::join(&server.url("r-term"), "coach-1", "coach").await;
    let orb = single_orb("r-term", 5 * SECOND).await;
    let started = Instant::now();
    coach.close().await;
    assert!(
        until_true(10 * SECOND, || procfs::stat(orb).is_none()).await,
        "orb survived the kill path"
    );
    // Stop grace 0.5 s + kill grace 0.5 s: SIGKILL came after SIGTERM was ignored.
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "killed too early: {:?}",
        started.elapsed()
    );
    assert!(
        server.proc.stderr().contains("ignored SIGTERM"),
        "{}",
        server.proc.stderr()
    );
}

#[tokio::test]
async fn orbs_die_when_the_server_is_sigkilled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server_with_fake(dir.path(), HEALTHY, &[]);
    let (_a, _) = Client::join(&server.url("r-dead-a"), "coach-a", "coach").await;
    let (_b, _) = Client::join(&server.url("r-dead-b"), "coach-b", "coach").await;
    single_orb("r-dead-a", 5 * SECOND).await;
    single_orb("r-dead-b", 5 * SECOND).await;
    server.proc.signal(Signal::SIGKILL);
    assert!(
        until_true(5 * SECOND, || orb_pids_with_prefix("r-dead-").is_empty()).await,
        "orbs outlived a SIGKILLed server: {:?}",
        orb_pids_with_prefix("r-dead-")
    );
}

#[tokio::test]
async fn sigterm_stops_every_orb_gracefully_and_exits_zero() {
    let mut server = server_with_real_orbs(&[]);
    let (mut a, _) = Client::join(&server.url("r-term-a"), "coach-a", "coach").await;
    let (mut b, _) = Client::join(&server.url("r-term-b"), "coach-b", "coach").await;
    a.recv_type("user-joined", 15 * SECOND).await;
    b.recv_type("user-joined", 15 * SECOND).await;
    let orbs = [
        single_orb("r-term-a", 5 * SECOND).await,
        single_orb("r-term-b", 5 * SECOND).await,
    ];
    server.proc.signal(Signal::SIGTERM);
    let status = server.wait_exit(20 * SECOND).await.expect("server exited");
    assert_eq!(status.code(), Some(0), "{}", server.proc.stderr());
    for orb in orbs {
        assert!(procfs::stat(orb).is_none(), "orb {orb} outlived the server");
    }
    // Graceful: each orb announced its shutdown to its room (`ai-orb-shutdown`,
    // which a SIGKILL never sends) and exited by itself with code 0.
    let left = a.try_recv_type("user-left", 2 * SECOND).await;
    assert!(
        left.is_some_and(|l| l["participantType"] == "ai"),
        "orb did not leave the room first"
    );
    let log = system_tests::bench_kit::strip_ansi(&server.proc.stderr());
    for room in ["r-term-a", "r-term-b"] {
        let announced = log
            .lines()
            .any(|l| l.contains("AI announced its shutdown") && l.contains(room) && l.contains("system_shutdown"));
        assert!(announced, "no ai-orb-shutdown from {room}:\n{log}");
    }
    let clean_exits = log
        .lines()
        .filter(|l| l.contains("orb exited") && l.contains("code=Some(0)") && l.contains("reason=system_shutdown"))
        .count();
    assert_eq!(clean_exits, 2, "both orbs exit 0 on their own:\n{log}");
}

#[tokio::test]
async fn two_hundred_spawn_kill_cycles_leak_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    // No stop grace: the fake orb does not read its channel, SIGTERM ends it at once.
    let server = server_with_fake(dir.path(), HEALTHY, &[("ORB_STOP_GRACE", "0")]);
    let server_pid = server.proc.pid() as i32;
    let (warm, _) = Client::join(&server.url("warmup"), "coach-w", "coach").await;
    single_orb("warmup", 5 * SECOND).await;
    warm.close().await;
    assert!(until_true(5 * SECOND, || orb_pids("warmup").is_empty()).await);
    let baseline = procfs::fds(server_pid).len();
    let server_fds: Vec<_> = procfs::fds(server_pid).into_iter().map(|(_, target)| target).collect();
    for cycle in 0..200 {
        let room = format!("churn{cycle}");
        let (coach, _) = Client::join(&server.url(&room), "coach-1", "coach").await;
        let orb = single_orb(&room, 5 * SECOND).await;
        if cycle == 0 {
            let fds = procfs::fds(orb);
            // The shell opens its own script after exec (not inherited): leave it out.
            let fds: Vec<_> = fds
                .into_iter()
                .filter(|(_, target)| !target.ends_with("fake-orb"))
                .collect();
            let numbers: Vec<i32> = fds.iter().map(|(n, _)| *n).collect();
            assert_eq!(numbers, [0, 1, 2, 3], "orb holds extra descriptors: {fds:?}");
            assert!(fds[0].1.ends_with("null"), "stdin is not /dev/null: {:?}", fds[0]);
            assert!(
                fds[3].1.to_string_lossy().starts_with("socket:"),
                "fd 3 is not the IPC socket"
            );
            for (_, target) in &fds[1..] {
                let shared_with_server = server_fds.contains(target) && !target.starts_with("/dev/");
                assert!(!shared_with_server, "orb holds a server descriptor: {target:?}");
            }
        }
        coach.close().await;
        assert!(
            until_true(5 * SECOND, || procfs::stat(orb).is_none_or(|s| s.state == 'Z')).await,
            "cycle {cycle}"
        );
    }
    assert!(
        until_true(5 * SECOND, || procfs::zombie_children(server_pid).is_empty()).await,
        "zombies left"
    );
    let after = until(5 * SECOND, || {
        let now = procfs::fds(server_pid).len();
        (now <= baseline + 2).then_some(now)
    })
    .await;
    assert!(
        after.is_some(),
        "server fds grew from {baseline} to {}",
        procfs::fds(server_pid).len()
    );
}

/// The descriptors `orb` holds, leaving out the script the shell opens itself after exec.
fn orb_descriptors(orb: i32) -> Vec<(i32, std::path::PathBuf)> {
    procfs::fds(orb)
        .into_iter()
        .filter(|(_, target)| !target.ends_with("fake-orb"))
        .collect()
}

#[tokio::test]
async fn a_descriptor_the_server_inherited_never_reaches_an_orb_with_or_without_close_range() {
    // The shell hands the server fd 7 without close-on-exec, as a careless
    // parent process would. `MUC_TEST_NO_CLOSE_RANGE=1` makes the orb's
    // pre-exec hook behave as on a kernel before 5.11 (no close_range CLOEXEC):
    // the one-by-one fallback must then mark fd 7 itself.
    for no_close_range in ["0", "1"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let program = system_tests::manager_kit::fake_orb(dir.path(), "fake-orb", HEALTHY);
        let (dir_s, program_s, path) = (
            dir.path().display().to_string(),
            program.display().to_string(),
            path_env(),
        );
        let server = RoomServer::start_through_shell(
            r#"exec 7</dev/null; exec "$0""#,
            &[
                ("PATH", &path),
                ("ORB_SPAWN_ON", "coach"),
                ("GPU_SERVER_PATH", &dir_s),
                ("ORB_COMMAND", &program_s),
                ("ORB_TEST_DIR", &dir_s),
                ("ORB_READY_TIMEOUT", "5000"),
                ("MUC_TEST_NO_CLOSE_RANGE", no_close_range),
            ],
        );
        let server_fds = procfs::fds(server.proc.pid() as i32);
        assert!(
            server_fds.iter().any(|(n, t)| *n == 7 && t.ends_with("null")),
            "needs root (the server is not dumpable, its /proc/<pid>/fd is root's):              the server should hold fd 7: {server_fds:?}"
        );
        let room = format!("r-fd-{no_close_range}");
        let (_coach, _) = Client::join(&server.url(&room), "coach-1", "coach").await;
        let orb = single_orb(&room, 5 * SECOND).await;
        // Read once the shell runs the script (its fds settled after exec).
        until_true(5 * SECOND, || {
            procfs::cmdline(orb).iter().any(|a| a.ends_with("fake-orb"))
        })
        .await;
        let fds = orb_descriptors(orb);
        let numbers: Vec<i32> = fds.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            numbers,
            [0, 1, 2, 3],
            "MUC_TEST_NO_CLOSE_RANGE={no_close_range}: the orb holds extra descriptors: {fds:?}"
        );
    }
}

#[tokio::test]
async fn orbs_get_only_allowlisted_environment_and_no_token_in_argv() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server_with_fake(
        dir.path(),
        HEALTHY,
        &[
            ("CANARY_SECRET", "canary-7f3a"),
            ("OPENAI_API_KEY", "sk-test"),
            ("ORB_ENV_PASSTHROUGH", "EXTRA_*"),
        ],
    );
    let _ = &server;
    let (_coach, _) = Client::join(&server.url("r-env"), "coach-1", "coach").await;
    let orb = single_orb("r-env", 5 * SECOND).await;
    let environ = procfs::environ(orb);
    assert!(
        !environ.iter().any(|v| v.contains("canary-7f3a")),
        "canary secret leaked: {environ:?}"
    );
    let names: Vec<&str> = environ.iter().filter_map(|v| v.split('=').next()).collect();
    for required in [
        "ROOM_ID",
        "SESSION_ID",
        "CPU_SERVER_HOST",
        "ORB_LOG_DIR",
        "ORB_HEARTBEAT_INTERVAL",
        "NODE_CHANNEL_FD",
    ] {
        assert!(names.contains(&required), "{required} missing: {names:?}");
    }
    assert!(names.contains(&"OPENAI_API_KEY"), "allowlisted OPENAI_* not passed");
    let token = environ
        .iter()
        .find_map(|v| v.strip_prefix("ORB_AUTH_TOKEN="))
        .expect("token");
    assert!(token.len() >= 32, "token too short: {token}");
    assert!(!procfs::cmdline(orb).iter().any(|a| a.contains(token)), "token in argv");
    assert!(environ.contains(&"ROOM_ID=r-env".to_owned()));
}

#[tokio::test]
async fn a_node_orb_is_supervised_over_node_ipc() {
    if std::process::Command::new("node").arg("--version").output().is_err() {
        panic!("node is required (tests/run.sh installs it)");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("aiorb.js");
    std::fs::write(
        &script,
        r#"const fs = require('fs');
const room = (process.argv.find(a => a.startsWith('--room=')) || '').slice(7);
const log = (line) => fs.appendFileSync(process.env.ORB_TEST_DIR + '/node-' + room, line + '\n');
process.send({ type: 'orb_ready', roomId: room });
const beat = setInterval(() => process.send({ type: 'orb_heartbeat', roomId: room, timestamp: Date.now(),
  metrics: { cpu: 0, memory: process.memoryUsage().rss / 1048576, latency: 0 } }), 100);
process.on('message', (m) => {
  log(JSON.stringify(m));
  if (m.type === 'shutdown_graceful') {
    process.send({ type: 'orb_shutdown', reason: m.reason });
    clearInterval(beat);
    setTimeout(() => process.exit(0), 50);
  }
});
"#,
    )
    .expect("write node orb");
    let dir_s = dir.path().display().to_string();
    let path = path_env();
    let server = RoomServer::start(&[
        ("PATH", &path),
        ("ORB_SPAWN_ON", "coach"),
        ("GPU_SERVER_PATH", &dir_s),
        ("ORB_COMMAND", "node aiorb.js"),
        ("ORB_TEST_DIR", &dir_s),
        ("ORB_HEALTH_CHECK_INTERVAL", "200"),
        ("ORB_UNRESPONSIVE_TIMEOUT", "2000"),
        ("ROOM_EMPTY_GRACE", "0"),
        ("ORB_STOP_GRACE", "3000"),
    ]);
    let (coach, _) = Client::join(&server.url("r-node"), "coach-1", "coach").await;
    let orb = single_orb("r-node", 10 * SECOND).await;
    assert!(procfs::cmdline(orb).iter().any(|a| a.ends_with("aiorb.js")));
    // Alive past the unresponsive timeout (a window in which no restart may
    // happen): its IPC heartbeats are being heard.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(orb_pids("r-node"), [orb], "node orb was restarted: heartbeats not seen");
    let (client, _) = Client::join(&server.url("r-node"), "client-1", "client").await;
    let log_path = dir.path().join("node-r-node");
    assert!(
        until_true(5 * SECOND, || std::fs::read_to_string(&log_path)
            .is_ok_and(|t| t.contains("participant_joined")))
        .await,
        "node orb did not receive participant_joined"
    );
    coach.close().await;
    client.close().await;
    assert!(
        until_true(10 * SECOND, || procfs::stat(orb).is_none()).await,
        "node orb not stopped"
    );
    let log = std::fs::read_to_string(&log_path).expect("node log");
    assert!(log.contains("\"type\":\"shutdown_graceful\""), "{log}");
    assert!(log.contains("room_empty_timeout"), "{log}");
}

#[tokio::test]
async fn a_second_signal_kills_every_orb_group_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let body = r#"trap '' TERM
sleep 30 &
echo $! > "$ORB_TEST_DIR/grandchild"
ready
while beat; do sleep 0.1; done
"#;
    // Long graces: only the second signal can end this orb quickly.
    let mut server = server_with_fake(
        dir.path(),
        body,
        &[("ORB_STOP_GRACE", "30000"), ("ORB_KILL_GRACE", "30000")],
    );
    let (_coach, _) = Client::join(&server.url("r-force"), "coach-1", "coach").await;
    let orb = single_orb("r-force", 5 * SECOND).await;
    let grandchild = grandchild_pid(dir.path()).await;
    server.proc.signal(Signal::SIGTERM);
    let draining = until_true(5 * SECOND, || server.proc.stderr().contains("stopping orb")).await;
    assert!(draining, "the drain started:\n{}", server.proc.stderr());
    assert!(procfs::stat(orb).is_some(), "the graceful stop should still be waiting");
    server.proc.signal(Signal::SIGTERM);
    let status = server
        .wait_exit(5 * SECOND)
        .await
        .expect("server exited after the second signal");
    assert_eq!(status.code(), Some(1));
    assert!(
        until_true(3 * SECOND, || procfs::live_group_members(orb).is_empty()).await,
        "orb group survived"
    );
    assert!(
        procfs::stat(grandchild).is_none_or(|s| s.state == 'Z'),
        "grandchild survived"
    );
}

/// The README's first command: no settings at all, orbs found next to the server, test mode.
#[tokio::test]
async fn built_in_defaults_run_test_mode_orbs_found_next_to_the_server() {
    let path = path_env();
    // RoomServer sets only CPU_HOST, ORB_LOG_DIR and RUST_LOG; ORB_SPAWN_ON back to its default.
    let server = RoomServer::start(&[("PATH", &path), ("ORB_SPAWN_ON", "coach")]);
    let (mut coach, _) = Client::join(&server.url("r-defaults"), "coach-1", "coach").await;
    let joined = coach.recv_type("user-joined", 15 * SECOND).await;
    assert_eq!(joined["participantType"], "ai", "{joined}");
    let orb = single_orb("r-defaults", 5 * SECOND).await;
    let argv = procfs::cmdline(orb);
    let expected = system_tests::binaries::target_dir().join("gpu-orb");
    assert_eq!(
        argv[0],
        expected.display().to_string(),
        "orb program next to the server"
    );
    assert!(
        argv.iter().any(|a| a == "--test-mode"),
        "no API key: test mode expected: {argv:?}"
    );
    coach
        .send(json!({"type":"ai_control","action":"say","text":"defaults"}))
        .await;
    assert_eq!(
        coach.recv_type("ai_response", 10 * SECOND).await["text"],
        "echo: defaults"
    );
}

#[tokio::test]
async fn an_orb_over_its_memory_limit_is_killed_and_restarted() {
    let dir = tempfile::tempdir().expect("tempdir");
    // About 64 MB held in a child of the orb: the limit applies to the whole tree. The
    // holder ends with its orb ($$ is the orb's pid in the subshell), so no run leaks it.
    let body = r#"ready
( big=$(head -c 67108864 /dev/zero | tr '\0' a); while kill -0 $$ 2>/dev/null; do sleep 1; done ) &
while beat; do sleep 0.1; done
"#;
    let server = server_with_fake(dir.path(), body, &[("ORB_MEMORY_LIMIT_MB", "32")]);
    let (_coach, _) = Client::join(&server.url("r-mem"), "coach-1", "coach").await;
    let first = single_orb("r-mem", 5 * SECOND).await;
    let replaced = replacement_orb("r-mem", first, 20 * SECOND).await;
    assert!(replaced.is_some(), "orb over its memory limit was not replaced");
    assert!(
        server.proc.stderr().contains("ORB_MEMORY_LIMIT_MB"),
        "no memory-limit log line:\n{}",
        server.proc.stderr()
    );
    assert!(
        procfs::live_group_members(first).is_empty(),
        "the killed orb's group survived"
    );
}

#[tokio::test]
async fn a_restarted_server_kills_what_a_sigkilled_one_left_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let body = r#"sleep 30 &
echo $! > "$ORB_TEST_DIR/grandchild"
ready
while beat; do sleep 0.1; done
"#;
    let first = server_with_fake(dir.path(), body, &[]);
    let port = first.port;
    let (_coach, _) = Client::join(&first.url("r-stray"), "coach-1", "coach").await;
    single_orb("r-stray", 5 * SECOND).await;
    let grandchild = grandchild_pid(dir.path()).await;
    first.proc.signal(Signal::SIGKILL);
    drop(first);
    // The orb died with its server; its grandchild was re-parented and lives on.
    assert!(until_true(5 * SECOND, || orb_pids("r-stray").is_empty()).await);
    assert!(
        procfs::stat(grandchild).is_some_and(|s| s.state != 'Z'),
        "grandchild should still run"
    );
    let path = path_env();
    let _second = RoomServer::start_on(port, &[("PATH", &path)]);
    assert!(
        until_true(5 * SECOND, || procfs::stat(grandchild).is_none_or(|s| s.state == 'Z')).await,
        "the new server did not sweep the stray process"
    );
}

#[tokio::test]
async fn a_coach_back_while_the_orb_is_stopping_gets_a_new_orb() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The fake orb does not read its channel: the stop waits the whole grace.
    let server = server_with_fake(dir.path(), HEALTHY, &[("ORB_STOP_GRACE", "1500")]);
    let (coach, _) = Client::join(&server.url("r-back"), "coach-1", "coach").await;
    let first = single_orb("r-back", 5 * SECOND).await;
    coach.close().await;
    // Back during the stop grace: the stopping orb is still there.
    let stopping = until_true(5 * SECOND, || server.proc.stderr().contains("stopping orb")).await;
    assert!(stopping, "the orb's stop began:\n{}", server.proc.stderr());
    let (_coach, _) = Client::join(&server.url("r-back"), "coach-1", "coach").await;
    assert_eq!(orb_pids("r-back"), [first], "the first orb should still be stopping");
    let second = replacement_orb("r-back", first, 10 * SECOND).await;
    assert!(
        second.is_some(),
        "the returning coach got no orb after the old one stopped"
    );
    assert!(
        procfs::stat(first).is_none_or(|s| s.state == 'Z'),
        "the stopped orb is still alive"
    );
}

// ---- Audit fixes (issue 13) ------------------------------------------------

/// Item 1: in a real call the humans talk over media and their signalling is
/// targeted, so nothing they send reaches the orb. With IDLE_TIMEOUT=1500 and
/// 4 s of targeted ice-candidates only, the AI stays (same pid, no user-left).
#[tokio::test]
async fn humans_exchanging_only_targeted_signalling_keep_their_ai() {
    let server = server_with_real_orbs(&[("IDLE_TIMEOUT", "1500")]);
    let url = server.url("r-live-call");
    let (mut coach, _) = Client::join(&url, "coach-1", "coach").await;
    let ai = coach.recv_type("user-joined", 15 * SECOND).await;
    let ai_id = ai["userId"].as_str().expect("ai id").to_owned();
    let pid = single_orb("r-live-call", 5 * SECOND).await;
    let (mut client, _) = Client::join(&url, "client-1", "client").await;
    let until = Instant::now() + 4 * SECOND;
    let mut ai_left = false;
    while Instant::now() < until {
        coach
            .send(json!({"type":"ice-candidate","toId":"client-1","candidate":{"candidate":"c"}}))
            .await;
        client
            .send(json!({"type":"ice-candidate","toId":"coach-1","candidate":{"candidate":"k"}}))
            .await;
        let frame = coach
            .try_recv_where(Duration::from_millis(200), |v| v["type"] == "user-left")
            .await;
        ai_left |= frame.is_some_and(|v| v["userId"] == ai_id.as_str());
    }
    assert!(!ai_left, "the AI left a live call");
    assert_eq!(orb_pids("r-live-call"), [pid], "the same orb is still there");
    // Nobody there: now it may go.
    coach.close().await;
    client.close().await;
    assert!(
        until_true(10 * SECOND, || orb_pids("r-live-call").is_empty()).await,
        "an orb in an empty room ends"
    );
}

/// Item 1: an orb with its own idle rule that ends with `idle_timeout` while
/// humans are present is restarted, and those restarts never park it.
#[tokio::test]
async fn an_orb_ending_itself_for_idleness_with_humans_present_is_restarted_not_parked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let body = r#"ready
beat
sleep 0.2
printf '{"type":"orb_shutdown","reason":"idle_timeout"}\n' >&3
exit 0
"#;
    let server = server_with_fake(dir.path(), body, &[("ORB_MAX_RESTARTS", "1")]);
    let (mut coach, _) = Client::join(&server.url("r-own-idle"), "coach-1", "coach").await;
    let restarted = until_true(20 * SECOND, || starts(dir.path(), "r-own-idle").len() >= 4).await;
    assert!(
        restarted,
        "starts: {:?}\n{}",
        starts(dir.path(), "r-own-idle"),
        server.proc.stderr()
    );
    let parked = coach
        .try_recv_where(Duration::from_millis(300), |v| v["code"] == "orb_parked")
        .await;
    assert!(
        parked.is_none(),
        "idle restarts counted toward the crash loop: {parked:?}"
    );
}

/// Item 1: `end_session` stays final, and the room is told why the AI left.
#[tokio::test]
async fn a_final_end_tells_the_room_why_the_ai_left() {
    let server = server_with_real_orbs(&[]);
    let (mut coach, _) = Client::join(&server.url("r-ended"), "coach-1", "coach").await;
    coach.recv_type("user-joined", 15 * SECOND).await;
    let pid = single_orb("r-ended", 5 * SECOND).await;
    coach.send(json!({"type":"ai_control","action":"end_session"})).await;
    let ended = coach
        .try_recv_where(10 * SECOND, |v| v["type"] == "ai_status" && v["status"] == "ended")
        .await
        .expect("ai_status ended");
    assert_eq!(ended["code"], "session_complete", "{ended}");
    assert!(ended["message"].as_str().is_some_and(|m| !m.is_empty()), "{ended}");
    assert!(until_true(5 * SECOND, || orb_pids("r-ended").is_empty()).await);
    // Final: not restarted while the coach is still there (a window where nothing may happen).
    tokio::time::sleep(2 * SECOND).await;
    assert!(
        orb_pids("r-ended").is_empty(),
        "orb {pid} was followed by a new one after a final end"
    );
}

/// Item 2: a human joining with the AI's userId (it is in `peer-discovery`)
/// is refused with `forbidden`, and the AI keeps its place.
#[tokio::test]
async fn a_human_joining_with_the_ai_user_id_is_refused_and_the_ai_stays() {
    let server = server_with_real_orbs(&[]);
    let url = server.url("r-impostor");
    let (mut coach, _) = Client::join(&url, "coach-1", "coach").await;
    let ai = coach.recv_type("user-joined", 15 * SECOND).await;
    let ai_id = ai["userId"].as_str().expect("ai id").to_owned();
    let pid = single_orb("r-impostor", 5 * SECOND).await;
    let mut impostor = Client::connect(&url).await.expect("connect");
    impostor
        .send(json!({"type":"join","userId":ai_id,"userName":"x","userRole":"client"}))
        .await;
    let refused = impostor.recv_type("error", 5 * SECOND).await;
    assert_eq!(refused["code"], "forbidden", "{refused}");
    // The socket carries on after the error.
    impostor.send(json!({"type":"ping"})).await;
    impostor.recv_type("pong", 5 * SECOND).await;
    // A window where nothing may happen: the AI is neither evicted nor replaced.
    let left = coach.try_recv_where(2 * SECOND, |v| v["type"] == "user-left").await;
    assert!(left.is_none(), "the AI was evicted: {left:?}");
    assert_eq!(orb_pids("r-impostor"), [pid]);
}

/// Item 3: a room-empty timer of an earlier absence does not cut a later one
/// short. Grace 3 s: leave at 0 s, back at 0.5 s, leave at 2 s: the orb must
/// be alive at 4 s (the old code stopped it at 3 s) and gone after 5 s.
#[tokio::test]
async fn a_coach_blip_does_not_cut_the_room_empty_grace_short() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server_with_fake(dir.path(), HEALTHY, &[("ROOM_EMPTY_GRACE", "3000")]);
    let url = server.url("r-blip");
    let (coach, _) = Client::join(&url, "coach-1", "coach").await;
    let pid = single_orb("r-blip", 5 * SECOND).await;
    let start = Instant::now();
    let at =
        |ms: u64| tokio::time::sleep((start + Duration::from_millis(ms)).saturating_duration_since(Instant::now()));
    coach.close().await;
    at(500).await;
    let (coach, _) = Client::join(&url, "coach-1", "coach").await;
    at(2000).await;
    coach.close().await;
    let left_at = start.elapsed();
    at(4000).await;
    assert_eq!(
        orb_pids("r-blip"),
        [pid],
        "stopped by the first absence's timer (last leave at {left_at:?})"
    );
    assert!(
        until_true(8 * SECOND, || orb_pids("r-blip").is_empty()).await,
        "stopped after the grace of the last absence"
    );
}

/// Item 7: allowlisted values of the server's `.env` reach orbs like
/// environment values (the environment wins where both set one).
#[tokio::test]
async fn dotenv_values_reach_orbs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = system_tests::manager_kit::fake_orb(dir.path(), "fake-orb", HEALTHY);
    let (dir_s, program_s, path) = (
        dir.path().display().to_string(),
        program.display().to_string(),
        path_env(),
    );
    let server = RoomServer::start_with_dotenv(
        &[
            ("PATH", &path),
            ("ORB_SPAWN_ON", "coach"),
            ("GPU_SERVER_PATH", &dir_s),
            ("ORB_COMMAND", &program_s),
            ("ORB_TEST_DIR", &dir_s),
            ("ORB_TEST_MODE", "true"),
            ("OPENAI_MODEL", "from-environment"),
        ],
        "OPENAI_API_KEY=sk-from-dotenv\nOPENAI_MODEL=from-dotenv\nJWT_SECRET_UNRELATED=x\n",
    );
    let (_coach, _) = Client::join(&server.url("r-dotenv"), "coach-1", "coach").await;
    let pid = single_orb("r-dotenv", 5 * SECOND).await;
    let environ = procfs::environ(pid);
    assert!(
        environ.iter().any(|v| v == "OPENAI_API_KEY=sk-from-dotenv"),
        "{environ:?}"
    );
    assert!(
        environ.iter().any(|v| v == "OPENAI_MODEL=from-environment"),
        "{environ:?}"
    );
    assert!(
        !environ.iter().any(|v| v.starts_with("JWT_SECRET_UNRELATED=")),
        "{environ:?}"
    );
}

/// Item 12: exit metrics are labelled from a closed set of causes, whatever
/// reason an orb announces.
#[tokio::test]
async fn exit_metric_labels_are_a_closed_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    let body = r#"ready
printf '{"type":"orb_shutdown","reason":"made-up-%s"}\n' "$$" >&3
exit 0
"#;
    let server = server_with_fake(dir.path(), body, &[("ADMIN_TOKEN", "t0ken-for-metrics-test")]);
    let (_coach, _) = Client::join(&server.url("r-labels"), "coach-1", "coach").await;
    assert!(until_true(10 * SECOND, || !starts(dir.path(), "r-labels").is_empty()).await);
    let scrape =
        || system_tests::operator_kit::request(server.port, "GET", "/metrics", Some("t0ken-for-metrics-test"), None).1;
    let text = until(10 * SECOND, || {
        let text = scrape();
        text.contains("orb_exits_total{cause=").then_some(text)
    })
    .await
    .expect("an exit counted");
    assert!(!text.contains("made-up"), "an orb-sent reason became a label:\n{text}");
    assert!(text.contains("orb_exits_total{cause=\"other\"}"), "{text}");
}

/// Item 4: a duration past the bound is refused at start (exit 64, naming
/// it); `0` turns the idle limit off.
#[tokio::test]
async fn huge_durations_are_refused_at_start_and_zero_idle_means_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = RoomServer::command(dir.path());
    command.env("CPU_HOST", format!("127.0.0.1:{}", system_tests::free_port()));
    command.env("IDLE_TIMEOUT", "99999999999");
    let out = tokio::time::timeout(10 * SECOND, tokio::process::Command::from(command).output())
        .await
        .expect("exits at once")
        .expect("ran");
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("IDLE_TIMEOUT") && stderr.contains("99999999999"),
        "{stderr}"
    );
    let server = server_with_real_orbs(&[("IDLE_TIMEOUT", "0")]);
    let (_coach, _) = Client::join(&server.url("r-idle-off"), "coach-1", "coach").await;
    let pid = single_orb("r-idle-off", 10 * SECOND).await;
    let argv = procfs::cmdline(pid);
    assert!(argv.iter().any(|a| a == "--idle-timeout=0"), "{argv:?}");
}

/// Item 4: the death of an actor is fatal and visible: the server exits
/// non-zero (so systemd restarts it) and takes its orbs with it, instead of
/// answering `/health` with no OrbManager behind it.
#[tokio::test]
async fn a_panicking_orb_manager_makes_the_server_exit_non_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = server_with_fake(dir.path(), HEALTHY, &[("MUC_FAILPOINT", "manager_panic_on_join")]);
    let mut coach = Client::connect(&server.url("r-panic")).await.expect("connect");
    coach
        .send(json!({"type":"join","userId":"coach-1","userName":"c","userRole":"coach"}))
        .await;
    let status = server.wait_exit(10 * SECOND).await.expect("the server exits");
    assert!(!status.success(), "exit status {status:?}");
    let stderr = server.proc.stderr();
    assert!(
        stderr.contains("orb manager") && stderr.contains("panicked"),
        "{stderr}"
    );
}
