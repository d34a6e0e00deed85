//! The manager's decisions driven in-process with a paused clock: timers,
//! retries of orders and notifications that could not be delivered.

use std::sync::Mutex;

use futures_util::FutureExt;
use shared::settings::{DotEnv, Validator};

use super::*;
use crate::settings::OrbArgs;

/// A launcher that never starts anything (these tests need no process).
struct NoLauncher;

impl Launcher for NoLauncher {
    fn launch(&self, _: &OrbLaunch, _: &LaunchEnv) -> Result<SpawnedProcess, String> {
        Err("no launcher in this test".to_owned())
    }
    fn log_path(&self, room: &str) -> std::path::PathBuf {
        std::path::PathBuf::from(format!("/nonexistent/orb-{room}.log"))
    }
}

/// Records what the manager tells rooms; refuses the first `refuse` notifications.
#[derive(Default)]
struct Notes {
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

fn manager(args: OrbArgs, notes: Arc<Notes>) -> Manager {
    let dotenv = DotEnv::default();
    let mut v = Validator::new(&dotenv);
    let settings = OrbArgs {
        orb_spawn_on: Some("manual".to_owned()),
        ..args
    }
    .validate(&mut v, false, false);
    v.finish().expect("valid settings");
    let (counts, _) = watch::channel(OrbCounts::default());
    let spawner = Spawner::start(tokio::runtime::Handle::current(), 4).expect("spawner");
    let (manager, _reports) = Manager::new(
        settings,
        Arc::new(NoLauncher),
        notes,
        ProcessTable::default(),
        counts,
        spawner,
    );
    manager
}

fn joined(room: &str, user: &str, role: &str) -> RoomEvent {
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

/// Runs every timer that is due now.
fn fire_due(m: &mut Manager) {
    while let Some(Some(expired)) = m.timers.next().now_or_never() {
        m.on_expired(expired.into_inner());
    }
}

async fn advance_to(start: Instant, at_secs: u64, m: &mut Manager) {
    let target = start + Duration::from_secs(at_secs);
    tokio::time::advance(target.saturating_duration_since(Instant::now())).await;
    fire_due(m);
}

/// Rule (audit item 3): a room-empty timer of an earlier absence never stops
/// the orb of a later one early. Coach leaves at 0 s, is back at 10 s, blips
/// out at 58 s: the orb stays until 58 + 60 s, not 60 s.
#[tokio::test(start_paused = true)]
async fn a_stale_room_empty_timer_does_not_cut_a_later_absence_short() {
    let mut m = manager(
        OrbArgs {
            room_empty_grace: Some("60000".to_owned()),
            idle_timeout: Some("300000".to_owned()),
            ..OrbArgs::default()
        },
        Arc::default(),
    );
    let start = Instant::now();
    m.on_room_event(joined("r", "coach", "coach"));
    m.create_entry("r", None);
    m.on_room_event(left("r", "coach"));
    advance_to(start, 10, &mut m).await;
    m.on_room_event(joined("r", "coach", "coach"));
    advance_to(start, 58, &mut m).await;
    m.on_room_event(left("r", "coach"));
    advance_to(start, 61, &mut m).await;
    assert!(
        m.orbs.contains_key("r"),
        "the 0 s absence's timer must not stop the orb at 60 s"
    );
    advance_to(start, 119, &mut m).await;
    assert!(!m.orbs.contains_key("r"), "stopped 60 s after the last leave");
}

/// Rule (audit item 10): the timer queue stays bounded under join/leave churn:
/// one timer of each kind per room at most.
#[tokio::test(start_paused = true)]
async fn join_leave_churn_keeps_the_timer_queue_bounded() {
    let mut m = manager(OrbArgs::default(), Arc::default());
    m.on_room_event(joined("r", "coach", "coach"));
    m.create_entry("r", None);
    for _ in 0..1000 {
        m.on_room_event(left("r", "coach"));
        m.on_room_event(joined("r", "coach", "coach"));
    }
    m.on_room_event(left("r", "coach"));
    assert_eq!(m.timers.len(), 2, "one room-empty and one idle timer");
    assert_eq!(m.timer_keys.len(), 2);
}

/// Rule: IDLE_TIMEOUT=0 turns the idle limit off; the room-empty grace still applies.
#[tokio::test(start_paused = true)]
async fn idle_timeout_zero_sets_no_idle_timer() {
    let mut m = manager(
        OrbArgs {
            idle_timeout: Some("0".to_owned()),
            ..OrbArgs::default()
        },
        Arc::default(),
    );
    m.create_entry("admin-started", None);
    assert_eq!(m.timers.len(), 0, "no idle timer for an orb started in an empty room");
    m.on_room_event(joined("r", "coach", "coach"));
    m.create_entry("r", None);
    m.on_room_event(left("r", "coach"));
    assert_eq!(m.timers.len(), 1, "only the room-empty grace");
}

/// Rule (audit item 12): a memory-limit kill that cannot be queued is sent
/// again at the next sample, not marked as done.
#[tokio::test(start_paused = true)]
async fn a_memory_limit_kill_that_cannot_be_sent_is_retried() {
    let mut m = manager(
        OrbArgs {
            orb_memory_limit_mb: Some("10".to_owned()),
            ..OrbArgs::default()
        },
        Arc::default(),
    );
    m.on_room_event(joined("r", "coach", "coach"));
    m.create_entry("r", None);
    let (control, mut orders) = mpsc::channel(1);
    control.try_send(Control::Activity).expect("fill the channel");
    if let Some(entry) = m.orbs.get_mut("r") {
        entry.state = OrbState::Ready;
        entry.process = Some(Running {
            pid: 4242,
            generation: 1,
            started: Instant::now(),
            started_ms: 0,
            control,
        });
    }
    let sample = || Sample {
        room: "r".to_owned(),
        pid: 4242,
        cpu_percent: 1.0,
        rss_bytes: 64 * 1024 * 1024,
    };
    m.on_samples(vec![sample()]);
    assert!(matches!(orders.try_recv(), Ok(Control::Activity)));
    assert!(orders.try_recv().is_err(), "the kill did not fit");
    m.on_samples(vec![sample()]);
    assert!(
        matches!(orders.try_recv(), Ok(Control::Kill { ref reason }) if reason == "memory_limit"),
        "the kill is sent at the next sample"
    );
    assert_eq!(m.orbs.get("r").map(|e| e.state), Some(OrbState::Stopping));
}

/// Rule (audit item 12): a queue position that could not be told is told
/// again, not recorded as told.
#[tokio::test(start_paused = true)]
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
    m.slots_used = 1; // the one slot is taken
    m.on_room_event(joined("a", "coach", "coach"));
    m.create_entry("a", None);
    m.try_start("a");
    assert_eq!(
        m.orbs.get("a").and_then(|e| e.told_position),
        None,
        "dropped, so not told"
    );
    m.on_room_event(joined("b", "coach", "coach"));
    m.create_entry("b", None);
    m.try_start("b");
    let told = notes.told.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let positions: Vec<(String, u64)> = told
        .iter()
        .map(|(room, v)| (room.clone(), v["position"].as_u64().unwrap_or(0)))
        .collect();
    assert_eq!(positions, [("a".to_owned(), 1), ("b".to_owned(), 2)]);
}
