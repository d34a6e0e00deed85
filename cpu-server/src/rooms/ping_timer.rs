//! A room socket's ping deadline. Its timer is registered once per interval and
//! then left alone until it is due: a socket that reads a frame every few
//! microseconds does not poll (and re-register) its timer for each wake-up, the
//! task being woken by the timer itself when the deadline comes.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::time::{Duration, Instant, Sleep};

/// When the next ping is due; a missed one is delayed, never bunched.
#[derive(Debug)]
pub struct PingTimer {
    interval: Duration,
    /// The timer was polled (and holds the task's waker) since it was last reset.
    armed: bool,
    sleep: Pin<Box<Sleep>>,
}

impl PingTimer {
    /// First due one `interval` after `now`.
    pub fn new(interval: Duration, now: Instant) -> Self {
        Self {
            interval,
            armed: false,
            sleep: Box::pin(tokio::time::sleep_until(now + interval)),
        }
    }

    /// Ready once the deadline passed (the next one is then an interval away).
    /// An armed timer that has not fired is not polled (one load instead of a
    /// waker registration): it wakes the task, whose waker is the same on every
    /// poll, when it fires.
    pub fn poll_due(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.armed && !self.sleep.is_elapsed() {
            return Poll::Pending;
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.sleep.as_mut().reset(Instant::now() + self.interval);
                self.armed = false;
                Poll::Ready(())
            }
            Poll::Pending => {
                self.armed = true;
                Poll::Pending
            }
        }
    }

    /// Waits until due (see [`PingTimer::poll_due`]).
    pub async fn due(&mut self) {
        std::future::poll_fn(|cx| self.poll_due(cx)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A task that only waits on the timer is woken by it at each deadline, one
    /// interval apart, even though the armed timer is not polled in between.
    #[tokio::test(start_paused = true)]
    async fn an_idle_task_is_woken_at_each_deadline() {
        let start = Instant::now();
        let mut timer = PingTimer::new(Duration::from_secs(10), start);
        let mut fired = Vec::new();
        for _ in 0..3 {
            // Bounded: a timer that never wakes the task fails here instead of hanging.
            tokio::time::timeout(Duration::from_secs(11), timer.due())
                .await
                .expect("woken within the interval");
            fired.push(start.elapsed().as_secs());
        }
        assert_eq!(fired, [10, 20, 30]);
    }

    /// Wake-ups before the deadline (frames read) do not make it fire early; one
    /// wait, polled early and then woken by the timer, ends at the deadline; a
    /// late wake-up delays the next one instead of bunching.
    #[tokio::test(start_paused = true)]
    async fn early_wake_ups_wait_and_a_late_one_delays_the_next() {
        let start = Instant::now();
        let mut timer = PingTimer::new(Duration::from_secs(10), start);
        for _ in 0..20 {
            tokio::time::advance(Duration::from_millis(100)).await;
            let early = tokio::time::timeout(Duration::ZERO, timer.due()).await;
            assert!(early.is_err(), "not due before 10 s");
        }
        tokio::time::advance(Duration::from_secs(15)).await;
        tokio::time::timeout(Duration::ZERO, timer.due())
            .await
            .expect("due at once, late");
        assert_eq!(start.elapsed().as_secs(), 17);
        tokio::time::timeout(Duration::from_secs(11), timer.due())
            .await
            .expect("due again 10 s after the late one");
        assert_eq!(start.elapsed().as_secs(), 27);
    }
}
