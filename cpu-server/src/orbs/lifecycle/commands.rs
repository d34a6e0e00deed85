//! Operator commands: start a room's orb, stop it, reset a parked one, drain
//! for server shutdown.

use tokio::time::Instant;

use super::*;

/// What a spawn request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpawnAnswer {
    /// A new orb is starting.
    Created,
    /// The room already had one.
    Existing,
    /// Waiting for a slot.
    Queued,
}

impl Lifecycle {
    /// An operator's start of a room's orb (or the existing one).
    pub fn spawn(&mut self, room: &str, session: Option<String>, now: Instant) -> Result<SpawnAnswer, String> {
        if self.draining {
            return Err("server is shutting down".to_owned());
        }
        if self.orbs.contains_key(room) {
            return Ok(SpawnAnswer::Existing);
        }
        self.create_entry(room, session, now);
        self.try_start(room, now);
        self.refill_pool(now);
        Ok(match self.orbs.get(room).map(|o| &o.phase) {
            Some(OrbPhase::Queued { .. }) => SpawnAnswer::Queued,
            _ => SpawnAnswer::Created,
        })
    }

    /// Stops the room's orb for `reason`; `waiter` hears how it ended
    /// (`None` when the room had no orb). An orb with no process (queued,
    /// restarting, parked) is forgotten at once.
    pub fn stop(&mut self, room: &str, reason: StopReason, waiter: Option<WaiterId>, now: Instant) {
        let request = StopRequest {
            reason,
            waiter,
            origin: None,
        };
        self.stop_for(room, request, now);
    }

    /// [`Lifecycle::stop`] with who asked (for the timeline).
    pub fn stop_for(&mut self, room: &str, request: StopRequest, now: Instant) {
        let StopRequest { reason, waiter, origin } = request;
        if !self.orbs.contains_key(room) {
            if let Some(waiter) = waiter {
                self.push(Action::Reply { waiter, exit: None });
            }
            return;
        }
        if self.begin_stop(room, request, now) {
            return;
        }
        let asked = Note::StopAsked {
            reason,
            origin: origin.map(Into::into),
            silent_ms: None,
        };
        self.note(room, asked);
        self.note(room, Note::Ended { told_room: None });
        self.remove_entry(room);
        if let Some(waiter) = waiter {
            let exit = ExitRecord {
                code: None,
                signal: None,
                cause: reason.cause(),
                reason: reason.label().to_owned(),
                normal: true,
            };
            self.push(Action::Reply {
                waiter,
                exit: Some(exit),
            });
        }
    }

    /// Clears a room's crash-loop history; a parked orb starts again now.
    pub fn reset(&mut self, room: &str, now: Instant) -> Result<(), String> {
        let orb = self
            .orbs
            .get_mut(room)
            .ok_or_else(|| format!("no orb for room {room}"))?;
        orb.policy.reset();
        if matches!(orb.phase, OrbPhase::Parked { .. }) {
            // The operator wants the orb back now: no park timer any more.
            orb.phase = OrbPhase::Restarting { due: now };
            self.cancel(room, TimerKind::ParkExpired);
            self.try_start(room, now);
        }
        Ok(())
    }

    /// Server shutdown: no new orbs; queued ones are forgotten. Returns the
    /// rooms (and warm pool entries) whose orbs must now be stopped.
    pub fn drain(&mut self) -> Vec<String> {
        self.draining = true;
        for room in std::mem::take(&mut self.queue) {
            self.remove_entry(&room);
        }
        let mut all: Vec<String> = self.orbs.keys().cloned().collect();
        all.sort();
        all
    }

    /// Every room with an orb (warm pool entries are not rooms: [`Lifecycle::warm_pool`]).
    pub fn rooms(&self) -> Vec<String> {
        let mut rooms: Vec<String> = self.orbs.keys().filter(|k| !is_warm_key(k)).cloned().collect();
        rooms.sort();
        rooms
    }
}
