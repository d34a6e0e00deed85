//! System tests of the real `gpu-orb` binary.
//!
//! Each test runs the built binary (`target/<profile>/gpu-orb`) against a fake
//! room server ([`FakeRoom`]) on 127.0.0.1 and, where IPC matters, with the
//! manager's end of a `NODE_CHANNEL_FD` socket pair ([`ManagerEnd`]). Every
//! process is held by a kill-on-drop [`Proc`] and every wait is bounded.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{Value, json};
use system_tests::binaries;
use system_tests::orb_chat_stub::ChatStub;
use system_tests::orb_fake_server::FakeRoom;
use system_tests::orb_ipc::{ManagerEnd, SPAWN_LOCK};
use system_tests::process::Proc;
use system_tests::{procfs, wait};
use tempfile::TempDir;

const WAIT: Duration = Duration::from_secs(10);

/// A running orb and the directory holding its output.
struct Orb {
    proc: Proc,
    dir: TempDir,
    started: Instant,
}

fn command(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Command {
    let mut command = Command::new(binaries::gpu_orb());
    command.args(args).env_clear().current_dir(dir);
    for (name, value) in envs {
        command.env(name, value);
    }
    command
}

fn spawn(name: &str, args: &[&str], envs: &[(&str, &str)]) -> Orb {
    let dir = tempfile::tempdir().expect("tempdir");
    let command = command(dir.path(), args, envs);
    let _lock = SPAWN_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let proc = Proc::spawn(name, command, dir.path());
    Orb {
        proc,
        dir,
        started: Instant::now(),
    }
}

/// Spawns with the child's end of a fresh channel at the fd named by `NODE_CHANNEL_FD`.
fn spawn_with_channel(name: &str, args: &[&str], envs: &[(&str, &str)]) -> (Orb, ManagerEnd) {
    let dir = tempfile::tempdir().expect("tempdir");
    let _lock = SPAWN_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let (manager, child_end) = ManagerEnd::pair();
    let fd = child_end.fd_number();
    let mut command = command(dir.path(), args, envs);
    command.env("NODE_CHANNEL_FD", &fd);
    let proc = Proc::spawn(name, command, dir.path());
    drop(child_end);
    let orb = Orb {
        proc,
        dir,
        started: Instant::now(),
    };
    (orb, manager)
}

fn test_args(room: &FakeRoom, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "--room=r1".to_owned(),
        "--session=s1".to_owned(),
        format!("--cpu-host={}", room.host()),
        "--test-mode".to_owned(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

async fn exit_code(orb: &mut Orb, timeout: Duration) -> Option<i32> {
    let status = orb.proc.wait_exit_async(timeout).await?;
    Some(status.code().unwrap_or(-1))
}

/// Waits for the orb's `ai_status ready` (sent after its join was answered).
async fn wait_ready(room: &FakeRoom, orb: &Orb) {
    let ready = room.wait_for("ai_status", WAIT, |f| f["status"] == "ready").await;
    assert!(ready.is_some(), "no ai_status ready; stderr:\n{}", orb.proc.stderr());
}

fn say(room: &FakeRoom, text: &str) {
    room.send(json!({"type":"ai_control","action":"say","text":text,"fromId":"u1"}));
}

/// `ai_status`/`ai_response` frames after the first `ready`.
fn work_frames(room: &FakeRoom) -> Vec<Value> {
    room.received()
        .into_iter()
        .map(|r| r.frame)
        .skip_while(|f| f["status"] != "ready")
        .skip(1)
        .filter(|f| f["type"] == "ai_status" || f["type"] == "ai_response")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_started_orb_joins_answers_say_and_stops_on_sigterm() {
    let room = FakeRoom::start().await;
    let mut orb = spawn("orb-hand", &strs(&test_args(&room, &[])), &[]);
    let join = room.wait_for_nth("join", 1, WAIT).await.expect("join");
    assert_eq!(
        join,
        json!({"type":"join","userId":"ai-orb-s1","userName":"AI Assistant","userRole":"ai","participantType":"ai"})
    );
    let upgrade = room.upgrade(0).expect("upgrade");
    assert_eq!(upgrade.path, "/ws-simple/r1");
    assert!(
        !upgrade.headers.iter().any(|(k, _)| k == "authorization"),
        "no token, no header"
    );
    wait_ready(&room, &orb).await;
    assert_eq!(room.frames_of("ai_status")[0]["sessionId"], "s1");

    say(&room, "hi");
    let response = room.wait_for_nth("ai_response", 1, WAIT).await.expect("ai_response");
    assert_eq!(
        response,
        json!({"type":"ai_response","text":"echo: hi","inReplyTo":"u1"})
    );
    assert!(
        wait::until_true(WAIT, || work_frames(&room).len() >= 4).await,
        "{:?}",
        work_frames(&room)
    );
    let sequence: Vec<String> = work_frames(&room)
        .iter()
        .map(|f| f["status"].as_str().unwrap_or("ai_response").to_owned())
        .collect();
    assert_eq!(sequence, ["thinking", "ai_response", "speaking", "listening"]);

    orb.proc.signal(Signal::SIGTERM);
    let code = exit_code(&mut orb, Duration::from_secs(7)).await;
    assert_eq!(code, Some(0), "stderr:\n{}", orb.proc.stderr());
    let shutdown = room.frames_of("ai-orb-shutdown");
    assert_eq!(shutdown.len(), 1, "{shutdown:?}");
    assert_eq!(shutdown[0]["sessionId"], "s1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_during_shutdown_exits_at_once() {
    let room = FakeRoom::start().await;
    room.set_stall_on_close(true);
    let mut orb = spawn("orb-twice", &strs(&test_args(&room, &[])), &[]);
    wait_ready(&room, &orb).await;
    orb.proc.signal(Signal::SIGTERM);
    // The orb told the room and now waits (up to 1 s) for a close reply that never comes.
    assert!(room.wait_for_nth("ai-orb-shutdown", 1, WAIT).await.is_some());
    orb.proc.signal(Signal::SIGINT);
    let code = exit_code(&mut orb, WAIT).await;
    assert_eq!(code, Some(130), "forced exit expected; stderr:\n{}", orb.proc.stderr());
    assert!(orb.proc.stderr().contains("second signal"), "{}", orb.proc.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_and_end_session() {
    let room = FakeRoom::start().await;
    let (mut orb, mut manager) = spawn_with_channel("orb-control", &strs(&test_args(&room, &[])), &[]);
    wait_ready(&room, &orb).await;
    room.send(json!({"type":"ai_control","action":"pause","fromId":"u1"}));
    assert!(
        room.wait_for("ai_status", WAIT, |f| f["status"] == "paused")
            .await
            .is_some()
    );
    room.send(json!({"type":"ai_control","action":"resume","fromId":"u1"}));
    assert!(
        room.wait_for("ai_status", WAIT, |f| f["status"] == "listening")
            .await
            .is_some()
    );
    room.send(json!({"type":"ai_control","action":"end_session","fromId":"u1"}));
    let code = exit_code(&mut orb, WAIT).await;
    assert_eq!(code, Some(0), "stderr:\n{}", orb.proc.stderr());
    assert_eq!(room.frames_of("ai-orb-shutdown")[0]["reason"], "session_complete");
    let shutdown = manager.recv_type("orb_shutdown", WAIT).await.expect("orb_shutdown");
    assert_eq!(shutdown["reason"], "session_complete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipc_ready_heartbeats_and_shutdown_graceful() {
    let room = FakeRoom::start().await;
    room.set_peers(vec![
        json!({"userId":"c1","userName":"Coach","userRole":"coach","participantType":"human"}),
    ]);
    let (mut orb, mut manager) = spawn_with_channel(
        "orb-ipc",
        &strs(&test_args(&room, &[])),
        &[("ORB_HEARTBEAT_INTERVAL", "200")],
    );
    let ready = manager.recv_type("orb_ready", WAIT).await;
    let ready = ready.unwrap_or_else(|| panic!("no orb_ready; stderr:\n{}", orb.proc.stderr()));
    assert_eq!(ready["roomId"], "r1");
    assert_eq!(ready["participants"], json!(["c1"]));

    let mut beats = Vec::new();
    while beats.len() < 5 {
        let beat = manager.recv_type("orb_heartbeat", Duration::from_secs(3)).await;
        beats.push(beat.unwrap_or_else(|| panic!("heartbeat {} missing", beats.len() + 1)));
    }
    for beat in &beats {
        assert_eq!(beat["roomId"], "r1");
        let memory = beat["metrics"]["memory"].as_f64().expect("memory");
        let cpu = beat["metrics"]["cpu"].as_f64().expect("cpu");
        let latency = beat["metrics"]["latency"].as_f64().expect("latency");
        assert!(memory > 0.0 && memory < 100.0, "memory {memory}");
        assert!(cpu >= 0.0, "cpu {cpu}");
        assert!(latency >= 0.0, "latency {latency}");
    }
    let stamps: Vec<u64> = beats
        .iter()
        .map(|b| b["timestamp"].as_u64().expect("timestamp"))
        .collect();
    // Beats 2..5 follow the 200 ms interval (the first comes right after ready).
    let span = stamps[4] - stamps[1];
    assert!((450..=1500).contains(&span), "3 intervals took {span} ms: {stamps:?}");
    assert!(
        !room.frames_of("orb_heartbeat").is_empty(),
        "heartbeats also go to the room"
    );

    manager
        .send(json!({"type":"shutdown_graceful","reason":"manual_termination","timeout":3000}))
        .await;
    let asked = Instant::now();
    let shutdown = manager
        .recv_type("orb_shutdown", Duration::from_secs(3))
        .await
        .expect("orb_shutdown");
    assert_eq!(shutdown["reason"], "manual_termination");
    let code = exit_code(&mut orb, Duration::from_secs(3)).await;
    assert_eq!(code, Some(0), "stderr:\n{}", orb.proc.stderr());
    assert!(asked.elapsed() < Duration::from_secs(3), "took {:?}", asked.elapsed());
    assert_eq!(room.frames_of("ai-orb-shutdown")[0]["reason"], "manual_termination");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_the_room_and_reports_the_latency() {
    let room = FakeRoom::start().await;
    let (mut orb, mut manager) = spawn_with_channel(
        "orb-ping",
        &strs(&test_args(&room, &[])),
        &[("ORB_PING_INTERVAL", "100"), ("ORB_HEARTBEAT_INTERVAL", "100")],
    );
    assert!(
        manager.recv_type("orb_ready", WAIT).await.is_some(),
        "stderr:\n{}",
        orb.proc.stderr()
    );
    assert!(
        room.wait_for_nth("ping", 3, WAIT).await.is_some(),
        "JSON pings at the interval"
    );
    let mut measured = None;
    for _ in 0..30 {
        let beat = manager
            .recv_type("orb_heartbeat", Duration::from_secs(2))
            .await
            .expect("heartbeat");
        let latency = beat["metrics"]["latency"].as_f64().expect("latency");
        if latency > 0.0 {
            measured = Some(latency);
            break;
        }
    }
    let latency = measured.expect("a heartbeat with a measured latency");
    assert!(latency < 1000.0, "loopback round trip of {latency} ms");
    let frame = room
        .wait_for("orb_heartbeat", WAIT, |f| f["metrics"]["latency"].as_f64() > Some(0.0))
        .await;
    assert!(frame.is_some(), "the room's heartbeats carry the latency too");
    orb.proc.signal(Signal::SIGTERM);
    assert_eq!(exit_code(&mut orb, WAIT).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_manager_end_stops_the_orb() {
    let room = FakeRoom::start().await;
    let (mut orb, mut manager) = spawn_with_channel("orb-orphan", &strs(&test_args(&room, &[])), &[]);
    assert!(
        manager.recv_type("orb_ready", WAIT).await.is_some(),
        "stderr:\n{}",
        orb.proc.stderr()
    );
    drop(manager);
    let closed = Instant::now();
    let code = exit_code(&mut orb, Duration::from_secs(2)).await;
    assert_eq!(
        code,
        Some(0),
        "orb outlived its manager; stderr:\n{}",
        orb.proc.stderr()
    );
    assert!(closed.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_lifetime_ends_the_orb() {
    let room = FakeRoom::start().await;
    let mut orb = spawn("orb-lifetime", &strs(&test_args(&room, &["--max-lifetime=1500"])), &[]);
    let code = exit_code(&mut orb, Duration::from_secs(8)).await;
    let took = orb.started.elapsed();
    assert_eq!(code, Some(0), "stderr:\n{}", orb.proc.stderr());
    assert!(
        took >= Duration::from_millis(1200) && took <= Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(room.frames_of("ai-orb-shutdown")[0]["reason"], "timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_ends_an_orb_without_humans() {
    let room = FakeRoom::start().await;
    let mut orb = spawn("orb-idle", &strs(&test_args(&room, &["--idle-timeout=1000"])), &[]);
    let code = exit_code(&mut orb, Duration::from_secs(8)).await;
    let took = orb.started.elapsed();
    assert_eq!(code, Some(0), "stderr:\n{}", orb.proc.stderr());
    assert!(took >= Duration::from_millis(800), "{took:?}");
    assert_eq!(room.frames_of("ai-orb-shutdown")[0]["reason"], "idle_timeout");
}

/// Proves that the orb does *not* exit within `window`: the one place a test
/// waits out a fixed time, because what it checks is that nothing happens.
async fn stays_running(orb: &mut Orb, window: Duration) {
    let exit = orb.proc.wait_exit_async(window).await;
    assert!(
        exit.is_none(),
        "exited {exit:?} within {window:?}; stderr:\n{}",
        orb.proc.stderr()
    );
}

fn human(id: &str, role: &str) -> Value {
    json!({"userId":id,"userName":id,"userRole":role,"participantType":"human"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_call_keeps_its_ai_until_the_humans_leave() {
    let room = FakeRoom::start().await;
    // Coach and client are in the room. Like a real call, they talk over WebRTC
    // and targeted signalling that the server never delivers to the orb: the
    // orb receives nothing from them at all.
    room.set_peers(vec![human("c1", "coach"), human("k1", "client")]);
    let mut orb = spawn(
        "orb-silent-call",
        &strs(&test_args(&room, &["--idle-timeout=1000"])),
        &[],
    );
    wait_ready(&room, &orb).await;
    // Three idle timeouts with both humans present: the AI stays.
    stays_running(&mut orb, Duration::from_secs(3)).await;
    room.send(json!({"type":"user-left","userId":"c1","userName":"c1","userRole":"coach","participantType":"human"}));
    room.send(json!({"type":"user-left","userId":"k1","userName":"k1","userRole":"client","participantType":"human"}));
    let left = Instant::now();
    let code = exit_code(&mut orb, Duration::from_secs(5)).await;
    assert_eq!(code, Some(0), "stderr:\n{}", orb.proc.stderr());
    assert!(
        left.elapsed() >= Duration::from_millis(900),
        "idle counted from the last leave: {:?}",
        left.elapsed()
    );
    assert_eq!(room.frames_of("ai-orb-shutdown")[0]["reason"], "idle_timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn humans_the_manager_reports_keep_the_ai_across_a_reconnect() {
    let room = FakeRoom::start().await;
    let (mut orb, mut manager) = spawn_with_channel(
        "orb-ipc-presence",
        &strs(&test_args(&room, &["--idle-timeout=1000"])),
        &[],
    );
    assert!(
        manager.recv_type("orb_ready", WAIT).await.is_some(),
        "stderr:\n{}",
        orb.proc.stderr()
    );
    // The room socket saw nobody; the manager says a coach is there.
    manager
        .send(json!({"type":"participant_joined","userId":"c1","userRole":"coach"}))
        .await;
    stays_running(&mut orb, Duration::from_millis(1500)).await;
    // The room socket drops and comes back: still nobody in its view, the manager's coach still counts.
    room.drop_connections();
    assert!(room.wait_for_nth("join", 2, WAIT).await.is_some(), "rejoined");
    stays_running(&mut orb, Duration::from_millis(1500)).await;
    manager.send(json!({"type":"participant_left","userId":"c1"})).await;
    let left = Instant::now();
    let code = exit_code(&mut orb, Duration::from_secs(5)).await;
    assert_eq!(code, Some(0), "stderr:\n{}", orb.proc.stderr());
    assert!(left.elapsed() >= Duration::from_millis(900), "{:?}", left.elapsed());
    let shutdown = manager.recv_type("orb_shutdown", WAIT).await.expect("orb_shutdown");
    assert_eq!(shutdown["reason"], "idle_timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_turns_idle_and_lifetime_off() {
    let room = FakeRoom::start().await;
    let mut orb = spawn(
        "orb-no-limits",
        &strs(&test_args(&room, &["--idle-timeout=0", "--max-lifetime=0"])),
        &[],
    );
    wait_ready(&room, &orb).await;
    // An empty room, no limits: nothing ends the orb but a request.
    stays_running(&mut orb, Duration::from_millis(1500)).await;
    orb.proc.signal(Signal::SIGTERM);
    assert_eq!(
        exit_code(&mut orb, WAIT).await,
        Some(0),
        "stderr:\n{}",
        orb.proc.stderr()
    );
    assert_eq!(room.frames_of("ai-orb-shutdown")[0]["reason"], "signal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_a_drop_and_gives_up_after_the_grace() {
    let room = FakeRoom::start().await;
    let (mut orb, mut manager) = spawn_with_channel(
        "orb-reconnect",
        &strs(&test_args(&room, &[])),
        &[("ORB_RECONNECT_GRACE", "1500")],
    );
    wait_ready(&room, &orb).await;
    assert!(manager.recv_type("orb_ready", WAIT).await.is_some());
    room.drop_connections();
    let second = room.wait_for_nth("join", 2, WAIT).await;
    assert!(second.is_some(), "no second join; stderr:\n{}", orb.proc.stderr());
    assert_eq!(second.expect("join")["userId"], "ai-orb-s1");
    assert!(
        room.wait_for_nth("ai_status", 2, WAIT).await.is_some(),
        "ready again after rejoin"
    );
    assert_eq!(room.connections(), 2);
    // Still answers on the new connection.
    say(&room, "again");
    let response = room.wait_for_nth("ai_response", 1, WAIT).await.expect("ai_response");
    assert_eq!(response["text"], "echo: again");

    room.shutdown();
    let gone = Instant::now();
    let code = exit_code(&mut orb, Duration::from_secs(8)).await;
    assert_eq!(code, Some(2), "stderr:\n{}", orb.proc.stderr());
    assert!(
        gone.elapsed() >= Duration::from_millis(1200),
        "gave up too early: {:?}",
        gone.elapsed()
    );
    assert!(orb.proc.stderr().contains("room unreachable"), "clear log line");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_join_exits_non_zero() {
    let room = FakeRoom::start().await;
    room.set_join_reply(json!({"type":"error","code":"forbidden","message":"not the room's orb"}));
    let mut orb = spawn("orb-refused", &strs(&test_args(&room, &[])), &[]);
    let code = exit_code(&mut orb, WAIT).await;
    assert_eq!(code, Some(3), "stderr:\n{}", orb.proc.stderr());
    assert!(orb.proc.stderr().contains("refused"), "{}", orb.proc.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_refused_with_401_exits_non_zero() {
    let room = FakeRoom::start().await;
    room.set_reject_upgrade(401);
    let (mut orb, mut manager) = spawn_with_channel("orb-401", &strs(&test_args(&room, &[])), &[]);
    let code = exit_code(&mut orb, WAIT).await;
    assert_eq!(code, Some(3), "stderr:\n{}", orb.proc.stderr());
    let error = manager.recv_type("orb_error", WAIT).await.expect("orb_error");
    assert_eq!(error["critical"], true);
    assert!(error["error"].as_str().is_some_and(|e| e.contains("401")), "{error}");
    let shutdown = manager.recv_type("orb_shutdown", WAIT).await.expect("orb_shutdown");
    assert_eq!(shutdown["reason"], "refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_token_is_sent_but_never_logged() {
    let room = FakeRoom::start().await;
    let mut orb = spawn(
        "orb-token",
        &strs(&test_args(&room, &[])),
        &[("ORB_AUTH_TOKEN", "tok-s3cr3t"), ("RUST_LOG", "debug")],
    );
    let join = room.wait_for_nth("join", 1, WAIT).await.expect("join");
    assert_eq!(join["token"], "tok-s3cr3t");
    let upgrade = room.upgrade(0).expect("upgrade");
    assert!(
        upgrade
            .headers
            .contains(&("authorization".to_owned(), "Bearer tok-s3cr3t".to_owned())),
        "{:?}",
        upgrade.headers
    );
    wait_ready(&room, &orb).await;
    orb.proc.signal(Signal::SIGTERM);
    assert_eq!(exit_code(&mut orb, WAIT).await, Some(0));
    let stderr = orb.proc.stderr();
    assert!(!stderr.contains("tok-s3cr3t"), "token leaked into the log:\n{stderr}");
    assert!(!procfs::cmdline(orb.proc.pid() as i32).iter().any(|a| a.contains("tok")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_both_channels_is_ignored() {
    let room = FakeRoom::start().await;
    let (mut orb, mut manager) = spawn_with_channel("orb-garbage", &strs(&test_args(&room, &[])), &[]);
    assert!(
        manager.recv_type("orb_ready", WAIT).await.is_some(),
        "stderr:\n{}",
        orb.proc.stderr()
    );
    manager.send_raw(b"not json\n").await;
    let mut huge = vec![b'x'; 200 * 1024];
    huge.push(b'\n');
    manager.send_raw(&huge).await;
    manager.send_raw(b"{\"type\":\"mystery\",\"x\":1}\n").await;
    manager
        .send_raw(b"{\"type\":\"shutdown_graceful\",\"timeout\":\"soon\"}\n")
        .await;
    manager
        .send(json!({"type":"participant_joined","userId":"c1","userRole":"coach"}))
        .await;
    room.send_raw("{{{");
    room.send_raw("[1,2]");
    room.send_raw(r#"{"type":"ai_control"}"#);
    room.send_raw(r#"{"type":"never-heard-of-it"}"#);
    say(&room, "still there?");
    let response = room.wait_for_nth("ai_response", 1, WAIT).await;
    assert_eq!(
        response.map(|r| r["text"].clone()),
        Some(json!("echo: still there?")),
        "stderr:\n{}",
        orb.proc.stderr()
    );
    assert!(orb.proc.wait_exit(Duration::ZERO).is_none(), "still running");
    let stderr = orb.proc.stderr();
    for needle in ["invalid IPC line", "unknown type", "not a JSON object"] {
        assert!(stderr.contains(needle), "{needle:?} not logged:\n{stderr}");
    }
    // And still obeys the manager.
    manager
        .send(json!({"type":"shutdown_graceful","reason":"restart","timeout":3000}))
        .await;
    assert_eq!(exit_code(&mut orb, Duration::from_secs(4)).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_exit_64_naming_the_flags() {
    let mut orb = spawn("orb-noroom", &["--test-mode"], &[]);
    assert_eq!(exit_code(&mut orb, WAIT).await, Some(64));
    assert!(orb.proc.stderr().contains("--room"), "{}", orb.proc.stderr());

    let mut orb = spawn(
        "orb-badnums",
        &["--room=r1", "--test-mode", "--max-lifetime=abc", "--idle-timeout=-1"],
        &[],
    );
    assert_eq!(exit_code(&mut orb, WAIT).await, Some(64));
    let stderr = orb.proc.stderr();
    assert!(
        stderr.contains("--max-lifetime") && stderr.contains("--idle-timeout"),
        "{stderr}"
    );

    let mut orb = spawn(
        "orb-huge",
        &["--room=r1", "--test-mode", "--idle-timeout=99999999999"],
        &[("ORB_SHUTDOWN_TIMEOUT", "99999999999")],
    );
    assert_eq!(exit_code(&mut orb, WAIT).await, Some(64));
    let stderr = orb.proc.stderr();
    assert!(
        stderr.contains("IDLE_TIMEOUT (--idle-timeout) = \"99999999999\"") && stderr.contains("ORB_SHUTDOWN_TIMEOUT"),
        "{stderr}"
    );

    let mut orb = spawn("orb-nokey", &["--room=r1"], &[]);
    assert_eq!(exit_code(&mut orb, WAIT).await, Some(64));
    assert!(orb.proc.stderr().contains("OPENAI_API_KEY"), "{}", orb.proc.stderr());

    let mut orb = spawn("orb-badroom", &["--room=../../etc", "--test-mode"], &[]);
    assert_eq!(exit_code(&mut orb, WAIT).await, Some(64));

    let mut orb = spawn(
        "orb-badfd",
        &["--room=r1", "--test-mode"],
        &[("NODE_CHANNEL_FD", "abc")],
    );
    assert_eq!(exit_code(&mut orb, WAIT).await, Some(64));
    assert!(orb.proc.stderr().contains("NODE_CHANNEL_FD"), "{}", orb.proc.stderr());

    let mut orb = spawn("orb-help", &["--help"], &[]);
    assert_eq!(exit_code(&mut orb, WAIT).await, Some(0));
    let help = orb.proc.stdout();
    for name in [
        "--room",
        "ROOM_ID",
        "MAX_ORB_LIFETIME",
        "IDLE_TIMEOUT",
        "CPU_SERVER_HOST",
        "ORB_TEST_MODE",
    ] {
        assert!(help.contains(name), "{name} in help:\n{help}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_come_from_dotenv_and_environment() {
    let room = FakeRoom::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join(".env"),
        format!(
            "ROOM_ID=from-dotenv\nORB_TEST_MODE=true\nCPU_SERVER_HOST={}\n",
            room.host()
        ),
    )
    .expect("write .env");
    let command = command(dir.path(), &[], &[("SESSION_ID", "env-session")]);
    let proc = {
        let _lock = SPAWN_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        Proc::spawn("orb-dotenv", command, dir.path())
    };
    let mut orb = Orb {
        proc,
        dir,
        started: Instant::now(),
    };
    let join = room.wait_for_nth("join", 1, WAIT).await;
    assert!(join.is_some(), "stderr:\n{}", orb.proc.stderr());
    assert_eq!(join.expect("join")["userId"], "ai-orb-env-session");
    assert_eq!(room.upgrade(0).expect("upgrade").path, "/ws-simple/from-dotenv");
    orb.proc.signal(Signal::SIGINT);
    assert_eq!(exit_code(&mut orb, WAIT).await, Some(0));
    assert!(orb.dir.path().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_dir_gets_a_file_per_room() {
    let room = FakeRoom::start().await;
    let logs = tempfile::tempdir().expect("tempdir");
    let log_dir = logs.path().join("orbs");
    let log_dir_text = log_dir.to_string_lossy().into_owned();
    let mut orb = spawn(
        "orb-logdir",
        &strs(&test_args(&room, &[])),
        &[("ORB_LOG_DIR", &log_dir_text)],
    );
    wait_ready(&room, &orb).await;
    orb.proc.signal(Signal::SIGTERM);
    assert_eq!(exit_code(&mut orb, WAIT).await, Some(0));
    let text = std::fs::read_to_string(log_dir.join("orb-r1.log")).expect("orb-r1.log");
    assert!(text.contains("room=r1") && text.contains("session=s1"), "{text}");
    assert!(
        text.contains("joined the room") && text.contains("shutting down"),
        "{text}"
    );
    assert!(!text.contains("\u{1b}["), "no colour codes in the file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_brain_answers_through_the_orb() {
    let room = FakeRoom::start().await;
    let stub = ChatStub::start("hello from the stub").await;
    let host = format!("--cpu-host={}", room.host());
    let mut orb = spawn(
        "orb-openai",
        &["--room=r1", "--session=s1", &host],
        &[
            ("OPENAI_BASE_URL", stub.base_url()),
            ("OPENAI_API_KEY", "sk-dummy"),
            ("OPENAI_MODEL", "stub-model"),
        ],
    );
    wait_ready(&room, &orb).await;
    say(&room, "what is up");
    let response = room.wait_for_nth("ai_response", 1, WAIT).await;
    assert_eq!(
        response.map(|r| r["text"].clone()),
        Some(json!("hello from the stub")),
        "stderr:\n{}",
        orb.proc.stderr()
    );
    let requests = stub.requests();
    assert_eq!(requests.len(), 1);
    assert!(requests[0].starts_with("POST /v1/chat/completions "), "{}", requests[0]);
    assert!(requests[0].contains("stub-model") && requests[0].contains("what is up"));
    assert!(!orb.proc.stderr().contains("sk-dummy"), "key leaked");
    orb.proc.signal(Signal::SIGTERM);
    assert_eq!(exit_code(&mut orb, WAIT).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_brain_request_at_a_time_four_waiting_the_rest_told_busy() {
    let room = FakeRoom::start().await;
    let stub = ChatStub::start_slow("slow answer", Duration::from_millis(400)).await;
    let host = format!("--cpu-host={}", room.host());
    let mut orb = spawn(
        "orb-busy",
        &["--room=r1", "--session=s1", &host],
        &[("OPENAI_BASE_URL", stub.base_url()), ("OPENAI_API_KEY", "sk-dummy")],
    );
    wait_ready(&room, &orb).await;
    // Seven askers at once: one is answered now, four wait, two are refused.
    for n in 1..=7 {
        room.send(json!({"type":"ai_control","action":"say","text":format!("q{n}"),"fromId":format!("u{n}")}));
    }
    let answered = room.wait_for_nth("ai_response", 5, WAIT).await;
    assert!(answered.is_some(), "stderr:\n{}", orb.proc.stderr());
    let askers: Vec<Value> = room
        .frames_of("ai_response")
        .iter()
        .map(|f| f["inReplyTo"].clone())
        .collect();
    assert_eq!(askers, ["u1", "u2", "u3", "u4", "u5"], "answered in the order asked");
    let busy: Vec<Value> = room
        .frames_of("ai_status")
        .into_iter()
        .filter(|f| f["status"] == "error")
        .collect();
    assert_eq!(busy.len(), 2, "{busy:?}");
    for (frame, asker) in busy.iter().zip(["u6", "u7"]) {
        assert_eq!(frame["code"], "busy", "{frame}");
        assert_eq!(frame["inReplyTo"], asker, "{frame}");
        assert_eq!(frame["sessionId"], "s1", "{frame}");
        assert!(frame["message"].as_str().is_some_and(|m| !m.is_empty()), "{frame}");
    }
    assert_eq!(stub.most_at_once(), 1, "never two requests to the endpoint at once");
    assert_eq!(stub.requests().len(), 5, "the refused asks cost nothing");
    // The queue frees up: a later ask is answered again.
    room.send(json!({"type":"ai_control","action":"say","text":"later","fromId":"u6"}));
    let later = room.wait_for_nth("ai_response", 6, WAIT).await.expect("answered later");
    assert_eq!(later["inReplyTo"], "u6");
    orb.proc.signal(Signal::SIGTERM);
    assert_eq!(exit_code(&mut orb, WAIT).await, Some(0));
}

/// Whether a thread of `pid` is blocked opening a FIFO that has no writer.
fn blocked_opening_a_fifo(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks
        .flatten()
        .any(|task| std::fs::read_to_string(task.path().join("wchan")).is_ok_and(|w| w.trim() == "wait_for_partner"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shutdown_bound_holds_with_a_brain_request_stuck_in_blocking_work() {
    let room = FakeRoom::start().await;
    // A brain request whose DNS lookup never returns, without touching the
    // network: glibc reads HOSTALIASES before asking DNS about a dotless name,
    // and opening a FIFO that has no writer blocks for good. The lookup runs on
    // the runtime's blocking pool, which a dropped runtime waits for.
    let aliases = tempfile::tempdir().expect("tempdir");
    let fifo = aliases.path().join("hostaliases");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    let fifo_text = fifo.to_string_lossy().into_owned();
    let host = format!("--cpu-host={}", room.host());
    let mut orb = spawn(
        "orb-stuck-brain",
        &["--room=r1", "--session=s1", &host],
        &[
            ("OPENAI_BASE_URL", "http://orbstucklookup:9/v1"),
            ("OPENAI_API_KEY", "sk-dummy"),
            ("HOSTALIASES", &fifo_text),
            ("ORB_SHUTDOWN_TIMEOUT", "1000"),
        ],
    );
    wait_ready(&room, &orb).await;
    say(&room, "are you there");
    let pid = orb.proc.pid();
    assert!(
        wait::until_true(WAIT, || blocked_opening_a_fifo(pid)).await,
        "the brain's lookup never blocked; stderr:\n{}",
        orb.proc.stderr()
    );
    orb.proc.signal(Signal::SIGTERM);
    let asked = Instant::now();
    // ORB_SHUTDOWN_TIMEOUT plus a margin: the drain is quick here, so this bounds
    // what happens after it (the runtime waiting for the stuck lookup).
    let code = exit_code(&mut orb, Duration::from_millis(1000 + 1500)).await;
    assert_eq!(
        code,
        Some(0),
        "still running {:?} after SIGTERM; stderr:\n{}",
        asked.elapsed(),
        orb.proc.stderr()
    );
    assert_eq!(room.frames_of("ai-orb-shutdown")[0]["reason"], "signal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shutdown_bound_holds_with_a_hung_brain_request() {
    let room = FakeRoom::start().await;
    // The endpoint reads the request and never answers (within the test).
    let stub = ChatStub::start_slow("too late", Duration::from_secs(600)).await;
    let host = format!("--cpu-host={}", room.host());
    let (mut orb, mut manager) = spawn_with_channel(
        "orb-hung-brain",
        &["--room=r1", "--session=s1", &host],
        &[
            ("OPENAI_BASE_URL", stub.base_url()),
            ("OPENAI_API_KEY", "sk-dummy"),
            ("ORB_SHUTDOWN_TIMEOUT", "1000"),
        ],
    );
    assert!(
        manager.recv_type("orb_ready", WAIT).await.is_some(),
        "stderr:\n{}",
        orb.proc.stderr()
    );
    say(&room, "are you there");
    assert!(
        wait::until_true(WAIT, || stub.requests().len() == 1).await,
        "request in flight"
    );
    manager
        .send(json!({"type":"shutdown_graceful","reason":"manual_termination","timeout":1000}))
        .await;
    let code = exit_code(&mut orb, Duration::from_millis(1000 + 1500)).await;
    assert_eq!(code, Some(0), "stderr:\n{}", orb.proc.stderr());
    let shutdown = manager.recv_type("orb_shutdown", WAIT).await.expect("orb_shutdown");
    assert_eq!(shutdown["reason"], "manual_termination");
    assert!(room.frames_of("ai_response").is_empty(), "no answer came");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joined_test_mode_orb_stays_under_10_mb_rss() {
    let room = FakeRoom::start().await;
    let (mut orb, mut manager) = spawn_with_channel(
        "orb-rss",
        &strs(&test_args(&room, &[])),
        &[("ORB_HEARTBEAT_INTERVAL", "100")],
    );
    assert!(
        manager.recv_type("orb_ready", WAIT).await.is_some(),
        "stderr:\n{}",
        orb.proc.stderr()
    );
    say(&room, "measure me");
    assert!(room.wait_for_nth("ai_response", 1, WAIT).await.is_some());
    for _ in 0..3 {
        assert!(manager.recv_type("orb_heartbeat", WAIT).await.is_some());
    }
    let pid = orb.proc.pid();
    let rss = procfs::rss_bytes(pid as i32).expect("statm");
    let mb = rss as f64 / (1024.0 * 1024.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |name: &str| -> f64 {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap_or_default();
        line.split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let (anon_mb, file_mb) = (kb("RssAnon:") / 1024.0, kb("RssFile:") / 1024.0);
    println!(
        "gpu-orb RSS while joined (test mode, {} build): {rss} bytes = {mb:.2} MB (anonymous {anon_mb:.2} MB, file-backed {file_mb:.2} MB)",
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );
    // What an orb really costs is its private memory: it must stay small in any build.
    assert!(anon_mb < 10.0, "anonymous RSS {anon_mb:.2} MB");
    // The whole RSS includes the binary's code pages. An optimised build (the one
    // deployed) stays under 10 MB; the unoptimised debug binary's code alone is
    // about 12 MB, so a debug run only checks that nothing grows out of bounds.
    let total_limit = if cfg!(debug_assertions) { 24.0 } else { 10.0 };
    assert!(
        mb < total_limit,
        "RSS {mb:.2} MB; largest mappings:\n{}",
        largest_mappings(pid)
    );
    orb.proc.signal(Signal::SIGTERM);
    assert_eq!(exit_code(&mut orb, WAIT).await, Some(0));
}

/// The mappings of `pid` with the most resident memory (a diagnostic for the RSS test).
fn largest_mappings(pid: u32) -> String {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut maps: Vec<(u64, String)> = Vec::new();
    let mut current = String::new();
    for line in smaps.lines() {
        if let Some(kb) = line.strip_prefix("Rss:") {
            let kb: u64 = kb.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
            maps.push((kb, current.clone()));
        } else if line
            .split_whitespace()
            .next()
            .is_some_and(|w| w.contains('-') && !w.ends_with(':'))
        {
            current = line.to_owned();
        }
    }
    maps.sort_by_key(|m| std::cmp::Reverse(m.0));
    maps.iter()
        .take(12)
        .map(|(kb, m)| format!("{kb:>8} kB  {m}\n"))
        .collect()
}
