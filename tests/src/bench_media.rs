//! The suite's media scenario: the release gpu-orb as a media peer of headless
//! Chromium pages (`tests/browser/bench_media.js`), in test mode (it echoes each
//! human's audio back). Figures: the orb's RSS and CPU with 0, 1 and 4 audio peers and
//! what each peer adds, the orb's own forwarding delay (received RTP → echoed frame
//! written, from its heartbeat), and the echo round trip a page hears.
//!
//! Runs on a thread of its own that enters a private network namespace with only `lo`
//! (so Chromium's candidates are loopback and nothing leaves the machine): needs root,
//! Chromium and playwright-core (`bash tests/browser/setup.sh`); without them the
//! scenario records a note saying so instead of figures.

use std::time::Duration;

use serde_json::Value;

use crate::bench_kit::Report;
use crate::bench_server::{ADMIN_TOKEN, start};
use crate::media_kit::{figures, run_node};

/// Bound of one browser run (about 60 s for media, 2 min for 50 voice turns).
const NODE_TIMEOUT: Duration = Duration::from_secs(240);

/// Runs the scenario and records its rows under `media`.
pub fn media(report: &mut Report, quick: bool) {
    match in_namespace(move || run_in_namespace(quick)) {
        Ok(output) => record(report, &output),
        Err(why) => report.note("media", &why),
    }
}

/// Runs `scenario` on a thread of its own that first enters a private loopback
/// namespace (so do the servers and browsers it starts); `Err` says why it could not.
pub(crate) fn in_namespace<T: Send + 'static>(
    scenario: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let run = std::thread::spawn(move || {
        if !nix::unistd::geteuid().is_root() {
            return Err("needs root (a private network namespace for Chromium)".to_owned());
        }
        if !crate::browser_kit::browser_dir()
            .join("node_modules/playwright-core/package.json")
            .is_file()
        {
            return Err("Chromium/playwright-core missing: run `bash tests/browser/setup.sh`".to_owned());
        }
        crate::browser_kit::enter_loopback_namespace();
        scenario()
    });
    run.join()
        .unwrap_or_else(|_| Err("the scenario panicked (see its output above)".to_owned()))
}

/// `node script` in tests/browser; its output, or why it failed (the log's last lines).
pub(crate) fn run_script(script: &str, env: &[(&str, String)], log: &str) -> Result<String, String> {
    let (passed, output) = run_node(&[script], env, log, NODE_TIMEOUT);
    if passed {
        Ok(output)
    } else {
        let tail: Vec<&str> = output.lines().rev().take(5).collect();
        Err(format!(
            "browser run failed (tests/artifacts/{log}): {}",
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        ))
    }
}

/// The server and the browser run (inside the namespace).
fn run_in_namespace(quick: bool) -> Result<String, String> {
    let server = start(&[
        ("ORB_SPAWN_ON", "coach"),
        ("ORB_HEALTH_CHECK_INTERVAL", "500"),
        ("MAX_ROOM_PARTICIPANTS", "10"),
    ]);
    let env = [
        ("BASE_URL", format!("http://127.0.0.1:{}", server.port)),
        ("ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
        ("BENCH_MEDIA_WINDOW_MS", if quick { "2000" } else { "5000" }.to_owned()),
        ("BENCH_MEDIA_PULSES", if quick { "5" } else { "15" }.to_owned()),
    ];
    run_script("bench_media.js", &env, "bench-media.log")
}

/// The rows of the figures the browser run printed.
fn record(report: &mut Report, output: &str) {
    let all = figures(output);
    let orb = |peers: u64| {
        all.iter()
            .find(|f| f["phase"] == "orb" && f["peers"].as_u64() == Some(peers))
    };
    let mut base = None;
    let mut one = None;
    for peers in [0, 1, 4] {
        let Some(f) = orb(peers) else {
            report.note("media", &format!("no figure for {peers} peers"));
            continue;
        };
        let (rss, cpu) = (num(&f["rssMiB"]), num(&f["cpuPercent"]));
        report.value(
            "media",
            &format!("gpu-orb RSS, {peers} audio peers (release)"),
            rss,
            "MiB",
        );
        report.value("media", &format!("gpu-orb CPU, {peers} audio peers"), cpu, "% core");
        report.value(
            "media",
            &format!("gpu-orb anonymous RSS (heap, stacks), {peers} audio peers"),
            num(&f["anonMiB"]),
            "MiB",
        );
        match base {
            None if peers == 0 => base = Some((rss, cpu)),
            Some((rss0, cpu0)) if peers > 0 => {
                let n = peers as f64;
                report.value(
                    "media",
                    &format!("RSS per peer ({peers} peers vs 0)"),
                    (rss - rss0) / n,
                    "MiB",
                );
                report.value(
                    "media",
                    &format!("CPU per peer ({peers} peers vs 0)"),
                    (cpu - cpu0) / n,
                    "% core",
                );
                if let Some((rss1, cpu1)) = one.filter(|_| peers == 4) {
                    // What each peer after the first adds (the first also pays one-time set-up).
                    report.value("media", "RSS per extra peer (4 peers vs 1)", (rss - rss1) / 3.0, "MiB");
                    report.value(
                        "media",
                        "CPU per extra peer (4 peers vs 1)",
                        (cpu - cpu1) / 3.0,
                        "% core",
                    );
                }
                if peers == 1 {
                    one = Some((rss, cpu));
                }
            }
            _ => {}
        }
    }
    for peers in [1, 4] {
        let Some(f) = all
            .iter()
            .find(|f| f["phase"] == "forward" && f["peers"].as_u64() == Some(peers))
        else {
            report.note("media", &format!("no forwarding-delay figure with {peers} peers"));
            continue;
        };
        let each = f["each"].as_array().cloned().unwrap_or_default();
        let worst_p99 = each.iter().map(|p| num(&p["p99us"])).fold(f64::NAN, f64::max);
        let worst_max = each.iter().map(|p| num(&p["maxUs"])).fold(f64::NAN, f64::max);
        let frames: f64 = each.iter().map(|p| num(&p["framesOut"])).sum();
        report.value(
            "media",
            &format!("orb forwarding delay p99, {peers} peers (worst peer, bucket bound)"),
            worst_p99 / 1000.0,
            "ms",
        );
        report.value(
            "media",
            &format!("orb forwarding delay max, {peers} peers"),
            worst_max / 1000.0,
            "ms",
        );
        report.value("media", &format!("frames echoed, {peers} peers"), frames, "frames");
    }
    if let Some(f) = all.iter().find(|f| f["phase"] == "echo") {
        report.value("media", "browser echo round trip median", num(&f["medianMs"]), "ms");
        report.value("media", "browser echo round trip p90", num(&f["p90Ms"]), "ms");
        report.value("media", "echo pulses missed", num(&f["missed"]), "of pulses");
    } else {
        report.note("media", "no echo round-trip figure");
    }
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}
