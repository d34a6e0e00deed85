//! The OrbManager actor: the one owner of every room's orb record, the slot
//! count and the spawn queue.
//!
//! Its loop selects over operator commands, room events from the registry,
//! reports from orb tasks, resource samples and its own timers (room-empty
//! grace, idle, restart backoff, park expiry). Nothing else mutates orb state.
//! A slot is taken before a spawn starts and freed only when the process has
//! been reaped, so `MAX_CONCURRENT_ORBS` is never exceeded.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use shared::ipc::{ManagerToOrb, ParticipantJoined, ParticipantLeft};
use shared::room::{AiStatus, RoomMessage};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::time::{DelayQueue, delay_queue};
use tracing::{info, warn};

use super::exit_rule::{AfterExit, after_exit, cause_label, ended_message};
use super::launcher::{LaunchEnv, Launcher};
use super::orb_command::OrbLaunch;
use super::output_log::spawn_output_capture;
use super::process_spawn::SpawnedProcess;
use super::process_table::ProcessTable;
use super::record::{ExitRecord, OrbRecord, OrbState};
use super::restart_policy::{FIRST_BACKOFF, RestartDecision, RestartPolicy};
use super::sampler::Sample;
use super::spawner::Spawner;
use super::supervisor::{Control, OrbTask, Report, ReportKind, Timing};
use super::{Command, OrbCounts, SpawnOutcome, SpawnRequest};
use crate::rooms::events::{RoomEvent, RoomEventReceiver, RoomNotifier};
use crate::settings::{OrbSettings, SpawnOn};
use tokens::{constant_time_eq, random_token};

mod commands;
mod reports;
mod room_events;
mod spawning;
mod tokens;

#[cfg(test)]
mod tests;

/// A live process of a room's orb.
struct Running {
    pid: u32,
    generation: u64,
    started: Instant,
    started_ms: u64,
    control: mpsc::Sender<Control>,
}

/// One room's orb, from the wish for it to its last exit.
struct OrbEntry {
    session: String,
    state: OrbState,
    process: Option<Running>,
    policy: RestartPolicy,
    last_exit: Option<ExitRecord>,
    last_heartbeat: Option<Instant>,
    ipc_delay_ms: Option<f64>,
    sample: Option<(f64, u64)>,
    /// A stop was asked for: the entry goes when the process exits.
    stop_reason: Option<String>,
    /// Callers waiting for the current process to exit.
    waiters: Vec<oneshot::Sender<Option<ExitRecord>>>,
    /// Generation of a process the spawner thread is starting (slot taken, no pid yet).
    launching: Option<u64>,
    /// Position last told to the room while queued.
    told_position: Option<usize>,
    auth_token: String,
    /// Spawn → `orb_ready` of the current (or last) process, ms.
    spawn_to_ready_ms: Option<f64>,
}

/// The humans of one room, as the registry reported them.
#[derive(Default)]
struct People {
    humans: HashMap<String, String>,
}

/// A room has at most one timer of each kind: setting one replaces the last,
/// a join cancels the room-empty ones, removing the orb cancels them all. So
/// no stale timer can fire and the queue stays bounded under join/leave churn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum TimerKind {
    EmptyGrace,
    Idle,
    RestartDue,
    ParkExpired,
}

impl TimerKind {
    const ALL: [TimerKind; 4] = [Self::EmptyGrace, Self::Idle, Self::RestartDue, Self::ParkExpired];
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Timer {
    room: String,
    kind: TimerKind,
}

/// The actor's state and channels.
pub struct Manager {
    settings: OrbSettings,
    launcher: Arc<dyn Launcher>,
    notifier: Arc<dyn RoomNotifier>,
    table: ProcessTable,
    orbs: HashMap<String, OrbEntry>,
    people: HashMap<String, People>,
    queue: VecDeque<String>,
    slots_used: usize,
    next_generation: u64,
    draining: bool,
    timers: DelayQueue<Timer>,
    timer_keys: HashMap<Timer, delay_queue::Key>,
    spawner: Spawner,
    reports_tx: mpsc::Sender<Report>,
    counts: watch::Sender<OrbCounts>,
    /// One-time tokens for hand-started orbs, per room, with their expiry.
    operator_tokens: HashMap<String, Vec<(String, Instant)>>,
}

/// The channels the manager listens on.
pub struct Inputs {
    /// Operator commands.
    pub commands: mpsc::Receiver<Command>,
    /// Room events from the registry.
    pub events: RoomEventReceiver,
    /// Resource samples.
    pub samples: mpsc::Receiver<Vec<Sample>>,
}

impl Manager {
    /// A manager with no orbs.
    pub fn new(
        settings: OrbSettings,
        launcher: Arc<dyn Launcher>,
        notifier: Arc<dyn RoomNotifier>,
        table: ProcessTable,
        counts: watch::Sender<OrbCounts>,
        spawner: Spawner,
    ) -> (Self, mpsc::Receiver<Report>) {
        let (reports_tx, reports_rx) = mpsc::channel(1024);
        let manager = Self {
            settings,
            launcher,
            notifier,
            table,
            orbs: HashMap::new(),
            people: HashMap::new(),
            queue: VecDeque::new(),
            slots_used: 0,
            next_generation: 1,
            draining: false,
            timers: DelayQueue::new(),
            timer_keys: HashMap::new(),
            spawner,
            reports_tx,
            counts,
            operator_tokens: HashMap::new(),
        };
        (manager, reports_rx)
    }

    /// Runs until every handle is gone and every orb has exited.
    pub async fn run(mut self, mut inputs: Inputs, mut reports: mpsc::Receiver<Report>) {
        let mut commands_open = true;
        let mut events_open = true;
        loop {
            tokio::select! {
                command = inputs.commands.recv(), if commands_open => match command {
                    Some(command) => self.on_command(command),
                    None => {
                        commands_open = false;
                        self.begin_shutdown(None);
                    }
                },
                event = inputs.events.recv(), if events_open => match event {
                    Some(event) => self.on_room_event(event),
                    None => events_open = false,
                },
                Some(report) = reports.recv() => self.on_report(report),
                Some(samples) = inputs.samples.recv() => self.on_samples(samples),
                Some(expired) = self.timers.next(), if !self.timers.is_empty() => self.on_expired(expired.into_inner()),
            }
            if !commands_open && self.orbs.values().all(|e| e.process.is_none() && e.launching.is_none()) {
                break;
            }
        }
    }

    // ---- helpers --------------------------------------------------------

    fn on_expired(&mut self, timer: Timer) {
        self.timer_keys.remove(&timer);
        self.on_timer(timer);
    }

    /// Arms the room's timer of `kind` to fire after `delay`, replacing any earlier one.
    fn set_timer(&mut self, room: &str, kind: TimerKind, delay: Duration) {
        self.set_timer_at(room, kind, Instant::now() + delay);
    }

    fn set_timer_at(&mut self, room: &str, kind: TimerKind, at: Instant) {
        let timer = Timer {
            room: room.to_owned(),
            kind,
        };
        match self.timer_keys.get(&timer) {
            Some(key) => self.timers.reset_at(key, at),
            None => {
                let key = self.timers.insert_at(timer.clone(), at);
                self.timer_keys.insert(timer, key);
            }
        }
    }

    fn cancel_timer(&mut self, room: &str, kind: TimerKind) {
        let timer = Timer {
            room: room.to_owned(),
            kind,
        };
        if let Some(key) = self.timer_keys.remove(&timer) {
            self.timers.remove(&key);
        }
    }

    fn remove_entry(&mut self, room: &str) {
        for kind in TimerKind::ALL {
            self.cancel_timer(room, kind);
        }
        self.queue.retain(|r| r != room);
        if let Some(entry) = self.orbs.remove(room) {
            for waiter in entry.waiters {
                let _ = waiter.send(entry.last_exit.clone());
            }
        }
        self.tell_queue_positions();
        self.publish_counts();
    }

    /// Whether the humans now in `room` call for an orb under `ORB_SPAWN_ON`.
    fn wants_orb(&self, room: &str) -> bool {
        let Some(people) = self.people.get(room) else {
            return false;
        };
        match self.settings.spawn_on {
            SpawnOn::Coach => people.humans.values().any(|role| role == "coach"),
            SpawnOn::Any => !people.humans.is_empty(),
            SpawnOn::Manual => false,
        }
    }

    fn humans(&self, room: &str) -> usize {
        self.people.get(room).map_or(0, |p| p.humans.len())
    }

    fn publish_counts(&self) {
        let counts = OrbCounts {
            active: self.slots_used,
            max: self.settings.max_concurrent,
            queued: self.queue.len(),
        };
        self.counts.send_if_modified(|current| {
            let changed = *current != counts;
            *current = counts;
            changed
        });
    }

    fn record(&self, room: &str) -> Option<OrbRecord> {
        let entry = self.orbs.get(room)?;
        let running = entry.process.as_ref();
        Some(OrbRecord {
            room: room.to_owned(),
            session: entry.session.clone(),
            pid: running.map(|r| r.pid),
            state: entry.state,
            started_at_ms: running.map(|r| r.started_ms),
            uptime_ms: running.map_or(0, |r| r.started.elapsed().as_millis() as u64),
            restarts: entry.policy.restarts,
            last_exit: entry.last_exit.clone(),
            last_heartbeat_ms: entry.last_heartbeat.map(|t| t.elapsed().as_millis() as u64),
            ipc_rtt_ms: entry.ipc_delay_ms,
            spawn_to_ready_ms: entry.spawn_to_ready_ms,
            cpu_percent: entry.sample.map(|s| s.0),
            rss_bytes: entry.sample.map(|s| s.1),
            participants: self.humans(room),
            queue_position: self.queue.iter().position(|r| r == room).map(|i| i + 1),
        })
    }
}

fn ai_status(status: &str, extra: serde_json::Value) -> RoomMessage {
    let extra = match extra {
        serde_json::Value::Object(map) => map,
        _ => Default::default(),
    };
    RoomMessage::AiStatus(AiStatus {
        status: status.to_owned(),
        session_id: None,
        from_id: None,
        extra,
    })
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
