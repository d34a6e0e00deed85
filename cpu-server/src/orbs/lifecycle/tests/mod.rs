//! The lifecycle alone, on a clock of the tests' own: a harness keeps the
//! armed timers (as the manager's timer queue does) and fires them in order
//! as it moves time forward; launches and processes are simulated by feeding
//! the launcher's answers and the processes' events. Each test states the
//! rule it proves.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::escalation::Graces;
use super::*;
use crate::orbs::record::OrbState;

mod snapshot;
mod warm_pool;

fn rules() -> Rules {
    Rules {
        spawn_on: SpawnOn::Coach,
        max_concurrent: 2,
        idle_timeout: Some(Duration::from_secs(300)),
        room_empty_grace: Duration::from_secs(60),
        ready_timeout: Duration::from_secs(30),
        unresponsive_timeout: Duration::from_secs(30),
        media_stall_timeout: Some(Duration::from_secs(10)),
        max_lifetime: Some(Duration::from_secs(3600)),
        graces: Graces {
            stop: Duration::from_secs(5),
            kill: Duration::from_secs(2),
        },
        memory_limit_bytes: Some(100 << 20),
        gpu_memory_limit_bytes: None,
        max_restarts: 3,
        restart_window: Duration::from_secs(300),
        gpus: Vec::new(),
        gpu_slots_per_device: 1,
        warm_pool: 0,
        warm_assign_timeout: Duration::from_secs(2),
    }
}

/// The lifecycle, its clock and its armed timers.
struct Harness {
    life: Lifecycle,
    t0: Instant,
    now: Instant,
    timers: HashMap<Timer, Instant>,
    /// Every action so far, in order.
    log: Vec<Action>,
}

impl Harness {
    fn new(rules: Rules) -> Self {
        let t0 = Instant::now();
        Self {
            life: Lifecycle::new(rules, 7),
            t0,
            now: t0,
            timers: HashMap::new(),
            log: Vec::new(),
        }
    }

    /// Moves the clock to `secs` after the start, firing every timer due on the way.
    fn advance_to(&mut self, secs: f64) -> Vec<Action> {
        let target = self.t0 + Duration::from_secs_f64(secs);
        let mut out = Vec::new();
        for _ in 0..10_000 {
            let due = self
                .timers
                .iter()
                .filter(|(_, at)| **at <= target)
                .min_by_key(|(_, at)| **at)
                .map(|(timer, at)| (timer.clone(), *at));
            let Some((timer, at)) = due else { break };
            self.timers.remove(&timer);
            self.now = at.max(self.now);
            out.extend(self.feed(Event::Timer(timer)));
        }
        self.now = target.max(self.now);
        out
    }

    /// Like [`Harness::advance_to`], with a sign of life from every orb each 10 s on the way.
    fn alive_to(&mut self, secs: f64) -> Vec<Action> {
        let mut out = Vec::new();
        let mut t = self.now.saturating_duration_since(self.t0).as_secs_f64();
        while t + 10.0 < secs {
            t += 10.0;
            out.extend(self.advance_to(t));
            for room in self.life.rooms() {
                out.extend(self.feed(Event::AiActivity { room }));
            }
        }
        out.extend(self.advance_to(secs));
        out
    }

    fn feed(&mut self, event: Event) -> Vec<Action> {
        let actions = self.life.on(event, self.now);
        self.track(&actions);
        actions
    }

    fn track(&mut self, actions: &[Action]) {
        for action in actions {
            match action {
                Action::Arm { timer, at } => {
                    self.timers.insert(timer.clone(), *at);
                }
                Action::Cancel(timer) => {
                    self.timers.remove(timer);
                }
                _ => {}
            }
            self.log.push(action.clone());
        }
    }

    /// Calls a command method and tracks what it queued.
    fn command<T>(&mut self, call: impl FnOnce(&mut Lifecycle, Instant) -> T) -> (T, Vec<Action>) {
        let value = call(&mut self.life, self.now);
        let actions = self.life.take_actions();
        self.track(&actions);
        (value, actions)
    }

    fn join(&mut self, room: &str, user: &str, role: &str) -> Vec<Action> {
        self.feed(Event::HumanJoined {
            room: room.into(),
            user_id: user.into(),
            role: role.into(),
        })
    }

    fn leave(&mut self, room: &str, user: &str) -> Vec<Action> {
        self.feed(Event::HumanLeft {
            room: room.into(),
            user_id: user.into(),
        })
    }

    fn spawned(&mut self, room: &str, generation: u64) -> Vec<Action> {
        self.feed(Event::Spawned {
            room: room.into(),
            generation,
            result: Ok(StartedInfo {
                pid: Some(1000 + generation as u32),
                supervision: Supervision::Ipc,
            }),
        })
    }

    /// Like [`Harness::spawned`], for an orb supervised over its WebSocket alone (no pid).
    fn spawned_over_websocket(&mut self, room: &str, generation: u64) -> Vec<Action> {
        self.feed(Event::Spawned {
            room: room.into(),
            generation,
            result: Ok(StartedInfo {
                pid: None,
                supervision: Supervision::WebSocket,
            }),
        })
    }

    fn process(&mut self, room: &str, generation: u64, event: ProcessEvent) -> Vec<Action> {
        self.feed(Event::Process {
            room: room.into(),
            generation,
            event,
        })
    }

    fn ready(&mut self, room: &str, generation: u64) -> Vec<Action> {
        self.process(room, generation, ProcessEvent::Ready)
    }

    fn exited(&mut self, room: &str, generation: u64, code: Option<i32>, signal: Option<i32>) -> Vec<Action> {
        self.process(room, generation, ProcessEvent::Exited { code, signal })
    }

    /// A coach joins `room`, its orb (generation `generation`) starts and becomes ready.
    fn ready_orb(&mut self, room: &str, generation: u64) {
        let launched = launches(&self.join(room, "coach", "coach"));
        assert_eq!(launched, [(room.to_owned(), generation)], "coach join launches");
        self.spawned(room, generation);
        self.ready(room, generation);
        assert_eq!(self.state(room), Some(OrbState::Ready));
    }

    fn state(&self, room: &str) -> Option<OrbState> {
        self.life.phase(room).map(OrbPhase::state)
    }

    fn armed(&self, room: &str, kind: TimerKind) -> Option<f64> {
        let timer = Timer {
            room: room.into(),
            kind,
        };
        self.timers
            .get(&timer)
            .map(|at| at.saturating_duration_since(self.t0).as_secs_f64())
    }
}

fn launches(actions: &[Action]) -> Vec<(String, u64)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Launch { generation, launch } => Some((launch.room.clone(), *generation)),
            _ => None,
        })
        .collect()
}

fn orders(actions: &[Action]) -> Vec<(u64, Order)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Order { generation, order } if !matches!(order, Order::Tell(_)) => {
                Some((*generation, order.clone()))
            }
            _ => None,
        })
        .collect()
}

fn notices(actions: &[Action]) -> Vec<(String, Notice)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Notify { room, notice } => Some((room.clone(), notice.clone())),
            _ => None,
        })
        .collect()
}

fn replies(actions: &[Action]) -> Vec<(WaiterId, Option<ExitCause>)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Reply { waiter, exit } => Some((*waiter, exit.as_ref().map(|e| e.cause))),
            _ => None,
        })
        .collect()
}

fn ask(reason: &'static str) -> Order {
    Order::AskToStop {
        reason,
        grace: Duration::from_secs(5),
    }
}

/// Rule (spawn trigger): under ORB_SPAWN_ON=coach a client alone starts
/// nothing; the coach's join launches the room's orb with both as arguments.
#[test]
fn a_coach_join_spawns_the_orb() {
    let mut h = Harness::new(rules());
    assert!(launches(&h.join("r", "cl", "client")).is_empty());
    let actions = h.join("r", "co", "coach");
    let launch = actions.iter().find_map(|a| match a {
        Action::Launch { launch, .. } => Some(launch.clone()),
        _ => None,
    });
    let launch = launch.expect("launched");
    assert_eq!(
        (launch.coach.as_deref(), launch.client.as_deref()),
        (Some("co"), Some("cl"))
    );
    assert_eq!(h.state("r"), Some(OrbState::Spawning));
    assert_eq!(h.life.counts().active, 1, "the slot is taken at launch");
    assert!(launches(&h.join("r", "co2", "coach")).is_empty(), "one orb per room");
}

/// Rule: beyond MAX_CONCURRENT_ORBS rooms wait in FIFO order, each told its
/// position; a freed slot goes to the first, and the others move up.
#[test]
fn rooms_queue_and_dequeue_in_order() {
    let mut h = Harness::new(rules());
    h.ready_orb("a", 1);
    h.ready_orb("b", 2);
    let c = h.join("c", "coach", "coach");
    assert!(launches(&c).is_empty());
    assert_eq!(notices(&c), [("c".to_owned(), Notice::Queued(1))]);
    h.life.note_told("c", 1);
    let d = h.join("d", "coach", "coach");
    assert_eq!(
        notices(&d),
        [("d".to_owned(), Notice::Queued(2))],
        "c is not told again"
    );
    h.life.note_told("d", 2);
    assert_eq!(h.state("c"), Some(OrbState::Queued));
    assert_eq!(h.life.counts().queued, 2);
    // a's orb crashes with nobody left: its slot goes to c, d moves up.
    h.leave("a", "coach");
    let exit = h.exited("a", 1, Some(1), None);
    assert_eq!(launches(&exit), [("c".to_owned(), 3)]);
    assert_eq!(notices(&exit), [("d".to_owned(), Notice::Queued(1))]);
    assert_eq!(h.life.phase("a"), None, "crash with nobody present: removed");
}

/// The GPU device of each launch in `actions`.
fn launch_gpus(actions: &[Action]) -> Vec<(String, Option<String>)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Launch { launch, .. } => Some((launch.room.clone(), launch.gpu.clone())),
            _ => None,
        })
        .collect()
}

/// Rule: each process holds a GPU slot from its launch to its end (or its failed
/// start); a freed device goes to the next room; the record shows the device.
#[test]
fn gpu_slots_follow_processes() {
    let mut h = Harness::new(Rules {
        max_concurrent: 2,
        gpus: vec!["0".into(), "1".into()],
        ..rules()
    });
    let a = h.join("a", "coach", "coach");
    assert_eq!(launch_gpus(&a), [("a".to_owned(), Some("0".to_owned()))]);
    let b = h.join("b", "coach", "coach");
    assert_eq!(launch_gpus(&b), [("b".to_owned(), Some("1".to_owned()))]);
    assert_eq!(h.life.counts().gpu_slots, Some(2));
    assert_eq!(h.life.counts().gpu_slots_used, 2);
    assert!(launches(&h.join("c", "coach", "coach")).is_empty(), "c waits");
    h.spawned("a", 1);
    assert_eq!(h.life.record("a", h.now, 0).and_then(|r| r.gpu).as_deref(), Some("0"));
    // a's process ends (nobody left): c gets device 0.
    h.leave("a", "coach");
    let exit = h.exited("a", 1, Some(0), None);
    assert_eq!(launch_gpus(&exit), [("c".to_owned(), Some("0".to_owned()))]);
    // b's start fails: its device is free again (and b retries on it later).
    let failed = h.feed(Event::Spawned {
        room: "b".into(),
        generation: 2,
        result: Err("no such program".into()),
    });
    assert!(launch_gpus(&failed).is_empty());
    assert_eq!(h.life.counts().gpu_slots_used, 1);
}

/// Rule: a process that sends no `orb_ready` within ORB_READY_TIMEOUT is
/// killed at once, and that counts as a failure (restart after a backoff).
#[test]
fn no_ready_in_time_kills_and_restarts() {
    let mut h = Harness::new(rules());
    h.join("r", "coach", "coach");
    h.spawned("r", 1);
    assert_eq!(h.armed("r", TimerKind::ReadyDue), Some(30.0));
    let fired = h.advance_to(30.0);
    assert_eq!(orders(&fired), [(1, Order::Kill)]);
    assert_eq!(h.state("r"), Some(OrbState::Stopping));
    let exit = h.exited("r", 1, None, Some(9));
    assert!(matches!(h.life.phase("r"), Some(OrbPhase::Restarting { .. })));
    assert_eq!(
        h.life.record("r", h.now, 0).and_then(|r| r.last_exit).map(|e| e.cause),
        Some(ExitCause::ReadyTimeout)
    );
    assert!(launches(&exit).is_empty(), "not at once: after the backoff");
    let due = h.armed("r", TimerKind::RestartDue).expect("restart armed");
    assert!((30.0..=32.0).contains(&due), "first backoff ≈ 0.5–1 s: {due}");
    assert_eq!(launches(&h.advance_to(32.0)), [("r".to_owned(), 2)]);
}

/// Rule: a ready orb silent for UNRESPONSIVE_TIMEOUT is killed; any sign of
/// life (IPC heartbeat, WebSocket frame) keeps it.
#[test]
fn silence_makes_an_orb_unresponsive() {
    let mut h = Harness::new(rules());
    h.ready_orb("r", 1);
    h.advance_to(20.0);
    h.process(
        "r",
        1,
        ProcessEvent::Heartbeat {
            metrics: Default::default(),
            delay_ms: Some(1.0),
        },
    );
    h.advance_to(45.0);
    h.feed(Event::AiActivity { room: "r".into() });
    assert!(
        orders(&h.advance_to(74.0)).is_empty(),
        "heard at 45 s: alive until 75 s"
    );
    assert_eq!(h.state("r"), Some(OrbState::Ready));
    let fired = h.advance_to(76.0);
    assert_eq!(orders(&fired), [(1, Order::Kill)]);
    assert_eq!(h.state("r"), Some(OrbState::Unresponsive));
    assert!(h.log.contains(&Action::Count(Tally::Stop(StopReason::Unresponsive))));
}

/// Rule: a crash while humans are present restarts the orb after the backoff;
/// a crash with nobody present forgets it.
#[test]
fn a_crash_restarts_only_with_humans_present() {
    let mut h = Harness::new(rules());
    h.ready_orb("r", 1);
    h.advance_to(100.0);
    h.exited("r", 1, Some(1), None);
    assert_eq!(h.state("r"), Some(OrbState::Restarting));
    assert_eq!(h.life.counts().active, 0, "the slot is free during the backoff");
    let relaunched = h.advance_to(102.0);
    assert_eq!(launches(&relaunched), [("r".to_owned(), 2)]);
    h.spawned("r", 2);
    assert!(h.log.contains(&Action::Count(Tally::Restart)));
    assert_eq!(h.life.record("r", h.now, 0).map(|r| r.restarts), Some(1));

    h.leave("r", "coach");
    let exit = h.exited("r", 2, None, Some(11));
    assert_eq!(h.life.phase("r"), None, "nobody present: removed");
    assert!(launches(&exit).is_empty());
}

/// Rule: MAX_RESTARTS failures within RESTART_WINDOW park the orb (the room
/// is told); the window's end or an operator's reset brings it back.
#[test]
fn a_crash_loop_parks_until_reset() {
    let mut h = Harness::new(rules());
    h.ready_orb("r", 1);
    let mut generation = 1;
    let mut parked = Vec::new();
    for _ in 0..4 {
        let exit = h.exited("r", generation, Some(1), None);
        parked = notices(&exit);
        if h.state("r") == Some(OrbState::Parked) {
            break;
        }
        let now = h.now.saturating_duration_since(h.t0).as_secs_f64();
        let relaunched = launches(&h.advance_to(now + 31.0));
        generation = relaunched.first().map(|(_, g)| *g).expect("restarted");
        h.spawned("r", generation);
    }
    assert_eq!(h.state("r"), Some(OrbState::Parked), "parked after the crash loop");
    assert_eq!(parked, [("r".to_owned(), Notice::Parked)]);
    assert!(h.armed("r", TimerKind::ParkExpired).is_some());
    let (reset, actions) = h.command(|life, now| life.reset("r", now));
    assert!(reset.is_ok());
    assert_eq!(launches(&actions).len(), 1, "reset starts it now");
    assert_eq!(h.armed("r", TimerKind::ParkExpired), None, "no park timer left");
    assert_eq!(h.state("r"), Some(OrbState::Spawning));
}

/// Rule: a parked orb's window passing starts it again when humans are there.
#[test]
fn park_expiry_restarts_with_humans() {
    let mut h = Harness::new(Rules {
        max_restarts: 0,
        ..rules()
    });
    h.ready_orb("r", 1);
    h.exited("r", 1, Some(1), None);
    assert_eq!(h.state("r"), Some(OrbState::Parked));
    let until = h.armed("r", TimerKind::ParkExpired).expect("armed");
    assert_eq!(launches(&h.advance_to(until)).len(), 1);
}

/// Rule (stop escalation): an operator's stop asks the orb, then SIGTERMs it
/// after STOP_GRACE, then SIGKILLs it after KILL_GRACE; the waiter hears the
/// exit, the room is told, the orb is forgotten.
#[test]
fn a_requested_stop_escalates_and_ends_the_orb() {
    let mut h = Harness::new(rules());
    h.ready_orb("r", 1);
    let (_, asked) = h.command(|life, now| life.stop("r", StopReason::ManualTermination, Some(WaiterId(9)), now));
    assert_eq!(orders(&asked), [(1, ask("manual_termination"))]);
    assert_eq!(h.state("r"), Some(OrbState::Stopping));
    assert_eq!(orders(&h.advance_to(4.9)), []);
    assert_eq!(orders(&h.advance_to(5.0)), [(1, Order::Terminate)]);
    assert_eq!(orders(&h.advance_to(7.0)), [(1, Order::Kill)]);
    let exit = h.exited("r", 1, None, Some(9));
    assert_eq!(replies(&exit), [(WaiterId(9), Some(ExitCause::ManualTermination))]);
    assert_eq!(
        notices(&exit),
        [("r".to_owned(), Notice::Ended(ExitCause::ManualTermination))]
    );
    assert_eq!(h.life.phase("r"), None);
    assert!(h.timers.is_empty(), "no timer outlives the orb: {:?}", h.timers);
}

/// Rule: an orb that cannot be asked to stop (its channel is gone) gets
/// SIGTERM at once instead of waiting out STOP_GRACE.
#[test]
fn an_orb_that_cannot_be_asked_is_terminated_at_once() {
    let mut h = Harness::new(rules());
    h.ready_orb("r", 1);
    h.command(|life, now| life.stop("r", StopReason::ManualTermination, None, now));
    let term = h.process("r", 1, ProcessEvent::CannotAsk);
    assert_eq!(orders(&term), [(1, Order::Terminate)]);
    assert_eq!(h.armed("r", TimerKind::Escalate), Some(2.0));
}

/// Rule: a stop asked for while the process is still being started is
/// carried out as soon as it exists; a failed start ends it.
#[test]
fn a_stop_during_spawn_is_carried_out_once_started() {
    let mut h = Harness::new(rules());
    h.join("r", "coach", "coach");
    let (_, stop) = h.command(|life, now| life.stop("r", StopReason::ManualTermination, Some(WaiterId(1)), now));
    assert_eq!(orders(&stop), [], "nothing to order yet");
    assert_eq!(h.state("r"), Some(OrbState::Stopping));
    let started = h.spawned("r", 1);
    assert_eq!(orders(&started), [(1, ask("manual_termination"))]);
    let exit = h.exited("r", 1, Some(0), None);
    assert_eq!(replies(&exit), [(WaiterId(1), Some(ExitCause::ManualTermination))]);
    assert_eq!(h.life.phase("r"), None);

    // The same with a start that fails: forgotten, the waiter answered.
    h.join("s", "coach", "coach");
    h.command(|life, now| life.stop("s", StopReason::ManualTermination, Some(WaiterId(2)), now));
    let failed = h.feed(Event::Spawned {
        room: "s".into(),
        generation: 2,
        result: Err("no such file".into()),
    });
    assert_eq!(replies(&failed), [(WaiterId(2), Some(ExitCause::SpawnFailed))]);
    assert_eq!(h.life.phase("s"), None);
    assert_eq!(h.life.counts().active, 0);
}

/// Rule: a stop during a restart's backoff (no process) forgets the orb at once.
#[test]
fn a_stop_during_backoff_ends_at_once() {
    let mut h = Harness::new(rules());
    h.ready_orb("r", 1);
    h.exited("r", 1, Some(1), None);
    assert_eq!(h.state("r"), Some(OrbState::Restarting));
    let (_, stop) = h.command(|life, now| life.stop("r", StopReason::ManualTermination, Some(WaiterId(3)), now));
    assert_eq!(replies(&stop), [(WaiterId(3), Some(ExitCause::ManualTermination))]);
    assert_eq!(h.life.phase("r"), None);
    assert!(
        launches(&h.advance_to(60.0)).is_empty(),
        "the backoff timer went with it"
    );
}

/// Rule: the room empty for ROOM_EMPTY_GRACE stops the orb; a coach coming
/// back during that stop gets a fresh orb as soon as the old one is gone.
#[test]
fn a_coach_back_during_the_stop_gets_a_fresh_orb() {
    let mut h = Harness::new(rules());
    h.ready_orb("r", 1);
    h.leave("r", "coach");
    assert_eq!(h.armed("r", TimerKind::EmptyGrace), Some(60.0));
    let stop = h.alive_to(60.0);
    assert_eq!(orders(&stop), [(1, ask("room_empty_timeout"))]);
    assert!(
        launches(&h.join("r", "coach", "coach")).is_empty(),
        "not while the old one runs"
    );
    let exit = h.exited("r", 1, Some(0), None);
    assert_eq!(launches(&exit), [("r".to_owned(), 2)]);
    assert_eq!(notices(&exit), [], "nothing to tell: the AI comes back");
}

/// Rule: a stale room-empty timer of an earlier absence never cuts a later
/// absence short (the timer is moved, not added).
#[test]
fn a_stale_empty_timer_does_not_cut_a_later_absence_short() {
    let mut h = Harness::new(rules());
    h.ready_orb("r", 1);
    h.leave("r", "coach");
    h.alive_to(10.0);
    h.join("r", "coach", "coach");
    h.alive_to(58.0);
    h.leave("r", "coach");
    assert!(orders(&h.alive_to(117.0)).is_empty(), "the 0 s absence's timer is gone");
    assert_eq!(orders(&h.alive_to(118.0)), [(1, ask("room_empty_timeout"))]);
}

/// Rule: MAX_ORB_LIFETIME stops the orb gracefully; that end is final and the humans are told.
#[test]
fn the_lifetime_ends_the_orb_and_tells_the_room() {
    let mut h = Harness::new(rules());
    h.ready_orb("r", 1);
    let stop = h.alive_to(3600.0);
    assert_eq!(orders(&stop), [(1, ask("max_lifetime"))]);
    let exit = h.exited("r", 1, Some(0), None);
    assert_eq!(
        notices(&exit),
        [("r".to_owned(), Notice::Ended(ExitCause::MaxLifetime))]
    );
    assert_eq!(h.life.phase("r"), None);
}

/// Rule: an orb started for an empty room (admin API) stops after
/// IDLE_TIMEOUT; a join cancels it. The orb's own idle end with humans
/// present is restarted without counting a failure.
#[test]
fn idle_rules() {
    let mut h = Harness::new(Rules {
        room_empty_grace: Duration::from_secs(900),
        ..rules()
    });
    let (answer, _) = h.command(|life, now| life.spawn("r", None, now));
    assert_eq!(answer, Ok(SpawnAnswer::Created));
    h.spawned("r", 1);
    h.ready("r", 1);
    assert_eq!(h.armed("r", TimerKind::Idle), Some(300.0));
    assert_eq!(orders(&h.alive_to(300.0)), [(1, ask("idle_timeout"))]);
    h.exited("r", 1, Some(0), None);
    assert_eq!(h.life.phase("r"), None);

    h.ready_orb("s", 2);
    h.process("s", 2, ProcessEvent::Announced("idle_timeout".into()));
    let exit = h.exited("s", 2, Some(0), None);
    assert_eq!(h.state("s"), Some(OrbState::Restarting));
    assert!(notices(&exit).is_empty());
    assert_eq!(h.life.record("s", h.now, 0).map(|r| r.restarts), Some(0));
}

/// Rule: RSS over ORB_MEMORY_LIMIT_MB kills the orb at once; that is a failure (restart).
#[test]
fn the_memory_limit_kills_and_restarts() {
    let mut h = Harness::new(rules());
    h.ready_orb("r", 1);
    h.life.resources("r", 1, (5.0, 50 << 20, None), h.now);
    assert!(orders(&h.life.take_actions()).is_empty(), "under the limit");
    h.life.resources("r", 1, (5.0, 200 << 20, None), h.now);
    let actions = h.life.take_actions();
    h.track(&actions);
    assert_eq!(orders(&actions), [(1, Order::Kill)]);
    h.exited("r", 1, None, Some(9));
    assert_eq!(h.state("r"), Some(OrbState::Restarting));
    assert_eq!(
        h.life.record("r", h.now, 0).and_then(|r| r.last_exit).map(|e| e.cause),
        Some(ExitCause::MemoryLimit)
    );
}

/// Rule: GPU memory over ORB_GPU_MEMORY_LIMIT_MB kills the orb as RSS does;
/// an orb not measured (no NVML) is never killed for it.
#[test]
fn the_gpu_memory_limit_kills_and_restarts() {
    let mut r = rules();
    r.gpu_memory_limit_bytes = Some(100 << 20);
    let mut h = Harness::new(r);
    h.ready_orb("r", 1);
    h.life.resources("r", 1, (5.0, 50 << 20, None), h.now);
    h.life.resources("r", 1, (5.0, 50 << 20, Some(90 << 20)), h.now);
    assert!(
        orders(&h.life.take_actions()).is_empty(),
        "under the limit or not measured"
    );
    assert_eq!(
        h.life.record("r", h.now, 0).and_then(|r| r.gpu_memory_bytes),
        Some(90 << 20)
    );
    h.life.resources("r", 1, (5.0, 50 << 20, Some(101 << 20)), h.now);
    let actions = h.life.take_actions();
    h.track(&actions);
    assert_eq!(orders(&actions), [(1, Order::Kill)]);
    h.exited("r", 1, None, Some(9));
    assert_eq!(h.state("r"), Some(OrbState::Restarting));
    let record = h.life.record("r", h.now, 0).expect("record");
    assert_eq!(record.last_exit.map(|e| e.cause), Some(ExitCause::MemoryLimit));
}

/// Rule: news of an older process never touches its replacement; its exit
/// only frees the slot it held.
#[test]
fn a_late_report_of_an_older_generation_is_ignored() {
    let mut h = Harness::new(rules());
    h.ready_orb("r", 1);
    h.exited("r", 1, Some(1), None);
    h.advance_to(2.0);
    h.spawned("r", 2);
    assert!(h.ready("r", 1).is_empty(), "generation 1 is gone");
    assert_eq!(h.state("r"), Some(OrbState::Spawning));
    h.process(
        "r",
        1,
        ProcessEvent::Error {
            error: "old".into(),
            critical: true,
        },
    );
    assert_eq!(
        h.state("r"),
        Some(OrbState::Spawning),
        "an old critical error stops nothing"
    );
    // A process the lifecycle no longer wanted (stopped while starting, then answered late).
    h.command(|life, now| life.stop("r", StopReason::ManualTermination, None, now));
    h.exited("r", 2, Some(0), None);
    let late = h.spawned("r", 7);
    assert_eq!(orders(&late), [(7, Order::Kill)], "an unwanted process is killed");
    h.exited("r", 7, None, Some(9));
    assert_eq!(h.life.counts().active, 0, "every slot accounted for");
}

/// Rule: a critical orb error stops it gracefully with `restart` and restarts it.
#[test]
fn a_critical_error_restarts_the_orb() {
    let mut h = Harness::new(rules());
    h.ready_orb("r", 1);
    let stop = h.process(
        "r",
        1,
        ProcessEvent::Error {
            error: "model lost".into(),
            critical: true,
        },
    );
    assert_eq!(orders(&stop), [(1, ask("restart"))]);
    h.exited("r", 1, Some(0), None);
    assert_eq!(h.state("r"), Some(OrbState::Restarting));
}

/// Rule: server shutdown forgets queued rooms, stops every orb with
/// `system_shutdown`, restarts nothing, starts nothing new.
#[test]
fn server_shutdown_stops_everything_and_starts_nothing() {
    let mut h = Harness::new(Rules {
        max_concurrent: 1,
        ..rules()
    });
    h.ready_orb("a", 1);
    h.join("b", "coach", "coach");
    assert_eq!(h.state("b"), Some(OrbState::Queued));
    let (rooms, _) = h.command(|life, _| life.drain());
    assert_eq!(rooms, ["a".to_owned()]);
    assert_eq!(h.life.phase("b"), None, "queued rooms are forgotten");
    let (_, stop) = h.command(|life, now| life.stop("a", StopReason::SystemShutdown, Some(WaiterId(5)), now));
    assert_eq!(orders(&stop), [(1, ask("system_shutdown"))]);
    let exit = h.exited("a", 1, Some(0), None);
    assert!(launches(&exit).is_empty(), "the freed slot goes to nobody");
    assert_eq!(notices(&exit), [], "nobody is told while the server stops");
    assert!(h.life.idle());
    assert!(launches(&h.join("c", "coach", "coach")).is_empty());
    assert_eq!(
        h.command(|life, now| life.spawn("d", None, now)).0,
        Err("server is shutting down".into())
    );
}

/// Rule: an orb supervised over its WebSocket alone is ready when it joins
/// its room and alive while it speaks there.
#[test]
fn websocket_only_supervision() {
    let mut h = Harness::new(rules());
    h.join("r", "coach", "coach");
    h.spawned_over_websocket("r", 1);
    assert_eq!(h.state("r"), Some(OrbState::Spawning));
    h.advance_to(3.0);
    h.feed(Event::AiJoined { room: "r".into() });
    assert_eq!(h.state("r"), Some(OrbState::Ready));
    assert_eq!(h.armed("r", TimerKind::ReadyDue), None);
    h.advance_to(25.0);
    h.feed(Event::AiActivity { room: "r".into() });
    assert!(orders(&h.advance_to(50.0)).is_empty(), "alive: it spoke at 25 s");
    assert_eq!(orders(&h.advance_to(56.0)), [(1, Order::Kill)]);
}

/// Rule: an orb that becomes ready hears who is already in the room.
#[test]
fn a_ready_orb_hears_who_is_here() {
    let mut h = Harness::new(rules());
    h.join("r", "cl", "client");
    h.join("r", "co", "coach");
    h.spawned("r", 1);
    let told: Vec<String> = h
        .ready("r", 1)
        .iter()
        .filter_map(|a| match a {
            Action::Order {
                order: Order::Tell(shared::ipc::ManagerToOrb::ParticipantJoined(p)),
                ..
            } => Some(p.user_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(told, ["cl", "co"]);
}

/// Rule: the timeline notes the orb's media peers when they change, not at every heartbeat.
#[test]
fn media_changes_are_noted_once() {
    let mut h = Harness::new(rules());
    h.ready_orb("r", 1);
    let beat = |media: serde_json::Value| ProcessEvent::Heartbeat {
        metrics: shared::ipc::OrbMetrics {
            extra: [("media".to_owned(), media)].into_iter().collect(),
            ..Default::default()
        },
        delay_ms: Some(1.0),
    };
    let noted = |actions: &[Action]| -> Vec<Note> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Note {
                    note: note @ Note::MediaChanged { .. },
                    ..
                } => Some(note.clone()),
                _ => None,
            })
            .collect()
    };
    let checking = serde_json::json!([{"peer": "coach", "ice": "checking", "dtls": "new", "packets_in": 0}]);
    let first = h.process("r", 1, beat(checking.clone()));
    assert_eq!(
        noted(&first),
        [Note::MediaChanged {
            peers: vec!["coach checking/new".into()]
        }]
    );
    let mut counts_moved = checking.clone();
    counts_moved[0]["packets_in"] = 9.into();
    assert!(
        noted(&h.process("r", 1, beat(counts_moved))).is_empty(),
        "packet counts alone note nothing"
    );
    let connected = serde_json::json!([{"peer": "coach", "ice": "connected", "dtls": "connected"}]);
    assert_eq!(
        noted(&h.process("r", 1, beat(connected))),
        [Note::MediaChanged {
            peers: vec!["coach connected/connected".into()]
        }]
    );
    assert_eq!(
        noted(&h.process("r", 1, beat(serde_json::json!([])))),
        [Note::MediaChanged { peers: vec![] }]
    );
}

/// A heartbeat whose `metrics` carry `extra` (e.g. `voice`, `media`).
fn beat_with(extra: serde_json::Value) -> ProcessEvent {
    let extra = match extra {
        serde_json::Value::Object(map) => map,
        _ => Default::default(),
    };
    ProcessEvent::Heartbeat {
        metrics: shared::ipc::OrbMetrics {
            extra,
            ..Default::default()
        },
        delay_ms: Some(1.0),
    }
}

fn pending(ms: u64) -> ProcessEvent {
    beat_with(serde_json::json!({"voice": {
        "stage": "thinking", "stage_age_ms": ms, "pending_ms": ms,
        "utterances": 1, "answers": 0, "errors": 0, "last_error": null
    }}))
}

fn stalled_notes(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| {
            matches!(
                a,
                Action::Note {
                    note: Note::Stalled { .. },
                    ..
                }
            )
        })
        .count()
}

/// Rule (media flow): a heartbeat showing an utterance pending past
/// ORB_MEDIA_STALL_TIMEOUT tells the room, stops the orb gracefully with
/// `voice_stalled`, and its end is a failure: restarted after the backoff.
#[test]
fn an_unanswered_utterance_replaces_the_orb() {
    let mut h = Harness::new(rules());
    h.ready_orb("r", 1);
    h.advance_to(20.0);
    let stop = h.process("r", 1, pending(10_000));
    assert_eq!(orders(&stop), [(1, ask("voice_stalled"))]);
    assert_eq!(
        notices(&stop),
        [("r".to_owned(), Notice::Stalled(StopReason::VoiceStalled))]
    );
    assert_eq!(stalled_notes(&stop), 1);
    assert!(stop.contains(&Action::Count(Tally::Stop(StopReason::VoiceStalled))));
    assert_eq!(h.state("r"), Some(OrbState::Stopping));
    assert_eq!(
        h.life.record("r", h.now, 0).and_then(|r| r.stop_reason),
        Some(StopReason::VoiceStalled)
    );
    let exit = h.exited("r", 1, Some(0), None);
    assert!(notices(&exit).is_empty(), "no `ended`: the AI comes back");
    assert_eq!(h.state("r"), Some(OrbState::Restarting));
    assert_eq!(
        h.life.record("r", h.now, 0).and_then(|r| r.last_exit).map(|e| e.cause),
        Some(ExitCause::VoiceStalled)
    );
    assert_eq!(launches(&h.advance_to(22.0)), [("r".to_owned(), 2)]);
    h.spawned("r", 2);
    assert_eq!(h.life.record("r", h.now, 0).map(|r| r.restarts), Some(1));
}

/// Rule: an utterance pending for less than the timeout changes nothing.
#[test]
fn a_pending_utterance_below_the_timeout_is_left_alone() {
    let mut h = Harness::new(rules());
    h.ready_orb("r", 1);
    let beat = h.process("r", 1, pending(9_999));
    assert!(orders(&beat).is_empty() && notices(&beat).is_empty() && stalled_notes(&beat) == 0);
    assert_eq!(h.state("r"), Some(OrbState::Ready));
    assert!(
        h.life.record("r", h.now, 0).and_then(|r| r.voice).is_some(),
        "the voice state is shown"
    );
}

/// Rule: a peer connected (ICE and DTLS) whose packets stopped past the
/// timeout replaces the orb with `media_stalled`, while heartbeats keep coming.
#[test]
fn a_connected_peer_with_stale_packets_replaces_the_orb() {
    let mut h = Harness::new(rules());
    h.ready_orb("r", 1);
    let media = |age: u64| {
        beat_with(serde_json::json!({"media": [
            {"peer": "coach", "ice": "connected", "dtls": "connected", "packets_in": 40,
             "last_packet_age_ms": age, "connected_age_ms": 60_000}
        ]}))
    };
    assert!(orders(&h.process("r", 1, media(500))).is_empty());
    let stop = h.process("r", 1, media(10_500));
    assert_eq!(orders(&stop), [(1, ask("media_stalled"))]);
    assert_eq!(
        notices(&stop),
        [("r".to_owned(), Notice::Stalled(StopReason::MediaStalled))]
    );
    h.exited("r", 1, Some(0), None);
    assert_eq!(h.state("r"), Some(OrbState::Restarting));
}

/// Rule: ORB_MEDIA_STALL_TIMEOUT=0 turns the rule off.
#[test]
fn a_stall_timeout_of_0_is_off() {
    let mut h = Harness::new(Rules {
        media_stall_timeout: None,
        ..rules()
    });
    h.ready_orb("r", 1);
    let beat = h.process("r", 1, pending(3_600_000));
    assert!(orders(&beat).is_empty() && notices(&beat).is_empty());
    assert_eq!(h.state("r"), Some(OrbState::Ready));
}

/// Rule: one stall, one stop: the stopping orb's further stalled heartbeats
/// add no note, notice, count or order (and still count as signs of life).
#[test]
fn a_stopping_orbs_stalled_heartbeats_add_nothing() {
    let mut h = Harness::new(rules());
    h.ready_orb("r", 1);
    h.process("r", 1, pending(10_000));
    for ms in [10_200, 10_400, 10_600] {
        let again = h.process("r", 1, pending(ms));
        let extra: Vec<&Action> = again
            .iter()
            .filter(|a| !matches!(a, Action::Count(Tally::Heartbeat(_))))
            .collect();
        assert!(extra.is_empty(), "a stopping orb's heartbeat did {extra:?}");
    }
    let stops = h
        .log
        .iter()
        .filter(|a| matches!(a, Action::Count(Tally::Stop(_))))
        .count();
    assert_eq!(stops, 1);
    // The escalation goes on as for any graceful stop.
    assert_eq!(orders(&h.advance_to(5.0)), [(1, Order::Terminate)]);
}

/// Rule: a stall of an orb still starting (no `orb_ready`) is left to the ready timeout.
#[test]
fn a_starting_orb_is_not_checked_for_stalls() {
    let mut h = Harness::new(rules());
    h.join("r", "coach", "coach");
    h.spawned("r", 1);
    let beat = h.process("r", 1, pending(60_000));
    assert!(orders(&beat).is_empty());
    assert_eq!(h.state("r"), Some(OrbState::Spawning));
}

/// Rule: the current process's session summary is handed to the shell with
/// the orb's session, during its stop too; an older process's is not.
#[test]
fn session_summaries_go_to_the_shell() {
    let mut h = Harness::new(rules());
    h.ready_orb("r", 1);
    let session = h.life.record("r", h.now, 0).map(|r| r.session).unwrap_or_default();
    h.command(|life, now| life.stop("r", StopReason::ManualTermination, None, now));
    let summary = serde_json::json!({"transcript": [], "summary": null, "turns": 0, "truncated": false});
    let kept = h.process("r", 1, ProcessEvent::Summary(summary.clone()));
    assert_eq!(
        kept,
        [Action::KeepSummary {
            room: "r".into(),
            session,
            summary: summary.clone()
        }]
    );
    h.exited("r", 1, Some(0), None);
    assert!(h.process("r", 1, ProcessEvent::Summary(summary)).is_empty(), "gone");
}

/// Rule: a cluster job waiting in the scheduler's queue is not late to become ready: its
/// ready deadline starts again while it waits and when it starts running; the room hears
/// the scheduler's reason once per reason, and the record shows where the job is.
#[test]
fn a_job_waiting_in_the_cluster_queue_is_not_late() {
    use crate::orbs::process_control::Placement;
    let mut h = Harness::new(rules());
    h.join("r", "coach", "coach");
    h.spawned("r", 1);
    assert_eq!(h.armed("r", TimerKind::ReadyDue), Some(30.0));
    let pending = |reason: &str| {
        ProcessEvent::Placement(Placement::Pending {
            job: Some("7".into()),
            reason: reason.into(),
        })
    };
    let told = |actions: &[Action]| -> Vec<Notice> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Notify { notice, .. } => Some(notice.clone()),
                _ => None,
            })
            .collect()
    };
    h.advance_to(20.0);
    assert_eq!(
        told(&h.process("r", 1, pending("Resources"))),
        [Notice::ClusterQueued("Resources".into())]
    );
    assert_eq!(h.armed("r", TimerKind::ReadyDue), Some(50.0));
    h.advance_to(45.0);
    assert!(
        told(&h.process("r", 1, pending("Resources"))).is_empty(),
        "told once per reason"
    );
    assert_eq!(
        h.armed("r", TimerKind::ReadyDue),
        Some(50.0),
        "the same state changes nothing"
    );
    assert!(orders(&h.advance_to(49.0)).is_empty());
    let running = ProcessEvent::Placement(Placement::Running {
        job: "7".into(),
        node: "gpu07".into(),
        gpu: None,
    });
    h.process("r", 1, running.clone());
    assert_eq!(
        h.armed("r", TimerKind::ReadyDue),
        Some(79.0),
        "ready is due from the job's start"
    );
    assert_eq!(h.state("r"), Some(OrbState::Spawning));
    let record = h.life.record("r", h.now, 0).expect("record");
    assert_eq!(
        record.placement,
        Some(Placement::Running {
            job: "7".into(),
            node: "gpu07".into(),
            gpu: None
        })
    );
    assert_eq!(
        orders(&h.advance_to(79.5)),
        [(1, Order::Kill)],
        "then it is as late as any orb"
    );
}
