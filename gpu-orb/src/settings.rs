//! Typed settings of one orb, resolved from the command line, the environment,
//! `.env` and defaults, with every bad value reported at once (exit 64).
//!
//! Flags come through [`Cli`] (clap already applied flag > environment);
//! settings that have no flag are read from the environment through a lookup
//! function so that tests can give a map instead of the process environment.

use std::path::PathBuf;
use std::time::Duration;

use shared::secret::Secret;
use shared::settings::{DotEnv, Key, Setting, SettingErrors, Validator};

use crate::cli::Cli;

pub(crate) const ROOM: Setting = Setting::documented(
    Key::new("ROOM_ID", "room"),
    "Room to join (required; 1–64 of A-Z a-z 0-9 _ . -)",
);
pub(crate) const SESSION: Setting = Setting::documented(
    Key::new("SESSION_ID", "session"),
    "Session id (the AI joins as `ai-orb-<session>`); a UUID v4 when absent",
);
pub(crate) const COACH: Setting =
    Setting::documented(Key::new("COACH_ID", "coach"), "The coach's user id (informational)");
pub(crate) const CLIENT: Setting =
    Setting::documented(Key::new("CLIENT_ID", "client"), "The client's user id (informational)");
pub(crate) const CPU_HOST: Setting = Setting::new(
    Key::new("CPU_SERVER_HOST", "cpu-host"),
    "localhost:3000",
    "cpu-server address; the orb connects to ws://HOST:PORT/ws-simple/ROOM",
);
pub(crate) const WS_URL: Setting = Setting::documented(
    Key::new("CPU_WEBSOCKET_URL", "cpu-websocket-url"),
    "WebSocket base URL (e.g. wss://host/ws-simple); `/ROOM` is appended. Wins over --cpu-host",
);
pub(crate) const SERVER_URL: Setting = Setting::documented(
    Key::new("CPU_SERVER_URL", "cpu-server-url"),
    "cpu-server base URL (e.g. https://host); used as ws(s)://host/ws-simple/ROOM when no WebSocket URL is set",
);
pub(crate) const MAX_LIFETIME: Setting = Setting::new(
    Key::new("MAX_ORB_LIFETIME", "max-lifetime"),
    "7200000",
    "Exit (reason `timeout`) after this many ms; 0 = no limit",
);
pub(crate) const IDLE_TIMEOUT: Setting = Setting::new(
    Key::new("IDLE_TIMEOUT", "idle-timeout"),
    "300000",
    "Exit (reason `idle_timeout`) after no human was in the room for this many ms; 0 = never",
);
pub(crate) const TEST_MODE: Setting = Setting::new(
    Key::new("ORB_TEST_MODE", "test-mode"),
    "false",
    "Test mode: no external AI calls; `say` is answered with `echo: <text>`",
);
pub(crate) const WARM: Setting = Setting::new(
    Key::new("ORB_WARM", "warm"),
    "false",
    "Warm start: no --room; start, then wait on the manager channel for `orb_assign` (room, session, token)",
);
const HEARTBEAT: Setting = Setting::new(
    Key::env("ORB_HEARTBEAT_INTERVAL"),
    "30000",
    "IPC and WebSocket heartbeat period, ms",
);
const PING: Setting = Setting::new(Key::env("ORB_PING_INTERVAL"), "30000", "`ping` period, ms");
const GRACE: Setting = Setting::new(
    Key::env("ORB_RECONNECT_GRACE"),
    "60000",
    "Give up when the room stays unreachable this long, ms",
);
const SHUTDOWN: Setting = Setting::new(
    Key::env("ORB_SHUTDOWN_TIMEOUT"),
    "5000",
    "Bound of a graceful shutdown, ms",
);
const LOG_DIR: Setting = Setting::derived(Key::env("ORB_LOG_DIR"), "unset", "Also log to <dir>/orb-<room>.log");
const LINK_URL: Setting = Setting::derived(
    Key::env("ORB_LINK_URL"),
    "unset",
    "Supervision link (ws:// or wss://) used when no NODE_CHANNEL_FD is inherited: the IPC messages over a WebSocket (set by cpu-server for Slurm jobs)",
);
/// Read from the process environment only (no flag, no `.env`).
const AUTH_TOKEN: Setting = Setting::derived(
    Key::env("ORB_AUTH_TOKEN"),
    "unset",
    "Credential for the room socket (environment only, never argv)",
);
const OPENAI_KEY: Setting = Setting::derived(
    Key::env("OPENAI_API_KEY"),
    "required outside test mode",
    "API key of the real brain",
);
const OPENAI_URL: Setting = Setting::new(
    Key::env("OPENAI_BASE_URL"),
    "https://api.openai.com/v1",
    "OpenAI-compatible API base URL",
);
const OPENAI_MODEL: Setting = Setting::new(Key::env("OPENAI_MODEL"), "gpt-4o-mini", "Chat model");
const OPENAI_TIMEOUT: Setting = Setting::new(Key::env("OPENAI_TIMEOUT"), "30000", "Bound of one brain request, ms");

/// The orb's declarations (for the documentation checks).
#[cfg(test)]
const SETTINGS: &[&Setting] = &[
    &ROOM,
    &SESSION,
    &COACH,
    &CLIENT,
    &CPU_HOST,
    &WS_URL,
    &SERVER_URL,
    &MAX_LIFETIME,
    &IDLE_TIMEOUT,
    &TEST_MODE,
    &WARM,
    &HEARTBEAT,
    &PING,
    &GRACE,
    &SHUTDOWN,
    &LOG_DIR,
    &LINK_URL,
    &AUTH_TOKEN,
    &OPENAI_KEY,
    &OPENAI_URL,
    &OPENAI_MODEL,
    &OPENAI_TIMEOUT,
];

/// The ones docs/protocol.md §4 describes.
#[cfg(test)]
const PROTOCOL: &[&Setting] = &[&HEARTBEAT, &PING, &GRACE, &SHUTDOWN];

/// Where the AI's answers come from.
#[derive(Debug, Clone, PartialEq)]
pub enum BrainSettings {
    /// Test mode: deterministic `echo: <text>`, no external calls.
    Echo,
    /// An OpenAI-compatible chat completions endpoint.
    OpenAi(OpenAiSettings),
}

/// `OPENAI_*` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAiSettings {
    /// `OPENAI_BASE_URL` (default `https://api.openai.com/v1`).
    pub base_url: String,
    /// `OPENAI_API_KEY` (required outside test mode).
    pub api_key: Secret,
    /// `OPENAI_MODEL` (default `gpt-4o-mini`).
    pub model: String,
    /// `OPENAI_TIMEOUT` ms (default 30000): bound of one request.
    pub timeout: Duration,
}

/// Everything one orb needs to know, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The room id (safe for a file name); empty for a warm orb until it is assigned one.
    pub room: String,
    /// `--warm`: started without a room, waiting for `orb_assign` ([`crate::warm`]).
    pub warm: bool,
    /// The session id; the AI's user id is `ai-orb-<session>`.
    pub session: String,
    /// The coach's user id, if given.
    pub coach: Option<String>,
    /// The client's user id, if given.
    pub client: Option<String>,
    /// Full WebSocket URL of the room.
    pub room_url: String,
    /// Hard lifetime; `None` (`0`) = no limit.
    pub max_lifetime: Option<Duration>,
    /// Exit after nobody human was in the room this long; `None` (`0`) = never.
    pub idle_timeout: Option<Duration>,
    /// Test mode (echo brain).
    pub test_mode: bool,
    /// Period of `orb_heartbeat` (IPC and WebSocket).
    pub heartbeat_interval: Duration,
    /// Period of `ping` on the room socket.
    pub ping_interval: Duration,
    /// How long the room may stay unreachable before the orb gives up.
    pub reconnect_grace: Duration,
    /// Bound of a graceful shutdown.
    pub shutdown_timeout: Duration,
    /// `ORB_LOG_DIR`: also log to `<dir>/orb-<room>.log`.
    pub log_dir: Option<PathBuf>,
    /// `ORB_AUTH_TOKEN` (environment only): sent in the join and as a bearer header.
    pub auth_token: Option<Secret>,
    /// `ORB_LINK_URL`: the supervision link, for an orb without `NODE_CHANNEL_FD`.
    pub link_url: Option<String>,
    /// Where answers come from.
    pub brain: BrainSettings,
    /// WebRTC media (`ORB_MEDIA*`, gpu-orb/src/media/settings.rs).
    pub media: crate::media::MediaSettings,
    /// Voice (`ORB_VOICE_*`, `ORB_STT_*`, `ORB_TTS_*`, ..., gpu-orb/src/voice/settings.rs).
    pub voice: crate::voice::settings::VoiceSettings,
}

impl Settings {
    /// Resolves and validates; `env` looks up variables that have no flag.
    pub fn resolve(cli: Cli, dotenv: &DotEnv, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, SettingErrors> {
        let mut v = Validator::new(dotenv);
        let warm = v.boolean(&WARM, cli.warm);
        let room = match v.optional(&ROOM, cli.room) {
            None if warm => String::new(),
            Some(room) if warm => {
                v.error(
                    &ROOM,
                    room,
                    "a warm orb (--warm) gets its room from the manager: drop --room",
                );
                String::new()
            }
            None => {
                v.error(&ROOM, "", "required: pass --room=ROOM (or set ROOM_ID)");
                String::new()
            }
            Some(room) => {
                if let Err(why) = check_room_id(&room) {
                    v.error(&ROOM, room.clone(), why);
                }
                room
            }
        };
        let session = v
            .optional(&SESSION, cli.session)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let coach = v.optional(&COACH, cli.coach);
        let client = v.optional(&CLIENT, cli.client);
        let room_url = resolve_room_url(&mut v, &room, cli.cpu_websocket_url, cli.cpu_server_url, cli.cpu_host);
        // Every duration is bounded by the validator (30 days); these two also take 0 = off.
        let max_lifetime = v.millis_or_off(&MAX_LIFETIME, cli.max_lifetime, 1);
        let idle_timeout = v.millis_or_off(&IDLE_TIMEOUT, cli.idle_timeout, 1);
        let test_mode = v.boolean(&TEST_MODE, cli.test_mode);
        let heartbeat_interval = v.millis(&HEARTBEAT, env(HEARTBEAT.env()), 10);
        let ping_interval = v.millis(&PING, env(PING.env()), 10);
        let reconnect_grace = v.millis(&GRACE, env(GRACE.env()), 1);
        let shutdown_timeout = v.millis(&SHUTDOWN, env(SHUTDOWN.env()), 1);
        let log_dir = v.optional(&LOG_DIR, env(LOG_DIR.env())).map(PathBuf::from);
        let link_url = v.optional(&LINK_URL, env(LINK_URL.env())).and_then(|url| {
            if url.starts_with("ws://") || url.starts_with("wss://") {
                Some(url)
            } else {
                v.error(
                    &LINK_URL,
                    url,
                    "a ws:// or wss:// URL, e.g. ws://10.0.0.5:3000/orb-link/ROOM",
                );
                None
            }
        });
        // The token comes from the process environment only: never argv, never `.env`.
        let auth_token = env(AUTH_TOKEN.env()).filter(|t| !t.is_empty()).map(Secret::new);
        let brain = if test_mode {
            BrainSettings::Echo
        } else {
            resolve_openai(&mut v, env)
        };
        let media = cli.media.resolve(&mut v);
        let openai = match &brain {
            BrainSettings::OpenAi(openai) => Some(openai),
            BrainSettings::Echo => None,
        };
        let voice_context = crate::voice::settings::VoiceContext {
            test_mode,
            media_enabled: media.enabled,
            openai,
        };
        let voice = cli.voice.resolve(&mut v, env, voice_context);
        v.finish()?;
        Ok(Self {
            room,
            warm,
            session,
            coach,
            client,
            room_url,
            max_lifetime,
            idle_timeout,
            test_mode,
            heartbeat_interval,
            ping_interval,
            reconnect_grace,
            shutdown_timeout,
            log_dir,
            auth_token,
            link_url,
            brain,
            media,
            voice,
        })
    }
}

/// A room id must be usable in a log file name: 1–64 of `[A-Za-z0-9_.-]`, not `.` or `..`.
pub fn check_room_id(room: &str) -> Result<(), &'static str> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if room.is_empty() || room.len() > 64 || !room.chars().all(allowed) || room == "." || room == ".." {
        Err("1 to 64 characters of A-Z a-z 0-9 _ . - (and not . or ..)")
    } else {
        Ok(())
    }
}

fn resolve_room_url(
    v: &mut Validator<'_>,
    room: &str,
    ws_url: Option<String>,
    server_url: Option<String>,
    cpu_host: Option<String>,
) -> String {
    if let Some(base) = v.optional(&WS_URL, ws_url) {
        if base.starts_with("ws://") || base.starts_with("wss://") {
            return format!("{}/{room}", base.trim_end_matches('/'));
        }
        v.error(&WS_URL, base, "a ws:// or wss:// URL, e.g. wss://host/ws-simple");
    } else if let Some(base) = v.optional(&SERVER_URL, server_url) {
        let mapped = [
            ("http://", "ws://"),
            ("https://", "wss://"),
            ("ws://", "ws://"),
            ("wss://", "wss://"),
        ]
        .iter()
        .find_map(|(from, to)| base.strip_prefix(from).map(|rest| format!("{to}{rest}")));
        match mapped {
            Some(url) => return format!("{}/ws-simple/{room}", url.trim_end_matches('/')),
            None => v.error(&SERVER_URL, base, "an http(s):// or ws(s):// URL, e.g. https://host"),
        }
    }
    let host = v.parse(&CPU_HOST, cpu_host, "HOST:PORT, e.g. localhost:3000", |raw| {
        let port_ok = raw
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        let clean = !raw.contains(['/', '?', '#', '@']) && !raw.contains(char::is_whitespace);
        if port_ok && clean {
            Ok(raw.to_owned())
        } else {
            Err(String::new())
        }
    });
    format!("ws://{host}/ws-simple/{room}")
}

fn resolve_openai(v: &mut Validator<'_>, env: &dyn Fn(&str) -> Option<String>) -> BrainSettings {
    let api_key = v.optional(&OPENAI_KEY, env(OPENAI_KEY.env()));
    let base_url = v.string(&OPENAI_URL, env(OPENAI_URL.env()));
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        v.error(&OPENAI_URL, base_url.clone(), "an http(s):// URL");
    }
    let model = v.string(&OPENAI_MODEL, env(OPENAI_MODEL.env()));
    let timeout = v.millis(&OPENAI_TIMEOUT, env(OPENAI_TIMEOUT.env()), 1);
    match api_key {
        Some(key) => BrainSettings::OpenAi(OpenAiSettings {
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key: Secret::new(key),
            model,
            timeout,
        }),
        None => {
            v.error(&OPENAI_KEY, "", "required outside test mode (or run with --test-mode)");
            BrainSettings::Echo
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use clap::Parser;

    use super::*;

    fn resolve(args: &[&str], dotenv: &[(&str, &str)], env: &[(&str, &str)]) -> Result<Settings, SettingErrors> {
        let cli = Cli::try_parse_from(std::iter::once("gpu-orb").chain(args.iter().copied())).expect("parse");
        let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::resolve(cli, &DotEnv::from_pairs(dotenv.iter().copied()), &|k| {
            env.get(k).cloned()
        })
    }

    #[test]
    fn defaults_apply() {
        let s = resolve(&["--room=r1", "--test-mode"], &[], &[]).expect("valid");
        assert_eq!(s.room_url, "ws://localhost:3000/ws-simple/r1");
        assert_eq!(s.max_lifetime, Some(Duration::from_millis(7_200_000)));
        assert_eq!(s.idle_timeout, Some(Duration::from_millis(300_000)));
        assert_eq!(s.heartbeat_interval, Duration::from_millis(30_000));
        assert_eq!(s.reconnect_grace, Duration::from_millis(60_000));
        assert!(s.test_mode);
        assert_eq!(s.brain, BrainSettings::Echo);
        assert!(
            uuid::Uuid::parse_str(&s.session).is_ok(),
            "generated session {}",
            s.session
        );
    }

    #[test]
    fn flag_beats_dotenv_beats_default_and_last_flag_wins() {
        let dotenv = [
            ("MAX_ORB_LIFETIME", "5000"),
            ("IDLE_TIMEOUT", "700"),
            ("ORB_HEARTBEAT_INTERVAL", "250"),
        ];
        let s = resolve(
            &["--room", "r1", "--max-lifetime=1", "--max-lifetime=9000", "--test-mode"],
            &dotenv,
            &[("ORB_HEARTBEAT_INTERVAL", "300")],
        )
        .expect("valid");
        assert_eq!(
            s.max_lifetime,
            Some(Duration::from_millis(9000)),
            "last flag wins over .env"
        );
        assert_eq!(s.idle_timeout, Some(Duration::from_millis(700)), ".env beats default");
        assert_eq!(
            s.heartbeat_interval,
            Duration::from_millis(300),
            "environment beats .env"
        );
    }

    #[test]
    fn all_bad_values_are_reported_together() {
        let errors = resolve(
            &["--max-lifetime=abc", "--idle-timeout=-1", "--test-mode=maybe"],
            &[],
            &[],
        )
        .expect_err("invalid");
        let text = errors.to_string();
        for name in [
            "--room",
            "--max-lifetime",
            "--idle-timeout",
            "--test-mode",
            "OPENAI_API_KEY",
        ] {
            assert!(text.contains(name), "{name} in {text}");
        }
        assert_eq!(errors.0.len(), 5, "{text}");
    }

    #[test]
    fn zero_turns_the_idle_and_lifetime_limits_off() {
        let s = resolve(
            &["--room=r1", "--test-mode", "--idle-timeout=0", "--max-lifetime=0"],
            &[],
            &[],
        )
        .expect("valid");
        assert_eq!((s.idle_timeout, s.max_lifetime), (None, None));
        let s = resolve(&["--room=r1", "--test-mode"], &[("IDLE_TIMEOUT", "0")], &[]).expect("valid");
        assert_eq!(s.idle_timeout, None, "0 from .env is off too");
    }

    #[test]
    fn every_duration_is_bounded() {
        let huge = "99999999999";
        let env = [
            ("ORB_HEARTBEAT_INTERVAL", huge),
            ("ORB_PING_INTERVAL", huge),
            ("ORB_RECONNECT_GRACE", huge),
            ("ORB_SHUTDOWN_TIMEOUT", huge),
            ("OPENAI_TIMEOUT", huge),
            ("OPENAI_API_KEY", "sk-x"),
        ];
        let args = ["--room=r1", "--idle-timeout=99999999999", "--max-lifetime=99999999999"];
        let errors = resolve(&args, &[], &env).expect_err("too large");
        let text = errors.to_string();
        for name in [
            "IDLE_TIMEOUT (--idle-timeout)",
            "MAX_ORB_LIFETIME (--max-lifetime)",
            "ORB_HEARTBEAT_INTERVAL",
            "ORB_PING_INTERVAL",
            "ORB_RECONNECT_GRACE",
            "ORB_SHUTDOWN_TIMEOUT",
            "OPENAI_TIMEOUT",
        ] {
            assert!(text.contains(&format!("{name} = \"{huge}\"")), "{name} in {text}");
        }
        assert_eq!(errors.0.len(), 7, "{text}");
        // The largest accepted value is 30 days; 0 is refused where it cannot mean off.
        let month = shared::settings::MAX_DURATION_MS.to_string();
        let s = resolve(
            &["--room=r1", "--test-mode", &format!("--idle-timeout={month}")],
            &[],
            &[],
        )
        .expect("valid");
        assert_eq!(s.idle_timeout, Some(Duration::from_secs(30 * 24 * 3600)));
        assert!(resolve(&["--room=r1", "--test-mode"], &[], &[("ORB_SHUTDOWN_TIMEOUT", "0")]).is_err());
    }

    #[test]
    fn room_ids_are_checked() {
        for good in ["r1", "a.b-c_D", &"x".repeat(64)] {
            assert!(check_room_id(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "a b", &"x".repeat(65), "é"] {
            assert!(check_room_id(bad).is_err(), "{bad}");
        }
        assert!(resolve(&["--room=../etc", "--test-mode"], &[], &[]).is_err());
    }

    #[test]
    fn room_url_sources() {
        let s = resolve(&["--room=r1", "--test-mode", "--cpu-host=127.0.0.1:9"], &[], &[]).expect("valid");
        assert_eq!(s.room_url, "ws://127.0.0.1:9/ws-simple/r1");
        let s = resolve(
            &["--room=r1", "--test-mode", "--cpu-websocket-url=wss://h/ws-simple/"],
            &[],
            &[],
        )
        .expect("ok");
        assert_eq!(s.room_url, "wss://h/ws-simple/r1");
        let s = resolve(
            &["--room=r1", "--test-mode", "--cpu-server-url=https://h:8443"],
            &[],
            &[],
        )
        .expect("ok");
        assert_eq!(s.room_url, "wss://h:8443/ws-simple/r1");
        assert!(resolve(&["--room=r1", "--test-mode", "--cpu-host=nohost"], &[], &[]).is_err());
    }

    #[test]
    fn openai_key_is_required_outside_test_mode_and_never_printed() {
        let errors = resolve(&["--room=r1"], &[], &[]).expect_err("no key");
        assert!(errors.to_string().contains("OPENAI_API_KEY"));
        let s = resolve(
            &["--room=r1"],
            &[],
            &[("OPENAI_API_KEY", "sk-secret"), ("ORB_AUTH_TOKEN", "tok")],
        )
        .expect("valid");
        let BrainSettings::OpenAi(openai) = &s.brain else {
            panic!("openai brain")
        };
        assert_eq!(openai.api_key.expose(), "sk-secret");
        assert_eq!(openai.model, "gpt-4o-mini");
        let shown = format!("{s:?}");
        assert_eq!(s.auth_token.as_ref().map(Secret::expose), Some("tok"));
        let from_file = resolve(&["--room=r1", "--test-mode"], &[("ORB_AUTH_TOKEN", "stale")], &[]).expect("valid");
        assert_eq!(from_file.auth_token, None, "the token is never read from .env");
        assert!(!shown.contains("sk-secret") && !shown.contains("tok\""), "{shown}");
    }

    #[test]
    fn voice_settings_are_resolved_with_the_rest() {
        use crate::voice::settings::{TtsSettings, VoicePlan};
        let s = resolve(&["--room=r1", "--test-mode"], &[], &[]).expect("valid");
        assert!(matches!(s.voice.plan, VoicePlan::Off { .. }), "test mode: no voice");
        let env = [
            ("OPENAI_API_KEY", "sk-secret"),
            ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1/"),
            ("ELEVENLABS_API_KEY", "xi-secret"),
        ];
        let s = resolve(&["--room=r1", "--stt-model=m2"], &[], &env).expect("valid");
        let VoicePlan::On(p) = &s.voice.plan else {
            panic!("voice on: {:?}", s.voice.plan)
        };
        assert_eq!(
            (p.stt.base_url.as_str(), p.stt.model.as_str()),
            ("http://127.0.0.1:9/v1", "m2")
        );
        assert!(matches!(p.tts, TtsSettings::ElevenLabs(_)));
        let shown = format!("{s:?}");
        assert!(!shown.contains("sk-secret") && !shown.contains("xi-secret"), "{shown}");
        let errors = resolve(&["--room=r1", "--test-mode", "--provider-retries=6"], &[], &[]).expect_err("bad");
        assert!(
            errors.to_string().contains("ORB_PROVIDER_RETRIES (--provider-retries)"),
            "{errors}"
        );
    }

    #[test]
    fn every_setting_is_documented_with_its_default() {
        let readme = include_str!("../../README.md");
        let mut all = SETTINGS.to_vec();
        all.extend(crate::media::settings::SETTINGS);
        all.extend(crate::voice::settings::SETTINGS);
        let problems = shared::settings::undocumented(&all, readme);
        assert!(problems.is_empty(), "README.md, gpu-orb: {problems:#?}");
        let protocol = include_str!("../../docs/protocol.md");
        let section = protocol
            .split("\n## 4.")
            .nth(1)
            .and_then(|rest| rest.split("\n## 5.").next())
            .expect("docs/protocol.md has a §4");
        let mut ours = PROTOCOL.to_vec();
        ours.extend(crate::media::settings::SETTINGS);
        ours.extend(crate::voice::settings::SETTINGS);
        let problems = shared::settings::undocumented(&ours, section);
        assert!(problems.is_empty(), "docs/protocol.md §4: {problems:#?}");
    }
}
