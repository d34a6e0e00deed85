//! `GET /api/turn-credentials` (issue 10) against the real binary, and the
//! credentials it hands out checked by a real coturn with `turnutils_uclient`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use system_tests::deploy_tools::{TestCert, p, shipped, substitute};
use system_tests::free_port;
use system_tests::process::Proc;
use system_tests::room_harness::RoomServer;
use system_tests::security_kit::jwt;
use system_tests::turn_coturn::{Coturn, get_with_headers, header};

const SECRET: &str = "coturn-shared#secret$42";

/// GET /api/turn-credentials: the JSON body, after checking 200 and `Cache-Control: no-store`.
fn fetch(server: &RoomServer) -> Value {
    let (status, head, body) =
        get_with_headers(server.port, "/api/turn-credentials", &[]).expect("answer from cpu-server");
    assert_eq!(status, 200, "{head}\n{body}");
    assert_eq!(header(&head, "cache-control"), Some("no-store"), "{head}");
    assert!(
        header(&head, "content-type").is_some_and(|v| v.starts_with("application/json")),
        "{head}"
    );
    serde_json::from_str(&body).expect("JSON body")
}

fn turn_entry(body: &Value) -> (String, String) {
    let servers = body["iceServers"].as_array().expect("iceServers list");
    let turn = servers
        .iter()
        .find(|s| s.get("username").is_some())
        .unwrap_or_else(|| panic!("no TURN entry with credentials in {body}"));
    (
        turn["username"].as_str().expect("username").to_owned(),
        turn["credential"].as_str().expect("credential").to_owned(),
    )
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

#[test]
fn coturn_accepts_shared_secret_credentials_and_refuses_wrong_or_expired_ones() {
    let coturn = Coturn::start(SECRET);
    let turn_url = format!("turn:127.0.0.1:{}", coturn.port);
    let stun_url = format!("stun:127.0.0.1:{}", coturn.port);
    let server = RoomServer::start(&[
        ("STUN_URLS", &stun_url),
        ("TURN_URLS", &turn_url),
        ("TURN_SHARED_SECRET", SECRET),
        ("TURN_TTL", "600"),
    ]);
    let body = fetch(&server);
    assert_eq!(body["iceServers"][0], json!({"urls": [stun_url]}), "{body}");
    assert_eq!(body["iceServers"][1]["urls"], json!([turn_url]), "{body}");
    let (username, credential) = turn_entry(&body);
    let (expiry, user_id) = username.split_once(':').expect("<expiry>:<userId>");
    let expiry: u64 = expiry.parse().expect("expiry in unix seconds");
    assert!(
        expiry.abs_diff(now() + 600) <= 30,
        "expiry {expiry} is about now + TURN_TTL"
    );
    assert!(!user_id.is_empty());
    // Each caller gets its own random user id.
    let (other_username, _) = turn_entry(&fetch(&server));
    assert_ne!(
        other_username.split_once(':').map(|p| p.1),
        Some(user_id),
        "random ids differ"
    );

    let (ok, output) = coturn.allocate(&username, &credential);
    assert!(
        ok,
        "coturn refused the server's credentials:\n{output}\n{}",
        coturn.proc.stderr()
    );

    // The same shape of credentials from a server with another secret are refused.
    let wrong = RoomServer::start(&[
        ("TURN_URLS", &turn_url),
        ("TURN_SHARED_SECRET", "not-the-coturn-secret"),
    ]);
    let (bad_user, bad_credential) = turn_entry(&fetch(&wrong));
    let (ok, output) = coturn.allocate(&bad_user, &bad_credential);
    assert!(!ok, "coturn accepted credentials made from a wrong secret:\n{output}");
    // A credential is bound to its username: another expiry with it is refused.
    let tampered = format!("{}:{user_id}", expiry + 1000);
    let (ok, output) = coturn.allocate(&tampered, &credential);
    assert!(!ok, "coturn accepted a tampered username:\n{output}");

    // Short-lived: TURN_TTL=1 credentials are refused once expired.
    let short = RoomServer::start(&[
        ("TURN_URLS", &turn_url),
        ("TURN_SHARED_SECRET", SECRET),
        ("TURN_TTL", "1"),
    ]);
    let (old_user, old_credential) = turn_entry(&fetch(&short));
    // Wait (bounded) for the event itself: the clock passing the expiry the username carries.
    let old_expiry: u64 = old_user
        .split_once(':')
        .and_then(|(e, _)| e.parse().ok())
        .expect("<expiry>:<userId>");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while now() <= old_expiry {
        assert!(std::time::Instant::now() < deadline, "expiry {old_expiry} never passed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (ok, output) = coturn.allocate(&old_user, &old_credential);
    assert!(!ok, "coturn accepted expired credentials:\n{output}");

    for s in [&server, &wrong, &short] {
        let logs = format!("{}{}", s.proc.stderr(), s.proc.stdout());
        assert!(!logs.contains(SECRET), "the shared secret leaked into the server log");
        assert!(!logs.contains(&credential), "a credential leaked into the server log");
    }
}

#[test]
fn nothing_configured_gives_an_empty_list() {
    let server = RoomServer::start(&[]);
    assert_eq!(fetch(&server), json!({"iceServers": []}));
}

#[test]
fn static_credentials_and_stun_only_are_handed_out_as_configured() {
    let server = RoomServer::start(&[
        ("STUN_URLS", "stun:stun1.example.com:3478, stun:stun2.example.com"),
        ("TURN_URLS", "turns:turn.example.com:5349?transport=tcp"),
        ("TURN_USERNAME", "fixed-user"),
        ("TURN_PASSWORD", "fixed#pass$"),
    ]);
    assert_eq!(
        fetch(&server),
        json!({"iceServers": [
            {"urls": ["stun:stun1.example.com:3478", "stun:stun2.example.com"]},
            {"urls": ["turns:turn.example.com:5349?transport=tcp"], "username": "fixed-user", "credential": "fixed#pass$"}
        ]})
    );
}

/// Starts the binary with `env` and expects exit 64 naming `setting` (and not echoing `secret`).
fn assert_exit_64(env: &[(&str, &str)], setting: &str, secret: Option<&str>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = RoomServer::command(dir.path());
    command.env("CPU_HOST", format!("127.0.0.1:{}", system_tests::free_port()));
    for (name, value) in env {
        command.env(name, value);
    }
    let mut proc = Proc::spawn("cpu-server", command, dir.path());
    let status = proc
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("cpu-server with {env:?} kept running"));
    let stderr = proc.stderr();
    assert_eq!(status.code(), Some(64), "{env:?}: {stderr}");
    assert!(stderr.contains(setting), "{env:?} must name {setting}: {stderr}");
    if let Some(secret) = secret {
        assert!(!stderr.contains(secret), "the secret was echoed: {stderr}");
    }
}

#[test]
fn bad_turn_settings_exit_64_naming_the_setting() {
    assert_exit_64(&[("STUN_URLS", "http://stun.example.com")], "STUN_URLS", None);
    assert_exit_64(
        &[("TURN_URLS", "stun:t.example.com"), ("TURN_SHARED_SECRET", "x")],
        "TURN_URLS",
        None,
    );
    assert_exit_64(
        &[
            ("TURN_URLS", "turn:t.example.com"),
            ("TURN_SHARED_SECRET", "x"),
            ("TURN_TTL", "0"),
        ],
        "TURN_TTL",
        None,
    );
    assert_exit_64(&[("TURN_URLS", "turn:t.example.com")], "TURN_URLS", None);
    assert_exit_64(
        &[("TURN_URLS", "turn:t.example.com"), ("TURN_USERNAME", "alice")],
        "TURN_PASSWORD",
        None,
    );
    assert_exit_64(
        &[("TURN_URLS", "turn:t.example.com"), ("TURN_PASSWORD", "hunter2-secret")],
        "TURN_USERNAME",
        Some("hunter2-secret"),
    );
}

#[test]
fn with_client_authentication_the_token_is_required_and_names_the_user() {
    const JWT_SECRET: &str = "turn-test-jwt-secret-of-at-least-32-bytes";
    let server = RoomServer::start(&[
        ("JWT_SECRET", JWT_SECRET),
        ("TURN_URLS", "turn:turn.example.com:3478"),
        ("TURN_SHARED_SECRET", SECRET),
    ]);
    let path = "/api/turn-credentials";
    let (status, head, body) = get_with_headers(server.port, path, &[]).expect("answer");
    assert_eq!(status, 401, "no token: {body}");
    assert_eq!(header(&head, "cache-control"), Some("no-store"), "{head}");
    assert!(!body.contains("iceServers"), "{body}");
    let exp = now() + 600;
    let good = jwt(JWT_SECRET, &json!({"sub": "user-7", "role": "client", "exp": exp}));
    let forged = jwt(
        "another-secret-of-at-least-32-bytes!!",
        &json!({"sub": "user-7", "role": "client", "exp": exp}),
    );
    let (status, _, body) =
        get_with_headers(server.port, path, &[("Authorization", &format!("Bearer {forged}"))]).expect("answer");
    assert_eq!(status, 401, "forged token: {body}");
    for (query, headers) in [
        (format!("{path}?token={good}"), vec![]),
        (path.to_owned(), vec![("Authorization", format!("Bearer {good}"))]),
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let (status, head, body) = get_with_headers(server.port, &query, &headers).expect("answer");
        assert_eq!(status, 200, "{body}");
        assert_eq!(header(&head, "cache-control"), Some("no-store"), "{head}");
        let body: Value = serde_json::from_str(&body).expect("JSON");
        let (username, credential) = turn_entry(&body);
        assert!(username.ends_with(":user-7"), "the token's user id is in {username}");
        assert!(!credential.is_empty());
    }
    // A token restricted to a room needs ?room= naming it.
    let roomed = jwt(
        JWT_SECRET,
        &json!({"sub": "user-8", "role": "client", "exp": exp, "room": "r1"}),
    );
    let (status, _, _) = get_with_headers(server.port, &format!("{path}?token={roomed}"), &[]).expect("answer");
    assert_eq!(status, 401);
    let (status, _, body) =
        get_with_headers(server.port, &format!("{path}?token={roomed}&room=r1"), &[]).expect("answer");
    assert_eq!(status, 200, "{body}");
}

/// The shipped example configuration (ports, paths and secret substituted) with `extra` lines.
fn example_config(port: u16, dir: &std::path::Path, cert: &TestCert, extra: &str) -> String {
    let conf = shipped("deploy/coturn/turnserver.conf.example");
    let relay = 20_000 + (port % 200) * 100;
    let conf = substitute(
        &conf,
        "listening-port=3478\n",
        &format!("listening-port={port}\nlistening-ip=127.0.0.1\nrelay-ip=127.0.0.1\n"),
    );
    let conf = substitute(
        &conf,
        "tls-listening-port=5349",
        &format!("tls-listening-port={}", free_port()),
    );
    let conf = substitute(&conf, "min-port=49152", &format!("min-port={relay}"));
    let conf = substitute(&conf, "max-port=65535", &format!("max-port={}", relay + 99));
    let conf = substitute(
        &conf,
        "static-auth-secret=CHANGE_ME_TO_A_LONG_RANDOM_SECRET",
        &format!("static-auth-secret={SECRET}"),
    );
    let conf = substitute(
        &conf,
        "/etc/letsencrypt/live/turn.example.com/fullchain.pem",
        p(&cert.cert),
    );
    let conf = substitute(
        &conf,
        "/etc/letsencrypt/live/turn.example.com/privkey.pem",
        p(&cert.key),
    );
    let conf = substitute(&conf, "/var/log/turnserver/turnserver.log", p(&dir.join("turn.log")));
    format!("{conf}\n{extra}\n")
}

#[test]
fn shipped_coturn_example_accepts_our_credentials_but_never_relays_to_loopback() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = TestCert::generate(dir.path());
    // As shipped: loopback peers are denied (denied-peer-ip 127.0.0.0/8).
    let port = free_port();
    let shipped_dir = tempfile::tempdir().expect("tempdir");
    let config = example_config(port, shipped_dir.path(), &cert, "");
    let coturn = Coturn::start_config(&config, port, shipped_dir);
    let server = RoomServer::start(&[
        ("TURN_URLS", &format!("turn:127.0.0.1:{port}")),
        ("TURN_SHARED_SECRET", SECRET),
    ]);
    let (username, credential) = turn_entry(&fetch(&server));
    let (ok, output) = coturn.allocate(&username, &credential);
    assert!(!ok, "the shipped config relayed between loopback peers:\n{output}");
    assert!(
        output.contains("403"),
        "refused as a forbidden peer (403), not for another reason:\n{output}"
    );
    drop(coturn);

    // Control: the same file with loopback peers allowed relays with the same credentials,
    // so the refusal above comes from denied-peer-ip and the credentials are good.
    let port = free_port();
    let control_dir = tempfile::tempdir().expect("tempdir");
    let config = example_config(port, control_dir.path(), &cert, "allow-loopback-peers");
    let config = substitute(&config, "denied-peer-ip=127.0.0.0-127.255.255.255\n", "");
    let coturn = Coturn::start_config(&config, port, control_dir);
    let server = RoomServer::start(&[
        ("TURN_URLS", &format!("turn:127.0.0.1:{port}")),
        ("TURN_SHARED_SECRET", SECRET),
    ]);
    let (username, credential) = turn_entry(&fetch(&server));
    let (ok, output) = coturn.allocate(&username, &credential);
    assert!(ok, "control run failed:\n{output}\n{}", coturn.proc.stderr());
}
