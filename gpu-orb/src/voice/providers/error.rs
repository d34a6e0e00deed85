//! [`ProviderError`]: why a speech call failed, and the stable code the room sees.

use std::fmt;
use std::time::Duration;

/// Which half of the voice pipeline a call belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Speech-to-text (`stt_*` codes).
    Stt,
    /// Text-to-speech (`tts_*` codes).
    Tts,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Stt => "speech-to-text",
            Self::Tts => "text-to-speech",
        })
    }
}

/// Why a speech provider call failed. Every variant knows its [`Side`]; see
/// [`ProviderError::code`] for what the room is told.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// An attempt (or, while streaming, the gap before the next chunk) took longer than allowed.
    #[error("{side} timed out after {} ms", after.as_millis())]
    Timeout {
        /// Which call.
        side: Side,
        /// The bound that was hit.
        after: Duration,
    },
    /// The endpoint answered an error status.
    #[error("{side} endpoint answered {status}: {body}")]
    Status {
        /// Which call.
        side: Side,
        /// HTTP status.
        status: u16,
        /// Start of the body (at most [`super::http::ERROR_BODY_CHARS`] characters).
        body: String,
    },
    /// The request could not be sent or its answer not read (connection refused, reset, ...).
    #[error("{side} request failed: {source}")]
    Request {
        /// Which call.
        side: Side,
        /// What reqwest saw.
        #[source]
        source: reqwest::Error,
    },
    /// The answer arrived but is unusable (not the documented shape, too large).
    #[error("{side} answer unusable: {why}")]
    BadAnswer {
        /// Which call.
        side: Side,
        /// What was wrong.
        why: String,
    },
}

impl ProviderError {
    /// A reqwest failure; its own timeouts count as [`ProviderError::Timeout`].
    pub fn request(side: Side, source: reqwest::Error, bound: Duration) -> Self {
        if source.is_timeout() {
            Self::Timeout { side, after: bound }
        } else {
            Self::Request { side, source }
        }
    }

    /// The call this error belongs to.
    pub fn side(&self) -> Side {
        match self {
            Self::Timeout { side, .. }
            | Self::Status { side, .. }
            | Self::Request { side, .. }
            | Self::BadAnswer { side, .. } => *side,
        }
    }

    /// The stable error code for `ai_status` errors:
    ///
    /// | code | meaning |
    /// |---|---|
    /// | `stt_timeout` | speech-to-text: every attempt hit `ORB_PROVIDER_TIMEOUT` (the last error was a timeout) |
    /// | `stt_failed` | speech-to-text: an error status, a connection error or an unusable answer |
    /// | `tts_timeout` | text-to-speech: the audio did not start, or stalled between chunks, within `ORB_PROVIDER_TIMEOUT` |
    /// | `tts_failed` | text-to-speech: an error status, a connection error or an unusable answer |
    pub fn code(&self) -> &'static str {
        match (self.side(), self) {
            (Side::Stt, Self::Timeout { .. }) => "stt_timeout",
            (Side::Stt, _) => "stt_failed",
            (Side::Tts, Self::Timeout { .. }) => "tts_timeout",
            (Side::Tts, _) => "tts_failed",
        }
    }

    /// Whether another attempt may succeed: timeouts, 5xx and connection
    /// errors yes; 4xx (the request itself is wrong, or the key) and unusable
    /// answers never.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Timeout { .. } => true,
            Self::Status { status, .. } => *status >= 500,
            Self::Request { source, .. } => {
                !(source.is_builder() || source.is_decode() || source.is_redirect() || source.is_status())
            }
            Self::BadAnswer { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_name_the_side_and_the_kind() {
        let timeout = |side| ProviderError::Timeout {
            side,
            after: Duration::from_millis(5),
        };
        let status = |side, status| ProviderError::Status {
            side,
            status,
            body: String::new(),
        };
        let bad = |side| ProviderError::BadAnswer { side, why: "x".into() };
        assert_eq!(timeout(Side::Stt).code(), "stt_timeout");
        assert_eq!(timeout(Side::Tts).code(), "tts_timeout");
        assert_eq!(status(Side::Stt, 500).code(), "stt_failed");
        assert_eq!(status(Side::Tts, 401).code(), "tts_failed");
        assert_eq!(bad(Side::Tts).code(), "tts_failed");
        assert!(timeout(Side::Stt).is_retryable());
        assert!(status(Side::Stt, 503).is_retryable());
        assert!(!status(Side::Stt, 429).is_retryable(), "never on a 4xx");
        assert!(!bad(Side::Stt).is_retryable());
        assert_eq!(timeout(Side::Tts).to_string(), "text-to-speech timed out after 5 ms");
    }
}
