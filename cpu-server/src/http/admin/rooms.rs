//! `GET /api/rooms`: rooms and their participants (no secrets).

use axum::Json;
use axum::extract::State;

use crate::http::admin_state::AdminState;
use crate::rooms::registry::RoomInfo;

/// Every room with its participants.
pub async fn list(State(state): State<AdminState>) -> Json<Vec<RoomInfo>> {
    Json(state.registry.room_list().await)
}
