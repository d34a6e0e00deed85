//! Reconnect delays: exponential backoff with jitter, capped.

use std::time::Duration;

/// First delay before jitter.
pub const BASE: Duration = Duration::from_millis(100);
/// Largest delay before jitter.
pub const CAP: Duration = Duration::from_secs(5);

/// The delay before reconnect attempt `attempt` (0-based): `BASE · 2^attempt`
/// capped at [`CAP`], then scaled by `jitter` in `[0.5, 1.0]` ("equal jitter"),
/// so that many orbs losing one server do not come back in lockstep.
pub fn delay(attempt: u32, jitter: f64) -> Duration {
    let exp = BASE.saturating_mul(2u32.saturating_pow(attempt.min(16)));
    let capped = exp.min(CAP);
    capped.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// [`delay`] with a random jitter.
pub fn random_delay(attempt: u32) -> Duration {
    delay(attempt, fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps() {
        assert_eq!(delay(0, 1.0), Duration::from_millis(100));
        assert_eq!(delay(1, 1.0), Duration::from_millis(200));
        assert_eq!(delay(3, 1.0), Duration::from_millis(800));
        assert_eq!(delay(6, 1.0), CAP);
        assert_eq!(delay(u32::MAX, 1.0), CAP);
    }

    #[test]
    fn jitter_stays_within_half_to_full() {
        assert_eq!(delay(0, 0.0), Duration::from_millis(50));
        for attempt in 0..10 {
            let d = random_delay(attempt);
            assert!(d >= delay(attempt, 0.0) && d <= delay(attempt, 1.0), "{attempt}: {d:?}");
        }
    }
}
