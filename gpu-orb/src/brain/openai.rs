//! A brain backed by an OpenAI-compatible chat completions endpoint.

use serde_json::{Value, json};

use super::{Brain, BrainError};
use crate::settings::OpenAiSettings;

const SYSTEM_PROMPT: &str = "You are a helpful AI assistant taking part in a coaching video session. Answer briefly.";

/// `POST {base}/chat/completions` with a bearer key and a request timeout.
#[derive(Debug, Clone)]
pub struct OpenAiBrain {
    http: reqwest::Client,
    settings: OpenAiSettings,
}

impl OpenAiBrain {
    /// A client bounded by `settings.timeout` per request.
    pub fn new(settings: OpenAiSettings) -> Result<Self, BrainError> {
        // reqwest is built without a bundled crypto provider; use ring (a no-op if main already did).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .build()?;
        Ok(Self { http, settings })
    }
}

impl Brain for OpenAiBrain {
    async fn reply(&self, text: String) -> Result<String, BrainError> {
        let body = json!({
            "model": self.settings.model,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": text},
            ],
        });
        let response = self
            .http
            .post(format!("{}/chat/completions", self.settings.base_url))
            .bearer_auth(self.settings.api_key.expose())
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(BrainError::Status {
                status: status.as_u16(),
                body: body.chars().take(200).collect(),
            });
        }
        let answer: Value = response.json().await?;
        answer["choices"][0]["message"]["content"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .ok_or(BrainError::Empty)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use shared::secret::Secret;

    /// Serves one canned HTTP response on 127.0.0.1 and returns the request it read.
    async fn stub(status: &str, body: &str) -> (String, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let reply = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let task = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = socket.read(&mut buf).await.expect("read");
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request);
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().to_owned())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length || n == 0 {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            socket.write_all(reply.as_bytes()).await.expect("write");
            String::from_utf8_lossy(&request).into_owned()
        });
        (base, task)
    }

    fn brain(base: String) -> OpenAiBrain {
        OpenAiBrain::new(OpenAiSettings {
            base_url: base,
            api_key: Secret::new("sk-dummy"),
            model: "test-model".into(),
            timeout: Duration::from_secs(5),
        })
        .expect("client")
    }

    #[tokio::test]
    async fn posts_chat_completions_and_returns_the_content() {
        let (base, request) = stub(
            "200 OK",
            r#"{"choices":[{"message":{"role":"assistant","content":"stub says hi"}}]}"#,
        )
        .await;
        let answer = brain(base).reply("hello there".into()).await.expect("answer");
        assert_eq!(answer, "stub says hi");
        let request = request.await.expect("request");
        assert!(request.starts_with("POST /chat/completions "), "{request}");
        assert!(
            request.to_ascii_lowercase().contains("authorization: bearer sk-dummy"),
            "{request}"
        );
        assert!(
            request.contains("\"model\":\"test-model\"") && request.contains("hello there"),
            "{request}"
        );
    }

    #[tokio::test]
    async fn error_status_is_an_error() {
        let (base, _request) = stub("401 Unauthorized", r#"{"error":{"message":"bad key"}}"#).await;
        let err = brain(base).reply("x".into()).await.expect_err("401");
        assert!(matches!(err, BrainError::Status { status: 401, .. }), "{err}");
    }

    #[tokio::test]
    async fn unreachable_endpoint_fails_within_the_timeout() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        // Accepts the connection but never answers.
        let mut b = brain(base);
        b.settings.timeout = Duration::from_millis(300);
        b.http = reqwest::Client::builder()
            .timeout(b.settings.timeout)
            .build()
            .expect("client");
        let started = std::time::Instant::now();
        assert!(b.reply("x".into()).await.is_err());
        assert!(started.elapsed() < Duration::from_secs(3));
        drop(listener);
    }
}
