//! What happens in rooms (joins, leaves, AI activity) and the timers it sets:
//! room-empty grace, idle, restart backoff and park expiry.

use super::*;

impl Manager {
    pub(super) fn on_room_event(&mut self, event: RoomEvent) {
        #[cfg(debug_assertions)]
        failpoint_panic_on_join(&event);
        match event {
            RoomEvent::HumanJoined {
                room,
                user_id,
                user_role,
                ..
            } => {
                let people = self.people.entry(room.clone()).or_default();
                people.humans.insert(user_id.clone(), user_role.clone());
                // Somebody is here: the room is neither empty nor idle any more.
                self.cancel_timer(&room, TimerKind::EmptyGrace);
                self.cancel_timer(&room, TimerKind::Idle);
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
                    self.schedule_empty_timers(&room);
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

    /// The last human left: the orb stops after `ROOM_EMPTY_GRACE`, or after
    /// `IDLE_TIMEOUT` when that is shorter, unless somebody comes back.
    pub(super) fn schedule_empty_timers(&mut self, room: &str) {
        self.set_timer(room, TimerKind::EmptyGrace, self.settings.room_empty_grace);
        if let Some(idle_timeout) = self.settings.idle_timeout {
            self.set_timer(room, TimerKind::Idle, idle_timeout);
        }
    }

    pub(super) fn on_timer(&mut self, timer: Timer) {
        let room = timer.room.as_str();
        match timer.kind {
            TimerKind::EmptyGrace | TimerKind::Idle => {
                if self.humans(room) == 0 && self.orbs.contains_key(room) {
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
                if entry.process.is_some() || entry.launching.is_some() {
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
}

/// Fault injection for the tests of supervision's own failure (debug builds
/// only): `MUC_FAILPOINT=manager_panic_on_join` makes the manager panic at
/// the first human join, as an unexpected bug would.
#[cfg(debug_assertions)]
fn failpoint_panic_on_join(event: &RoomEvent) {
    if matches!(event, RoomEvent::HumanJoined { .. })
        && std::env::var("MUC_FAILPOINT").is_ok_and(|v| v == "manager_panic_on_join")
    {
        panic!("failpoint manager_panic_on_join");
    }
}
