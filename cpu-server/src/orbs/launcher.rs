//! The launcher seam: how an orb process comes to exist.
//!
//! Supervision only needs a started process and its IPC channel; where the
//! process runs is the launcher's business. [`LocalLauncher`] starts it on this
//! machine; a cluster scheduler can implement [`Launcher`] later without
//! touching the supervisor or the manager.

use std::path::PathBuf;

use super::orb_command::{self, OrbLaunch};
use super::orb_env;
use super::process_spawn::{Isolation, ProcessSpec, SpawnedProcess, spawn_process};
use crate::settings::OrbSettings;

/// Per-orb values the launcher puts in the orb's environment (`Debug` hides the token).
#[derive(Clone)]
pub struct LaunchEnv {
    /// `ORB_AUTH_TOKEN`: the orb's own credential for the room socket.
    pub auth_token: String,
    /// `ORB_HEARTBEAT_INTERVAL` in ms.
    pub heartbeat_interval_ms: u64,
}

impl std::fmt::Debug for LaunchEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaunchEnv")
            .field("auth_token", &"<redacted>")
            .field("heartbeat_interval_ms", &self.heartbeat_interval_ms)
            .finish()
    }
}

/// Starts orb processes.
pub trait Launcher: Send + Sync + 'static {
    /// Starts one orb for `launch`. Called on a runtime worker thread.
    fn launch(&self, launch: &OrbLaunch, env: &LaunchEnv) -> Result<SpawnedProcess, String>;
    /// Where this orb's output is logged.
    fn log_path(&self, room: &str) -> PathBuf;
}

/// Starts orbs as child processes of this server.
#[derive(Debug, Clone)]
pub struct LocalLauncher {
    settings: OrbSettings,
    cpu_host: String,
    isolation: Isolation,
}

impl LocalLauncher {
    /// A launcher using `settings`; orbs connect back to `cpu_host`.
    pub fn new(settings: OrbSettings, cpu_host: String) -> Self {
        Self {
            settings,
            cpu_host,
            isolation: Isolation::default(),
        }
    }

    /// The same launcher, starting orbs as `isolation` says (user, group, rlimits).
    pub fn with_isolation(mut self, isolation: Isolation) -> Self {
        self.isolation = isolation;
        self
    }
}

impl Launcher for LocalLauncher {
    fn launch(&self, launch: &OrbLaunch, env: &LaunchEnv) -> Result<SpawnedProcess, String> {
        let command = orb_command::resolve(&self.settings).map_err(|e| e.to_string())?;
        let mut args = command.leading_args.clone();
        args.extend(orb_command::orb_args(launch, &self.cpu_host, &self.settings));
        let inherited = orb_env::with_dotenv(std::env::vars(), &self.settings.dotenv_vars.0);
        let mut vars = orb_env::filter_env(inherited, &self.settings.env_passthrough);
        vars.extend([
            ("ROOM_ID".to_owned(), launch.room.clone()),
            ("SESSION_ID".to_owned(), launch.session.clone()),
            ("CPU_SERVER_HOST".to_owned(), self.cpu_host.clone()),
            ("ORB_LOG_DIR".to_owned(), self.settings.log_dir.display().to_string()),
            (
                "ORB_HEARTBEAT_INTERVAL".to_owned(),
                env.heartbeat_interval_ms.to_string(),
            ),
            ("ORB_AUTH_TOKEN".to_owned(), env.auth_token.clone()),
            ("ORB_SUPERVISED".to_owned(), "1".to_owned()),
        ]);
        if self.settings.test_mode {
            vars.push(("ORB_TEST_MODE".to_owned(), "true".to_owned()));
        }
        let spec = ProcessSpec {
            program: &command.program,
            args: &args,
            cwd: &self.settings.gpu_server_path,
            env: &vars,
            isolation: &self.isolation,
        };
        spawn_process(&spec).map_err(|e| format!("cannot start {}: {e}", command.program.display()))
    }

    fn log_path(&self, room: &str) -> PathBuf {
        self.settings.log_dir.join(format!("orb-{room}.log"))
    }
}
