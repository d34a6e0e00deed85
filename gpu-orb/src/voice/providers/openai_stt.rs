//! [`OpenAiStt`]: OpenAI-compatible `POST {base}/audio/transcriptions`, the WAV
//! sent as a hand-built `multipart/form-data` body, `{"text": "…"}` back.

use serde_json::Value;

use super::http::{attempt, client, read_capped, send};
use super::{ProviderError, ProviderFuture, Side, SpeechToText, with_retries};
use crate::voice::settings::{CallPolicy, SttSettings};

/// Largest transcription answer read.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Speech-to-text over an OpenAI-compatible endpoint.
#[derive(Debug, Clone)]
pub struct OpenAiStt {
    http: reqwest::Client,
    settings: SttSettings,
    call: CallPolicy,
}

impl OpenAiStt {
    /// A client for `settings`, bounded by `call`.
    pub fn new(settings: SttSettings, call: CallPolicy) -> Result<Self, reqwest::Error> {
        Ok(Self {
            http: client(call.timeout)?,
            settings,
            call,
        })
    }

    async fn once(&self, content_type: &str, body: Vec<u8>) -> Result<String, ProviderError> {
        let mut request = self
            .http
            .post(format!("{}/audio/transcriptions", self.settings.base_url))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        if let Some(key) = &self.settings.api_key {
            request = request.bearer_auth(key.expose());
        }
        let timeout = self.call.timeout;
        attempt(Side::Stt, timeout, async {
            let response = send(Side::Stt, timeout, request).await?;
            let answer = read_capped(Side::Stt, timeout, response, MAX_ANSWER_BYTES).await?;
            let json: Value = serde_json::from_slice(&answer).map_err(|e| ProviderError::BadAnswer {
                side: Side::Stt,
                why: format!("not JSON: {e}"),
            })?;
            json["text"]
                .as_str()
                .map(|text| text.trim().to_owned())
                .ok_or_else(|| ProviderError::BadAnswer {
                    side: Side::Stt,
                    why: "no \"text\" in the answer".into(),
                })
        })
        .await
    }
}

impl SpeechToText for OpenAiStt {
    fn transcribe(&self, wav: Vec<u8>) -> ProviderFuture<'_, String> {
        Box::pin(async move {
            let mut fields = vec![("model", self.settings.model.as_str()), ("response_format", "json")];
            if let Some(language) = &self.settings.language {
                fields.push(("language", language.as_str()));
            }
            let (content_type, body) = multipart_body(&fields, &wav);
            with_retries(self.call.attempts(), self.call.base_delay, || {
                self.once(&content_type, body.clone())
            })
            .await
        })
    }
}

/// A `multipart/form-data` body: the text `fields`, then `wav` as the field
/// `file` (`audio.wav`, `audio/wav`). Returns the `Content-Type` (with its
/// boundary, random and absent from the content) and the body.
pub fn multipart_body(fields: &[(&str, &str)], wav: &[u8]) -> (String, Vec<u8>) {
    let mut boundary = new_boundary();
    // Bounded: a random 128-bit boundary is virtually never in the audio.
    for _ in 0..8 {
        if !contains(wav, boundary.as_bytes()) {
            break;
        }
        boundary = new_boundary();
    }
    let mut body = Vec::with_capacity(wav.len() + 512);
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"audio.wav\"\r\n\
             Content-Type: audio/wav\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(wav);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn new_boundary() -> String {
    format!("orb-{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use shared::secret::Secret;

    use super::*;
    use crate::voice::providers::test_server::{Reply, TestServer, call};

    fn stt(base: &str, call: CallPolicy) -> OpenAiStt {
        OpenAiStt::new(
            SttSettings {
                base_url: format!("{base}/v1"),
                api_key: Some(Secret::new("sk-stt")),
                model: "whisper-1".into(),
                language: Some("en".into()),
            },
            call,
        )
        .expect("client")
    }

    #[test]
    fn the_multipart_body_has_every_field_and_the_file() {
        let (content_type, body) = multipart_body(&[("model", "m1")], b"RIFFdata");
        let boundary = content_type
            .strip_prefix("multipart/form-data; boundary=")
            .expect("boundary");
        let text = String::from_utf8_lossy(&body);
        assert!(text.starts_with(&format!("--{boundary}\r\n")), "{text}");
        assert!(text.contains("name=\"model\"\r\n\r\nm1\r\n"), "{text}");
        assert!(
            text.contains("name=\"file\"; filename=\"audio.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFFdata\r\n"),
            "{text}"
        );
        assert!(text.ends_with(&format!("--{boundary}--\r\n")), "{text}");
    }

    #[tokio::test]
    async fn posts_the_wav_with_the_key_and_returns_the_text() {
        let server = TestServer::start(vec![Reply::json(200, r#"{"text":"  hello assistant "}"#)]).await;
        let text = stt(&server.base, call(2000, 2))
            .transcribe(b"RIFF-fake-wav".to_vec())
            .await;
        assert_eq!(text.ok().as_deref(), Some("hello assistant"));
        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        let r = &requests[0];
        assert!(
            r.head.starts_with("POST /v1/audio/transcriptions HTTP/1.1\r\n"),
            "{}",
            r.head
        );
        assert!(r.header("authorization") == Some("Bearer sk-stt"), "{}", r.head);
        assert!(
            r.header("content-type")
                .is_some_and(|t| t.starts_with("multipart/form-data; boundary=")),
            "{}",
            r.head
        );
        let body = String::from_utf8_lossy(&r.body);
        for part in [
            "name=\"model\"\r\n\r\nwhisper-1\r\n",
            "name=\"response_format\"\r\n\r\njson\r\n",
            "name=\"language\"\r\n\r\nen\r\n",
            "filename=\"audio.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFF-fake-wav\r\n",
        ] {
            assert!(body.contains(part), "{part:?} in {body}");
        }
    }

    #[tokio::test]
    async fn a_500_is_retried_then_reported_as_stt_failed() {
        let server = TestServer::start(vec![Reply::json(500, r#"{"error":"boom"}"#)]).await;
        let err = stt(&server.base, call(2000, 2))
            .transcribe(b"RIFF".to_vec())
            .await
            .expect_err("500");
        assert!(matches!(err, ProviderError::Status { status: 500, .. }), "{err}");
        assert_eq!(err.code(), "stt_failed");
        assert_eq!(server.requests().len(), 3, "first attempt + 2 retries");
    }

    #[tokio::test]
    async fn a_500_then_success_recovers() {
        let server = TestServer::start(vec![Reply::json(503, "busy"), Reply::json(200, r#"{"text":"ok"}"#)]).await;
        let text = stt(&server.base, call(2000, 2)).transcribe(b"RIFF".to_vec()).await;
        assert_eq!(text.ok().as_deref(), Some("ok"));
        assert_eq!(server.requests().len(), 2);
    }

    #[tokio::test]
    async fn a_400_is_not_retried_and_its_body_is_truncated() {
        let long = format!("{{\"error\":\"{}\"}}", "x".repeat(1000));
        let server = TestServer::start(vec![Reply::json(400, &long)]).await;
        let err = stt(&server.base, call(2000, 2))
            .transcribe(b"RIFF".to_vec())
            .await
            .expect_err("400");
        let ProviderError::Status { status, body, .. } = &err else {
            panic!("status: {err}")
        };
        assert_eq!(
            (*status, body.chars().count()),
            (400, crate::voice::providers::ERROR_BODY_CHARS)
        );
        assert_eq!(err.code(), "stt_failed");
        assert_eq!(server.requests().len(), 1, "a 4xx is never retried");
    }

    #[tokio::test]
    async fn a_hung_server_hits_the_timeout_on_every_attempt() {
        let server = TestServer::start(vec![Reply::Hang]).await;
        let started = std::time::Instant::now();
        let err = stt(&server.base, call(200, 1))
            .transcribe(b"RIFF".to_vec())
            .await
            .expect_err("hang");
        assert_eq!(err.code(), "stt_timeout", "{err}");
        assert_eq!(server.requests().len(), 2, "timeouts are retried");
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_bad_answer_is_stt_failed_and_not_retried() {
        let server = TestServer::start(vec![Reply::json(200, r#"{"transcript":"x"}"#)]).await;
        let err = stt(&server.base, call(2000, 2))
            .transcribe(b"RIFF".to_vec())
            .await
            .expect_err("no text");
        assert!(matches!(err, ProviderError::BadAnswer { .. }), "{err}");
        assert_eq!((err.code(), server.requests().len()), ("stt_failed", 1));
    }

    #[tokio::test]
    async fn a_refused_connection_is_stt_failed_after_the_retries() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        drop(listener);
        let err = stt(&base, call(1000, 1))
            .transcribe(b"RIFF".to_vec())
            .await
            .expect_err("refused");
        assert!(matches!(err, ProviderError::Request { .. }), "{err}");
        assert_eq!(err.code(), "stt_failed");
    }
}
