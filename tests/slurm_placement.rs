//! Orbs placed by Slurm, through the real binaries and a real local cluster
//! (`scripts/slurm-local.sh`: one controller, two compute hosts in their own
//! network and UTS namespaces, one fake GPU each). cpu-server submits one job per
//! orb; the orb runs on a compute host, reaches the server at the cluster's address,
//! and is supervised over its `/orb-link/{room}` WebSocket (no IPC socket crosses
//! hosts). One test, one step after the other: the cluster has two GPUs. Steps: a
//! coach's join runs a job and the AI answers; GPUs exhausted → the room waits with
//! Slurm's reason, a freed GPU serves it; a selective kill; an orb SIGKILLed on its node
//! is restarted as a new job; slurmd lost on a node → the room's orb moves to the other
//! node and the cut-off one is refused; slurmctld down → running orbs stay supervised,
//! a new room waits and is served after; the server SIGKILLed → its successor cancels
//! every job it left; a program that fails at once on its node is parked after
//! ORB_MAX_RESTARTS.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use system_tests::operator_kit::request;
use system_tests::procfs;
use system_tests::room_harness::RoomServer;
use system_tests::slurm_kit::{CancelOnDrop, LocalCluster, cluster};
use system_tests::wait::{until, until_true};
use system_tests::ws::Client;

const ADMIN_TOKEN: &str = "slurm-tests-admin-token-0123456789";
const SECOND: Duration = Duration::from_secs(1);

fn record(port: u16, room: &str) -> Option<Value> {
    let (status, body) = request(port, "GET", &format!("/api/orbs/{room}"), Some(ADMIN_TOKEN), None);
    (status == 200).then(|| serde_json::from_str(&body).expect("record json"))
}

/// The room's orb timeline, for failure messages.
fn timeline(port: u16, room: &str) -> String {
    request(
        port,
        "GET",
        &format!("/api/orbs/{room}/events"),
        Some(ADMIN_TOKEN),
        None,
    )
    .1
}

/// The room's record once its job runs and its orb is ready.
async fn running(port: u16, room: &str, timeout: Duration) -> Value {
    until(timeout, || {
        record(port, room).filter(|r| r["state"] == "ready" && r["placement"]["state"] == "running")
    })
    .await
    .unwrap_or_else(|| panic!("{room}: no ready orb on a node: {:?}", record(port, room)))
}

/// The gpu-orb processes of `room` (the nodes share this machine's pid namespace).
fn orb_pids(room: &str) -> Vec<i32> {
    procfs::with_arg(&format!("--room={room}"))
        .into_iter()
        .filter(|pid| procfs::cmdline(*pid).first().is_some_and(|p| p.ends_with("gpu-orb")))
        .collect()
}

fn server(cluster: &LocalCluster, port: Option<u16>) -> RoomServer {
    server_with(cluster, port, &[])
}

fn server_with(cluster: &LocalCluster, port: Option<u16>, extra: &[(&str, &str)]) -> RoomServer {
    let target = system_tests::binaries::target_dir().display().to_string();
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into());
    let url = format!("ws://{}:{{PORT}}/ws-simple", cluster.cpu_ip);
    let env = |port: u16| -> Vec<(String, String)> {
        [
            ("CPU_HOST", format!("0.0.0.0:{port}")),
            ("ORB_LAUNCHER", "slurm".to_owned()),
            ("ORB_CPU_WEBSOCKET_URL", url.replace("{PORT}", &port.to_string())),
            ("SLURM_CONF", cluster.conf.clone()),
            ("PATH", path.clone()),
            ("ORB_SLURM_POLL_INTERVAL", "200".to_owned()),
            ("ORB_SPAWN_ON", "coach".to_owned()),
            ("GPU_SERVER_PATH", target.clone()),
            ("ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
            ("ORB_TEST_MODE", "true".to_owned()),
            ("ORB_MEDIA", "false".to_owned()),
            ("ORB_STOP_GRACE", "1000".to_owned()),
            ("ORB_KILL_GRACE", "1000".to_owned()),
            ("MAX_CONCURRENT_ORBS", "4".to_owned()),
            // Heartbeats every second over the link, so "still supervised" is visible.
            ("ORB_HEALTH_CHECK_INTERVAL", "1000".to_owned()),
            ("ORB_UNRESPONSIVE_TIMEOUT", "10000".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    };
    let port = port.unwrap_or_else(system_tests::free_port);
    let mut vars = env(port);
    vars.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    RoomServer::start_on(port, &pairs)
}

#[tokio::test]
async fn orbs_run_as_slurm_jobs_queue_for_gpus_restart_and_never_outlive_their_server() {
    let cluster = cluster();
    let _cleanup = CancelOnDrop(cluster.clone());
    let mut server = server(&cluster, None);
    let port = server.port;

    // Coach join → a job on a compute host → the AI joins the room and answers.
    let (mut coach_a, _) = Client::join(&server.url("sl-a"), "coach-a", "coach").await;
    let joined = coach_a.recv_type("user-joined", 30 * SECOND).await;
    assert_eq!(joined["participantType"], "ai", "{joined}");
    coach_a
        .send(json!({"type":"ai_control","action":"say","text":"hello"}))
        .await;
    let reply = coach_a.recv_type("ai_response", 10 * SECOND).await;
    assert_eq!(reply["text"], "echo: hello");
    let a = running(port, "sl-a", 10 * SECOND).await;
    let node = a["placement"]["node"].as_str().unwrap_or_default().to_owned();
    assert!(node == "orbnode1" || node == "orbnode2", "{a}");
    let job_a = a["placement"]["job"].as_str().expect("a job id").to_owned();
    assert!(a["pid"].is_null(), "a remote orb has no local pid: {a}");
    // An upgrade in place hands the job over: the same job and orb process, the
    // AI still in the room and answering, its supervision link reconnected to
    // the new image (heartbeats every second go on).
    let pids_a = orb_pids("sl-a");
    let (status, body) = request(port, "POST", "/api/upgrade", Some(ADMIN_TOKEN), None);
    assert_eq!(status, 202, "{body}");
    let upgraded = until(60 * SECOND, || {
        let (status, body) = request(port, "GET", "/api/upgrade", Some(ADMIN_TOKEN), None);
        let status: Value = (status == 200).then(|| serde_json::from_str(&body).ok()).flatten()?;
        (status["completed"] == 1).then_some(status)
    })
    .await;
    assert!(upgraded.is_some(), "upgrade not done:\n{}", server.proc.stderr());
    let heard = until(15 * SECOND, || {
        record(port, "sl-a").filter(|r| r["last_heartbeat_ms"].as_u64().is_some_and(|age| age < 1500))
    })
    .await;
    let after = heard.unwrap_or_else(|| {
        panic!(
            "no heartbeat over the reconnected link: {:?}\n{}",
            record(port, "sl-a"),
            server.proc.stderr()
        )
    });
    assert_eq!(after["placement"]["job"], job_a.as_str(), "the same job: {after}");
    assert_eq!(
        (&after["state"], &after["restarts"]),
        (&json!("ready"), &json!(0)),
        "{after}"
    );
    assert_eq!(orb_pids("sl-a"), pids_a, "the same orb process on its node");
    coach_a
        .send(json!({"type":"ai_control","action":"say","text":"still there?"}))
        .await;
    let reply = coach_a.recv_type("ai_response", 10 * SECOND).await;
    assert_eq!(
        reply["text"], "echo: still there?",
        "the AI's room socket was handed over"
    );
    let orb_env = procfs::environ(*orb_pids("sl-a").first().expect("the orb process"));
    assert!(
        orb_env.iter().any(|kv| kv.starts_with("SLURM_JOB_ID=")),
        "it runs under Slurm"
    );
    // The server's own secrets never reach a job, nor the user's login environment
    // (`--export` without ALL would load it on the node: SHELL, MAIL, …).
    assert!(
        orb_env
            .iter()
            .all(|kv| !kv.starts_with("ADMIN_TOKEN=") && !kv.starts_with("SHELL=") && !kv.starts_with("MAIL=")),
        "only the allowlisted environment: {orb_env:?}"
    );
    assert!(orb_env.iter().any(|kv| kv == "ORB_SUPERVISED=1"), "{orb_env:?}");
    // The record shows the GPU Slurm gave it (each node has one: index 0), as the job sees it.
    let gpu = until(5 * SECOND, || {
        record(port, "sl-a").and_then(|r| r["placement"]["gpu"].as_str().map(str::to_owned))
    })
    .await;
    assert_eq!(gpu.as_deref(), Some("0"), "{:?}", record(port, "sl-a"));
    assert!(orb_env.iter().any(|kv| kv == "CUDA_VISIBLE_DEVICES=0"), "{orb_env:?}");

    // Two GPUs: a second room runs, a third waits with Slurm's reason.
    let (_coach_b, _) = Client::join(&server.url("sl-b"), "coach-b", "coach").await;
    let b = running(port, "sl-b", 30 * SECOND).await;
    let (mut coach_c, _) = Client::join(&server.url("sl-c"), "coach-c", "coach").await;
    let queued = coach_c
        .try_recv_where(15 * SECOND, |m| m["type"] == "ai_status" && m["status"] == "queued")
        .await
        .expect("the room hears it waits");
    assert!(queued["reason"].as_str().is_some_and(|r| !r.is_empty()), "{queued}");
    let c = until(10 * SECOND, || {
        record(port, "sl-c").filter(|r| r["placement"]["state"] == "pending" && r["placement"]["job"].is_string())
    })
    .await
    .unwrap_or_else(|| panic!("sl-c not pending in Slurm: {:?}", record(port, "sl-c")));
    assert_eq!(c["state"], "spawning", "{c}");

    // Selective kill: sl-a's job ends, sl-b's orb is untouched, sl-c gets the GPU.
    let b_pids = orb_pids("sl-b");
    let (status, _) = request(port, "DELETE", "/api/orbs/sl-a", Some(ADMIN_TOKEN), None);
    assert!((200..300).contains(&status), "DELETE answered {status}");
    running(port, "sl-c", 30 * SECOND).await;
    assert!(
        until_true(10 * SECOND, || orb_pids("sl-a").is_empty()).await,
        "sl-a's orb still runs"
    );
    assert!(
        cluster
            .jobs()
            .iter()
            .any(|(id, state, _)| *id == job_a && matches!(state.as_str(), "COMPLETED" | "CANCELLED")),
        "{:?}",
        cluster.jobs()
    );
    assert_eq!(orb_pids("sl-b"), b_pids, "the neighbour's orb was touched");

    // An orb killed on its node: restarted as a new job, the room gets its AI back.
    let job_b = b["placement"]["job"].as_str().expect("job").to_owned();
    for pid in &b_pids {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    let restarted = until(40 * SECOND, || {
        record(port, "sl-b").filter(|r| {
            r["restarts"].as_u64().unwrap_or(0) >= 1
                && r["state"] == "ready"
                && r["placement"]["state"] == "running"
                && r["placement"]["job"] != job_b.as_str()
        })
    })
    .await;
    assert!(
        restarted.is_some(),
        "sl-b not restarted: {:?}\n{}",
        record(port, "sl-b"),
        timeline(port, "sl-b")
    );

    // slurmd lost on sl-c's node: Slurm fails the job (NODE_FAIL) while its orb runs on;
    // the room gets a new orb on the other node and the old one is never let back in.
    let (status, _) = request(port, "DELETE", "/api/orbs/sl-b", Some(ADMIN_TOKEN), None);
    assert!((200..300).contains(&status), "DELETE answered {status}");
    let c = running(port, "sl-c", 10 * SECOND).await;
    let lost_node = c["placement"]["node"].as_str().expect("node").to_owned();
    let old_orbs = orb_pids("sl-c");
    assert_eq!(old_orbs.len(), 1, "{old_orbs:?}");
    cluster.fault(&["kill-slurmd", &lost_node]);
    let moved = until(60 * SECOND, || {
        record(port, "sl-c").filter(|r| {
            r["state"] == "ready"
                && r["placement"]["state"] == "running"
                && r["placement"]["node"].as_str().is_some_and(|n| n != lost_node)
        })
    })
    .await;
    cluster.fault(&["start-slurmd", &lost_node]);
    assert!(moved.is_some(), "sl-c did not move: {:?}", record(port, "sl-c"));
    assert!(
        until_true(20 * SECOND, || old_orbs
            .iter()
            .all(|pid| !orb_pids("sl-c").contains(pid)))
        .await,
        "the cut-off orb still runs (its token should be refused)"
    );
    let ais = |rooms: &Value| -> usize {
        rooms
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["room"] == "sl-c")
            .flat_map(|r| r["participants"].as_array().cloned().unwrap_or_default())
            .filter(|p| p["participantType"] == "ai")
            .count()
    };
    let (_, rooms) = request(port, "GET", "/api/rooms", Some(ADMIN_TOKEN), None);
    assert_eq!(ais(&serde_json::from_str(&rooms).expect("rooms")), 1, "{rooms}");

    // The controller down: the running orb stays supervised; a new room waits and is
    // served once the controller is back.
    cluster.fault(&["stop-ctld"]);
    tokio::time::sleep(4 * SECOND).await;
    let c = record(port, "sl-c").expect("record");
    assert_eq!(c["state"], "ready", "{c}");
    assert!(
        c["last_heartbeat_ms"].as_u64().is_some_and(|ms| ms < 3000),
        "not supervised: {c}"
    );
    let (mut coach_d, _) = Client::join(&server.url("sl-d"), "coach-d", "coach").await;
    let waiting = coach_d
        .try_recv_where(20 * SECOND, |m| {
            m["type"] == "ai_status" && m["reason"].as_str().is_some_and(|r| r.contains("unreachable"))
        })
        .await;
    cluster.fault(&["start-ctld"]);
    assert!(
        waiting.is_some(),
        "sl-d was not told it waits: {:?}",
        record(port, "sl-d")
    );
    running(port, "sl-d", 40 * SECOND).await;

    // The server dies (SIGKILL: no stop path): its successor cancels every job it left.
    let comment = format!("muc-orb:ws://{}:{port}/ws-simple", cluster.cpu_ip);
    server.proc.signal(Signal::SIGKILL);
    server.proc.wait_exit_async(5 * SECOND).await.expect("the server died");
    let ours_running = |cluster: &LocalCluster| {
        cluster
            .jobs()
            .into_iter()
            .filter(|(_, state, c)| *c == comment && matches!(state.as_str(), "RUNNING" | "PENDING" | "CONFIGURING"))
            .count()
    };
    assert!(ours_running(&cluster) > 0, "jobs ran before the restart");
    let successor = self::server(&cluster, Some(port));
    assert!(
        until_true(20 * SECOND, || ours_running(&cluster) == 0).await,
        "jobs of the dead server still run: {:?}",
        cluster.jobs()
    );
    assert!(
        until_true(20 * SECOND, || ["sl-a", "sl-b", "sl-c"]
            .iter()
            .all(|r| orb_pids(r).is_empty()))
        .await,
        "orbs of the dead server still run"
    );
    drop(successor);

    // A job that fails at once (the program exits 1 on its node) is restarted with
    // backoff, then parked after ORB_MAX_RESTARTS, and the room is told.
    let failing = server_with(
        &cluster,
        None,
        &[
            ("ORB_COMMAND", "false"),
            ("ORB_MAX_RESTARTS", "1"),
            ("ORB_SLURM_GRES", "none"),
        ],
    );
    let (mut coach_e, _) = Client::join(&failing.url("sl-e"), "coach-e", "coach").await;
    let parked = coach_e
        .try_recv_where(60 * SECOND, |m| m["type"] == "ai_status" && m["code"] == "orb_parked")
        .await;
    let record_e = record(failing.port, "sl-e");
    assert!(
        parked.is_some(),
        "not parked: {record_e:?}\n{}",
        timeline(failing.port, "sl-e")
    );
    let record_e = record_e.expect("record");
    assert_eq!(record_e["state"], "parked", "{record_e}");
    assert_eq!(record_e["restarts"], 1, "{record_e}");
    drop(failing);

    // A warm pool of Slurm jobs: a job started with --warm waits on its node, over its
    // link, and the coach's room takes it (the AI is that process).
    let pooled = server_with(&cluster, None, &[("ORB_WARM_POOL", "1")]);
    let pool = |port: u16| -> Value {
        serde_json::from_str(&request(port, "GET", "/api/warm-pool", Some(ADMIN_TOKEN), None).1).unwrap_or_default()
    };
    // Ready, with its room socket open from its node (`/orb-seat`).
    let warm_ready = until(40 * SECOND, || {
        let view = pool(pooled.port);
        (view["ready"] == 1 && view["seated"] == 1).then_some(())
    })
    .await;
    assert!(
        warm_ready.is_some(),
        "no warm job became ready and seated: {}",
        pool(pooled.port)
    );
    let warm_pid = *procfs::with_arg("--warm")
        .iter()
        .find(|p| procfs::cmdline(**p).first().is_some_and(|a| a.ends_with("gpu-orb")))
        .expect("the warm orb on its node");
    let warm_job = procfs::environ(warm_pid)
        .into_iter()
        .find_map(|kv| kv.strip_prefix("SLURM_JOB_ID=").map(str::to_owned))
        .expect("a Slurm job");
    let (mut coach_w, _) = Client::join(&pooled.url("sl-w"), "coach-w", "coach").await;
    let joined = coach_w.recv_type("user-joined", 10 * SECOND).await;
    assert_eq!(joined["participantType"], "ai", "{joined}");
    coach_w
        .send(json!({"type":"ai_control","action":"say","text":"warm"}))
        .await;
    assert_eq!(
        coach_w.recv_type("ai_response", 10 * SECOND).await["text"],
        "echo: warm"
    );
    let w = running(pooled.port, "sl-w", 10 * SECOND).await;
    assert_eq!(
        w["placement"]["job"],
        warm_job.as_str(),
        "the room's orb is the warm job: {w}"
    );
    assert_eq!(pool(pooled.port)["assignments"], 1);
    let stderr = pooled.proc.stderr();
    let assigned = stderr
        .lines()
        .map(system_tests::bench_kit::strip_ansi)
        .find(|l| l.contains("warm orb assigned") && l.contains("sl-w"))
        .unwrap_or_default();
    assert!(
        assigned.contains("seated=true"),
        "the job joined on its seat: {assigned:?}"
    );
}
