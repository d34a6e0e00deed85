//! `POST /api/upgrade` and `GET /api/upgrade`: the in-place upgrade
//! (`cpu-server upgrade`). The POST answers once the new binary's preflight
//! passed (202, then the server drains and execs) or with why it was refused
//! (409 busy, 422 preflight failed, 503 unavailable); the running
//! server is then unchanged. Room sockets survive an upgrade, and so do orbs
//! (handed over alive); `?restart_orbs=true` stops them instead (each room
//! gets a new one). The GET shows the state and
//! the last outcome; after an upgrade the new image shows it as `done`, with
//! its id and pause.

use axum::Json;
use axum::extract::rejection::QueryRejection;
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
    /// Stop the orbs rather than hand them over (each room gets a new one).
    #[serde(default)]
    restart_orbs: bool,
}

/// `POST /api/upgrade[?restart_orbs=true]`.
pub async fn start(
    State(state): State<AdminState>,
    query: Result<Query<StartQuery>, QueryRejection>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let Query(query) = query.map_err(|e| {
        ApiError::bad_request(
            "bad_query",
            format!("{}: the only option is restart_orbs=true", e.body_text()),
        )
    })?;
    match state.upgrades.request_with(Origin::Api, query.restart_orbs).await {
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
