//! The AI's voice end to end: a real cpu-server spawns a real gpu-orb with its voice on
//! (an `OPENAI_API_KEY` and no test mode), whose speech-to-text, text-to-speech and brain
//! are the stub of `tests/src/voice_stub.rs`; a headless Chromium coach page
//! (`tests/browser/voice.test.js`) whose microphone loops a sentence spoken by espeak-ng.
//! The stub receives audio of the utterance's length; the room sees the pipeline's
//! statuses and the answer; the page hears the answer; the next utterance interrupts
//! it; what does not address the AI gets no answer; at the end the transcript reaches
//! the manager as `session_summary` and stays out of the logs.
//!
//! Runs in a private network namespace with only `lo` (root, as CI runs), like
//! `webrtc_media`; needs Chromium, playwright-core and espeak-ng (tests/install.sh).

use std::time::{Duration, Instant};

use serde_json::Value;
use system_tests::media_kit::{enter_loopback_namespace, figures, require_browser_setup, run_node, start_orb_server};
use system_tests::operator_kit::request;
use system_tests::voice_stub::{Behaviour, Endpoint, VoiceStub};

const ADMIN_TOKEN: &str = "voice-tests-admin-token-0123456789";
const API_KEY: &str = "sk-voice-test-key";
const ELEVENLABS_KEY: &str = "xi-voice-test-key";
/// The first transcript addresses the AI; every later one does not.
const ADDRESSED: &str = "Hey assistant, how is the session going?";
const NOT_ADDRESSED: &str = "We should talk about your goals for the week.";
const ANSWER: &str = "It is going well. Keep going.";
const ANSWER_MS: u64 = 5000;

#[test]
fn the_ai_hears_answers_aloud_is_interrupted_and_ignores_what_is_not_for_it() {
    require_browser_setup();
    enter_loopback_namespace();
    let started = Instant::now();
    let stub = VoiceStub::start();
    stub.set_transcripts([ADDRESSED, NOT_ADDRESSED]);
    stub.set_answer(ANSWER);
    stub.set_speech_ms(ANSWER_MS);
    let logs = tempfile::tempdir().expect("log dir");
    let base = stub.openai_base_url();
    let eleven = stub.elevenlabs_base_url();
    let log_dir = logs.path().display().to_string();
    // Both keys set and no ORB_TTS_PROVIDER: ElevenLabs speaks (the old system's default).
    let server = start_orb_server(
        ADMIN_TOKEN,
        &[
            ("ORB_STOP_GRACE", "4000"),
            ("RUST_LOG", "info"),
            ("ORB_LOG_DIR", &log_dir),
            ("OPENAI_API_KEY", API_KEY),
            ("OPENAI_BASE_URL", &base),
            ("ELEVENLABS_API_KEY", ELEVENLABS_KEY),
            ("ELEVENLABS_BASE_URL", &eleven),
            ("ORB_PROVIDER_TIMEOUT", "3000"),
        ],
    );
    let env = [
        ("BASE_URL", format!("http://127.0.0.1:{}", server.port)),
        ("ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
        ("VOICE_ANSWER_MS", ANSWER_MS.to_string()),
    ];
    let (passed, output) = run_node(
        &["--test", "voice.test.js"],
        &env,
        "browser-voice.log",
        Duration::from_secs(120),
    );
    println!("{output}");
    let figures = figures(&output);
    for figure in &figures {
        println!("figure: {figure}");
    }
    let orb_log = || {
        std::fs::read_dir(logs.path())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .collect::<String>()
    };
    assert!(
        passed && output.contains("# fail 0"),
        "voice browser test failed (tests/artifacts/browser-voice.log):\n{output}\n--- orb log ---\n{}\n--- cpu-server ---\n{}",
        orb_log(),
        server.proc.stderr()
    );

    // What the providers received: the utterance's audio, the transcript in the brain's prompt, the answer to speak.
    let speech_ms = figures
        .iter()
        .find_map(|f| f["speechMs"].as_u64())
        .expect("speechMs figure");
    let heard = stub.transcriptions();
    assert!(heard.len() >= 3, "{} transcriptions", heard.len());
    let first = heard[0].wav.as_ref().expect("a WAV upload");
    assert_eq!((first.sample_rate, first.channels), (16_000, 1));
    assert!(
        first.duration_ms + 600 >= speech_ms && first.duration_ms <= speech_ms + 1200,
        "uploaded {} ms for {speech_ms} ms of speech",
        first.duration_ms
    );
    assert_eq!(heard[0].bearer.as_deref(), Some(API_KEY));
    let prompts = stub.prompts();
    assert!(
        prompts
            .first()
            .is_some_and(|p| p.contains(ADDRESSED) && p.contains("coach-1")),
        "{prompts:?}"
    );
    let speeches = stub.speeches();
    assert_eq!(speeches.len(), 1, "one answer spoken: {speeches:?}");
    assert_eq!(speeches[0].endpoint, Endpoint::ElevenLabs, "{speeches:?}");
    assert_eq!(speeches[0].text, ANSWER);
    assert_eq!(speeches[0].format, "pcm_24000");
    assert_eq!(speeches[0].key.as_deref(), Some(ELEVENLABS_KEY));
    assert_eq!(stub.requests(Endpoint::Speech), 0, "OpenAI did not speak");
    let log = orb_log();
    assert!(log.contains("barge-in"), "no barge-in in the orb log:\n{log}");

    // The end of the session: the transcript and its summary reach the manager, not the logs.
    let room = figures
        .iter()
        .find_map(|f| f["room"].as_str().map(str::to_owned))
        .expect("room figure");
    // The page closed with the browser: the room is empty, its orb stops (ROOM_EMPTY_GRACE=0)
    // gracefully and sends its summary; a DELETE finds it still stopping or already gone.
    let (status, _) = request(
        server.port,
        "DELETE",
        &format!("/api/orbs/{room}"),
        Some(ADMIN_TOKEN),
        None,
    );
    assert!(
        (200..300).contains(&status) || status == 404,
        "DELETE answered {status}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let summary = loop {
        let (status, body) = request(
            server.port,
            "GET",
            &format!("/api/orbs/{room}/summary"),
            Some(ADMIN_TOKEN),
            None,
        );
        if status == 200 {
            break serde_json::from_str::<Value>(&body).unwrap_or(Value::Null);
        }
        assert!(
            Instant::now() < deadline,
            "no session summary within 10 s: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let transcript = summary["summary"]["transcript"].as_array().cloned().unwrap_or_default();
    assert!(
        transcript
            .iter()
            .any(|e| e["text"] == ADDRESSED && e["speaker"] == "coach-1" && e["role"] == "coach"),
        "{summary}"
    );
    assert!(
        transcript.iter().any(|e| e["text"] == ANSWER && e["role"] == "ai"),
        "{summary}"
    );
    assert_eq!(
        summary["summary"]["summary"], ANSWER,
        "the brain's summary (the stub answers the same)"
    );
    let logs_now = format!("{}{}", orb_log(), server.proc.stderr());
    assert!(!logs_now.contains(NOT_ADDRESSED), "a transcript reached the logs");
    println!("voice_call: {:.1} s", started.elapsed().as_secs_f64());
}

/// One failure scenario: a server whose orbs use `stub` (voice on when `voice`), `extra`
/// settings on top; the room must get `code`, and a new orb when `restart`.
fn failure(stub: &VoiceStub, voice: bool, extra: &[(&str, &str)], code: &str, restart: bool) {
    let started = Instant::now();
    let base = stub.openai_base_url();
    let mut env: Vec<(&str, &str)> = vec![("RUST_LOG", "info"), ("ORB_HEARTBEAT_INTERVAL", "500")];
    if voice {
        env.extend([
            ("OPENAI_API_KEY", API_KEY),
            ("OPENAI_BASE_URL", &base),
            ("ORB_TTS_PROVIDER", "openai"),
        ]);
    }
    env.extend_from_slice(extra);
    let server = start_orb_server(ADMIN_TOKEN, &env);
    let node_env = [
        ("BASE_URL", format!("http://127.0.0.1:{}", server.port)),
        ("ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
        ("EXPECT_CODE", code.to_owned()),
        ("EXPECT_RESTART", if restart { "1" } else { "0" }.to_owned()),
    ];
    let log = format!("browser-voice-{code}.log");
    let (passed, output) = run_node(
        &["--test", "voice_failure.test.js"],
        &node_env,
        &log,
        Duration::from_secs(90),
    );
    println!("{output}");
    println!("voice failure {code}: {:.1} s", started.elapsed().as_secs_f64());
    assert!(
        passed && output.contains("# fail 0"),
        "voice failure scenario {code} failed (tests/artifacts/{log}):\n{output}\n--- cpu-server ---\n{}",
        server.proc.stderr()
    );
}

#[test]
fn provider_failures_tell_the_room_and_stalls_and_frozen_media_replace_the_orb() {
    require_browser_setup();
    enter_loopback_namespace();
    let stub = VoiceStub::start();
    stub.set_answer(ANSWER);
    stub.set_speech_ms(500);

    // A failing speech-to-text: retried, then `stt_failed`; the AI listens on.
    stub.set(Endpoint::Transcriptions, Behaviour::Fail);
    failure(&stub, true, &[("ORB_PROVIDER_RETRIES", "1")], "stt_failed", false);
    assert!(
        stub.requests(Endpoint::Transcriptions) >= 4,
        "two utterances, each tried twice"
    );

    // A hung text-to-speech: each attempt times out, then `tts_timeout`; the AI listens on.
    stub.set(Endpoint::Transcriptions, Behaviour::Answer);
    stub.set_transcripts([ADDRESSED]);
    stub.set(Endpoint::Speech, Behaviour::Hang);
    failure(
        &stub,
        true,
        &[("ORB_PROVIDER_TIMEOUT", "1000"), ("ORB_PROVIDER_RETRIES", "0")],
        "tts_timeout",
        false,
    );

    // A failing brain: `brain_failed`, nothing is spoken; the AI listens on.
    stub.set(Endpoint::Speech, Behaviour::Answer);
    stub.set(Endpoint::Chat, Behaviour::Fail);
    let spoken = stub.speeches().len();
    failure(&stub, true, &[("ORB_PROVIDER_RETRIES", "0")], "brain_failed", false);
    assert_eq!(stub.speeches().len(), spoken, "a failed brain spoke");
    stub.set(Endpoint::Chat, Behaviour::Answer);

    // A speech-to-text hung past the stall timeout (its own timeout is longer): the manager replaces the orb.
    stub.set(Endpoint::Speech, Behaviour::Answer);
    stub.set(Endpoint::Transcriptions, Behaviour::Hang);
    failure(
        &stub,
        true,
        &[("ORB_PROVIDER_TIMEOUT", "60000"), ("ORB_MEDIA_STALL_TIMEOUT", "3000")],
        "voice_stalled",
        true,
    );

    // A frozen media task (test mode, a debug-build failpoint) while the orb's IPC heartbeats go on.
    failure(
        &stub,
        false,
        &[("ORB_FAILPOINT", "media_freeze"), ("ORB_MEDIA_STALL_TIMEOUT", "3000")],
        "media_stalled",
        true,
    );
}
