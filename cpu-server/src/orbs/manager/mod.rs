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
use tokio_util::time::DelayQueue;
use tracing::{info, warn};

use super::launcher::{LaunchEnv, Launcher};
use super::orb_command::OrbLaunch;
use super::output_log::spawn_output_capture;
use super::process_table::ProcessTable;
use super::record::{ExitRecord, OrbRecord, OrbState};
use super::restart_policy::{RestartDecision, RestartPolicy};
use super::sampler::Sample;
use super::supervisor::{Control, OrbTask, Report, ReportKind, Timing};
use super::{Command, OrbCounts, SpawnOutcome, SpawnRequest};
use crate::rooms::events::{RoomEvent, RoomEventReceiver, RoomNotifier};
use crate::settings::{OrbSettings, SpawnOn};

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
    /// Invalidates restart and park timers set before it changed.
    epoch: u64,
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
    /// Changes whenever a human joins: invalidates empty-room timers.
    epoch: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimerKind {
    EmptyGrace,
    Idle,
    RestartDue,
    ParkExpired,
}

#[derive(Debug, Clone)]
struct Timer {
    room: String,
    kind: TimerKind,
    epoch: u64,
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
                Some(expired) = self.timers.next(), if !self.timers.is_empty() => self.on_timer(expired.into_inner()),
            }
            if !commands_open && self.orbs.values().all(|e| e.process.is_none()) {
                break;
            }
        }
    }

    // ---- commands -------------------------------------------------------

    fn on_command(&mut self, command: Command) {
        match command {
            Command::List(reply) => {
                let mut records: Vec<OrbRecord> = self.orbs.keys().filter_map(|room| self.record(room)).collect();
                records.sort_by(|a, b| a.room.cmp(&b.room));
                let _ = reply.send(records);
            }
            Command::Get(room, reply) => {
                let _ = reply.send(self.record(&room));
            }
            Command::Spawn(request, reply) => {
                let _ = reply.send(self.spawn_request(request));
            }
            Command::Stop { room, reason, reply } => self.stop(&room, &reason, reply),
            Command::StopAll { reason, reply } => self.stop_all(&reason, reply),
            Command::Reset(room, reply) => {
                let _ = reply.send(self.reset(&room));
            }
            Command::Shutdown(reply) => self.begin_shutdown(Some(reply)),
            Command::VerifyToken { room, token, reply } => {
                let _ = reply.send(self.verify_token(&room, &token));
            }
            Command::IssueOperatorToken { room, ttl, reply } => {
                let token = random_token();
                let now = Instant::now();
                let tokens = self.operator_tokens.entry(room).or_default();
                tokens.retain(|(_, expires)| *expires > now);
                tokens.push((token.clone(), now + ttl));
                let _ = reply.send(token);
            }
        }
    }

    fn verify_token(&mut self, room: &str, token: &str) -> bool {
        let current = self
            .orbs
            .get(room)
            .filter(|e| e.process.is_some())
            .map(|e| e.auth_token.as_str());
        if current.is_some_and(|t| constant_time_eq(t.as_bytes(), token.as_bytes())) {
            return true;
        }
        let now = Instant::now();
        let Some(tokens) = self.operator_tokens.get_mut(room) else {
            return false;
        };
        tokens.retain(|(_, expires)| *expires > now);
        let found = tokens
            .iter()
            .position(|(t, _)| constant_time_eq(t.as_bytes(), token.as_bytes()));
        if let Some(index) = found {
            tokens.swap_remove(index);
        }
        if tokens.is_empty() {
            self.operator_tokens.remove(room);
        }
        found.is_some()
    }

    fn spawn_request(&mut self, request: SpawnRequest) -> Result<SpawnOutcome, String> {
        if self.draining {
            return Err("server is shutting down".to_owned());
        }
        if let Some(record) = self.record(&request.room) {
            return Ok(SpawnOutcome::Existing(record));
        }
        self.create_entry(&request.room, request.session);
        self.try_start(&request.room);
        let record = self.record(&request.room).ok_or("orb vanished")?;
        Ok(match record.state {
            OrbState::Queued => SpawnOutcome::Queued(record),
            _ => SpawnOutcome::Created(record),
        })
    }

    fn stop(&mut self, room: &str, reason: &str, reply: oneshot::Sender<Option<ExitRecord>>) {
        let Some(entry) = self.orbs.get_mut(room) else {
            let _ = reply.send(None);
            return;
        };
        match &entry.process {
            Some(running) => {
                crate::metrics::global().kill(reason);
                entry.stop_reason.get_or_insert_with(|| reason.to_owned());
                entry.state = OrbState::Stopping;
                entry.waiters.push(reply);
                let control = running.control.clone();
                let reason = reason.to_owned();
                tokio::spawn(async move {
                    let _ = control.send(Control::Stop { reason }).await;
                });
            }
            None => {
                // Queued, restarting or parked: nothing runs; forget it.
                let exit = ExitRecord {
                    code: None,
                    signal: None,
                    reason: reason.to_owned(),
                    normal: true,
                };
                self.remove_entry(room);
                let _ = reply.send(Some(exit));
            }
        }
    }

    fn stop_all(&mut self, reason: &str, reply: oneshot::Sender<Vec<(String, ExitRecord)>>) {
        let rooms: Vec<String> = self.orbs.keys().cloned().collect();
        let mut waits = Vec::new();
        for room in rooms {
            let (tx, rx) = oneshot::channel();
            self.stop(&room, reason, tx);
            waits.push((room, rx));
        }
        // Every stop runs at once; the answer comes when the last orb is gone.
        tokio::spawn(async move {
            let mut exits = Vec::new();
            for (room, rx) in waits {
                if let Ok(Some(exit)) = rx.await {
                    exits.push((room, exit));
                }
            }
            let _ = reply.send(exits);
        });
    }

    fn reset(&mut self, room: &str) -> Result<OrbRecord, String> {
        let entry = self
            .orbs
            .get_mut(room)
            .ok_or_else(|| format!("no orb for room {room}"))?;
        entry.policy.reset();
        if entry.state == OrbState::Parked {
            // Cancels the park timer; the operator wants the orb back now.
            entry.epoch += 1;
            entry.state = OrbState::Restarting;
            self.try_start(room);
        }
        self.record(room).ok_or_else(|| format!("no orb for room {room}"))
    }

    fn begin_shutdown(&mut self, reply: Option<oneshot::Sender<()>>) {
        self.draining = true;
        for room in std::mem::take(&mut self.queue) {
            self.remove_entry(&room);
        }
        let (tx, rx) = oneshot::channel();
        self.stop_all("system_shutdown", tx);
        if let Some(reply) = reply {
            tokio::spawn(async move {
                let _ = rx.await;
                let _ = reply.send(());
            });
        }
    }

    // ---- room events ----------------------------------------------------

    fn on_room_event(&mut self, event: RoomEvent) {
        match event {
            RoomEvent::HumanJoined {
                room,
                user_id,
                user_role,
                ..
            } => {
                let people = self.people.entry(room.clone()).or_default();
                people.humans.insert(user_id.clone(), user_role.clone());
                people.epoch += 1;
                if let Some(running) = self.orbs.get(&room).and_then(|e| e.process.as_ref()) {
                    let message = ManagerToOrb::ParticipantJoined(ParticipantJoined {
                        user_id,
                        user_role: user_role.clone(),
                        extra: Default::default(),
                    });
                    let _ = running.control.try_send(Control::Send(message));
                }
                let wants = match self.settings.spawn_on {
                    SpawnOn::Coach => user_role == "coach",
                    SpawnOn::Any => true,
                    SpawnOn::Manual => false,
                };
                if wants && !self.draining && !self.orbs.contains_key(&room) {
                    self.create_entry(&room, None);
                    self.try_start(&room);
                }
            }
            RoomEvent::HumanLeft { room, user_id, .. } => {
                let Some(people) = self.people.get_mut(&room) else {
                    return;
                };
                people.humans.remove(&user_id);
                let empty = people.humans.is_empty();
                let epoch = people.epoch;
                if empty {
                    self.people.remove(&room);
                }
                if let Some(running) = self.orbs.get(&room).and_then(|e| e.process.as_ref()) {
                    let message = ManagerToOrb::ParticipantLeft(ParticipantLeft {
                        user_id,
                        extra: Default::default(),
                    });
                    let _ = running.control.try_send(Control::Send(message));
                }
                if empty && self.orbs.contains_key(&room) {
                    self.schedule_empty_timers(&room, epoch);
                }
            }
            RoomEvent::AiActivity { room } => {
                if let Some(entry) = self.orbs.get_mut(&room) {
                    entry.last_heartbeat = Some(Instant::now());
                    if let Some(running) = &entry.process {
                        let _ = running.control.try_send(Control::Activity);
                    }
                }
            }
            RoomEvent::AiShutdown { room, reason } => {
                if let Some(running) = self.orbs.get(&room).and_then(|e| e.process.as_ref()) {
                    let reason = reason.unwrap_or_else(|| "ai_shutdown".to_owned());
                    let _ = running.control.try_send(Control::AnnouncedEnd { reason });
                }
            }
            RoomEvent::AiJoined { room, user_id } => info!(%room, %user_id, "orb joined its room"),
            RoomEvent::AiLeft { room, user_id } => info!(%room, %user_id, "orb left its room"),
        }
    }

    fn schedule_empty_timers(&mut self, room: &str, epoch: u64) {
        let grace = Timer {
            room: room.to_owned(),
            kind: TimerKind::EmptyGrace,
            epoch,
        };
        self.timers.insert(grace, self.settings.room_empty_grace);
        let idle = Timer {
            room: room.to_owned(),
            kind: TimerKind::Idle,
            epoch,
        };
        self.timers.insert(idle, self.settings.idle_timeout);
    }

    // ---- reports from orb tasks ----------------------------------------

    fn on_report(&mut self, report: Report) {
        let Report {
            room,
            generation,
            pid,
            kind,
        } = report;
        if let ReportKind::Exited { exit, ran_for } = kind {
            self.on_exit(&room, generation, pid, exit, ran_for);
            return;
        }
        let Some(entry) = self.orbs.get_mut(&room) else { return };
        if entry.process.as_ref().map(|r| r.generation) != Some(generation) {
            return; // a report of an older process
        }
        match kind {
            ReportKind::Ready => {
                entry.last_heartbeat = Some(Instant::now());
                if entry.state == OrbState::Spawning {
                    entry.state = OrbState::Ready;
                }
                if let Some(running) = &entry.process {
                    let ready_after = running.started.elapsed();
                    entry.spawn_to_ready_ms = Some(ready_after.as_secs_f64() * 1000.0);
                    crate::metrics::global()
                        .spawn_to_ready
                        .observe(ready_after.as_secs_f64());
                    info!(%room, pid, ready_ms = ready_after.as_secs_f64() * 1000.0, "orb ready");
                }
            }
            ReportKind::Heartbeat { metrics, delay_ms } => {
                crate::metrics::global().heartbeats.inc();
                if let Some(delay) = delay_ms {
                    crate::metrics::global().ipc_delay.observe(delay.max(0.0) / 1000.0);
                }
                entry.last_heartbeat = Some(Instant::now());
                entry.ipc_delay_ms = delay_ms;
                if entry.state == OrbState::Unresponsive {
                    entry.state = OrbState::Ready;
                }
                if entry.sample.is_none() && metrics.memory > 0.0 {
                    entry.sample = Some((metrics.cpu, (metrics.memory * 1024.0 * 1024.0) as u64));
                }
            }
            ReportKind::Error { error, critical } => {
                warn!(%room, %error, critical, "orb error");
            }
            ReportKind::Summary(summary) => {
                info!(%room, session = %entry.session, summary = %summary, "session summary");
            }
            ReportKind::Unresponsive => {
                crate::metrics::global().kill("unresponsive");
                entry.state = OrbState::Unresponsive;
            }
            ReportKind::Exited { .. } => {}
        }
    }

    fn on_exit(&mut self, room: &str, generation: u64, pid: u32, exit: ExitRecord, ran_for: Duration) {
        // The slot belongs to the process: freed now that it is reaped, whatever else happens.
        self.slots_used = self.slots_used.saturating_sub(1);
        self.table.lock().remove(&pid);
        crate::metrics::global().exit(&exit.reason);
        let humans = self.humans(room);
        let draining = self.draining;
        if let Some(entry) = self.orbs.get_mut(room)
            && entry.process.as_ref().map(|r| r.generation) == Some(generation)
        {
            entry.process = None;
            entry.last_exit = Some(exit.clone());
            for waiter in entry.waiters.drain(..) {
                let _ = waiter.send(Some(exit.clone()));
            }
            if entry.stop_reason.is_some() || exit.normal || draining || humans == 0 {
                self.remove_entry(room);
            } else {
                match entry.policy.on_failure(Instant::now(), ran_for, fastrand::f64()) {
                    RestartDecision::After(delay) => {
                        info!(%room, reason = %exit.reason, delay_ms = delay.as_millis() as u64, "orb failed; restarting");
                        entry.state = OrbState::Restarting;
                        entry.epoch += 1;
                        let timer = Timer {
                            room: room.to_owned(),
                            kind: TimerKind::RestartDue,
                            epoch: entry.epoch,
                        };
                        self.timers.insert(timer, delay);
                    }
                    RestartDecision::Park { until } => {
                        warn!(%room, reason = %exit.reason, "orb crash loop; parked");
                        entry.state = OrbState::Parked;
                        entry.epoch += 1;
                        let timer = Timer {
                            room: room.to_owned(),
                            kind: TimerKind::ParkExpired,
                            epoch: entry.epoch,
                        };
                        self.timers.insert_at(timer, until);
                        let message = ai_status(
                            "error",
                            json!({"message": "The AI assistant keeps failing and is paused; an operator can reset it.",
                                   "code": "orb_parked"}),
                        );
                        self.notifier.notify_room(room, message);
                    }
                }
            }
        }
        self.fill_free_slots();
        self.publish_counts();
    }

    fn on_samples(&mut self, samples: Vec<Sample>) {
        for sample in samples {
            let Some(entry) = self.orbs.get_mut(&sample.room) else {
                continue;
            };
            let Some(running) = &entry.process else { continue };
            if running.pid != sample.pid {
                continue;
            }
            entry.sample = Some((sample.cpu_percent, sample.rss_bytes));
            if let Some(limit) = self.settings.memory_limit_bytes
                && sample.rss_bytes > limit
                && entry.state != OrbState::Stopping
            {
                warn!(room = %sample.room, rss = sample.rss_bytes, limit, "orb over ORB_MEMORY_LIMIT_MB; killing it");
                crate::metrics::global().kill("memory_limit");
                entry.state = OrbState::Stopping;
                let _ = running.control.try_send(Control::Kill {
                    reason: "memory_limit".to_owned(),
                });
            }
        }
    }

    // ---- timers ---------------------------------------------------------

    fn on_timer(&mut self, timer: Timer) {
        let room = timer.room.as_str();
        match timer.kind {
            TimerKind::EmptyGrace | TimerKind::Idle => {
                let still_empty = self.humans(room) == 0;
                let same_epoch = self.people.get(room).is_none_or(|p| p.epoch == timer.epoch);
                if still_empty && same_epoch && self.orbs.contains_key(room) {
                    let reason = if timer.kind == TimerKind::EmptyGrace {
                        "room_empty_timeout"
                    } else {
                        "idle_timeout"
                    };
                    let (tx, _rx) = oneshot::channel();
                    self.stop(room, reason, tx);
                }
            }
            TimerKind::RestartDue | TimerKind::ParkExpired => {
                let Some(entry) = self.orbs.get_mut(room) else { return };
                if entry.epoch != timer.epoch || entry.process.is_some() {
                    return;
                }
                if timer.kind == TimerKind::ParkExpired {
                    entry.policy.reset();
                }
                if self.humans(room) > 0 && !self.draining {
                    self.try_start(room);
                } else {
                    self.remove_entry(room);
                }
            }
        }
    }

    // ---- spawning -------------------------------------------------------

    fn create_entry(&mut self, room: &str, session: Option<String>) {
        let entry = OrbEntry {
            session: session.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            state: OrbState::Queued,
            process: None,
            policy: RestartPolicy::new(self.settings.max_restarts, self.settings.restart_window),
            last_exit: None,
            last_heartbeat: None,
            ipc_delay_ms: None,
            sample: None,
            stop_reason: None,
            waiters: Vec::new(),
            epoch: 0,
            told_position: None,
            auth_token: random_token(),
            spawn_to_ready_ms: None,
        };
        self.orbs.insert(room.to_owned(), entry);
        if self.humans(room) == 0 {
            // Started with nobody in the room (admin API): the idle timeout applies.
            let epoch = self.people.get(room).map_or(0, |p| p.epoch);
            let idle = Timer {
                room: room.to_owned(),
                kind: TimerKind::Idle,
                epoch,
            };
            self.timers.insert(idle, self.settings.idle_timeout);
        }
    }

    /// Starts the room's orb if a slot is free, else queues it.
    fn try_start(&mut self, room: &str) {
        if self.slots_used < self.settings.max_concurrent {
            self.launch(room);
        } else if !self.queue.iter().any(|r| r == room) {
            if let Some(entry) = self.orbs.get_mut(room) {
                entry.state = OrbState::Queued;
            }
            self.queue.push_back(room.to_owned());
            self.tell_queue_positions();
        }
        self.publish_counts();
    }

    fn fill_free_slots(&mut self) {
        while self.slots_used < self.settings.max_concurrent && !self.draining {
            let Some(room) = self.queue.pop_front() else { break };
            if self.orbs.get(&room).is_some_and(|e| e.process.is_none()) {
                self.launch(&room);
            }
        }
        self.tell_queue_positions();
    }

    fn tell_queue_positions(&mut self) {
        for (index, room) in self.queue.iter().enumerate() {
            let position = index + 1;
            let Some(entry) = self.orbs.get_mut(room) else { continue };
            if entry.told_position != Some(position) {
                entry.told_position = Some(position);
                self.notifier
                    .notify_room(room, ai_status("queued", json!({"position": position})));
            }
        }
    }

    fn launch(&mut self, room: &str) {
        let generation = self.next_generation;
        self.next_generation += 1;
        let people = self.people.get(room);
        let find =
            |role: &str| people.and_then(|p| p.humans.iter().find(|(_, r)| *r == role).map(|(id, _)| id.clone()));
        let (coach, client) = (find("coach"), find("client"));
        let Some(entry) = self.orbs.get_mut(room) else { return };
        // Each process gets its own token: a killed orb's token stops working.
        entry.auth_token = random_token();
        let launch = OrbLaunch {
            room: room.to_owned(),
            session: entry.session.clone(),
            coach,
            client,
        };
        let env = LaunchEnv {
            auth_token: entry.auth_token.clone(),
            heartbeat_interval_ms: self.settings.health_check_interval.as_millis() as u64,
        };
        let spawned = {
            // Hold the table across the spawn: the reaper must not take the new orb for an orphan.
            let mut table = self.table.lock();
            let spawned = self.launcher.launch(&launch, &env);
            if let Ok(process) = &spawned {
                table.insert(process.pid, room.to_owned());
            }
            spawned
        };
        let mut process = match spawned {
            Ok(process) => process,
            Err(error) => {
                warn!(%room, %error, "orb failed to start");
                let exit = ExitRecord {
                    code: None,
                    signal: None,
                    reason: format!("spawn_failed: {error}"),
                    normal: false,
                };
                // No process, no slot: count it as a failed start straight away.
                crate::metrics::global().exit("spawn_failed");
                entry.last_exit = Some(exit);
                entry.state = OrbState::Restarting;
                match entry.policy.on_failure(Instant::now(), Duration::ZERO, fastrand::f64()) {
                    RestartDecision::After(delay) => {
                        entry.epoch += 1;
                        let timer = Timer {
                            room: room.to_owned(),
                            kind: TimerKind::RestartDue,
                            epoch: entry.epoch,
                        };
                        self.timers.insert(timer, delay);
                    }
                    RestartDecision::Park { until } => {
                        entry.state = OrbState::Parked;
                        entry.epoch += 1;
                        let timer = Timer {
                            room: room.to_owned(),
                            kind: TimerKind::ParkExpired,
                            epoch: entry.epoch,
                        };
                        self.timers.insert_at(timer, until);
                    }
                }
                return;
            }
        };
        self.slots_used += 1;
        crate::metrics::global().spawns.inc();
        if entry.last_exit.is_some() {
            entry.policy.note_restart();
            crate::metrics::global().restarts.inc();
        }
        info!(%room, pid = process.pid, generation, session = %entry.session, "orb started");
        if let (Some(stdout), Some(stderr)) = (process.child.stdout.take(), process.child.stderr.take()) {
            spawn_output_capture(stdout, stderr, self.launcher.log_path(room));
        }
        let (control_tx, control_rx) = mpsc::channel(64);
        let timing = Timing {
            ready_timeout: self.settings.ready_timeout,
            unresponsive_timeout: self.settings.unresponsive_timeout,
            max_lifetime: self.settings.max_lifetime,
            stop_grace: self.settings.stop_grace,
            kill_grace: self.settings.kill_grace,
        };
        entry.process = Some(Running {
            pid: process.pid,
            generation,
            started: Instant::now(),
            started_ms: now_ms(),
            control: control_tx,
        });
        entry.state = OrbState::Spawning;
        entry.told_position = None;
        entry.last_heartbeat = None;
        entry.sample = None;
        OrbTask {
            room: room.to_owned(),
            generation,
            child: process.child,
            pid: process.pid,
            ipc: process.ipc,
            timing,
            control: control_rx,
            reports: self.reports_tx.clone(),
        }
        .spawn();
    }

    // ---- helpers --------------------------------------------------------

    fn remove_entry(&mut self, room: &str) {
        self.queue.retain(|r| r != room);
        if let Some(entry) = self.orbs.remove(room) {
            for waiter in entry.waiters {
                let _ = waiter.send(entry.last_exit.clone());
            }
        }
        self.tell_queue_positions();
        self.publish_counts();
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

/// A fresh 128-bit random token, hex-encoded.
fn random_token() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // getrandom only fails without an entropy source; fall back to uuid's.
        bytes = *uuid::Uuid::new_v4().as_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares two secrets without leaking where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[test]
    fn tokens_are_128_bit_hex_and_differ() {
        let (a, b) = (random_token(), random_token());
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
