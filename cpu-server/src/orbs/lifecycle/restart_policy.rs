//! Restart decisions: exponential backoff with jitter and the crash-loop limit.
//!
//! Pure: the caller passes the time, so tests need no sleeps.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// First backoff, before jitter.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Longest backoff.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Healthy run time after which the backoff starts again from the first step.
pub const HEALTHY_RESET: Duration = Duration::from_secs(60);

/// What to do after an unexpected exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartDecision {
    /// Restart after this delay.
    After(Duration),
    /// Too many restarts in the window: park until this instant.
    Park {
        /// When the oldest counted failure leaves the window.
        until: Instant,
    },
}

/// Failure history of one room's orb.
#[derive(Debug, Clone)]
pub struct RestartPolicy {
    max_restarts: u32,
    window: Duration,
    /// Instants of recent failures (within the window).
    failures: VecDeque<Instant>,
    /// Consecutive failures since the last healthy period.
    streak: u32,
    /// Restarts done in total (for the record).
    pub restarts: u32,
}

/// A policy's history as a document (an upgrade's handover): failures as ages.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PolicyState {
    /// Ages of the failures in the window, oldest first, ms.
    pub failures_ago_ms: Vec<u64>,
    /// Consecutive failures since the last healthy period.
    pub streak: u32,
    /// Restarts done in total.
    pub restarts: u32,
}

impl PolicyState {
    /// `policy`'s history at `now`.
    pub fn of(policy: &RestartPolicy, now: Instant) -> Self {
        Self {
            failures_ago_ms: policy
                .failures
                .iter()
                .map(|t| now.saturating_duration_since(*t).as_millis() as u64)
                .collect(),
            streak: policy.streak,
            restarts: policy.restarts,
        }
    }

    /// The policy with this history at `now`, under the current limits.
    pub fn policy(&self, max_restarts: u32, window: Duration, now: Instant) -> RestartPolicy {
        let mut policy = RestartPolicy::new(max_restarts, window);
        policy.failures = self
            .failures_ago_ms
            .iter()
            .filter_map(|ms| now.checked_sub(Duration::from_millis(*ms)))
            .collect();
        policy.streak = self.streak;
        policy.restarts = self.restarts;
        policy
    }
}

impl RestartPolicy {
    /// A policy allowing `max_restarts` restarts per `window`.
    pub fn new(max_restarts: u32, window: Duration) -> Self {
        Self {
            max_restarts,
            window,
            failures: VecDeque::new(),
            streak: 0,
            restarts: 0,
        }
    }

    /// Records a failure of a process that ran for `ran_for`, and decides.
    /// `jitter` is a number in `0.0..1.0` (random in production).
    pub fn on_failure(&mut self, now: Instant, ran_for: Duration, jitter: f64) -> RestartDecision {
        if ran_for >= HEALTHY_RESET {
            self.streak = 0;
        }
        while self
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            self.failures.pop_front();
        }
        self.failures.push_back(now);
        if self.failures.len() as u32 > self.max_restarts {
            let oldest = self.failures.front().copied().unwrap_or(now);
            return RestartDecision::Park {
                until: oldest + self.window,
            };
        }
        let step = FIRST_BACKOFF.saturating_mul(1u32 << self.streak.min(16));
        self.streak += 1;
        let base = step.min(MAX_BACKOFF);
        // Full backoff plus up to 50 % jitter on top, still capped.
        let delay = base.mul_f64(1.0 + jitter.clamp(0.0, 1.0) * 0.5).min(MAX_BACKOFF);
        RestartDecision::After(delay)
    }

    /// Counts a restart that was carried out.
    pub fn note_restart(&mut self) {
        self.restarts += 1;
    }

    /// Forgets the failure history (operator reset, or the park window passed).
    pub fn reset(&mut self) {
        self.failures.clear();
        self.streak = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_then_caps() {
        let mut p = RestartPolicy::new(100, Duration::from_secs(300));
        let now = Instant::now();
        let delays: Vec<Duration> = (0..10)
            .map(|_| match p.on_failure(now, Duration::ZERO, 0.0) {
                RestartDecision::After(d) => d,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(delays[0], Duration::from_millis(500));
        assert_eq!(delays[1], Duration::from_secs(1));
        assert_eq!(delays[2], Duration::from_secs(2));
        assert_eq!(*delays.last().expect("last"), MAX_BACKOFF);
        assert!(delays.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn first_backoff_with_jitter_is_at_most_a_second() {
        let mut p = RestartPolicy::new(5, Duration::from_secs(300));
        match p.on_failure(Instant::now(), Duration::ZERO, 0.999) {
            RestartDecision::After(d) => assert!(d <= Duration::from_secs(1), "{d:?}"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn parks_after_max_restarts_in_window() {
        let mut p = RestartPolicy::new(3, Duration::from_secs(300));
        let start = Instant::now();
        for i in 0..3 {
            let now = start + Duration::from_secs(i);
            assert!(
                matches!(p.on_failure(now, Duration::ZERO, 0.0), RestartDecision::After(_)),
                "failure {i}"
            );
        }
        let decision = p.on_failure(start + Duration::from_secs(3), Duration::ZERO, 0.0);
        assert_eq!(
            decision,
            RestartDecision::Park {
                until: start + Duration::from_secs(300)
            }
        );
    }

    #[test]
    fn failures_leave_the_window() {
        let mut p = RestartPolicy::new(2, Duration::from_secs(10));
        let start = Instant::now();
        p.on_failure(start, Duration::ZERO, 0.0);
        p.on_failure(start + Duration::from_secs(1), Duration::ZERO, 0.0);
        // 20 s later both old failures have left the window.
        let later = start + Duration::from_secs(20);
        assert!(matches!(
            p.on_failure(later, Duration::ZERO, 0.0),
            RestartDecision::After(_)
        ));
    }

    #[test]
    fn healthy_run_resets_the_backoff() {
        let mut p = RestartPolicy::new(100, Duration::from_secs(3600));
        let now = Instant::now();
        for _ in 0..5 {
            p.on_failure(now, Duration::ZERO, 0.0);
        }
        let after_healthy = p.on_failure(now, Duration::from_secs(61), 0.0);
        assert_eq!(after_healthy, RestartDecision::After(FIRST_BACKOFF));
    }

    #[test]
    fn zero_restarts_parks_at_once() {
        let mut p = RestartPolicy::new(0, Duration::from_secs(60));
        assert!(matches!(
            p.on_failure(Instant::now(), Duration::ZERO, 0.0),
            RestartDecision::Park { .. }
        ));
    }
}
