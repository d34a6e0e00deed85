//! Health endpoints: `/health` (detailed, 503 while draining) and `/healthz` (liveness).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;

/// `GET /health`: status, version, orb counts and room count.
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let draining = state.draining.is_cancelled();
    let orbs = state.orbs.counts();
    let body = json!({
        "status": if draining { "draining" } else { "healthy" },
        "service": "cpu-server",
        "version": env!("CARGO_PKG_VERSION"),
        "orbs": {"active": orbs.active, "max": orbs.max},
        "rooms": state.registry.rooms(),
    });
    let status = if draining {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, Json(body))
}

/// `GET /healthz`: the process answers.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}
