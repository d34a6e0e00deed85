//! The process-control seam: how the OrbManager starts an orb, gives it
//! orders and hears what happens to it, without assuming the orb is a child
//! of this server.
//!
//! A [`Launcher`] starts one orb and hands back a [`Started`]: a handle
//! ([`StartedOrb`]) taking [`Order`]s, and a driver future that turns whatever
//! the launcher watches (a local child and its IPC socket; a cluster job) into
//! [`ProcessEvent`]s on an [`EventSink`]. The driver's last event is always
//! [`ProcessEvent::Exited`]. Every supervision rule (ready and unresponsive
//! timeouts, lifetime, the stop escalation, restarts) lives in the lifecycle
//! and applies the same whatever launched the orb. An orb supervised over its
//! room WebSocket alone ([`Supervision::WebSocket`]) is ready when it joins
//! its room and alive while it speaks there.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use shared::ipc::{ManagerToOrb, OrbMetrics};
use std::os::fd::OwnedFd;

use tokio::sync::{mpsc, oneshot};

use super::orb_command::OrbLaunch;

/// An order for one orb.
#[derive(Debug, Clone, PartialEq)]
pub enum Order {
    /// Ask the orb to stop by itself within `grace` (`shutdown_graceful`).
    /// A driver that cannot deliver it reports [`ProcessEvent::CannotAsk`].
    AskToStop {
        /// The reason told to the orb.
        reason: &'static str,
        /// Its grace.
        grace: Duration,
    },
    /// SIGTERM (and SIGCONT) to the orb's whole process group.
    Terminate,
    /// SIGKILL to the orb's whole process group.
    Kill,
    /// Pass a message to the orb (best effort).
    Tell(ManagerToOrb),
}

/// Something that happened to one orb.
#[derive(Debug, Clone, PartialEq)]
pub enum ProcessEvent {
    /// It said `orb_ready`.
    Ready,
    /// A warm orb said `orb_warm`: it can be given a room.
    Warm,
    /// A warm orb took the room it was given (`orb_assigned`).
    Assigned {
        /// The room it says it took.
        room: String,
    },
    /// An IPC heartbeat, with its delay (the orb's timestamp → arrival).
    Heartbeat {
        /// Metrics the orb sent.
        metrics: OrbMetrics,
        /// Its delay in ms, when the orb's clock allows.
        delay_ms: Option<f64>,
    },
    /// It reported an error.
    Error {
        /// Its text.
        error: String,
        /// It asks to be restarted.
        critical: bool,
    },
    /// A session summary to pass on.
    Summary(serde_json::Value),
    /// It announced its end, with this reason (`orb_shutdown`).
    Announced(String),
    /// An [`Order::AskToStop`] could not be delivered.
    CannotAsk,
    /// Resources of its whole process tree (from a launcher that measures them itself).
    Resources {
        /// CPU, percent of one core.
        cpu_percent: f64,
        /// Resident memory, bytes.
        rss_bytes: u64,
    },
    /// Where a cluster job is (from a launcher placing orbs through a scheduler).
    Placement(Placement),
    /// It is gone (reaped, with everything in its process group); the last event.
    Exited {
        /// Exit status, when it exited.
        code: Option<i32>,
        /// Signal number, when a signal ended it.
        signal: Option<i32>,
    },
}

/// Where a cluster job is, as its scheduler says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Placement {
    /// Submitted, waiting in the scheduler's queue (or for the scheduler to answer).
    Pending {
        /// The job id, once the scheduler gave one.
        job: Option<String>,
        /// Why it waits (the scheduler's reason).
        reason: String,
    },
    /// Running on `node`.
    Running {
        /// The job id.
        job: String,
        /// The node.
        node: String,
        /// The GPU indices the scheduler gave it on the node, once known.
        #[serde(skip_serializing_if = "Option::is_none")]
        gpu: Option<String>,
    },
}

/// How the manager hears from an orb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Supervision {
    /// IPC: `orb_ready`, heartbeats, errors and `orb_shutdown` arrive as [`ProcessEvent`]s.
    Ipc,
    /// The orb's room WebSocket only: joining its room makes it ready, any frame it sends is a heartbeat.
    WebSocket,
}

/// The handle of a started orb.
#[derive(Debug)]
pub struct StartedOrb {
    /// Its pid (= process group) when it is a local process.
    pub pid: Option<u32>,
    /// Where orders go.
    pub orders: mpsc::Sender<Order>,
    /// How it is heard from.
    pub supervision: Supervision,
    /// Asks its driver to let the process go to the next program image (an
    /// upgrade); `None`: this orb cannot be handed over.
    pub handover: Option<HandoverPort>,
}

/// An orb let go by its driver for the next program image: the process (or
/// cluster job) lives on, and everything its new driver needs comes with it.
#[derive(Debug, Default)]
pub struct HandedOver {
    /// Its pid (= its process group), when it is a local process.
    pub pid: Option<u32>,
    /// Its Slurm job, when it is one (its supervision link reconnects to the new image).
    pub job: Option<String>,
    /// The manager's end of its IPC channel (`None`: the channel had failed).
    pub ipc: Option<OwnedFd>,
    /// Bytes read from the channel and not yet parsed.
    pub unread: Vec<u8>,
    /// Bytes queued for the channel and not yet written.
    pub unsent: Vec<u8>,
    /// Copies of the read ends of its stdout and stderr pipes.
    pub output: Option<(OwnedFd, OwnedFd)>,
}

/// Where a driver sends its process when it lets it go.
pub type HandoverRequest = oneshot::Sender<HandedOver>;
/// The manager's half: one request per process.
pub type HandoverPort = oneshot::Sender<HandoverRequest>;

/// A future that drives one orb until it is gone.
pub type Driver = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// What a launcher hands back.
pub struct Started {
    /// The handle.
    pub orb: StartedOrb,
    /// Spawned by the manager once the handle is registered, so that every
    /// event of this orb arrives after its start.
    pub driver: Driver,
}

/// Per-orb values the launcher passes to the orb (`Debug` hides the token).
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

/// Starts orbs, wherever they run.
pub trait Launcher: Send + Sync + 'static {
    /// Starts one orb. Called on the spawner thread (blocking work allowed,
    /// inside the runtime's context); events go to `events`.
    fn start(&self, launch: &OrbLaunch, env: &LaunchEnv, events: EventSink) -> Result<Started, String>;

    /// Reopens the orbs' log files (SIGHUP, after logrotate moved them).
    fn reopen_logs(&self) {}

    /// Where the supervision link (`/orb-link/{room}`) of the orb of `room` holding
    /// `token` goes; `None` (the default): this launcher's orbs have no such link.
    fn link(&self, _room: &str, _token: &str) -> Option<mpsc::Sender<axum::extract::ws::WebSocket>> {
        None
    }

    /// Takes over `orb`, an orb of `room` holding `token` that a previous program
    /// image handed over (an upgrade), as its driver; the default: this launcher cannot.
    fn adopt(&self, room: &str, token: Option<&str>, orb: HandedOver, events: EventSink) -> Result<Started, String> {
        let _ = (room, token, events);
        Err(format!("this launcher cannot take over orb {:?}", orb.pid.or(None)))
    }
}

/// What reaches the manager from launches and drivers.
#[derive(Debug)]
pub enum Report {
    /// The answer to a launch.
    Spawned {
        /// The room.
        room: String,
        /// Which process of the room.
        generation: u64,
        /// The started orb, or why not.
        result: Result<StartedOrb, String>,
    },
    /// An event of a started orb.
    Process {
        /// The room.
        room: String,
        /// Which process of the room.
        generation: u64,
        /// What happened.
        event: ProcessEvent,
    },
}

/// Where one orb's driver sends its events.
#[derive(Debug, Clone)]
pub struct EventSink {
    room: String,
    generation: u64,
    reports: mpsc::Sender<Report>,
}

impl EventSink {
    /// A sink tagging events with `room` and `generation`.
    pub fn new(room: &str, generation: u64, reports: mpsc::Sender<Report>) -> Self {
        Self {
            room: room.to_owned(),
            generation,
            reports,
        }
    }

    /// The process generation it reports for.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The room it reports for.
    pub fn room(&self) -> &str {
        &self.room
    }

    /// Sends one event (waits while the manager's queue is full; the manager never waits on a driver).
    pub async fn send(&self, event: ProcessEvent) {
        let report = Report::Process {
            room: self.room.clone(),
            generation: self.generation,
            event,
        };
        let _ = self.reports.send(report).await;
    }
}
