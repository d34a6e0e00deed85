//! What each timer does when it fires. A timer whose reason has passed
//! (the room filled up, the process changed) does nothing.

use tokio::time::Instant;
use tracing::{info, warn};

use super::*;

impl Lifecycle {
    pub(super) fn timer(&mut self, timer: Timer, now: Instant) {
        let room = timer.room.as_str();
        if is_warm_key(room) && !self.orbs.contains_key(room) {
            return self.pool_timer(timer.kind, now);
        }
        let Some(orb) = self.orbs.get(room) else { return };
        let generation = orb.phase.generation();
        match timer.kind {
            TimerKind::EmptyGrace | TimerKind::Idle => {
                if self.humans(room) == 0 {
                    let reason = if timer.kind == TimerKind::EmptyGrace {
                        StopReason::RoomEmptyTimeout
                    } else {
                        StopReason::IdleTimeout
                    };
                    self.stop(room, reason, None, now);
                }
            }
            TimerKind::RestartDue | TimerKind::ParkExpired => {
                if !matches!(orb.phase, OrbPhase::Restarting { .. } | OrbPhase::Parked { .. }) {
                    return;
                }
                if timer.kind == TimerKind::ParkExpired
                    && let Some(orb) = self.orbs.get_mut(room)
                {
                    orb.policy.reset();
                }
                if self.humans(room) > 0 && !self.draining {
                    self.try_start(room, now);
                } else {
                    self.remove_entry(room);
                }
            }
            TimerKind::ReadyDue => {
                if matches!(orb.phase, OrbPhase::Starting { live: Some(_), .. }) {
                    warn!(%room, "orb sent no orb_ready in time; killing it");
                    if is_warm_key(room) {
                        self.warm_ready_due(now);
                    }
                    self.begin_stop(room, StopRequest::internal(StopReason::ReadyTimeout), now);
                }
            }
            TimerKind::Watchdog => {
                let OrbPhase::Ready { live, .. } = &orb.phase else {
                    return;
                };
                let silent = now.saturating_duration_since(live.last_heard);
                if silent >= self.rules.unresponsive_timeout {
                    warn!(%room, silent_ms = silent.as_millis() as u64, "orb unresponsive; killing it");
                    self.begin_stop(room, StopRequest::internal(StopReason::Unresponsive), now);
                } else {
                    let at = live.last_heard + self.rules.unresponsive_timeout;
                    self.arm(room, TimerKind::Watchdog, at);
                }
            }
            TimerKind::LifetimeEnd => {
                if matches!(
                    orb.phase,
                    OrbPhase::Starting { live: Some(_), .. } | OrbPhase::Ready { .. }
                ) {
                    info!(%room, "orb reached MAX_ORB_LIFETIME");
                    self.begin_stop(room, StopRequest::internal(StopReason::MaxLifetime), now);
                }
            }
            TimerKind::AssignDue => self.assign_due(room, now),
            TimerKind::Escalate => {
                let graces = self.rules.graces;
                let step = match self.orbs.get_mut(room).map(|o| &mut o.phase) {
                    Some(OrbPhase::Stopping { escalation, .. }) => escalation.on_deadline(now, graces),
                    _ => None,
                };
                if let (Some(step), Some(generation)) = (step, generation) {
                    if step.order == Order::Kill {
                        warn!(%room, "orb ignored SIGTERM; SIGKILL to its group");
                    } else {
                        info!(%room, "grace over; SIGTERM to the orb's group");
                    }
                    self.take_step(room, generation, step);
                }
            }
        }
    }
}
