//! Health endpoints: `/health` (detailed, 503 while draining) and `/healthz` (liveness).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;

/// `GET /health`: status, version, build id, orb counts and room count.
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let draining = state.draining.is_cancelled();
    let orbs = state.orbs.counts();
    let body = json!({
        "status": if draining { "draining" } else { "healthy" },
        "service": "cpu-server",
        "version": env!("CARGO_PKG_VERSION"),
        "build_id": crate::build_id::current(),
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;

    use shared::settings::DotEnv;

    use super::*;
    use crate::rooms::events::room_event_channel;
    use crate::rooms::limits::IpLimiter;
    use crate::rooms::registry::spawn_registry;
    use crate::rooms::stats::RelayStats;
    use crate::settings::{OrbArgs, ServerArgs};
    use crate::shutdown::Lifecycle;

    #[tokio::test]
    async fn health_is_healthy_then_503_draining() {
        let args = ServerArgs {
            orbs: OrbArgs {
                orb_spawn_on: Some("manual".to_owned()),
                max_concurrent_orbs: Some("5".to_owned()),
                ..OrbArgs::default()
            },
            ..ServerArgs::default()
        };
        let settings = args.validate(&DotEnv::default(), false).expect("settings");
        let (events, events_rx) = room_event_channel();
        let stats = Arc::new(RelayStats::default());
        let registry = spawn_registry(settings.rooms.clone(), events, Arc::clone(&stats), Arc::default());
        // Not `spawn_manager`: no stray sweep or reaper inside the unit-test process.
        let launcher = crate::orbs::launcher::LocalLauncher::new(settings.orbs.clone(), "127.0.0.1:9".to_owned());
        let orbs = crate::orbs::spawn_manager_with(
            settings.orbs.clone(),
            events_rx,
            Arc::new(registry.clone()),
            Arc::new(launcher),
            Arc::default(),
        );
        let lifecycle = Lifecycle::default();
        let state = AppState {
            registry,
            orbs,
            auth: Default::default(),
            ip_limiter: IpLimiter::new(1),
            settings: Arc::new(settings.rooms),
            stats,
            next_conn: Arc::new(AtomicU64::new(1)),
            draining: lifecycle.draining.clone(),
            closing: lifecycle.closing.clone(),
            connections: lifecycle.connections.clone(),
            turn: Default::default(),
            relay_loops: None,
        };
        let (status, Json(body)) = health(State(state.clone())).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "healthy");
        assert_eq!(body["service"], "cpu-server");
        assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(body["orbs"]["max"], 5);
        assert_eq!(body["rooms"], 0);
        lifecycle.draining.cancel();
        let (status, Json(body)) = health(State(state)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["status"], "draining");
        assert_eq!(healthz().await.0, json!({"status": "ok"}));
    }
}
