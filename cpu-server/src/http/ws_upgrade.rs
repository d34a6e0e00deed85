//! `GET /ws-simple/{room_id}`: refuses upgrades while draining (503), bad room
//! ids (400), other sites' origins (403, `ALLOWED_ORIGINS`), missing or bad
//! client tokens (401, `JWT_SECRET`) and too many sockets from one address
//! (429) before upgrading; then hands the socket to a tracked [`Connection`] task,
//! which keeps the connection's place in `MAX_CONNECTIONS` and leaves its
//! peer's pending count ([`ConnSlot::upgraded`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;
use shared::room::ErrorCode;
use tracing::warn;

use super::conn_limits::ConnSlot;
use super::{AppState, ClientAddr};
use crate::rooms::connection::Connection;
use crate::rooms::room_id::validate_room_id;
use crate::ws::handshake::RoomUpgrade;

/// A JSON refusal: `{"type":"error","code":…,"message":…}` with an HTTP status.
pub(super) fn refuse(status: StatusCode, code: ErrorCode, message: String) -> Response {
    (status, Json(json!({"type": "error", "code": code, "message": message}))).into_response()
}

/// The query parameters the upgrade reads (`?token=`; others are ignored).
#[derive(Default, Deserialize)]
pub struct UpgradeQuery {
    token: Option<String>,
}

impl std::fmt::Debug for UpgradeQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let token = self.token.as_ref().map(|_| "<redacted>");
        f.debug_struct("UpgradeQuery").field("token", &token).finish()
    }
}

/// The room socket upgrade.
pub async fn ws_simple(
    State(state): State<AppState>,
    Path(room_id): Path<String>,
    ConnectInfo(ClientAddr(addr)): ConnectInfo<ClientAddr>,
    Query(query): Query<UpgradeQuery>,
    conn_slot: Option<Extension<Arc<ConnSlot>>>,
    headers: HeaderMap,
    upgrade: RoomUpgrade,
) -> Response {
    if let Some(refusal) = refuse_if_draining(&state) {
        return refusal;
    }
    if let Err(e) = validate_room_id(&room_id) {
        return refuse(StatusCode::BAD_REQUEST, ErrorCode::InvalidField, e.to_string());
    }
    let addr = std::net::SocketAddr::new(
        super::client_ip::client_ip(addr.ip(), &headers, &state.settings.trusted_proxies),
        addr.port(),
    );
    let credential = match state.auth.check_upgrade(&headers, query.token, &room_id) {
        Ok(credential) => credential,
        Err(refusal) => {
            warn!(ip = %addr.ip(), room = %room_id, code = refusal.code, "upgrade refused");
            let body = json!({"type": "error", "code": refusal.code, "message": refusal.message});
            return (refusal.status, Json(body)).into_response();
        }
    };
    let slot = match ip_slot(&state, addr.ip()) {
        Ok(slot) => slot,
        Err(refusal) => return *refusal,
    };
    let id = state.next_conn.fetch_add(1, Ordering::Relaxed);
    let connection = state.connection(id, room_id, addr.ip(), credential, slot, None);
    serve_upgraded(&state, upgrade, conn_slot, connection)
}

/// The 503 refusal of an upgrade while the server drains.
pub(super) fn refuse_if_draining(state: &AppState) -> Option<Response> {
    state.draining.is_cancelled().then(|| {
        refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Draining,
            "the server is shutting down".to_owned(),
        )
    })
}

/// This address's place among its room sockets, or the 429 refusal.
pub(super) fn ip_slot(state: &AppState, ip: std::net::IpAddr) -> Result<crate::rooms::limits::IpSlot, Box<Response>> {
    state.ip_limiter.acquire(ip).ok_or_else(|| {
        warn!(%ip, "too many sockets from one address");
        Box::new(refuse(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            format!(
                "at most {} room sockets per address",
                state.settings.max_connections_per_ip
            ),
        ))
    })
}

/// Upgrades with the room sockets' limits and runs `connection` as a tracked task.
pub(super) fn serve_upgraded(
    state: &AppState,
    upgrade: RoomUpgrade,
    conn_slot: Option<Extension<Arc<ConnSlot>>>,
    connection: Connection,
) -> Response {
    let tracker = state.connections.clone();
    upgrade.on_upgrade(state.relay_loops.clone(), move |stream| {
        let conn_slot = conn_slot.map(|Extension(slot)| slot);
        if let Some(slot) = &conn_slot {
            slot.upgraded();
        }
        tracker.track_future(async move {
            connection.run(stream).await;
            drop(conn_slot);
        })
    })
}
