//! Orb credentials: which token lets a socket join a room as its AI.
//!
//! Each launched process gets its own random token (a killed orb's token
//! stops working when its process is gone); an operator starting
//! `gpu-orb --room=ROOM` by hand gets a one-time token with an expiry. The
//! check is a constant-time comparison. Owned by the manager; nothing else
//! holds tokens.

use std::collections::HashMap;
use std::time::Duration;

use shared::secret::constant_time_eq;
use tokio::time::Instant;

/// Most unexpired operator tokens kept per room (older ones are dropped).
const MAX_OPERATOR_TOKENS: usize = 16;

/// The tokens of every room.
#[derive(Debug, Default)]
pub struct Credentials {
    /// Per room: the process generation and its token.
    current: HashMap<String, (u64, String)>,
    /// Per room: one-time operator tokens and their expiry.
    operator: HashMap<String, Vec<(String, Instant)>>,
}

impl Credentials {
    /// A fresh token for process `generation` of `room` (replacing the last one).
    pub fn issue(&mut self, room: &str, generation: u64) -> String {
        let token = random_token();
        self.current.insert(room.to_owned(), (generation, token.clone()));
        token
    }

    /// Process `generation` of `room` is gone (or never started): its token stops working.
    pub fn revoke(&mut self, room: &str, generation: u64) {
        if self.current.get(room).is_some_and(|(g, _)| *g == generation) {
            self.current.remove(room);
        }
    }

    /// The room (among those `among` accepts) and process whose current token is `token`.
    pub fn holder(&self, token: &str, among: impl Fn(&str) -> bool) -> Option<(&str, u64)> {
        self.current
            .iter()
            .filter(|(room, _)| among(room))
            .find(|(_, (_, t))| constant_time_eq(t.as_bytes(), token.as_bytes()))
            .map(|(room, (generation, _))| (room.as_str(), *generation))
    }

    /// A one-time token for an operator's hand-started orb, valid for `ttl`.
    pub fn issue_operator(&mut self, room: &str, ttl: Duration, now: Instant) -> String {
        let token = random_token();
        let tokens = self.operator.entry(room.to_owned()).or_default();
        tokens.retain(|(_, expires)| *expires > now);
        if tokens.len() >= MAX_OPERATOR_TOKENS {
            tokens.remove(0);
        }
        tokens.push((token.clone(), now + ttl));
        token
    }

    /// Whether `token` lets a socket join `room` as its AI: the current
    /// process's token, or an unexpired operator token (consumed by this check).
    pub fn verify(&mut self, room: &str, token: &str, now: Instant) -> bool {
        if self
            .current
            .get(room)
            .is_some_and(|(_, t)| constant_time_eq(t.as_bytes(), token.as_bytes()))
        {
            return true;
        }
        let Some(tokens) = self.operator.get_mut(room) else {
            return false;
        };
        tokens.retain(|(_, expires)| *expires > now);
        let found = tokens
            .iter()
            .position(|(t, _)| constant_time_eq(t.as_bytes(), token.as_bytes()));
        if let Some(index) = found {
            tokens.swap_remove(index);
        }
        if tokens.is_empty() {
            self.operator.remove(room);
        }
        found.is_some()
    }
}

impl Credentials {
    /// The token of process `generation` of `room` (for an upgrade's handover).
    pub fn token_of(&self, room: &str, generation: u64) -> Option<String> {
        self.current
            .get(room)
            .filter(|(g, _)| *g == generation)
            .map(|(_, token)| token.clone())
    }

    /// Process `generation` of `room`, handed over by a previous program image, keeps `token`.
    pub fn keep(&mut self, room: &str, generation: u64, token: String) {
        self.current.insert(room.to_owned(), (generation, token));
    }

    /// The unexpired operator tokens: room, token, time left.
    pub fn operator_tokens(&self, now: Instant) -> Vec<(String, String, Duration)> {
        let mut all = Vec::new();
        for (room, tokens) in &self.operator {
            for (token, expires) in tokens.iter().filter(|(_, expires)| *expires > now) {
                all.push((room.clone(), token.clone(), expires.saturating_duration_since(now)));
            }
        }
        all.sort();
        all
    }

    /// Keeps an operator token a previous program image issued, for `left` more.
    pub fn keep_operator(&mut self, room: &str, token: String, left: Duration, now: Instant) {
        let tokens = self.operator.entry(room.to_owned()).or_default();
        if tokens.len() < MAX_OPERATOR_TOKENS {
            tokens.push((token, now + left));
        }
    }
}

/// A fresh 128-bit random token, hex-encoded.
fn random_token() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // getrandom only fails without an entropy source; fall back to uuid's.
        bytes = *uuid::Uuid::new_v4().as_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rule: a process's token works while it is the room's current one; a
    /// replaced or revoked one does not.
    #[test]
    fn process_tokens_follow_the_process() {
        let now = Instant::now();
        let mut c = Credentials::default();
        let first = c.issue("r", 1);
        assert!(c.verify("r", &first, now));
        assert!(!c.verify("other", &first, now), "per room");
        let second = c.issue("r", 2);
        assert!(!c.verify("r", &first, now), "replaced");
        c.revoke("r", 1);
        assert!(
            c.verify("r", &second, now),
            "an older generation's exit revokes nothing"
        );
        c.revoke("r", 2);
        assert!(!c.verify("r", &second, now));
        assert_eq!(second.len(), 32);
        assert!(second.chars().all(|ch| ch.is_ascii_hexdigit()));
    }

    /// Rule: an operator token works once, and not after its expiry.
    #[test]
    fn operator_tokens_are_one_time_and_expire() {
        let now = Instant::now();
        let mut c = Credentials::default();
        let once = c.issue_operator("r", Duration::from_secs(60), now);
        assert!(c.verify("r", &once, now));
        assert!(!c.verify("r", &once, now), "consumed");
        let late = c.issue_operator("r", Duration::from_secs(60), now);
        assert!(!c.verify("r", &late, now + Duration::from_secs(61)), "expired");
        for _ in 0..100 {
            c.issue_operator("r", Duration::from_secs(60), now);
        }
        assert!(c.operator["r"].len() <= MAX_OPERATOR_TOKENS, "bounded");
    }
}
