//! The admin API (`/api/orbs*`, `/api/rooms`, `/api/warm-pool*`, `/api/upgrade`) and `/metrics`, behind a bearer token.
//!
//! Served on `CPU_HOST` with the public routes, or only on `ADMIN_HOST` when set.
//! Only these routes carry the token check; other `/api` routes are public.
//!
//! # Layout
//! - [`auth`]: the bearer check (constant-time compare).
//! - [`error`]: JSON errors `{"error", "code"}`, counted by code.
//! - [`orbs`]: list, show, spawn, kill, kill all, reset, timeline, session summary, operator token.
//! - [`rooms`]: rooms and their participants.
//! - [`warm_pool`]: the warm pool and its reset.
//! - [`upgrade`]: the in-place upgrade (start it, its status).

pub mod auth;
pub mod error;
pub mod orbs;
pub mod rooms;
pub mod upgrade;
pub mod warm_pool;

use std::sync::Arc;

use axum::Router;
use axum::middleware::{from_fn_with_state, map_response_with_state};
use axum::routing::{get, post};

use super::admin_state::AdminState;

/// The admin routes and `/metrics`, each requiring `Authorization: Bearer <ADMIN_TOKEN>`.
pub fn router(state: AdminState) -> Router {
    let token = Arc::clone(&state.token);
    let metrics = Arc::clone(&state.metrics);
    Router::new()
        .route("/api/orbs", get(orbs::list).post(orbs::spawn).delete(orbs::kill_all))
        .route("/api/orbs/{room}", get(orbs::show).delete(orbs::kill))
        .route("/api/orbs/{room}/reset", post(orbs::reset))
        .route("/api/orbs/{room}/events", get(orbs::events))
        .route("/api/orbs/{room}/summary", get(orbs::summary))
        .route("/api/orbs/{room}/token", post(orbs::token))
        .route("/api/rooms", get(rooms::list))
        .route("/api/warm-pool", get(warm_pool::show))
        .route("/api/warm-pool/reset", post(warm_pool::reset))
        .route("/api/upgrade", get(upgrade::show).post(upgrade::start))
        .route("/metrics", get(super::metrics::metrics))
        .route_layer(from_fn_with_state(token, auth::require_bearer))
        .layer(map_response_with_state(metrics, error::count_errors))
        .with_state(state)
}
