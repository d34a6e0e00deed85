//! The warm pool's rules, on the harness's clock.

use super::*;

fn pool_rules(size: usize, max_concurrent: usize) -> Rules {
    Rules {
        warm_pool: size,
        max_concurrent,
        ..rules()
    }
}

fn assigns(actions: &[Action]) -> Vec<(u64, String, bool)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Assign { generation, launch } => Some((*generation, launch.room.clone(), launch.warm)),
            _ => None,
        })
        .collect()
}

impl Harness {
    /// Starts the pool; returns its launches.
    fn start_pool(&mut self) -> Vec<(String, u64)> {
        let (actions, _) = self.command(|life, now| life.start(now));
        launches(&actions)
    }

    /// Pool entry `key`'s process `generation` starts and says `orb_warm`.
    fn warm(&mut self, key: &str, generation: u64) -> Vec<Action> {
        self.spawned(key, generation);
        self.process(key, generation, ProcessEvent::Warm)
    }

    fn pool(&self) -> WarmPoolView {
        self.life.warm_pool(self.now)
    }
}

/// Rule: the pool starts its orbs in no room; a room takes a ready one (no new
/// slot, no launch for the room), which must acknowledge, and the pool refills
/// [`REFILL_AFTER_ASSIGNMENT`] later (not while the assigned orb joins).
#[test]
fn a_room_takes_a_ready_warm_orb_and_the_pool_refills() {
    let mut h = Harness::new(pool_rules(1, 3));
    assert_eq!(h.start_pool(), [("warm+1".to_owned(), 1)]);
    h.warm("warm+1", 1);
    assert_eq!(h.pool().ready, 1);
    let joined = h.join("r", "coach", "coach");
    assert_eq!(assigns(&joined), [(1, "r".to_owned(), false)]);
    assert!(
        launches(&joined).is_empty(),
        "the room launches nothing; the refill waits"
    );
    assert!(launches(&h.advance_to(0.099)).is_empty(), "not before the refill delay");
    assert_eq!(
        launches(&h.advance_to(0.1)),
        [("warm+2".to_owned(), 2)],
        "then the pool refills"
    );
    assert_eq!(h.state("r"), Some(OrbState::Spawning));
    assert_eq!(h.armed("r", TimerKind::AssignDue), Some(2.0));
    h.process("r", 1, ProcessEvent::Assigned { room: "r".into() });
    assert_eq!(h.armed("r", TimerKind::AssignDue), None);
    assert_eq!(h.armed("r", TimerKind::ReadyDue), Some(30.1), "acknowledged at 0.1 s");
    h.ready("r", 1);
    assert_eq!(h.state("r"), Some(OrbState::Ready));
    assert_eq!(h.life.counts().active, 2, "the room's orb and the new warm one");
    assert_eq!(h.pool().assignments, 1);
    assert!(
        h.life.rooms() == ["r"],
        "pool entries are not rooms: {:?}",
        h.life.rooms()
    );
}

/// Rule: no `orb_assigned` in time → the orb is moved out and killed, and the
/// room starts again at once (here cold); a pool whose first assignment is
/// ignored is disabled.
#[test]
fn an_unacknowledged_assignment_is_discarded_and_the_room_goes_on() {
    let mut h = Harness::new(pool_rules(1, 3));
    h.start_pool();
    h.warm("warm+1", 1);
    h.join("r", "coach", "coach");
    let due = h.advance_to(2.5);
    assert_eq!(assigns(&due), [(1, "warm+3".to_owned(), true)], "moved out of the room");
    assert!(orders(&due).contains(&(1, Order::Kill)), "{due:?}");
    assert_eq!(
        launches(&due),
        [("warm+2".to_owned(), 2), ("r".to_owned(), 3)],
        "the pool refilled after its delay; the room gets a cold orb"
    );
    assert!(h.pool().disabled.is_some(), "the first assignment was ignored");
    assert!(
        h.pool().members.iter().all(|m| m.state == OrbState::Stopping),
        "the pool's members are stopped"
    );
    h.exited("warm+3", 1, None, Some(9));
    h.spawned("r", 3);
    h.ready("r", 3);
    assert_eq!(h.state("r"), Some(OrbState::Ready));
}

/// Rule: a warm orb that hangs is killed by the watchdog and never handed out;
/// a room arriving meanwhile gets a cold orb; the pool refills after its backoff.
#[test]
fn a_hung_warm_orb_is_never_assigned_and_is_replaced_after_a_backoff() {
    let mut h = Harness::new(pool_rules(1, 3));
    h.start_pool();
    h.warm("warm+1", 1);
    let silent = h.advance_to(31.0);
    assert_eq!(orders(&silent), [(1, Order::Kill)], "unresponsive");
    let joined = h.join("r", "coach", "coach");
    assert!(assigns(&joined).is_empty(), "a stopping warm orb is not handed out");
    assert_eq!(launches(&joined), [("r".to_owned(), 2)]);
    let gone = h.exited("warm+1", 1, None, Some(9));
    assert!(launches(&gone).is_empty(), "refill waits for the backoff");
    assert_eq!(h.pool().failures, 1);
    let refilled = h.advance_to(32.0);
    assert_eq!(launches(&refilled), [("warm+2".to_owned(), 3)]);
}

/// Rule: warm orbs that crash at once park the pool after ORB_MAX_RESTARTS
/// failures; rooms still get cold orbs; a reset refills it.
#[test]
fn a_crash_looping_pool_is_parked_and_rooms_start_cold() {
    let mut h = Harness::new(pool_rules(1, 3));
    h.start_pool();
    let mut generation = 1;
    let mut key = "warm+1".to_owned();
    for _ in 0..4 {
        h.spawned(&key, generation);
        h.exited(&key, generation, Some(3), None);
        let next = h.advance_to(h.now.saturating_duration_since(h.t0).as_secs_f64() + 40.0);
        match launches(&next).first() {
            Some((k, g)) => (key, generation) = (k.clone(), *g),
            None => break,
        }
    }
    let pool = h.pool();
    assert_eq!(pool.failures, 4, "{pool:?}");
    assert!(pool.parked_for_ms.is_some(), "{pool:?}");
    assert!(h.life.counts().warm.parked);
    let joined = h.join("r", "coach", "coach");
    assert_eq!(launches(&joined).len(), 1, "the room starts cold: {joined:?}");
    assert_eq!(launches(&joined)[0].0, "r");
    let (_, reset) = h.command(|life, now| life.reset_pool(now));
    assert_eq!(launches(&reset).len(), 1, "a reset refills the pool");
    assert!(h.pool().parked_for_ms.is_none());
}

/// Rule: rooms come first. A burst larger than the pool takes every ready warm
/// orb, then cold orbs while slots are free; the pool refills into free slots
/// only after its delay and only while nobody waits; once rooms wait, freed
/// slots go to them, not to the pool; capacity is never exceeded.
#[test]
fn a_burst_takes_the_pool_then_waits_for_slots() {
    let mut h = Harness::new(pool_rules(2, 3));
    assert_eq!(h.start_pool().len(), 2);
    h.warm("warm+1", 1);
    h.warm("warm+2", 2);
    for (i, room) in ["a", "b", "c", "d"].iter().enumerate() {
        h.join(room, &format!("coach{i}"), "coach");
        assert!(h.life.counts().active <= 3);
    }
    assert_eq!(
        assigns(&h.log),
        [(1, "a".to_owned(), false), (2, "b".to_owned(), false)]
    );
    // The third slot went to c, cold; d waits.
    assert_eq!(h.state("c"), Some(OrbState::Spawning));
    assert_eq!(h.state("d"), Some(OrbState::Queued));
    assert!(launches(&h.log).contains(&("c".to_owned(), 3)), "{:?}", h.log);
    let later = h.advance_to(0.5);
    assert!(launches(&later).is_empty(), "no refill while a room waits: {later:?}");
    // a's orb ends: d takes the slot, not the pool.
    h.process("a", 1, ProcessEvent::Assigned { room: "a".into() });
    h.ready("a", 1);
    let freed = h.exited("a", 1, Some(0), None);
    assert_eq!(launches(&freed), [("d".to_owned(), 4)]);
    assert_eq!(h.life.counts().active, 3);
}

/// Rule: a warm orb never given a room is recycled at its lifetime (not a failure).
#[test]
fn an_unassigned_warm_orb_is_recycled_at_its_lifetime() {
    let mut h = Harness::new(pool_rules(1, 3));
    h.start_pool();
    h.warm("warm+1", 1);
    let end = h.alive_to_pool("warm+1", 1, 3601.0);
    assert!(
        orders(&end)
            .iter()
            .any(|(g, o)| *g == 1 && matches!(o, Order::AskToStop { .. })),
        "{end:?}"
    );
    let gone = h.exited("warm+1", 1, Some(0), None);
    assert_eq!(launches(&gone), [("warm+2".to_owned(), 2)], "refilled at once");
    assert_eq!(h.pool().failures, 0);
}

/// Rule: a program that ignores `--warm` (it says `orb_ready` in no room, as the
/// old Node orb would) disables the pool; rooms get cold orbs.
#[test]
fn a_program_that_ignores_warm_disables_the_pool() {
    let mut h = Harness::new(pool_rules(1, 3));
    h.start_pool();
    h.spawned("warm+1", 1);
    let said = h.ready("warm+1", 1);
    assert!(h.pool().disabled.is_some());
    assert!(h.life.counts().warm.disabled);
    assert!(!orders(&said).is_empty(), "its orb is stopped: {said:?}");
    h.exited("warm+1", 1, Some(0), None);
    let joined = h.join("r", "coach", "coach");
    assert_eq!(launches(&joined), [("r".to_owned(), 2)]);
}

impl Harness {
    /// Heartbeats from pool entry `key` every 10 s until `secs`.
    fn alive_to_pool(&mut self, key: &str, generation: u64, secs: f64) -> Vec<Action> {
        let mut out = Vec::new();
        let mut t = self.now.saturating_duration_since(self.t0).as_secs_f64();
        while t + 10.0 < secs {
            t += 10.0;
            out.extend(self.advance_to(t));
            let beat = ProcessEvent::Heartbeat {
                metrics: Default::default(),
                delay_ms: None,
            };
            out.extend(self.process(key, generation, beat));
        }
        out.extend(self.advance_to(secs));
        out
    }
}

/// Rule: a room stopped while its warm orb is taking it stops that orb as any
/// (the assignment timeout no longer applies: it is not the orb's fault).
#[test]
fn a_room_stopped_during_the_assignment_does_not_blame_the_pool() {
    let mut h = Harness::new(pool_rules(1, 3));
    h.start_pool();
    h.warm("warm+1", 1);
    h.join("r", "coach", "coach");
    let (_, stopped) = h.command(|life, now| life.stop("r", StopReason::ManualTermination, None, now));
    assert!(!orders(&stopped).is_empty(), "the orb is asked to stop: {stopped:?}");
    assert_eq!(h.armed("r", TimerKind::AssignDue), None);
    let later = h.advance_to(3.0);
    assert!(assigns(&later).is_empty(), "nothing discarded: {later:?}");
    assert!(h.pool().disabled.is_none());
    h.exited("r", 1, Some(0), None);
    assert_eq!(h.pool().failures, 0);
}
