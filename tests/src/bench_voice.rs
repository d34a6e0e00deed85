//! The suite's voice scenario: the release gpu-orb with its voice on, its speech
//! providers and brain the stub of [`crate::voice_stub`] (answering at once), and a
//! headless Chromium coach page (`tests/browser/bench_voice.js`) whose microphone loops
//! "Hey assistant" between silences, every turn answered (`ORB_VOICE_REPLY=always`).
//! Figures, from the orb's log line per answer: end of turn decided → first AI audio
//! frame sent (the stubs answer at once, so this is the pipeline with its three HTTP
//! round trips on loopback), and the part of it outside the provider calls (the voice's
//! own code: hand-offs between threads, resampling, encoding, pacing); the silence the
//! detector waits for; the orb's CPU and RSS while it talks.

use serde_json::Value;

use crate::bench_kit::{Latency, Report};
use crate::bench_media::{in_namespace, run_script};
use crate::bench_server::{ADMIN_TOKEN, start};
use crate::media_kit::figures;
use crate::voice_stub::VoiceStub;

/// Runs the scenario and records its rows under `voice`.
pub fn voice(report: &mut Report, quick: bool) {
    let turns = if quick { 10 } else { 50 };
    match in_namespace(move || run(turns)) {
        Ok((output, log)) => record(report, &output, &log),
        Err(why) => report.note("voice", &why),
    }
}

fn run(turns: usize) -> Result<(String, String), String> {
    let stub = VoiceStub::start();
    stub.set_transcripts(["Hey assistant"]);
    stub.set_answer("Yes.");
    stub.set_speech_ms(200);
    let logs = tempfile::tempdir().map_err(|e| e.to_string())?;
    let log_dir = logs.path().display().to_string();
    let base = stub.openai_base_url();
    let server = start(&[
        ("ORB_SPAWN_ON", "coach"),
        ("ORB_HEALTH_CHECK_INTERVAL", "1000"),
        ("ORB_LOG_DIR", &log_dir),
        ("RUST_LOG", "info"),
        ("OPENAI_API_KEY", "sk-bench"),
        ("OPENAI_BASE_URL", &base),
        ("ORB_TTS_PROVIDER", "openai"),
        ("ORB_VOICE_REPLY", "always"),
    ]);
    let env = [
        ("BASE_URL", format!("http://127.0.0.1:{}", server.port)),
        ("ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
        ("BENCH_VOICE_TURNS", turns.to_string()),
    ];
    let output = run_script("bench_voice.js", &env, "bench-voice.log")?;
    let log: String = std::fs::read_dir(logs.path())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    Ok((output, log))
}

/// `field=N` of a log line.
fn field(line: &str, name: &str) -> Option<f64> {
    let at = line.find(&format!("{name}="))? + name.len() + 1;
    let digits: String = line[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn record(report: &mut Report, output: &str, log: &str) {
    let lines: Vec<String> = log
        .lines()
        .map(crate::bench_kit::strip_ansi)
        .filter(|l| l.contains("the AI speaks"))
        .collect();
    let total: Vec<f64> = lines
        .iter()
        .filter_map(|l| field(l, "latency_us"))
        .map(|us| us / 1000.0)
        .collect();
    let own: Vec<f64> = lines
        .iter()
        .filter_map(|l| Some((field(l, "latency_us")? - field(l, "provider_us")?) / 1000.0))
        .collect();
    let silence: Vec<f64> = lines.iter().filter_map(|l| field(l, "silence_waited_ms")).collect();
    if total.is_empty() {
        report.note("voice", "no answer in the orb's log");
        return;
    }
    let p95 = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        crate::bench_kit::percentile(&v, 95.0)
    };
    report.latency(
        "voice",
        "end of turn -> first AI audio frame (stub providers)",
        Latency::of(total.clone()),
    );
    report.value("voice", "  same, p95", p95(&total), "ms");
    report.latency("voice", "  of which outside provider calls", Latency::of(own.clone()));
    report.value("voice", "  outside provider calls, p95", p95(&own), "ms");
    report.latency("voice", "silence waited before the end of turn", Latency::of(silence));
    if let Some(f) = figures(output).into_iter().find(|f| f.get("cpuPercent").is_some()) {
        report.value(
            "voice",
            "gpu-orb CPU while talking (one human)",
            num(&f["cpuPercent"]),
            "% core",
        );
        report.value(
            "voice",
            "gpu-orb RSS while talking, max (release)",
            num(&f["rssMaxMiB"]),
            "MiB",
        );
        report.value("voice", "answers", num(&f["turns"]), "turns");
    }
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}
