//! The HTTP face of the server: routes, shared state, and serving (plain or TLS).
//!
//! # Layout
//! - [`admin`]: the admin API (`/api/orbs*`, `/api/rooms`) behind a bearer token.
//! - [`client_ip`]: the client address behind a trusted reverse proxy (`X-Forwarded-For`).
//! - [`health`]: `GET /health` and `GET /healthz`.
//! - [`metrics`]: `GET /metrics` (Prometheus text, same token).
//! - [`pages`]: the embedded browser pages (`/room/{room_id}`, `/dashboard`) and `/api/events`.
//! - [`ws_upgrade`]: `GET /ws-simple/{room_id}`, checks before the upgrade.
//! - [`tls`]: a TLS-accepting listener for native HTTPS/WSS.
//! - [`turn`]: `GET /api/turn-credentials`, the ICE servers for browsers (public).

pub mod admin;
pub mod client_ip;
pub mod health;
pub mod metrics;
pub mod pages;
pub mod tls;
pub mod turn;
pub mod ws_upgrade;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::Router;
use axum::extract::connect_info::Connected;
use axum::routing::get;
use axum::serve::{IncomingStream, Listener};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Auth;
use crate::orbs::OrbsHandle;
use crate::rooms::limits::IpLimiter;
use crate::rooms::registry::RegistryHandle;
use crate::rooms::stats::RelayStats;
use crate::settings::RoomSettings;
use crate::settings::TurnSettings;

/// What every handler may use; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The room registry.
    pub registry: RegistryHandle,
    /// The OrbManager.
    pub orbs: OrbsHandle,
    /// Client and orb authentication.
    pub auth: Auth,
    /// Room limits and liveness.
    pub settings: Arc<RoomSettings>,
    /// Relay counters.
    pub stats: Arc<RelayStats>,
    /// Per-IP socket counts.
    pub ip_limiter: IpLimiter,
    /// Next connection id.
    pub next_conn: Arc<AtomicU64>,
    /// Cancelled when shutdown starts: `/health` says draining, upgrades are refused.
    pub draining: CancellationToken,
    /// Cancelled when every socket must close (after the orbs stopped).
    pub closing: CancellationToken,
    /// Tracks connection tasks for the bounded drain.
    pub connections: TaskTracker,
    /// ICE servers for `/api/turn-credentials`.
    pub turn: Arc<TurnSettings>,
}

/// The peer address of an HTTP connection, for plain and TLS listeners alike.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

impl Connected<IncomingStream<'_, PlainListener>> for ClientAddr {
    fn connect_info(stream: IncomingStream<'_, PlainListener>) -> Self {
        Self(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, tls::TlsListener>> for ClientAddr {
    fn connect_info(stream: IncomingStream<'_, tls::TlsListener>) -> Self {
        Self(*stream.remote_addr())
    }
}

/// Every route of the server.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health::health))
        .route("/healthz", get(health::healthz))
        .route("/ws-simple/{room_id}", get(ws_upgrade::ws_simple))
        .route("/api/turn-credentials", get(turn::turn_credentials))
        .merge(pages::router())
        .with_state(state)
}

/// Plain TCP with `TCP_NODELAY`, so relayed signalling is never held back by Nagle.
#[derive(Debug)]
pub struct PlainListener(pub TcpListener);

impl Listener for PlainListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, addr) = Listener::accept(&mut self.0).await;
        let _ = stream.set_nodelay(true);
        (stream, addr)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}
