//! The AI in the call's media, end to end: a real cpu-server spawns a real gpu-orb
//! (test mode: it echoes each human's audio back to them) and two headless Chromiums,
//! a coach page and a client page (`tests/browser/media.test.js`), connect to it:
//! each hears its own echo, bad signals are refused, renegotiation holds, and 100
//! connect/close cycles leave no descriptor, thread or memory growth in the orb.
//!
//! The test runs in a network namespace of its own with only `lo` up, so Chromium's
//! candidates are loopback and nothing leaves the machine; it needs root (as CI runs)
//! and `bash tests/browser/setup.sh`, and fails with that instruction otherwise.

use std::time::{Duration, Instant};

use system_tests::media_kit::{enter_loopback_namespace, figures, require_browser_setup, run_node};
use system_tests::room_harness::RoomServer;

/// Bound of the whole browser run (it takes about 30 s).
const NODE_TIMEOUT: Duration = Duration::from_secs(90);

#[test]
fn each_human_hears_their_own_echo_from_the_orb_and_bad_signals_are_refused() {
    require_browser_setup();
    enter_loopback_namespace();
    let started = Instant::now();
    let target = system_tests::binaries::target_dir().display().to_string();
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".to_owned());
    let server = RoomServer::start(&[
        ("PATH", &path),
        ("ORB_SPAWN_ON", "coach"),
        ("GPU_SERVER_PATH", &target),
        ("ROOM_EMPTY_GRACE", "0"),
        ("ORB_STOP_GRACE", "2000"),
        ("ORB_KILL_GRACE", "1000"),
        ("RUST_LOG", "info,gpu_orb::media=debug"),
    ]);
    let env = [("BASE_URL", format!("http://127.0.0.1:{}", server.port))];
    let (passed, output) = run_node(
        &["--test", "--test-concurrency=1", "media.test.js"],
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
