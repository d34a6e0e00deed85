//! The OrbManager: one supervised gpu-orb process per room.
//!
//! # Layout
//! - [`lifecycle`]: every supervision rule as a pure state machine (phases,
//!   causes, the restart rule, the stop escalation, the spawn trigger).
//! - [`manager`]: the actor, a thin IO shell carrying out the lifecycle's actions.
//! - [`process_control`]: the seam between the manager and an orb wherever it
//!   runs: start it, give it orders, hear its events.
//! - [`launcher`]: [`launcher::LocalLauncher`], orbs as children of this server.
//! - [`local_driver`]: one task per local orb process (child, IPC channel).
//! - [`child`]: the orb process a driver waits for (spawned here, or handed over by an upgrade).
//! - [`process_group`]: where an orb's process group gets a signal.
//! - [`record`]: the public record operators see.
//! - [`timeline`]: each room's orb timeline and the one-line "why" of its last end.
//! - [`summaries`]: each room's last session summary, kept after its orb is gone.
//! - [`handover`]: the orbs' part of an upgrade's handover (alive, same processes).
//! - [`process_spawn`]: fork/exec hygiene (process group, parent-death signal, fds).
//! - [`orb_command`]: which program, in which directory, with which arguments.
//! - [`orb_env`]: the environment allowlist.
//! - [`output_log`]: orb stdout/stderr into `ORB_LOG_DIR/orb-<room>.log`.
//! - [`process_table`]: live orb pids for the sampler, the reaper and emergency kills.
//! - [`spawner`]: the one long-lived thread that forks orbs, off the runtime.
//! - [`sampler`]: CPU and RSS of each orb's process tree.
//! - [`reaper`]: child subreaper; kills and reaps orphaned orb descendants.
//! - [`stray_sweep`]: at start-up, kills what an earlier (SIGKILLed) server's orbs left.

pub mod child;
pub mod handover;
pub mod launcher;
pub mod lifecycle;
pub mod local_driver;
pub(crate) mod manager;
pub(crate) mod nvml;
pub mod orb_command;
pub mod orb_env;
pub mod output_log;
pub mod process_control;
pub mod process_group;
pub mod process_spawn;
pub mod process_table;
pub mod reaper;
pub mod record;
pub mod sampler;
pub mod slurm;
pub mod spawner;
pub mod stray_sweep;
pub mod summaries;
pub mod timeline;
pub mod token_check;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::rooms::events::{RoomEventReceiver, RoomNotifier};
use crate::rooms::seat::SeatSender;
use crate::settings::{LauncherKind, OrbSettings, PlacementSettings};
use launcher::LocalLauncher;
pub use lifecycle::{ExitCause, StopReason};
use manager::{Inputs, Manager};
use process_control::Launcher;
use process_table::{ProcessTable, TableWriter};
pub use record::{ExitRecord, OrbRecord, OrbState};
use slurm::SlurmLauncher;

/// Orb counts for `/health` and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrbCounts {
    /// Orb processes alive (slots taken).
    pub active: usize,
    /// `MAX_CONCURRENT_ORBS`, or the GPU slots when fewer.
    pub max: usize,
    /// Rooms waiting for a slot.
    pub queued: usize,
    /// GPU slots in all (`ORB_GPUS` × `ORB_GPU_SLOTS_PER_DEVICE`), if any.
    pub gpu_slots: Option<usize>,
    /// GPU slots held.
    pub gpu_slots_used: usize,
    /// The warm pool.
    pub warm: WarmCounts,
}

/// The warm pool's figures for `/health` and metrics (`ORB_WARM_POOL`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WarmCounts {
    /// Orbs it keeps (0: off).
    pub size: usize,
    /// Members ready to be given a room.
    pub ready: usize,
    /// Rooms that got a warm orb, since start.
    pub assignments: u64,
    /// Warm orbs that failed, since start.
    pub failures: u64,
    /// Refilling is paused after too many failures.
    pub parked: bool,
    /// Off for good (the orb program cannot be warm).
    pub disabled: bool,
}

/// A room's orb timeline, as `GET /api/orbs/{room}/events` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RoomTimeline {
    /// The room.
    pub room: String,
    /// One line: why the last orb ended or is not running.
    pub why: String,
    /// The orb's state now (`None`: no orb).
    pub state: Option<OrbState>,
    /// Oldest first.
    pub events: Vec<timeline::Entry>,
}

/// An operator's request to start a room's orb.
#[derive(Debug, Clone, Default)]
pub struct SpawnRequest {
    /// The room.
    pub room: String,
    /// Session id to use (generated when absent).
    pub session: Option<String>,
}

/// What a spawn request did.
#[derive(Debug, Clone)]
pub enum SpawnOutcome {
    /// A new orb is starting.
    Created(OrbRecord),
    /// The room already had one.
    Existing(OrbRecord),
    /// Waiting for a slot.
    Queued(OrbRecord),
}

/// Requests to the manager actor.
pub(crate) enum Command {
    List(oneshot::Sender<Vec<OrbRecord>>),
    Get(String, oneshot::Sender<Option<OrbRecord>>),
    Spawn(SpawnRequest, oneshot::Sender<Result<SpawnOutcome, String>>),
    Stop {
        room: String,
        reason: StopReason,
        origin: Option<&'static str>,
        reply: oneshot::Sender<Option<ExitRecord>>,
    },
    StopAll {
        reason: StopReason,
        origin: Option<&'static str>,
        reply: oneshot::Sender<Vec<(String, ExitRecord)>>,
    },
    Reset(String, oneshot::Sender<Result<OrbRecord, String>>),
    WarmPool(oneshot::Sender<lifecycle::WarmPoolView>),
    ResetWarmPool(oneshot::Sender<lifecycle::WarmPoolView>),
    Events(String, oneshot::Sender<Option<RoomTimeline>>),
    Summary(String, oneshot::Sender<Option<summaries::StoredSummary>>),
    ExportSummaries(oneshot::Sender<Vec<summaries::StoredSummary>>),
    ImportSummaries(Vec<summaries::StoredSummary>),
    Shutdown(oneshot::Sender<()>),
    HandOver(oneshot::Sender<Result<handover::OrbsHandover, String>>),
    Settle(oneshot::Sender<Result<(), String>>),
    VerifyToken {
        room: String,
        token: String,
        reply: oneshot::Sender<bool>,
    },
    IssueOperatorToken {
        room: String,
        ttl: Duration,
        reply: oneshot::Sender<String>,
    },
    Seat {
        token: String,
        seat: SeatSender,
        reply: oneshot::Sender<Option<String>>,
    },
    Reseat {
        entry: String,
        seat: SeatSender,
        reply: oneshot::Sender<bool>,
    },
}

/// Cloneable handle to the OrbManager.
#[derive(Clone)]
pub struct OrbsHandle {
    commands: mpsc::Sender<Command>,
    counts: watch::Receiver<OrbCounts>,
    table: ProcessTable,
    launcher: Arc<dyn Launcher>,
    stop_bound: Duration,
    background: CancellationToken,
    /// Cancelled when a task that supervision depends on (the manager, the
    /// sampler, the reaper) ended while the server was not stopping.
    failed: CancellationToken,
}

impl std::fmt::Debug for OrbsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrbsHandle")
            .field("counts", &*self.counts.borrow())
            .finish()
    }
}

impl OrbsHandle {
    /// Current counts.
    pub fn counts(&self) -> OrbCounts {
        *self.counts.borrow()
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Every orb record.
    pub async fn list(&self) -> Vec<OrbRecord> {
        self.ask(Command::List).await.unwrap_or_default()
    }

    /// One room's record.
    pub async fn get(&self, room: &str) -> Option<OrbRecord> {
        self.ask(|tx| Command::Get(room.to_owned(), tx)).await.flatten()
    }

    /// Starts a room's orb (or returns the existing one).
    pub async fn spawn(&self, request: SpawnRequest) -> Result<SpawnOutcome, String> {
        self.ask(|tx| Command::Spawn(request, tx))
            .await
            .unwrap_or_else(|| Err("orb manager stopped".to_owned()))
    }

    /// Stops one room's orb by the graceful path; answers after it exited.
    /// `None` when the room had no orb.
    pub async fn stop(&self, room: &str, reason: StopReason) -> Option<ExitRecord> {
        self.stop_from(room, reason, None).await
    }

    /// [`OrbsHandle::stop`] asked for by `origin` (e.g. `DELETE /api/orbs/{room}`), for the timeline.
    pub async fn stop_from(&self, room: &str, reason: StopReason, origin: Option<&'static str>) -> Option<ExitRecord> {
        let room = room.to_owned();
        self.ask(|reply| Command::Stop {
            room,
            reason,
            origin,
            reply,
        })
        .await
        .flatten()
    }

    /// The room's orb timeline and why its last orb ended (`None`: nothing known of the room).
    pub async fn events(&self, room: &str) -> Option<RoomTimeline> {
        self.ask(|tx| Command::Events(room.to_owned(), tx)).await.flatten()
    }

    /// The room's last session summary (`None`: none kept).
    pub async fn summary(&self, room: &str) -> Option<summaries::StoredSummary> {
        self.ask(|tx| Command::Summary(room.to_owned(), tx)).await.flatten()
    }

    /// Every session summary kept (for an upgrade's handover, after the orbs stopped
    /// and sent theirs).
    pub async fn export_summaries(&self) -> Vec<summaries::StoredSummary> {
        self.ask(Command::ExportSummaries).await.unwrap_or_default()
    }

    /// Takes over the session summaries a previous program image kept.
    pub async fn import_summaries(&self, kept: Vec<summaries::StoredSummary>) {
        if !kept.is_empty() {
            let _ = self.commands.send(Command::ImportSummaries(kept)).await;
        }
    }

    /// Stops every orb at once; answers after the last one exited.
    pub async fn stop_all(&self, reason: StopReason, origin: Option<&'static str>) -> Vec<(String, ExitRecord)> {
        self.ask(|reply| Command::StopAll { reason, origin, reply })
            .await
            .unwrap_or_default()
    }

    /// Clears a parked orb's crash-loop state.
    pub async fn reset(&self, room: &str) -> Result<OrbRecord, String> {
        self.ask(|tx| Command::Reset(room.to_owned(), tx))
            .await
            .unwrap_or_else(|| Err("orb manager stopped".into()))
    }

    /// The warm pool (`ORB_WARM_POOL`).
    pub async fn warm_pool(&self) -> Option<lifecycle::WarmPoolView> {
        self.ask(Command::WarmPool).await
    }

    /// Clears the warm pool's failure history; a parked pool refills now.
    pub async fn reset_warm_pool(&self) -> Option<lifecycle::WarmPoolView> {
        self.ask(Command::ResetWarmPool).await
    }

    /// Whether `token` lets a socket join `room` as its AI: the token of the
    /// room's current orb process, or an unexpired one-time operator token
    /// (consumed by this check). Compared in constant time.
    pub async fn verify_orb_token(&self, room: &str, token: &str) -> bool {
        let (room, token) = (room.to_owned(), token.to_owned());
        self.ask(|reply| Command::VerifyToken { room, token, reply })
            .await
            .unwrap_or(false)
    }

    /// Keeps `seat` for the warm orb whose process holds `token` (`/orb-seat`);
    /// `Some(entry)`: its pool entry, `None`: not a warm orb's token.
    pub async fn seat(&self, token: &str, seat: SeatSender) -> Option<String> {
        let token = token.to_owned();
        self.ask(|reply| Command::Seat { token, seat, reply }).await.flatten()
    }

    /// Gives `seat` back to the warm orb of pool entry `entry` (a seat an upgrade
    /// handed over); false when that entry holds no orb any more.
    pub async fn reseat(&self, entry: &str, seat: SeatSender) -> bool {
        let entry = entry.to_owned();
        self.ask(|reply| Command::Reseat { entry, seat, reply })
            .await
            .unwrap_or(false)
    }

    /// A one-time token for an operator starting `gpu-orb --room=ROOM` by hand.
    pub async fn issue_operator_token(&self, room: &str, ttl: Duration) -> Option<String> {
        let room = room.to_owned();
        self.ask(|reply| Command::IssueOperatorToken { room, ttl, reply }).await
    }

    /// Server shutdown: no new orbs, every orb stopped by the kill path, bounded.
    /// Whatever is still alive after the bound is SIGKILLed with its group.
    pub async fn shutdown(&self) {
        let done = self.ask(Command::Shutdown);
        match tokio::time::timeout(self.stop_bound, done).await {
            Ok(Some(())) => {}
            Ok(None) => {
                let killed = self.table.kill_all_groups();
                tracing::warn!(killed, "OrbManager gone; SIGKILLed every orb group");
            }
            Err(_) => {
                let killed = self.table.kill_all_groups();
                tracing::warn!(killed, "orbs still alive after the stop grace; SIGKILLed their groups");
            }
        }
        self.background.cancel();
    }

    /// Before an upgrade drains: waits (bounded) until no stop, launch or warm
    /// assignment is under way, while the server still serves, so that the
    /// handover after the drain need not wait with connections in the backlog.
    pub async fn settle(&self) -> Result<(), String> {
        self.ask(Command::Settle)
            .await
            .unwrap_or_else(|| Err("the orb manager stopped".to_owned()))
    }

    /// An upgrade: every orb goes to the next program image, alive. Waits (bounded)
    /// for stops and launches under way to settle; refuses (with why) when the
    /// orbs cannot be handed over, and nothing changed then. Once handed over,
    /// this server supervises no orb any more (its sampler and reaper stop).
    pub async fn hand_over(&self) -> Result<handover::OrbsHandover, String> {
        let answer = self
            .ask(Command::HandOver)
            .await
            .unwrap_or_else(|| Err("the orb manager stopped".to_owned()));
        if answer.is_ok() {
            self.background.cancel();
        }
        answer
    }

    /// Resolves when supervision broke: a vital task panicked or ended by
    /// itself. The server must then exit (systemd restarts it) rather than keep
    /// answering `/health` without an OrbManager.
    pub async fn failed(&self) {
        self.failed.cancelled().await;
    }

    /// Second shutdown signal: SIGKILL every orb's process group now.
    pub fn kill_all_now(&self) -> usize {
        self.table.kill_all_groups()
    }

    /// Where the supervision link of `room`'s orb holding `token` goes (`/orb-link/{room}`);
    /// `None`: refused (wrong token, no such orb, or a launcher without links).
    pub fn link(&self, room: &str, token: &str) -> Option<mpsc::Sender<axum::extract::ws::WebSocket>> {
        self.launcher.link(room, token)
    }

    /// SIGHUP: the orbs' log files are reopened before their next line.
    pub fn reopen_logs(&self) {
        self.launcher.reopen_logs();
    }
}

/// Starts the OrbManager with a [`LocalLauncher`]; it hears the registry's
/// events and tells rooms through `rooms`; orbs connect back to `cpu_host` and
/// run as `isolation` says (user, group, rlimits). `inherit`: the thread orbs
/// are forked on (the binary's main thread) and the orbs an upgrade handed over.
///
/// The production path: this server also becomes the child subreaper of its
/// orbs' descendants and runs the [`reaper`], and sweeps strays of an earlier
/// server before the first spawn.
pub fn spawn_manager(
    settings: OrbSettings,
    placement: &PlacementSettings,
    rooms: (RoomEventReceiver, Arc<dyn RoomNotifier>),
    where_orbs_connect: (std::net::SocketAddr, String),
    isolation: crate::settings::Isolation,
    metrics: Arc<Metrics>,
    inherit: (Option<spawner::Spawner>, Option<handover::OrbsTakeover>),
) -> OrbsHandle {
    let (listen, cpu_host) = where_orbs_connect;
    let (events, notifier) = rooms;
    let (spawner, takeover) = inherit;
    // Before any orb exists, so that none of its descendants can go to init.
    reaper::become_subreaper();
    let sweep_host = cpu_host.clone();
    // The orbs an upgrade handed over are ours, not strays.
    let spare = takeover
        .as_ref()
        .map(handover::OrbsTakeover::groups)
        .unwrap_or_default();
    let spare_jobs = takeover.as_ref().map(handover::OrbsTakeover::jobs).unwrap_or_default();
    let local_sweep = tokio::task::spawn_blocking(move || stray_sweep::sweep(&sweep_host, isolation.uid, &spare));
    let slurm_stop = CancellationToken::new();
    let (launcher, sweep): (Arc<dyn Launcher>, _) = match &placement.launcher {
        LauncherKind::Local => {
            let launcher = LocalLauncher::new(settings.clone(), cpu_host)
                .with_isolation(isolation)
                .with_websocket_url(placement.cpu_websocket_url.clone());
            (Arc::new(launcher), local_sweep)
        }
        LauncherKind::Slurm(slurm) => {
            let base = placement.orb_websocket_base(listen, &cpu_host);
            let launcher = SlurmLauncher::new(settings.clone(), slurm.clone(), base, slurm_stop.clone());
            let (cluster, comment) = (Arc::clone(launcher.cluster()), launcher.comment().to_owned());
            let sweep = tokio::spawn(async move {
                let strays = local_sweep.await.unwrap_or(0);
                strays + slurm::sweep::cancel_leftovers(&cluster, &comment, &spare_jobs).await
            });
            (Arc::new(launcher), sweep)
        }
    };
    let handle = spawn_manager_inner(
        settings,
        events,
        notifier,
        launcher,
        metrics,
        (Some(sweep), spawner, takeover),
    );
    let background = handle.background.clone();
    tokio::spawn(async move {
        background.cancelled().await;
        slurm_stop.cancel();
    });
    let reaper = reaper::spawn_reaper(
        handle.table.clone(),
        isolation.uid,
        Duration::from_secs(2),
        handle.background.clone(),
    );
    watch_vital("orphan reaper", reaper, &handle.background, &handle.failed);
    handle
}

/// Starts the OrbManager with any [`Launcher`]. No subreaper and no reaper:
/// a process using this (a unit test with a fake launcher) keeps its own
/// children to itself.
pub fn spawn_manager_with(
    settings: OrbSettings,
    events: RoomEventReceiver,
    notifier: Arc<dyn RoomNotifier>,
    launcher: Arc<dyn Launcher>,
    metrics: Arc<Metrics>,
) -> OrbsHandle {
    spawn_manager_inner(settings, events, notifier, launcher, metrics, (None, None, None))
}

fn spawn_manager_inner(
    settings: OrbSettings,
    events: RoomEventReceiver,
    notifier: Arc<dyn RoomNotifier>,
    launcher: Arc<dyn Launcher>,
    metrics: Arc<Metrics>,
    start: (
        Option<tokio::task::JoinHandle<usize>>,
        Option<spawner::Spawner>,
        Option<handover::OrbsTakeover>,
    ),
) -> OrbsHandle {
    let (before_first_spawn, spawner, takeover) = start;
    let (writer, table) = TableWriter::new();
    let background = CancellationToken::new();
    let (counts_tx, counts_rx) = watch::channel(OrbCounts {
        max: settings.capacity(),
        ..OrbCounts::default()
    });
    let (commands_tx, commands_rx) = mpsc::channel(256);
    let (samples_tx, samples_rx) = mpsc::channel(4);
    let sample_period = settings.health_check_interval.max(Duration::from_millis(500));
    let failed = CancellationToken::new();
    let gpu_limit = settings.gpu_memory_limit_bytes.is_some();
    let sampler = sampler::spawn_sampler(table.clone(), sample_period, samples_tx, background.clone(), gpu_limit);
    watch_vital("resource sampler", sampler, &background, &failed);
    let stop_bound = settings.stop_grace + settings.kill_grace + Duration::from_secs(5);
    let spawner = spawner.unwrap_or_else(|| {
        spawner::Spawner::start(tokio::runtime::Handle::current(), settings.max_concurrent)
            .unwrap_or_else(|error| panic!("cannot start the orb spawner thread: {error}"))
    });
    let (mut manager, reports) = Manager::new(
        &settings,
        Arc::clone(&launcher),
        notifier,
        writer,
        counts_tx,
        spawner,
        metrics,
    );
    if let Some(takeover) = takeover {
        // Before the first event: the orbs are the manager's again, each with its record.
        manager.take_over(takeover);
    }
    let inputs = Inputs {
        commands: commands_rx,
        events,
        samples: samples_rx,
    };
    let manager = tokio::spawn(async move {
        if let Some(sweep) = before_first_spawn {
            let _ = sweep.await;
        }
        manager.run(inputs, reports).await;
    });
    watch_vital("orb manager", manager, &background, &failed);
    OrbsHandle {
        commands: commands_tx,
        counts: counts_rx,
        table,
        launcher,
        stop_bound,
        background,
        failed,
    }
}

/// Cancels `failed` when `task` ends (panic or return) before `background` is
/// cancelled: such a task runs for the server's whole life.
fn watch_vital(
    name: &'static str,
    task: tokio::task::JoinHandle<()>,
    background: &CancellationToken,
    failed: &CancellationToken,
) {
    let (background, failed) = (background.clone(), failed.clone());
    tokio::spawn(async move {
        let outcome = task.await;
        if background.is_cancelled() {
            return;
        }
        match outcome {
            Err(error) if error.is_panic() => {
                tracing::error!(task = name, "vital task panicked: supervision is broken")
            }
            _ => tracing::error!(task = name, "vital task ended by itself: supervision is broken"),
        }
        failed.cancel();
    });
}
