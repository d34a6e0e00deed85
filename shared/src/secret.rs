//! Credentials in memory: [`Secret`], which never prints, and
//! [`constant_time_eq`], the one comparison of secret bytes both binaries use.
//!
//! Every token, password and key the binaries hold (client JWT secret, orb
//! tokens, TURN secrets, the OpenAI key, the admin token) is a [`Secret`] or
//! is compared through [`constant_time_eq`].

use std::fmt;

/// A credential: passed on and compared, never printed. `Debug` and `Display`
/// show `Secret(<redacted>)` / `<redacted>`; equality is [`constant_time_eq`].
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the one place that sends, signs or verifies with it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        constant_time_eq(self.0.as_bytes(), other.0.as_bytes())
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Whether `a` and `b` are the same bytes, in time that never depends on
/// their contents (nor on where they first differ).
///
/// Length policy: the lengths are **not** secret. Both inputs are walked to
/// the longer length (a missing byte counts as a difference), so the time
/// grows with `max(a.len(), b.len())` and reveals that maximum, never which
/// one is longer nor how many bytes match. Our secrets have public lengths
/// (orb tokens are 32 hex digits; generated admin tokens have a fixed size),
/// and the caller controls the length of the guessed side anyway.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let len = a.len().max(b.len());
    let mut diff = a.len() ^ b.len();
    for i in 0..len {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(std::hint::black_box(x ^ y));
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_is_exact_whatever_the_lengths() {
        assert!(constant_time_eq(b"0123456789abcdef", b"0123456789abcdef"));
        assert!(!constant_time_eq(b"0123456789abcdef", b"0123456789abcdeg"));
        assert!(!constant_time_eq(b"0123456789abcdef", b"0123456789abcde"));
        assert!(!constant_time_eq(b"abc", b"abc\0"), "a trailing NUL is a difference");
        assert!(!constant_time_eq(b"abc\0", b"abc"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn secrets_never_print_and_compare_by_value() {
        let secret = Secret::new("sk-live-123");
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
        assert_eq!(secret.to_string(), "<redacted>");
        assert_eq!(format!("{:?}", Some(&secret)), "Some(Secret(<redacted>))");
        assert_eq!(secret.expose(), "sk-live-123");
        assert_eq!(secret, Secret::new(String::from("sk-live-123")));
        assert_ne!(secret, Secret::new("sk-live-124"));
        assert_ne!(secret, Secret::new("sk-live-12"));
    }
}
