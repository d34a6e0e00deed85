//! [`OpenAiTts`]: OpenAI-compatible `POST {base}/audio/speech` with
//! `response_format: "pcm"`: raw 24 kHz 16-bit little-endian mono, streamed.

use serde_json::json;

use super::http::{client, start_pcm};
use super::{PcmStream, ProviderFuture, TTS_RATE, TextToSpeech};
use crate::voice::settings::{CallPolicy, OpenAiTtsSettings};

/// Text-to-speech over an OpenAI-compatible endpoint.
#[derive(Debug, Clone)]
pub struct OpenAiTts {
    http: reqwest::Client,
    settings: OpenAiTtsSettings,
    call: CallPolicy,
}

impl OpenAiTts {
    /// A client for `settings`, bounded by `call`.
    pub fn new(settings: OpenAiTtsSettings, call: CallPolicy) -> Result<Self, reqwest::Error> {
        Ok(Self {
            http: client(call.timeout)?,
            settings,
            call,
        })
    }
}

impl TextToSpeech for OpenAiTts {
    fn speak<'a>(&'a self, text: &'a str) -> ProviderFuture<'a, PcmStream> {
        Box::pin(async move {
            if text.trim().is_empty() {
                return Ok(PcmStream::from_chunks(TTS_RATE, Vec::new()));
            }
            let body = json!({
                "model": self.settings.model,
                "input": text,
                "voice": self.settings.voice,
                "response_format": "pcm",
            });
            let url = format!("{}/audio/speech", self.settings.base_url);
            start_pcm(&self.call, TTS_RATE, || {
                let request = self.http.post(&url).json(&body);
                match &self.settings.api_key {
                    Some(key) => request.bearer_auth(key.expose()),
                    None => request,
                }
            })
            .await
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::Value;
    use shared::secret::Secret;

    use super::*;
    use crate::voice::providers::test_server::{Reply, TestServer, call};

    fn tts(base: &str, call: CallPolicy) -> OpenAiTts {
        OpenAiTts::new(
            OpenAiTtsSettings {
                base_url: format!("{base}/v1"),
                api_key: Some(Secret::new("sk-tts")),
                model: "gpt-4o-mini-tts".into(),
                voice: "alloy".into(),
            },
            call,
        )
        .expect("client")
    }

    #[tokio::test]
    async fn posts_the_text_and_streams_chunks_before_the_body_ends() {
        let (reply, release) = Reply::split(vec![7; 1001], vec![9; 3000]);
        let server = TestServer::start(vec![reply]).await;
        let provider = tts(&server.base, call(5000, 0));
        let mut stream = provider.speak("Hello there.").await.expect("stream");
        assert_eq!(stream.rate(), 24_000);
        // The server holds the rest until released: this chunk can only have
        // come while the answer was still being written.
        let first = tokio::time::timeout(Duration::from_secs(3), stream.next_chunk())
            .await
            .expect("first chunk while the server waits")
            .expect("chunk")
            .expect("some");
        assert_eq!(first, vec![7; 1000], "whole samples; the odd byte waits");
        release.send(true).expect("release");
        let rest = stream.collect().await.expect("rest");
        assert_eq!(
            rest.len(),
            1 + 3000 - 1,
            "the carried byte joins, the final half sample is dropped"
        );
        assert_eq!((rest[0], rest[1]), (7, 9));

        let requests = server.requests();
        let r = &requests[0];
        assert!(r.head.starts_with("POST /v1/audio/speech HTTP/1.1\r\n"), "{}", r.head);
        assert_eq!(r.header("authorization"), Some("Bearer sk-tts"));
        let body: Value = serde_json::from_slice(&r.body).expect("json");
        assert_eq!(
            body,
            serde_json::json!({"model":"gpt-4o-mini-tts","input":"Hello there.","voice":"alloy","response_format":"pcm"})
        );
    }

    #[tokio::test]
    async fn a_500_is_retried_then_reported_as_tts_failed_and_a_400_is_not() {
        let server = TestServer::start(vec![Reply::json(500, "down")]).await;
        let err = tts(&server.base, call(2000, 1)).speak("x").await.expect_err("500");
        assert_eq!((err.code(), server.requests().len()), ("tts_failed", 2), "{err}");
        let server = TestServer::start(vec![Reply::json(400, r#"{"error":"bad voice"}"#)]).await;
        let err = tts(&server.base, call(2000, 3)).speak("x").await.expect_err("400");
        assert!(
            matches!(err, super::super::ProviderError::Status { status: 400, .. }),
            "{err}"
        );
        assert_eq!((err.code(), server.requests().len()), ("tts_failed", 1));
    }

    #[tokio::test]
    async fn a_hung_server_is_tts_timeout_and_a_stalled_stream_too() {
        let server = TestServer::start(vec![Reply::Hang]).await;
        let started = std::time::Instant::now();
        let err = tts(&server.base, call(200, 1)).speak("x").await.expect_err("hang");
        assert_eq!((err.code(), server.requests().len()), ("tts_timeout", 2), "{err}");
        assert!(started.elapsed() < Duration::from_secs(3));

        let (reply, _held) = Reply::split(vec![1; 100], vec![2; 100]);
        let server = TestServer::start(vec![reply]).await;
        let mut stream = tts(&server.base, call(300, 0)).speak("x").await.expect("stream");
        assert_eq!(stream.next_chunk().await.ok().flatten().map(|c| c.len()), Some(100));
        let err = stream.next_chunk().await.expect_err("stalled");
        assert_eq!(err.code(), "tts_timeout");
    }

    #[tokio::test]
    async fn blank_text_is_silence_without_a_call() {
        let stream = tts("http://127.0.0.1:9", call(100, 0))
            .speak("  ")
            .await
            .expect("empty");
        assert_eq!(stream.collect().await.ok(), Some(Vec::new()));
    }
}
