//! [`with_retries`]: a bounded number of attempts of one call, with backoff between them.

use std::future::Future;
use std::time::Duration;

use super::ProviderError;

/// Most attempts [`with_retries`] makes whatever it is asked (the first plus
/// `ORB_PROVIDER_RETRIES` ≤ 5).
pub const MAX_ATTEMPTS: u32 = 6;
/// Longest pause between two attempts, before jitter.
pub const MAX_DELAY: Duration = Duration::from_secs(2);

/// Runs `f` up to `attempts` times (1 to [`MAX_ATTEMPTS`]) until it succeeds or
/// fails with an error that is not [retryable](ProviderError::is_retryable);
/// returns the last result. Between attempts it waits [`retry_delay`]. Each
/// attempt bounds itself (the providers wrap every attempt in their timeout).
pub async fn with_retries<T, F, Fut>(attempts: u32, base_delay: Duration, mut f: F) -> Result<T, ProviderError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ProviderError>>,
{
    let attempts = attempts.clamp(1, MAX_ATTEMPTS);
    let mut attempt = 1;
    loop {
        match f().await {
            Err(error) if attempt < attempts && error.is_retryable() => {
                let pause = retry_delay(base_delay, attempt - 1, fastrand::f64());
                tracing::warn!(side = %error.side(), code = error.code(), %error, attempt, pause_ms = pause.as_millis(), "speech call failed; retrying");
                tokio::time::sleep(pause).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// The pause after failed retry `retry` (0-based): `base · 2^retry` capped at
/// [`MAX_DELAY`], scaled by `jitter` in `[0.5, 1.0]` (equal jitter).
pub fn retry_delay(base: Duration, retry: u32, jitter: f64) -> Duration {
    let exp = base.saturating_mul(2u32.saturating_pow(retry.min(16)));
    exp.min(MAX_DELAY).mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::voice::providers::Side;

    fn status(code: u16) -> ProviderError {
        ProviderError::Status {
            side: Side::Stt,
            status: code,
            body: String::new(),
        }
    }

    #[test]
    fn delays_double_then_cap() {
        let base = Duration::from_millis(100);
        assert_eq!(retry_delay(base, 0, 1.0), base);
        assert_eq!(retry_delay(base, 2, 1.0), Duration::from_millis(400));
        assert_eq!(retry_delay(base, 2, 0.0), Duration::from_millis(200));
        assert_eq!(retry_delay(base, 30, 1.0), MAX_DELAY);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_5xx_up_to_the_bound_and_never_4xx() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = with_retries(3, Duration::from_millis(10), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(status(502))
        })
        .await;
        assert!(matches!(result, Err(ProviderError::Status { status: 502, .. })));
        assert_eq!(calls.swap(0, Ordering::SeqCst), 3);

        let result: Result<(), _> = with_retries(3, Duration::from_millis(10), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(status(400))
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls.swap(0, Ordering::SeqCst), 1);

        let result = with_retries(100, Duration::from_millis(10), || async {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            if n < 2 { Err(status(500)) } else { Ok(n) }
        })
        .await;
        assert_eq!(result.ok(), Some(2), "succeeds on the third attempt");
        let result: Result<(), _> = with_retries(100, Duration::ZERO, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(status(500))
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 3 + MAX_ATTEMPTS, "at most MAX_ATTEMPTS");
    }
}
