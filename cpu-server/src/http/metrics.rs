//! `GET /metrics`: Prometheus text, refreshed from the live server at each scrape.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

use super::admin_state::AdminState;
use crate::metrics::scrape::{self, Snapshot};
use crate::rooms::stats::RelayStats;

/// Renders every metric.
pub async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    let stats = &state.stats;
    let snapshot = Snapshot {
        orbs: state.orbs.list().await,
        counts: state.orbs.counts(),
        rooms: state.registry.rooms(),
        open_connections: state.connections.len(),
        connections: RelayStats::get(&stats.connections),
        relayed: stats.relayed.get(),
        relayed_bytes: stats.relayed_bytes.get(),
        relay_errors: RelayStats::get(&stats.errors),
        slow_consumers: RelayStats::get(&stats.slow_consumers),
    };
    let body = state.metrics.render(&snapshot);
    ([(CONTENT_TYPE, scrape::CONTENT_TYPE)], body)
}
