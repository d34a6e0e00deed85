//! `GET /api/warm-pool` and `POST /api/warm-pool/reset`: the warm pool
//! (`ORB_WARM_POOL`): size, members, assignments, failures, parked or disabled.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::error::ApiError;
use crate::http::admin_state::AdminState;
use crate::orbs::lifecycle::WarmPoolView;

fn stopped() -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "orb manager stopped")
}

/// `GET /api/warm-pool`.
pub async fn show(State(state): State<AdminState>) -> Result<Json<WarmPoolView>, ApiError> {
    state.orbs.warm_pool().await.map(Json).ok_or_else(stopped)
}

/// `POST /api/warm-pool/reset`: forgets the pool's failures; a parked pool refills now.
pub async fn reset(State(state): State<AdminState>) -> Result<Json<WarmPoolView>, ApiError> {
    state.orbs.reset_warm_pool().await.map(Json).ok_or_else(stopped)
}
