//! Settings of where orbs run: as children of this server (`ORB_LAUNCHER=local`,
//! the default) or as Slurm jobs on a GPU cluster (`ORB_LAUNCHER=slurm`), and the
//! URL orbs connect back to (`ORB_CPU_WEBSOCKET_URL`).

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use shared::settings::{Key, Setting, Validator};

use super::orbs::split_command;

const ORB_LAUNCHER: Setting = Setting::new(
    Key::new("ORB_LAUNCHER", "orb-launcher"),
    "local",
    "Where orbs run: local (children of this server) or slurm (one Slurm job per orb, placed by the cluster)",
);
const ORB_CPU_WEBSOCKET_URL: Setting = Setting::derived(
    Key::new("ORB_CPU_WEBSOCKET_URL", "orb-cpu-websocket-url"),
    "ws://CPU_HOST/ws-simple (local orbs: the loopback address)",
    "Room socket base URL orbs connect back to, passed to them as CPU_WEBSOCKET_URL; Slurm orbs also reach /orb-link/ROOM beside it. Required with ORB_LAUNCHER=slurm when CPU_HOST is a loopback or wildcard address",
);
const ORB_SLURM_GRES: Setting = Setting::new(
    Key::new("ORB_SLURM_GRES", "orb-slurm-gres"),
    "gpu:1",
    "sbatch --gres of each orb job; none = no --gres",
);
const ORB_SLURM_PARTITION: Setting = Setting::documented(
    Key::new("ORB_SLURM_PARTITION", "orb-slurm-partition"),
    "sbatch --partition of orb jobs. Unset: the cluster's default partition",
);
const ORB_SLURM_ACCOUNT: Setting = Setting::documented(
    Key::new("ORB_SLURM_ACCOUNT", "orb-slurm-account"),
    "sbatch --account of orb jobs. Unset: the user's default account",
);
const ORB_SLURM_ARGS: Setting = Setting::documented(
    Key::new("ORB_SLURM_ARGS", "orb-slurm-args"),
    "More sbatch arguments, split like a shell (e.g. \"--qos=rt --mem=4G\")",
);
const ORB_SLURM_POLL_INTERVAL: Setting = Setting::new(
    Key::new("ORB_SLURM_POLL_INTERVAL", "orb-slurm-poll-interval"),
    "1000",
    "How often one squeue call reads the state of every orb job, ms",
);
const ORB_SLURM_COMMAND_TIMEOUT: Setting = Setting::new(
    Key::new("ORB_SLURM_COMMAND_TIMEOUT", "orb-slurm-command-timeout"),
    "10000",
    "Longest wait for one sbatch, squeue or scancel call, ms",
);

/// This area's declarations (for the documentation checks).
#[cfg(test)]
pub(super) const SETTINGS: &[&Setting] = &[
    &ORB_LAUNCHER,
    &ORB_CPU_WEBSOCKET_URL,
    &ORB_SLURM_GRES,
    &ORB_SLURM_PARTITION,
    &ORB_SLURM_ACCOUNT,
    &ORB_SLURM_ARGS,
    &ORB_SLURM_POLL_INTERVAL,
    &ORB_SLURM_COMMAND_TIMEOUT,
];

/// Raw placement flags; every one also readable from its environment variable.
#[derive(Debug, Clone, Default, Args)]
pub struct PlacementArgs {
    /// `ORB_LAUNCHER`.
    #[arg(long = ORB_LAUNCHER.long(), env = ORB_LAUNCHER.env(), help = ORB_LAUNCHER.help())]
    pub orb_launcher: Option<String>,
    /// `ORB_CPU_WEBSOCKET_URL`.
    #[arg(long = ORB_CPU_WEBSOCKET_URL.long(), env = ORB_CPU_WEBSOCKET_URL.env(), help = ORB_CPU_WEBSOCKET_URL.help())]
    pub orb_cpu_websocket_url: Option<String>,
    /// `ORB_SLURM_GRES`.
    #[arg(long = ORB_SLURM_GRES.long(), env = ORB_SLURM_GRES.env(), help = ORB_SLURM_GRES.help())]
    pub orb_slurm_gres: Option<String>,
    /// `ORB_SLURM_PARTITION`.
    #[arg(long = ORB_SLURM_PARTITION.long(), env = ORB_SLURM_PARTITION.env(), help = ORB_SLURM_PARTITION.help())]
    pub orb_slurm_partition: Option<String>,
    /// `ORB_SLURM_ACCOUNT`.
    #[arg(long = ORB_SLURM_ACCOUNT.long(), env = ORB_SLURM_ACCOUNT.env(), help = ORB_SLURM_ACCOUNT.help())]
    pub orb_slurm_account: Option<String>,
    /// `ORB_SLURM_ARGS`.
    #[arg(long = ORB_SLURM_ARGS.long(), env = ORB_SLURM_ARGS.env(), help = ORB_SLURM_ARGS.help())]
    pub orb_slurm_args: Option<String>,
    /// `ORB_SLURM_POLL_INTERVAL`.
    #[arg(long = ORB_SLURM_POLL_INTERVAL.long(), env = ORB_SLURM_POLL_INTERVAL.env(), help = ORB_SLURM_POLL_INTERVAL.help())]
    pub orb_slurm_poll_interval: Option<String>,
    /// `ORB_SLURM_COMMAND_TIMEOUT`.
    #[arg(long = ORB_SLURM_COMMAND_TIMEOUT.long(), env = ORB_SLURM_COMMAND_TIMEOUT.env(), help = ORB_SLURM_COMMAND_TIMEOUT.help())]
    pub orb_slurm_command_timeout: Option<String>,
}

/// Where orbs run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LauncherKind {
    /// Children of this server.
    Local,
    /// One Slurm job each.
    Slurm(SlurmSettings),
}

/// How orb jobs are submitted and watched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmSettings {
    /// `--gres`, if any.
    pub gres: Option<String>,
    /// `--partition`, if any.
    pub partition: Option<String>,
    /// `--account`, if any.
    pub account: Option<String>,
    /// More sbatch arguments.
    pub extra_args: Vec<String>,
    /// Period of the one `squeue` call.
    pub poll_interval: Duration,
    /// Bound of every Slurm command.
    pub command_timeout: Duration,
}

/// Typed placement settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementSettings {
    /// The launcher.
    pub launcher: LauncherKind,
    /// `ORB_CPU_WEBSOCKET_URL` as given (no trailing `/`), if set.
    pub cpu_websocket_url: Option<String>,
}

impl Default for PlacementSettings {
    fn default() -> Self {
        Self {
            launcher: LauncherKind::Local,
            cpu_websocket_url: None,
        }
    }
}

impl PlacementSettings {
    /// The room socket base URL orbs are given, for a server listening on `listen`
    /// whose own orbs reach it at `loopback` (`host:port`): the setting, or one
    /// derived from the listener.
    pub fn orb_websocket_base(&self, listen: SocketAddr, loopback: &str) -> String {
        match (&self.cpu_websocket_url, &self.launcher) {
            (Some(url), _) => url.clone(),
            (None, LauncherKind::Slurm(_)) => format!("ws://{listen}/ws-simple"),
            (None, LauncherKind::Local) => format!("ws://{loopback}/ws-simple"),
        }
    }
}

/// The supervision link URL of `room` beside a room socket base URL: its last path
/// segment (`ws-simple`) replaced by `orb-link`.
pub fn orb_link_url(websocket_base: &str, room: &str) -> String {
    let base = websocket_base.trim_end_matches('/');
    let has_path = base.split_once("://").is_some_and(|(_, rest)| rest.contains('/'));
    let parent = match base.rsplit_once('/') {
        Some((parent, _)) if has_path => parent,
        _ => base,
    };
    format!("{parent}/orb-link/{room}")
}

impl PlacementArgs {
    /// Validates into [`PlacementSettings`]; `listen` is `CPU_HOST`.
    pub fn validate(mut self, v: &mut Validator<'_>, listen: SocketAddr) -> PlacementSettings {
        let slurm = v.parse(
            &ORB_LAUNCHER,
            self.orb_launcher.take(),
            "local or slurm",
            |raw| match raw.to_ascii_lowercase().as_str() {
                "local" => Ok(false),
                "slurm" => Ok(true),
                _ => Err(String::new()),
            },
        );
        let cpu_websocket_url = v
            .optional(&ORB_CPU_WEBSOCKET_URL, self.orb_cpu_websocket_url.take())
            .and_then(|raw| {
                let url = raw.trim_end_matches('/').to_owned();
                let scheme_ok = url.starts_with("ws://") || url.starts_with("wss://");
                let has_path = url.split_once("://").is_some_and(|(_, rest)| rest.contains('/'));
                if scheme_ok && has_path {
                    Some(url)
                } else {
                    v.error(
                        &ORB_CPU_WEBSOCKET_URL,
                        raw,
                        "a ws:// or wss:// URL with the room path, e.g. ws://10.0.0.5:3000/ws-simple",
                    );
                    None
                }
            });
        let launcher = if slurm {
            if cpu_websocket_url.is_none() && (listen.ip().is_loopback() || listen.ip().is_unspecified()) {
                v.error(
                    &ORB_CPU_WEBSOCKET_URL,
                    "",
                    format!(
                        "an address compute nodes reach (CPU_HOST={listen} is not one), e.g. ws://10.0.0.5:{}/ws-simple",
                        listen.port()
                    ),
                );
            }
            LauncherKind::Slurm(self.slurm(v))
        } else {
            LauncherKind::Local
        };
        PlacementSettings {
            launcher,
            cpu_websocket_url,
        }
    }
}

impl PlacementArgs {
    fn slurm(self, v: &mut Validator<'_>) -> SlurmSettings {
        let gres = Some(v.string(&ORB_SLURM_GRES, self.orb_slurm_gres)).filter(|g| !g.is_empty() && g != "none");
        let extra_args = match v.optional(&ORB_SLURM_ARGS, self.orb_slurm_args) {
            Some(raw) => split_command(&raw).unwrap_or_else(|why| {
                v.error(
                    &ORB_SLURM_ARGS,
                    raw,
                    format!("sbatch arguments split like a shell ({why})"),
                );
                Vec::new()
            }),
            None => Vec::new(),
        };
        SlurmSettings {
            gres,
            partition: v.optional(&ORB_SLURM_PARTITION, self.orb_slurm_partition),
            account: v.optional(&ORB_SLURM_ACCOUNT, self.orb_slurm_account),
            extra_args,
            poll_interval: v.millis(&ORB_SLURM_POLL_INTERVAL, self.orb_slurm_poll_interval, 100),
            command_timeout: v.millis(&ORB_SLURM_COMMAND_TIMEOUT, self.orb_slurm_command_timeout, 500),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::settings::DotEnv;

    fn validate(args: PlacementArgs, listen: &str) -> Result<PlacementSettings, String> {
        let dotenv = DotEnv::default();
        let mut v = Validator::new(&dotenv);
        let settings = args.validate(&mut v, listen.parse().expect("addr"));
        v.finish().map(|()| settings).map_err(|e| e.to_string())
    }

    #[test]
    fn local_by_default_and_slurm_needs_a_reachable_url() {
        let local = validate(PlacementArgs::default(), "127.0.0.1:3000").expect("defaults");
        assert_eq!(local.launcher, LauncherKind::Local);
        let slurm = PlacementArgs {
            orb_launcher: Some("slurm".into()),
            ..PlacementArgs::default()
        };
        let err = validate(slurm.clone(), "0.0.0.0:3000").expect_err("a wildcard address");
        assert!(err.contains("ORB_CPU_WEBSOCKET_URL"), "{err}");
        let ok = validate(slurm.clone(), "10.1.2.3:3000").expect("a routable address");
        assert_eq!(
            ok.orb_websocket_base("10.1.2.3:3000".parse().expect("addr"), "x"),
            "ws://10.1.2.3:3000/ws-simple"
        );
        let LauncherKind::Slurm(s) = ok.launcher else {
            panic!("slurm")
        };
        assert_eq!(s.gres.as_deref(), Some("gpu:1"));
        assert_eq!(s.poll_interval, Duration::from_secs(1));
    }

    #[test]
    fn bad_values_name_their_setting() {
        let args = PlacementArgs {
            orb_launcher: Some("k8s".into()),
            orb_cpu_websocket_url: Some("http://h".into()),
            ..PlacementArgs::default()
        };
        let err = validate(args, "127.0.0.1:3000").expect_err("bad");
        assert!(
            err.contains("ORB_LAUNCHER") && err.contains("ORB_CPU_WEBSOCKET_URL"),
            "{err}"
        );
    }

    #[test]
    fn the_link_sits_beside_the_room_path() {
        assert_eq!(orb_link_url("ws://h:3000/ws-simple", "r1"), "ws://h:3000/orb-link/r1");
        assert_eq!(orb_link_url("wss://h/ai/ws-simple/", "r1"), "wss://h/ai/orb-link/r1");
    }
}
