//! A one-purpose HTTP server standing in for an OpenAI-compatible endpoint:
//! every request gets the same canned chat completion, and is recorded. It can
//! answer after a delay (a slow endpoint) and count how many requests it holds
//! at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The stub server; dropping it stops it.
pub struct ChatStub {
    base_url: String,
    requests: Arc<Mutex<Vec<String>>>,
    load: Arc<Load>,
    task: JoinHandle<()>,
}

/// Requests being answered now, and the most at once.
#[derive(Default)]
struct Load {
    now: AtomicUsize,
    most: AtomicUsize,
}

impl ChatStub {
    /// Serves `answer` as the assistant's message content on 127.0.0.1.
    pub async fn start(answer: &str) -> Self {
        Self::start_slow(answer, Duration::ZERO).await
    }

    /// Like [`ChatStub::start`], answering each request `delay` after reading it.
    pub async fn start_slow(answer: &str, delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base_url = format!("http://{}/v1", listener.local_addr().expect("addr"));
        let body = json!({"choices":[{"index":0,"message":{"role":"assistant","content":answer}}]}).to_string();
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let load = Arc::new(Load::default());
        let counted = load.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    continue;
                };
                let reply = reply.clone();
                let seen = seen.clone();
                let load = counted.clone();
                tokio::spawn(async move {
                    if let Ok(request) = tokio::time::timeout(Duration::from_secs(5), read_request(&mut socket)).await {
                        seen.lock().unwrap_or_else(|e| e.into_inner()).push(request);
                        let now = load.now.fetch_add(1, Ordering::SeqCst) + 1;
                        load.most.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(delay).await;
                        load.now.fetch_sub(1, Ordering::SeqCst);
                        let _ = socket.write_all(reply.as_bytes()).await;
                    }
                });
            }
        });
        Self {
            base_url,
            requests,
            load,
            task,
        }
    }

    /// The most requests the stub was answering at the same time.
    pub fn most_at_once(&self) -> usize {
        self.load.most.load(Ordering::SeqCst)
    }

    /// `http://127.0.0.1:PORT/v1`, for `OPENAI_BASE_URL`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The raw requests received (head and body).
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for ChatStub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_request(socket: &mut tokio::net::TcpStream) -> String {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = socket.read(&mut buf).await {
        if n == 0 {
            break;
        }
        data.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&data);
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .and_then(|v| v.trim().parse::<usize>().ok())
                })
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                break;
            }
        }
    }
    String::from_utf8_lossy(&data).into_owned()
}
