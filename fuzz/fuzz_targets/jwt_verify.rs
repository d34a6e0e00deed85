//! Client JWT verification (cpu-server's `auth/jwt.rs`, compiled here from its
//! source so the fuzz build stays small): arbitrary tokens must never panic,
//! and tokens signed with the right key but arbitrary header and claims must
//! never yield an unusable identity.
//!
//! Input: first byte selects the mode. Mode even: the rest is the token as sent.
//! Mode odd: the rest is `header 0xff claims`, encoded and signed with the key,
//! so the claim checks behind the signature are reached.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;

/// cpu-server's own source (its `Secret` is `shared::secret::Secret`).
#[path = "../../cpu-server/src/auth/jwt.rs"]
mod jwt;

use jwt::{JwtKey, verify};
use shared::secret::Secret;

const SECRET: &str = "fuzz-secret-fuzz-secret-fuzz-secret!";
const NOW: u64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let key = JwtKey::new(&Secret::new(SECRET.to_owned()));
    let token = if mode % 2 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        let (header, claims) = match rest.iter().position(|b| *b == 0xff) {
            Some(at) => (&rest[..at], &rest[at + 1..]),
            None => (&br#"{"alg":"HS256"}"#[..], rest),
        };
        let signed = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
        let tag = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes()),
            signed.as_bytes(),
        );
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    };
    let _ = jwt::looks_like_jwt(&token);
    match verify(&key, &token, "room-1", NOW) {
        Ok(claims) => {
            assert!(!claims.user_id.is_empty() && claims.user_id.len() <= 128);
            assert!(!claims.user_id.chars().any(char::is_control));
            assert!(!claims.role.is_empty() && !claims.role.chars().any(char::is_control));
        }
        Err(e) => assert!(e.code().starts_with("token_")),
    }
});
