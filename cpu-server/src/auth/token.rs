//! Where tokens come from (the upgrade's `Authorization: Bearer` header, its
//! `token` query parameter, the `join` message's `token` field), each kept in a
//! [`Secret`] (`shared::secret`) so it stays out of `Debug` output and logs.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use serde_json::{Map, Value};
use shared::secret::Secret;

/// Longest token read from anywhere; longer ones are treated as absent-and-invalid.
pub const MAX_TOKEN_LEN: usize = 4096;

/// The token of an upgrade request: `Authorization: Bearer …` first, else the
/// `token` query parameter. Empty or over-long values count as none given.
pub fn from_upgrade(headers: &HeaderMap, query_token: Option<String>) -> Option<Secret> {
    let header = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .map(str::to_owned);
    header.or(query_token).and_then(checked)
}

/// The credential of `Authorization: Bearer <token>` (scheme case-insensitive).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Removes the `token` field of a `join` (whatever its type) and returns it
/// when it is a usable string, so it is never relayed, stored or logged.
pub fn take_join_token(fields: &mut Map<String, Value>) -> Option<Secret> {
    match fields.remove("token") {
        Some(Value::String(token)) => checked(token),
        _ => None,
    }
}

fn checked(token: String) -> Option<Secret> {
    (!token.is_empty() && token.len() <= MAX_TOKEN_LEN && !token.chars().any(char::is_control))
        .then(|| Secret::new(token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn bearer_header_wins_over_query_and_debug_is_redacted() {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static("bearer abc123"));
        let token = from_upgrade(&headers, Some("query".into())).expect("token");
        assert_eq!(token.expose(), "abc123");
        assert_eq!(format!("{token:?}"), "Secret(<redacted>)");
        let none = HeaderMap::new();
        assert_eq!(
            from_upgrade(&none, Some("q".into())).map(|t| t.expose().to_owned()),
            Some("q".into())
        );
        assert!(from_upgrade(&none, Some(String::new())).is_none());
        let mut basic = HeaderMap::new();
        basic.insert(AUTHORIZATION, HeaderValue::from_static("Basic dXNlcjpw"));
        assert!(from_upgrade(&basic, None).is_none());
    }

    #[test]
    fn join_token_is_removed_whatever_its_type() {
        let mut fields = Map::new();
        fields.insert("token".into(), Value::String("t0k".into()));
        fields.insert("userId".into(), Value::String("u".into()));
        assert_eq!(
            take_join_token(&mut fields).map(|t| t.expose().to_owned()),
            Some("t0k".into())
        );
        assert!(!fields.contains_key("token"));
        fields.insert("token".into(), Value::from(5));
        assert!(take_join_token(&mut fields).is_none());
        assert!(!fields.contains_key("token"));
    }
}
