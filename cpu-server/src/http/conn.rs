//! One accepted connection: the TLS handshake (bounded by
//! `TLS_HANDSHAKE_TIMEOUT`), HTTP/1.1 with upgrades served by hyper (each
//! request header bounded by `HTTP_HEADER_TIMEOUT`, hyper's own timer), and
//! the upgrade deadline: a connection that has neither sent a complete plain
//! request nor completed a WebSocket upgrade `WS_UPGRADE_TIMEOUT` after it was
//! accepted is closed, however slowly it trickles through the stages before.

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::http::header::UPGRADE;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::ClientAddr;
use super::conn_limits::ConnSlot;
use crate::settings::ConnectionSettings;

/// When the server stops (a drain's end, before an upgrade's exec), how long a
/// connection that has not sent its first request yet still gets for it: it was
/// accepted before the stop, so its request is answered, not dropped unread.
const FIRST_REQUEST_GRACE: Duration = Duration::from_millis(250);
/// How often that wait looks whether the request came.
const FIRST_REQUEST_POLL: Duration = Duration::from_millis(5);

/// What every connection of one listener shares.
pub struct Shared {
    app: TowerToHyperService<Router>,
    http: http1::Builder,
    tls: Option<TlsAcceptor>,
    tls_handshake_timeout: Duration,
    upgrade_timeout: Duration,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("tls", &self.tls.is_some())
            .field("tls_handshake_timeout", &self.tls_handshake_timeout)
            .field("upgrade_timeout", &self.upgrade_timeout)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Serving `app` (over TLS with `tls`) within the timeouts of `settings`.
    pub fn new(app: Router, tls: Option<TlsAcceptor>, settings: &ConnectionSettings) -> Self {
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(settings.header_timeout);
        Self {
            app: TowerToHyperService::new(app),
            http,
            tls,
            tls_handshake_timeout: settings.tls_handshake_timeout,
            upgrade_timeout: settings.upgrade_timeout,
        }
    }
}

/// Serves one connection until it closes, times out, or (after `stop`) finishes
/// its request in flight.
pub async fn run(
    stream: TcpStream,
    peer: SocketAddr,
    slot: Arc<ConnSlot>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let settled = slot.settled().clone();
    let serve = async {
        match &shared.tls {
            None => serve_http(stream, peer, slot, &shared, &stop).await,
            Some(acceptor) => match tokio::time::timeout(shared.tls_handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => serve_http(tls, peer, slot, &shared, &stop).await,
                Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => debug!(%peer, "TLS handshake timed out (TLS_HANDSHAKE_TIMEOUT): closed"),
            },
        }
    };
    let deadline = async {
        tokio::select! {
            () = tokio::time::sleep(shared.upgrade_timeout) => {}
            () = settled.cancelled() => std::future::pending().await,
        }
    };
    tokio::select! {
        () = serve => {}
        () = deadline => debug!(%peer, "no request or upgrade within WS_UPGRADE_TIMEOUT: closed"),
    }
}

/// HTTP/1.1 on `io`; every request carries the peer address and the slot.
async fn serve_http<I>(io: I, peer: SocketAddr, slot: Arc<ConnSlot>, shared: &Shared, stop: &CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let requested = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&requested);
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        seen.store(true, Ordering::Relaxed);
        if !request.headers().contains_key(UPGRADE) {
            slot.request_received();
        }
        let extensions = request.extensions_mut();
        extensions.insert(ConnectInfo(ClientAddr(peer)));
        extensions.insert(Arc::clone(&slot));
        hyper::service::Service::call(&shared.app, request)
    });
    let mut connection = pin!(shared.http.serve_connection(TokioIo::new(io), service).with_upgrades());
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                debug!(%peer, error = %e, "connection ended");
            }
            return;
        }
        () = stop.cancelled() => {}
    }
    // Bounded by FIRST_REQUEST_GRACE; the connection keeps being served meanwhile.
    let grace = tokio::time::sleep(FIRST_REQUEST_GRACE);
    let mut grace = pin!(grace);
    while !requested.load(Ordering::Relaxed) {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    debug!(%peer, error = %e, "connection ended while stopping");
                }
                return;
            }
            () = &mut grace => break,
            () = tokio::time::sleep(FIRST_REQUEST_POLL) => {}
        }
    }
    connection.as_mut().graceful_shutdown();
    if let Err(e) = connection.await {
        debug!(%peer, error = %e, "connection ended while stopping");
    }
}
