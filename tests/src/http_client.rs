//! The one HTTP/1.1 client of the test kits: blocking, loopback only, bounded.
//!
//! Requests are written as text so that a test can send exactly the bytes it
//! means (odd headers, an upgrade, a half-broken request): [`send`] takes a raw
//! request; [`request`], [`get`] and [`upgrade`] build the usual ones. An answer
//! is complete at the end of a `101`'s head, after `Content-Length` bytes of
//! body, at a chunked body's last chunk, or when the server closes. A chunked
//! body is returned decoded.
//!
//! Not reqwest: the kits need raw and upgrade requests, a blocking call from
//! synchronous polls, and no TLS provider set-up; a hand-held 100 lines do all
//! three. Tests that must write malformed bytes use [`send`] or their own socket.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Bound of a connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound of a whole answer for [`get`] and [`upgrade`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// `GET path` (`Connection: close`, 5 s bound): status and body; `None` when
/// the server does not answer.
pub fn get(port: u16, path: &str) -> Option<(u16, String)> {
    request(port, "GET", path, &[], None, DEFAULT_TIMEOUT)
}

/// A WebSocket upgrade of `path` with extra header lines (`"Name: value"`):
/// the status and body of the answer (5 s bound); the socket is dropped.
pub fn upgrade(port: u16, path: &str, headers: &[String]) -> Option<(u16, String)> {
    let mut raw = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    );
    for header in headers {
        raw.push_str(header);
        raw.push_str("\r\n");
    }
    raw.push_str("\r\n");
    send(port, &raw, DEFAULT_TIMEOUT)
}

/// `method path` with extra header lines and an optional body (sent as
/// `application/json` with its `Content-Length`; `Connection: close`).
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[String],
    body: Option<&str>,
    timeout: Duration,
) -> Option<(u16, String)> {
    send(port, &request_text(method, path, headers, body), timeout)
}

/// The text of the request [`request`] sends.
fn request_text(method: &str, path: &str, headers: &[String], body: Option<&str>) -> String {
    let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for header in headers {
        raw.push_str(header);
        raw.push_str("\r\n");
    }
    match body {
        Some(body) => raw.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )),
        None if method == "GET" => raw.push_str("\r\n"),
        None => raw.push_str("Content-Length: 0\r\n\r\n"),
    }
    raw
}

/// The `Authorization: Bearer` header line of `token`.
pub fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

/// One answer: status, head (status line and headers) and decoded body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The status line and headers, without the blank line.
    pub head: String,
    /// The body (de-chunked).
    pub body: String,
}

/// `GET path` (5 s bound): the whole [`Answer`], head included.
pub fn get_answer(port: u16, path: &str) -> Option<Answer> {
    exchange(port, &request_text("GET", path, &[], None), DEFAULT_TIMEOUT)
}

/// Writes `raw` to 127.0.0.1:`port` and reads one answer within `timeout`:
/// its status and (decoded) body; `None` without a status line.
pub fn send(port: u16, raw: &str, timeout: Duration) -> Option<(u16, String)> {
    exchange(port, raw, timeout).map(|answer| (answer.status, answer.body))
}

/// Like [`send`], with the whole [`Answer`].
pub fn exchange(port: u16, raw: &str, timeout: Duration) -> Option<Answer> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), CONNECT_TIMEOUT).ok()?;
    stream.write_all(raw.as_bytes()).ok()?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !complete(&answer) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if is_chunked(head) {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Some(Answer {
        status,
        head: head.to_owned(),
        body,
    })
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

fn is_chunked(head: &str) -> bool {
    header(head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
}

/// Whether `raw` holds a whole answer (the connection may stay open).
fn complete(raw: &[u8]) -> bool {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    if head.starts_with("HTTP/1.1 101") {
        return true;
    }
    if is_chunked(head) {
        return body.starts_with("0\r\n\r\n") || body.contains("\r\n0\r\n\r\n");
    }
    header(head, "content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|len| body.len() >= len)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].strip_prefix("\r\n").unwrap_or(&rest[size..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_end_where_http_says_they_do() {
        assert!(complete(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
        ));
        assert!(complete(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"));
        assert!(!complete(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok"));
        assert!(!complete(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n"
        ));
        assert!(complete(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
        ));
        assert!(!complete(b"HTTP/1.1 200 OK\r\n\r\nuntil close"));
        assert_eq!(dechunk("2\r\nok\r\n3\r\n!!!\r\n0\r\n\r\n"), "ok!!!");
    }
}
