//! Where a cluster job is: a job waiting in the scheduler's queue is not late to
//! become ready (its ready deadline starts again while it waits, and again when it
//! starts running), and the room hears why it waits; the record shows the job and
//! its node.

use tokio::time::Instant;

use super::*;

impl Lifecycle {
    pub(super) fn placed(&mut self, room: &str, placement: Placement, now: Instant) {
        let Some(orb) = self.orbs.get_mut(room) else { return };
        if orb.placement.as_ref() == Some(&placement) {
            return;
        }
        let was_pending = matches!(orb.placement, Some(Placement::Pending { .. }));
        let reason_changed = match (&orb.placement, &placement) {
            (Some(Placement::Pending { reason: old, .. }), Placement::Pending { reason, .. }) => old != reason,
            _ => true,
        };
        orb.placement = Some(placement.clone());
        let starting = matches!(orb.phase, OrbPhase::Starting { .. });
        match &placement {
            Placement::Pending { reason, .. } => {
                if starting {
                    self.arm(room, TimerKind::ReadyDue, now + self.rules.ready_timeout);
                    if let Some(life) = self.rules.max_lifetime {
                        self.arm(room, TimerKind::LifetimeEnd, now + life);
                    }
                }
                if reason_changed {
                    self.notify(room, Notice::ClusterQueued(reason.clone()));
                    self.note(room, Note::Placed { placement });
                }
            }
            Placement::Running { .. } => {
                if starting && was_pending {
                    self.arm(room, TimerKind::ReadyDue, now + self.rules.ready_timeout);
                    if let Some(life) = self.rules.max_lifetime {
                        self.arm(room, TimerKind::LifetimeEnd, now + life);
                    }
                }
                self.note(room, Note::Placed { placement });
            }
        }
    }
}
