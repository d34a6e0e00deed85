//! `GET /orb-seat`: the room socket of a warm orb, opened before it has a room
//! (docs/protocol.md §3.3). The upgrade must carry the warm orb process's own
//! token (`Authorization: Bearer`); anything else is refused with 401 before
//! upgrading. The socket then waits, joined to no room, until the OrbManager
//! gives the orb a room: it is then joined there as the AI at once
//! ([`crate::rooms::seat`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Extension;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use shared::room::ErrorCode;
use tracing::warn;

use super::conn_limits::ConnSlot;
use super::ws_upgrade::{ip_slot, refuse, refuse_if_draining, serve_upgraded};
use super::{AppState, ClientAddr};
use crate::auth::{Credential, token};
use crate::rooms::seat::seat_channel;
use crate::ws::handshake::RoomUpgrade;

/// The seat upgrade.
pub async fn orb_seat(
    State(state): State<AppState>,
    ConnectInfo(ClientAddr(addr)): ConnectInfo<ClientAddr>,
    conn_slot: Option<Extension<Arc<ConnSlot>>>,
    headers: HeaderMap,
    upgrade: RoomUpgrade,
) -> Response {
    if let Some(refusal) = refuse_if_draining(&state) {
        return refusal;
    }
    let (sender, receiver) = seat_channel();
    let entry = match token::from_upgrade(&headers, None) {
        Some(given) => state.orbs.seat(given.expose(), sender).await,
        None => None,
    };
    let Some(entry) = entry else {
        warn!(ip = %addr.ip(), "warm orb seat refused");
        return refuse(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "not the token of a warm orb".to_owned(),
        );
    };
    let slot = match ip_slot(&state, addr.ip()) {
        Ok(slot) => slot,
        Err(refusal) => return *refusal,
    };
    let id = state.next_conn.fetch_add(1, Ordering::Relaxed);
    let connection = state.connection(id, entry, addr.ip(), Credential::None, slot, Some(receiver));
    serve_upgraded(&state, upgrade, conn_slot, connection)
}
