//! HS256 JSON Web Tokens of clients, verified by hand with `ring`'s HMAC
//! (already in the build for rustls) and `base64`: only `HS256` is accepted,
//! so neither `alg: none` nor algorithm confusion is possible.
//!
//! Claims read: `sub` (or `userId`) → user id, `role`, `exp` (required, with
//! [`LEEWAY_SECS`] of leeway), `nbf` (optional), and `room` (a string) or
//! `rooms` (an array): when either is present it must name the path's room.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use serde_json::{Map, Value};

use shared::secret::Secret;

/// Longest user id accepted from a claim (as in a `join`).
const MAX_ID_LEN: usize = 128;

/// Clock skew tolerated on `exp` and `nbf`, seconds.
pub const LEEWAY_SECS: u64 = 30;

/// The HS256 key (never printed).
#[derive(Clone)]
pub struct JwtKey(hmac::Key);

impl JwtKey {
    /// The key of `secret` (`JWT_SECRET`).
    pub fn new(secret: &Secret) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, secret.expose().as_bytes()))
    }
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKey(<redacted>)")
    }
}

/// Who a valid token says the client is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientClaims {
    /// `sub` or `userId`.
    pub user_id: String,
    /// `role`.
    pub role: String,
}

/// Why a token was refused; each maps to its own `code` in the 401 body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Malformed, wrong algorithm, bad signature or unusable claims.
    #[error("invalid token: {0}")]
    Invalid(&'static str),
    /// `exp` has passed (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `room`/`rooms` do not include the room of the path.
    #[error("token not valid for this room")]
    WrongRoom,
}

impl JwtError {
    /// The machine-readable code of the refusal.
    pub fn code(self) -> &'static str {
        match self {
            Self::Invalid(_) => "token_invalid",
            Self::Expired => "token_expired",
            Self::WrongRoom => "token_wrong_room",
        }
    }
}

/// Whether `token` has the shape of a JWT (three base64url parts), as opposed
/// to an opaque orb token.
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'='))
}

/// Verifies `token` for `room` at `now` (seconds since the epoch).
pub fn verify(key: &JwtKey, token: &str, room: &str, now: u64) -> Result<ClientClaims, JwtError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Invalid("not three dot-separated parts"));
    };
    let header = decode_object(header).ok_or(JwtError::Invalid("header is not base64url JSON"))?;
    if header.get("alg").and_then(Value::as_str) != Some("HS256") {
        return Err(JwtError::Invalid("alg must be HS256"));
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature.trim_end_matches('='))
        .map_err(|_| JwtError::Invalid("signature is not base64url"))?;
    let signed_len = token.len() - token.rsplit('.').next().map_or(0, str::len) - 1;
    hmac::verify(&key.0, &token.as_bytes()[..signed_len], &signature)
        .map_err(|_| JwtError::Invalid("bad signature"))?;
    let claims = decode_object(payload).ok_or(JwtError::Invalid("payload is not base64url JSON"))?;
    let exp = claims
        .get("exp")
        .and_then(seconds)
        .ok_or(JwtError::Invalid("no numeric exp claim"))?;
    if now > exp.saturating_add(LEEWAY_SECS) {
        return Err(JwtError::Expired);
    }
    if let Some(nbf) = claims.get("nbf") {
        let nbf = seconds(nbf).ok_or(JwtError::Invalid("nbf is not a number"))?;
        if now.saturating_add(LEEWAY_SECS) < nbf {
            return Err(JwtError::Invalid("not valid yet (nbf)"));
        }
    }
    check_room(&claims, room)?;
    let user_id = claims
        .get("sub")
        .or_else(|| claims.get("userId"))
        .and_then(id_string)
        .ok_or(JwtError::Invalid("no usable sub or userId claim"))?;
    let role = claims
        .get("role")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty() && r.len() <= 32 && !r.chars().any(char::is_control))
        .ok_or(JwtError::Invalid("no usable role claim"))?
        .to_owned();
    Ok(ClientClaims { user_id, role })
}

/// `room` and `rooms` (either, both or neither): when any is present, `room` must be named.
fn check_room(claims: &Map<String, Value>, room: &str) -> Result<(), JwtError> {
    let mut restricted = false;
    let mut allowed = false;
    match claims.get("room") {
        None | Some(Value::Null) => {}
        Some(Value::String(r)) => {
            restricted = true;
            allowed |= r == room;
        }
        Some(_) => return Err(JwtError::Invalid("room claim is not a string")),
    }
    match claims.get("rooms") {
        None | Some(Value::Null) => {}
        Some(Value::Array(rooms)) => {
            restricted = true;
            allowed |= rooms.iter().any(|r| r.as_str() == Some(room));
        }
        Some(_) => return Err(JwtError::Invalid("rooms claim is not an array")),
    }
    if restricted && !allowed {
        return Err(JwtError::WrongRoom);
    }
    Ok(())
}

fn decode_object(part: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// A NumericDate: whole or fractional seconds, not negative.
fn seconds(value: &Value) -> Option<u64> {
    value
        .as_u64()
        .or_else(|| value.as_f64().filter(|f| f.is_finite() && *f >= 0.0).map(|f| f as u64))
}

/// A user id claim: a string or an integer, 1 to 128 characters, no control characters.
fn id_string(value: &Value) -> Option<String> {
    let id = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        _ => return None,
    };
    (!id.is_empty() && id.len() <= MAX_ID_LEN && !id.chars().any(char::is_control)).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    const NOW: u64 = 1_800_000_000;

    fn sign(secret: &str, header: &Value, claims: &Value) -> String {
        let head = URL_SAFE_NO_PAD.encode(header.to_string());
        let body = URL_SAFE_NO_PAD.encode(claims.to_string());
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
        let tag = hmac::sign(&key, format!("{head}.{body}").as_bytes());
        format!("{head}.{body}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    fn hs256(claims: Value) -> String {
        sign(SECRET, &json!({"alg":"HS256","typ":"JWT"}), &claims)
    }

    fn key() -> JwtKey {
        JwtKey::new(&Secret::new(SECRET))
    }

    #[test]
    fn a_valid_token_gives_id_and_role() {
        let token = hs256(json!({"sub":"u1","role":"coach","exp":NOW + 60,"rooms":["a","r1"]}));
        assert!(looks_like_jwt(&token));
        assert_eq!(
            verify(&key(), &token, "r1", NOW),
            Ok(ClientClaims {
                user_id: "u1".into(),
                role: "coach".into()
            })
        );
        let numeric = hs256(json!({"userId":42,"role":"client","exp":NOW}));
        assert_eq!(verify(&key(), &numeric, "any", NOW).map(|c| c.user_id), Ok("42".into()));
    }

    #[test]
    fn each_refusal_has_its_reason() {
        let k = key();
        let good = json!({"sub":"u1","role":"coach","exp":NOW + 60});
        let other_key = sign("another-secret-another-secret-xx", &json!({"alg":"HS256"}), &good);
        assert_eq!(
            verify(&k, &other_key, "r", NOW).map_err(JwtError::code),
            Err("token_invalid")
        );
        let none = sign(SECRET, &json!({"alg":"none"}), &good);
        assert_eq!(
            verify(&k, &none, "r", NOW).map_err(JwtError::code),
            Err("token_invalid")
        );
        let expired = hs256(json!({"sub":"u1","role":"coach","exp":NOW - LEEWAY_SECS - 1}));
        assert_eq!(verify(&k, &expired, "r", NOW), Err(JwtError::Expired));
        let in_leeway = hs256(json!({"sub":"u1","role":"coach","exp":NOW - 5}));
        assert!(verify(&k, &in_leeway, "r", NOW).is_ok());
        let wrong = hs256(json!({"sub":"u1","role":"coach","exp":NOW + 60,"room":"other"}));
        assert_eq!(verify(&k, &wrong, "r", NOW), Err(JwtError::WrongRoom));
        let no_exp = hs256(json!({"sub":"u1","role":"coach"}));
        assert!(matches!(verify(&k, &no_exp, "r", NOW), Err(JwtError::Invalid(_))));
        let no_role = hs256(json!({"sub":"u1","exp":NOW + 60}));
        assert!(matches!(verify(&k, &no_role, "r", NOW), Err(JwtError::Invalid(_))));
        let control = hs256(json!({"sub":"u\n1","role":"coach","exp":NOW + 60}));
        assert!(matches!(verify(&k, &control, "r", NOW), Err(JwtError::Invalid(_))));
        let mut tampered = hs256(good.clone());
        tampered.insert(tampered.find('.').unwrap_or(0) + 2, 'x');
        assert!(matches!(verify(&k, &tampered, "r", NOW), Err(JwtError::Invalid(_))));
        for junk in ["", "a.b", "a.b.c.d", "...", "eyJ.eyJ.!!"] {
            assert!(
                matches!(verify(&k, junk, "r", NOW), Err(JwtError::Invalid(_))),
                "{junk}"
            );
        }
        assert!(!looks_like_jwt("0123456789abcdef0123456789abcdef"));
    }

    #[test]
    fn mutated_and_random_tokens_never_panic_and_never_change_the_claims() {
        let k = key();
        let good = hs256(json!({"sub":"u1","role":"coach","exp":NOW + 60,"rooms":["r"]}));
        let want = verify(&k, &good, "r", NOW).expect("valid");
        let mut rng = fastrand::Rng::with_seed(7);
        let alphabet = b"AZaz09-_.=+/ \x00\xff{}\"";
        for _ in 0..20_000 {
            let mut bytes = good.clone().into_bytes();
            for _ in 0..=rng.usize(..4) {
                let at = rng.usize(..bytes.len());
                match rng.u8(..3) {
                    0 => bytes[at] = alphabet[rng.usize(..alphabet.len())],
                    1 => {
                        bytes.remove(at);
                    }
                    _ => bytes.insert(at, alphabet[rng.usize(..alphabet.len())]),
                }
            }
            let token = String::from_utf8_lossy(&bytes);
            // A base64 variant of the same bytes may still verify: then it says the same.
            if let Ok(claims) = verify(&k, &token, "r", NOW) {
                assert_eq!(claims, want, "{token}");
            }
        }
        for _ in 0..5_000 {
            let len = rng.usize(..200);
            let junk: String = (0..len)
                .map(|_| char::from(alphabet[rng.usize(..alphabet.len())]))
                .collect();
            assert!(verify(&k, &junk, "r", NOW).is_err(), "{junk}");
        }
    }
}
