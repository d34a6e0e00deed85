//! Settings of the OrbManager: where orbs come from and how they are supervised.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use shared::settings::{Key, Rule, Setting, Validator};

/// Production fallback for `GPU_SERVER_PATH` (the old system's).
pub const PRODUCTION_GPU_SERVER_PATH: &str = "/var/www/hybrid-coach-gpu";
/// Production default for `ORB_LOG_DIR`.
pub const PRODUCTION_ORB_LOG_DIR: &str = "/var/log/hybrid-coach-gpu";

const GPU_SERVER_PATH: Setting = Setting::documented(
    Key::new("GPU_SERVER_PATH", "gpu-server-path"),
    "Directory the orb program runs in (and is found in). Default: the directory of the cpu-server binary in development, /var/www/hybrid-coach-gpu in production",
);
const ORB_COMMAND: Setting = Setting::documented(
    Key::new("ORB_COMMAND", "orb-command"),
    "Orb program and leading arguments, split like a shell (e.g. \"node aiorb.js\"). Default: GPU_SERVER_PATH/gpu-orb",
);
const MAX_CONCURRENT_ORBS: Setting = Setting::new(
    Key::new("MAX_CONCURRENT_ORBS", "max-concurrent-orbs"),
    "8",
    "Most orb processes alive at once",
);
const ORB_HEALTH_CHECK_INTERVAL: Setting = Setting::new(
    Key::new("ORB_HEALTH_CHECK_INTERVAL", "orb-health-check-interval"),
    "30000",
    "Heartbeat period of orbs, ms",
);
const ORB_UNRESPONSIVE_TIMEOUT: Setting = Setting::derived(
    Key::new("ORB_UNRESPONSIVE_TIMEOUT", "orb-unresponsive-timeout"),
    "3 × interval",
    "Silence on IPC and WebSocket after which an orb is unresponsive, ms",
);
const ORB_MEDIA_STALL_TIMEOUT: Setting = Setting::new(
    Key::new("ORB_MEDIA_STALL_TIMEOUT", "orb-media-stall-timeout"),
    "10000",
    "Replace an orb whose heartbeat shows an utterance unanswered, or a connected media peer sending nothing, this long, ms; 0 = off",
);
const ORB_READY_TIMEOUT: Setting = Setting::new(
    Key::new("ORB_READY_TIMEOUT", "orb-ready-timeout"),
    "30000",
    "Time a new orb has to send orb_ready, ms",
);
const ORB_TEST_MODE: Setting = Setting::documented(
    Key::new("ORB_TEST_MODE", "orb-test-mode"),
    "Run orbs in test mode (no external AI). Unset: test mode when no OPENAI_API_KEY is set outside production",
);
const MAX_ORB_LIFETIME: Setting = Setting::new(
    Key::new("MAX_ORB_LIFETIME", "max-orb-lifetime"),
    "7200000",
    "Longest life of one orb, ms; 0 = no limit",
);
const IDLE_TIMEOUT: Setting = Setting::new(
    Key::new("IDLE_TIMEOUT", "idle-timeout"),
    "300000",
    "Stop an orb after this long with no human in its room, ms; 0 = never",
);
const ORB_SPAWN_ON: Setting = Setting::new(
    Key::new("ORB_SPAWN_ON", "orb-spawn-on"),
    "coach",
    "Who starts a room's orb: coach, any (first human) or manual",
);
const ORB_ENV_PASSTHROUGH: Setting = Setting::documented(
    Key::new("ORB_ENV_PASSTHROUGH", "orb-env-passthrough"),
    "More environment names passed to orbs, comma-separated; PREFIX_* for prefixes",
);
const ORB_LOG_DIR: Setting = Setting::documented(
    Key::new("ORB_LOG_DIR", "orb-log-dir"),
    "Directory of the per-orb logs orb-<room>.log. Default: ./logs in development, /var/log/hybrid-coach-gpu in production",
);
const ORB_MAX_RESTARTS: Setting = Setting::new(
    Key::new("ORB_MAX_RESTARTS", "orb-max-restarts"),
    "5",
    "Restarts allowed within ORB_RESTART_WINDOW before the orb is parked",
);
const ORB_RESTART_WINDOW: Setting = Setting::new(
    Key::new("ORB_RESTART_WINDOW", "orb-restart-window"),
    "300000",
    "Window of the crash-loop limit, ms",
);
const ORB_MEMORY_LIMIT_MB: Setting = Setting::derived(
    Key::new("ORB_MEMORY_LIMIT_MB", "orb-memory-limit-mb"),
    "no limit",
    "Kill an orb whose process tree uses more resident memory than this, MB",
);
const ORB_GPU_MEMORY_LIMIT_MB: Setting = Setting::derived(
    Key::new("ORB_GPU_MEMORY_LIMIT_MB", "orb-gpu-memory-limit-mb"),
    "no limit",
    "Kill an orb whose process tree uses more GPU memory than this, MB (measured by NVML when the NVIDIA driver is present)",
);
const ORB_GPUS: Setting = Setting::documented(
    Key::new("ORB_GPUS", "orb-gpus"),
    "GPU device ids orbs are placed on, comma separated (e.g. 0,1,2,3); each orb gets CUDA_VISIBLE_DEVICES and NVIDIA_VISIBLE_DEVICES for its slot. Unset: no GPU slots",
);
const ORB_GPU_SLOTS_PER_DEVICE: Setting = Setting::new(
    Key::new("ORB_GPU_SLOTS_PER_DEVICE", "orb-gpu-slots-per-device"),
    "1",
    "Orbs sharing one GPU of ORB_GPUS; capacity is the smaller of MAX_CONCURRENT_ORBS and the slots",
);
const ROOM_EMPTY_GRACE: Setting = Setting::new(
    Key::new("ROOM_EMPTY_GRACE", "room-empty-grace"),
    "60000",
    "Stop a room's orb this long after the last human left, ms",
);
const ORB_STOP_GRACE: Setting = Setting::new(
    Key::new("ORB_STOP_GRACE", "orb-stop-grace"),
    "10000",
    "Time between shutdown_graceful and SIGTERM to the orb's group, ms",
);
const ORB_KILL_GRACE: Setting = Setting::new(
    Key::new("ORB_KILL_GRACE", "orb-kill-grace"),
    "5000",
    "Time between SIGTERM and SIGKILL to the orb's group, ms",
);

/// This area's declarations (for the documentation checks).
#[cfg(test)]
pub(super) const SETTINGS: &[&Setting] = &[
    &GPU_SERVER_PATH,
    &ORB_COMMAND,
    &MAX_CONCURRENT_ORBS,
    &ORB_HEALTH_CHECK_INTERVAL,
    &ORB_UNRESPONSIVE_TIMEOUT,
    &ORB_MEDIA_STALL_TIMEOUT,
    &ORB_READY_TIMEOUT,
    &ORB_TEST_MODE,
    &MAX_ORB_LIFETIME,
    &IDLE_TIMEOUT,
    &ORB_SPAWN_ON,
    &ORB_ENV_PASSTHROUGH,
    &ORB_LOG_DIR,
    &ORB_MAX_RESTARTS,
    &ORB_RESTART_WINDOW,
    &ORB_MEMORY_LIMIT_MB,
    &ORB_GPU_MEMORY_LIMIT_MB,
    &ORB_GPUS,
    &ORB_GPU_SLOTS_PER_DEVICE,
    &ROOM_EMPTY_GRACE,
    &ORB_STOP_GRACE,
    &ORB_KILL_GRACE,
];

/// The ones docs/protocol.md §4 describes.
#[cfg(test)]
pub(super) const PROTOCOL: &[&Setting] = &[
    &ORB_HEALTH_CHECK_INTERVAL,
    &ORB_UNRESPONSIVE_TIMEOUT,
    &ORB_MEDIA_STALL_TIMEOUT,
    &ORB_READY_TIMEOUT,
    &IDLE_TIMEOUT,
    &ROOM_EMPTY_GRACE,
    &MAX_ORB_LIFETIME,
    &ORB_STOP_GRACE,
    &ORB_KILL_GRACE,
    &ORB_MAX_RESTARTS,
    &ORB_RESTART_WINDOW,
    &ORB_MEMORY_LIMIT_MB,
    &MAX_CONCURRENT_ORBS,
    &ORB_SPAWN_ON,
];

/// Raw orb flags; every one also readable from its environment variable.
#[derive(Debug, Clone, Default, Args)]
pub struct OrbArgs {
    /// `GPU_SERVER_PATH`.
    #[arg(long = GPU_SERVER_PATH.long(), env = GPU_SERVER_PATH.env(), help = GPU_SERVER_PATH.help())]
    pub gpu_server_path: Option<String>,
    /// `ORB_COMMAND`.
    #[arg(long = ORB_COMMAND.long(), env = ORB_COMMAND.env(), help = ORB_COMMAND.help())]
    pub orb_command: Option<String>,
    /// `MAX_CONCURRENT_ORBS`.
    #[arg(long = MAX_CONCURRENT_ORBS.long(), env = MAX_CONCURRENT_ORBS.env(), help = MAX_CONCURRENT_ORBS.help())]
    pub max_concurrent_orbs: Option<String>,
    /// `ORB_HEALTH_CHECK_INTERVAL`.
    #[arg(long = ORB_HEALTH_CHECK_INTERVAL.long(), env = ORB_HEALTH_CHECK_INTERVAL.env(), help = ORB_HEALTH_CHECK_INTERVAL.help())]
    pub orb_health_check_interval: Option<String>,
    /// `ORB_UNRESPONSIVE_TIMEOUT`.
    #[arg(long = ORB_UNRESPONSIVE_TIMEOUT.long(), env = ORB_UNRESPONSIVE_TIMEOUT.env(), help = ORB_UNRESPONSIVE_TIMEOUT.help())]
    pub orb_unresponsive_timeout: Option<String>,
    /// `ORB_MEDIA_STALL_TIMEOUT`.
    #[arg(long = ORB_MEDIA_STALL_TIMEOUT.long(), env = ORB_MEDIA_STALL_TIMEOUT.env(), help = ORB_MEDIA_STALL_TIMEOUT.help())]
    pub orb_media_stall_timeout: Option<String>,
    /// `ORB_READY_TIMEOUT`.
    #[arg(long = ORB_READY_TIMEOUT.long(), env = ORB_READY_TIMEOUT.env(), help = ORB_READY_TIMEOUT.help())]
    pub orb_ready_timeout: Option<String>,
    /// `ORB_TEST_MODE`.
    #[arg(long = ORB_TEST_MODE.long(), env = ORB_TEST_MODE.env(), help = ORB_TEST_MODE.help())]
    pub orb_test_mode: Option<String>,
    /// `MAX_ORB_LIFETIME`.
    #[arg(long = MAX_ORB_LIFETIME.long(), env = MAX_ORB_LIFETIME.env(), help = MAX_ORB_LIFETIME.help())]
    pub max_orb_lifetime: Option<String>,
    /// `IDLE_TIMEOUT`.
    #[arg(long = IDLE_TIMEOUT.long(), env = IDLE_TIMEOUT.env(), help = IDLE_TIMEOUT.help())]
    pub idle_timeout: Option<String>,
    /// `ORB_SPAWN_ON`.
    #[arg(long = ORB_SPAWN_ON.long(), env = ORB_SPAWN_ON.env(), help = ORB_SPAWN_ON.help())]
    pub orb_spawn_on: Option<String>,
    /// `ORB_ENV_PASSTHROUGH`.
    #[arg(long = ORB_ENV_PASSTHROUGH.long(), env = ORB_ENV_PASSTHROUGH.env(), help = ORB_ENV_PASSTHROUGH.help())]
    pub orb_env_passthrough: Option<String>,
    /// `ORB_LOG_DIR`.
    #[arg(long = ORB_LOG_DIR.long(), env = ORB_LOG_DIR.env(), help = ORB_LOG_DIR.help())]
    pub orb_log_dir: Option<String>,
    /// `ORB_MAX_RESTARTS`.
    #[arg(long = ORB_MAX_RESTARTS.long(), env = ORB_MAX_RESTARTS.env(), help = ORB_MAX_RESTARTS.help())]
    pub orb_max_restarts: Option<String>,
    /// `ORB_RESTART_WINDOW`.
    #[arg(long = ORB_RESTART_WINDOW.long(), env = ORB_RESTART_WINDOW.env(), help = ORB_RESTART_WINDOW.help())]
    pub orb_restart_window: Option<String>,
    /// `ORB_MEMORY_LIMIT_MB`.
    #[arg(long = ORB_MEMORY_LIMIT_MB.long(), env = ORB_MEMORY_LIMIT_MB.env(), help = ORB_MEMORY_LIMIT_MB.help())]
    pub orb_memory_limit_mb: Option<String>,
    /// `ORB_GPU_MEMORY_LIMIT_MB`.
    #[arg(long = ORB_GPU_MEMORY_LIMIT_MB.long(), env = ORB_GPU_MEMORY_LIMIT_MB.env(), help = ORB_GPU_MEMORY_LIMIT_MB.help())]
    pub orb_gpu_memory_limit_mb: Option<String>,
    /// `ORB_GPUS`.
    #[arg(long = ORB_GPUS.long(), env = ORB_GPUS.env(), help = ORB_GPUS.help())]
    pub orb_gpus: Option<String>,
    /// `ORB_GPU_SLOTS_PER_DEVICE`.
    #[arg(long = ORB_GPU_SLOTS_PER_DEVICE.long(), env = ORB_GPU_SLOTS_PER_DEVICE.env(), help = ORB_GPU_SLOTS_PER_DEVICE.help())]
    pub orb_gpu_slots_per_device: Option<String>,
    /// `ROOM_EMPTY_GRACE`.
    #[arg(long = ROOM_EMPTY_GRACE.long(), env = ROOM_EMPTY_GRACE.env(), help = ROOM_EMPTY_GRACE.help())]
    pub room_empty_grace: Option<String>,
    /// `ORB_STOP_GRACE`.
    #[arg(long = ORB_STOP_GRACE.long(), env = ORB_STOP_GRACE.env(), help = ORB_STOP_GRACE.help())]
    pub orb_stop_grace: Option<String>,
    /// `ORB_KILL_GRACE`.
    #[arg(long = ORB_KILL_GRACE.long(), env = ORB_KILL_GRACE.env(), help = ORB_KILL_GRACE.help())]
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
    /// A stalled call (unanswered utterance, connected peer sending nothing)
    /// this long replaces the orb; `None` (`ORB_MEDIA_STALL_TIMEOUT=0`): off.
    pub media_stall_timeout: Option<Duration>,
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
    /// GPU memory limit of an orb's process tree, bytes.
    pub gpu_memory_limit_bytes: Option<u64>,
    /// GPU device ids orbs are placed on (`ORB_GPUS`); empty: no GPU slots.
    pub gpus: Vec<String>,
    /// Orbs per device (`ORB_GPU_SLOTS_PER_DEVICE`).
    pub gpu_slots_per_device: usize,
    /// Grace after the last human left.
    pub room_empty_grace: Duration,
    /// `shutdown_graceful` → SIGTERM.
    pub stop_grace: Duration,
    /// The warm pool (`ORB_WARM_POOL`, validated with the placement: settings/warm_pool.rs).
    pub warm_pool: super::WarmPoolSettings,
    /// SIGTERM → SIGKILL.
    pub kill_grace: Duration,
    /// The server's `.env` pairs: allowlisted ones reach orbs like environment
    /// variables (the environment wins where both set a name).
    pub dotenv_vars: DotEnvVars,
}

/// `ORB_GPUS`: distinct device ids (an index, or a `GPU-…`/`MIG-…` UUID), comma separated.
fn parse_gpus(raw: &str) -> Result<Vec<String>, String> {
    let expected = "distinct GPU device ids separated by commas, e.g. 0,1,2,3 (an index or a GPU-/MIG- UUID)";
    let ids: Vec<String> = raw.split(',').map(|id| id.trim().to_owned()).collect();
    let valid = |id: &String| {
        !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '/')
    };
    if ids.iter().all(valid) && ids.iter().enumerate().all(|(i, id)| !ids[..i].contains(id)) {
        Ok(ids)
    } else {
        Err(expected.to_owned())
    }
}

impl OrbSettings {
    /// How many orbs may run at once: `MAX_CONCURRENT_ORBS`, or fewer when the GPU
    /// slots are fewer.
    pub fn capacity(&self) -> usize {
        if self.gpus.is_empty() {
            self.max_concurrent
        } else {
            self.max_concurrent.min(self.gpus.len() * self.gpu_slots_per_device)
        }
    }
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
        let gpu_server_path = match v.optional(&GPU_SERVER_PATH, self.gpu_server_path) {
            Some(path) => PathBuf::from(path),
            None if production => PathBuf::from(PRODUCTION_GPU_SERVER_PATH),
            None => exe_dir(),
        };
        let orb_command = v
            .optional(&ORB_COMMAND, self.orb_command)
            .and_then(|raw| match split_command(&raw) {
                Ok(words) if !words.is_empty() => Some(words),
                Ok(_) => {
                    v.error(
                        &ORB_COMMAND,
                        raw,
                        "a program and its leading arguments, e.g. \"node aiorb.js\"",
                    );
                    None
                }
                Err(reason) => {
                    v.error(&ORB_COMMAND, raw, format!("a shell-like command line ({reason})"));
                    None
                }
            });
        let max_concurrent = v.number(&MAX_CONCURRENT_ORBS, self.max_concurrent_orbs, 1, 10_000) as usize;
        let health_check_interval = v.millis(&ORB_HEALTH_CHECK_INTERVAL, self.orb_health_check_interval, 50);
        let unresponsive_timeout = v
            .opt(
                &ORB_UNRESPONSIVE_TIMEOUT,
                self.orb_unresponsive_timeout,
                Rule::millis(100),
            )
            .unwrap_or(health_check_interval * 3);
        let media_stall_timeout = v.millis_or_off(&ORB_MEDIA_STALL_TIMEOUT, self.orb_media_stall_timeout, 1000);
        let ready_timeout = v.millis(&ORB_READY_TIMEOUT, self.orb_ready_timeout, 100);
        let test_mode = v
            .opt(&ORB_TEST_MODE, self.orb_test_mode, Rule::boolean())
            .unwrap_or(!production && !has_ai_key);
        let max_lifetime = v.millis_or_off(&MAX_ORB_LIFETIME, self.max_orb_lifetime, 1000);
        let idle_timeout = v.millis_or_off(&IDLE_TIMEOUT, self.idle_timeout, 100);
        let spawn_on = v.parse(
            &ORB_SPAWN_ON,
            self.orb_spawn_on,
            "coach, any or manual",
            |raw| match raw.to_ascii_lowercase().as_str() {
                "coach" => Ok(SpawnOn::Coach),
                "any" => Ok(SpawnOn::Any),
                "manual" => Ok(SpawnOn::Manual),
                _ => Err(String::new()),
            },
        );
        let env_passthrough = v
            .optional(&ORB_ENV_PASSTHROUGH, self.orb_env_passthrough)
            .map(|raw| {
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let log_dir = match v.optional(&ORB_LOG_DIR, self.orb_log_dir) {
            Some(dir) => PathBuf::from(dir),
            None if production => PathBuf::from(PRODUCTION_ORB_LOG_DIR),
            None => PathBuf::from("logs"),
        };
        let max_restarts = v.number(&ORB_MAX_RESTARTS, self.orb_max_restarts, 0, 1000) as u32;
        let restart_window = v.millis(&ORB_RESTART_WINDOW, self.orb_restart_window, 1000);
        let memory_limit_bytes = v
            .opt(&ORB_MEMORY_LIMIT_MB, self.orb_memory_limit_mb, Rule::number(1, 1 << 20))
            .map(|mb| mb * 1024 * 1024);
        let gpu_memory_limit_bytes = v
            .opt(
                &ORB_GPU_MEMORY_LIMIT_MB,
                self.orb_gpu_memory_limit_mb,
                Rule::number(1, 1 << 24),
            )
            .map(|mb| mb * 1024 * 1024);
        let gpus = match v.optional(&ORB_GPUS, self.orb_gpus) {
            Some(raw) => match parse_gpus(&raw) {
                Ok(gpus) => gpus,
                Err(why) => {
                    v.error(&ORB_GPUS, raw, why);
                    Vec::new()
                }
            },
            None => Vec::new(),
        };
        let gpu_slots_per_device = v.number(&ORB_GPU_SLOTS_PER_DEVICE, self.orb_gpu_slots_per_device, 1, 64) as usize;
        let room_empty_grace = v.millis(&ROOM_EMPTY_GRACE, self.room_empty_grace, 0);
        let stop_grace = v.millis(&ORB_STOP_GRACE, self.orb_stop_grace, 0);
        let kill_grace = v.millis(&ORB_KILL_GRACE, self.orb_kill_grace, 0);
        OrbSettings {
            gpu_server_path,
            orb_command,
            max_concurrent,
            health_check_interval,
            unresponsive_timeout,
            media_stall_timeout,
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
            gpu_memory_limit_bytes,
            gpus,
            gpu_slots_per_device,
            room_empty_grace,
            stop_grace,
            kill_grace,
            warm_pool: super::WarmPoolSettings::default(),
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
        assert_eq!(s.media_stall_timeout, Some(Duration::from_secs(10)));
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

    /// Rule: ORB_MEDIA_STALL_TIMEOUT takes 0 (off) or at least 1000 ms.
    #[test]
    fn the_media_stall_timeout_is_off_at_0_and_at_least_a_second() {
        let dotenv = DotEnv::default();
        let with = |raw: &str| {
            let mut v = Validator::new(&dotenv);
            let args = OrbArgs {
                orb_media_stall_timeout: Some(raw.into()),
                ..OrbArgs::default()
            };
            let s = args.validate(&mut v, false, false);
            v.finish().map(|()| s.media_stall_timeout)
        };
        assert_eq!(with("0").ok(), Some(None));
        assert_eq!(with("1500").ok(), Some(Some(Duration::from_millis(1500))));
        assert!(with("999").is_err());
        assert!(with("soon").is_err());
    }

    /// Rule: GPU slots are distinct device ids × slots per device, and capacity is the
    /// smaller of MAX_CONCURRENT_ORBS and the slots.
    #[test]
    fn gpu_slots_bound_the_capacity_and_bad_ids_are_refused() {
        let dotenv = DotEnv::default();
        let with = |gpus: Option<&str>, per: Option<&str>, max: &str| {
            let mut v = Validator::new(&dotenv);
            let args = OrbArgs {
                orb_gpus: gpus.map(Into::into),
                orb_gpu_slots_per_device: per.map(Into::into),
                max_concurrent_orbs: Some(max.into()),
                ..OrbArgs::default()
            };
            let s = args.validate(&mut v, false, false);
            v.finish().map(|()| (s.gpus.clone(), s.capacity()))
        };
        assert_eq!(with(None, None, "8").ok(), Some((vec![], 8)));
        assert_eq!(
            with(Some("0, 1"), None, "8").ok(),
            Some((vec!["0".to_owned(), "1".to_owned()], 2))
        );
        assert_eq!(with(Some("0,1"), Some("3"), "4").ok().map(|s| s.1), Some(4));
        assert_eq!(
            with(Some("GPU-8a1b2c,MIG-1/2/3"), Some("2"), "8").ok().map(|s| s.1),
            Some(4)
        );
        for bad in ["0,0", "0,,1", ",", "0;1", "gpu 0"] {
            assert!(with(Some(bad), None, "8").is_err(), "{bad:?}");
        }
        assert!(with(Some("0"), Some("0"), "8").is_err());
        assert!(with(Some("0"), Some("65"), "8").is_err());
    }
}
