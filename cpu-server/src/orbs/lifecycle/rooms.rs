//! What happens in rooms: humans joining and leaving (the spawn trigger, the
//! room-empty and idle timers), and the AI's own signs of life there.

use shared::ipc::{ManagerToOrb, ParticipantJoined, ParticipantLeft};
use tokio::time::Instant;

use super::spawn_rule::{self, Role};
use super::*;

impl Lifecycle {
    /// `tell`: whether the room's orb hears of it (not for a human an upgrade
    /// handed over: a handed-over orb already knows them).
    pub(super) fn human_joined(&mut self, room: &str, user_id: String, role: &str, now: Instant, tell: bool) {
        let role = Role::parse(role);
        let people = self.people.entry(room.to_owned()).or_default();
        people.0.insert(user_id.clone(), role.clone());
        // Somebody is here: the room is neither empty nor idle any more.
        self.cancel(room, TimerKind::EmptyGrace);
        self.cancel(room, TimerKind::Idle);
        if tell {
            self.tell_orb(room, participant_joined(user_id, &role));
        }
        if spawn_rule::join_calls_for_orb(self.rules.spawn_on, &role) && !self.draining && !self.orbs.contains_key(room)
        {
            self.create_entry(room, None, now);
            self.try_start(room, now);
        }
    }

    pub(super) fn human_left(&mut self, room: &str, user_id: &str, now: Instant) {
        let Some(people) = self.people.get_mut(room) else {
            return;
        };
        people.0.remove(user_id);
        let empty = people.0.is_empty();
        if empty {
            self.people.remove(room);
        }
        let left = ManagerToOrb::ParticipantLeft(ParticipantLeft {
            user_id: user_id.to_owned(),
            extra: Default::default(),
        });
        self.tell_orb(room, left);
        if empty && self.orbs.contains_key(room) {
            self.schedule_empty_timers(room, now);
        }
    }

    /// The last human left (or an orb was started for an empty room): the
    /// orb stops after `ROOM_EMPTY_GRACE`, or after `IDLE_TIMEOUT` when that
    /// is shorter, unless somebody comes.
    pub(super) fn schedule_empty_timers(&mut self, room: &str, now: Instant) {
        self.arm(room, TimerKind::EmptyGrace, now + self.rules.room_empty_grace);
        if let Some(idle) = self.rules.idle_timeout {
            self.arm(room, TimerKind::Idle, now + idle);
        }
    }

    /// The room's AI joined: an orb supervised over its WebSocket is ready.
    pub(super) fn ai_joined(&mut self, room: &str, now: Instant) {
        let over_websocket = self
            .orbs
            .get(room)
            .and_then(|o| o.phase.live())
            .is_some_and(|l| l.supervision == Supervision::WebSocket);
        self.heard_from(room, now);
        if self.orbs.contains_key(room) {
            self.note(room, Note::AiJoined);
        }
        if over_websocket && let Some(generation) = self.orbs.get(room).and_then(|o| o.phase.generation()) {
            self.became_ready(room, generation, now);
        }
    }

    pub(super) fn heard_from(&mut self, room: &str, now: Instant) {
        if let Some(live) = self.orbs.get_mut(room).and_then(|o| o.phase.live_mut()) {
            live.last_heard = now;
        }
    }

    /// Passes `message` to the room's orb process, if one is started.
    pub(super) fn tell_orb(&mut self, room: &str, message: ManagerToOrb) {
        let Some(orb) = self.orbs.get(room) else { return };
        if let (Some(generation), Some(_)) = (orb.phase.generation(), orb.phase.live()) {
            self.order(generation, Order::Tell(message));
        }
    }

    /// The humans already in the room, for an orb that just became ready:
    /// its own count of who is present (it never idles while one is) starts
    /// complete, whatever its socket saw.
    pub(super) fn tell_orb_who_is_here(&mut self, room: &str) {
        let mut present: Vec<(String, Role)> = self
            .people
            .get(room)
            .map(|h| h.0.iter().map(|(id, role)| (id.clone(), role.clone())).collect())
            .unwrap_or_default();
        present.sort_by(|a, b| a.0.cmp(&b.0));
        for (user_id, role) in present {
            self.tell_orb(room, participant_joined(user_id, &role));
        }
    }
}

fn participant_joined(user_id: String, role: &Role) -> ManagerToOrb {
    ManagerToOrb::ParticipantJoined(ParticipantJoined {
        user_id,
        user_role: role.as_str().to_owned(),
        extra: Default::default(),
    })
}
