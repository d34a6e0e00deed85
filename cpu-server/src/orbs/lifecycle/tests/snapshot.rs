//! The lifecycle across an upgrade: exported by one image, imported by the
//! next on its own clock, every orb carries on with the same record.

use super::*;
use crate::orbs::lifecycle::snapshot::{Adopted, Blocker, LifeSnapshot};

/// Crosses an "exec": the document as JSON, into a new lifecycle whose clock
/// is `pause` later than the export.
fn across(h: &Harness, rules: Rules, pause: Duration) -> (Harness, Vec<Adopted>, LifeSnapshot) {
    let (snapshot, processes) = h.life.export(h.now);
    let json = serde_json::to_string(&snapshot).expect("json");
    let read: LifeSnapshot = serde_json::from_str(&json).expect("parse");
    assert_eq!(read, snapshot, "the document reads back as written");
    let mut next = Harness::new(rules);
    next.t0 = h.t0;
    next.now = h.now + pause;
    // The new image counts from the moment the document was written.
    let adopted = next.life.import(read, h.now);
    assert_eq!(
        adopted, processes,
        "the processes the new image adopts are the ones exported"
    );
    (next, adopted, snapshot)
}

/// Rule: a ready orb, a starting one, a queued room, a restarting one and a
/// parked one cross with their generation, pid, uptime, restart history, last
/// exit and queue position; slots stay held; new processes get new generations.
#[test]
fn every_settled_phase_crosses_with_its_record() {
    let one_slot = Rules {
        max_concurrent: 1,
        ..rules()
    };
    let mut h = Harness::new(one_slot.clone());
    h.ready_orb("crashed", 1);
    h.advance_to(100.0);
    // A crash: restarted after its backoff, its failure counted.
    h.exited("crashed", 1, Some(1), None);
    assert_eq!(h.state("crashed"), Some(OrbState::Restarting));
    h.join("starting", "coach", "coach");
    h.spawned("starting", 2);
    h.join("queued", "coach", "coach");
    assert_eq!(h.state("queued"), Some(OrbState::Queued));
    let blocker = h.life.handover_blocker();
    assert_eq!(blocker, None, "settled: {blocker:?}");
    h.advance_to(100.3);
    let before_crashed = h.life.record("crashed", h.now, 0).expect("record");
    let before_starting = h.life.record("starting", h.now, 0).expect("record");
    let queue_position = h.life.record("queued", h.now, 0).and_then(|r| r.queue_position);
    let (mut next, adopted, _) = across(&h, one_slot, Duration::from_millis(40));
    assert_eq!(
        adopted.iter().map(|a| (a.generation, a.pid)).collect::<Vec<_>>(),
        [(2, Some(1002))]
    );
    let after_crashed = next.life.record("crashed", next.now, 0).expect("record");
    assert_eq!(after_crashed.state, OrbState::Restarting);
    assert_eq!(after_crashed.last_exit, before_crashed.last_exit, "last exit kept");
    assert_eq!(after_crashed.session, before_crashed.session);
    let after_starting = next.life.record("starting", next.now, 0).expect("record");
    assert_eq!(after_starting.pid, Some(1002));
    assert_eq!(after_starting.state, OrbState::Spawning);
    assert_eq!(
        after_starting.uptime_ms,
        before_starting.uptime_ms + 40,
        "uptime carries on across the pause"
    );
    assert_eq!(
        next.life.record("queued", next.now, 0).and_then(|r| r.queue_position),
        queue_position,
        "queue position kept"
    );
    assert_eq!(next.life.counts().active, 1, "the starting process holds its slot");
    assert_eq!(next.life.counts().queued, 1);
    assert_eq!(
        next.life.export(next.now).0.next_generation,
        3,
        "no generation is given twice"
    );
    // The starting orb becomes ready in the new image, as the same process.
    next.ready("starting", 2);
    assert_eq!(next.state("starting"), Some(OrbState::Ready));
}

/// Rule: the restart history crosses, so a crash loop that began in one image
/// parks the orb in the next one at the same count.
#[test]
fn the_crash_loop_count_crosses() {
    let mut h = Harness::new(rules());
    h.ready_orb("r", 1);
    let mut generation = 1;
    for _ in 0..2 {
        h.exited("r", generation, Some(1), None);
        let due = h.armed("r", TimerKind::RestartDue).expect("restart armed");
        generation += 1;
        assert_eq!(launches(&h.advance_to(due)), [("r".to_owned(), generation)]);
        h.spawned("r", generation);
        h.ready("r", generation);
    }
    let restarts = h.life.record("r", h.now, 0).map(|r| r.restarts);
    assert_eq!(restarts, Some(2));
    let (mut next, _, _) = across(&h, rules(), Duration::from_millis(5));
    assert_eq!(next.life.record("r", next.now, 0).map(|r| r.restarts), restarts);
    next.feed(Event::HumanRestored {
        room: "r".into(),
        user_id: "coach".into(),
        role: "coach".into(),
    });
    // Two more failures: 4 in the window, over MAX_RESTARTS=3: parked.
    next.exited("r", generation, Some(1), None);
    let due = next.armed("r", TimerKind::RestartDue).expect("restart armed");
    generation += 1;
    assert_eq!(launches(&next.advance_to(due)), [("r".to_owned(), generation)]);
    next.spawned("r", generation);
    next.exited("r", generation, Some(1), None);
    assert_eq!(
        next.state("r"),
        Some(OrbState::Parked),
        "the history from before the upgrade counts"
    );
}

/// Rule: a stop, a launch or a warm orb's assignment under way must settle
/// first; warm members cross as members; orbs heard only over their WebSocket
/// are never handed over.
#[test]
fn what_cannot_cross_says_why() {
    let mut h = Harness::new(rules());
    h.join("r", "coach", "coach");
    assert!(matches!(h.life.handover_blocker(), Some(Blocker::Settling(why)) if why.contains("being launched")));
    h.spawned("r", 1);
    h.ready("r", 1);
    h.command(|life, now| life.stop("r", StopReason::ManualTermination, None, now));
    assert!(matches!(h.life.handover_blocker(), Some(Blocker::Settling(why)) if why.contains("stopping")));
    h.exited("r", 1, Some(0), None);
    assert_eq!(h.life.handover_blocker(), None);
    // A warm member crosses as a member, ready, and is given the next room.
    let warm_rules = Rules {
        warm_pool: 1,
        ..rules()
    };
    let mut warm = Harness::new(warm_rules.clone());
    let started = warm.command(|life, now| life.start(now)).0;
    let member = launches(&started);
    assert_eq!(member.len(), 1, "{started:?}");
    let key = member[0].0.clone();
    warm.spawned(&key, 1);
    warm.process(&key, 1, ProcessEvent::Warm);
    assert_eq!(warm.life.handover_blocker(), None);
    let (mut next, adopted, snapshot) = across(&warm, warm_rules, Duration::from_millis(5));
    assert_eq!(adopted.len(), 1);
    assert!(snapshot.warm.is_some_and(|w| w.members == [key.clone()]));
    let refill = next.command(|life, now| life.start(now)).0;
    assert!(launches(&refill).is_empty(), "the pool is full already: {refill:?}");
    let joined = next.join("after", "coach", "coach");
    assert!(
        joined.iter().any(|a| matches!(a, Action::Assign { generation: 1, .. })),
        "the handed-over member takes the next room: {joined:?}"
    );
    assert!(matches!(next.life.handover_blocker(), Some(Blocker::Settling(why)) if why.contains("taking the room")));
    let mut ws = Harness::new(rules());
    ws.join("w", "coach", "coach");
    ws.spawned_over_websocket("w", 1);
    assert!(matches!(ws.life.handover_blocker(), Some(Blocker::Never(_))));
}

/// Rule: once handed over, the old lifecycle holds no orb and starts none.
#[test]
fn after_the_handover_nothing_starts() {
    let mut h = Harness::new(rules());
    h.ready_orb("r", 1);
    h.life.forget_all();
    assert_eq!(h.life.counts().active, 0);
    assert!(h.life.rooms().is_empty());
    assert!(launches(&h.join("other", "coach", "coach")).is_empty());
}

/// Rule: a human an upgrade hands over is a join for the spawn rule, but the
/// room's handed-over orb is not told again.
#[test]
fn a_restored_human_is_not_announced_to_the_orb_again() {
    let mut h = Harness::new(rules());
    h.ready_orb("r", 1);
    let (mut next, _, _) = across(&h, rules(), Duration::ZERO);
    let told = next.feed(Event::HumanRestored {
        room: "r".into(),
        user_id: "coach".into(),
        role: "coach".into(),
    });
    let tells = |actions: &[Action]| {
        actions
            .iter()
            .filter(|a| {
                matches!(
                    a,
                    Action::Order {
                        order: Order::Tell(_),
                        ..
                    }
                )
            })
            .count()
    };
    assert_eq!(tells(&told), 0, "{told:?}");
    // A real join afterwards is told.
    let told = next.join("r", "client", "client");
    assert_eq!(tells(&told), 1, "{told:?}");
    // A room without an orb gets one for its restored coach.
    let launched = launches(&next.feed(Event::HumanRestored {
        room: "fresh".into(),
        user_id: "coach".into(),
        role: "coach".into(),
    }));
    assert_eq!(launched, [("fresh".to_owned(), 2)]);
}
