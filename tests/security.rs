//! Attacks on the real cpu-server (and real gpu-orbs) over loopback: impostor
//! AIs, forged and stolen tokens, client JWTs, origins, orb isolation, a storm
//! of hostile frames, refused start-ups, and slow or idle connections against
//! the connection timeouts and caps (plain and native TLS). Every wait is bounded.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use system_tests::deploy_tls::{client_config, https_get};
use system_tests::deploy_tools::TestCert;
use system_tests::manager_kit::{orb_pids, path_env, server_with_real_orbs, single_orb};
use system_tests::procfs;
use system_tests::room_harness::{RoomServer, drain, http_get};
use system_tests::security_kit::{
    Rng, body_code, hostile_text, invalid_utf8, jwt, now_secs, orb_token, proc_limit, proc_status, upgrade_with,
};
use system_tests::slow_clients::{
    HALF_HEADER, LOOPBACK, LOOPBACK_2, LOOPBACK_3, connect_from, healthz_from, open, tls_connect, wait_all_closed,
};
use system_tests::wait::until;
use system_tests::ws::Client;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_tungstenite::tungstenite::Message;

const SECOND: Duration = Duration::from_secs(1);
const SECRET: &str = "test-secret-0123456789abcdef-0123456789";

/// The next `error` frame's code (panics on close or timeout).
async fn error_code(client: &mut Client) -> String {
    let error = client.recv_type("error", 5 * SECOND).await;
    error["code"].as_str().unwrap_or_default().to_owned()
}

/// The socket is still open and served: a ping gets its pong.
async fn still_served(client: &mut Client) {
    client.send(json!({"type":"ping"})).await;
    client.recv_type("pong", 5 * SECOND).await;
}

fn ai_join(user: &str, token: Option<&str>) -> Value {
    let mut join =
        json!({"type":"join","userId":user,"userName":"AI Assistant","userRole":"ai","participantType":"ai"});
    if let Some(token) = token {
        join["token"] = json!(token);
    }
    join
}

#[tokio::test]
async fn only_the_rooms_current_orb_may_join_as_the_ai() {
    let server = server_with_real_orbs(&[]);
    // The real orb joins with its own token: the coach sees it.
    let (mut coach_a, _) = Client::join(&server.url("sec-a"), "coach-a", "coach").await;
    let ai = coach_a.recv_type("user-joined", 15 * SECOND).await;
    assert_eq!(ai["participantType"], "ai", "{ai}");
    let (mut coach_b, _) = Client::join(&server.url("sec-b"), "coach-b", "coach").await;
    coach_b.recv_type("user-joined", 15 * SECOND).await;
    let orb_a = single_orb("sec-a", 5 * SECOND).await;
    let orb_b = single_orb("sec-b", 5 * SECOND).await;
    let token_a = orb_token(orb_a).expect("orb A token");
    let token_b = orb_token(orb_b).expect("orb B token");
    assert_ne!(token_a, token_b, "each orb has its own token");

    // No token, either spelling of "I am the AI".
    let mut impostor = Client::connect(&server.url("sec-a")).await.expect("connect");
    impostor.send(ai_join("ai-fake", None)).await;
    assert_eq!(error_code(&mut impostor).await, "unauthorized");
    impostor
        .send(json!({"type":"join","userId":"ai-fake","userRole":"ai"}))
        .await;
    assert_eq!(error_code(&mut impostor).await, "unauthorized");
    // Another room's token, in the join and in the upgrade.
    impostor.send(ai_join("ai-fake", Some(&token_b))).await;
    assert_eq!(error_code(&mut impostor).await, "forbidden");
    still_served(&mut impostor).await;
    let mut by_query = Client::connect(&format!("{}?token={token_b}", server.url("sec-a")))
        .await
        .expect("connect");
    by_query.send(ai_join("ai-fake", None)).await;
    assert_eq!(error_code(&mut by_query).await, "forbidden");
    let (status, _) = upgrade_with(
        server.port,
        "/ws-simple/sec-a",
        &[format!("Authorization: Bearer {token_b}")],
    )
    .expect("answer");
    assert_eq!(status, 101, "an opaque token is checked at the join, not the upgrade");

    // Revoked: the orb of room A is killed and restarted; its old token stops working.
    kill(Pid::from_raw(orb_a), Signal::SIGKILL).expect("kill orb A");
    let restarted = until(20 * SECOND, || match orb_pids("sec-a").as_slice() {
        [pid] if *pid != orb_a => Some(*pid),
        _ => None,
    })
    .await
    .expect("orb A restarted");
    let new_token = until(5 * SECOND, || orb_token(restarted)).await.expect("new token");
    assert_ne!(new_token, token_a);
    impostor.send(ai_join("ai-fake", Some(&token_a))).await;
    assert_eq!(
        error_code(&mut impostor).await,
        "forbidden",
        "a revoked token must not work"
    );
    // The restarted orb itself joins with its new token.
    let rejoined = coach_a.recv_type("user-joined", 20 * SECOND).await;
    assert_eq!(rejoined["participantType"], "ai");
    // No impostor ever appeared in the room.
    let seen = drain(&mut coach_a, SECOND).await;
    assert!(
        !seen
            .iter()
            .any(|f| f["type"] == "user-joined" && f["userId"] == "ai-fake"),
        "{seen:?}"
    );
    let log = server.proc.stderr();
    for token in [&token_a, &token_b, &new_token] {
        assert!(!log.contains(token.as_str()), "a token reached the server log");
    }
}

#[tokio::test]
async fn a_human_cannot_speak_for_the_ai_and_the_orb_stays() {
    let server = server_with_real_orbs(&[]);
    let (mut coach, _) = Client::join(&server.url("sec-h"), "coach-h", "coach").await;
    let ai = coach.recv_type("user-joined", 15 * SECOND).await;
    let orb = single_orb("sec-h", 5 * SECOND).await;
    let (mut client, _) = Client::join(&server.url("sec-h"), "client-h", "client").await;
    for forged in [
        json!({"type":"ai-orb-shutdown","sessionId":"s","reason":"session_complete"}),
        json!({"type":"ai_status","status":"paused","sessionId":"s"}),
        json!({"type":"orb_heartbeat","metrics":{"cpu":1}}),
        json!({"type":"ai_response","text":"I am the AI"}),
    ] {
        client.send(forged.clone()).await;
        assert_eq!(error_code(&mut client).await, "forbidden", "{forged}");
    }
    // Nothing of it reached the coach, the AI is still in the room and answers.
    let seen = drain(&mut coach, SECOND).await;
    assert!(
        !seen
            .iter()
            .any(|f| f["type"] == "user-left" && f["userId"] == ai["userId"]),
        "{seen:?}"
    );
    assert!(
        !seen
            .iter()
            .any(|f| f["type"] == "ai_response" || f["type"] == "ai-orb-shutdown")
    );
    assert_eq!(orb_pids("sec-h"), [orb], "the orb is untouched");
    coach
        .send(json!({"type":"ai_control","action":"say","text":"still there?"}))
        .await;
    let reply = coach.recv_type("ai_response", 10 * SECOND).await;
    assert_eq!(reply["text"], "echo: still there?");
    assert_eq!(reply["fromId"], ai["userId"]);
}

#[tokio::test]
async fn an_operator_token_from_the_admin_api_works_once() {
    let admin = "admin-token-for-security-tests-0123";
    let server = RoomServer::start(&[("ADMIN_TOKEN", admin)]);
    let issue = || {
        system_tests::security_kit::post(server.port, "/api/orbs/sec-op/token", admin)
            .and_then(|(status, body)| (status == 200).then_some(body))
            .and_then(|body| serde_json::from_str::<Value>(&body).ok())
            .and_then(|v| v["token"].as_str().map(str::to_owned))
    };
    let token = issue().expect("operator token from POST /api/orbs/sec-op/token");
    let (mut coach, _) = Client::join(&server.url("sec-op"), "coach-op", "coach").await;
    let mut orb = Client::connect(&server.url("sec-op")).await.expect("connect");
    // Not valid for another room; then valid once here.
    let mut elsewhere = Client::connect(&server.url("sec-other")).await.expect("connect");
    elsewhere.send(ai_join("ai-orb-op", Some(&token))).await;
    assert_eq!(error_code(&mut elsewhere).await, "forbidden");
    orb.send(ai_join("ai-orb-op", Some(&token))).await;
    orb.recv_type("peer-discovery", 5 * SECOND).await;
    let joined = coach.recv_type("user-joined", 5 * SECOND).await;
    assert_eq!(joined["userId"], "ai-orb-op");
    let mut second = Client::connect(&server.url("sec-op")).await.expect("connect");
    second.send(ai_join("ai-orb-op2", Some(&token))).await;
    assert_eq!(error_code(&mut second).await, "forbidden", "one-time token used twice");
}

#[tokio::test]
async fn client_jwts_are_checked_at_the_upgrade_and_the_join() {
    let server = server_with_real_orbs(&[("JWT_SECRET", SECRET), ("ALLOWED_ORIGINS", "https://app.example.com")]);
    let port = server.port;
    let exp = now_secs() + 600;
    let coach_claims = json!({"sub":"coach-j","role":"coach","exp":exp,"rooms":["sec-j"]});
    let good = jwt(SECRET, &coach_claims);
    let refusal = |path: &str, headers: &[String]| {
        let (status, body) = upgrade_with(port, path, headers).expect("answer");
        (status, body_code(&body))
    };
    assert_eq!(refusal("/ws-simple/sec-j", &[]), (401, "token_missing".to_owned()));
    let forged = jwt("another-secret-another-secret-0000", &coach_claims);
    assert_eq!(
        refusal(&format!("/ws-simple/sec-j?token={forged}"), &[]),
        (401, "token_invalid".to_owned())
    );
    let expired = jwt(SECRET, &json!({"sub":"coach-j","role":"coach","exp":now_secs() - 3600}));
    assert_eq!(
        refusal("/ws-simple/sec-j", &[format!("Authorization: Bearer {expired}")]),
        (401, "token_expired".to_owned())
    );
    assert_eq!(
        refusal("/ws-simple/other-room", &[format!("Authorization: Bearer {good}")]),
        (401, "token_wrong_room".to_owned())
    );
    assert_eq!(
        refusal(
            "/ws-simple/sec-j",
            &[
                format!("Authorization: Bearer {good}"),
                "Origin: https://evil.example".to_owned()
            ]
        ),
        (403, "origin_forbidden".to_owned())
    );
    let (status, _) = upgrade_with(
        port,
        "/ws-simple/sec-j",
        &[
            format!("Authorization: Bearer {good}"),
            "Origin: https://app.example.com".to_owned(),
        ],
    )
    .expect("answer");
    assert_eq!(status, 101, "a valid token from an allowed origin upgrades");

    // The join must match the claims.
    let url = format!("{}?token={good}", server.url("sec-j"));
    let mut liar = Client::connect(&url).await.expect("connect");
    liar.send(json!({"type":"join","userId":"someone-else","userRole":"coach"}))
        .await;
    assert_eq!(error_code(&mut liar).await, "forbidden");
    liar.send(json!({"type":"join","userId":"coach-j","userRole":"client"}))
        .await;
    assert_eq!(error_code(&mut liar).await, "forbidden");
    // The same socket then joins honestly; the real orb (exempt from JWT) follows.
    liar.send(json!({"type":"join","userId":"coach-j","userName":"C","userRole":"coach"}))
        .await;
    liar.recv_type("peer-discovery", 5 * SECOND).await;
    let ai = liar.recv_type("user-joined", 15 * SECOND).await;
    assert_eq!(
        ai["participantType"], "ai",
        "the orb joins with its orb token under JWT_SECRET"
    );
    // A client token for this room, numeric userId claim, joins and meets the coach.
    let client_token = jwt(
        SECRET,
        &json!({"userId":"client-j","role":"client","exp":exp,"room":"sec-j"}),
    );
    let (client, discovery) = Client::join(
        &format!("{}?token={client_token}", server.url("sec-j")),
        "client-j",
        "client",
    )
    .await;
    let peers: Vec<&Value> = discovery["peers"]
        .as_array()
        .map(|p| p.iter().collect())
        .unwrap_or_default();
    assert!(peers.iter().any(|p| p["userId"] == "coach-j"), "{discovery}");
    client.close().await;
    assert!(!server.proc.stderr().contains(&good), "a JWT reached the server log");
}

#[tokio::test]
async fn orbs_run_isolated_with_only_allowlisted_environment() {
    system_tests::privileged_kit::require_root("orbs are switched to ORB_USER=nobody");
    let server = server_with_real_orbs(&[
        ("CANARY_SECRET", "canary-9c1e"),
        ("DATABASE_URL", "postgres://canary-9c1e@db/x"),
        ("JWT_SECRET", SECRET),
        ("ADMIN_TOKEN", "admin-canary-9c1e-0123456789"),
        ("ORB_USER", "nobody"),
        ("ORB_NOFILE", "256"),
        ("ORB_NPROC", "4096"),
    ]);
    let token = jwt(SECRET, &json!({"sub":"coach-i","role":"coach","exp":now_secs() + 600}));
    let (mut coach, _) = Client::join(&format!("{}?token={token}", server.url("sec-iso")), "coach-i", "coach").await;
    let ai = coach.recv_type("user-joined", 20 * SECOND).await;
    assert_eq!(
        ai["participantType"], "ai",
        "an orb running as nobody still joins: {ai}"
    );
    let orb = single_orb("sec-iso", 5 * SECOND).await;
    let environ = procfs::environ(orb);
    assert!(
        !environ.iter().any(|v| v.contains("canary-9c1e") || v.contains(SECRET)),
        "a server secret leaked: {environ:?}"
    );
    let allowed = |name: &str| {
        [
            "PATH",
            "HOME",
            "LANG",
            "TZ",
            "RUST_LOG",
            "NODE_ENV",
            "NODE_CHANNEL_FD",
            "PWD",
            "ROOM_ID",
            "SESSION_ID",
        ]
        .contains(&name)
            || ["ORB_", "CPU_", "OPENAI_", "ELEVENLABS_"]
                .iter()
                .any(|p| name.starts_with(p))
    };
    for var in &environ {
        let name = var.split('=').next().unwrap_or_default();
        assert!(allowed(name), "{name} is outside the allowlist: {environ:?}");
    }
    let own = orb_token(orb).expect("token");
    assert!(!procfs::cmdline(orb).iter().any(|a| a.contains(&own)), "token in argv");
    let uid = proc_status(orb, "Uid").expect("status");
    assert!(
        uid.split_whitespace().all(|id| id == "65534"),
        "orb runs as nobody: Uid {uid}"
    );
    let gid = proc_status(orb, "Gid").expect("status");
    assert!(gid.split_whitespace().all(|id| id == "65534"), "Gid {gid}");
    assert_eq!(
        proc_status(orb, "Groups").as_deref(),
        Some(""),
        "root's supplementary groups dropped"
    );
    assert_eq!(proc_status(orb, "NoNewPrivs").as_deref(), Some("1"));
    assert_eq!(proc_limit(orb, "Max open files").as_deref(), Some("256"));
    assert_eq!(proc_limit(orb, "Max processes").as_deref(), Some("4096"));
    // The parent-death signal survives the uid switch: SIGKILL the server, the orb dies.
    let server_pid = server.proc.pid() as i32;
    kill(Pid::from_raw(server_pid), Signal::SIGKILL).expect("kill server");
    assert!(
        until(10 * SECOND, || procfs::stat(orb)
            .is_none_or(|s| s.state == 'Z')
            .then_some(()))
        .await
        .is_some(),
        "orb outlived its SIGKILLed server"
    );
}

#[tokio::test]
async fn a_storm_of_hostile_frames_leaves_the_server_up_bounded_and_relaying() {
    let mut server = RoomServer::start(&[("MAX_MESSAGES_PER_SECOND", "100000")]);
    let pid = server.proc.pid() as i32;
    // A quiet room to check afterwards, joined before the storm.
    let (mut calm_a, _) = Client::join(&server.url("calm"), "calm-a", "coach").await;
    let (mut calm_b, _) = Client::join(&server.url("calm"), "calm-b", "client").await;
    calm_a.recv_type("user-joined", 5 * SECOND).await;
    let rss_before = procfs::rss_bytes(pid).expect("statm");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..8u64 {
        let url = server.url(&format!("storm-{}", worker % 3));
        tasks.push(tokio::spawn(async move { storm(&url, worker, 1250).await }));
    }
    let mut sent = 0;
    let mut errors = 0;
    for task in tasks {
        let (n, e) = tokio::time::timeout(120 * SECOND, task)
            .await
            .expect("storm worker finished in time")
            .expect("storm worker");
        sent += n;
        errors += e;
    }
    assert!(sent >= 10_000, "only {sent} frames sent");
    assert!(errors >= 1000, "only {errors} error replies: were the frames handled?");
    // Server alive, memory bounded, other rooms still relaying.
    assert_eq!(
        server.wait_exit(Duration::ZERO).await,
        None,
        "server died:\n{}",
        server.proc.stderr()
    );
    assert_eq!(http_get(server.port, "/healthz").map(|r| r.0), Some(200));
    let grown = procfs::rss_bytes(pid).expect("statm").saturating_sub(rss_before);
    assert!(grown < 50 << 20, "RSS grew by {} MB", grown >> 20);
    calm_a
        .send(json!({"type":"offer","offer":{"type":"offer","sdp":"v=0"},"toId":"calm-b"}))
        .await;
    let offer = calm_b.recv_type("offer", 5 * SECOND).await;
    assert_eq!(offer["fromId"], "calm-a");
    calm_b
        .send(json!({"type":"answer","answer":{"sdp":"ok"},"toId":"calm-a"}))
        .await;
    assert_eq!(calm_a.recv_type("answer", 5 * SECOND).await["fromId"], "calm-b");
    eprintln!(
        "storm: {sent} frames, {errors} error replies read, in {:?}, RSS {} MB -> {} MB",
        started.elapsed(),
        rss_before >> 20,
        procfs::rss_bytes(pid).unwrap_or(0) >> 20
    );
}

/// Sends `count` hostile frames on one socket (reconnecting whenever the server
/// closes it, e.g. after an over-size frame); returns how many were sent.
/// Also counts the `error` replies read back (proof the frames were handled).
/// Every worker sends at least one 10 MB string, one 100k-deep `[` nesting and
/// one invalid UTF-8 binary frame; the rest is random (replayable by seed).
async fn storm(url: &str, seed: u64, count: usize) -> (usize, usize) {
    let mut rng = Rng::new(0x5eed_0000 + seed);
    let mut sent = 0;
    let mut errors = 0;
    let mut socket = None;
    let mut failed_connects = 0;
    while sent < count {
        if socket.is_none() {
            let connected = tokio::time::timeout(5 * SECOND, tokio_tungstenite::connect_async(url)).await;
            match connected {
                Ok(Ok((ws, _))) => socket = Some(ws),
                _ => {
                    failed_connects += 1;
                    assert!(failed_connects < 100, "the server refused 100 reconnects");
                    // A retry backoff, not a synchronisation.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
        }
        let Some(ws) = socket.as_mut() else { continue };
        let message = match (sent, rng.below(20)) {
            (100, _) => Message::text(format!(r#"{{"type":"join","userId":"{}"}}"#, "x".repeat(10 << 20))),
            (200, _) => Message::text("[".repeat(100_000)),
            (300, _) | (_, 0) => Message::binary(invalid_utf8(&mut rng)),
            (_, 1) => Message::text("[".repeat(100_000)),
            (_, 2) => Message::binary(hostile_text(&mut rng, 60_000).into_bytes()),
            _ => Message::text(hostile_text(&mut rng, 60_000)),
        };
        let ok = matches!(tokio::time::timeout(5 * SECOND, ws.send(message)).await, Ok(Ok(())));
        sent += 1;
        // Read whatever came back without waiting, so replies never pile up.
        while let Ok(Some(frame)) = tokio::time::timeout(Duration::ZERO, ws.next()).await {
            match frame {
                Ok(Message::Text(text)) => errors += usize::from(text.contains(r#""type":"error""#)),
                Ok(Message::Ping(_) | Message::Pong(_)) => {}
                _ => {
                    socket = None;
                    break;
                }
            }
        }
        if !ok {
            socket = None;
        }
    }
    (sent, errors)
}

#[tokio::test]
async fn refused_start_ups_exit_64_naming_the_setting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |env: &[(&str, &str)]| {
        let mut command = RoomServer::command(dir.path());
        command
            .env("CPU_HOST", format!("127.0.0.1:{}", system_tests::free_port()))
            .env("STATE_DIR", dir.path().join("state"))
            .env("GPU_SERVER_PATH", dir.path());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut proc = system_tests::process::Proc::spawn("cpu-server", command, dir.path());
        let status = proc.wait_exit(10 * SECOND);
        (status.and_then(|s| s.code()), proc.stderr())
    };
    let (code, stderr) = run(&[("NODE_ENV", "production")]);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("JWT_SECRET"), "{stderr}");
    let (code, stderr) = run(&[("ORB_USER", "no-such-user-sec9")]);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("ORB_USER"), "{stderr}");
    let (code, stderr) = run(&[("JWT_SECRET", "short-jwt-secret")]);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(
        stderr.contains("JWT_SECRET") && !stderr.contains("short-jwt-secret"),
        "{stderr}"
    );
}

#[tokio::test]
async fn orb_auth_false_lets_tokenless_legacy_orbs_join_with_a_warning() {
    let server = RoomServer::start(&[("ORB_AUTH", "false")]);
    assert!(
        server.proc.stderr().contains("ORB_AUTH=false"),
        "no start-up warning:\n{}",
        server.proc.stderr()
    );
    let (mut coach, _) = Client::join(&server.url("sec-legacy"), "coach-l", "coach").await;
    let mut legacy = Client::connect(&server.url("sec-legacy")).await.expect("connect");
    legacy.send(ai_join("ai-orb-legacy", None)).await;
    legacy.recv_type("peer-discovery", 5 * SECOND).await;
    let joined = coach.recv_type("user-joined", 5 * SECOND).await;
    assert_eq!(joined["userId"], "ai-orb-legacy");
    assert_eq!(joined["participantType"], "ai");
}

#[tokio::test]
async fn the_parent_death_signal_survives_the_switch_to_orb_user() {
    use std::os::unix::fs::PermissionsExt;
    system_tests::privileged_kit::require_root("orbs are switched to ORB_USER=nobody");
    // A fake orb that ignores every polite end (TERM, HUP, a closed channel):
    // only PR_SET_PDEATHSIG's SIGKILL can stop it once the server is gone.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let body = "trap '' TERM HUP PIPE\nready\nwhile :; do sleep 0.1; done\n";
    let program = system_tests::manager_kit::fake_orb(dir.path(), "stubborn-orb", body);
    let (dir_s, program_s, path) = (
        dir.path().display().to_string(),
        program.display().to_string(),
        path_env(),
    );
    let server = RoomServer::start(&[
        ("PATH", &path),
        ("ORB_SPAWN_ON", "coach"),
        ("GPU_SERVER_PATH", &dir_s),
        ("ORB_COMMAND", &program_s),
        ("ORB_TEST_DIR", &dir_s),
        ("ORB_USER", "nobody"),
        ("ORB_READY_TIMEOUT", "5000"),
    ]);
    let (_coach, _) = Client::join(&server.url("sec-pdeath"), "coach-p", "coach").await;
    let orb = single_orb("sec-pdeath", 10 * SECOND).await;
    let uid = until(5 * SECOND, || {
        proc_status(orb, "Uid").filter(|u| u.starts_with("65534"))
    })
    .await
    .expect("the orb runs as nobody");
    assert!(uid.split_whitespace().all(|id| id == "65534"), "Uid {uid}");
    kill(Pid::from_raw(server.proc.pid() as i32), Signal::SIGKILL).expect("kill server");
    let gone = until(10 * SECOND, || {
        procfs::stat(orb).is_none_or(|s| s.state == 'Z').then_some(())
    })
    .await;
    if gone.is_none() {
        let _ = kill(Pid::from_raw(-orb), Signal::SIGKILL);
        panic!("the orb running as nobody outlived its SIGKILLed server");
    }
}

/// A server whose connection timeouts and caps are `env` (others long, so
/// each test sees only the limit it checks).
fn limited_server(env: &[(&str, &str)]) -> RoomServer {
    let mut all = vec![
        ("HTTP_HEADER_TIMEOUT", "60000"),
        ("TLS_HANDSHAKE_TIMEOUT", "60000"),
        ("WS_UPGRADE_TIMEOUT", "60000"),
    ];
    all.retain(|(name, _)| !env.iter().any(|(n, _)| n == name));
    all.extend_from_slice(env);
    RoomServer::start(&all)
}

/// Two room sockets in `room` that relay an offer (a is the coach, b the client).
async fn relaying_pair(server: &RoomServer, room: &str) -> (Client, Client) {
    let (mut a, _) = Client::join(&server.url(room), "pair-a", "coach").await;
    let (b, _) = Client::join(&server.url(room), "pair-b", "client").await;
    a.recv_type("user-joined", 5 * SECOND).await;
    (a, b)
}

async fn assert_relays(a: &mut Client, b: &mut Client) {
    a.send(json!({"type":"offer","offer":{"type":"offer","sdp":"v=0"},"toId":"pair-b"}))
        .await;
    assert_eq!(b.recv_type("offer", 5 * SECOND).await["fromId"], "pair-a");
}

#[tokio::test]
async fn idle_and_half_header_connections_are_closed_by_the_header_timeout() {
    let server = limited_server(&[
        ("HTTP_HEADER_TIMEOUT", "600"),
        ("MAX_PENDING_CONNECTIONS_PER_IP", "1000"),
    ]);
    let started = tokio::time::Instant::now();
    let mut idle = open(LOOPBACK, server.port, 100, b"").await;
    let mut half = open(LOOPBACK_2, server.port, 100, HALF_HEADER).await;
    // A keep-alive connection that was answered once, then idles.
    let mut kept = open(LOOPBACK, server.port, 1, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let deadline = started + 4 * SECOND;
    let (idle_closed, idle_last) = wait_all_closed(&mut idle, started, deadline).await;
    let (half_closed, half_last) = wait_all_closed(&mut half, started, deadline).await;
    let (kept_closed, _) = wait_all_closed(&mut kept, started, deadline).await;
    eprintln!(
        "header timeout 600 ms: {idle_closed}/100 idle closed by {idle_last:?}, {half_closed}/100 half-header by {half_last:?}"
    );
    assert_eq!(
        (idle_closed, half_closed, kept_closed),
        (100, 100, 1),
        "connections left open"
    );
    assert!(
        idle_last >= Duration::from_millis(500),
        "closed before the timeout: {idle_last:?}"
    );
    assert_eq!(http_get(server.port, "/healthz").map(|r| r.0), Some(200));
}

#[tokio::test]
async fn the_upgrade_timeout_bounds_the_time_from_accept_to_the_first_request() {
    let server = limited_server(&[("HTTP_HEADER_TIMEOUT", "10000"), ("WS_UPGRADE_TIMEOUT", "700")]);
    let started = tokio::time::Instant::now();
    let mut half = open(LOOPBACK, server.port, 20, HALF_HEADER).await;
    let (mut a, mut b) = relaying_pair(&server, "sec-upgrade").await;
    let mut kept = connect_from(LOOPBACK, server.port).await;
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    kept.write_all(request).await.expect("write");
    let (closed, last) = wait_all_closed(&mut half, started, started + 3 * SECOND).await;
    eprintln!("upgrade timeout 700 ms: {closed}/20 half-header connections closed by {last:?}");
    assert_eq!(closed, 20, "half-header connections outlived WS_UPGRADE_TIMEOUT");
    assert!(last < 3 * SECOND && last >= Duration::from_millis(600), "{last:?}");
    // A window proving nothing happens: connections that upgraded or sent a
    // request in time are not closed by the deadline (1.5 s > 700 ms).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_relays(&mut a, &mut b).await;
    kept.write_all(request)
        .await
        .expect("the answered connection is still open");
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(5 * SECOND, kept.read(&mut answer))
        .await
        .expect("answer in time")
        .expect("read");
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );
}

#[tokio::test]
async fn native_tls_stalled_handshakes_and_half_headers_are_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = TestCert::generate(dir.path());
    let (cert_path, key_path) = (cert.cert.display().to_string(), cert.key.display().to_string());
    let server = RoomServer::start_with_probe(
        &[
            ("TLS_CERT", &cert_path),
            ("TLS_KEY", &key_path),
            ("TLS_HANDSHAKE_TIMEOUT", "600"),
            ("HTTP_HEADER_TIMEOUT", "600"),
            ("WS_UPGRADE_TIMEOUT", "60000"),
            ("MAX_PENDING_CONNECTIONS_PER_IP", "1000"),
        ],
        |port| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
    );
    let config = client_config(&cert.ca);
    let started = tokio::time::Instant::now();
    let mut silent = open(LOOPBACK, server.port, 30, b"").await;
    // The first bytes of a ClientHello record, never finished.
    let mut half_hello = open(LOOPBACK_2, server.port, 30, &[0x16, 0x03, 0x01, 0x00, 0xf0, 0x01]).await;
    let mut half_header = Vec::new();
    for _ in 0..30 {
        let mut tls = tls_connect(&config, server.port).await;
        tls.write_all(HALF_HEADER).await.expect("write");
        tls.flush().await.expect("flush");
        half_header.push(tls);
    }
    let deadline = started + 5 * SECOND;
    let (silent_closed, silent_last) = wait_all_closed(&mut silent, started, deadline).await;
    let (hello_closed, _) = wait_all_closed(&mut half_hello, started, deadline).await;
    let (header_closed, header_last) = wait_all_closed(&mut half_header, started, deadline).await;
    eprintln!(
        "TLS 600 ms timeouts: silent {silent_closed}/30 by {silent_last:?}, half ClientHello {hello_closed}/30, \
         half header {header_closed}/30 by {header_last:?}"
    );
    assert_eq!(
        (silent_closed, hello_closed, header_closed),
        (30, 30, 30),
        "TLS connections left open"
    );
    assert!(silent_last < 4 * SECOND, "{silent_last:?}");
    let port = server.port;
    let answer = tokio::task::spawn_blocking(move || https_get(&config, port, "/healthz"))
        .await
        .expect("join");
    assert_eq!(answer.map(|(status, _, _)| status), Ok(200), "HTTPS still served");
}

#[tokio::test]
async fn the_per_address_cap_refuses_the_excess_while_others_connect_and_rooms_relay() {
    let server = limited_server(&[
        ("MAX_PENDING_CONNECTIONS_PER_IP", "5"),
        ("TRUSTED_PROXIES", "127.0.0.3"),
    ]);
    // Room sockets are no longer pending: these two leave all 5 places free.
    let (mut a, mut b) = relaying_pair(&server, "sec-pending").await;
    let mut held = open(LOOPBACK, server.port, 5, b"").await;
    let mut excess = open(LOOPBACK, server.port, 3, b"").await;
    let soon = tokio::time::Instant::now() + 2 * SECOND;
    let (refused, _) = wait_all_closed(&mut excess, tokio::time::Instant::now(), soon).await;
    assert_eq!(refused, 3, "connections over MAX_PENDING_CONNECTIONS_PER_IP were kept");
    // A window proving nothing happens: the 5 within the cap stay open.
    let window = tokio::time::Instant::now() + Duration::from_millis(300);
    let (closed, _) = wait_all_closed(&mut held, tokio::time::Instant::now(), window).await;
    assert_eq!(closed, 0, "connections within the cap were closed");
    assert_eq!(
        healthz_from(LOOPBACK_2, server.port).await,
        Some(200),
        "another address is served"
    );
    assert_relays(&mut a, &mut b).await;
    // A trusted proxy carries many clients: no per-address cap for it.
    let mut proxied = open(LOOPBACK_3, server.port, 8, b"").await;
    let window = tokio::time::Instant::now() + Duration::from_millis(300);
    let (closed, _) = wait_all_closed(&mut proxied, tokio::time::Instant::now(), window).await;
    assert_eq!(closed, 0, "a TRUSTED_PROXIES peer was capped");
    assert_eq!(healthz_from(LOOPBACK_3, server.port).await, Some(200));
    let log = server.proc.stderr();
    assert!(log.contains("MAX_PENDING_CONNECTIONS_PER_IP reached"), "{log}");
    // Places come back when connections close.
    drop(held);
    let recovered = wait_served(LOOPBACK, server.port).await;
    assert!(recovered, "the address never got a place back");
}

/// Bounded wait until a `GET /healthz` from `source` is answered.
async fn wait_served(source: std::net::IpAddr, port: u16) -> bool {
    let deadline = Instant::now() + 5 * SECOND;
    while Instant::now() < deadline {
        if healthz_from(source, port).await == Some(200) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn the_total_cap_refuses_with_one_warning_and_the_server_recovers() {
    let server = limited_server(&[("MAX_CONNECTIONS", "8"), ("MAX_PENDING_CONNECTIONS_PER_IP", "100")]);
    // Room sockets count: 2 of them and 6 idle connections fill the server.
    let (mut a, mut b) = relaying_pair(&server, "sec-total").await;
    let mut idle = open(LOOPBACK, server.port, 3, b"").await;
    idle.extend(open(LOOPBACK_2, server.port, 3, b"").await);
    let mut excess = open(LOOPBACK_2, server.port, 4, b"").await;
    let soon = tokio::time::Instant::now() + 2 * SECOND;
    let (refused, _) = wait_all_closed(&mut excess, tokio::time::Instant::now(), soon).await;
    assert_eq!(refused, 4, "connections over MAX_CONNECTIONS were kept");
    assert_eq!(
        healthz_from(LOOPBACK, server.port).await,
        None,
        "a full server answered"
    );
    assert_relays(&mut a, &mut b).await;
    let log = server.proc.stderr();
    let warnings = log.matches("MAX_CONNECTIONS reached").count();
    assert_eq!(warnings, 1, "one rate-limited warning for 5 refusals:\n{log}");
    // The idle connections go away: new ones are served again.
    drop(idle);
    assert!(wait_served(LOOPBACK, server.port).await, "the server never recovered");
    assert_eq!(server.proc.stderr().matches("MAX_CONNECTIONS reached").count(), 1);
}

/// The response head of `GET path` (5 s bound).
fn response_head(port: u16, path: &str) -> String {
    system_tests::http_client::get_answer(port, path)
        .map(|answer| answer.head)
        .unwrap_or_default()
}

#[tokio::test]
async fn the_pages_csp_lets_sockets_reach_only_their_own_origin() {
    let server = RoomServer::start(&[]);
    for path in ["/room/sec-csp", "/dashboard", "/assets/room.js"] {
        let head = response_head(server.port, path);
        let csp = head
            .lines()
            .find_map(|l| l.strip_prefix("content-security-policy: "))
            .unwrap_or_else(|| panic!("no CSP on {path}:\n{head}"));
        assert_eq!(csp, "default-src 'self'; connect-src 'self'", "{path}");
    }
}

/// CPU time (user + system, clock ticks) `pid` has used.
fn cpu_ticks(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after = &text[text.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

#[tokio::test]
async fn out_of_descriptors_the_accept_loop_pauses_instead_of_spinning_and_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = system_tests::free_port();
    let mut command = std::process::Command::new("/bin/sh");
    command
        .args(["-c", "ulimit -n 64 && exec \"$0\""])
        .arg(system_tests::binaries::cpu_server())
        .current_dir(dir.path())
        .env_clear()
        .env("CPU_HOST", format!("127.0.0.1:{port}"))
        .env("ORB_SPAWN_ON", "manual")
        .env("ORB_LOG_DIR", dir.path().join("logs"))
        .env("RUST_LOG", "info")
        .env("MAX_CONNECTIONS", "1000")
        .env("MAX_PENDING_CONNECTIONS_PER_IP", "1000")
        .env("HTTP_HEADER_TIMEOUT", "60000")
        .env("WS_UPGRADE_TIMEOUT", "60000");
    let proc = system_tests::process::Proc::spawn("cpu-server-nofile", command, dir.path());
    assert!(wait_served(LOOPBACK, port).await, "not ready:\n{}", proc.stderr());
    assert!(
        proc.stderr().contains("MAX_CONNECTIONS is above the open-file limit"),
        "no start-up warning:\n{}",
        proc.stderr()
    );
    // More idle connections than descriptors: accept fails with EMFILE.
    let idle = open(LOOPBACK, port, 80, b"").await;
    let failing = until(5 * SECOND, || proc.stderr().contains("accept failed").then_some(())).await;
    assert!(failing.is_some(), "accept never failed:\n{}", proc.stderr());
    // A window proving the loop does not spin while descriptors stay exhausted.
    let before = cpu_ticks(proc.pid());
    tokio::time::sleep(SECOND).await;
    let used = cpu_ticks(proc.pid()) - before;
    eprintln!("accept failing (EMFILE): {used} clock ticks of CPU in 1 s");
    assert!(
        used < 30,
        "the server used {used} ticks of CPU in 1 s with accept failing"
    );
    assert_eq!(
        proc.stderr().matches("accept failed").count(),
        1,
        "rate-limited warning"
    );
    drop(idle);
    assert!(wait_served(LOOPBACK, port).await, "never recovered:\n{}", proc.stderr());
}

/// A fake orb that reports who it is, its capabilities and what it could read
/// of the server's secrets (`/proc/<server>/environ`, the env file,
/// `STATE_DIR/admin-token`) into `ORB_TEST_DIR/report-<room>`; then leaves one
/// grandchild in its group and one that escaped it (`setsid`), and ignores
/// every polite end: only signals from the server can stop it.
const PRYING_ORB: &str = r#"report="$ORB_TEST_DIR/report-$room"
{
  echo "uid $(id -u)"
  grep '^Cap' "/proc/$$/status"
  echo "--- environ"; tr '\0' '\n' < "/proc/$PPID/environ"
  echo "--- envfile"; cat "$ORB_TEST_ENV_FILE"
  echo "--- token"; cat "$ORB_TEST_STATE_DIR/admin-token"
  echo "--- end"
} > "$report.tmp" 2>&1
mv "$report.tmp" "$report"
sleep 300 &
echo $! > "$ORB_TEST_DIR/grouped-$room"
setsid sleep 300 &
echo $! > "$ORB_TEST_DIR/escaped-$room"
trap '' TERM HUP PIPE
ready
while :; do beat 2>/dev/null; sleep 0.1; done
"#;

/// The lines of `report` between `--- name` and the next `---`.
fn section<'a>(report: &'a str, name: &str) -> &'a str {
    let start = report
        .find(&format!("--- {name}\n"))
        .unwrap_or_else(|| panic!("no {name} section: {report}"));
    let rest = &report[start + name.len() + 5..];
    &rest[..rest.find("--- ").unwrap_or(rest.len())]
}

/// Asserts `orb` holds no capability at all (from its `/proc/<pid>/status`).
fn assert_no_capabilities(orb: i32) {
    for set in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
        assert_eq!(
            proc_status(orb, set).as_deref(),
            Some("0000000000000000"),
            "orb {orb} holds capabilities in {set}"
        );
    }
}

#[tokio::test]
async fn orbs_of_an_unprivileged_server_run_as_orb_user_without_capabilities_and_read_no_secret() {
    use std::os::unix::fs::MetadataExt;
    use system_tests::privileged_kit::{ORB_USER, SERVER_USER, UnprivilegedServer, ensure_user, require_root};
    require_root("the server runs as a throwaway user with ambient capabilities (setpriv)");
    let (orb_uid, orb_gid) = ensure_user(ORB_USER);
    let (srv_uid, _) = ensure_user(SERVER_USER);
    let server = UnprivilegedServer::start(PRYING_ORB, &[("ORB_USER", ORB_USER)]);
    let server_pid = server.proc.pid() as i32;
    let uid = proc_status(server_pid, "Uid").expect("server status");
    assert!(
        uid.split_whitespace().all(|id| id == srv_uid.to_string()),
        "the server runs as {SERVER_USER}: Uid {uid}"
    );
    assert_eq!(
        proc_status(server_pid, "CapEff").as_deref(),
        Some("00000000000000e0"),
        "the server has exactly CAP_KILL, CAP_SETGID, CAP_SETUID"
    );
    // Non-dumpable: its /proc files belong to root, not to its own user.
    let environ_owner = std::fs::metadata(format!("/proc/{server_pid}/environ"))
        .expect("server environ")
        .uid();
    assert_eq!(environ_owner, 0, "PR_SET_DUMPABLE 0: /proc/<server>/environ is root's");

    let (status, body) = server.api("POST", "/api/orbs", Some(r#"{"room":"sec-priv"}"#));
    assert!(status == 200 || status == 201 || status == 202, "{status} {body}");
    let report = server
        .report("report-sec-priv", 10 * SECOND)
        .await
        .unwrap_or_else(|| panic!("the orb wrote no report:\n{}", server.proc.stderr()));
    let orb = single_orb("sec-priv", 5 * SECOND).await;

    // Who it is.
    assert!(report.starts_with(&format!("uid {orb_uid}\n")), "{report}");
    let ids = proc_status(orb, "Uid").expect("orb status");
    assert!(ids.split_whitespace().all(|id| id == orb_uid.to_string()), "Uid {ids}");
    let gids = proc_status(orb, "Gid").expect("orb status");
    assert!(
        gids.split_whitespace().all(|id| id == orb_gid.to_string()),
        "Gid {gids}"
    );
    assert_eq!(proc_status(orb, "NoNewPrivs").as_deref(), Some("1"));
    assert!(
        server.proc.stderr().contains("orbs run as ORB_USER"),
        "{}",
        server.proc.stderr()
    );
    // No capabilities, seen by the orb itself and from outside.
    for set in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
        assert!(
            report.contains(&format!("{set}:\t0000000000000000\n")),
            "{set} in {report}"
        );
    }
    assert_no_capabilities(orb);
    // No secret, by any of the three ways.
    let token = server.admin_token();
    for secret in [
        &server.secrets.jwt,
        &server.secrets.turn,
        &server.secrets.admin_in_env_file,
        &token,
    ] {
        assert!(!report.contains(secret.as_str()), "the orb read a secret: {report}");
    }
    for name in ["environ", "envfile", "token"] {
        assert!(
            section(&report, name).contains("Permission denied"),
            "{name} was not refused: {report}"
        );
    }

    // The selective kill still ends the orb and its whole group across the uid
    // (CAP_KILL), and the reaper recognises the escaped grandchild by its uid.
    let grouped: i32 = server
        .report("grouped-sec-priv", 5 * SECOND)
        .await
        .expect("grouped")
        .trim()
        .parse()
        .expect("pid");
    let escaped: i32 = server
        .report("escaped-sec-priv", 5 * SECOND)
        .await
        .expect("escaped")
        .trim()
        .parse()
        .expect("pid");
    assert!(
        until(5 * SECOND, || procfs::stat(escaped).filter(|s| s.pgrp == escaped))
            .await
            .is_some(),
        "the escaped grandchild leads its own group"
    );
    let (status, body) = server.api("DELETE", "/api/orbs/sec-priv", None);
    assert_eq!(status, 200, "{body}");
    for (what, pid) in [
        ("orb", orb),
        ("grandchild in its group", grouped),
        ("escaped grandchild", escaped),
    ] {
        let gone = until(10 * SECOND, || procfs::stat(pid).is_none().then_some(())).await;
        if gone.is_none() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            panic!(
                "the {what} ({pid}) survived: {:?}\n{}",
                procfs::stat(pid),
                server.proc.stderr()
            );
        }
    }
    assert!(
        until(5 * SECOND, || procfs::zombie_children(server_pid)
            .is_empty()
            .then_some(()))
        .await
        .is_some(),
        "zombies left"
    );
}

#[tokio::test]
async fn an_orb_of_the_servers_own_user_cannot_read_its_environ_nor_keep_its_capabilities() {
    use system_tests::privileged_kit::{SERVER_USER, UnprivilegedServer, ensure_user, require_root};
    require_root("the server runs as a throwaway user (setpriv)");
    let (srv_uid, _) = ensure_user(SERVER_USER);
    // No ORB_USER: the orb is the server's own user. Without capabilities, only
    // PR_SET_DUMPABLE 0 keeps /proc/<server>/environ from it; with the ambient
    // capabilities (but no user switch), only the pre-exec hook keeps them from
    // surviving the orb's exec.
    for caps in [false, true] {
        let server = UnprivilegedServer::start_with_caps(PRYING_ORB, &[], caps);
        let room = format!("sec-same-{caps}");
        let (status, body) = server.api("POST", "/api/orbs", Some(&format!(r#"{{"room":"{room}"}}"#)));
        assert!(status == 200 || status == 201 || status == 202, "{status} {body}");
        let report = server
            .report(&format!("report-{room}"), 10 * SECOND)
            .await
            .unwrap_or_else(|| panic!("the orb wrote no report:\n{}", server.proc.stderr()));
        let orb = single_orb(&room, 5 * SECOND).await;
        assert!(report.starts_with(&format!("uid {srv_uid}\n")), "{report}");
        let environ = section(&report, "environ");
        assert!(environ.contains("Permission denied"), "caps {caps}: {report}");
        for secret in [&server.secrets.jwt, &server.secrets.turn] {
            assert!(
                !report.contains(secret.as_str()),
                "caps {caps}: the orb read a secret: {report}"
            );
        }
        assert_no_capabilities(orb);
        let (status, body) = server.api("DELETE", &format!("/api/orbs/{room}"), None);
        assert_eq!(status, 200, "{body}");
        assert!(
            until(10 * SECOND, || procfs::stat(orb).is_none().then_some(()))
                .await
                .is_some(),
            "orb survived"
        );
    }
}

#[tokio::test]
async fn an_unprivileged_server_sweeps_what_orbs_of_orb_user_left_behind() {
    use system_tests::privileged_kit::{ORB_USER, SERVER_USER, UnprivilegedServer, ensure_user, require_root};
    require_root("the server runs as a throwaway user with ambient capabilities (setpriv)");
    ensure_user(ORB_USER);
    ensure_user(SERVER_USER);
    let first = UnprivilegedServer::start(PRYING_ORB, &[("ORB_USER", ORB_USER)]);
    let (status, body) = first.api("POST", "/api/orbs", Some(r#"{"room":"sec-sweep"}"#));
    assert!(status == 200 || status == 201 || status == 202, "{status} {body}");
    let escaped: i32 = first
        .report("escaped-sec-sweep", 10 * SECOND)
        .await
        .expect("escaped")
        .trim()
        .parse()
        .expect("pid");
    first.proc.signal(Signal::SIGKILL);
    drop(first);
    // The orb died with its server; the escaped grandchild lives on, and its
    // environment is unreadable to the next server (another user's process).
    assert!(
        until(5 * SECOND, || orb_pids("sec-sweep").is_empty().then_some(()))
            .await
            .is_some()
    );
    assert!(
        procfs::stat(escaped).is_some_and(|s| s.state != 'Z'),
        "the escaped grandchild should still run"
    );
    let _second = UnprivilegedServer::start(PRYING_ORB, &[("ORB_USER", ORB_USER)]);
    let swept = until(5 * SECOND, || {
        procfs::stat(escaped).is_none_or(|s| s.state == 'Z').then_some(())
    })
    .await;
    if swept.is_none() {
        let _ = kill(Pid::from_raw(escaped), Signal::SIGKILL);
        panic!("the new server did not sweep the stray of {ORB_USER}");
    }
}
