//! `POST /api/upgrade` and `GET /api/upgrade`: the in-place upgrade
//! (`cpu-server upgrade`). The POST answers once the new binary's preflight
//! passed (202, then the server drains and execs) or with why it was refused
//! (409 busy or rooms open, 422 preflight failed, 503 unavailable); the running
//! server is then unchanged. Room sockets survive an upgrade, and so do local
//! orbs (handed over alive); `?restart_orbs=true` stops them instead (each room
//! gets a new one). Where orbs cannot be handed over (Slurm) and
//! some run, the POST is refused (409 `orbs_running`) unless it says
//! `?restart_orbs=true`. The GET shows the state and
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
    /// Stop the orbs rather than hand them over (each room gets a new one); where
    /// orbs cannot be handed over, go ahead although some run.
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
    // Warm orbs hold no room: restarting them loses nothing.
    let counts = state.orbs.counts();
    let orbs = counts.active.saturating_sub(counts.warm.ready);
    if let Some(why) = state.orbs.handover_refusal()
        && !query.restart_orbs
        && orbs > 0
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "orbs_running",
            format!(
                "{orbs} orb(s) running and {why}: each would be stopped and its room given a new one (the AI's \
                 conversation is lost); ask again with restart_orbs=true (cpu-server upgrade --restart-orbs) to go \
                 ahead"
            ),
        ));
    }
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
