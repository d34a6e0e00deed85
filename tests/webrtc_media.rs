//! The AI in the call's media, end to end: a real cpu-server spawns a real gpu-orb
//! (test mode: it echoes each human's audio back to them) and two headless Chromiums,
//! a coach page and a client page (`tests/browser/media.test.js`), connect to it:
//! each hears its own echo, bad signals are refused, renegotiation holds, and 100
//! connect/close cycles leave no descriptor, thread or memory growth in the orb.
//!
//! Through TURN (`media_turn.test.js`): the page relays only (`iceTransportPolicy:
//! 'relay'`) through a real coturn that may relay to the orb's own veth address and
//! nothing else; the orb's per-source counts show the relay address only.
//!
//! The orb's heartbeat carries its per-peer media health, which the admin API shows
//! (`GET /api/orbs/{room}` → `media`); with `ORB_MEDIA=false` there is none.
//!
//! The browser test runs in a network namespace of its own with only `lo` up, so Chromium's
//! candidates are loopback and nothing leaves the machine; it needs root (as CI runs)
//! and `bash tests/browser/setup.sh`, and fails with that instruction otherwise.

use std::time::{Duration, Instant};

use serde_json::Value;
use system_tests::media_kit::{
    add_veth_pair, coturn_config, enter_loopback_namespace, figures, require_browser_setup, run_node, start_orb_server,
};
use system_tests::operator_kit::request;
use system_tests::turn_coturn::Coturn;
use system_tests::wait::until;
use system_tests::ws::Client;

const ADMIN_TOKEN: &str = "media-tests-admin-token-0123456789";
/// Bound of the whole browser run (it takes about 30 s).
const NODE_TIMEOUT: Duration = Duration::from_secs(90);

#[test]
fn each_human_hears_their_own_echo_from_the_orb_and_bad_signals_are_refused() {
    require_browser_setup();
    enter_loopback_namespace();
    let started = Instant::now();
    let server = start_orb_server(ADMIN_TOKEN, &[("RUST_LOG", "info,gpu_orb::media=debug")]);
    let env = [
        ("BASE_URL", format!("http://127.0.0.1:{}", server.port)),
        ("ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
    ];
    let (passed, output) = run_node(
        &["--test", "--test-concurrency=1", "media.test.js", "media_room.test.js"],
        &env,
        "browser-media.log",
        NODE_TIMEOUT,
    );
    println!("{output}");
    for figure in figures(&output) {
        println!("figure: {figure}");
    }
    println!("webrtc_media: {:.1} s", started.elapsed().as_secs_f64());
    assert!(
        passed && output.contains("# fail 0"),
        "media browser test failed (log in tests/artifacts/browser-media.log):\n{output}\n--- cpu-server stderr ---\n{}",
        server.proc.stderr()
    );
}

/// The CPU host's internal address (coturn relays from it) and the orb's, on a veth pair.
const RELAY_IP: &str = "10.77.0.1";
const ORB_IP: &str = "10.77.0.2";

#[test]
fn through_a_real_coturn_only_the_relay_reaches_the_orb() {
    require_browser_setup();
    enter_loopback_namespace();
    add_veth_pair(RELAY_IP, ORB_IP);
    let started = Instant::now();
    let secret = "media-turn-secret-0123456789abcdef";
    let dir = tempfile::tempdir().expect("tempdir");
    let turn_port = system_tests::free_port();
    let config = coturn_config(turn_port, RELAY_IP, ORB_IP, secret, &dir.path().join("turn.log"));
    let coturn = Coturn::start_config(&config, turn_port, dir);
    let turn_urls = format!("turn:127.0.0.1:{turn_port}?transport=udp");
    let server = start_orb_server(
        ADMIN_TOKEN,
        &[
            ("ORB_MEDIA_IP", ORB_IP),
            ("ORB_MEDIA_PORTS", "41000-41009"),
            ("TURN_URLS", &turn_urls),
            ("TURN_SHARED_SECRET", secret),
        ],
    );
    let env = [
        ("BASE_URL", format!("http://127.0.0.1:{}", server.port)),
        ("ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
        ("ORB_IP", ORB_IP.to_owned()),
        ("RELAY_IP", RELAY_IP.to_owned()),
    ];
    let (passed, output) = run_node(
        &["--test", "media_turn.test.js"],
        &env,
        "browser-media-turn.log",
        Duration::from_secs(60),
    );
    println!("{output}");
    for figure in figures(&output) {
        println!("figure: {figure}");
    }
    println!("webrtc_media (TURN): {:.1} s", started.elapsed().as_secs_f64());
    assert!(
        passed && output.contains("# fail 0"),
        "TURN media test failed (log in tests/artifacts/browser-media-turn.log):\n{output}\n--- coturn ---\n{}\n--- cpu-server stderr ---\n{}",
        coturn.proc.stderr(),
        server.proc.stderr()
    );
}

#[tokio::test]
async fn an_orb_without_media_reports_no_media_in_its_heartbeat() {
    let server = start_orb_server(
        ADMIN_TOKEN,
        &[("ORB_HEALTH_CHECK_INTERVAL", "200"), ("ORB_MEDIA", "false")],
    );
    let (mut coach, _) = Client::join(&server.url("r-nomedia"), "coach-1", "coach").await;
    coach.recv_type("user-joined", Duration::from_secs(15)).await;
    let port = server.port;
    let record = || {
        let (status, body) = request(port, "GET", "/api/orbs/r-nomedia", Some(ADMIN_TOKEN), None);
        (status == 200).then(|| serde_json::from_str::<Value>(&body).expect("record json"))
    };
    // Two heartbeats after ready: the record has heard from the orb.
    let beating = until(Duration::from_secs(10), || {
        record().filter(|r| r["state"] == "ready" && r["last_heartbeat_ms"].as_u64().is_some_and(|ms| ms < 300))
    })
    .await;
    let record = beating.unwrap_or_else(|| panic!("no heartbeat: {:?}\n{}", record(), server.proc.stderr()));
    assert!(
        record["media"].is_null(),
        "ORB_MEDIA=false still reports media: {record}"
    );
    coach.close().await;
}
