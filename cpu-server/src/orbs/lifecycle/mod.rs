//! The orb's life as data: every supervision rule, as a pure state machine.
//!
//! [`Lifecycle`] holds every room's [`OrbLife`], the humans of each room, the
//! slot count and the FIFO queue. It takes [`Event`]s (room events, launcher
//! answers, process events, resource samples, timers) and operator commands,
//! with the time passed in, and answers with [`Action`]s: launch, order a
//! process, notify a room, arm or cancel a timer, answer a waiter, count.
//! It does no IO: the OrbManager (`orbs::manager`) is the thin shell that
//! feeds it and carries out its actions, and the tests drive it with a clock
//! of their own.
//!
//! Where each rule lives:
//! - the restart rule: [`exit_rule`] (with the backoff in [`restart_policy`]);
//! - the stop escalation: [`escalation`];
//! - the spawn trigger: [`spawn_rule`];
//! - the media-flow rule (a dead call behind live heartbeats): [`stall_rule`];
//! - which GPU each process runs on: [`gpu_slots`];
//! - orbs started ahead of need and handed to rooms: [`warm_pool`];
//! - the causes: [`cause`].

pub mod cause;
pub mod escalation;
pub mod exit_rule;
pub mod gpu_slots;
pub mod note;
pub mod phase;
pub mod restart_policy;
pub mod snapshot;
pub mod spawn_rule;
pub mod stall_rule;
pub mod warm_pool;

mod commands;
mod placement;
mod process;
mod rooms;
mod slots;
mod timers;
mod view;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

pub use cause::{ExitCause, StopReason};
pub use commands::SpawnAnswer;
pub use note::Note;
pub use phase::{Live, OrbLife, OrbPhase, StopRequest, WaiterId};
pub use warm_pool::{WarmMember, WarmPoolView, is_warm_key};

use super::orb_command::OrbLaunch;
use super::process_control::{Order, Placement, ProcessEvent, Supervision};
use super::record::ExitRecord;
use crate::settings::{OrbSettings, SpawnOn};
use escalation::Graces;
use spawn_rule::Humans;

/// The settings the rules use.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// `ORB_SPAWN_ON`.
    pub spawn_on: SpawnOn,
    /// `MAX_CONCURRENT_ORBS`, or the GPU slots when fewer.
    pub max_concurrent: usize,
    /// `ORB_GPUS` (empty: no GPU slots).
    pub gpus: Vec<String>,
    /// `ORB_GPU_SLOTS_PER_DEVICE`.
    pub gpu_slots_per_device: usize,
    /// `IDLE_TIMEOUT` (`None`: off).
    pub idle_timeout: Option<Duration>,
    /// `ROOM_EMPTY_GRACE`.
    pub room_empty_grace: Duration,
    /// `ORB_READY_TIMEOUT`.
    pub ready_timeout: Duration,
    /// `UNRESPONSIVE_TIMEOUT`.
    pub unresponsive_timeout: Duration,
    /// `ORB_MEDIA_STALL_TIMEOUT` (`None`: off).
    pub media_stall_timeout: Option<Duration>,
    /// `MAX_ORB_LIFETIME` (`None`: off).
    pub max_lifetime: Option<Duration>,
    /// `STOP_GRACE`, `KILL_GRACE`.
    pub graces: Graces,
    /// `ORB_MEMORY_LIMIT_MB` in bytes.
    pub memory_limit_bytes: Option<u64>,
    /// `ORB_GPU_MEMORY_LIMIT_MB` in bytes.
    pub gpu_memory_limit_bytes: Option<u64>,
    /// `MAX_RESTARTS`.
    pub max_restarts: u32,
    /// `RESTART_WINDOW`.
    pub restart_window: Duration,
    /// `ORB_WARM_POOL` (0: off).
    pub warm_pool: usize,
    /// `ORB_WARM_ASSIGN_TIMEOUT`.
    pub warm_assign_timeout: Duration,
}

impl From<&OrbSettings> for Rules {
    fn from(s: &OrbSettings) -> Self {
        Self {
            spawn_on: s.spawn_on,
            max_concurrent: s.capacity(),
            gpus: s.gpus.clone(),
            gpu_slots_per_device: s.gpu_slots_per_device,
            idle_timeout: s.idle_timeout,
            room_empty_grace: s.room_empty_grace,
            ready_timeout: s.ready_timeout,
            unresponsive_timeout: s.unresponsive_timeout,
            media_stall_timeout: s.media_stall_timeout,
            max_lifetime: s.max_lifetime,
            graces: Graces {
                stop: s.stop_grace,
                kill: s.kill_grace,
            },
            memory_limit_bytes: s.memory_limit_bytes,
            gpu_memory_limit_bytes: s.gpu_memory_limit_bytes,
            max_restarts: s.max_restarts,
            restart_window: s.restart_window,
            warm_pool: s.warm_pool.size,
            warm_assign_timeout: s.warm_pool.assign_timeout,
        }
    }
}

/// What a launcher's answer says about the started process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartedInfo {
    /// Its pid, when local.
    pub pid: Option<u32>,
    /// How it is heard from.
    pub supervision: Supervision,
}

/// Something that happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A human joined a room.
    HumanJoined {
        /// The room.
        room: String,
        /// Who.
        user_id: String,
        /// Their `userRole`.
        role: String,
    },
    /// A human handed over by an upgrade is back in its room: a join the
    /// room's orb (handed over too, if it has one) is not told of again.
    HumanRestored {
        /// The room.
        room: String,
        /// Who.
        user_id: String,
        /// Their `userRole`.
        role: String,
    },
    /// A human left a room.
    HumanLeft {
        /// The room.
        room: String,
        /// Who.
        user_id: String,
    },
    /// The room's AI joined it.
    AiJoined {
        /// The room.
        room: String,
    },
    /// The room's AI left it.
    AiLeft {
        /// The room.
        room: String,
    },
    /// The room's AI sent a frame (a sign of life).
    AiActivity {
        /// The room.
        room: String,
    },
    /// The room's AI announced its end on its WebSocket.
    AiAnnouncedEnd {
        /// The room.
        room: String,
        /// Its reason.
        reason: Option<String>,
    },
    /// The launcher's answer for process `generation`.
    Spawned {
        /// The room.
        room: String,
        /// Which process.
        generation: u64,
        /// The started process, or why not.
        result: Result<StartedInfo, String>,
    },
    /// An event of process `generation`.
    Process {
        /// The room.
        room: String,
        /// Which process.
        generation: u64,
        /// What happened.
        event: ProcessEvent,
    },
    /// A timer fired.
    Timer(Timer),
}

/// The kinds of timer; a room has at most one of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerKind {
    /// `ROOM_EMPTY_GRACE` after the last human left.
    EmptyGrace,
    /// `IDLE_TIMEOUT` with nobody present.
    Idle,
    /// A restart's backoff is over.
    RestartDue,
    /// A parked orb's crash-loop window is over.
    ParkExpired,
    /// `ORB_READY_TIMEOUT` after the start.
    ReadyDue,
    /// Checks the last sign of life against `UNRESPONSIVE_TIMEOUT`.
    Watchdog,
    /// `MAX_ORB_LIFETIME` after the start.
    LifetimeEnd,
    /// The next step of the stop escalation.
    Escalate,
    /// `ORB_WARM_ASSIGN_TIMEOUT` after a warm orb was given the room.
    AssignDue,
}

impl TimerKind {
    /// Every kind.
    pub const ALL: [TimerKind; 9] = [
        Self::EmptyGrace,
        Self::Idle,
        Self::RestartDue,
        Self::ParkExpired,
        Self::ReadyDue,
        Self::Watchdog,
        Self::LifetimeEnd,
        Self::Escalate,
        Self::AssignDue,
    ];
    /// The kinds that belong to one process and end with it.
    pub const PROCESS: [TimerKind; 5] = [
        Self::ReadyDue,
        Self::Watchdog,
        Self::LifetimeEnd,
        Self::Escalate,
        Self::AssignDue,
    ];
}

/// One room's timer of one kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Timer {
    /// The room.
    pub room: String,
    /// Which.
    pub kind: TimerKind,
}

/// What a room is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// `ai_status` `queued` with the position (1 = next).
    Queued(usize),
    /// `ai_status` `queued` by the cluster's scheduler, with its reason (no position:
    /// the scheduler's queue is not ours).
    ClusterQueued(String),
    /// `ai_status` `ended`: the AI left for good.
    Ended(ExitCause),
    /// `ai_status` `error` `orb_parked`.
    Parked,
    /// `ai_status` `error` with the stall's code (`voice_stalled`, `media_stalled`):
    /// the orb is being replaced.
    Stalled(StopReason),
}

/// What to count (metrics).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tally {
    /// A process started.
    Spawn,
    /// … and it was a restart.
    Restart,
    /// A stop began.
    Stop(StopReason),
    /// A process ended (or failed to start).
    Exit(ExitCause),
    /// An IPC heartbeat, with its delay in ms.
    Heartbeat(Option<f64>),
    /// Spawn → ready.
    SpawnToReady(Duration),
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Start process `generation` of a room (a slot is taken).
    Launch {
        /// Which process.
        generation: u64,
        /// What to start.
        launch: OrbLaunch,
    },
    /// Process `generation` (a warm orb) now belongs to `launch.room`: re-key it,
    /// and, for a room (not `launch.warm`), give it the room's token in `orb_assign`.
    Assign {
        /// Which process.
        generation: u64,
        /// Its new room (or pool entry) and what the orb needs to know of it.
        launch: OrbLaunch,
    },
    /// Deliver an order to process `generation`.
    Order {
        /// Which process.
        generation: u64,
        /// The order.
        order: Order,
    },
    /// Tell a room something.
    Notify {
        /// The room.
        room: String,
        /// What.
        notice: Notice,
    },
    /// Arm (or move) a timer.
    Arm {
        /// Which.
        timer: Timer,
        /// When it fires.
        at: Instant,
    },
    /// Cancel a timer (if armed).
    Cancel(Timer),
    /// Answer a waiter with how the process ended (`None`: no orb).
    Reply {
        /// Who.
        waiter: WaiterId,
        /// The exit.
        exit: Option<ExitRecord>,
    },
    /// Count something.
    Count(Tally),
    /// Keep the session summary the room's current orb sent (opaque JSON).
    KeepSummary {
        /// The room.
        room: String,
        /// The orb's session.
        session: String,
        /// What it sent.
        summary: serde_json::Value,
    },
    /// Add to the room's timeline (and the log).
    Note {
        /// The room.
        room: String,
        /// What happened.
        note: Note,
    },
}

/// Every room's orb and what the rules need to decide about them.
#[derive(Debug)]
pub struct Lifecycle {
    rules: Rules,
    orbs: HashMap<String, OrbLife>,
    people: HashMap<String, Humans>,
    queue: VecDeque<String>,
    slots_used: usize,
    gpu_slots: gpu_slots::GpuSlots,
    warm: warm_pool::WarmPool,
    next_generation: u64,
    draining: bool,
    jitter: fastrand::Rng,
    out: Vec<Action>,
}

impl Lifecycle {
    /// No orbs; `seed` drives the restart jitter.
    pub fn new(rules: Rules, seed: u64) -> Self {
        Self {
            gpu_slots: gpu_slots::GpuSlots::new(rules.gpus.clone(), rules.gpu_slots_per_device),
            warm: warm_pool::WarmPool::new(
                rules.warm_pool,
                rules.warm_assign_timeout,
                rules.max_restarts,
                rules.restart_window,
            ),
            rules,
            orbs: HashMap::new(),
            people: HashMap::new(),
            queue: VecDeque::new(),
            slots_used: 0,
            next_generation: 1,
            draining: false,
            jitter: fastrand::Rng::with_seed(seed),
            out: Vec::new(),
        }
    }

    /// Takes `event` at `now`; returns what to do.
    pub fn on(&mut self, event: Event, now: Instant) -> Vec<Action> {
        match event {
            Event::HumanJoined { room, user_id, role } => self.human_joined(&room, user_id, &role, now, true),
            Event::HumanRestored { room, user_id, role } => self.human_joined(&room, user_id, &role, now, false),
            Event::HumanLeft { room, user_id } => self.human_left(&room, &user_id, now),
            Event::AiJoined { room } => self.ai_joined(&room, now),
            Event::AiLeft { room } => {
                if self.orbs.contains_key(&room) {
                    self.note(&room, Note::AiLeft);
                }
            }
            Event::AiActivity { room } => self.heard_from(&room, now),
            Event::AiAnnouncedEnd { room, reason } => {
                let reason = reason.unwrap_or_else(|| "ai_shutdown".to_owned());
                if let Some(live) = self.orbs.get_mut(&room).and_then(|o| o.phase.live_mut()) {
                    live.announced = Some(reason);
                }
            }
            Event::Spawned {
                room,
                generation,
                result,
            } => self.spawned(&room, generation, result, now),
            Event::Process {
                room,
                generation,
                event,
            } => self.process_event(&room, generation, event, now),
            Event::Timer(timer) => self.timer(timer, now),
        }
        self.refill_pool(now);
        self.take_actions()
    }

    /// Starts the warm pool (the shell calls it once, at its start).
    pub fn start(&mut self, now: Instant) -> Vec<Action> {
        self.refill_pool(now);
        self.take_actions()
    }

    /// The actions queued by the last call.
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.out)
    }

    /// Whether no process holds a slot (the shell may end once draining).
    pub fn idle(&self) -> bool {
        self.slots_used == 0
    }

    /// Whether the server is stopping.
    pub fn draining(&self) -> bool {
        self.draining
    }

    fn push(&mut self, action: Action) {
        self.out.push(action);
    }

    fn arm(&mut self, room: &str, kind: TimerKind, at: Instant) {
        let timer = Timer {
            room: room.to_owned(),
            kind,
        };
        self.push(Action::Arm { timer, at });
    }

    fn cancel(&mut self, room: &str, kind: TimerKind) {
        self.push(Action::Cancel(Timer {
            room: room.to_owned(),
            kind,
        }));
    }

    fn order(&mut self, generation: u64, order: Order) {
        self.push(Action::Order { generation, order });
    }

    fn note(&mut self, room: &str, note: Note) {
        self.push(Action::Note {
            room: room.to_owned(),
            note,
        });
    }

    fn notify(&mut self, room: &str, notice: Notice) {
        self.push(Action::Notify {
            room: room.to_owned(),
            notice,
        });
    }

    fn humans(&self, room: &str) -> usize {
        self.people.get(room).map_or(0, |h| h.0.len())
    }

    fn room_calls_for_orb(&self, room: &str) -> bool {
        self.people
            .get(room)
            .is_some_and(|h| spawn_rule::room_calls_for_orb(self.rules.spawn_on, h))
    }
}
