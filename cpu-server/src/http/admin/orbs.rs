//! `/api/orbs*`: list, show, spawn, kill (one or all), reset, timeline,
//! session summary, operator token.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use crate::http::admin_state::AdminState;
use crate::orbs::{OrbRecord, SpawnOutcome, SpawnRequest, StopReason};
use crate::rooms::room_id::validate_room_id;

/// Lifetime of a one-time operator token.
pub const OPERATOR_TOKEN_TTL: Duration = Duration::from_secs(300);
/// The reason of a kill asked for through the API.
pub const MANUAL_REASON: StopReason = StopReason::ManualTermination;

/// `POST /api/orbs` body.
#[derive(Debug, Deserialize)]
pub struct SpawnBody {
    /// The room.
    pub room: String,
    /// Session id (generated when absent).
    pub session: Option<String>,
    /// Accepted for compatibility; the orb learns its coach from the room.
    pub coach: Option<String>,
    /// Accepted for compatibility; the orb learns its client from the room.
    pub client: Option<String>,
}

/// `?wait=false` on kills answers 202 at once; default (or `true`) waits for the exit.
pub fn wait_flag(query: Option<&str>) -> Result<bool, ApiError> {
    for pair in query.unwrap_or_default().split('&') {
        if let Some(value) = pair.strip_prefix("wait=") {
            return match value {
                "true" | "1" | "" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(ApiError::bad_request("invalid_query", "wait must be true or false")),
            };
        }
    }
    Ok(true)
}

fn checked(room: &str) -> Result<(), ApiError> {
    validate_room_id(room).map_err(|e| ApiError::bad_request("invalid_room", e.to_string()))
}

/// `GET /api/orbs`.
pub async fn list(State(state): State<AdminState>) -> Json<Vec<OrbRecord>> {
    Json(state.orbs.list().await)
}

/// `GET /api/orbs/{room}`.
pub async fn show(State(state): State<AdminState>, Path(room): Path<String>) -> Result<Json<OrbRecord>, ApiError> {
    checked(&room)?;
    state
        .orbs
        .get(&room)
        .await
        .map(Json)
        .ok_or_else(|| ApiError::no_orb(&room))
}

/// `POST /api/orbs`: 201 created, 200 existing, 202 queued.
pub async fn spawn(State(state): State<AdminState>, body: Bytes) -> Result<Response, ApiError> {
    let body: SpawnBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "invalid_body",
            format!("expected {{\"room\": …, \"session\"?: …}}: {e}"),
        )
    })?;
    checked(&body.room)?;
    let request = SpawnRequest {
        room: body.room,
        session: body.session,
    };
    let outcome = state
        .orbs
        .spawn(request)
        .await
        .map_err(|message| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message))?;
    Ok(match outcome {
        SpawnOutcome::Created(record) => (StatusCode::CREATED, Json(record)).into_response(),
        SpawnOutcome::Existing(record) => (StatusCode::OK, Json(record)).into_response(),
        SpawnOutcome::Queued(record) => (StatusCode::ACCEPTED, Json(record)).into_response(),
    })
}

/// `DELETE /api/orbs/{room}`: answers after the exit with its record (`?wait=false`: 202 at once).
pub async fn kill(
    State(state): State<AdminState>,
    Path(room): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    checked(&room)?;
    if !wait_flag(query.as_deref())? {
        if state.orbs.get(&room).await.is_none() {
            return Err(ApiError::no_orb(&room));
        }
        let orbs = state.orbs.clone();
        let target = room.clone();
        tokio::spawn(async move {
            orbs.stop_from(&target, MANUAL_REASON, Some("DELETE /api/orbs/{room}"))
                .await
        });
        return Ok((StatusCode::ACCEPTED, Json(json!({"room": room, "state": "stopping"}))).into_response());
    }
    match state
        .orbs
        .stop_from(&room, MANUAL_REASON, Some("DELETE /api/orbs/{room}"))
        .await
    {
        Some(exit) => Ok(Json(json!({"room": room, "exit": exit})).into_response()),
        None => Err(ApiError::no_orb(&room)),
    }
}

/// `DELETE /api/orbs`: stops every orb; answers after the last exit (`?wait=false`: 202 at once).
pub async fn kill_all(State(state): State<AdminState>, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    if !wait_flag(query.as_deref())? {
        let orbs = state.orbs.clone();
        let rooms: Vec<String> = orbs.list().await.into_iter().map(|r| r.room).collect();
        tokio::spawn(async move { orbs.stop_all(MANUAL_REASON, Some("DELETE /api/orbs")).await });
        return Ok((StatusCode::ACCEPTED, Json(json!({"stopping": rooms}))).into_response());
    }
    let exits = state.orbs.stop_all(MANUAL_REASON, Some("DELETE /api/orbs")).await;
    let stopped: Vec<_> = exits
        .into_iter()
        .map(|(room, exit)| json!({"room": room, "exit": exit}))
        .collect();
    Ok(Json(json!({"stopped": stopped})).into_response())
}

/// `GET /api/orbs/{room}/events`: the room's orb timeline and why its last orb
/// ended or is not running (404 when the server knows nothing of the room).
pub async fn events(State(state): State<AdminState>, Path(room): Path<String>) -> Result<Response, ApiError> {
    checked(&room)?;
    match state.orbs.events(&room).await {
        Some(timeline) => Ok(Json(timeline).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_orb",
            format!(
                "nothing is known of room {room}: no orb ran there since the server started (or within the last hour)"
            ),
        )),
    }
}

/// `GET /api/orbs/{room}/summary`: the last session summary the room's orb
/// sent, `{"room", "session", "receivedAt", "summary"}`, kept after the orb
/// is gone (404 `no_summary` when none is kept).
pub async fn summary(State(state): State<AdminState>, Path(room): Path<String>) -> Result<Response, ApiError> {
    checked(&room)?;
    match state.orbs.summary(&room).await {
        Some(stored) => Ok(Json(stored.to_api_json()).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_summary",
            format!(
                "no session summary for room {room}: none received since the server started, or it is older than {} minutes",
                crate::orbs::summaries::RETENTION_MS / 60_000
            ),
        )),
    }
}

/// `POST /api/orbs/{room}/reset`: clears a parked orb's crash-loop state.
pub async fn reset(State(state): State<AdminState>, Path(room): Path<String>) -> Result<Json<OrbRecord>, ApiError> {
    checked(&room)?;
    state
        .orbs
        .reset(&room)
        .await
        .map(Json)
        .map_err(|_| ApiError::no_orb(&room))
}

/// `POST /api/orbs/{room}/token`: a one-time `ORB_AUTH_TOKEN` for a hand-started orb.
pub async fn token(
    State(state): State<AdminState>,
    Path(room): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    checked(&room)?;
    let token = state
        .orbs
        .issue_operator_token(&room, OPERATOR_TOKEN_TTL)
        .await
        .ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "orb manager stopped"))?;
    Ok(Json(json!({
        "room": room,
        "token": token,
        "expires_in_ms": OPERATOR_TOKEN_TTL.as_millis() as u64,
        "usage": format!("ORB_AUTH_TOKEN=<token> gpu-orb --room={room}"),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_defaults_to_true_and_rejects_junk() {
        assert_eq!(wait_flag(None), Ok(true));
        assert_eq!(wait_flag(Some("x=1&wait=false")), Ok(false));
        assert_eq!(wait_flag(Some("wait=0")), Ok(false));
        assert_eq!(wait_flag(Some("wait=true")), Ok(true));
        let error = wait_flag(Some("wait=maybe")).expect_err("junk");
        assert_eq!((error.status, error.code), (StatusCode::BAD_REQUEST, "invalid_query"));
    }
}
