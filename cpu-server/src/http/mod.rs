//! The HTTP face of the server: routes, shared state, and serving (plain or TLS).
//!
//! # Layout
//! - [`admin`]: the admin API (`/api/orbs*`, `/api/rooms`) behind a bearer token;
//!   [`admin_state`]: what it, `/metrics` and `/api/events` read.
//! - [`client_ip`]: the client address behind a trusted reverse proxy (`X-Forwarded-For`).
//! - [`serve`]: the accept loop of a listener; [`conn_limits`]: its caps (total, per peer
//!   before the upgrade); [`conn`]: one connection (TLS, HTTP/1.1, timeouts).
//! - [`health`]: `GET /health` and `GET /healthz`.
//! - [`metrics`]: `GET /metrics` (Prometheus text, same token).
//! - [`pages`]: the embedded browser pages (`/room/{room_id}`, `/dashboard`) and `/api/events`.
//! - [`orb_link`]: `GET /orb-link/{room_id}`, the supervision link of orbs without IPC (Slurm jobs).
//! - [`orb_seat`]: `GET /orb-seat`, the room socket a warm orb opens before it has a room.
//! - [`ws_upgrade`]: `GET /ws-simple/{room_id}`, checks before the upgrade.
//! - [`tls`]: the certificate and key of native HTTPS/WSS.
//! - [`turn`]: `GET /api/turn-credentials`, the ICE servers for browsers (public).

pub mod admin;
pub mod admin_state;
pub mod client_ip;
pub mod conn;
pub mod conn_limits;
pub mod health;
pub mod metrics;
pub mod orb_link;
pub mod orb_seat;
pub mod pages;
pub mod serve;
pub mod tls;
pub mod turn;
pub mod ws_upgrade;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::Router;
use axum::routing::get;
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
    /// Set when every socket must close (after the orbs stopped), with its code.
    pub closing: crate::shutdown::Closing,
    /// Tracks connection tasks for the bounded drain.
    pub connections: TaskTracker,
    /// ICE servers for `/api/turn-credentials`.
    pub turn: Arc<TurnSettings>,
    /// The event loops plain-TCP room sockets run on (`None`: on this runtime).
    pub relay_loops: Option<crate::ws::loops::RelayLoops>,
}

impl AppState {
    /// A room connection of this server: socket `id` in `room` from `ip`.
    pub fn connection(
        &self,
        id: crate::rooms::outbox::ConnId,
        room: String,
        ip: std::net::IpAddr,
        credential: crate::auth::Credential,
        slot: crate::rooms::limits::IpSlot,
        seat: Option<crate::rooms::seat::SeatReceiver>,
    ) -> crate::rooms::connection::Connection {
        crate::rooms::connection::Connection {
            id,
            room,
            ip,
            registry: self.registry.clone(),
            auth: self.auth.clone(),
            credential,
            settings: self.settings.clone(),
            stats: self.stats.clone(),
            closing: self.closing.clone(),
            slot,
            seat,
        }
    }
}

/// The TCP peer address of an HTTP connection (set on every request by [`conn`]).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// Every route of the server.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health::health))
        .route("/healthz", get(health::healthz))
        .route("/ws-simple/{room_id}", get(ws_upgrade::ws_simple))
        .route("/orb-link/{room_id}", get(orb_link::orb_link))
        .route("/orb-seat", get(orb_seat::orb_seat))
        .route("/api/turn-credentials", get(turn::turn_credentials))
        .merge(pages::router())
        .with_state(state)
}
