//! `GET /orb-link/{room_id}`: the supervision link of an orb that has no IPC socket
//! (a Slurm job on another host, docs/protocol.md §3.1). The upgrade must carry
//! the orb process's own token (`Authorization: Bearer`); anything else is refused
//! with 401 before upgrading, a token of an ended process included. The socket is
//! then handed to that orb's driver, which speaks the IPC messages on it.

use axum::Json;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracing::warn;

use super::AppState;
use crate::auth::token;
use crate::orbs::local_driver::MAX_LINE_FROM_ORB;

/// The link upgrade.
pub async fn orb_link(
    State(state): State<AppState>,
    Path(room_id): Path<String>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let given = token::from_upgrade(&headers, None);
    let Some(driver) = given.and_then(|t| state.orbs.link(&room_id, t.expose())) else {
        warn!(room = %room_id, "supervision link refused");
        let body = json!({"type": "error", "code": "unauthorized", "message": "not the token of this room's orb"});
        return (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    };
    upgrade
        .max_message_size(MAX_LINE_FROM_ORB)
        .max_frame_size(MAX_LINE_FROM_ORB)
        .on_upgrade(move |socket| async move {
            if driver.try_send(socket).is_err() {
                warn!(room = %room_id, "supervision link dropped: its driver is gone or busy");
            }
        })
}
