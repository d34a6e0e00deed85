//! [`LocalLauncher`]: orbs as child processes of this server, implementing the
//! [`Launcher`] seam (`process_control`) with fork/exec, an IPC socket pair,
//! a per-orb log file and a [`LocalDriver`].

use std::path::PathBuf;

use std::os::fd::AsFd;

use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use super::child::OrbChild;

use super::local_driver::LocalDriver;
use super::orb_command::{self, OrbLaunch};
use super::orb_env;
use super::output_log::{LogReopen, spawn_output_capture};
use super::process_control::{EventSink, HandedOver, LaunchEnv, Launcher, Order, Started, StartedOrb, Supervision};
use super::process_spawn::{ProcessSpec, SpawnedProcess, spawn_process};
use crate::settings::Isolation;
use crate::settings::OrbSettings;

/// Orders waiting for one orb's driver.
const ORDER_QUEUE: usize = 64;

/// Starts orbs as child processes of this server.
#[derive(Debug, Clone)]
pub struct LocalLauncher {
    settings: OrbSettings,
    cpu_host: String,
    isolation: Isolation,
    reopen: LogReopen,
    websocket_url: Option<String>,
}

impl LocalLauncher {
    /// A launcher using `settings`; orbs connect back to `cpu_host`.
    pub fn new(settings: OrbSettings, cpu_host: String) -> Self {
        Self {
            settings,
            cpu_host,
            isolation: Isolation::default(),
            reopen: LogReopen::default(),
            websocket_url: None,
        }
    }

    /// The same launcher, telling orbs to connect to `url` (`ORB_CPU_WEBSOCKET_URL`,
    /// passed as their `CPU_WEBSOCKET_URL`) rather than to `cpu_host`.
    pub fn with_websocket_url(mut self, url: Option<String>) -> Self {
        self.websocket_url = url;
        self
    }

    /// The same launcher, starting orbs as `isolation` says (user, group, rlimits).
    pub fn with_isolation(mut self, isolation: Isolation) -> Self {
        self.isolation = isolation;
        self
    }

    /// Where this orb's output is logged.
    pub fn log_path(&self, room: &str) -> PathBuf {
        self.settings.log_dir.join(format!("orb-{room}.log"))
    }

    /// Forks and execs the orb, with its arguments and environment.
    fn spawn(&self, launch: &OrbLaunch, env: &LaunchEnv) -> Result<SpawnedProcess, String> {
        let command = orb_command::resolve(&self.settings).map_err(|e| e.to_string())?;
        let mut args = command.leading_args.clone();
        args.extend(orb_command::orb_args(launch, &self.cpu_host, &self.settings));
        let mut vars = orb_env::launch_vars(&self.settings, launch, env, &self.cpu_host);
        if let Some(url) = &self.websocket_url {
            vars.retain(|(name, _)| name != "CPU_WEBSOCKET_URL");
            vars.push(("CPU_WEBSOCKET_URL".to_owned(), url.clone()));
        }
        if let Some(gpu) = &launch.gpu {
            // Its slot's device only, whatever the server's environment passed on.
            vars.retain(|(name, _)| name != "CUDA_VISIBLE_DEVICES" && name != "NVIDIA_VISIBLE_DEVICES");
            vars.push(("CUDA_VISIBLE_DEVICES".to_owned(), gpu.clone()));
            vars.push(("NVIDIA_VISIBLE_DEVICES".to_owned(), gpu.clone()));
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
}

impl LocalLauncher {
    /// The driver of process `pid` of `room`, and its handle.
    fn drive(
        room: &str,
        pid: u32,
        make: impl FnOnce(mpsc::Receiver<Order>, HandoverReceiver) -> LocalDriver,
    ) -> Started {
        let (orders, orders_rx) = mpsc::channel(ORDER_QUEUE);
        let (handover, handover_rx) = oneshot::channel();
        let span = tracing::info_span!("orb", room = %room, pid);
        let driver = make(orders_rx, handover_rx);
        Started {
            orb: StartedOrb {
                pid: Some(pid),
                orders,
                supervision: Supervision::Ipc,
                handover: Some(handover),
            },
            driver: Box::pin(driver.run().instrument(span)),
        }
    }
}

type HandoverReceiver = oneshot::Receiver<crate::orbs::process_control::HandoverRequest>;

impl Launcher for LocalLauncher {
    fn start(&self, launch: &OrbLaunch, env: &LaunchEnv, events: EventSink) -> Result<Started, String> {
        let mut process = self.spawn(launch, env)?;
        let mut output = None;
        if let (Some(stdout), Some(stderr)) = (process.child.stdout.take(), process.child.stderr.take()) {
            // Copies kept for an upgrade, which hands the pipes over with the process.
            output = stdout
                .as_fd()
                .try_clone_to_owned()
                .and_then(|out| Ok((out, stderr.as_fd().try_clone_to_owned()?)))
                .ok();
            spawn_output_capture(stdout, stderr, self.log_path(&launch.room), &self.reopen);
        }
        let pid = process.pid;
        Ok(Self::drive(&launch.room, pid, |orders, handover| LocalDriver {
            child: OrbChild::Spawned(process.child),
            pid,
            ipc: process.ipc,
            buffered: (Vec::new(), Vec::new()),
            output,
            orders,
            handover,
            events,
        }))
    }

    fn adopt(&self, room: &str, _token: Option<&str>, orb: HandedOver, events: EventSink) -> Result<Started, String> {
        let HandedOver {
            pid,
            ipc,
            unread,
            unsent,
            output,
            ..
        } = orb;
        let pid = pid.ok_or("a handed-over local orb without a pid")?;
        let ipc = match ipc {
            Some(fd) => std::os::unix::net::UnixStream::from(fd),
            // Its channel had failed: a closed one stands in (the driver hears EOF).
            None => std::os::unix::net::UnixStream::pair().map_err(|e| e.to_string())?.0,
        };
        ipc.set_nonblocking(true).map_err(|e| e.to_string())?;
        let ipc = tokio::net::UnixStream::from_std(ipc).map_err(|e| e.to_string())?;
        let mut kept = None;
        if let Some((stdout, stderr)) = output {
            let copies = (stdout.try_clone(), stderr.try_clone());
            let pipe = |fd| tokio::net::unix::pipe::Receiver::from_owned_fd(fd);
            match (pipe(stdout), pipe(stderr)) {
                (Ok(out), Ok(err)) => {
                    spawn_output_capture(out, err, self.log_path(room), &self.reopen);
                    if let (Ok(out), Ok(err)) = copies {
                        kept = Some((out, err));
                    }
                }
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(%room, pid, error = %e, "cannot read a handed-over orb's output; it is discarded")
                }
            }
        }
        Ok(Self::drive(room, pid, |orders, handover| LocalDriver {
            child: OrbChild::adopted(pid),
            pid,
            ipc,
            buffered: (unread, unsent),
            output: kept,
            orders,
            handover,
            events,
        }))
    }

    fn reopen_logs(&self) {
        self.reopen.request();
    }
}
