//! Settings of the OrbManager: where orbs come from and how they are supervised.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use shared::settings::{Key, Validator};

/// Production fallback for `GPU_SERVER_PATH` (the old system's).
pub const PRODUCTION_GPU_SERVER_PATH: &str = "/var/www/hybrid-coach-gpu";
/// Production default for `ORB_LOG_DIR`.
pub const PRODUCTION_ORB_LOG_DIR: &str = "/var/log/hybrid-coach-gpu";

/// Raw orb flags; every one also readable from its environment variable.
#[derive(Debug, Clone, Default, Args)]
pub struct OrbArgs {
    /// Directory the orb program runs in (and is found in). Default: the directory of the
    /// cpu-server binary in development, /var/www/hybrid-coach-gpu in production.
    #[arg(long, env = "GPU_SERVER_PATH")]
    pub gpu_server_path: Option<String>,
    /// Orb program and leading arguments, split like a shell (e.g. "node aiorb.js").
    /// Default: GPU_SERVER_PATH/gpu-orb.
    #[arg(long, env = "ORB_COMMAND")]
    pub orb_command: Option<String>,
    /// Most orb processes alive at once [default: 8].
    #[arg(long, env = "MAX_CONCURRENT_ORBS")]
    pub max_concurrent_orbs: Option<String>,
    /// Heartbeat period of orbs, ms [default: 30000].
    #[arg(long, env = "ORB_HEALTH_CHECK_INTERVAL")]
    pub orb_health_check_interval: Option<String>,
    /// Silence on IPC and WebSocket after which an orb is unresponsive, ms [default: 3 × interval].
    #[arg(long, env = "ORB_UNRESPONSIVE_TIMEOUT")]
    pub orb_unresponsive_timeout: Option<String>,
    /// Time a new orb has to send orb_ready, ms [default: 30000].
    #[arg(long, env = "ORB_READY_TIMEOUT")]
    pub orb_ready_timeout: Option<String>,
    /// Run orbs in test mode (no external AI). Unset: test mode when no OPENAI_API_KEY
    /// is set outside production.
    #[arg(long, env = "ORB_TEST_MODE")]
    pub orb_test_mode: Option<String>,
    /// Longest life of one orb, ms; 0 = no limit [default: 7200000].
    #[arg(long, env = "MAX_ORB_LIFETIME")]
    pub max_orb_lifetime: Option<String>,
    /// Stop an orb after this long with no human in its room, ms; 0 = never [default: 300000].
    #[arg(long, env = "IDLE_TIMEOUT")]
    pub idle_timeout: Option<String>,
    /// Who starts a room's orb: coach, any (first human) or manual [default: coach].
    #[arg(long, env = "ORB_SPAWN_ON")]
    pub orb_spawn_on: Option<String>,
    /// More environment names passed to orbs, comma-separated; PREFIX_* for prefixes.
    #[arg(long, env = "ORB_ENV_PASSTHROUGH")]
    pub orb_env_passthrough: Option<String>,
    /// Directory of the per-orb logs orb-<room>.log. Default: ./logs in development,
    /// /var/log/hybrid-coach-gpu in production.
    #[arg(long, env = "ORB_LOG_DIR")]
    pub orb_log_dir: Option<String>,
    /// Restarts allowed within ORB_RESTART_WINDOW before the orb is parked [default: 5].
    #[arg(long, env = "ORB_MAX_RESTARTS")]
    pub orb_max_restarts: Option<String>,
    /// Window of the crash-loop limit, ms [default: 300000].
    #[arg(long, env = "ORB_RESTART_WINDOW")]
    pub orb_restart_window: Option<String>,
    /// Kill an orb whose process tree uses more resident memory than this, MB [default: no limit].
    #[arg(long, env = "ORB_MEMORY_LIMIT_MB")]
    pub orb_memory_limit_mb: Option<String>,
    /// Stop a room's orb this long after the last human left, ms [default: 60000].
    #[arg(long, env = "ROOM_EMPTY_GRACE")]
    pub room_empty_grace: Option<String>,
    /// Time between shutdown_graceful and SIGTERM to the orb's group, ms [default: 10000].
    #[arg(long, env = "ORB_STOP_GRACE")]
    pub orb_stop_grace: Option<String>,
    /// Time between SIGTERM and SIGKILL to the orb's group, ms [default: 5000].
    #[arg(long, env = "ORB_KILL_GRACE")]
    pub orb_kill_grace: Option<String>,
}

/// Who starts a room's orb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpawnOn {
    /// The first human with `userRole: coach`.
    Coach,
    /// The first human of any role.
    Any,
    /// Only the admin API.
    Manual,
}

/// Typed orb settings.
#[derive(Debug, Clone)]
pub struct OrbSettings {
    /// Working directory of orbs.
    pub gpu_server_path: PathBuf,
    /// Program and leading args; `None` means `GPU_SERVER_PATH/gpu-orb`.
    pub orb_command: Option<Vec<String>>,
    /// Slot count.
    pub max_concurrent: usize,
    /// Heartbeat period.
    pub health_check_interval: Duration,
    /// Silence that makes an orb unresponsive.
    pub unresponsive_timeout: Duration,
    /// Time to `orb_ready`.
    pub ready_timeout: Duration,
    /// Orbs run in test mode.
    pub test_mode: bool,
    /// Longest orb life; `None` (`MAX_ORB_LIFETIME=0`): no limit.
    pub max_lifetime: Option<Duration>,
    /// Longest time an orb lives with no human in its room; `None` (`IDLE_TIMEOUT=0`): no limit.
    pub idle_timeout: Option<Duration>,
    /// Spawn policy.
    pub spawn_on: SpawnOn,
    /// Extra names (exact) and prefixes (`PREFIX_*`) passed to orbs.
    pub env_passthrough: Vec<String>,
    /// Per-orb log directory.
    pub log_dir: PathBuf,
    /// Crash-loop limit.
    pub max_restarts: u32,
    /// Crash-loop window.
    pub restart_window: Duration,
    /// Memory limit of an orb's process group, bytes.
    pub memory_limit_bytes: Option<u64>,
    /// Grace after the last human left.
    pub room_empty_grace: Duration,
    /// `shutdown_graceful` → SIGTERM.
    pub stop_grace: Duration,
    /// SIGTERM → SIGKILL.
    pub kill_grace: Duration,
    /// The server's `.env` pairs: allowlisted ones reach orbs like environment
    /// variables (the environment wins where both set a name).
    pub dotenv_vars: DotEnvVars,
}

/// The `.env` pairs; `Debug` shows the names only (values may be secrets).
#[derive(Clone, Default)]
pub struct DotEnvVars(pub Vec<(String, String)>);

impl std::fmt::Debug for DotEnvVars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.iter().map(|(name, _)| name)).finish()
    }
}

impl OrbArgs {
    /// Validates into [`OrbSettings`], recording every error in `v`.
    /// `production` selects the production defaults; `has_ai_key` tells whether
    /// `OPENAI_API_KEY` is set (for the test-mode default).
    pub fn validate(self, v: &mut Validator<'_>, production: bool, has_ai_key: bool) -> OrbSettings {
        let path_key = Key::new("GPU_SERVER_PATH", "gpu-server-path");
        let gpu_server_path = match v.optional(path_key, self.gpu_server_path) {
            Some(path) => PathBuf::from(path),
            None if production => PathBuf::from(PRODUCTION_GPU_SERVER_PATH),
            None => exe_dir(),
        };
        let command_key = Key::new("ORB_COMMAND", "orb-command");
        let orb_command = v
            .optional(command_key, self.orb_command)
            .and_then(|raw| match split_command(&raw) {
                Ok(words) if !words.is_empty() => Some(words),
                Ok(_) => {
                    v.error(
                        command_key,
                        raw,
                        "a program and its leading arguments, e.g. \"node aiorb.js\"",
                    );
                    None
                }
                Err(reason) => {
                    v.error(command_key, raw, format!("a shell-like command line ({reason})"));
                    None
                }
            });
        let max_concurrent = v.number(
            Key::new("MAX_CONCURRENT_ORBS", "max-concurrent-orbs"),
            self.max_concurrent_orbs,
            8,
            1,
            10_000,
        ) as usize;
        let health_check_interval = v.millis(
            Key::new("ORB_HEALTH_CHECK_INTERVAL", "orb-health-check-interval"),
            self.orb_health_check_interval,
            30_000,
            50,
        );
        let default_unresponsive = (health_check_interval * 3).as_millis() as u64;
        let unresponsive_timeout = v.millis(
            Key::new("ORB_UNRESPONSIVE_TIMEOUT", "orb-unresponsive-timeout"),
            self.orb_unresponsive_timeout,
            default_unresponsive,
            100,
        );
        let ready_timeout = v.millis(
            Key::new("ORB_READY_TIMEOUT", "orb-ready-timeout"),
            self.orb_ready_timeout,
            30_000,
            100,
        );
        let test_key = Key::new("ORB_TEST_MODE", "orb-test-mode");
        let test_mode = match v.optional(test_key, self.orb_test_mode.clone()) {
            Some(_) => v.boolean(test_key, self.orb_test_mode, false),
            None => !production && !has_ai_key,
        };
        let max_lifetime = v.millis_or_off(
            Key::new("MAX_ORB_LIFETIME", "max-orb-lifetime"),
            self.max_orb_lifetime,
            7_200_000,
            1000,
        );
        let idle_timeout = v.millis_or_off(
            Key::new("IDLE_TIMEOUT", "idle-timeout"),
            self.idle_timeout,
            300_000,
            100,
        );
        let spawn_on = v.parse(
            Key::new("ORB_SPAWN_ON", "orb-spawn-on"),
            self.orb_spawn_on,
            SpawnOn::Coach,
            "coach, any or manual",
            |raw| match raw.to_ascii_lowercase().as_str() {
                "coach" => Ok(SpawnOn::Coach),
                "any" => Ok(SpawnOn::Any),
                "manual" => Ok(SpawnOn::Manual),
                _ => Err(String::new()),
            },
        );
        let env_passthrough = v
            .optional(
                Key::new("ORB_ENV_PASSTHROUGH", "orb-env-passthrough"),
                self.orb_env_passthrough,
            )
            .map(|raw| {
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let log_dir = match v.optional(Key::new("ORB_LOG_DIR", "orb-log-dir"), self.orb_log_dir) {
            Some(dir) => PathBuf::from(dir),
            None if production => PathBuf::from(PRODUCTION_ORB_LOG_DIR),
            None => PathBuf::from("logs"),
        };
        let max_restarts = v.number(
            Key::new("ORB_MAX_RESTARTS", "orb-max-restarts"),
            self.orb_max_restarts,
            5,
            0,
            1000,
        ) as u32;
        let restart_window = v.millis(
            Key::new("ORB_RESTART_WINDOW", "orb-restart-window"),
            self.orb_restart_window,
            300_000,
            1000,
        );
        let memory_limit_bytes = v
            .optional(
                Key::new("ORB_MEMORY_LIMIT_MB", "orb-memory-limit-mb"),
                self.orb_memory_limit_mb.clone(),
            )
            .map(|_| {
                v.number(
                    Key::new("ORB_MEMORY_LIMIT_MB", "orb-memory-limit-mb"),
                    self.orb_memory_limit_mb,
                    0,
                    1,
                    1 << 20,
                ) * 1024
                    * 1024
            });
        let room_empty_grace = v.millis(
            Key::new("ROOM_EMPTY_GRACE", "room-empty-grace"),
            self.room_empty_grace,
            60_000,
            0,
        );
        let stop_grace = v.millis(
            Key::new("ORB_STOP_GRACE", "orb-stop-grace"),
            self.orb_stop_grace,
            10_000,
            0,
        );
        let kill_grace = v.millis(
            Key::new("ORB_KILL_GRACE", "orb-kill-grace"),
            self.orb_kill_grace,
            5_000,
            0,
        );
        OrbSettings {
            gpu_server_path,
            orb_command,
            max_concurrent,
            health_check_interval,
            unresponsive_timeout,
            ready_timeout,
            test_mode,
            max_lifetime,
            idle_timeout,
            spawn_on,
            env_passthrough,
            log_dir,
            max_restarts,
            restart_window,
            memory_limit_bytes,
            room_empty_grace,
            stop_grace,
            kill_grace,
            dotenv_vars: DotEnvVars(
                v.dotenv()
                    .vars()
                    .map(|(k, val)| (k.to_owned(), val.to_owned()))
                    .collect(),
            ),
        }
    }
}

/// The directory of the running binary (where `cargo build` puts gpu-orb too).
fn exe_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Splits a command line like a POSIX shell would (quotes and backslashes; no expansion).
pub fn split_command(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(ch) => word.push(ch),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(ch @ ('"' | '\\' | '$' | '`')) => word.push(ch),
                            Some(ch) => {
                                word.push('\\');
                                word.push(ch);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(ch) => word.push(ch),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(ch) => word.push(ch),
                    None => return Err("trailing backslash".into()),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::settings::DotEnv;

    #[test]
    fn split_command_like_a_shell() {
        assert_eq!(split_command("node aiorb.js").unwrap_or_default(), ["node", "aiorb.js"]);
        assert_eq!(
            split_command(r#"  /opt/my\ orb/run "a b" 'c d'e  "#).unwrap_or_default(),
            ["/opt/my orb/run", "a b", "c de"]
        );
        assert!(split_command("'open").is_err());
    }

    #[test]
    fn defaults_follow_the_old_system() {
        let dotenv = DotEnv::default();
        let mut v = Validator::new(&dotenv);
        let s = OrbArgs::default().validate(&mut v, true, true);
        assert!(v.finish().is_ok());
        assert_eq!(s.gpu_server_path, PathBuf::from(PRODUCTION_GPU_SERVER_PATH));
        assert_eq!(s.max_concurrent, 8);
        assert_eq!(s.health_check_interval, Duration::from_secs(30));
        assert_eq!(s.unresponsive_timeout, Duration::from_secs(90));
        assert_eq!(s.max_lifetime, Some(Duration::from_millis(7_200_000)));
        assert_eq!(s.idle_timeout, Some(Duration::from_millis(300_000)));
        assert!(!s.test_mode, "production with a key is not test mode");
        assert_eq!(s.spawn_on, SpawnOn::Coach);
    }

    #[test]
    fn test_mode_defaults_on_without_a_key_in_development() {
        let dotenv = DotEnv::default();
        let mut v = Validator::new(&dotenv);
        assert!(OrbArgs::default().validate(&mut v, false, false).test_mode);
        assert!(!OrbArgs::default().validate(&mut v, false, true).test_mode);
        let explicit = OrbArgs {
            orb_test_mode: Some("false".into()),
            ..OrbArgs::default()
        };
        assert!(!explicit.validate(&mut v, false, false).test_mode);
    }

    #[test]
    fn bad_values_are_all_reported() {
        let dotenv = DotEnv::default();
        let mut v = Validator::new(&dotenv);
        let args = OrbArgs {
            max_concurrent_orbs: Some("zero".into()),
            orb_spawn_on: Some("sometimes".into()),
            orb_command: Some("'unterminated".into()),
            ..OrbArgs::default()
        };
        args.validate(&mut v, false, false);
        assert_eq!(v.finish().expect_err("errors").0.len(), 3);
    }
}
