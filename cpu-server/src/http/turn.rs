//! `GET /api/turn-credentials`: the ICE servers a browser uses before joining.
//!
//! The answer is `{"iceServers":[{"urls":[…]}, {"urls":[…],"username":…,"credential":…}]}`
//! (an empty list when nothing is configured) with `Cache-Control: no-store`.
//! With `TURN_SHARED_SECRET` the TURN entry carries short-lived credentials in the
//! TURN REST convention coturn checks with `use-auth-secret`:
//! username `<expiry-unix-seconds>:<userId>`, credential base64(HMAC-SHA1(secret, username)).
//! Secrets and credentials are never logged.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha1::Sha1;

use super::AppState;
use crate::settings::turn::{TurnCredentials, TurnSettings};

/// The handler.
pub async fn turn_credentials(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let user_id = match authenticated_user_id(&state, &headers, &uri) {
        Ok(Some(user)) => user,
        Ok(None) => uuid::Uuid::new_v4().simple().to_string(),
        Err(status) => return no_store((status, axum::Json(json!({"error": "unauthorized"})))),
    };
    let body = ice_servers(&state.turn, &user_id, SystemTime::now());
    no_store(axum::Json(body))
}

/// HOOK for client authentication: the user id of the caller's token when client
/// authentication is on (the same token as the room socket, from
/// `Authorization: Bearer …` or `?token=…`), `Ok(None)` when it is off, and an
/// error status when it is on and the token is missing or bad.
///
/// No verifier exists yet (`settings/security.rs` has no `JWT_SECRET`), so this is
/// always `Ok(None)`: every caller gets a random user id.
fn authenticated_user_id(_state: &AppState, headers: &HeaderMap, uri: &Uri) -> Result<Option<String>, StatusCode> {
    let _token = presented_token(headers, uri);
    Ok(None)
}

/// The token a client presents: `Authorization: Bearer <t>`, else `?token=<t>`.
pub fn presented_token(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty());
    bearer.or_else(|| {
        uri.query()?
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(name, _)| *name == "token")
            .map(|(_, value)| value.to_owned())
            .filter(|t| !t.is_empty())
    })
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
    use crate::settings::turn::Secret;

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

    #[test]
    fn token_from_bearer_header_or_query() {
        let mut headers = HeaderMap::new();
        let uri: Uri = "/api/turn-credentials?x=1&token=q1".parse().expect("uri");
        assert_eq!(presented_token(&headers, &uri).as_deref(), Some("q1"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer h1"));
        assert_eq!(presented_token(&headers, &uri).as_deref(), Some("h1"));
        let bare: Uri = "/api/turn-credentials".parse().expect("uri");
        assert_eq!(presented_token(&HeaderMap::new(), &bare), None);
    }
}
