//! Building typed settings from raw strings, collecting every error.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use super::DotEnv;

/// Exit code for a bad setting (`EX_USAGE` from sysexits.h).
pub const EXIT_USAGE: i32 = 64;

/// How a setting is named: its environment variable and, if any, its flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// Environment variable (also looked up in `.env`).
    pub env: &'static str,
    /// Command-line flag without dashes, if the binary has one.
    pub flag: Option<&'static str>,
}

impl Key {
    /// A setting with both a flag and an environment variable.
    pub const fn new(env: &'static str, flag: &'static str) -> Self {
        Self { env, flag: Some(flag) }
    }

    /// A setting read from the environment only.
    pub const fn env(env: &'static str) -> Self {
        Self { env, flag: None }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.flag {
            Some(flag) => write!(f, "{} (--{flag})", self.env),
            None => f.write_str(self.env),
        }
    }
}

/// One bad setting: which, the value given, what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    /// The setting.
    pub key: Key,
    /// The value given.
    pub value: String,
    /// What it must be, and how to fix it.
    pub expected: String,
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {:?}: {}", self.key, self.value, self.expected)
    }
}

/// Every bad setting found in one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingErrors(pub Vec<SettingError>);

impl fmt::Display for SettingErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid settings ({}):", self.0.len())?;
        for error in &self.0 {
            writeln!(f, "  - {error}")?;
        }
        write!(
            f,
            "Fix them in the command line, the environment or the .env file, then start again."
        )
    }
}

impl std::error::Error for SettingErrors {}

impl SettingErrors {
    /// Prints the errors to stderr and exits with [`EXIT_USAGE`].
    pub fn exit(&self) -> ! {
        eprintln!("{self}");
        std::process::exit(EXIT_USAGE)
    }
}

/// Resolves raw values (flag or environment, as clap gave them) against the
/// `.env` file and defaults, and collects every error.
#[derive(Debug)]
pub struct Validator<'a> {
    dotenv: &'a DotEnv,
    errors: Vec<SettingError>,
}

impl<'a> Validator<'a> {
    /// A validator falling back to `dotenv`.
    pub fn new(dotenv: &'a DotEnv) -> Self {
        Self {
            dotenv,
            errors: Vec::new(),
        }
    }

    /// The raw value: flag or environment, else `.env`. Empty counts as unset.
    pub fn raw(&self, key: Key, given: Option<String>) -> Option<String> {
        given
            .filter(|v| !v.is_empty())
            .or_else(|| self.dotenv.get(key.env).filter(|v| !v.is_empty()).map(str::to_owned))
    }

    /// Records an error found outside the typed helpers (e.g. a cross-field check).
    pub fn error(&mut self, key: Key, value: impl Into<String>, expected: impl Into<String>) {
        self.errors.push(SettingError {
            key,
            value: value.into(),
            expected: expected.into(),
        });
    }

    /// Any value, parsed by `parse`; `expected` describes the accepted form.
    pub fn parse<T>(
        &mut self,
        key: Key,
        given: Option<String>,
        default: T,
        expected: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> T {
        match self.raw(key, given) {
            None => default,
            Some(raw) => match parse(raw.trim()) {
                Ok(value) => value,
                Err(reason) => {
                    let expected = if reason.is_empty() {
                        expected.to_owned()
                    } else {
                        format!("{expected} ({reason})")
                    };
                    self.error(key, raw, expected);
                    default
                }
            },
        }
    }

    /// A string, or the default.
    pub fn string(&mut self, key: Key, given: Option<String>, default: &str) -> String {
        self.raw(key, given).unwrap_or_else(|| default.to_owned())
    }

    /// An optional string.
    pub fn optional(&mut self, key: Key, given: Option<String>) -> Option<String> {
        self.raw(key, given)
    }

    /// A duration in milliseconds, from `min_ms` to [`MAX_DURATION_MS`].
    pub fn millis(&mut self, key: Key, given: Option<String>, default_ms: u64, min_ms: u64) -> Duration {
        let expected = format!("a whole number of milliseconds from {min_ms} to {MAX_DURATION_MS} (30 days)");
        let ms = self.parse(key, given, default_ms, &expected, |raw| parse_millis(raw, min_ms));
        Duration::from_millis(ms)
    }

    /// A duration in milliseconds where `0` turns the limit off (`None`);
    /// otherwise from `min_ms` to [`MAX_DURATION_MS`].
    pub fn millis_or_off(&mut self, key: Key, given: Option<String>, default_ms: u64, min_ms: u64) -> Option<Duration> {
        let expected =
            format!("0 (off) or a whole number of milliseconds from {min_ms} to {MAX_DURATION_MS} (30 days)");
        let ms = self.parse(key, given, default_ms, &expected, |raw| match raw {
            "0" => Ok(0),
            _ => parse_millis(raw, min_ms),
        });
        (ms > 0).then(|| Duration::from_millis(ms))
    }

    /// A whole number within `min..=max`.
    pub fn number(&mut self, key: Key, given: Option<String>, default: u64, min: u64, max: u64) -> u64 {
        let expected = format!("a whole number from {min} to {max}");
        self.parse(key, given, default, &expected, |raw| {
            let n: u64 = raw.parse().map_err(|_| String::new())?;
            if (min..=max).contains(&n) {
                Ok(n)
            } else {
                Err(format!("{n} is out of range"))
            }
        })
    }

    /// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`).
    pub fn boolean(&mut self, key: Key, given: Option<String>, default: bool) -> bool {
        self.parse(key, given, default, "true or false", |raw| {
            parse_bool(raw).ok_or_else(String::new)
        })
    }

    /// A `host:port` listen or connect address (names are resolved once).
    pub fn socket_addr(&mut self, key: Key, given: Option<String>, default: &str) -> SocketAddr {
        let fallback = SocketAddr::from(([127, 0, 0, 1], 3000));
        let raw = self.raw(key, given).unwrap_or_else(|| default.to_owned());
        match raw.to_socket_addrs().map(|mut addrs| addrs.next()) {
            Ok(Some(addr)) => addr,
            _ => {
                self.error(key, raw, "host:port, e.g. localhost:3000 or 0.0.0.0:3000");
                fallback
            }
        }
    }

    /// Ends validation: every error found, or none.
    pub fn finish(self) -> Result<(), SettingErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(SettingErrors(self.errors))
        }
    }
}

/// Longest duration any setting accepts: 30 days. Longer ones are typing
/// mistakes (or attempts to mean "never", which is `0` where a limit can be
/// off), and timer wheels reject deadlines past about two years.
pub const MAX_DURATION_MS: u64 = 30 * 24 * 3600 * 1000;

fn parse_millis(raw: &str, min_ms: u64) -> Result<u64, String> {
    let ms: u64 = raw.parse().map_err(|_| String::new())?;
    if ms < min_ms {
        Err(format!("{ms} is too small"))
    } else if ms > MAX_DURATION_MS {
        Err(format!("{ms} is too large; use 0 where the limit can be turned off"))
    } else {
        Ok(ms)
    }
}

/// Parses the boolean spellings `.env` files use.
pub fn parse_bool(raw: &str) -> Option<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Key = Key::new("MAX_CONCURRENT_ORBS", "max-concurrent-orbs");
    const B: Key = Key::env("IDLE_TIMEOUT");
    const C: Key = Key::env("ORB_TEST_MODE");

    #[test]
    fn precedence_given_then_dotenv_then_default() {
        let dotenv = DotEnv::from_pairs([("MAX_CONCURRENT_ORBS", "5")]);
        let mut v = Validator::new(&dotenv);
        assert_eq!(v.number(A, Some("7".into()), 8, 1, 100), 7, "flag/env beats .env");
        assert_eq!(v.number(A, None, 8, 1, 100), 5, ".env beats default");
        let empty = DotEnv::default();
        let mut v2 = Validator::new(&empty);
        assert_eq!(v2.number(A, None, 8, 1, 100), 8, "default last");
        assert!(v.finish().is_ok() && v2.finish().is_ok());
    }

    #[test]
    fn every_bad_setting_is_reported_together() {
        let dotenv = DotEnv::default();
        let mut v = Validator::new(&dotenv);
        v.number(A, Some("lots".into()), 8, 1, 100);
        v.millis(B, Some("-5".into()), 300_000, 1);
        v.boolean(C, Some("maybe".into()), false);
        let errors = v.finish().expect_err("three errors");
        assert_eq!(errors.0.len(), 3);
        let text = errors.to_string();
        for name in [
            "MAX_CONCURRENT_ORBS (--max-concurrent-orbs) = \"lots\"",
            "IDLE_TIMEOUT",
            "ORB_TEST_MODE",
        ] {
            assert!(text.contains(name), "{name} in {text}");
        }
    }

    #[test]
    fn bounds_are_checked() {
        let dotenv = DotEnv::default();
        let mut v = Validator::new(&dotenv);
        v.number(A, Some("0".into()), 8, 1, 100);
        v.millis(B, Some("0".into()), 1000, 1);
        assert_eq!(v.finish().expect_err("errors").0.len(), 2);
    }

    #[test]
    fn durations_are_bounded_and_zero_is_off_where_allowed() {
        let dotenv = DotEnv::default();
        let mut v = Validator::new(&dotenv);
        assert_eq!(v.millis_or_off(B, Some("0".into()), 1000, 100), None);
        assert_eq!(
            v.millis_or_off(B, Some("5000".into()), 1000, 100),
            Some(Duration::from_millis(5000))
        );
        assert_eq!(v.millis_or_off(B, None, 1000, 100), Some(Duration::from_secs(1)));
        assert!(v.finish().is_ok());
        let mut v = Validator::new(&dotenv);
        v.millis_or_off(B, Some("99999999999".into()), 1000, 100);
        v.millis(B, Some(MAX_DURATION_MS.saturating_add(1).to_string()), 1000, 100);
        v.millis_or_off(B, Some("50".into()), 1000, 100);
        let errors = v.finish().expect_err("three errors");
        assert_eq!(errors.0.len(), 3);
        assert!(
            errors.to_string().contains("IDLE_TIMEOUT = \"99999999999\""),
            "{errors}"
        );
    }

    #[test]
    fn booleans_accept_env_spellings() {
        for (raw, want) in [
            ("true", true),
            ("TRUE", true),
            ("1", true),
            ("no", false),
            ("off", false),
        ] {
            assert_eq!(parse_bool(raw), Some(want), "{raw}");
        }
        assert_eq!(parse_bool("maybe"), None);
    }

    #[test]
    fn socket_addr_resolves_localhost() {
        let dotenv = DotEnv::default();
        let mut v = Validator::new(&dotenv);
        let addr = v.socket_addr(Key::env("CPU_HOST"), Some("localhost:3000".into()), "localhost:3000");
        assert_eq!(addr.port(), 3000);
        assert!(addr.ip().is_loopback());
        v.socket_addr(Key::env("CPU_HOST"), Some("nonsense".into()), "localhost:3000");
        assert_eq!(v.finish().expect_err("bad").0.len(), 1);
    }
}
