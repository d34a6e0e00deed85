//! Operator surface end to end: the admin API, `/metrics`, the CLI and log
//! reopening on SIGHUP, against the real cpu-server binary with fake orbs.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{Value, json};
use system_tests::manager_kit::{HEALTHY, orb_pids, orb_pids_with_prefix, starts};
use system_tests::operator_kit::{COUNTING_ORB, OpServer, cli, parse_metrics, request};
use system_tests::procfs;
use system_tests::wait::{until, until_true};
use system_tests::ws::Client;

const SECOND: Duration = Duration::from_secs(1);

fn is_hex_token(value: &str) -> bool {
    value.len() == 32 && value.chars().all(|c| c.is_ascii_hexdigit())
}

/// Waits (bounded) until the room's orb record satisfies `check`.
async fn wait_record(server: &OpServer, room: &str, timeout: Duration, check: impl Fn(&Value) -> bool) -> Value {
    until(timeout, || {
        let (status, record) = server.api("GET", &format!("/api/orbs/{room}"), None);
        (status == 200 && check(&record)).then_some(record)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "orb record of {room} never matched: {:?}",
            server.api("GET", &format!("/api/orbs/{room}"), None)
        )
    })
}

#[tokio::test]
async fn admin_routes_need_the_bearer_token_which_is_generated_private_and_used_by_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = OpServer::start(dir.path(), HEALTHY, &[]);
    let token = server.token();
    assert!(is_hex_token(&token), "generated token {token:?}");
    let mode = std::fs::metadata(server.token_file())
        .expect("token file")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "token file mode");
    assert!(!server.server.proc.stderr().contains(&token), "the token was logged");

    let port = server.api_port();
    for path in ["/api/orbs", "/api/orbs/r1", "/api/rooms", "/metrics"] {
        for given in [None, Some("0123456789abcdef0123456789abcdef"), Some("")] {
            let (status, body) = request(port, "GET", path, given, None);
            assert_eq!(status, 401, "{path} with {given:?}: {body}");
            let body: Value = serde_json::from_str(&body).expect("JSON error");
            assert_eq!(body["code"], "unauthorized", "{body}");
            assert!(body["error"].is_string());
        }
    }
    let (status, body) = request(port, "GET", "/api/orbs", Some(&token), None);
    assert_eq!((status, body.as_str()), (200, "[]"));
    // The public routes stay public.
    assert_eq!(request(port, "GET", "/healthz", None, None).0, 200);

    let run = server.cli(&["orbs", "list"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.starts_with("ROOM"), "{run:?}");
    let wrong = cli(
        &server.dir,
        &[
            ("CPU_HOST", &format!("127.0.0.1:{port}")),
            ("ADMIN_TOKEN", "ffffffffffffffffffffffffffffffff"),
        ],
        &["orbs", "list"],
        10 * SECOND,
    );
    assert_eq!(wrong.code, Some(1), "{wrong:?}");
    assert!(wrong.stderr.contains("unauthorized"), "{wrong:?}");
}

#[tokio::test]
async fn list_shows_the_real_pid_and_sampled_rss_and_delete_answers_after_the_exit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = OpServer::start(dir.path(), COUNTING_ORB, &[]);
    let (status, created) = server.api("POST", "/api/orbs", Some(r#"{"room":"r-list"}"#));
    assert_eq!(status, 201, "{created}");
    // COUNTING_ORB reports no memory: a positive RSS can only come from the sampler.
    let record = wait_record(&server, "r-list", 10 * SECOND, |r| {
        r["state"] == "ready" && r["rss_bytes"].as_u64().is_some_and(|b| b > 0)
    })
    .await;
    let pid = record["pid"].as_i64().expect("pid") as i32;
    let (_, list) = server.api("GET", "/api/orbs", None);
    let listed = list.as_array().expect("array");
    assert_eq!(listed.len(), 1, "{list}");
    assert_eq!(listed[0]["pid"], json!(pid));
    for field in [
        "room",
        "session",
        "state",
        "uptime_ms",
        "restarts",
        "last_exit",
        "last_heartbeat_ms",
        "ipc_rtt_ms",
    ] {
        assert!(listed[0].get(field).is_some(), "{field} missing: {list}");
    }
    assert_eq!(orb_pids("r-list"), vec![pid], "the API pid is the orb in /proc");
    assert!(procfs::cmdline(pid).iter().any(|a| a == "--room=r-list"));

    let (status, body) = server.api("DELETE", "/api/orbs/r-list", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["exit"]["reason"], "manual_termination", "{body}");
    // Answered after the exit: the process is already gone (reaped, no zombie).
    assert!(
        procfs::stat(pid).is_none(),
        "orb {pid} still exists: {:?}",
        procfs::stat(pid)
    );
    assert_eq!(server.api("GET", "/api/orbs/r-list", None).0, 404);
    let (status, body) = server.api("DELETE", "/api/orbs/r-list", None);
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "{body}");
}

#[tokio::test]
async fn spawn_answers_created_existing_and_queued_and_delete_all_leaves_no_orb() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = OpServer::start(dir.path(), HEALTHY, &[("MAX_CONCURRENT_ORBS", "1")]);
    let (status, a) = server.api("POST", "/api/orbs", Some(r#"{"room":"sp-a","session":"s-1"}"#));
    assert_eq!(status, 201, "{a}");
    assert_eq!(a["session"], "s-1");
    let (status, again) = server.api("POST", "/api/orbs", Some(r#"{"room":"sp-a"}"#));
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["session"], "s-1");
    let (status, b) = server.api("POST", "/api/orbs", Some(r#"{"room":"sp-b","coach":"c1"}"#));
    assert_eq!(status, 202, "{b}");
    assert_eq!(
        (b["state"].as_str(), b["queue_position"].as_u64()),
        (Some("queued"), Some(1)),
        "{b}"
    );
    for bad in [r#"{"room":"../etc"}"#, r#"{"room":""}"#] {
        let (status, body) = server.api("POST", "/api/orbs", Some(bad));
        assert_eq!((status, body["code"].as_str()), (400, Some("invalid_room")), "{body}");
    }
    let (status, body) = server.api("DELETE", "/api/orbs/sp-a?wait=maybe", None);
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_query")), "{body}");
    let (status, body) = server.api("POST", "/api/orbs", Some("not json"));
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_body")), "{body}");
    assert!(until_true(5 * SECOND, || orb_pids("sp-a").len() == 1).await);
    // ?wait=false answers at once; the queued room is gone right after.
    let (status, body) = server.api("DELETE", "/api/orbs/sp-b?wait=false", None);
    assert_eq!((status, body["state"].as_str()), (202, Some("stopping")), "{body}");
    assert!(until_true(5 * SECOND, || server.api("GET", "/api/orbs/sp-b", None).0 == 404).await);
    assert_eq!(
        server.api("POST", "/api/orbs", Some(r#"{"room":"sp-b"}"#)).0,
        202,
        "queued again"
    );

    let (status, body) = server.api("DELETE", "/api/orbs", None);
    assert_eq!(status, 200, "{body}");
    let rooms: Vec<&str> = body["stopped"]
        .as_array()
        .expect("stopped")
        .iter()
        .filter_map(|e| e["room"].as_str())
        .collect();
    assert!(rooms.contains(&"sp-a") && rooms.contains(&"sp-b"), "{body}");
    assert_eq!(server.api("GET", "/api/orbs", None).1, json!([]));
    assert!(
        orb_pids_with_prefix("sp-").is_empty(),
        "orbs left: {:?}",
        orb_pids_with_prefix("sp-")
    );
}

#[tokio::test]
async fn reset_brings_a_parked_orb_back_and_the_token_endpoint_issues_one_time_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = OpServer::start(
        dir.path(),
        "exit 3\n",
        &[("ORB_SPAWN_ON", "coach"), ("ORB_MAX_RESTARTS", "1")],
    );
    let (mut coach, _) = Client::join(&server.server.url("r-park"), "coach-1", "coach").await;
    let parked = coach.recv_type("ai_status", 30 * SECOND).await;
    assert_eq!(parked["code"], "orb_parked", "{parked}");
    let record = wait_record(&server, "r-park", 5 * SECOND, |r| r["state"] == "parked").await;
    let before = starts(dir.path(), "r-park").len();
    assert_eq!(before, 2, "{record}");

    let run = server.cli(&["orbs", "reset", "r-park"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("r-park: reset"), "{run:?}");
    assert!(
        until_true(10 * SECOND, || starts(dir.path(), "r-park").len() > before).await,
        "reset did not start the orb again"
    );
    let (status, body) = server.api("POST", "/api/orbs/nobody/reset", None);
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "{body}");

    let (status, first) = server.api("POST", "/api/orbs/r-hand/token", None);
    assert_eq!(status, 200, "{first}");
    let token = first["token"].as_str().expect("token");
    assert!(is_hex_token(token), "{first}");
    assert_eq!(first["expires_in_ms"], 300_000);
    let (_, second) = server.api("POST", "/api/orbs/r-hand/token", None);
    assert_ne!(second["token"], first["token"], "tokens are fresh each time");
}

#[tokio::test]
async fn rooms_lists_participants_without_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = OpServer::start(dir.path(), HEALTHY, &[]);
    let (_coach, _) = Client::join(&server.server.url("r-people"), "coach-7", "coach").await;
    let rooms = until(5 * SECOND, || {
        let (status, rooms) = server.api("GET", "/api/rooms", None);
        (status == 200 && rooms.as_array().is_some_and(|a| !a.is_empty())).then_some(rooms)
    })
    .await
    .expect("rooms");
    assert_eq!(rooms[0]["room"], "r-people", "{rooms}");
    let person = &rooms[0]["participants"][0];
    assert_eq!(person["userId"], "coach-7", "{rooms}");
    assert_eq!(person["userRole"], "coach");
    assert_eq!(person["participantType"], "human");
    let keys: Vec<&String> = person.as_object().expect("object").keys().collect();
    assert_eq!(keys.len(), 4, "only id, name, role and type: {person}");
}

#[tokio::test]
async fn admin_host_serves_the_admin_routes_only_on_its_own_port() {
    let dir = tempfile::tempdir().expect("tempdir");
    let admin_port = system_tests::free_port();
    let admin_host = format!("127.0.0.1:{admin_port}");
    let server = OpServer::start(dir.path(), HEALTHY, &[("ADMIN_HOST", &admin_host)]);
    let token = server.token();
    let public = server.server.port;
    for path in ["/api/orbs", "/api/rooms", "/metrics"] {
        assert_eq!(
            request(public, "GET", path, Some(&token), None).0,
            404,
            "{path} on the public port"
        );
        assert_eq!(
            request(admin_port, "GET", path, Some(&token), None).0,
            200,
            "{path} on ADMIN_HOST"
        );
        assert_eq!(
            request(admin_port, "GET", path, None, None).0,
            401,
            "{path} on ADMIN_HOST without token"
        );
    }
    assert_eq!(request(public, "GET", "/healthz", None, None).0, 200);
    let run = server.cli(&["orbs", "list", "--json"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(serde_json::from_str::<Value>(&run.stdout).expect("json"), json!([]));
}

#[tokio::test]
async fn cli_commands_drive_a_real_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = OpServer::start(dir.path(), COUNTING_ORB, &[]);

    let run = server.cli(&["orbs", "spawn", "c-one"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("c-one: started"), "{run:?}");
    let run = server.cli(&["orbs", "spawn", "c-one"]);
    assert!(run.stdout.contains("already running"), "{run:?}");
    wait_record(&server, "c-one", 10 * SECOND, |r| r["state"] == "ready").await;
    let pid = orb_pids("c-one")[0];

    let run = server.cli(&["orbs", "list"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(
        lines[0].starts_with("ROOM") && lines[0].contains("RSS") && lines[0].contains("CPU"),
        "{run:?}"
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row[..3], ["c-one", &pid.to_string(), "ready"], "{run:?}");

    let run = server.cli(&["orbs", "list", "--json"]);
    let listed: Value = serde_json::from_str(&run.stdout).expect("list --json");
    assert_eq!(listed[0]["pid"], json!(pid));
    let run = server.cli(&["orbs", "show", "c-one", "--json"]);
    let shown: Value = serde_json::from_str(&run.stdout).expect("show --json");
    assert_eq!(
        (shown["room"].as_str(), shown["pid"].as_i64()),
        (Some("c-one"), Some(i64::from(pid)))
    );
    let run = server.cli(&["orbs", "show", "c-one"]);
    assert!(
        run.stdout.contains("c-one") && run.stdout.contains("\"session\""),
        "{run:?}"
    );
    let run = server.cli(&["orbs", "show", "nope"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("not_found"), "{run:?}");

    assert!(
        until_true(5 * SECOND, || {
            std::fs::read_to_string(dir.path().join("logs/orb-c-one.log")).is_ok_and(|t| t.contains("orb-line 3"))
        })
        .await
    );
    let run = server.cli(&["orbs", "logs", "c-one"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stdout.contains("orb-line 1\n") && run.stdout.contains("orb-line 3\n"),
        "{run:?}"
    );
    // -f follows until interrupted: its output grows past what was there at start.
    let mut follow = std::process::Command::new(system_tests::binaries::cpu_server())
        .current_dir(dir.path())
        .env_clear()
        .env("ORB_LOG_DIR", dir.path().join("logs"))
        .args(["orbs", "logs", "c-one", "-f"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn logs -f");
    let at_start = std::fs::read_to_string(dir.path().join("logs/orb-c-one.log"))
        .expect("log")
        .lines()
        .count();
    // Count its lines as they come; wait (bounded) for more than the file had at start.
    let printed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stdout = follow.stdout.take().expect("stdout");
    let counter = std::sync::Arc::clone(&printed);
    let reader = std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout).lines() {
            if line.is_err() {
                break;
            }
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let grew = until_true(10 * SECOND, || {
        printed.load(std::sync::atomic::Ordering::SeqCst) > at_start
    })
    .await;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(follow.id() as i32), Signal::SIGINT).expect("SIGINT");
    let stopped = tokio::task::spawn_blocking(move || {
        let status = follow.wait();
        let _ = reader.join();
        status
    });
    let status = tokio::time::timeout(10 * SECOND, stopped)
        .await
        .expect("logs -f stopped on SIGINT")
        .expect("join")
        .expect("logs -f exit");
    let followed = printed.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        grew,
        "logs -f printed {followed} lines in 10 s, the file had {at_start} at start"
    );
    assert!(status.success(), "logs -f exit: {status:?}");

    let run = server.cli(&["orbs", "kill", "c-one"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("manual_termination"), "{run:?}");
    assert!(procfs::stat(pid).is_none(), "killed orb {pid} still exists");

    for room in ["c-two", "c-three"] {
        assert_eq!(server.cli(&["orbs", "spawn", room]).code, Some(0));
    }
    assert!(until_true(5 * SECOND, || orb_pids_with_prefix("c-").len() >= 2).await);
    let run = server.cli(&["orbs", "kill-all"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("2 orb(s) stopped"), "{run:?}");
    assert!(
        orb_pids_with_prefix("c-").is_empty(),
        "{:?}",
        orb_pids_with_prefix("c-")
    );
    assert_eq!(server.api("GET", "/api/orbs", None).1, json!([]));

    // Nobody listening: a clear message and exit 1.
    let closed = system_tests::free_port();
    let run = cli(
        &server.dir,
        &[
            ("CPU_HOST", &format!("127.0.0.1:{closed}")),
            ("ADMIN_TOKEN", "0123456789abcdef0123"),
        ],
        &["orbs", "list"],
        10 * SECOND,
    );
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("is cpu-server running on"), "{run:?}");
}

#[tokio::test]
async fn check_reports_a_broken_gpu_server_path_with_its_fix_and_passes_on_a_good_setup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().display().to_string();
    let port = system_tests::free_port().to_string();
    let host = format!("127.0.0.1:{port}");
    let logs = format!("{d}/logs");
    let state = format!("{d}/state");
    let missing = format!("{d}/no-such-dir");
    let mut env = vec![
        ("CPU_HOST", host.as_str()),
        ("ORB_LOG_DIR", logs.as_str()),
        ("STATE_DIR", state.as_str()),
        ("GPU_SERVER_PATH", missing.as_str()),
    ];
    let bad = cli(dir.path(), &env, &["check"], 20 * SECOND);
    assert_eq!(bad.code, Some(1), "{bad:?}");
    assert!(
        bad.stdout.contains("PROBLEM") && bad.stdout.contains("no-such-dir"),
        "{bad:?}"
    );
    assert!(bad.stdout.contains("fix: set GPU_SERVER_PATH"), "{bad:?}");

    let target = system_tests::binaries::target_dir().display().to_string();
    env[3] = ("GPU_SERVER_PATH", target.as_str());
    let good = cli(dir.path(), &env, &["check"], 20 * SECOND);
    assert_eq!(good.code, Some(0), "{good:?}");
    assert!(good.stdout.contains("0 problem(s)"), "{good:?}");
    assert!(good.stdout.contains("gpu-orb"), "{good:?}");

    // A port in use is a problem too.
    let _busy = std::net::TcpListener::bind(host.as_str()).expect("bind");
    let busy = cli(dir.path(), &env, &["check"], 20 * SECOND);
    assert_eq!(busy.code, Some(1), "{busy:?}");
    assert!(busy.stdout.contains("CPU_HOST"), "{busy:?}");
}

#[tokio::test]
async fn metrics_parse_and_their_counters_move_as_orbs_spawn_and_die() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = OpServer::start(dir.path(), COUNTING_ORB, &[]);
    let token = server.token();
    let scrape = || {
        let (status, text) = request(server.api_port(), "GET", "/metrics", Some(&token), None);
        assert_eq!(status, 200, "{text}");
        parse_metrics(&text)
    };
    let get = |m: &std::collections::BTreeMap<String, f64>, key: &str| m.get(key).copied().unwrap_or(0.0);
    let before = scrape();
    assert_eq!(get(&before, "cpu_server_orb_spawns_total"), 0.0);
    assert_eq!(get(&before, "cpu_server_orbs{state=\"ready\"}"), 0.0);

    assert_eq!(server.api("POST", "/api/orbs", Some(r#"{"room":"m-1"}"#)).0, 201);
    wait_record(&server, "m-1", 10 * SECOND, |r| {
        r["state"] == "ready" && r["rss_bytes"].as_u64().is_some_and(|b| b > 0)
    })
    .await;
    let up = scrape();
    assert_eq!(get(&up, "cpu_server_orb_spawns_total"), 1.0, "{up:?}");
    assert_eq!(get(&up, "cpu_server_orbs{state=\"ready\"}"), 1.0);
    assert_eq!(get(&up, "cpu_server_orb_slots_used"), 1.0);
    assert_eq!(get(&up, "cpu_server_orb_spawn_to_ready_seconds_count"), 1.0);
    assert!(get(&up, "cpu_server_orb_heartbeats_total") >= 1.0);
    assert!(get(&up, "cpu_server_orb_rss_bytes{room=\"m-1\"}") > 0.0, "{up:?}");

    assert_eq!(server.api("DELETE", "/api/orbs/m-1", None).0, 200);
    let down = scrape();
    assert_eq!(
        get(&down, "cpu_server_orb_kills_total{reason=\"manual_termination\"}"),
        1.0,
        "{down:?}"
    );
    assert_eq!(
        get(&down, "cpu_server_orb_exits_total{cause=\"manual_termination\"}"),
        1.0,
        "{down:?}"
    );
    assert_eq!(get(&down, "cpu_server_orbs{state=\"ready\"}"), 0.0);
    assert_eq!(get(&down, "cpu_server_orb_slots_used"), 0.0);
    assert!(
        !down.contains_key("cpu_server_orb_rss_bytes{room=\"m-1\"}"),
        "stale per-orb series"
    );
    let (status, _) = server.api("GET", "/api/orbs/gone", None);
    assert_eq!(status, 404);
    assert_eq!(get(&scrape(), "cpu_server_errors_total{code=\"not_found\"}"), 1.0);

    // Room traffic: a joined socket is a room, a connection and relayed bytes.
    let quiet = scrape();
    let (coach, _) = Client::join(&server.server.url("m-room"), "coach-m", "coach").await;
    let busy = scrape();
    assert_eq!(get(&busy, "cpu_server_rooms"), 1.0, "{busy:?}");
    assert_eq!(get(&busy, "cpu_server_open_connections"), 1.0, "{busy:?}");
    assert_eq!(
        get(&busy, "cpu_server_connections_total"),
        get(&quiet, "cpu_server_connections_total") + 1.0
    );
    assert!(get(&busy, "cpu_server_relayed_messages_total") > get(&quiet, "cpu_server_relayed_messages_total"));
    assert!(get(&busy, "cpu_server_relayed_bytes_total") > get(&quiet, "cpu_server_relayed_bytes_total"));
    coach.close().await;
}

/// `orb-line N` numbers in `text`.
fn numbers(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| l.strip_prefix("orb-line ")?.trim().parse().ok())
        .collect()
}

#[tokio::test]
async fn sighup_reopens_the_cpu_log_and_orb_logs_after_a_rename_without_losing_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cpu_log = dir.path().join("cpu.log");
    let cpu_log_s = cpu_log.display().to_string();
    let server = OpServer::start(
        dir.path(),
        COUNTING_ORB,
        &[("CPU_LOG_FILE", &cpu_log_s), ("LOG_FORMAT", "text")],
    );
    assert_eq!(server.api("POST", "/api/orbs", Some(r#"{"room":"rot"}"#)).0, 201);
    let orb_log = dir.path().join("logs/orb-rot.log");
    assert!(
        until_true(10 * SECOND, || std::fs::read_to_string(&orb_log)
            .is_ok_and(|t| numbers(&t).len() >= 10))
        .await,
        "orb log never had 10 lines"
    );
    assert!(
        until_true(5 * SECOND, || std::fs::read_to_string(&cpu_log)
            .is_ok_and(|t| t.contains("orb started")))
        .await
    );

    // logrotate without copytruncate: rename, then SIGHUP.
    std::fs::rename(&orb_log, dir.path().join("orb-rot.log.1")).expect("rename orb log");
    std::fs::rename(&cpu_log, dir.path().join("cpu.log.1")).expect("rename cpu log");
    server.server.proc.signal(Signal::SIGHUP);
    assert!(
        until_true(5 * SECOND, || std::fs::read_to_string(&cpu_log)
            .is_ok_and(|t| t.contains("log files reopened")))
        .await,
        "no fresh cpu log after SIGHUP"
    );
    assert!(
        until_true(10 * SECOND, || std::fs::read_to_string(&orb_log)
            .is_ok_and(|t| numbers(&t).len() >= 5))
        .await,
        "no fresh orb log after SIGHUP"
    );
    // The server survived SIGHUP and still answers; stopping the orb flushes its log.
    assert_eq!(server.api("DELETE", "/api/orbs/rot", None).0, 200);

    let old = numbers(&std::fs::read_to_string(dir.path().join("orb-rot.log.1")).expect("old orb log"));
    let new = numbers(&std::fs::read_to_string(&orb_log).expect("new orb log"));
    assert!(!old.is_empty() && !new.is_empty());
    let all: Vec<u64> = old.iter().chain(&new).copied().collect();
    let expected: Vec<u64> = (1..=all.len() as u64).collect();
    assert_eq!(
        all, expected,
        "orb lines lost, duplicated or out of order across the rotation"
    );

    let old_cpu = std::fs::read_to_string(dir.path().join("cpu.log.1")).expect("old cpu log");
    let new_cpu = std::fs::read_to_string(&cpu_log).expect("new cpu log");
    assert!(
        old_cpu.contains("listening") && old_cpu.contains("orb started"),
        "{old_cpu}"
    );
    assert!(
        !old_cpu.contains("log files reopened"),
        "a line after the reopen went to the old file"
    );
    assert!(
        !new_cpu.contains("listening") && !new_cpu.contains("orb started"),
        "lines duplicated: {new_cpu}"
    );
    assert!(
        server.server.proc.stderr().contains("log files reopened"),
        "stderr keeps logging too"
    );
}
