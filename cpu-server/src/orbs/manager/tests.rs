//! The shell around the lifecycle, in-process with a fake launcher: orders
//! reach the orb's handle, tokens follow processes, notices the registry
//! dropped are told again, the timer queue stays bounded.

use std::sync::Mutex;
use std::time::Duration;

use shared::room::RoomMessage;
use shared::settings::{DotEnv, Validator};

use super::*;
use crate::orbs::lifecycle::StopReason;
use crate::orbs::orb_command::OrbLaunch;
use crate::orbs::process_control::{EventSink, LaunchEnv, ProcessEvent, Started, StartedOrb, Supervision};
use crate::rooms::events::{RoomEvent, room_event_channel};
use crate::settings::OrbArgs;

/// One launch the fake launcher saw: what the test can drive.
struct Launched {
    launch: OrbLaunch,
    env: LaunchEnv,
    events: EventSink,
    orders: mpsc::Receiver<Order>,
}

/// A launcher that starts nothing: each launch is handed to the test.
struct FakeLauncher {
    launched: std::sync::mpsc::Sender<Launched>,
    refuse: bool,
}

impl Launcher for FakeLauncher {
    fn start(&self, launch: &OrbLaunch, env: &LaunchEnv, events: EventSink) -> Result<Started, String> {
        if self.refuse {
            return Err("no launcher in this test".to_owned());
        }
        let (orders_tx, orders) = mpsc::channel(4);
        let _ = self.launched.send(Launched {
            launch: launch.clone(),
            env: env.clone(),
            events,
            orders,
        });
        Ok(Started {
            orb: StartedOrb {
                pid: None,
                orders: orders_tx,
                supervision: Supervision::Ipc,
                handover: None,
            },
            driver: Box::pin(async {}),
        })
    }
}

/// Records what the manager tells rooms; refuses the first `refuse` notifications.
#[derive(Default)]
pub(super) struct Notes {
    refuse: Mutex<usize>,
    told: Mutex<Vec<(String, serde_json::Value)>>,
}

impl RoomNotifier for Notes {
    fn notify_room(&self, room: &str, message: RoomMessage) -> bool {
        let mut refuse = self.refuse.lock().unwrap_or_else(|p| p.into_inner());
        if *refuse > 0 {
            *refuse -= 1;
            return false;
        }
        let value: serde_json::Value = serde_json::from_str(&message.to_json()).unwrap_or_default();
        self.told
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((room.to_owned(), value));
        true
    }
}

pub(super) fn settings(args: OrbArgs) -> OrbSettings {
    let dotenv = DotEnv::default();
    let mut v = Validator::new(&dotenv);
    let settings = args.validate(&mut v, false, false);
    v.finish().expect("valid settings");
    settings
}

pub(super) fn joined(room: &str, user: &str, role: &str) -> RoomEvent {
    RoomEvent::HumanJoined {
        room: room.to_owned(),
        user_id: user.to_owned(),
        user_role: role.to_owned(),
        humans: 1,
    }
}

fn left(room: &str, user: &str) -> RoomEvent {
    RoomEvent::HumanLeft {
        room: room.to_owned(),
        user_id: user.to_owned(),
        humans: 0,
    }
}

/// Waits (bounded) for the fake launcher's next launch.
async fn next_launch(rx: &std::sync::mpsc::Receiver<Launched>) -> Launched {
    for _ in 0..500 {
        if let Ok(launched) = rx.try_recv() {
            return launched;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no launch within 5 s");
}

/// Rule: through the real actor, a coach's join launches an orb with its own
/// token; an operator's stop reaches the orb's handle as a graceful ask; the
/// exit answers the stop; the token dies with the process.
#[tokio::test]
async fn a_launched_orb_is_driven_through_its_handle() {
    let (launched_tx, launched) = std::sync::mpsc::channel();
    let launcher = Arc::new(FakeLauncher {
        launched: launched_tx,
        refuse: false,
    });
    let (events_tx, events_rx) = room_event_channel();
    let orbs = crate::orbs::spawn_manager_with(
        settings(OrbArgs::default()),
        events_rx,
        Arc::new(Notes::default()),
        launcher,
        Arc::default(),
    );
    events_tx.send(joined("r", "coach", "coach")).await.expect("send");
    let mut orb = next_launch(&launched).await;
    assert_eq!(orb.launch.coach.as_deref(), Some("coach"));
    let token = orb.env.auth_token.clone();
    assert!(orbs.verify_orb_token("r", &token).await);
    assert!(!orbs.verify_orb_token("r", "wrong").await);
    orb.events.send(ProcessEvent::Ready).await;
    let ready = async {
        for _ in 0..500 {
            if orbs
                .get("r")
                .await
                .is_some_and(|r| r.state == crate::orbs::OrbState::Ready)
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    };
    assert!(ready.await, "ready");
    let stop = tokio::spawn({
        let orbs = orbs.clone();
        async move { orbs.stop("r", StopReason::ManualTermination).await }
    });
    let order = loop {
        match tokio::time::timeout(Duration::from_secs(5), orb.orders.recv()).await {
            Ok(Some(Order::Tell(_))) => continue,
            other => break other,
        }
    };
    assert!(
        matches!(
            order,
            Ok(Some(Order::AskToStop {
                reason: "manual_termination",
                ..
            }))
        ),
        "{order:?}"
    );
    orb.events
        .send(ProcessEvent::Exited {
            code: Some(0),
            signal: None,
        })
        .await;
    let exit = stop.await.expect("join").expect("an exit");
    assert_eq!(exit.cause, crate::orbs::ExitCause::ManualTermination);
    assert!(
        !orbs.verify_orb_token("r", &token).await,
        "the token died with the process"
    );
    assert!(orbs.get("r").await.is_none());
}

fn manager(args: OrbArgs, notes: Arc<Notes>) -> Manager {
    let (launched, _) = std::sync::mpsc::channel();
    let (table, _) = TableWriter::new();
    let (counts, _) = watch::channel(OrbCounts::default());
    let spawner = Spawner::start(tokio::runtime::Handle::current(), 4).expect("spawner");
    let settings = settings(OrbArgs {
        orb_spawn_on: Some("coach".to_owned()),
        ..args
    });
    let launcher = Arc::new(FakeLauncher { launched, refuse: true });
    Manager::new(&settings, launcher, notes, table, counts, spawner, Arc::default()).0
}

/// Rule: a stop or kill that does not fit in the orb's order queue is still
/// delivered (a message for the orb may be dropped; a kill never is).
#[tokio::test]
async fn a_kill_that_does_not_fit_is_still_delivered() {
    let mut m = manager(OrbArgs::default(), Arc::default());
    let (orders_tx, mut orders) = mpsc::channel(1);
    m.handles.insert(
        1,
        Handle {
            room: "r".to_owned(),
            pid: None,
            orders: orders_tx,
            handover: None,
        },
    );
    m.apply(Action::Order {
        generation: 1,
        order: Order::Terminate,
    });
    m.apply(Action::Order {
        generation: 1,
        order: Order::Kill,
    });
    assert_eq!(orders.recv().await, Some(Order::Terminate));
    let kill = tokio::time::timeout(Duration::from_secs(5), orders.recv()).await;
    assert_eq!(kill, Ok(Some(Order::Kill)), "the kill is delivered once there is room");
}

/// Rule: a queue position the registry dropped is told again, not recorded as told.
#[tokio::test]
async fn a_queue_position_the_registry_dropped_is_told_again() {
    let notes = Arc::new(Notes {
        refuse: Mutex::new(1),
        ..Notes::default()
    });
    let mut m = manager(
        OrbArgs {
            max_concurrent_orbs: Some("1".to_owned()),
            ..OrbArgs::default()
        },
        Arc::clone(&notes),
    );
    m.on_room_event(joined("busy", "coach", "coach")); // takes the one slot
    m.on_room_event(joined("a", "coach", "coach")); // queued: the notice is refused
    m.on_room_event(joined("b", "coach", "coach"));
    let told = notes.told.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let positions: Vec<(String, u64)> = told
        .iter()
        .map(|(room, v)| (room.clone(), v["position"].as_u64().unwrap_or(0)))
        .collect();
    assert_eq!(positions, [("a".to_owned(), 1), ("b".to_owned(), 2)]);
}

/// Rule: the timer queue stays bounded under join/leave churn: one timer of
/// each kind per room at most.
#[tokio::test(start_paused = true)]
async fn join_leave_churn_keeps_the_timer_queue_bounded() {
    let mut m = manager(OrbArgs::default(), Arc::default());
    m.on_room_event(joined("r", "coach", "coach"));
    for _ in 0..1000 {
        m.on_room_event(left("r", "coach"));
        m.on_room_event(joined("r", "coach", "coach"));
    }
    m.on_room_event(left("r", "coach"));
    assert_eq!(m.timers.len(), 2, "one room-empty and one idle timer");
}

/// Rule: a warm orb's seat is kept on its process token alone (it may come before
/// the launch's answer), and only a warm entry's token opens one.
#[tokio::test]
async fn a_seat_is_kept_before_the_launch_is_answered() {
    let mut m = manager(OrbArgs::default(), Arc::default());
    let warm = m.credentials.issue("warm+1", 7);
    let room = m.credentials.issue("r1", 8);
    let (seat, mut receiver) = crate::rooms::seat::seat_channel();
    assert_eq!(m.keep_seat(&warm, seat).as_deref(), Some("warm+1"));
    assert!(m.seats.contains_key(&7), "kept with no handle yet");
    let (other, _) = crate::rooms::seat::seat_channel();
    assert_eq!(m.keep_seat(&room, other), None, "a room orb's token opens no seat");
    assert_eq!(m.keep_seat("nope", crate::rooms::seat::seat_channel().0), None);
    // The process exits: its seat is dropped, and the socket learns it will never be seated.
    m.on_report(Report::Process {
        room: "warm+1".to_owned(),
        generation: 7,
        event: ProcessEvent::Exited {
            code: Some(0),
            signal: None,
        },
    });
    assert!(!m.seats.contains_key(&7));
    assert!(receiver.try_recv().is_err());
}
