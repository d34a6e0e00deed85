//! Per-connection and per-IP limits: a token bucket for message rate and a
//! counter of open sockets per IP address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

/// A token bucket: `rate` tokens per second, holding at most `rate` (one second of burst).
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `per_second` tokens at `now`.
    pub fn new(per_second: u32, now: Instant) -> Self {
        let rate = f64::from(per_second.max(1));
        Self {
            rate,
            tokens: rate,
            last: now,
        }
    }

    /// Takes one token at `now`; false when the bucket is empty (the message is refused).
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now.max(self.last);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Open room sockets per IP address, shared by the upgrade handler.
///
/// A small synchronous map behind a mutex, held only to bump a counter; each
/// accepted socket holds an [`IpSlot`] that gives its place back on drop, so
/// the count cannot leak whatever way the connection ends.
#[derive(Debug, Clone)]
pub struct IpLimiter {
    max: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One socket's place in the [`IpLimiter`]; released on drop.
#[derive(Debug)]
pub struct IpSlot {
    ip: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl IpLimiter {
    /// At most `max` sockets per address.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            open: Arc::default(),
        }
    }

    /// A slot for `ip`, or `None` when it already has `max` sockets open.
    pub fn acquire(&self, ip: IpAddr) -> Option<IpSlot> {
        let mut open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = open.entry(ip).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            ip,
            open: Arc::clone(&self.open),
        })
    }

    /// A slot for `ip` whatever it holds already: a socket handed over by an
    /// upgrade was admitted by the previous image and is counted, not refused.
    pub fn acquire_anyway(&self, ip: IpAddr) -> IpSlot {
        let mut open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *open.entry(ip).or_insert(0) += 1;
        IpSlot {
            ip,
            open: Arc::clone(&self.open),
        }
    }

    /// Sockets open from `ip` now.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        open.get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_allows_a_burst_then_refuses_then_refills() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(5, start);
        for i in 0..5 {
            assert!(bucket.try_take(start), "token {i}");
        }
        assert!(!bucket.try_take(start), "sixth in the same instant");
        assert!(
            !bucket.try_take(start + Duration::from_millis(100)),
            "half a token only"
        );
        assert!(
            bucket.try_take(start + Duration::from_millis(200)),
            "one token after 200 ms"
        );
        assert!(!bucket.try_take(start + Duration::from_millis(200)));
    }

    #[test]
    fn bucket_never_holds_more_than_one_second() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(3, start);
        let later = start + Duration::from_secs(3600);
        assert!((0..3).all(|_| bucket.try_take(later)));
        assert!(!bucket.try_take(later));
    }

    #[test]
    fn bucket_tolerates_time_going_backwards() {
        let start = Instant::now() + Duration::from_secs(10);
        let mut bucket = TokenBucket::new(1, start);
        assert!(bucket.try_take(start));
        assert!(!bucket.try_take(start - Duration::from_secs(5)));
        assert!(bucket.try_take(start + Duration::from_secs(1)));
    }

    #[test]
    fn ip_slots_are_counted_and_released() {
        let limiter = IpLimiter::new(2);
        let ip: IpAddr = [127, 0, 0, 1].into();
        let other: IpAddr = [127, 0, 0, 2].into();
        let a = limiter.acquire(ip).expect("first");
        let b = limiter.acquire(ip).expect("second");
        assert!(limiter.acquire(ip).is_none(), "third refused");
        assert!(limiter.acquire(other).is_some(), "other address unaffected");
        drop(a);
        assert_eq!(limiter.open_from(ip), 1);
        let _c = limiter.acquire(ip).expect("slot given back");
        drop(b);
        assert_eq!(limiter.open_from(ip), 1);
    }
}
