//! The admin API (`/api/orbs*`, `/api/rooms`) and `/metrics`, behind a bearer token.
//!
//! Served on `CPU_HOST` with the public routes, or only on `ADMIN_HOST` when set.
//! Only these routes carry the token check; other `/api` routes are public.
//!
//! # Layout
//! - [`auth`]: the bearer check (constant-time compare).
//! - [`error`]: JSON errors `{"error", "code"}`.
//! - [`orbs`]: list, show, spawn, kill, kill all, reset, operator token.
//! - [`rooms`]: rooms and their participants.

pub mod auth;
pub mod error;
pub mod orbs;
pub mod rooms;

use std::sync::Arc;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use tokio_util::task::TaskTracker;

use crate::orbs::OrbsHandle;
use crate::rooms::registry::RegistryHandle;
use crate::rooms::stats::RelayStats;

/// What the admin handlers use; cheap to clone.
#[derive(Clone)]
pub struct AdminState {
    /// The OrbManager.
    pub orbs: OrbsHandle,
    /// The room registry.
    pub registry: RegistryHandle,
    /// Relay counters (for `/metrics`).
    pub stats: Arc<RelayStats>,
    /// Open client sockets (for `/metrics`).
    pub connections: TaskTracker,
    /// The bearer token.
    pub token: Arc<str>,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState")
            .field("orbs", &self.orbs)
            .finish_non_exhaustive()
    }
}

/// The admin routes and `/metrics`, each requiring `Authorization: Bearer <ADMIN_TOKEN>`.
pub fn router(state: AdminState) -> Router {
    let token = Arc::clone(&state.token);
    Router::new()
        .route("/api/orbs", get(orbs::list).post(orbs::spawn).delete(orbs::kill_all))
        .route("/api/orbs/{room}", get(orbs::show).delete(orbs::kill))
        .route("/api/orbs/{room}/reset", post(orbs::reset))
        .route("/api/orbs/{room}/token", post(orbs::token))
        .route("/api/rooms", get(rooms::list))
        .route("/metrics", get(super::metrics::metrics))
        .route_layer(from_fn_with_state(token, auth::require_bearer))
        .with_state(state)
}
