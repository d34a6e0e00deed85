//! [`OrbTokenCheck`]: the seam through which an AI join's token is verified.
//!
//! Auth decides *when* a join needs an orb token; whoever issues the tokens
//! (the OrbManager, through `orbs::token_check`) decides *whether* one is
//! valid. Auth sees only this trait, so it imports nothing of `orbs`.

use futures_util::future::BoxFuture;
use shared::secret::Secret;

/// Answers whether `token` lets a socket join `room` as its AI.
///
/// Dyn-compatible (`Arc<dyn OrbTokenCheck>`): the answer is a boxed future.
/// A check may consume the token (one-time operator tokens).
pub trait OrbTokenCheck: Send + Sync + std::fmt::Debug {
    /// Whether `token` is valid for `room` now.
    fn verify<'a>(&'a self, room: &'a str, token: &'a Secret) -> BoxFuture<'a, bool>;
}

/// Accepts no orb token at all (a server without an OrbManager, and tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoOrbTokens;

impl OrbTokenCheck for NoOrbTokens {
    fn verify<'a>(&'a self, _room: &'a str, _token: &'a Secret) -> BoxFuture<'a, bool> {
        Box::pin(std::future::ready(false))
    }
}
