//! The warm pool (`ORB_WARM_POOL`): orbs started ahead of need, in no room,
//! each handed to the next room that needs one.
//!
//! A warm orb is an entry of its own, keyed `warm+N` (`+` is outside the room id
//! alphabet: no room can collide), supervised by every rule a room's orb is
//! (ready timeout, watchdog, memory limits, lifetime, the stop escalation). It
//! holds a slot and a GPU slot like any orb. Rooms come first: the pool is
//! refilled only when a slot is free and no room waits.
//!
//! A room that needs an orb takes a ready warm one: the process moves to the
//! room's entry ([`Action::Assign`]: the shell re-keys it and sends `orb_assign`
//! with the room's token), and must say `orb_assigned` within
//! `ORB_WARM_ASSIGN_TIMEOUT`; else it is moved back out, killed, and the room
//! takes the next warm orb or a cold start.
//!
//! A warm orb that fails (exits unasked, hangs, misses heartbeats, outgrows a
//! limit) is replaced after the pool's own backoff; past `ORB_MAX_RESTARTS`
//! failures in `ORB_RESTART_WINDOW` the pool is parked (rooms get cold orbs)
//! until the window has passed or an operator resets it. A program that shows
//! it cannot be warm (it says `orb_ready` in no room, never says `orb_warm` by
//! its ready timeout, or ignores the pool's first assignment) disables the pool
//! for the server's life, with the reason.

use tokio::time::Instant;
use tracing::{info, warn};

use super::exit_rule::classify;
use super::phase::{Assigning, OrbLife};
use super::restart_policy::{RestartDecision, RestartPolicy};
use super::*;

/// Prefix of the pool's entries (`warm+1`, `warm+2`, …).
pub const WARM_KEY_PREFIX: &str = "warm+";
/// How long after an assignment the pool waits before it starts the member that
/// replaces the one given away: the new process's start (an exec, a runtime, in
/// production a model) then does not compete for the CPU with the assigned orb
/// joining its room. Measured on a 2-core VM: started at once, the replacement
/// added about 0.5 ms to the median join.
pub const REFILL_AFTER_ASSIGNMENT: Duration = Duration::from_millis(100);

/// The key of the pool's own timers (refill backoff, park window).
const POOL_TIMERS: &str = "warm+pool";

/// Whether `key` is a pool entry (or the pool's timers), not a room.
pub fn is_warm_key(key: &str) -> bool {
    key.starts_with(WARM_KEY_PREFIX)
}

/// The pool's own state: its members and its failure history.
#[derive(Debug)]
pub struct WarmPool {
    target: usize,
    assign_timeout: Duration,
    next_id: u64,
    /// Pool entries, oldest first (a discarded one is no member).
    members: Vec<String>,
    policy: RestartPolicy,
    refill_at: Option<Instant>,
    parked_until: Option<Instant>,
    disabled: Option<String>,
    ever_warm: bool,
    ever_assigned: bool,
    assignments: u64,
    failures: u64,
}

/// What operators see of the pool (`GET /api/warm-pool`, metrics, dashboard).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct WarmPoolView {
    /// `ORB_WARM_POOL` (bounded by the capacity).
    pub size: usize,
    /// Members ready to be given a room.
    pub ready: usize,
    /// Members still starting.
    pub starting: usize,
    /// Members whose room socket is open (`/orb-seat`): given a room, they are in it at once.
    pub seated: usize,
    /// Rooms that got a warm orb, since start.
    pub assignments: u64,
    /// Warm orbs that failed (or were discarded), since start.
    pub failures: u64,
    /// Time left before a parked pool refills again, ms.
    pub parked_for_ms: Option<u64>,
    /// Why the pool is off for good, if it is.
    pub disabled: Option<String>,
    /// Each member: entry, pid, state, age.
    pub members: Vec<WarmMember>,
}

/// One member of the pool.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WarmMember {
    /// Its entry (`warm+N`).
    pub id: String,
    /// Its pid, once started.
    pub pid: Option<u32>,
    /// Where it is.
    pub state: crate::orbs::OrbState,
    /// Since its start, ms.
    pub uptime_ms: u64,
    /// Its room socket is open (filled in by the manager, which holds the sockets' seats).
    pub seated: bool,
}

/// The pool's state as a document (an upgrade's handover); instants as time left, ms.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WarmSnapshot {
    /// The next entry number.
    pub next_id: u64,
    /// Pool entries, oldest first.
    pub members: Vec<String>,
    /// Its failure history.
    pub policy: super::restart_policy::PolicyState,
    /// Time left before it may refill, ms.
    pub refill_in_ms: Option<u64>,
    /// Time left parked, ms.
    pub parked_for_ms: Option<u64>,
    /// Why it is off for good.
    pub disabled: Option<String>,
    /// A member ever said `orb_warm`.
    pub ever_warm: bool,
    /// A member ever took a room.
    pub ever_assigned: bool,
    /// Rooms that got a warm orb.
    pub assignments: u64,
    /// Warm orbs that failed.
    pub failures: u64,
}

impl WarmPool {
    /// The pool at `now`, as a document.
    pub fn export(&self, now: Instant) -> WarmSnapshot {
        let left = |at: Option<Instant>| at.map(|at| at.saturating_duration_since(now).as_millis() as u64);
        WarmSnapshot {
            next_id: self.next_id,
            members: self.members.clone(),
            policy: super::restart_policy::PolicyState::of(&self.policy, now),
            refill_in_ms: left(self.refill_at),
            parked_for_ms: left(self.parked_until),
            disabled: self.disabled.clone(),
            ever_warm: self.ever_warm,
            ever_assigned: self.ever_assigned,
            assignments: self.assignments,
            failures: self.failures,
        }
    }

    /// Takes over `snapshot` at `now` (the moment it was written); `kept` says
    /// which members came along (their entries were imported).
    pub fn import(
        &mut self,
        snapshot: WarmSnapshot,
        now: Instant,
        kept: impl Fn(&str) -> bool,
        max_restarts: u32,
        window: Duration,
    ) {
        let at = |ms: Option<u64>| ms.map(|ms| now + Duration::from_millis(ms));
        self.next_id = self.next_id.max(snapshot.next_id);
        self.members = snapshot.members.into_iter().filter(|key| kept(key)).collect();
        self.policy = snapshot.policy.policy(max_restarts, window, now);
        self.refill_at = at(snapshot.refill_in_ms);
        self.parked_until = at(snapshot.parked_for_ms);
        self.disabled = snapshot.disabled;
        self.ever_warm = snapshot.ever_warm;
        self.ever_assigned = snapshot.ever_assigned;
        self.assignments = snapshot.assignments;
        self.failures = snapshot.failures;
    }

    /// A pool of `target` orbs (0: off).
    pub fn new(target: usize, assign_timeout: Duration, max_restarts: u32, window: Duration) -> Self {
        Self {
            target,
            assign_timeout,
            next_id: 1,
            members: Vec::new(),
            policy: RestartPolicy::new(max_restarts, window),
            refill_at: None,
            parked_until: None,
            disabled: None,
            ever_warm: false,
            ever_assigned: false,
            assignments: 0,
            failures: 0,
        }
    }

    fn next_key(&mut self) -> String {
        let key = format!("{WARM_KEY_PREFIX}{}", self.next_id);
        self.next_id += 1;
        key
    }

    /// Whether the pool may start a member at `now`.
    fn may_refill(&self, now: Instant) -> bool {
        self.target > 0
            && self.disabled.is_none()
            && self.parked_until.is_none()
            && self.refill_at.is_none_or(|at| now >= at)
            && self.members.len() < self.target
    }
}

impl Lifecycle {
    /// Starts pool members while a slot is free, no room waits and the pool may grow.
    pub(super) fn refill_pool(&mut self, now: Instant) {
        let capacity = self.rules.max_concurrent;
        while !self.draining && self.warm.may_refill(now) && self.slots_used < capacity && self.queue.is_empty() {
            let key = self.warm.next_key();
            self.warm.members.push(key.clone());
            self.create_warm_entry(&key);
            self.launch(&key, true);
        }
    }

    fn create_warm_entry(&mut self, key: &str) {
        let life = OrbLife::new(
            uuid::Uuid::new_v4().to_string(),
            RestartPolicy::new(0, self.rules.restart_window),
        );
        self.orbs.insert(key.to_owned(), life);
    }

    /// The oldest member ready to be given a room.
    pub(super) fn ready_warm(&self) -> Option<String> {
        self.warm
            .members
            .iter()
            .find(|key| matches!(self.orbs.get(*key).map(|o| &o.phase), Some(OrbPhase::Ready { .. })))
            .cloned()
    }

    /// A member said `orb_warm`: it is ready (and a waiting room takes it).
    pub(super) fn warm_ready(&mut self, key: &str, generation: u64, now: Instant) {
        self.warm.ever_warm = true;
        self.became_ready(key, generation, now);
        self.fill_free_slots(now);
    }

    /// Gives warm member `key`'s process to `room` (whose entry exists and has no process).
    pub(super) fn assign_warm(&mut self, key: &str, room: &str, now: Instant) {
        if !self.orbs.contains_key(room) {
            return;
        }
        let Some(warm) = self.orbs.remove(key) else { return };
        self.warm.members.retain(|k| k != key);
        for kind in TimerKind::ALL {
            self.cancel(key, kind);
        }
        let OrbPhase::Ready { generation, mut live } = warm.phase else {
            self.orbs.insert(key.to_owned(), warm);
            return;
        };
        live.started = now;
        live.last_heard = now;
        let humans = self.people.get(room);
        let coach = humans.and_then(|h| h.first_with(&spawn_rule::Role::Coach));
        let client = humans.and_then(|h| h.first_with(&spawn_rule::Role::Client));
        let Some(orb) = self.orbs.get_mut(room) else { return };
        orb.phase = OrbPhase::Starting {
            generation,
            live: Some(live),
        };
        orb.assigning = Some(Assigning { generation, since: now });
        orb.gpu = warm.gpu.clone();
        orb.placement = warm.placement.clone();
        orb.sample = warm.sample;
        orb.gpu_bytes = warm.gpu_bytes;
        orb.media = None;
        orb.voice = None;
        let launch = OrbLaunch {
            room: room.to_owned(),
            session: orb.session.clone(),
            coach,
            client,
            gpu: warm.gpu,
            warm: false,
        };
        self.warm.assignments += 1;
        info!(%room, from = key, generation, "warm orb given to the room");
        self.note(
            room,
            Note::WarmAssigned {
                generation,
                from: key.to_owned(),
            },
        );
        self.push(Action::Assign { generation, launch });
        self.arm(room, TimerKind::AssignDue, now + self.warm.assign_timeout);
        self.defer_refill(now + REFILL_AFTER_ASSIGNMENT);
    }

    /// The assigned orb said `orb_assigned` for `said`: it joins the room now.
    pub(super) fn warm_took(&mut self, room: &str, generation: u64, said: &str, now: Instant) {
        let Some(orb) = self.orbs.get_mut(room) else { return };
        let Some(assigning) = orb.assigning.filter(|a| a.generation == generation) else {
            return;
        };
        if said != room {
            warn!(%room, said, "warm orb acknowledged another room; discarding it");
            return self.discard_assigned(room, now);
        }
        orb.assigning = None;
        self.warm.ever_assigned = true;
        self.cancel(room, TimerKind::AssignDue);
        let after_ms = now.saturating_duration_since(assigning.since).as_millis() as u64;
        self.note(room, Note::WarmTook { generation, after_ms });
        self.arm(room, TimerKind::ReadyDue, now + self.rules.ready_timeout);
        if let Some(life) = self.rules.max_lifetime {
            self.arm(room, TimerKind::LifetimeEnd, now + life);
        }
    }

    /// `ORB_WARM_ASSIGN_TIMEOUT` passed without `orb_assigned`.
    pub(super) fn assign_due(&mut self, room: &str, now: Instant) {
        if self.orbs.get(room).is_some_and(|o| o.assigning.is_some()) {
            warn!(%room, "warm orb did not take its room in time; discarding it");
            if !self.warm.ever_assigned {
                self.disable_pool(
                    "the first warm orb given a room never said orb_assigned within ORB_WARM_ASSIGN_TIMEOUT: the orb program cannot take a room after its start",
                    now,
                );
            }
            self.discard_assigned(room, now);
        }
    }

    /// Moves the room's assigned (unacknowledged) process out to an entry of its
    /// own and kills it there; the room starts again (next warm orb, cold start or queue).
    fn discard_assigned(&mut self, room: &str, now: Instant) {
        let Some(orb) = self.orbs.get_mut(room) else { return };
        orb.assigning = None;
        let phase = std::mem::replace(&mut orb.phase, OrbPhase::Queued { told: None });
        let OrbPhase::Starting { generation, live } = phase else {
            orb.phase = phase;
            return;
        };
        let gpu = orb.gpu.take();
        for kind in TimerKind::PROCESS {
            self.cancel(room, kind);
        }
        self.note(room, Note::WarmDiscarded { generation });
        let key = self.warm.next_key();
        self.create_warm_entry(&key);
        if let Some(entry) = self.orbs.get_mut(&key) {
            entry.phase = OrbPhase::Starting { generation, live };
            entry.gpu = gpu.clone();
        }
        let launch = OrbLaunch {
            room: key.clone(),
            session: String::new(),
            coach: None,
            client: None,
            gpu,
            warm: true,
        };
        self.push(Action::Assign { generation, launch });
        self.begin_stop(&key, StopRequest::internal(StopReason::Unresponsive), now);
        self.try_start(room, now);
    }

    /// A member said `orb_ready`, a room orb's word: the program ignores `--warm`.
    pub(super) fn warm_said_ready(&mut self, now: Instant) {
        self.disable_pool(
            "a warm orb said orb_ready in no room: the orb program ignores --warm (e.g. the old Node orb)",
            now,
        );
    }

    /// A member's ready timeout: if no member ever said `orb_warm`, the program cannot be warm
    /// (else this one is only late: a failure, as for any orb).
    pub(super) fn warm_ready_due(&mut self, now: Instant) {
        if !self.warm.ever_warm {
            self.disable_pool(
                "no warm orb said orb_warm within ORB_READY_TIMEOUT: the orb program does not support --warm",
                now,
            );
        }
    }

    /// Turns the pool off for the server's life and stops its members.
    fn disable_pool(&mut self, why: &str, now: Instant) {
        if self.warm.disabled.is_some() {
            return;
        }
        warn!(why, "ORB_WARM_POOL disabled; rooms get cold orbs");
        self.warm.disabled = Some(why.to_owned());
        for key in self.warm.members.clone() {
            self.begin_stop(&key, StopRequest::internal(StopReason::ManualTermination), now);
        }
    }

    /// A member (or a discarded warm orb) is gone; its slot is already free.
    pub(super) fn warm_exited(
        &mut self,
        key: &str,
        generation: u64,
        code: Option<i32>,
        signal: Option<i32>,
        now: Instant,
    ) {
        let Some(orb) = self.orbs.remove(key) else { return };
        self.warm.members.retain(|k| k != key);
        for kind in TimerKind::ALL {
            self.cancel(key, kind);
        }
        let (ending, live, waiters) = match orb.phase {
            OrbPhase::Stopping {
                reason, live, waiters, ..
            } => (Some(reason), live, waiters),
            OrbPhase::Starting { live, .. } => (None, live, Vec::new()),
            OrbPhase::Ready { live, .. } => (None, Some(live), Vec::new()),
            _ => (None, None, Vec::new()),
        };
        let ran_for = live
            .as_ref()
            .map_or(Duration::ZERO, |l| now.saturating_duration_since(l.started));
        let exit = classify(code, signal, ending, live.as_ref().and_then(|l| l.announced.as_deref()));
        self.push(Action::Count(Tally::Exit(exit.cause)));
        self.note(key, Note::exited(generation, &exit, ending.is_some()));
        for waiter in waiters {
            self.push(Action::Reply {
                waiter,
                exit: Some(exit.clone()),
            });
        }
        // A warm orb never ends on its own: any end we did not ask for, and any
        // stop for a fault, is a failure.
        if ending.is_none() || !exit.normal {
            self.warm_failed(key, &exit.reason, ran_for, now);
        }
    }

    /// A member failed (or could not be started): backoff, or park the pool.
    pub(super) fn warm_failed(&mut self, key: &str, reason: &str, ran_for: Duration, now: Instant) {
        self.warm.failures += 1;
        self.orbs.remove(key);
        self.warm.members.retain(|k| k != key);
        let jitter = self.jitter.f64();
        match self.warm.policy.on_failure(now, ran_for, jitter) {
            RestartDecision::After(delay) => {
                info!(
                    key,
                    reason,
                    delay_ms = delay.as_millis() as u64,
                    "warm orb failed; refilling after a backoff"
                );
                self.warm.refill_at = Some(now + delay);
                self.arm(POOL_TIMERS, TimerKind::RestartDue, now + delay);
            }
            RestartDecision::Park { until } => {
                warn!(key, reason, "warm orbs keep failing; pool parked (rooms get cold orbs)");
                self.warm.parked_until = Some(until);
                self.arm(POOL_TIMERS, TimerKind::ParkExpired, until);
            }
        }
    }

    /// No member starts before `at` (a later backoff already armed stays).
    fn defer_refill(&mut self, at: Instant) {
        if self.warm.refill_at.is_none_or(|armed| armed < at) {
            self.warm.refill_at = Some(at);
            self.arm(POOL_TIMERS, TimerKind::RestartDue, at);
        }
    }

    /// The pool's own timers: the refill backoff, the park window.
    pub(super) fn pool_timer(&mut self, kind: TimerKind, now: Instant) {
        match kind {
            TimerKind::RestartDue => self.warm.refill_at = None,
            TimerKind::ParkExpired => {
                self.warm.parked_until = None;
                self.warm.policy.reset();
            }
            _ => {}
        }
        self.refill_pool(now);
    }

    /// An operator's reset: the failure history is cleared and a parked pool refills now.
    pub fn reset_pool(&mut self, now: Instant) {
        self.warm.policy.reset();
        self.warm.parked_until = None;
        self.warm.refill_at = None;
        self.cancel(POOL_TIMERS, TimerKind::RestartDue);
        self.cancel(POOL_TIMERS, TimerKind::ParkExpired);
        self.refill_pool(now);
    }

    /// The pool's figures.
    pub(super) fn warm_counts(&self) -> crate::orbs::WarmCounts {
        crate::orbs::WarmCounts {
            size: self.warm.target.min(self.rules.max_concurrent),
            ready: self
                .warm
                .members
                .iter()
                .filter(|k| matches!(self.orbs.get(*k).map(|o| &o.phase), Some(OrbPhase::Ready { .. })))
                .count(),
            assignments: self.warm.assignments,
            failures: self.warm.failures,
            parked: self.warm.parked_until.is_some(),
            disabled: self.warm.disabled.is_some(),
        }
    }

    /// The pool as operators see it.
    pub fn warm_pool(&self, now: Instant) -> WarmPoolView {
        let members: Vec<WarmMember> = self
            .warm
            .members
            .iter()
            .filter_map(|key| {
                let orb = self.orbs.get(key)?;
                let live = orb.phase.live();
                Some(WarmMember {
                    id: key.clone(),
                    pid: live.and_then(|l| l.pid),
                    state: orb.phase.state(),
                    uptime_ms: live.map_or(0, |l| now.saturating_duration_since(l.started).as_millis() as u64),
                    seated: false,
                })
            })
            .collect();
        let counts = self.warm_counts();
        WarmPoolView {
            size: counts.size,
            ready: counts.ready,
            starting: members.len().saturating_sub(counts.ready),
            seated: 0,
            assignments: counts.assignments,
            failures: counts.failures,
            parked_for_ms: self
                .warm
                .parked_until
                .map(|until| until.saturating_duration_since(now).as_millis() as u64),
            disabled: self.warm.disabled.clone(),
            members,
        }
    }
}
