//! Who may open a room socket and join as whom (docs/protocol.md §1.8, §6.1).
//!
//! Two identities, checked at two moments:
//! - **at the upgrade** ([`Auth::check_upgrade`]): the `Origin` against
//!   `ALLOWED_ORIGINS`, and, when `JWT_SECRET` is set, the client's HS256 JWT
//!   (`Authorization: Bearer` or `?token=`); a refusal is an HTTP 401/403 with a
//!   JSON body whose `code` says why. An opaque (non-JWT) token passes as a
//!   candidate orb credential, verified at the join.
//! - **at the `join`** ([`Auth::check_join`]): an AI join needs the room's orb
//!   token (from the upgrade or the join's `token` field, which is stripped),
//!   verified through the [`OrbTokenCheck`] seam (the OrbManager in the
//!   server); a human join must match the JWT's id and role.
//!
//! Refused joins get an `error` (`unauthorized` or `forbidden`) and the socket
//! stays open, like every other refused frame.
//!
//! # Layout
//! - [`token`]: where tokens come from (each kept in a `shared::secret::Secret`).
//! - [`jwt`]: HS256 verification.
//! - [`orb_tokens`]: [`OrbTokenCheck`], who says whether an orb token is valid.

pub mod jwt;
pub mod orb_tokens;
pub mod token;

use std::sync::Arc;

use axum::http::header::ORIGIN;
use axum::http::{HeaderMap, StatusCode};
use shared::clock::epoch_secs;
use shared::room::{ErrorCode, JoinRequest};
use shared::secret::Secret;
use tracing::{info, warn};

pub use jwt::{ClientClaims, JwtError, JwtKey};
pub use orb_tokens::{NoOrbTokens, OrbTokenCheck};

use crate::settings::SecuritySettings;
use crate::settings::security::normalize_origin;

/// The authentication settings in force; cheap to clone.
#[derive(Debug, Clone)]
pub struct Auth {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    orb_auth: bool,
    jwt: Option<JwtKey>,
    origins: Vec<String>,
    orb_tokens: Arc<dyn OrbTokenCheck>,
}

impl Default for Auth {
    /// Orb tokens required (and none valid), no client JWT, any origin.
    fn default() -> Self {
        Self::new(&SecuritySettings::default(), Arc::new(NoOrbTokens))
    }
}

/// What the upgrade request proved.
#[derive(Debug, Clone, Default)]
pub enum Credential {
    /// No token (or a JWT that cannot be checked because `JWT_SECRET` is unset).
    #[default]
    None,
    /// A verified client JWT.
    Client(ClientClaims),
    /// An opaque token: a candidate orb token, verified when the socket joins as the AI.
    Opaque(Secret),
}

/// An upgrade refused before the socket opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// 401 or 403.
    pub status: StatusCode,
    /// `token_missing`, `token_invalid`, `token_expired`, `token_wrong_room` or `origin_forbidden`.
    pub code: &'static str,
    /// Human-readable reason (never the token).
    pub message: String,
}

/// A refused `join`: the `error` code and message to send back.
pub type JoinRefusal = (ErrorCode, String);

impl Auth {
    /// The checks `settings` ask for; `orb_tokens` verifies the tokens of AI joins.
    pub fn new(settings: &SecuritySettings, orb_tokens: Arc<dyn OrbTokenCheck>) -> Self {
        Self {
            inner: Arc::new(Inner {
                orb_auth: settings.orb_auth,
                jwt: settings.jwt_secret.as_ref().map(JwtKey::new),
                origins: settings.allowed_origins.clone(),
                orb_tokens,
            }),
        }
    }

    /// Logs at start what is protected and what is not.
    pub fn log_startup(&self) {
        if !self.inner.orb_auth {
            warn!("ORB_AUTH=false: any socket may join rooms as the AI participant without a token");
        }
        if self.inner.jwt.is_none() {
            warn!("JWT_SECRET unset: room sockets are not authenticated (anonymous clients)");
        }
        info!(
            orb_auth = self.inner.orb_auth,
            client_jwt = self.inner.jwt.is_some(),
            allowed_origins = self.inner.origins.len(),
            "room socket authentication"
        );
    }

    /// Client JWTs are required (`JWT_SECRET` set).
    pub fn jwt_required(&self) -> bool {
        self.inner.jwt.is_some()
    }

    /// `Origin` against `ALLOWED_ORIGINS` (when set). A request without an
    /// `Origin` is not a browser's (browsers always send it on WebSocket
    /// upgrades) and passes; the origin check stops other sites' pages.
    pub fn check_origin(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        if self.inner.origins.is_empty() {
            return Ok(());
        }
        let Some(origin) = headers.get(ORIGIN) else {
            return Ok(());
        };
        let origin = origin.to_str().map(normalize_origin).unwrap_or_default();
        if self.inner.origins.contains(&origin) {
            Ok(())
        } else {
            Err(Refusal {
                status: StatusCode::FORBIDDEN,
                code: "origin_forbidden",
                message: "this origin may not open room sockets (ALLOWED_ORIGINS)".to_owned(),
            })
        }
    }

    /// The checks before the upgrade of a socket to `room`.
    pub fn check_upgrade(
        &self,
        headers: &HeaderMap,
        query_token: Option<String>,
        room: &str,
    ) -> Result<Credential, Refusal> {
        self.check_origin(headers)?;
        let token = token::from_upgrade(headers, query_token);
        match (&self.inner.jwt, token) {
            (Some(_), None) => Err(unauthorized(
                "token_missing",
                "a token is required: Authorization: Bearer <jwt> or ?token=<jwt>".to_owned(),
            )),
            (None, None) => Ok(Credential::None),
            (Some(key), Some(token)) if jwt::looks_like_jwt(token.expose()) => {
                jwt::verify(key, token.expose(), room, epoch_secs())
                    .map(Credential::Client)
                    .map_err(|e| unauthorized(e.code(), e.to_string()))
            }
            (None, Some(token)) if jwt::looks_like_jwt(token.expose()) => Ok(Credential::None),
            (_, Some(token)) => Ok(Credential::Opaque(token)),
        }
    }

    /// The checks of a `join` on a socket of `room` that presented `credential`
    /// at its upgrade; `join_token` is the join's own `token` field (already stripped).
    pub async fn check_join(
        &self,
        room: &str,
        credential: &Credential,
        join_token: Option<Secret>,
        request: &JoinRequest,
    ) -> Result<(), JoinRefusal> {
        if request.is_ai() {
            if !self.inner.orb_auth {
                return Ok(());
            }
            let token = join_token.or_else(|| match credential {
                Credential::Opaque(token) => Some(token.clone()),
                _ => None,
            });
            let Some(token) = token else {
                return Err((
                    ErrorCode::Unauthorized,
                    "joining as the AI needs the room's orb token".to_owned(),
                ));
            };
            if self.inner.orb_tokens.verify(room, &token).await {
                return Ok(());
            }
            return Err((
                ErrorCode::Forbidden,
                "the orb token is not valid for this room".to_owned(),
            ));
        }
        if !self.jwt_required() {
            return Ok(());
        }
        match credential {
            Credential::Client(claims) if claims.user_id == request.user_id && claims.role == request.user_role => {
                Ok(())
            }
            Credential::Client(_) => Err((
                ErrorCode::Forbidden,
                "userId and userRole must match the token's claims".to_owned(),
            )),
            Credential::Opaque(_) => Err((ErrorCode::Forbidden, "an orb token may only join as the AI".to_owned())),
            Credential::None => Err((ErrorCode::Unauthorized, "a client token is required".to_owned())),
        }
    }
}

fn unauthorized(code: &'static str, message: String) -> Refusal {
    Refusal {
        status: StatusCode::UNAUTHORIZED,
        code,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use axum::http::header::AUTHORIZATION;

    /// Accepts exactly `valid` in room `r1`.
    #[derive(Debug)]
    struct OneToken(&'static str);

    impl OrbTokenCheck for OneToken {
        fn verify<'a>(&'a self, room: &'a str, token: &'a Secret) -> futures_util::future::BoxFuture<'a, bool> {
            Box::pin(std::future::ready(room == "r1" && token.expose() == self.0))
        }
    }

    fn auth(jwt: bool, origins: &[&str]) -> Auth {
        Auth::new(
            &SecuritySettings {
                jwt_secret: jwt.then(|| Secret::new("k".repeat(32))),
                allowed_origins: origins.iter().map(|o| normalize_origin(o)).collect(),
                ..SecuritySettings::default()
            },
            Arc::new(OneToken("orb-token")),
        )
    }

    #[test]
    fn origins_are_checked_only_when_listed_and_only_for_browsers() {
        let mut headers = HeaderMap::new();
        assert!(auth(false, &["https://app.example.com"]).check_origin(&headers).is_ok());
        headers.insert(ORIGIN, HeaderValue::from_static("https://APP.example.com"));
        assert!(
            auth(false, &["https://app.example.com/"])
                .check_origin(&headers)
                .is_ok()
        );
        headers.insert(ORIGIN, HeaderValue::from_static("https://evil.example"));
        let refusal = auth(false, &["https://app.example.com"])
            .check_origin(&headers)
            .expect_err("refused");
        assert_eq!(
            (refusal.status, refusal.code),
            (StatusCode::FORBIDDEN, "origin_forbidden")
        );
        assert!(auth(false, &[]).check_origin(&headers).is_ok());
    }

    #[test]
    fn upgrade_needs_a_token_only_with_jwt_and_opaque_tokens_pass_as_orb_candidates() {
        let none = HeaderMap::new();
        assert!(matches!(
            auth(false, &[]).check_upgrade(&none, None, "r"),
            Ok(Credential::None)
        ));
        let missing = auth(true, &[]).check_upgrade(&none, None, "r").expect_err("401");
        assert_eq!(
            (missing.status, missing.code),
            (StatusCode::UNAUTHORIZED, "token_missing")
        );
        let mut orb = HeaderMap::new();
        orb.insert(AUTHORIZATION, HeaderValue::from_static("Bearer 00ff00ff"));
        assert!(matches!(
            auth(true, &[]).check_upgrade(&orb, None, "r"),
            Ok(Credential::Opaque(_))
        ));
        let bad = auth(true, &[])
            .check_upgrade(&none, Some("e30.e30.AAAA".into()), "r")
            .expect_err("401");
        assert_eq!(bad.code, "token_invalid");
        assert!(matches!(
            auth(false, &[]).check_upgrade(&none, Some("e30.e30.AAAA".into()), "r"),
            Ok(Credential::None)
        ));
    }

    fn join(user_id: &str, role: &str, participant_type: &str) -> JoinRequest {
        JoinRequest {
            user_id: user_id.into(),
            user_name: String::new(),
            user_role: role.into(),
            participant_type: participant_type.into(),
        }
    }

    #[tokio::test]
    async fn ai_joins_need_a_token_the_check_accepts_from_the_upgrade_or_the_join() {
        let auth = auth(false, &[]);
        let ai = join("ai-orb-1", "ai", "ai");
        let good = || Some(Secret::new("orb-token"));
        assert_eq!(auth.check_join("r1", &Credential::None, good(), &ai).await, Ok(()));
        let upgrade = Credential::Opaque(Secret::new("orb-token"));
        assert_eq!(auth.check_join("r1", &upgrade, None, &ai).await, Ok(()));
        let other_room = auth.check_join("r2", &Credential::None, good(), &ai).await;
        assert_eq!(other_room.map_err(|e| e.0), Err(ErrorCode::Forbidden));
        let wrong = auth
            .check_join("r1", &Credential::None, Some(Secret::new("nope")), &ai)
            .await;
        assert_eq!(wrong.map_err(|e| e.0), Err(ErrorCode::Forbidden));
        let none = auth.check_join("r1", &Credential::None, None, &ai).await;
        assert_eq!(none.map_err(|e| e.0), Err(ErrorCode::Unauthorized));
        // userRole ai alone is an AI join too.
        let role_only = join("x", "ai", "human");
        let refused = auth.check_join("r1", &Credential::None, None, &role_only).await;
        assert_eq!(refused.map_err(|e| e.0), Err(ErrorCode::Unauthorized));
        // Humans need nothing without JWT_SECRET.
        assert_eq!(
            auth.check_join("r1", &Credential::None, None, &join("u", "coach", "human"))
                .await,
            Ok(())
        );
        // ORB_AUTH=false lets a tokenless AI in; the default check accepts no token.
        let open = Auth::new(
            &SecuritySettings {
                orb_auth: false,
                ..SecuritySettings::default()
            },
            Arc::new(NoOrbTokens),
        );
        assert_eq!(open.check_join("r1", &Credential::None, None, &ai).await, Ok(()));
        let closed = Auth::default().check_join("r1", &Credential::None, good(), &ai).await;
        assert_eq!(closed.map_err(|e| e.0), Err(ErrorCode::Forbidden));
    }

    #[tokio::test]
    async fn with_jwt_a_human_join_must_match_the_claims() {
        let auth = auth(true, &[]);
        let claims = Credential::Client(ClientClaims {
            user_id: "u1".into(),
            role: "client".into(),
        });
        let code = |r: Result<(), JoinRefusal>| r.map_err(|e| e.0);
        assert_eq!(
            auth.check_join("r", &claims, None, &join("u1", "client", "human"))
                .await,
            Ok(())
        );
        let other_id = auth
            .check_join("r", &claims, None, &join("u2", "client", "human"))
            .await;
        assert_eq!(code(other_id), Err(ErrorCode::Forbidden));
        let other_role = auth.check_join("r", &claims, None, &join("u1", "coach", "human")).await;
        assert_eq!(code(other_role), Err(ErrorCode::Forbidden));
        let opaque = Credential::Opaque(Secret::new("ab"));
        let orb_as_human = auth
            .check_join("r", &opaque, None, &join("u1", "client", "human"))
            .await;
        assert_eq!(code(orb_as_human), Err(ErrorCode::Forbidden));
        // A client token does not make its holder the AI.
        let as_ai = auth.check_join("r", &claims, None, &join("u1", "ai", "ai")).await;
        assert_eq!(code(as_ai), Err(ErrorCode::Unauthorized));
    }
}
