//! The browser pages, embedded in the binary (no build step, no external resources):
//! `GET /room/{room_id}` (join a room as coach or client), `GET /dashboard` (operators),
//! their scripts and stylesheet, and `GET /api/events`, the dashboard's live feed.
//!
//! The pages are public; the dashboard's data is not: `/api/events` wants the admin
//! token, as `Authorization: Bearer` or `?token=` (an `EventSource` cannot set headers).
//! Every page answer carries [`CSP`], so a page can load only its own embedded files
//! and talk only to this server.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::map_response_with_state;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::stream;
use serde::{Deserialize, Serialize};
use shared::clock::epoch_ms;
use shared::secret::constant_time_eq;
use tokio_util::sync::CancellationToken;

use super::admin::auth::bearer;
use super::admin::error::{ApiError, count_errors};
use super::admin_state::AdminState;
use crate::orbs::OrbRecord;
use crate::rooms::registry::RoomInfo;
use crate::rooms::room_id::validate_room_id;

/// The Content-Security-Policy of every page and asset.
/// `'self'` covers same-origin `ws:`/`wss:` in current browsers; no other host is reachable.
/// The room page's WebRTC (its peers, the AI, TURN) is not governed by CSP, and
/// `srcObject` playback fetches nothing, so the call needs no wider policy.
pub const CSP: &str = "default-src 'self'; connect-src 'self'";
/// How often `/api/events` pushes a snapshot.
pub const EVENTS_INTERVAL: Duration = Duration::from_secs(1);

const ROOM_HTML: &str = include_str!("../../assets/room.html");
const ROOM_JS: &str = include_str!("../../assets/room.js");
const ROOM_MEDIA_JS: &str = include_str!("../../assets/room_media.js");
const DASHBOARD_HTML: &str = include_str!("../../assets/dashboard.html");
const DASHBOARD_JS: &str = include_str!("../../assets/dashboard.js");
const STYLE_CSS: &str = include_str!("../../assets/style.css");
const ICON_SVG: &str = include_str!("../../assets/icon.svg");

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// The public page routes: `/room/{room_id}`, `/dashboard`, `/assets/*`.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/room/{room_id}", get(room))
        .route("/dashboard", get(|| async { page(HTML, DASHBOARD_HTML) }))
        .route("/assets/room.js", get(|| async { page(JS, ROOM_JS) }))
        .route("/assets/room_media.js", get(|| async { page(JS, ROOM_MEDIA_JS) }))
        .route("/assets/dashboard.js", get(|| async { page(JS, DASHBOARD_JS) }))
        .route("/assets/style.css", get(|| async { page(CSS, STYLE_CSS) }))
        .route("/assets/icon.svg", get(|| async { page(SVG, ICON_SVG) }))
}

/// `GET /api/events` (admin token); its stream ends when `draining` is cancelled,
/// so open dashboards never hold up a graceful shutdown.
pub fn events_router(admin: AdminState, draining: CancellationToken) -> Router {
    let metrics = Arc::clone(&admin.metrics);
    Router::new()
        .route("/api/events", get(events))
        .layer(map_response_with_state(metrics, count_errors))
        .with_state(EventsState { admin, draining })
}

/// The [`events_router`] plus the dashboard itself, for `ADMIN_HOST`: the dashboard
/// must be served from the origin of the API it calls.
pub fn operator_router(admin: AdminState, draining: CancellationToken) -> Router {
    events_router(admin, draining).merge(router())
}

/// An embedded file with the page headers.
fn page(content_type: &'static str, body: &'static str) -> Response {
    let headers = [
        (CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)),
        (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            HeaderName::from_static("x-content-type-options"),
            HeaderValue::from_static("nosniff"),
        ),
        (
            HeaderName::from_static("x-frame-options"),
            HeaderValue::from_static("DENY"),
        ),
        (
            HeaderName::from_static("referrer-policy"),
            HeaderValue::from_static("no-referrer"),
        ),
    ];
    (headers, body).into_response()
}

/// `GET /room/{room_id}`: the room page, for a valid room id only (the WebSocket's rule).
async fn room(Path(room_id): Path<String>) -> Response {
    match validate_room_id(&room_id) {
        Ok(()) => page(HTML, ROOM_HTML),
        Err(e) => (StatusCode::BAD_REQUEST, format!("invalid room id: {e}\n")).into_response(),
    }
}

#[derive(Clone)]
struct EventsState {
    admin: AdminState,
    draining: CancellationToken,
}

/// `?token=` on `/api/events`.
#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// What `/api/events` pushes every [`EVENTS_INTERVAL`].
#[derive(Debug, Serialize)]
pub struct Snapshot {
    /// Every orb record.
    pub orbs: Vec<OrbRecord>,
    /// Every room with its participants.
    pub rooms: Vec<RoomInfo>,
    /// Slots used, `MAX_CONCURRENT_ORBS` and rooms waiting.
    pub capacity: Capacity,
    /// When it was taken, ms since the Unix epoch.
    pub at_ms: u64,
}

/// The capacity part of a [`Snapshot`].
#[derive(Debug, Serialize)]
pub struct Capacity {
    /// Orb processes alive.
    pub active: usize,
    /// `MAX_CONCURRENT_ORBS`.
    pub max: usize,
    /// Rooms waiting for a slot.
    pub queued: usize,
    /// The warm pool (`ORB_WARM_POOL`; `size` 0: off).
    pub warm: WarmSummary,
}

/// The warm pool part of [`Capacity`].
#[derive(Debug, Serialize)]
pub struct WarmSummary {
    /// Orbs it keeps.
    pub size: usize,
    /// Ready to be given a room.
    pub ready: usize,
    /// Refilling paused after failures.
    pub parked: bool,
    /// Off for good.
    pub disabled: bool,
}

async fn snapshot(admin: &AdminState) -> Snapshot {
    let counts = admin.orbs.counts();
    Snapshot {
        orbs: admin.orbs.list().await,
        rooms: admin.registry.room_list().await,
        capacity: Capacity {
            active: counts.active,
            max: counts.max,
            queued: counts.queued,
            warm: WarmSummary {
                size: counts.warm.size,
                ready: counts.warm.ready,
                parked: counts.warm.parked,
                disabled: counts.warm.disabled,
            },
        },
        at_ms: epoch_ms(),
    }
}

/// `GET /api/events`: a `snapshot` event now and every second after.
async fn events(State(state): State<EventsState>, headers: HeaderMap, Query(query): Query<TokenQuery>) -> Response {
    let header = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    let given = bearer(header).or(query.token.as_deref());
    let allowed = given.is_some_and(|given| constant_time_eq(given.as_bytes(), state.admin.token.as_bytes()));
    if !allowed {
        return ApiError::unauthorized().into_response();
    }
    let mut ticks = tokio::time::interval(EVENTS_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let feed = stream::unfold((state, ticks), |(state, mut ticks)| async move {
        tokio::select! {
            () = state.draining.cancelled() => None,
            _ = ticks.tick() => {
                let data = serde_json::to_string(&snapshot(&state.admin).await).unwrap_or_else(|_| "{}".to_owned());
                let event = Event::default().event("snapshot").data(data);
                Some((Ok::<Event, Infallible>(event), (state, ticks)))
            }
        }
    });
    ([(CACHE_CONTROL, "no-cache")], Sse::new(feed)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_reference_only_embedded_files() {
        for text in [
            ROOM_HTML,
            DASHBOARD_HTML,
            ROOM_JS,
            ROOM_MEDIA_JS,
            DASHBOARD_JS,
            STYLE_CSS,
        ] {
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "external reference"
            );
        }
        for html in [ROOM_HTML, DASHBOARD_HTML] {
            assert!(
                !html.contains("<script>") && !html.contains("style="),
                "inline code breaks the CSP"
            );
        }
    }
}
