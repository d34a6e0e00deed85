//! The manager's half of an upgrade, in-process with a launcher whose orbs
//! can be handed over: one manager lets its orb go with its record, token and
//! timers; the next takes it over as the same process; a process the record
//! names but that did not come counts as exited.

use std::time::Duration;

use super::tests::{joined, settings};
use super::*;
use crate::orbs::handover::OrbsTakeover;
use crate::orbs::lifecycle::TimerKind;
use crate::orbs::orb_command::OrbLaunch;
use crate::orbs::process_control::{
    EventSink, HandedOver, HandoverPort, LaunchEnv, ProcessEvent, Started, StartedOrb, Supervision,
};
use crate::orbs::record::OrbState;
use crate::rooms::events::{RoomEventSender, room_event_channel};
use crate::settings::OrbArgs;

/// A launched (or adopted) orb the test drives.
struct Handed {
    pid: u32,
    events: EventSink,
    adopted: bool,
}

/// Starts nothing; each orb can be let go (unless `stuck`: its driver never
/// answers), and taken over.
struct HandingLauncher {
    seen: std::sync::mpsc::Sender<Handed>,
    stuck: bool,
}

impl HandingLauncher {
    fn started(&self, pid: u32, events: EventSink, adopted: bool) -> Started {
        let stuck = self.stuck;
        let (orders, _orders_rx) = mpsc::channel(4);
        let (port, request): (HandoverPort, _) = oneshot::channel();
        let _ = self.seen.send(Handed { pid, events, adopted });
        Started {
            orb: StartedOrb {
                pid: Some(pid),
                orders,
                supervision: Supervision::Ipc,
                handover: Some(port),
            },
            // The driver: lets its process go when asked (no descriptors here).
            driver: Box::pin(async move {
                if stuck {
                    let _held = request.await;
                    return tokio::time::sleep(Duration::from_secs(60)).await;
                }
                if let Ok(reply) = request.await {
                    let _ = reply.send(HandedOver {
                        pid: Some(pid),
                        unread: b"{\"type\":\"orb_he".to_vec(),
                        ..HandedOver::default()
                    });
                }
            }),
        }
    }
}

impl Launcher for HandingLauncher {
    fn start(&self, _launch: &OrbLaunch, _env: &LaunchEnv, events: EventSink) -> Result<Started, String> {
        Ok(self.started(4242, events, false))
    }

    fn adopt(&self, _room: &str, token: Option<&str>, orb: HandedOver, events: EventSink) -> Result<Started, String> {
        assert_eq!(orb.unread, b"{\"type\":\"orb_he", "what the codec had read comes along");
        assert!(token.is_some(), "its token comes along");
        Ok(self.started(orb.pid.unwrap_or_default(), events, true))
    }
}

async fn next(rx: &std::sync::mpsc::Receiver<Handed>) -> Handed {
    for _ in 0..500 {
        if let Ok(handed) = rx.try_recv() {
            return handed;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("nothing launched or adopted within 5 s");
}

/// A launcher that hands its orbs over (`stuck`: one whose drivers never let
/// go), and what it sees of each orb.
fn handing(stuck: bool) -> (Arc<HandingLauncher>, std::sync::mpsc::Receiver<Handed>) {
    let (seen_tx, seen) = std::sync::mpsc::channel();
    (Arc::new(HandingLauncher { seen: seen_tx, stuck }), seen)
}

/// The real actor over `launcher`, and where its room events come from.
fn actor(launcher: Arc<HandingLauncher>) -> (RoomEventSender, crate::orbs::OrbsHandle) {
    let (events_tx, events_rx) = room_event_channel();
    let orbs = crate::orbs::spawn_manager_with(
        settings(OrbArgs::default()),
        events_rx,
        Arc::new(super::tests::Notes::default()),
        launcher,
        Arc::default(),
    );
    (events_tx, orbs)
}

fn fresh(launcher: Arc<HandingLauncher>) -> (Manager, mpsc::Receiver<Report>) {
    let (table, _) = TableWriter::new();
    let (counts, _) = watch::channel(OrbCounts::default());
    let spawner = Spawner::start(tokio::runtime::Handle::current(), 4).expect("spawner");
    let settings = settings(OrbArgs {
        orb_spawn_on: Some("coach".to_owned()),
        ..OrbArgs::default()
    });
    Manager::new(
        &settings,
        launcher,
        Arc::new(super::tests::Notes::default()),
        table,
        counts,
        spawner,
        Arc::default(),
    )
}

/// Rule: a ready orb goes over with its process, session, token and timers;
/// afterwards the old manager holds nothing. The new one drives the same pid.
#[tokio::test]
async fn a_ready_orb_is_let_go_and_taken_over_as_the_same_process() {
    let (launcher, seen) = handing(false);
    let (events_tx, orbs) = actor(launcher.clone());
    events_tx.send(joined("r", "coach", "coach")).await.expect("send");
    let orb = next(&seen).await;
    orb.events.send(ProcessEvent::Ready).await;
    let mut record = None;
    for _ in 0..500 {
        record = orbs.get("r").await.filter(|r| r.state == OrbState::Ready);
        if record.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let record = record.expect("ready");
    let handover = orbs.hand_over().await.expect("handed over");
    let document = handover.document;
    assert_eq!(document.processes.len(), 1);
    let entry = &document.processes[0];
    assert_eq!((entry.room.as_str(), entry.pid), ("r", Some(4242)));
    let token = entry.token.clone().expect("its token");
    let kinds: Vec<TimerKind> = document.timers.iter().map(|t| t.kind).collect();
    assert!(kinds.contains(&TimerKind::Watchdog), "{kinds:?}");
    assert!(orbs.list().await.is_empty(), "the old manager holds no orb any more");
    assert!(orbs.hand_over().await.is_err(), "once only");

    let (mut next_manager, _reports) = fresh(launcher);
    let processes = document
        .processes
        .iter()
        .map(|entry| {
            let handed = HandedOver {
                pid: entry.pid,
                unread: b"{\"type\":\"orb_he".to_vec(),
                ..HandedOver::default()
            };
            (entry.clone(), handed)
        })
        .collect();
    next_manager.take_over(OrbsTakeover {
        document: document.clone(),
        processes,
    });
    let adopted = next(&seen).await;
    assert!(adopted.adopted && adopted.pid == 4242);
    let now = Instant::now();
    let after = next_manager.life.record("r", now, wall_ms()).expect("record");
    assert_eq!(
        (after.pid, after.state, &after.session),
        (Some(4242), OrbState::Ready, &record.session)
    );
    assert!(
        next_manager.credentials.verify("r", &token, now),
        "the token still lets the orb's socket in"
    );
    assert!(next_manager.timers.len() >= 2, "timers restored");
    assert_eq!(next_manager.handles.len(), 1);
}

/// Rule: a process the record names but that was not brought counts as exited.
#[tokio::test]
async fn a_process_that_did_not_come_counts_as_exited() {
    let (launcher, seen) = handing(false);
    let (mut old, _reports) = fresh(launcher.clone());
    old.on_room_event(joined("r", "coach", "coach"));
    // The launch's answer, as the spawner thread would send it.
    let (orders, _) = mpsc::channel(4);
    old.on_report(Report::Spawned {
        room: "r".into(),
        generation: 1,
        result: Ok(StartedOrb {
            pid: Some(5151),
            orders,
            supervision: Supervision::Ipc,
            handover: None,
        }),
    });
    let (snapshot, _) = old.life.export(Instant::now());
    let document = crate::orbs::handover::OrbsDocument {
        lifecycle: snapshot,
        ..Default::default()
    };
    let (mut next_manager, _reports) = fresh(launcher);
    next_manager.take_over(OrbsTakeover {
        document,
        processes: Vec::new(),
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    while let Ok(handed) = seen.try_recv() {
        assert!(!handed.adopted, "nothing adopted");
    }
    let record = next_manager.life.record("r", Instant::now(), wall_ms());
    assert!(
        record.as_ref().is_none_or(|r| r.pid.is_none()),
        "no process is supervised that did not come: {record:?}"
    );
    assert!(next_manager.handles.is_empty());
}

/// Rule: drivers that never let go hold the handover for one bound in all
/// (they were asked at once), not one per driver; their orbs are left out.
#[tokio::test]
async fn stuck_drivers_share_one_bound() {
    let (launcher, seen) = handing(true);
    let (events_tx, orbs) = actor(launcher);
    for room in ["r1", "r2", "r3"] {
        events_tx.send(joined(room, "coach", "coach")).await.expect("send");
        next(&seen).await.events.send(ProcessEvent::Ready).await;
    }
    for _ in 0..500 {
        if orbs.list().await.iter().filter(|r| r.state == OrbState::Ready).count() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let asked = std::time::Instant::now();
    let handover = orbs.hand_over().await.expect("handed over, without them");
    let took = asked.elapsed();
    assert!(handover.document.processes.is_empty(), "none let go");
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "one bound for all three: {took:?}"
    );
}
