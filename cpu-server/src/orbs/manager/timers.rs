//! The lifecycle's timers on the runtime's clock: at most one per room and
//! kind (arming again moves it), so no stale timer fires and the queue stays
//! bounded under join/leave churn.

use std::collections::HashMap;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use tokio::time::Instant;
use tokio_util::time::{DelayQueue, delay_queue};

use crate::orbs::lifecycle::Timer;

/// Armed timers.
#[derive(Default)]
pub struct Timers {
    queue: DelayQueue<Timer>,
    keys: HashMap<Timer, delay_queue::Key>,
}

impl Timers {
    /// Arms `timer` to fire at `at`, replacing the same timer armed earlier.
    pub fn arm(&mut self, timer: Timer, at: Instant) {
        match self.keys.get(&timer) {
            Some(key) => self.queue.reset_at(key, at),
            None => {
                let key = self.queue.insert_at(timer.clone(), at);
                self.keys.insert(timer, key);
            }
        }
    }

    /// Cancels `timer` if it is armed.
    pub fn cancel(&mut self, timer: &Timer) {
        if let Some(key) = self.keys.remove(timer) {
            self.queue.remove(&key);
        }
    }

    /// Every armed timer and the time left until it fires (an upgrade's handover), by room and kind.
    pub fn export(&self, now: Instant) -> Vec<(Timer, u64)> {
        let mut armed: Vec<(Timer, u64)> = self
            .keys
            .iter()
            .map(|(timer, key)| {
                let left = self.queue.deadline(key).saturating_duration_since(now);
                (timer.clone(), left.as_millis() as u64)
            })
            .collect();
        armed.sort_by(|a, b| (&a.0.room, a.0.kind as u8).cmp(&(&b.0.room, b.0.kind as u8)));
        armed
    }

    /// Armed timers.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// No timer armed.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl Stream for Timers {
    type Item = Timer;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Timer>> {
        let this = &mut *self;
        match this.queue.poll_expired(cx) {
            Poll::Ready(Some(expired)) => {
                let timer = expired.into_inner();
                this.keys.remove(&timer);
                Poll::Ready(Some(timer))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
