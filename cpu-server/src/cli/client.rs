//! A small HTTP/1.1 client for the running server's admin API: one request per
//! connection (`Connection: close`), every step under a timeout.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Time to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest answer read.
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens there.
    #[error("cannot connect to {0}: is cpu-server running on {0}? (the CLI uses ADMIN_HOST if set, else CPU_HOST)")]
    Refused(SocketAddr),
    /// Connect, write or read took too long.
    #[error("cpu-server at {0} did not answer in time")]
    Timeout(SocketAddr),
    /// Another I/O error.
    #[error("talking to cpu-server at {addr}: {source}")]
    Io {
        /// The server.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// Not an HTTP answer.
    #[error("cpu-server at {0} sent a malformed answer")]
    Malformed(SocketAddr),
}

/// An answer: status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Body (decoded when chunked).
    pub body: String,
}

/// The admin API of one server, with its token.
#[derive(Clone)]
pub struct AdminClient {
    /// Where the admin API listens.
    pub addr: SocketAddr,
    token: String,
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl AdminClient {
    /// A client of `addr` using `token`.
    pub fn new(addr: SocketAddr, token: String) -> Self {
        Self { addr, token }
    }

    /// Sends one request; `timeout` bounds the whole answer.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        timeout: Duration,
    ) -> Result<Answer, ClientError> {
        let addr = self.addr;
        let mut stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Err(_) => return Err(ClientError::Timeout(addr)),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Err(ClientError::Refused(addr)),
            Ok(Err(source)) => return Err(ClientError::Io { addr, source }),
            Ok(Ok(stream)) => stream,
        };
        let body = body.unwrap_or("");
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.token,
            body.len()
        );
        let exchange = async {
            stream.write_all(request.as_bytes()).await?;
            let mut raw = Vec::new();
            (&mut stream)
                .take(MAX_RESPONSE_BYTES as u64)
                .read_to_end(&mut raw)
                .await?;
            Ok::<_, std::io::Error>(raw)
        };
        let raw = match tokio::time::timeout(timeout, exchange).await {
            Err(_) => return Err(ClientError::Timeout(addr)),
            Ok(Err(source)) => return Err(ClientError::Io { addr, source }),
            Ok(Ok(raw)) => raw,
        };
        parse_response(&raw).ok_or(ClientError::Malformed(addr))
    }
}

/// Parses a whole HTTP/1.1 answer (read to EOF).
pub fn parse_response(raw: &[u8]) -> Option<Answer> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let body = &raw[split + 4..];
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let header = |name: &str| {
        head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    let body = if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(body)?
    } else if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.get(..len)?.to_vec()
    } else {
        body.to_vec()
    };
    Some(Answer {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&body[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_answers() {
        let plain = b"HTTP/1.1 404 Not Found\r\ncontent-length: 5\r\n\r\nhello";
        assert_eq!(
            parse_response(plain),
            Some(Answer {
                status: 404,
                body: "hello".into()
            })
        );
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).map(|a| a.body), Some("abcde".into()));
        assert_eq!(parse_response(b"garbage"), None);
    }
}
