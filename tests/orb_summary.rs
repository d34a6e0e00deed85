//! Session summaries against the real cpu-server: a fake orb sends its
//! `session_summary` as it stops; `GET /api/orbs/{room}/summary` and
//! `cpu-server orbs summary ROOM` return it after the orb is gone, and the
//! server's log holds its size, never its transcript.

use std::time::{Duration, Instant};

use system_tests::operator_kit::OpServer;
use system_tests::wait::until;
use system_tests::ws::Client;

const SECOND: Duration = Duration::from_secs(1);
/// Words of the transcript that must never reach the server's log.
const SECRET: &str = "my private goals are 7f3a";

/// The summary the fake orb sends as it stops (a transcript holding [`SECRET`]).
const SUMMARY: &str = r#"{"transcript":[{"speaker":"coach-1","role":"coach","text":"my private goals are 7f3a","atMs":1200},{"speaker":"ai","role":"ai","text":"noted","atMs":2400}],"summary":"goals discussed","turns":1,"truncated":false}"#;

/// Rule: the summary sent during the stop is returned after the orb is
/// gone (API and CLI), as sent; its transcript is not logged.
#[tokio::test]
async fn a_session_summary_outlives_its_orb_and_stays_out_of_the_log() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let orb = system_tests::manager_kit::summarising_orb(SUMMARY, "manual_termination");
    let server = OpServer::start(dir.path(), &orb, &[("ORB_SPAWN_ON", "coach")]);
    let (_coach, _) = Client::join(&server.server.url("r-sum"), "coach-1", "coach").await;
    let session = until(5 * SECOND, || {
        let (status, record) = server.api("GET", "/api/orbs/r-sum", None);
        (status == 200 && record["state"] == "ready").then(|| record["session"].as_str().map(str::to_owned))
    })
    .await
    .flatten()
    .expect("a ready orb");
    let (status, body) = server.api("GET", "/api/orbs/r-sum/summary", None);
    assert_eq!((status, body["code"].as_str()), (404, Some("no_summary")), "{body}");

    let (status, body) = server.api("DELETE", "/api/orbs/r-sum", None);
    assert_eq!(status, 200, "{body}");
    let (status, _) = server.api("GET", "/api/orbs/r-sum", None);
    assert_eq!(status, 404, "the orb is gone");

    let (status, body) = server.api("GET", "/api/orbs/r-sum/summary", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["room"], "r-sum");
    assert_eq!(body["session"].as_str(), Some(session.as_str()));
    assert!(
        body["receivedAt"].as_u64().is_some_and(|t| t > 1_600_000_000_000),
        "{body}"
    );
    assert_eq!(body["summary"]["turns"], 1);
    assert_eq!(body["summary"]["summary"], "goals discussed");
    assert_eq!(body["summary"]["transcript"][0]["text"], SECRET);

    // The CLI, readable and as JSON; a room without one exits 1.
    let run = server.cli(&["orbs", "summary", "r-sum"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stdout.starts_with(&format!("r-sum: session {session}, received ")),
        "{run:?}"
    );
    assert!(run.stdout.contains("summary: goals discussed"), "{run:?}");
    assert!(
        run.stdout.contains(&format!("+1.2 s coach-1 (coach): {SECRET}")),
        "{run:?}"
    );
    let run = server.cli(&["orbs", "summary", "r-sum", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(json["summary"]["turns"], 1);
    let run = server.cli(&["orbs", "summary", "r-none"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("no session summary for room r-none"), "{run:?}");

    let log = server.server.proc.stderr();
    assert!(
        log.contains("session summary kept"),
        "the summary is logged by size:\n{log}"
    );
    assert!(!log.contains(SECRET), "the transcript reached the server's log:\n{log}");
    eprintln!("took {:?}", started.elapsed());
}
