//! The two deadlines that end an orb normally: its lifetime and idleness.
//!
//! Pure deadline arithmetic on `tokio::time::Instant`; the session waits on
//! them with `sleep_until`, resetting the idle one on human activity.

use std::time::Duration;

use tokio::time::Instant;

/// Idle deadline: `last human activity + timeout`.
#[derive(Debug, Clone, Copy)]
pub struct IdleTimer {
    timeout: Duration,
    last_activity: Instant,
}

impl IdleTimer {
    /// Starts counting at `now` (an orb with nobody in the room is idle from the start).
    pub fn new(timeout: Duration, now: Instant) -> Self {
        Self {
            timeout,
            last_activity: now,
        }
    }

    /// Human activity at `now`: a human joined, was discovered, or sent something.
    pub fn touch(&mut self, now: Instant) {
        self.last_activity = self.last_activity.max(now);
    }

    /// When the orb becomes idle unless touched again.
    pub fn deadline(&self) -> Instant {
        self.last_activity + self.timeout
    }

    /// Whether the orb is idle at `now`.
    pub fn expired(&self, now: Instant) -> bool {
        now >= self.deadline()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn activity_pushes_the_deadline() {
        let start = Instant::now();
        let mut idle = IdleTimer::new(Duration::from_secs(10), start);
        assert_eq!(idle.deadline(), start + Duration::from_secs(10));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(!idle.expired(Instant::now()));
        idle.touch(Instant::now());
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(!idle.expired(Instant::now()), "touched at 6 s: idle at 16 s");
        tokio::time::sleep_until(idle.deadline()).await;
        assert!(idle.expired(Instant::now()));
        assert_eq!(Instant::now() - start, Duration::from_secs(16));
    }

    #[test]
    fn touch_never_moves_backwards() {
        let now = Instant::now();
        let mut idle = IdleTimer::new(Duration::from_secs(1), now + Duration::from_secs(5));
        idle.touch(now);
        assert_eq!(idle.deadline(), now + Duration::from_secs(6));
    }
}
