//! The monitoring files against the real server: `deploy/prometheus/alerts.yml`
//! checked by the real `promtool check rules`, and each alert unit-tested with
//! `promtool test rules` on series taken from scrapes of a real cpu-server put into
//! that state (fake orbs that crash, go silent or queue; bad frames; a restart);
//! and every metric the Grafana dashboard queries exported by that server.
//!
//! A scrape stands for one evaluation step (1 minute) or is held for several:
//! promtool sees the values the server really rendered, in the order they came.
//! promtool comes from Debian's `prometheus` package; without it the tests fail.

#[path = "monitoring/grafana.rs"]
mod grafana;
#[path = "monitoring/promtool.rs"]
mod promtool;

use std::path::Path;
use std::time::{Duration, Instant};

use promtool::{Input, Scrape, TOKEN, fires, scrape, silent, test_rules, with_target};
use serde_json::{Value, json};
use system_tests::manager_kit::{HEALTHY, fake_orb, path_env};
use system_tests::operator_kit::request;
use system_tests::room_harness::RoomServer;
use system_tests::ws::Client;

/// Every alert of alerts.yml; each is exercised below (checked by `every_alert_is_tested`).
const ALERTS: [&str; 7] = [
    "OrbCrashLooping",
    "OrbParked",
    "OrbQueueGrowing",
    "OrbHeartbeatStale",
    "OrbCapacitySaturated",
    "CpuServerRestarted",
    "RelayErrorReplies",
];

/// A cpu-server on `port` (or a free one) whose orbs run the fake `body`,
/// spawned only through the admin API.
fn server(dir: &Path, body: &str, port: Option<u16>, extra: &[(&str, &str)]) -> RoomServer {
    let program = fake_orb(dir, "fake-orb", body).display().to_string();
    let (d, path) = (dir.display().to_string(), path_env());
    let mut env: Vec<(&str, &str)> = vec![
        ("PATH", &path),
        ("ADMIN_TOKEN", TOKEN),
        ("ORB_SPAWN_ON", "manual"),
        ("GPU_SERVER_PATH", &d),
        ("ORB_COMMAND", &program),
        ("ORB_TEST_DIR", &d),
        ("ORB_HEALTH_CHECK_INTERVAL", "200"),
        ("ORB_READY_TIMEOUT", "5000"),
        ("ROOM_EMPTY_GRACE", "0"),
        ("ORB_STOP_GRACE", "500"),
        ("ORB_KILL_GRACE", "500"),
        ("RUST_LOG", "warn"),
    ];
    env.extend_from_slice(extra);
    match port {
        Some(port) => RoomServer::start_on(port, &env),
        None => RoomServer::start(&env),
    }
}

/// An admin API request: status and JSON body.
fn api(server: &RoomServer, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let body = body.map(|b| b.to_string());
    let (status, text) = request(server.port, method, path, Some(TOKEN), body.as_deref());
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// `POST /api/orbs {"room"}`, which must be accepted.
fn spawn(server: &RoomServer, room: &str) {
    let (status, body) = api(server, "POST", "/api/orbs", Some(json!({ "room": room })));
    assert!((200..=202).contains(&status), "spawn {room}: {status} {body}");
}

/// Polls `check` on scrapes (every 50 ms, at most `timeout`); the first scrape that passes.
fn scrape_until(server: &RoomServer, timeout: Duration, check: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + timeout;
    loop {
        let s = scrape(server);
        if check(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "state not reached within {timeout:?}:\n{}",
            s.text
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn value(s: &Scrape, series: &str) -> f64 {
    s.get(series).unwrap_or(0.0)
}

#[test]
fn every_alert_is_tested_and_promtool_check_rules_passes() {
    let names: Vec<String> = promtool::rules().into_keys().collect();
    let mut expected: Vec<String> = ALERTS.iter().map(|a| (*a).to_owned()).collect();
    expected.sort();
    assert_eq!(names, expected, "alerts.yml and the tests disagree");
    let file = promtool::alerts_file().display().to_string();
    let (ok, output) = promtool::promtool(&["check", "rules", &file]);
    assert!(ok && output.contains("SUCCESS: 7 rules found"), "{output}");
}

/// A healthy server with one ready orb fires nothing for half an hour; restarted on
/// the same port it fires `CpuServerRestarted` once, which clears after 15 minutes.
#[test]
fn a_quiet_server_fires_nothing_and_a_restart_fires_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = server(dir.path(), HEALTHY, None, &[]);
    let port = first.port;
    spawn(&first, "quiet");
    let before = scrape_until(&first, Duration::from_secs(10), |s| {
        value(s, "cpu_server_orbs{state=\"ready\"}") == 1.0
            && s.get("cpu_server_orb_heartbeat_age_seconds{room=\"quiet\"}").is_some()
    });
    drop(first);
    let second = server(dir.path(), HEALTHY, Some(port), &[]);
    let after = scrape(&second);
    let start = "cpu_server_start_time_seconds";
    assert!(value(&after, start) > value(&before, start), "start time did not move");

    let quiet = Input::default().hold(&before, 31);
    let expects: Vec<_> = ALERTS.iter().map(|alert| silent(30, alert)).collect();
    test_rules("quiet", quiet, &expects);

    let restart = Input::default().hold(&before, 3).hold(&after, 25);
    let instance = &after.instance;
    test_rules(
        "restart",
        restart,
        &[
            silent(2, "CpuServerRestarted"),
            fires(4, "CpuServerRestarted", instance, &[]),
            silent(25, "CpuServerRestarted"),
        ],
    );
}

/// An orb that exits at once, in a room with a coach (an empty room's orb is not
/// restarted), is restarted ORB_MAX_RESTARTS (3) times, then parked.
#[tokio::test]
async fn a_crash_looping_orb_fires_crash_loop_then_parked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(dir.path(), "exit 3\n", None, &[("ORB_MAX_RESTARTS", "3")]);
    let (_coach, _) = Client::join(&s.url("loop"), "coach-1", "coach").await;
    let before = scrape(&s);
    spawn(&s, "loop");
    let parked = scrape_until(&s, Duration::from_secs(30), |s| {
        value(s, "cpu_server_orbs{state=\"parked\"}") == 1.0
    });
    assert_eq!(value(&parked, "cpu_server_orb_restarts_total"), 3.0, "{}", parked.text);
    let input = Input::default().hold(&before, 3).hold(&parked, 10);
    let i = &parked.instance;
    test_rules(
        "crash-loop",
        input,
        &[
            silent(2, "OrbCrashLooping"),
            silent(2, "OrbParked"),
            fires(5, "OrbCrashLooping", i, &[]),
            fires(5, "OrbParked", i, &[("state", "parked")]),
        ],
    );
}

/// With one slot: a taken slot saturates, rooms queue up (growing), a queue
/// that stays the same length stops counting as growing.
#[test]
fn a_full_server_fires_saturation_and_a_growing_queue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(dir.path(), HEALTHY, None, &[("MAX_CONCURRENT_ORBS", "1")]);
    spawn(&s, "q0");
    let one = scrape_until(&s, Duration::from_secs(10), |s| {
        value(s, "cpu_server_orbs{state=\"ready\"}") == 1.0
    });
    spawn(&s, "q1");
    let two = scrape_until(&s, Duration::from_secs(10), |s| {
        value(s, "cpu_server_orb_queue_length") == 1.0
    });
    spawn(&s, "q2");
    let three = scrape_until(&s, Duration::from_secs(10), |s| {
        value(s, "cpu_server_orb_queue_length") == 2.0
    });
    assert_eq!(
        value(&three, "cpu_server_orb_slots_used"),
        value(&three, "cpu_server_orb_slots_max")
    );
    let input = Input::default().hold(&one, 2).hold(&two, 3).hold(&three, 15);
    let i = &three.instance;
    test_rules(
        "saturation-and-queue",
        input,
        &[
            silent(1, "OrbQueueGrowing"),
            fires(6, "OrbQueueGrowing", i, &[]),
            silent(19, "OrbQueueGrowing"),
            silent(5, "OrbCapacitySaturated"),
            fires(12, "OrbCapacitySaturated", i, &[]),
        ],
    );
}

/// An orb that beats once and then keeps silent (with the unresponsive timeout out
/// of the way): its heartbeat age grows at the pace of the wall clock, measured
/// between two real scrapes and carried on over the test's minutes.
#[test]
fn a_silent_orb_fires_heartbeat_stale() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(
        dir.path(),
        "ready\nbeat\nsleep 600\n",
        None,
        &[("ORB_UNRESPONSIVE_TIMEOUT", "600000")],
    );
    spawn(&s, "mute");
    let age = "cpu_server_orb_heartbeat_age_seconds{room=\"mute\"}";
    let first = scrape_until(&s, Duration::from_secs(10), |s| s.get(age).is_some());
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    let second = scrape(&s);
    let pace = (value(&second, age) - value(&first, age)) / t0.elapsed().as_secs_f64();
    assert!(
        (0.7..1.3).contains(&pace),
        "heartbeat age grew at {pace} s/s:\n{}",
        second.text
    );
    let start = value(&second, age);
    let input = Input::default()
        .hold(&second, 8)
        .map(&with_target(age, &second.instance), |step, _| {
            start + 60.0 * pace * step as f64
        });
    test_rules(
        "heartbeat",
        input,
        &[
            silent(1, "OrbHeartbeatStale"),
            fires(5, "OrbHeartbeatStale", &second.instance, &[("room", "mute")]),
        ],
    );
}

/// Bad frames get `error` replies: 40 a minute for 12 minutes fire, one burst does not.
#[tokio::test]
async fn error_replies_fire_relay_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(dir.path(), HEALTHY, None, &[("MAX_MESSAGES_PER_SECOND", "100000")]);
    let (mut client, _) = Client::join(&s.url("noisy"), "client-1", "client").await;
    let errors = "cpu_server_relay_error_replies_total";
    let mut scrapes = vec![scrape(&s)];
    for round in 1..=12 {
        for _ in 0..40 {
            client.send_text("not json".to_owned()).await;
        }
        for _ in 0..40 {
            let reply = client.recv_type("error", Duration::from_secs(5)).await;
            assert!(reply["code"].is_string(), "{reply}");
        }
        let want = f64::from(40 * round);
        scrapes.push(scrape_until(&s, Duration::from_secs(5), |s| value(s, errors) >= want));
        assert_eq!(value(&scrapes[round as usize], errors), want);
    }
    let sustained = scrapes.iter().fold(Input::default(), |input, s| input.hold(s, 1));
    let i = &scrapes[0].instance;
    test_rules(
        "relay-errors",
        sustained,
        &[silent(2, "RelayErrorReplies"), fires(11, "RelayErrorReplies", i, &[])],
    );
    let burst = Input::default().hold(&scrapes[0], 1).hold(&scrapes[1], 12);
    test_rules("relay-burst", burst, &[silent(8, "RelayErrorReplies")]);
}

/// Every metric a Grafana query names is one the server exports, and every query
/// parses (promtool) once its dashboard variables are filled in.
#[test]
fn grafana_queries_name_only_exported_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(dir.path(), HEALTHY, None, &[]);
    // Fill the labelled families (an empty family renders nothing): an operator
    // kill and the exit it causes, and an admin API error.
    // The per-orb series exist while the orb lives (CPU and RSS once sampled).
    spawn(&s, "g");
    let with_orb = scrape_until(&s, Duration::from_secs(15), |s| {
        ["heartbeat_age_seconds", "cpu_percent", "rss_bytes"]
            .iter()
            .all(|m| s.get(&format!("cpu_server_orb_{m}{{room=\"g\"}}")).is_some())
    });
    let (status, body) = api(&s, "DELETE", "/api/orbs/g", None);
    assert!((200..=202).contains(&status), "DELETE /api/orbs/g: {status} {body}");
    assert_eq!(api(&s, "GET", "/api/orbs/nowhere", None).0, 404);
    let live = scrape_until(&s, Duration::from_secs(10), |s| {
        [
            "cpu_server_orb_kills_total",
            "cpu_server_orb_exits_total",
            "cpu_server_errors_total",
        ]
        .iter()
        .all(|family| s.series.keys().any(|k| k.starts_with(&format!("{family}{{"))))
    });
    let mut exported = grafana::exported_names(&live.text);
    exported.extend(grafana::exported_names(&with_orb.text));
    let queries = grafana::queries(&promtool::repo().join("deploy/grafana/cpu-server.json"));
    assert!(queries.len() >= 10, "only {} queries", queries.len());
    let mut unknown = Vec::new();
    for query in &queries {
        let names = grafana::metric_names(query);
        assert!(!names.is_empty(), "no metric in {query:?}");
        unknown.extend(
            names
                .into_iter()
                .filter(|n| !exported.contains(n))
                .map(|n| format!("{n} (in {query})")),
        );
    }
    assert!(unknown.is_empty(), "not exported by cpu-server: {unknown:#?}");
    let (ok, output) = grafana::check_syntax(&queries);
    assert!(ok, "promtool rejects a dashboard query:\n{output}");
}
