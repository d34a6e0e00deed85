//! The server side of the WebSocket opening handshake (RFC 6455 §4.2) for room
//! sockets: [`RoomUpgrade`] checks the request like axum's own extractor
//! (GET, `Connection: upgrade`, `Upgrade: websocket`, version 13, a key) and
//! answers `101` with the accept key; once hyper hands the connection over, it
//! becomes a [`RoomStream`]: the plain TCP socket itself when the server speaks
//! plain HTTP (with any bytes hyper read past the request), or hyper's upgraded
//! stream over TLS.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use sha1::{Digest, Sha1};
use tokio::net::TcpStream;

use super::loops::RelayLoops;

/// The GUID RFC 6455 appends to the client's key.
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(ACCEPT_GUID);
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// A checked upgrade request, not answered yet.
#[derive(Debug)]
pub struct RoomUpgrade {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
}

/// Why a request is not a WebSocket upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotUpgrade {
    status: StatusCode,
    message: &'static str,
}

impl IntoResponse for NotUpgrade {
    fn into_response(self) -> Response {
        (self.status, self.message).into_response()
    }
}

/// Whether the comma-separated `name` header holds `token` (any case).
fn header_has(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .as_bytes()
            .split(|&b| b == b',')
            .any(|part| part.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// The refusal of a request that is not a version-13 WebSocket upgrade, if it is not one.
pub fn check(method: &Method, headers: &HeaderMap) -> Result<HeaderValue, NotUpgrade> {
    let refuse = |status, message| NotUpgrade { status, message };
    if method != Method::GET {
        return Err(refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            "a WebSocket upgrade must be a GET",
        ));
    }
    if !header_has(headers, header::CONNECTION, "upgrade") {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "Connection header did not include 'upgrade'",
        ));
    }
    if !header_has(headers, header::UPGRADE, "websocket") {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "`Upgrade` header did not include 'websocket'",
        ));
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).map(HeaderValue::as_bytes) != Some(b"13") {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "`Sec-WebSocket-Version` header did not include '13'",
        ));
    }
    headers
        .get(header::SEC_WEBSOCKET_KEY)
        .cloned()
        .ok_or(refuse(StatusCode::BAD_REQUEST, "`Sec-WebSocket-Key` header missing"))
}

impl<S: Send + Sync> FromRequestParts<S> for RoomUpgrade {
    type Rejection = NotUpgrade;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let key = check(&parts.method, &parts.headers)?;
        let on_upgrade = parts.extensions.remove::<OnUpgrade>().ok_or(NotUpgrade {
            status: StatusCode::UPGRADE_REQUIRED,
            message: "this connection cannot be upgraded",
        })?;
        Ok(Self { key, on_upgrade })
    }
}

impl RoomUpgrade {
    /// The `101` answer; `serve` runs on the upgraded stream once hyper hands it
    /// over: a plain TCP socket on one of `loops` (when given), anything else here.
    pub fn on_upgrade<F, Fut>(self, loops: Option<RelayLoops>, serve: F) -> Response
    where
        F: FnOnce(RoomStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            let stream = match on_upgrade.await {
                Ok(upgraded) => RoomStream::from(upgraded),
                Err(e) => return tracing::debug!(error = %e, "upgrade failed"),
            };
            match (stream, loops) {
                (RoomStream::Tcp(tcp, early), Some(loops)) => match tcp.into_std() {
                    // Taken off this runtime's epoll, registered with the loop's.
                    Ok(tcp) => loops.spawn(async move {
                        match TcpStream::from_std(tcp) {
                            Ok(tcp) => serve(RoomStream::Tcp(tcp, early)).await,
                            Err(e) => tracing::debug!(error = %e, "socket not moved to its relay loop"),
                        }
                    }),
                    Err(e) => tracing::debug!(error = %e, "socket not moved to its relay loop"),
                },
                (stream, _) => serve(stream).await,
            }
        });
        let accept = accept_key(self.key.as_bytes());
        let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(accept) = HeaderValue::from_str(&accept) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        response
    }
}

/// A room socket's byte stream after the handshake.
#[derive(Debug)]
pub enum RoomStream {
    /// Plain HTTP: the TCP socket, and what hyper read past the request.
    Tcp(TcpStream, Bytes),
    /// TLS (or anything else): hyper's upgraded stream.
    Other(TokioIo<Upgraded>),
}

impl From<Upgraded> for RoomStream {
    fn from(upgraded: Upgraded) -> Self {
        match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => Self::Tcp(parts.io.into_inner(), parts.read_buf),
            Err(upgraded) => Self::Other(TokioIo::new(upgraded)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_key_is_rfc_6455s_example() {
        assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn only_a_version_13_get_upgrade_with_a_key_passes() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("WebSocket"));
        headers.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        headers.insert(header::SEC_WEBSOCKET_KEY, HeaderValue::from_static("k"));
        assert!(check(&Method::GET, &headers).is_ok());
        assert_eq!(
            check(&Method::POST, &headers).expect_err("refused").status,
            StatusCode::METHOD_NOT_ALLOWED
        );
        for (name, bad) in [
            (header::CONNECTION, "keep-alive"),
            (header::UPGRADE, "h2c"),
            (header::SEC_WEBSOCKET_VERSION, "8"),
        ] {
            let mut h = headers.clone();
            h.insert(name.clone(), HeaderValue::from_static(bad));
            assert_eq!(
                check(&Method::GET, &h).expect_err("refused").status,
                StatusCode::BAD_REQUEST,
                "{name}"
            );
        }
        headers.remove(header::SEC_WEBSOCKET_KEY);
        assert_eq!(
            check(&Method::GET, &headers).expect_err("refused").status,
            StatusCode::BAD_REQUEST
        );
    }
}
