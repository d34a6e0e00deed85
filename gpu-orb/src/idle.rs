//! The idle decision: when an orb with nobody in its room ends itself.
//!
//! Idle means nobody there. The countdown runs only while no human is present
//! (from the start when the room is empty, or from the moment the last human
//! goes) and is cancelled when one arrives; an orb never ends for idleness
//! while a human is in the room, whatever they send or do not send to it (a
//! call's humans talk over WebRTC media and targeted signalling the orb never
//! sees). Who is present is [`crate::presence::Presence`]'s business; this is
//! pure deadline arithmetic on `tokio::time::Instant`, which the session waits
//! on with `sleep_until`.

use std::time::Duration;

use tokio::time::Instant;

/// The idle countdown.
#[derive(Debug, Clone, Copy)]
pub struct IdleTimer {
    /// `None`: idleness never ends the orb (`--idle-timeout=0`).
    timeout: Option<Duration>,
    /// Since when nobody human has been present; `None` while someone is.
    empty_since: Option<Instant>,
}

impl IdleTimer {
    /// An orb starts counting at `now` as if nobody were there; the session
    /// tells it otherwise as soon as it learns who is present.
    pub fn new(timeout: Option<Duration>, now: Instant) -> Self {
        Self {
            timeout,
            empty_since: Some(now),
        }
    }

    /// Whether a human is present, as of `now`. The countdown starts on the
    /// first `false` after a `true` (repeats keep the original start) and is
    /// cancelled by any `true`.
    pub fn set_present(&mut self, humans_present: bool, now: Instant) {
        if humans_present {
            self.empty_since = None;
        } else if self.empty_since.is_none() {
            self.empty_since = Some(now);
        }
    }

    /// When the orb becomes idle, or `None` (someone is there, or no limit).
    pub fn deadline(&self) -> Option<Instant> {
        Some(self.empty_since? + self.timeout?)
    }

    /// Whether the orb is idle at `now`.
    pub fn expired(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|deadline| now >= deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN: Duration = Duration::from_secs(10);

    async fn advance(secs: u64) {
        tokio::time::advance(Duration::from_secs(secs)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_room_is_idle_after_the_timeout_from_the_start() {
        let start = Instant::now();
        let idle = IdleTimer::new(Some(TEN), start);
        assert_eq!(idle.deadline(), Some(start + TEN));
        advance(9).await;
        assert!(!idle.expired(Instant::now()));
        advance(1).await;
        assert!(idle.expired(Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_present_human_never_lets_the_orb_idle_however_silent() {
        let mut idle = IdleTimer::new(Some(TEN), Instant::now());
        idle.set_present(true, Instant::now());
        for _ in 0..100 {
            advance(60).await;
            assert!(!idle.expired(Instant::now()));
            assert_eq!(idle.deadline(), None);
            // Presence reported again (a peer-discovery, an IPC join) changes nothing.
            idle.set_present(true, Instant::now());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_countdown_starts_when_the_last_human_goes_and_stops_when_one_comes() {
        let start = Instant::now();
        let mut idle = IdleTimer::new(Some(TEN), start);
        advance(5).await;
        idle.set_present(true, Instant::now());
        advance(20).await;
        idle.set_present(false, Instant::now());
        let left = Instant::now();
        assert_eq!(idle.deadline(), Some(left + TEN));
        advance(4).await;
        idle.set_present(false, Instant::now());
        assert_eq!(idle.deadline(), Some(left + TEN), "a repeated 'nobody' keeps the start");
        advance(4).await;
        idle.set_present(true, Instant::now());
        advance(30).await;
        assert!(!idle.expired(Instant::now()), "cancelled by the human who came back");
        idle.set_present(false, Instant::now());
        let deadline = idle.deadline().expect("counting");
        tokio::time::sleep_until(deadline).await;
        assert!(idle.expired(Instant::now()));
        assert_eq!(Instant::now() - start, Duration::from_secs(5 + 20 + 8 + 30 + 10));
    }

    #[tokio::test(start_paused = true)]
    async fn no_timeout_means_never_idle() {
        let mut idle = IdleTimer::new(None, Instant::now());
        advance(86_400).await;
        assert_eq!(idle.deadline(), None);
        idle.set_present(true, Instant::now());
        idle.set_present(false, Instant::now());
        advance(86_400).await;
        assert!(!idle.expired(Instant::now()));
    }
}
