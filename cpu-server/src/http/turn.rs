//! `GET /api/turn-credentials`: the ICE servers a browser uses before joining.
//!
//! The answer is `{"iceServers":[{"urls":[…]}, {"urls":[…],"username":…,"credential":…}]}`
//! (an empty list when nothing is configured) with `Cache-Control: no-store`.
//! With `TURN_SHARED_SECRET` the TURN entry carries short-lived credentials in the
//! TURN REST convention coturn checks with `use-auth-secret`:
//! username `<expiry-unix-seconds>:<userId>`, credential base64(HMAC-SHA1(secret, username)).
//! With client authentication on (`JWT_SECRET`) the caller needs the same token as
//! the room socket, and its user id is the `<userId>`; otherwise the id is random.
//! Secrets and credentials are never logged.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha1::Sha1;
use tracing::warn;

use super::AppState;
use crate::auth::{Auth, Credential, Refusal};
use crate::settings::turn::{TurnCredentials, TurnSettings};

/// The query parameters read: `?token=` (like the room socket) and `?room=`
/// (for a token restricted to some rooms).
#[derive(Debug, Default, Deserialize)]
pub struct TurnQuery {
    token: Option<String>,
    room: Option<String>,
}

/// The handler.
pub async fn turn_credentials(
    State(state): State<AppState>,
    Query(query): Query<TurnQuery>,
    headers: HeaderMap,
) -> Response {
    let user_id = match authenticated_user_id(&state.auth, &headers, query) {
        Ok(Some(user)) => user,
        Ok(None) => uuid::Uuid::new_v4().simple().to_string(),
        Err(refusal) => {
            warn!(code = refusal.code, "turn credentials refused");
            let body = json!({"type": "error", "code": refusal.code, "message": refusal.message});
            return no_store((refusal.status, axum::Json(body)));
        }
    };
    let body = ice_servers(&state.turn, &user_id, SystemTime::now());
    no_store(axum::Json(body))
}

/// The caller's user id when client authentication is on (`JWT_SECRET`): the same
/// token as the room socket (`Authorization: Bearer …` or `?token=…`), checked
/// like an upgrade (a token restricted to rooms needs `?room=` naming one of them).
/// `Ok(None)` when client authentication is off: the caller gets a random id.
/// `ALLOWED_ORIGINS` applies as it does to room sockets.
fn authenticated_user_id(auth: &Auth, headers: &HeaderMap, query: TurnQuery) -> Result<Option<String>, Refusal> {
    auth.check_origin(headers)?;
    if !auth.jwt_required() {
        return Ok(None);
    }
    let room = query.room.unwrap_or_default();
    match auth.check_upgrade(headers, query.token, &room)? {
        Credential::Client(claims) => Ok(Some(claims.user_id)),
        Credential::None | Credential::Opaque(_) => Err(Refusal {
            status: StatusCode::UNAUTHORIZED,
            code: "token_invalid",
            message: "a client JWT is required: Authorization: Bearer <jwt> or ?token=<jwt>".to_owned(),
        }),
    }
}

fn no_store(response: impl IntoResponse) -> Response {
    let mut response = response.into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The `{"iceServers":[…]}` body for `user_id` at `now`.
pub fn ice_servers(turn: &TurnSettings, user_id: &str, now: SystemTime) -> Value {
    let mut servers = Vec::new();
    if !turn.stun_urls.is_empty() {
        servers.push(json!({ "urls": turn.stun_urls }));
    }
    match &turn.credentials {
        TurnCredentials::None => {}
        TurnCredentials::Static { username, password } => servers.push(json!({
            "urls": turn.turn_urls,
            "username": username,
            "credential": password.expose(),
        })),
        TurnCredentials::SharedSecret { secret, ttl } => {
            let (username, credential) = rest_credential(secret.expose(), user_id, now, *ttl);
            servers.push(json!({
                "urls": turn.turn_urls,
                "username": username,
                "credential": credential,
            }));
        }
    }
    json!({ "iceServers": servers })
}

/// TURN REST credentials valid for `ttl` from `now`: (`<expiry>:<user_id>`, base64(HMAC-SHA1)).
pub fn rest_credential(secret: &str, user_id: &str, now: SystemTime, ttl: Duration) -> (String, String) {
    let expiry = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() + ttl.as_secs();
    let username = format!("{expiry}:{user_id}");
    let credential = hmac_sha1_base64(secret, &username);
    (username, credential)
}

/// base64(HMAC-SHA1(secret, message)), the credential coturn expects.
pub fn hmac_sha1_base64(secret: &str, message: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha1>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(message.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::secret::Secret;

    /// Computed independently:
    /// `printf '%s' '1700000000:alice' | openssl dgst -sha1 -hmac 'north-sea#42$' -binary | base64`
    /// (and Python's `hmac`), both giving `QbrUNrhQyNm6yqyeVneJczK7+is=`.
    #[test]
    fn credential_matches_an_independent_hmac_sha1_vector() {
        assert_eq!(
            hmac_sha1_base64("north-sea#42$", "1700000000:alice"),
            "QbrUNrhQyNm6yqyeVneJczK7+is="
        );
        let now = UNIX_EPOCH + Duration::from_secs(1_699_913_600);
        let (username, credential) = rest_credential("north-sea#42$", "alice", now, Duration::from_secs(86_400));
        assert_eq!(username, "1700000000:alice");
        assert_eq!(credential, "QbrUNrhQyNm6yqyeVneJczK7+is=");
    }

    #[test]
    fn body_lists_stun_then_turn_and_is_empty_when_unconfigured() {
        let now = UNIX_EPOCH + Duration::from_secs(1000);
        assert_eq!(
            ice_servers(&TurnSettings::default(), "u", now),
            json!({"iceServers": []})
        );
        let turn = TurnSettings {
            stun_urls: vec!["stun:s.example".into()],
            turn_urls: vec!["turn:t.example".into()],
            credentials: TurnCredentials::SharedSecret {
                secret: Secret::new("k"),
                ttl: Duration::from_secs(60),
            },
        };
        let body = ice_servers(&turn, "bob", now);
        assert_eq!(body["iceServers"][0], json!({"urls": ["stun:s.example"]}));
        assert_eq!(body["iceServers"][1]["urls"], json!(["turn:t.example"]));
        assert_eq!(body["iceServers"][1]["username"], "1060:bob");
        assert_eq!(body["iceServers"][1]["credential"], hmac_sha1_base64("k", "1060:bob"));
        let fixed = TurnSettings {
            credentials: TurnCredentials::Static {
                username: "u1".into(),
                password: Secret::new("p1"),
            },
            ..turn
        };
        let body = ice_servers(&fixed, "bob", now);
        assert_eq!(body["iceServers"][1]["username"], "u1");
        assert_eq!(body["iceServers"][1]["credential"], "p1");
    }
}
