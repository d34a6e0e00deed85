//! [`SlurmLauncher`] (`ORB_LAUNCHER=slurm`): each orb is one Slurm job, placed by the
//! cluster's scheduler, implementing the [`Launcher`] seam (`process_control`).
//!
//! Only Slurm's own commands are used (`sbatch --parsable`, `squeue`, `scontrol`,
//! `scancel`): the interface that stays the same across Slurm versions. A remote
//! orb has no IPC socket: it speaks the same IPC messages over its supervision link,
//! a WebSocket to `/orb-link/{room}` authenticated with its token (docs/protocol.md
//! §3.1), which [`LinkHub`] hands to the orb's [`SlurmDriver`].
//!
//! # Layout
//! - [`job_spec`]: the `sbatch` arguments, the job script and `sbatch`'s environment (pure).
//! - [`job_state`]: reading `squeue`/`scontrol`, and what each end state means (pure).
//! - [`command`]: one Slurm command, async and bounded by `ORB_SLURM_COMMAND_TIMEOUT`.
//! - [`watcher`]: one `squeue` per `ORB_SLURM_POLL_INTERVAL` for every job.
//! - [`driver`]: one task per orb job.
//! - [`link_hub`]: where a supervision link finds its driver.
//! - [`sweep`]: at start-up, the jobs an earlier server left are cancelled.

pub mod command;
pub mod driver;
pub mod job_spec;
pub mod job_state;
pub mod link_hub;
pub mod sweep;
pub mod watcher;

use std::sync::Arc;

use axum::extract::ws::WebSocket;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::orb_command::{self, OrbLaunch};
use super::orb_env;
use super::process_control::{EventSink, HandedOver, LaunchEnv, Launcher, Started, StartedOrb, Supervision};
use crate::settings::placement::orb_link_url;
use crate::settings::{OrbSettings, SlurmSettings};
use driver::{JobStart, SlurmDriver};
pub use link_hub::LinkHub;
use watcher::Watcher;

/// Orders waiting for one driver.
const ORDER_QUEUE: usize = 64;

/// What every orb job's driver shares.
#[derive(Debug)]
pub struct Cluster {
    /// The Slurm settings.
    pub settings: SlurmSettings,
    /// The job watcher.
    pub watcher: Watcher,
    /// Where supervision links go.
    pub hub: LinkHub,
    /// The environment of `squeue`, `scontrol` and `scancel` (`PATH`, `SLURM_CONF`…).
    pub env: Vec<(String, String)>,
}

impl Cluster {
    /// Runs one Slurm client command (no stdin) with the cluster's environment and bound.
    pub async fn query(&self, program: &'static str, args: &[String]) -> Result<String, command::SlurmError> {
        command::run(program, args, &self.env, None, self.settings.command_timeout).await
    }

    /// `scancel` (with `--signal=SIGNAL --full` when given) in the background, bounded.
    pub fn cancel(&self, job: &str, signal: Option<&'static str>) {
        let mut args = Vec::new();
        if let Some(signal) = signal {
            args.push(format!("--signal={signal}"));
            args.push("--full".to_owned());
        }
        args.push(job.to_owned());
        let (env, timeout) = (self.env.clone(), self.settings.command_timeout);
        tokio::spawn(async move {
            if let Err(error) = command::run("scancel", &args, &env, None, timeout).await {
                tracing::warn!(%error, "scancel failed");
            }
        });
    }
}

/// One job to submit.
#[derive(Debug, Clone)]
pub struct JobRequest {
    /// `--job-name`.
    pub name: String,
    /// `--comment`.
    pub comment: String,
    /// `sbatch`'s arguments.
    pub args: Vec<String>,
    /// `sbatch`'s environment (its own variables, then the orb's).
    pub env: Vec<(String, String)>,
    /// The batch script (stdin).
    pub script: String,
}

/// Starts orbs as Slurm jobs.
#[derive(Debug, Clone)]
pub struct SlurmLauncher {
    settings: OrbSettings,
    cluster: Arc<Cluster>,
    websocket_base: String,
    comment: String,
    cpu_host: String,
}

impl SlurmLauncher {
    /// A launcher whose orbs connect back to `websocket_base` (`ORB_CPU_WEBSOCKET_URL`);
    /// starts the job watcher (ended by `stop`). Must run inside the runtime.
    pub fn new(settings: OrbSettings, slurm: SlurmSettings, websocket_base: String, stop: CancellationToken) -> Self {
        let env: Vec<(String, String)> = job_spec::sbatch_env(std::env::vars(), &[]);
        let watcher = Watcher::start(env.clone(), slurm.poll_interval, slurm.command_timeout, stop);
        let cpu_host = websocket_base
            .split_once("://")
            .and_then(|(_, rest)| rest.split('/').next())
            .unwrap_or("localhost:3000")
            .to_owned();
        Self {
            comment: sweep::comment_for(&websocket_base),
            cluster: Arc::new(Cluster {
                settings: slurm,
                watcher,
                hub: LinkHub::default(),
                env,
            }),
            settings,
            websocket_base,
            cpu_host,
        }
    }

    /// What every driver shares (for the start-up sweep).
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// The comment marking this server's jobs.
    pub fn comment(&self) -> &str {
        &self.comment
    }

    fn request(&self, launch: &OrbLaunch, env: &LaunchEnv) -> Result<JobRequest, String> {
        let command = orb_command::resolve(&self.settings).map_err(|e| e.to_string())?;
        let mut args = command.leading_args.clone();
        args.extend(orb_command::orb_args(launch, &self.cpu_host, &self.settings));
        let mut vars = orb_env::launch_vars(&self.settings, launch, env, &self.cpu_host);
        vars.retain(|(name, _)| !matches!(name.as_str(), "CPU_WEBSOCKET_URL" | "ORB_LINK_URL" | "ORB_AUTH_TOKEN"));
        // The token authenticates the supervision link (of a warm job too: its room
        // token comes later in `orb_assign`, over that link).
        vars.push(("ORB_AUTH_TOKEN".to_owned(), env.auth_token.clone()));
        vars.push(("CPU_WEBSOCKET_URL".to_owned(), self.websocket_base.clone()));
        vars.push((
            "ORB_LINK_URL".to_owned(),
            orb_link_url(&self.websocket_base, &launch.room),
        ));
        let log = self.settings.log_dir.join(format!("orb-{}.log", launch.room));
        let spec = job_spec::JobSpec {
            room: &launch.room,
            comment: &self.comment,
            program: &command.program,
            args: &args,
            cwd: &self.settings.gpu_server_path,
            log: &log,
            env: &vars,
            // A warm job may wait a lifetime for its room, then serve one.
            lifetime: self.settings.max_lifetime.map(|l| if launch.warm { l * 2 } else { l }),
            stop_bound: self.settings.stop_grace + self.settings.kill_grace,
        };
        Ok(JobRequest {
            name: format!("{}{}", job_spec::JOB_NAME_PREFIX, launch.room),
            comment: self.comment.clone(),
            args: job_spec::sbatch_args(&spec, &self.cluster.settings),
            env: job_spec::sbatch_env(std::env::vars(), &vars),
            script: job_spec::job_script(&command.program, &args, &vars),
        })
    }
}

impl SlurmLauncher {
    /// The driver of `job` for `room` (its supervision link admitted with `token`), and its handle.
    fn drive(&self, room: &str, token: &str, job: JobStart, events: EventSink) -> Started {
        let links = self.cluster.hub.register(room, events.generation(), token);
        let (orders, orders_rx) = mpsc::channel(ORDER_QUEUE);
        let (handover, handover_rx) = oneshot::channel();
        let span = tracing::info_span!("orb", room = %room, generation = events.generation());
        let driver = SlurmDriver {
            cluster: Arc::clone(&self.cluster),
            job,
            links,
            orders: orders_rx,
            handover: handover_rx,
            events,
        };
        Started {
            orb: StartedOrb {
                pid: None,
                orders,
                supervision: Supervision::Ipc,
                handover: Some(handover),
            },
            driver: Box::pin(driver.run().instrument(span)),
        }
    }
}

impl Launcher for SlurmLauncher {
    fn start(&self, launch: &OrbLaunch, env: &LaunchEnv, events: EventSink) -> Result<Started, String> {
        let request = self.request(launch, env)?;
        // The log directory is on the submit host; on a cluster it must be shared
        // (or exist on every node): Slurm opens the file on the node.
        let _ = std::fs::create_dir_all(&self.settings.log_dir);
        Ok(self.drive(&launch.room, &env.auth_token, JobStart::Submit(request), events))
    }

    fn adopt(&self, room: &str, token: Option<&str>, orb: HandedOver, events: EventSink) -> Result<Started, String> {
        let job = orb.job.ok_or("a handed-over orb without a Slurm job")?;
        let token = token.ok_or("a handed-over orb job without its token")?;
        Ok(self.drive(room, token, JobStart::Adopted(job), events))
    }

    fn link(&self, room: &str, token: &str) -> Option<mpsc::Sender<WebSocket>> {
        self.cluster.hub.find(room, token)
    }
}
