//! [`ElevenLabsTts`]: ElevenLabs `POST {base}/v1/text-to-speech/{voice_id}/stream
//! ?output_format=pcm_24000` with `xi-api-key`: raw 24 kHz 16-bit little-endian
//! mono PCM, streamed.

use serde_json::json;

use super::http::{client, start_pcm};
use super::{PcmStream, ProviderFuture, TTS_RATE, TextToSpeech};
use crate::voice::settings::{CallPolicy, ElevenLabsSettings};

/// Text-to-speech over ElevenLabs' streaming endpoint.
#[derive(Debug, Clone)]
pub struct ElevenLabsTts {
    http: reqwest::Client,
    settings: ElevenLabsSettings,
    call: CallPolicy,
}

impl ElevenLabsTts {
    /// A client for `settings`, bounded by `call`.
    pub fn new(settings: ElevenLabsSettings, call: CallPolicy) -> Result<Self, reqwest::Error> {
        Ok(Self {
            http: client(call.timeout)?,
            settings,
            call,
        })
    }
}

impl TextToSpeech for ElevenLabsTts {
    fn speak<'a>(&'a self, text: &'a str) -> ProviderFuture<'a, PcmStream> {
        Box::pin(async move {
            if text.trim().is_empty() {
                return Ok(PcmStream::from_chunks(TTS_RATE, Vec::new()));
            }
            let body = json!({"text": text, "model_id": self.settings.model});
            // The voice id is checked URL-safe by the settings.
            let url = format!(
                "{}/v1/text-to-speech/{}/stream?output_format=pcm_24000",
                self.settings.base_url, self.settings.voice_id
            );
            start_pcm(&self.call, TTS_RATE, || {
                self.http
                    .post(&url)
                    .header("xi-api-key", self.settings.api_key.expose())
                    .json(&body)
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

    fn tts(base: &str, call: CallPolicy) -> ElevenLabsTts {
        ElevenLabsTts::new(
            ElevenLabsSettings {
                base_url: base.to_owned(),
                api_key: Secret::new("xi-key"),
                voice_id: "voice123".into(),
                model: "eleven_flash_v2_5".into(),
            },
            call,
        )
        .expect("client")
    }

    #[tokio::test]
    async fn posts_to_the_voice_stream_and_yields_chunks_before_the_body_ends() {
        let (reply, release) = Reply::split(vec![3; 480], vec![4; 480]);
        let server = TestServer::start(vec![reply]).await;
        let provider = tts(&server.base, call(5000, 0));
        let mut stream = provider.speak("Hi").await.expect("stream");
        let first = tokio::time::timeout(Duration::from_secs(3), stream.next_chunk())
            .await
            .expect("first chunk while the server waits")
            .expect("chunk");
        assert_eq!(first, Some(vec![3; 480]));
        release.send(true).expect("release");
        assert_eq!(stream.collect().await.ok(), Some(vec![4; 480]));

        let requests = server.requests();
        let r = &requests[0];
        assert!(
            r.head
                .starts_with("POST /v1/text-to-speech/voice123/stream?output_format=pcm_24000 HTTP/1.1\r\n"),
            "{}",
            r.head
        );
        assert_eq!(r.header("xi-api-key"), Some("xi-key"));
        assert_eq!(r.header("authorization"), None);
        let body: Value = serde_json::from_slice(&r.body).expect("json");
        assert_eq!(body, serde_json::json!({"text":"Hi","model_id":"eleven_flash_v2_5"}));
    }

    #[tokio::test]
    async fn a_500_is_retried_a_401_is_not_and_a_hang_times_out() {
        let server = TestServer::start(vec![Reply::json(502, "bad gateway")]).await;
        let err = tts(&server.base, call(2000, 2)).speak("x").await.expect_err("502");
        assert_eq!((err.code(), server.requests().len()), ("tts_failed", 3), "{err}");
        let server = TestServer::start(vec![Reply::json(401, r#"{"detail":"invalid key"}"#)]).await;
        let err = tts(&server.base, call(2000, 2)).speak("x").await.expect_err("401");
        assert_eq!((err.code(), server.requests().len()), ("tts_failed", 1), "{err}");
        let server = TestServer::start(vec![Reply::Hang]).await;
        let err = tts(&server.base, call(150, 0)).speak("x").await.expect_err("hang");
        assert_eq!((err.code(), server.requests().len()), ("tts_timeout", 1), "{err}");
    }
}
