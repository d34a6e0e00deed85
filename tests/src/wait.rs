//! Bounded polling: never a fixed sleep, never an unbounded wait.

use std::time::{Duration, Instant};

/// Polls `check` every 20 ms until it returns `Some` or `timeout` passes.
pub async fn until<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Like [`until`] for a condition; true when it held in time.
pub async fn until_true(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    until(timeout, || check().then_some(())).await.is_some()
}

/// [`until`] for code off the async runtime (a test's own thread, `block_in_place`).
pub fn until_blocking<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
