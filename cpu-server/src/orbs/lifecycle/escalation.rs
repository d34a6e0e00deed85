//! The stop escalation: graceful → SIGTERM → SIGKILL, as a pure state.
//!
//! A graceful stop asks the orb (`shutdown_graceful`) and gives it
//! `STOP_GRACE`; then the process group gets SIGTERM (and SIGCONT, since a
//! stopped process handles SIGTERM only once continued) and `KILL_GRACE`;
//! then SIGKILL. A sick orb gets SIGKILL at once. Each step returns the
//! [`Order`] to deliver and the deadline of the next step; the lifecycle arms
//! the timer and calls [`Escalation::on_deadline`] when it fires.

use std::time::Duration;

use tokio::time::Instant;

use super::cause::{FirstStep, StopReason};
use crate::orbs::process_control::Order;

/// The two graces of a stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Graces {
    /// `shutdown_graceful` → SIGTERM (`STOP_GRACE`).
    pub stop: Duration,
    /// SIGTERM → SIGKILL (`KILL_GRACE`).
    pub kill: Duration,
}

/// Where a stop is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escalation {
    /// Not begun: the process has no handle yet (still being started).
    Pending,
    /// Asked to stop; SIGTERM at the deadline.
    Asked {
        /// When SIGTERM follows.
        deadline: Instant,
    },
    /// SIGTERM sent; SIGKILL at the deadline.
    Terminated {
        /// When SIGKILL follows.
        deadline: Instant,
    },
    /// SIGKILL sent: only the exit is left to wait for.
    Killed,
}

/// One step taken: what to deliver, and when the next step is due (if any).
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The order for the process.
    pub order: Order,
    /// When [`Escalation::on_deadline`] must be called next.
    pub next: Option<Instant>,
}

impl Escalation {
    /// Begins the stop for `reason` now.
    pub fn begin(&mut self, reason: StopReason, now: Instant, graces: Graces) -> Step {
        match reason.first_step() {
            FirstStep::KillNow => self.kill(),
            FirstStep::Graceful => {
                let deadline = now + graces.stop;
                *self = Self::Asked { deadline };
                Step {
                    order: Order::AskToStop {
                        reason: reason.told_to_orb(),
                        grace: graces.stop,
                    },
                    next: Some(deadline),
                }
            }
        }
    }

    /// The deadline of the current step passed: the next step, if any.
    pub fn on_deadline(&mut self, now: Instant, graces: Graces) -> Option<Step> {
        match *self {
            Self::Asked { deadline } if now >= deadline => Some(self.terminate(now, graces)),
            Self::Terminated { deadline } if now >= deadline => Some(self.kill()),
            _ => None,
        }
    }

    /// The orb could not be asked (no channel to it): SIGTERM now.
    pub fn cannot_ask(&mut self, now: Instant, graces: Graces) -> Option<Step> {
        matches!(self, Self::Asked { .. }).then(|| self.terminate(now, graces))
    }

    /// Straight to SIGKILL (a sick orb during a graceful stop; the server going away).
    pub fn kill(&mut self) -> Step {
        *self = Self::Killed;
        Step {
            order: Order::Kill,
            next: None,
        }
    }

    fn terminate(&mut self, now: Instant, graces: Graces) -> Step {
        let deadline = now + graces.kill;
        *self = Self::Terminated { deadline };
        Step {
            order: Order::Terminate,
            next: Some(deadline),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACES: Graces = Graces {
        stop: Duration::from_secs(5),
        kill: Duration::from_secs(2),
    };

    /// Rule: graceful ask, SIGTERM after STOP_GRACE, SIGKILL after KILL_GRACE, nothing after.
    #[test]
    fn graceful_then_term_then_kill() {
        let t0 = Instant::now();
        let mut stop = Escalation::Pending;
        let first = stop.begin(StopReason::ManualTermination, t0, GRACES);
        assert_eq!(
            first.order,
            Order::AskToStop {
                reason: "manual_termination",
                grace: GRACES.stop
            }
        );
        assert_eq!(first.next, Some(t0 + GRACES.stop));
        assert_eq!(
            stop.on_deadline(t0 + GRACES.stop / 2, GRACES),
            None,
            "not before the deadline"
        );
        let term = stop.on_deadline(t0 + GRACES.stop, GRACES).expect("term");
        assert_eq!(term.order, Order::Terminate);
        let kill = stop.on_deadline(t0 + GRACES.stop + GRACES.kill, GRACES).expect("kill");
        assert_eq!((kill.order, kill.next), (Order::Kill, None));
        assert_eq!(stop.on_deadline(t0 + Duration::from_secs(60), GRACES), None);
    }

    /// Rule: a sick orb is SIGKILLed at once; an orb that cannot be asked gets SIGTERM at once.
    #[test]
    fn sick_orbs_are_killed_and_unreachable_ones_terminated() {
        let t0 = Instant::now();
        let mut stop = Escalation::Pending;
        assert_eq!(stop.begin(StopReason::Unresponsive, t0, GRACES).order, Order::Kill);
        assert_eq!(stop, Escalation::Killed);
        let mut stop = Escalation::Pending;
        stop.begin(StopReason::SystemShutdown, t0, GRACES);
        let term = stop.cannot_ask(t0, GRACES).expect("term");
        assert_eq!((term.order, term.next), (Order::Terminate, Some(t0 + GRACES.kill)));
        assert_eq!(stop.cannot_ask(t0, GRACES), None, "only from the asked step");
    }
}
