//! Building typed settings from raw strings, collecting every error.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use super::{DotEnv, Setting};

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

/// How a value is read: the accepted form (for the error) and the parser.
///
/// The same rule parses a given value and the setting's built-in default, so a
/// default that its own rule refuses is caught by any test that validates
/// with nothing given.
pub struct Rule<T> {
    expected: String,
    parse: Box<Parser<T>>,
}

/// A rule's parser: the trimmed value, or why it is refused (maybe empty).
type Parser<T> = dyn Fn(&str) -> Result<T, String>;

impl<T> fmt::Debug for Rule<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rule")
            .field("expected", &self.expected)
            .finish_non_exhaustive()
    }
}

impl<T> Rule<T> {
    /// `expected` describes the accepted form; `parse` gets the trimmed value
    /// and returns why it is refused (or an empty reason).
    pub fn new(expected: impl Into<String>, parse: impl Fn(&str) -> Result<T, String> + 'static) -> Self {
        Self {
            expected: expected.into(),
            parse: Box::new(parse),
        }
    }
}

impl Rule<Duration> {
    /// A duration in milliseconds, from `min_ms` to [`MAX_DURATION_MS`].
    pub fn millis(min_ms: u64) -> Self {
        let expected = format!("a whole number of milliseconds from {min_ms} to {MAX_DURATION_MS} (30 days)");
        Self::new(expected, move |raw| {
            parse_millis(raw, min_ms).map(Duration::from_millis)
        })
    }
}

impl Rule<Option<Duration>> {
    /// A duration in milliseconds where `0` turns the limit off (`None`);
    /// otherwise from `min_ms` to [`MAX_DURATION_MS`].
    pub fn millis_or_off(min_ms: u64) -> Self {
        let expected =
            format!("0 (off) or a whole number of milliseconds from {min_ms} to {MAX_DURATION_MS} (30 days)");
        Self::new(expected, move |raw| match raw {
            "0" => Ok(None),
            _ => parse_millis(raw, min_ms).map(|ms| Some(Duration::from_millis(ms))),
        })
    }
}

impl Rule<u64> {
    /// A whole number within `min..=max`.
    pub fn number(min: u64, max: u64) -> Self {
        Self::new(format!("a whole number from {min} to {max}"), move |raw| {
            let n: u64 = raw.parse().map_err(|_| String::new())?;
            if (min..=max).contains(&n) {
                Ok(n)
            } else {
                Err(format!("{n} is out of range"))
            }
        })
    }
}

impl Rule<bool> {
    /// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`).
    pub fn boolean() -> Self {
        Self::new("true or false", |raw| parse_bool(raw).ok_or_else(String::new))
    }
}

impl Rule<SocketAddr> {
    /// A `host:port` listen or connect address (names are resolved once).
    pub fn socket_addr() -> Self {
        Self::new("host:port, e.g. localhost:3000 or 0.0.0.0:3000", |raw| {
            match raw.to_socket_addrs().map(|mut addrs| addrs.next()) {
                Ok(Some(addr)) => Ok(addr),
                _ => Err(String::new()),
            }
        })
    }
}

impl Rule<String> {
    /// Any text.
    pub fn text() -> Self {
        Self::new("text", |raw| Ok(raw.to_owned()))
    }
}

/// Resolves raw values (flag or environment, as clap gave them) against the
/// `.env` file and each setting's default, and collects every error.
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

    /// The `.env` file this validator falls back to.
    pub fn dotenv(&self) -> &DotEnv {
        self.dotenv
    }

    /// The raw value: flag or environment, else `.env`. Empty counts as unset.
    pub fn raw(&self, setting: &Setting, given: Option<String>) -> Option<String> {
        given.filter(|v| !v.is_empty()).or_else(|| {
            self.dotenv
                .get(setting.env())
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        })
    }

    /// Records an error found outside the rules (e.g. a cross-field check).
    pub fn error(&mut self, setting: &Setting, value: impl Into<String>, expected: impl Into<String>) {
        self.errors.push(SettingError {
            key: setting.key,
            value: value.into(),
            expected: expected.into(),
        });
    }

    /// The value given, else the built-in default, read by `rule`; `None`
    /// when neither is there (the caller derives it). A bad value is recorded
    /// and the default used instead.
    pub fn opt<T>(&mut self, setting: &Setting, given: Option<String>, rule: Rule<T>) -> Option<T> {
        if let Some(raw) = self.raw(setting, given) {
            match (rule.parse)(raw.trim()) {
                Ok(value) => return Some(value),
                Err(reason) => {
                    let expected = if reason.is_empty() {
                        rule.expected.clone()
                    } else {
                        format!("{} ({reason})", rule.expected)
                    };
                    self.error(setting, raw, expected);
                }
            }
        }
        let default = setting.value()?;
        match (rule.parse)(default) {
            Ok(value) => Some(value),
            Err(reason) => {
                self.error(
                    setting,
                    default,
                    format!("its built-in default is refused ({reason}): a bug"),
                );
                None
            }
        }
    }

    /// The value given, else the built-in default, read by `rule`.
    ///
    /// # Panics
    /// When the setting has no built-in value, or its own rule refuses it: a
    /// declaration mistake, caught by any test validating with nothing given.
    pub fn get<T>(&mut self, setting: &Setting, given: Option<String>, rule: Rule<T>) -> T {
        match self.opt(setting, given, rule) {
            Some(value) => value,
            None => panic!("{} needs a built-in default its rule accepts", setting.env()),
        }
    }

    /// Any value, parsed by `parse`; `expected` describes the accepted form.
    pub fn parse<T>(
        &mut self,
        setting: &Setting,
        given: Option<String>,
        expected: &str,
        parse: impl Fn(&str) -> Result<T, String> + 'static,
    ) -> T {
        self.get(setting, given, Rule::new(expected, parse))
    }

    /// A string, or the default.
    pub fn string(&mut self, setting: &Setting, given: Option<String>) -> String {
        self.get(setting, given, Rule::text())
    }

    /// An optional string (the setting's default, if it has one).
    pub fn optional(&mut self, setting: &Setting, given: Option<String>) -> Option<String> {
        self.raw(setting, given).or_else(|| setting.value().map(str::to_owned))
    }

    /// A duration in milliseconds, from `min_ms` to [`MAX_DURATION_MS`].
    pub fn millis(&mut self, setting: &Setting, given: Option<String>, min_ms: u64) -> Duration {
        self.get(setting, given, Rule::millis(min_ms))
    }

    /// A duration in milliseconds where `0` turns the limit off (`None`);
    /// otherwise from `min_ms` to [`MAX_DURATION_MS`].
    pub fn millis_or_off(&mut self, setting: &Setting, given: Option<String>, min_ms: u64) -> Option<Duration> {
        self.get(setting, given, Rule::millis_or_off(min_ms))
    }

    /// A whole number within `min..=max`.
    pub fn number(&mut self, setting: &Setting, given: Option<String>, min: u64, max: u64) -> u64 {
        self.get(setting, given, Rule::number(min, max))
    }

    /// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`).
    pub fn boolean(&mut self, setting: &Setting, given: Option<String>) -> bool {
        self.get(setting, given, Rule::boolean())
    }

    /// A `host:port` listen or connect address (names are resolved once).
    pub fn socket_addr(&mut self, setting: &Setting, given: Option<String>) -> SocketAddr {
        self.get(setting, given, Rule::socket_addr())
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

    const A: Setting = Setting::new(Key::new("MAX_CONCURRENT_ORBS", "max-concurrent-orbs"), "8", "Orbs");
    const B: Setting = Setting::new(Key::env("IDLE_TIMEOUT"), "1000", "Idle");
    const C: Setting = Setting::new(Key::env("ORB_TEST_MODE"), "false", "Test mode");
    const CPU_HOST: Setting = Setting::new(Key::env("CPU_HOST"), "localhost:3000", "Listen");
    const BAD: Setting = Setting::new(Key::env("MAX_ROOMS"), "lots", "Rooms");
    const UNSET: Setting = Setting::derived(Key::env("ORB_MEMORY_LIMIT_MB"), "no limit", "Memory");

    #[test]
    fn precedence_given_then_dotenv_then_default() {
        let dotenv = DotEnv::from_pairs([("MAX_CONCURRENT_ORBS", "5")]);
        let mut v = Validator::new(&dotenv);
        assert_eq!(v.number(&A, Some("7".into()), 1, 100), 7, "flag/env beats .env");
        assert_eq!(v.number(&A, None, 1, 100), 5, ".env beats default");
        let empty = DotEnv::default();
        let mut v2 = Validator::new(&empty);
        assert_eq!(v2.number(&A, None, 1, 100), 8, "default last");
        assert!(v.finish().is_ok() && v2.finish().is_ok());
    }

    #[test]
    fn every_bad_setting_is_reported_together() {
        let dotenv = DotEnv::default();
        let mut v = Validator::new(&dotenv);
        v.number(&A, Some("lots".into()), 1, 100);
        v.millis(&B, Some("-5".into()), 1);
        v.boolean(&C, Some("maybe".into()));
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
        v.number(&A, Some("0".into()), 1, 100);
        v.millis(&B, Some("0".into()), 1);
        assert_eq!(v.finish().expect_err("errors").0.len(), 2);
    }

    #[test]
    fn durations_are_bounded_and_zero_is_off_where_allowed() {
        let dotenv = DotEnv::default();
        let mut v = Validator::new(&dotenv);
        assert_eq!(v.millis_or_off(&B, Some("0".into()), 100), None);
        assert_eq!(
            v.millis_or_off(&B, Some("5000".into()), 100),
            Some(Duration::from_millis(5000))
        );
        assert_eq!(v.millis_or_off(&B, None, 100), Some(Duration::from_secs(1)));
        assert!(v.finish().is_ok());
        let mut v = Validator::new(&dotenv);
        v.millis_or_off(&B, Some("99999999999".into()), 100);
        v.millis(&B, Some(MAX_DURATION_MS.saturating_add(1).to_string()), 100);
        v.millis_or_off(&B, Some("50".into()), 100);
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
        let addr = v.socket_addr(&CPU_HOST, Some("localhost:3000".into()));
        assert_eq!(addr.port(), 3000);
        assert!(addr.ip().is_loopback());
        v.socket_addr(&CPU_HOST, Some("nonsense".into()));
        assert_eq!(v.finish().expect_err("bad").0.len(), 1);
    }

    #[test]
    fn defaults_go_through_the_same_rule_and_derived_ones_are_left_to_the_caller() {
        let dotenv = DotEnv::default();
        let mut v = Validator::new(&dotenv);
        assert_eq!(
            v.opt(&UNSET, None, Rule::number(1, 10)),
            None,
            "nothing given, no built-in value"
        );
        assert_eq!(v.opt(&UNSET, Some("7".into()), Rule::number(1, 10)), Some(7));
        assert_eq!(v.opt(&BAD, None, Rule::number(1, 10)), None);
        let errors = v.finish().expect_err("a refused default is reported");
        assert!(
            errors
                .to_string()
                .contains("MAX_ROOMS = \"lots\": its built-in default is refused"),
            "{errors}"
        );
    }
}
