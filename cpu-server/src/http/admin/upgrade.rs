//! `POST /api/upgrade` and `GET /api/upgrade`: the in-place upgrade
//! (`cpu-server upgrade`). The POST answers once the new binary's preflight
//! passed (202, then the server drains and execs) or with why it was refused
//! (409 busy, 422 preflight failed, 503 unavailable); the running server is
//! then unchanged. The GET shows the state and the last outcome; after an
//! upgrade the new image shows it as `done`, with its id and pause.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::error::ApiError;
use crate::http::admin_state::AdminState;
use crate::upgrade::Origin;
use crate::upgrade::controller::{Accepted, Refusal, Status};

/// `POST /api/upgrade`.
pub async fn start(State(state): State<AdminState>) -> Result<(StatusCode, Json<Accepted>), ApiError> {
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
