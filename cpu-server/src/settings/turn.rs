//! Settings of the ICE servers handed to browsers (STUN/TURN) by
//! `GET /api/turn-credentials`.
//!
//! TURN credentials come either from a static `TURN_USERNAME`/`TURN_PASSWORD`
//! pair or, preferred, from `TURN_SHARED_SECRET`: short-lived credentials in the
//! TURN REST convention coturn implements with `use-auth-secret`.

use std::fmt;
use std::time::Duration;

use clap::Args;
use shared::secret::Secret;
use shared::settings::{Key, Setting, Validator};

const STUN_URLS: Setting = Setting::derived(
    Key::new("STUN_URLS", "stun-urls"),
    "none",
    "Comma-separated STUN URLs handed to browsers, e.g. `stun:stun.example.com:3478`",
);
const TURN_URLS: Setting = Setting::derived(
    Key::new("TURN_URLS", "turn-urls"),
    "none",
    "Comma-separated TURN URLs, e.g. `turn:turn.example.com:3478?transport=udp,turns:turn.example.com:5349`; \
     needs TURN_SHARED_SECRET or TURN_USERNAME/TURN_PASSWORD",
);
const TURN_USERNAME: Setting = Setting::derived(
    Key::new("TURN_USERNAME", "turn-username"),
    "none",
    "Static TURN username (prefer TURN_SHARED_SECRET)",
);
const TURN_PASSWORD: Setting = Setting::derived(
    Key::new("TURN_PASSWORD", "turn-password"),
    "none",
    "Static TURN password, with TURN_USERNAME",
);
const TURN_SHARED_SECRET: Setting = Setting::derived(
    Key::new("TURN_SHARED_SECRET", "turn-shared-secret"),
    "none",
    "Secret shared with coturn (`static-auth-secret` with `use-auth-secret`): the server hands out \
     short-lived credentials `<expiry>:<userId>` / base64(HMAC-SHA1(secret, username))",
);
/// Lifetime of shared-secret credentials: one day unless set.
const TURN_TTL: Setting = Setting::new(
    Key::new("TURN_TTL", "turn-ttl"),
    "86400",
    "Lifetime of shared-secret credentials, seconds",
);
/// Longest accepted lifetime: 30 days.
const MAX_TURN_TTL_SECS: u64 = 30 * 86_400;

/// This area's declarations (for the documentation checks).
#[cfg(test)]
pub(super) const SETTINGS: &[&Setting] = &[
    &STUN_URLS,
    &TURN_URLS,
    &TURN_USERNAME,
    &TURN_PASSWORD,
    &TURN_SHARED_SECRET,
    &TURN_TTL,
];

/// Raw flags of this area (each also readable from its environment variable).
/// Secret values are never echoed by `--help` nor by `Debug`.
#[derive(Clone, Default, Args)]
pub struct TurnArgs {
    /// `STUN_URLS`.
    #[arg(long = STUN_URLS.long(), env = STUN_URLS.env(), help = STUN_URLS.help())]
    pub stun_urls: Option<String>,
    /// `TURN_URLS`.
    #[arg(long = TURN_URLS.long(), env = TURN_URLS.env(), help = TURN_URLS.help())]
    pub turn_urls: Option<String>,
    /// `TURN_USERNAME`.
    #[arg(long = TURN_USERNAME.long(), env = TURN_USERNAME.env(), help = TURN_USERNAME.help())]
    pub turn_username: Option<String>,
    /// `TURN_PASSWORD`.
    #[arg(long = TURN_PASSWORD.long(), env = TURN_PASSWORD.env(), help = TURN_PASSWORD.help(), hide_env_values = true)]
    pub turn_password: Option<String>,
    /// `TURN_SHARED_SECRET`.
    #[arg(
        long = TURN_SHARED_SECRET.long(),
        env = TURN_SHARED_SECRET.env(),
        help = TURN_SHARED_SECRET.help(),
        hide_env_values = true
    )]
    pub turn_shared_secret: Option<String>,
    /// `TURN_TTL`.
    #[arg(long = TURN_TTL.long(), env = TURN_TTL.env(), help = TURN_TTL.help())]
    pub turn_ttl: Option<String>,
}

impl fmt::Debug for TurnArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("TurnArgs")
            .field("stun_urls", &self.stun_urls)
            .field("turn_urls", &self.turn_urls)
            .field("turn_username", &self.turn_username)
            .field("turn_password", &redacted(&self.turn_password))
            .field("turn_shared_secret", &redacted(&self.turn_shared_secret))
            .field("turn_ttl", &self.turn_ttl)
            .finish()
    }
}

/// Where TURN credentials come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TurnCredentials {
    /// No TURN servers configured.
    #[default]
    None,
    /// The same username and password for everyone.
    Static {
        /// `TURN_USERNAME`.
        username: String,
        /// `TURN_PASSWORD`.
        password: Secret,
    },
    /// Short-lived credentials derived from a secret shared with the TURN server.
    SharedSecret {
        /// `TURN_SHARED_SECRET`.
        secret: Secret,
        /// `TURN_TTL`.
        ttl: Duration,
    },
}

/// Typed settings of this area.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TurnSettings {
    /// STUN URLs (`stun:`/`stuns:`).
    pub stun_urls: Vec<String>,
    /// TURN URLs (`turn:`/`turns:`); empty when `credentials` is `None`.
    pub turn_urls: Vec<String>,
    /// How TURN credentials are made.
    pub credentials: TurnCredentials,
}

impl TurnArgs {
    /// Validates into [`TurnSettings`], recording every error in `v`.
    pub fn validate(self, v: &mut Validator<'_>, _production: bool) -> TurnSettings {
        let stun_urls = url_list(v, &STUN_URLS, self.stun_urls, &["stun:", "stuns:"]);
        let turn_urls = url_list(v, &TURN_URLS, self.turn_urls, &["turn:", "turns:"]);
        let username = v.optional(&TURN_USERNAME, self.turn_username);
        let password = v.optional(&TURN_PASSWORD, self.turn_password);
        let secret = v.optional(&TURN_SHARED_SECRET, self.turn_shared_secret);
        let ttl = v.number(&TURN_TTL, self.turn_ttl, 1, MAX_TURN_TTL_SECS);
        let static_pair = match (username, password) {
            (Some(username), Some(password)) => Some((username, Secret::new(password))),
            (Some(_), None) => {
                v.error(&TURN_PASSWORD, "", "set together with TURN_USERNAME");
                None
            }
            (None, Some(_)) => {
                // The value is a secret: never echo it.
                v.error(&TURN_USERNAME, "", "set together with TURN_PASSWORD");
                None
            }
            (None, None) => None,
        };
        let credentials = match (secret, static_pair) {
            (Some(_), Some(_)) => {
                v.error(
                    &TURN_SHARED_SECRET,
                    "<redacted>",
                    "either TURN_SHARED_SECRET or TURN_USERNAME/TURN_PASSWORD, not both",
                );
                TurnCredentials::None
            }
            (Some(secret), None) => TurnCredentials::SharedSecret {
                secret: Secret::new(secret),
                ttl: Duration::from_secs(ttl),
            },
            (None, Some((username, password))) => TurnCredentials::Static { username, password },
            (None, None) => TurnCredentials::None,
        };
        match (&credentials, turn_urls.is_empty()) {
            (TurnCredentials::None, false) => v.error(
                &TURN_URLS,
                turn_urls.join(","),
                "needs credentials: set TURN_SHARED_SECRET (preferred) or TURN_USERNAME and TURN_PASSWORD",
            ),
            (TurnCredentials::SharedSecret { .. }, true) => {
                v.error(&TURN_URLS, "", "set the TURN URLs that TURN_SHARED_SECRET is for");
            }
            (TurnCredentials::Static { .. }, true) => {
                v.error(
                    &TURN_URLS,
                    "",
                    "set the TURN URLs that TURN_USERNAME/TURN_PASSWORD are for",
                );
            }
            _ => {}
        }
        TurnSettings {
            stun_urls,
            turn_urls,
            credentials,
        }
    }
}

/// A comma-separated list of URLs, each starting with one of `schemes`.
fn url_list(v: &mut Validator<'_>, setting: &Setting, given: Option<String>, schemes: &[&str]) -> Vec<String> {
    let Some(raw) = v.optional(setting, given) else {
        return Vec::new();
    };
    let mut urls = Vec::new();
    for url in raw.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        let valid = schemes.iter().any(|scheme| {
            url.get(..scheme.len()).is_some_and(|s| s.eq_ignore_ascii_case(scheme))
                && url.len() > scheme.len()
                && !url.contains(char::is_whitespace)
        });
        if valid {
            urls.push(url.to_owned());
        } else {
            v.error(
                setting,
                url,
                format!("comma-separated URLs starting with {}", schemes.join(" or ")),
            );
        }
    }
    urls
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::settings::DotEnv;

    fn validate(args: TurnArgs) -> Result<TurnSettings, String> {
        let dotenv = DotEnv::default();
        let mut v = Validator::new(&dotenv);
        let settings = args.validate(&mut v, true);
        v.finish().map(|()| settings).map_err(|e| e.to_string())
    }

    fn s(value: &str) -> Option<String> {
        Some(value.to_owned())
    }

    #[test]
    fn nothing_configured_means_no_ice_servers() {
        assert_eq!(validate(TurnArgs::default()), Ok(TurnSettings::default()));
    }

    #[test]
    fn shared_secret_with_urls_and_default_ttl() {
        let settings = validate(TurnArgs {
            stun_urls: s("stun:a.example:3478, stuns:b.example"),
            turn_urls: s("turn:t.example:3478?transport=udp,turns:t.example:5349"),
            turn_shared_secret: s("s3cr#t$"),
            ..TurnArgs::default()
        })
        .expect("valid");
        assert_eq!(settings.stun_urls, ["stun:a.example:3478", "stuns:b.example"]);
        assert_eq!(settings.turn_urls.len(), 2);
        assert_eq!(
            settings.credentials,
            TurnCredentials::SharedSecret {
                secret: Secret::new("s3cr#t$"),
                ttl: Duration::from_secs(86_400)
            }
        );
        assert!(
            !format!("{settings:?}").contains("s3cr"),
            "Debug must redact the secret"
        );
        let args = TurnArgs {
            turn_password: s("pw-9"),
            turn_shared_secret: s("sec-9"),
            ..TurnArgs::default()
        };
        let text = format!("{args:?}");
        assert!(!text.contains("pw-9") && !text.contains("sec-9"), "{text}");
    }

    #[test]
    fn every_error_names_its_setting() {
        let text = validate(TurnArgs {
            stun_urls: s("http://stun.example"),
            turn_urls: s("stun:wrong.example"),
            turn_username: s("alice"),
            turn_ttl: s("0"),
            ..TurnArgs::default()
        })
        .expect_err("errors");
        for name in ["STUN_URLS", "TURN_URLS", "TURN_PASSWORD", "TURN_TTL"] {
            assert!(text.contains(name), "{name} in {text}");
        }
    }

    #[test]
    fn turn_urls_need_a_credential_source_and_secrets_are_not_echoed() {
        let text = validate(TurnArgs {
            turn_urls: s("turn:t.example"),
            ..TurnArgs::default()
        })
        .expect_err("no credentials");
        assert!(text.contains("TURN_URLS"), "{text}");
        let text = validate(TurnArgs {
            turn_urls: s("turn:t.example"),
            turn_password: s("hunter2"),
            ..TurnArgs::default()
        })
        .expect_err("password without username");
        assert!(text.contains("TURN_USERNAME") && !text.contains("hunter2"), "{text}");
        let text = validate(TurnArgs {
            turn_urls: s("turn:t.example"),
            turn_shared_secret: s("topsecret"),
            turn_username: s("u"),
            turn_password: s("p"),
            ..TurnArgs::default()
        })
        .expect_err("both sources");
        assert!(
            text.contains("TURN_SHARED_SECRET") && !text.contains("topsecret"),
            "{text}"
        );
    }
}
