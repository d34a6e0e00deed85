//! Wall-clock time as the wire carries it: milliseconds (or seconds) since
//! the Unix epoch, for timestamps in messages, JWT expiry and snapshots.
//!
//! Durations and timers never use this (they use `tokio::time::Instant`):
//! the wall clock may jump.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch; 0 if the clock is before it.
pub fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Seconds since the Unix epoch; 0 if the clock is before it.
pub fn epoch_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_and_milliseconds_agree_and_are_after_2023() {
        let (secs, ms) = (epoch_secs(), epoch_ms());
        assert!(secs > 1_700_000_000, "{secs}");
        assert!(ms / 1000 >= secs && ms / 1000 - secs <= 1, "{ms} vs {secs}");
    }
}
