//! The HTTP plumbing the providers share: the client, one bounded attempt,
//! error statuses with a truncated body, and size-capped answers.

use std::future::Future;
use std::time::Duration;

use super::{ProviderError, Side};

/// Characters of an error answer's body kept in [`ProviderError::Status`].
pub const ERROR_BODY_CHARS: usize = 200;
/// Bytes of an error answer read at most (the rest is dropped unread).
const ERROR_BODY_BYTES: usize = 4096;

/// A client for one provider: connecting is bounded by `timeout`; the rest of
/// every attempt is bounded by [`attempt`] (a whole-request reqwest timeout
/// would also cut a long audio stream).
pub fn client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    // reqwest is built without a bundled crypto provider; use ring (a no-op if main already did).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().connect_timeout(timeout).build()
}

/// `work` bounded by `timeout`; running out is [`ProviderError::Timeout`].
pub async fn attempt<T>(
    side: Side,
    timeout: Duration,
    work: impl Future<Output = Result<T, ProviderError>>,
) -> Result<T, ProviderError> {
    match tokio::time::timeout(timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(ProviderError::Timeout { side, after: timeout }),
    }
}

/// Sends `request`; a non-2xx answer becomes [`ProviderError::Status`] with the
/// start of its body.
pub async fn send(
    side: Side,
    timeout: Duration,
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response, ProviderError> {
    let mut response = request
        .send()
        .await
        .map_err(|e| ProviderError::request(side, e, timeout))?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let mut body = Vec::new();
    // Bounded: at most ERROR_BODY_BYTES (plus one chunk) are read.
    while body.len() < ERROR_BODY_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    Err(ProviderError::Status {
        side,
        status: status.as_u16(),
        body: String::from_utf8_lossy(&body).chars().take(ERROR_BODY_CHARS).collect(),
    })
}

/// The whole body, refused as [`ProviderError::BadAnswer`] past `cap` bytes.
pub async fn read_capped(
    side: Side,
    timeout: Duration,
    mut response: reqwest::Response,
    cap: usize,
) -> Result<Vec<u8>, ProviderError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| ProviderError::request(side, e, timeout))?
    {
        if body.len() + chunk.len() > cap {
            return Err(ProviderError::BadAnswer {
                side,
                why: format!("the answer is larger than {cap} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Text-to-speech: `request()` sent with retries until its answer's status
/// arrives, then its body as a [`PcmStream`] at `rate` whose chunk gaps are
/// bounded by the same timeout.
pub async fn start_pcm(
    call: &crate::voice::settings::CallPolicy,
    rate: u32,
    request: impl Fn() -> reqwest::RequestBuilder,
) -> Result<super::PcmStream, ProviderError> {
    let timeout = call.timeout;
    let response = super::with_retries(call.attempts(), call.base_delay, || {
        attempt(Side::Tts, timeout, send(Side::Tts, timeout, request()))
    })
    .await?;
    Ok(super::PcmStream::from_response(rate, response, timeout))
}
