//! `cpu-server orbs why ROOM` and `GET /api/orbs/{room}/events` against the
//! real binaries: each cause of an orb's end is injected (a SIGKILL from
//! outside, a SIGSTOP hang, the memory limit, no `orb_ready`, the lifetime,
//! idleness, an operator's kill, a crash loop, an empty room) and the
//! one-line answer must name it.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use system_tests::manager_kit::single_orb;
use system_tests::operator_kit::OpServer;
use system_tests::wait::until;
use system_tests::ws::Client;

const SECOND: Duration = Duration::from_secs(1);

/// Fake orbs whose behaviour depends on their room.
const BY_ROOM: &str = r#"case "$room" in
  r-noready*) while sleep 0.1; do :; done ;;
  r-loop*) exit 3 ;;
  r-mem*) ready
    ( big=$(head -c 67108864 /dev/zero | tr '\0' a); while kill -0 $$ 2>/dev/null; do sleep 1; done ) &
    while beat; do sleep 0.1; done ;;
  *) ready; echo > "$ORB_TEST_DIR/ready-$room"; while beat; do sleep 0.1; done ;;
esac
"#;

/// Runs `cpu-server orbs why ROOM` until its first line contains every one of
/// `wanted` (bounded); returns the whole output.
async fn why_until(server: &OpServer, room: &str, wanted: &[&str], timeout: Duration) -> String {
    let mut last = String::new();
    let found = until(timeout, || {
        let run = server.cli(&["orbs", "why", room]);
        last = format!("exit {:?}\n{}{}", run.code, run.stdout, run.stderr);
        let first = run.stdout.lines().next().unwrap_or_default().to_owned();
        (run.code == Some(0) && wanted.iter().all(|w| first.contains(w))).then_some(run.stdout)
    })
    .await;
    found.unwrap_or_else(|| panic!("`orbs why {room}` never said {wanted:?}; last answer:\n{last}"))
}

/// Rule: every injected cause is named in one line, with what followed.
#[tokio::test]
async fn why_names_each_cause() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = OpServer::start(
        dir.path(),
        BY_ROOM,
        &[
            ("ORB_SPAWN_ON", "coach"),
            ("ORB_UNRESPONSIVE_TIMEOUT", "1500"),
            ("ORB_READY_TIMEOUT", "1500"),
            ("ORB_MEMORY_LIMIT_MB", "32"),
            ("ORB_MAX_RESTARTS", "2"),
            ("IDLE_TIMEOUT", "1500"),
        ],
    );
    let url = |room: &str| server.server.url(room);
    let mut humans = Vec::new();
    for room in [
        "r-sigkill",
        "r-sigstop",
        "r-mem",
        "r-noready",
        "r-loop",
        "r-op",
        "r-empty",
    ] {
        humans.push((room, Client::join(&url(room), "coach-1", "coach").await.0));
    }

    // A SIGKILL we did not send, then the restart.
    let pid = single_orb("r-sigkill", 5 * SECOND).await;
    kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill");
    let text = why_until(
        &server,
        "r-sigkill",
        &["killed by SIGKILL (signal 9)", "not by us", "restarted after"],
        10 * SECOND,
    )
    .await;
    assert!(
        text.contains(" exited ") && text.contains("by_us=false"),
        "timeline:\n{text}"
    );

    // A hang: found silent, killed by us.
    let pid = single_orb("r-sigstop", 5 * SECOND).await;
    // Stopped before its orb_ready, it would be killed for ready_timeout instead.
    let ready = dir.path().join("ready-r-sigstop");
    assert!(
        until(5 * SECOND, || ready.exists().then_some(())).await.is_some(),
        "r-sigstop never ready"
    );
    kill(Pid::from_raw(pid), Signal::SIGSTOP).expect("stop");
    let text = why_until(
        &server,
        "r-sigstop",
        &["killed (SIGKILL)", "unresponsive (no heartbeat for"],
        10 * SECOND,
    )
    .await;
    assert!(text.contains("stop_asked reason=unresponsive"), "timeline:\n{text}");

    why_until(&server, "r-mem", &["memory limit 32 MB exceeded ("], 15 * SECOND).await;
    why_until(
        &server,
        "r-noready",
        &["no orb_ready within ORB_READY_TIMEOUT"],
        10 * SECOND,
    )
    .await;
    why_until(
        &server,
        "r-loop",
        &["exited with code 3", "a crash", "parked (crash loop)"],
        15 * SECOND,
    )
    .await;

    // An operator's kill through the CLI (the API underneath).
    single_orb("r-op", 5 * SECOND).await;
    let killed = server.cli(&["orbs", "kill", "r-op"]);
    assert_eq!(killed.code, Some(0), "{killed:?}");
    why_until(
        &server,
        "r-op",
        &["stopped by an operator (DELETE /api/orbs/{room})", "not restarted"],
        5 * SECOND,
    )
    .await;

    // The last human leaves (ROOM_EMPTY_GRACE=0).
    single_orb("r-empty", 5 * SECOND).await;
    let (_, coach) = humans.pop().expect("r-empty's coach");
    coach.close().await;
    why_until(
        &server,
        "r-empty",
        &["the room was empty for ROOM_EMPTY_GRACE", "not restarted"],
        5 * SECOND,
    )
    .await;

    // An orb started for an empty room ends after IDLE_TIMEOUT.
    let (status, _) = server.api("POST", "/api/orbs", Some(r#"{"room":"r-idle"}"#));
    assert_eq!(status, 201);
    let text = why_until(&server, "r-idle", &["nobody in the room for IDLE_TIMEOUT"], 10 * SECOND).await;

    // The API says the same, as JSON.
    let (status, timeline) = server.api("GET", "/api/orbs/r-idle/events", None);
    assert_eq!(status, 200, "{timeline}");
    assert_eq!(
        text.lines().next(),
        Some(format!("r-idle: {}", timeline["why"].as_str().unwrap_or("")).as_str())
    );
    let names: Vec<&str> = timeline["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["event"].as_str())
        .collect();
    for wanted in [
        "launching",
        "started",
        "ready",
        "stop_asked",
        "signalled",
        "exited",
        "ended",
    ] {
        assert!(names.contains(&wanted), "no {wanted} in {names:?}");
    }
    assert!(
        timeline["events"]
            .as_array()
            .is_some_and(|e| e.iter().all(|x| x["at_ms"].as_u64().is_some_and(|t| t > 0)))
    );
    drop(humans);
}

/// Rule: MAX_ORB_LIFETIME is named as the end, and the room is told.
#[tokio::test]
async fn why_names_the_lifetime() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = OpServer::start(
        dir.path(),
        BY_ROOM,
        &[("ORB_SPAWN_ON", "coach"), ("MAX_ORB_LIFETIME", "1500")],
    );
    let (_coach, _) = Client::join(&server.server.url("r-life"), "coach-1", "coach").await;
    why_until(
        &server,
        "r-life",
        &["MAX_ORB_LIFETIME reached", "the room was told: max_lifetime"],
        10 * SECOND,
    )
    .await;
}

/// Rule: a room the server knows nothing of is an error (exit 1), in words.
#[tokio::test]
async fn why_for_an_unknown_room_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = OpServer::start(dir.path(), BY_ROOM, &[]);
    let run = server.cli(&["orbs", "why", "r-never"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("nothing is known of room r-never"), "{run:?}");
    let (status, body): (u16, Value) = server.api("GET", "/api/orbs/r-never/events", None);
    assert_eq!((status, body["code"].as_str()), (404, Some("no_orb")), "{body}");
}
