//! `POST /api/upgrade` and `GET /api/upgrade`: the in-place upgrade
//! (`cpu-server upgrade`). The POST answers once the new binary's preflight
//! passed (202, then the server drains and execs) or with why it was refused
//! (409 busy or rooms open, 422 preflight failed, 503 unavailable); the running
//! server is then unchanged. Rooms and orbs do not survive an upgrade yet, so
//! while any room is open or any orb runs the POST is refused (409
//! `rooms_open`) unless it says `?end_rooms=true`. The GET shows the state and
//! the last outcome; after an upgrade the new image shows it as `done`, with
//! its id and pause.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::error::ApiError;
use crate::http::admin_state::AdminState;
use crate::upgrade::Origin;
use crate::upgrade::controller::{Accepted, Refusal, Status};

/// `POST /api/upgrade` options.
#[derive(Debug, Default, Deserialize)]
pub struct StartQuery {
    /// Go ahead although rooms are open (they end, as on a restart).
    #[serde(default)]
    end_rooms: bool,
}

/// `POST /api/upgrade[?end_rooms=true]`.
pub async fn start(
    State(state): State<AdminState>,
    Query(query): Query<StartQuery>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let (rooms, orbs) = (state.registry.rooms(), state.orbs.counts().active);
    if !query.end_rooms && (rooms > 0 || orbs > 0) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "rooms_open",
            format!(
                "{rooms} room(s) open and {orbs} orb(s) running: an upgrade does not hand them over yet, so it \
                 would end them as a restart does (sockets closed with 1012, orbs started anew); ask again \
                 with end_rooms=true (cpu-server upgrade --end-rooms) to go ahead"
            ),
        ));
    }
    match state.upgrades.request(Origin::Api).await {
        Ok(accepted) => Ok((StatusCode::ACCEPTED, Json(accepted))),
        Err(refusal @ Refusal::Busy(_)) => Err(ApiError::new(StatusCode::CONFLICT, "busy", refusal.to_string())),
        Err(refusal @ Refusal::Preflight(_)) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "preflight_failed",
            refusal.to_string(),
        )),
        Err(refusal @ Refusal::Unavailable(_)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            refusal.to_string(),
        )),
    }
}

/// `GET /api/upgrade`.
pub async fn show(State(state): State<AdminState>) -> Json<Status> {
    Json(state.upgrades.status())
}
