//! Settings of client authentication and orb isolation.
//!
//! What each setting protects (the declarations below give their defaults):
//!
//! | variable | protects |
//! |---|---|
//! | `ORB_AUTH` | AI joins need the room's orb token |
//! | `JWT_SECRET` | human joins need an HS256 JWT |
//! | `ALLOW_ANONYMOUS` | lets production run without `JWT_SECRET` |
//! | `ALLOWED_ORIGINS` | browsers from other sites cannot open room sockets |
//! | `ORB_USER` / `ORB_GROUP` | orbs run as that user/group when the server may switch (root, or `CAP_SETUID`, `CAP_SETGID` and `CAP_KILL` effective) |
//! | `ORB_NOFILE` / `ORB_NPROC` | rlimits of each orb process |

use clap::Args;
use nix::unistd::{Group, User};
use shared::secret::Secret;
use shared::settings::{Key, Rule, Setting, Validator};

/// Who the orb runs as and what it may use (`ORB_USER`, `ORB_GROUP`, `ORB_NOFILE`, `ORB_NPROC`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Isolation {
    /// Switch to this uid (needs `CAP_SETUID`: a root server, or one given the capability).
    pub uid: Option<u32>,
    /// Switch to this gid, dropping supplementary groups (needs `CAP_SETGID`).
    pub gid: Option<u32>,
    /// `RLIMIT_NOFILE` (soft and hard), capped at the current hard limit.
    pub nofile: Option<u64>,
    /// `RLIMIT_NPROC` (soft and hard), capped at the current hard limit.
    pub nproc: Option<u64>,
}

/// `Origin` values compare case-insensitively and without a trailing `/`.
pub fn normalize_origin(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// Shortest `JWT_SECRET` accepted, in bytes (HS256 wants a 256-bit key).
pub const MIN_JWT_SECRET_LEN: usize = 32;

const ORB_AUTH: Setting = Setting::new(
    Key::new("ORB_AUTH", "orb-auth"),
    "true",
    "Require the room's orb token for AI joins; false accepts legacy orbs that cannot send one",
);
const JWT_SECRET: Setting = Setting::derived(
    Key::new("JWT_SECRET", "jwt-secret"),
    "unset, required when NODE_ENV=production unless ALLOW_ANONYMOUS=true",
    "HS256 secret of client JWTs; when set, every room socket upgrade needs a token",
);
const ALLOW_ANONYMOUS: Setting = Setting::new(
    Key::new("ALLOW_ANONYMOUS", "allow-anonymous"),
    "false",
    "Run in production without JWT_SECRET (no client authentication)",
);
const ALLOWED_ORIGINS: Setting = Setting::derived(
    Key::new("ALLOWED_ORIGINS", "allowed-origins"),
    "any",
    "Origins allowed to open room sockets, comma-separated (e.g. https://app.example.com)",
);
const ORB_USER: Setting = Setting::derived(
    Key::new("ORB_USER", "orb-user"),
    "the server's user",
    "User orbs run as (dedicated to this server's orbs), when cpu-server is root or has CAP_SETUID, \
     CAP_SETGID and CAP_KILL",
);
const ORB_GROUP: Setting = Setting::derived(
    Key::new("ORB_GROUP", "orb-group"),
    "ORB_USER's primary group",
    "Group orbs run as, when ORB_USER applies",
);
const ORB_NOFILE: Setting = Setting::derived(
    Key::new("ORB_NOFILE", "orb-nofile"),
    "inherited",
    "RLIMIT_NOFILE of each orb process",
);
const ORB_NPROC: Setting = Setting::derived(
    Key::new("ORB_NPROC", "orb-nproc"),
    "inherited",
    "RLIMIT_NPROC of each orb process (counts every process of its user)",
);

/// This area's declarations (for the documentation checks).
#[cfg(test)]
pub(super) const SETTINGS: &[&Setting] = &[
    &ORB_AUTH,
    &JWT_SECRET,
    &ALLOW_ANONYMOUS,
    &ALLOWED_ORIGINS,
    &ORB_USER,
    &ORB_GROUP,
    &ORB_NOFILE,
    &ORB_NPROC,
];

/// Raw flags of this area (each also readable from its environment variable).
#[derive(Clone, Default, Args)]
pub struct SecurityArgs {
    /// `ORB_AUTH`.
    #[arg(long = ORB_AUTH.long(), env = ORB_AUTH.env(), help = ORB_AUTH.help())]
    pub orb_auth: Option<String>,
    /// `JWT_SECRET`.
    #[arg(long = JWT_SECRET.long(), env = JWT_SECRET.env(), help = JWT_SECRET.help(), hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// `ALLOW_ANONYMOUS`.
    #[arg(long = ALLOW_ANONYMOUS.long(), env = ALLOW_ANONYMOUS.env(), help = ALLOW_ANONYMOUS.help())]
    pub allow_anonymous: Option<String>,
    /// `ALLOWED_ORIGINS`.
    #[arg(long = ALLOWED_ORIGINS.long(), env = ALLOWED_ORIGINS.env(), help = ALLOWED_ORIGINS.help())]
    pub allowed_origins: Option<String>,
    /// `ORB_USER`.
    #[arg(long = ORB_USER.long(), env = ORB_USER.env(), help = ORB_USER.help())]
    pub orb_user: Option<String>,
    /// `ORB_GROUP`.
    #[arg(long = ORB_GROUP.long(), env = ORB_GROUP.env(), help = ORB_GROUP.help())]
    pub orb_group: Option<String>,
    /// `ORB_NOFILE`.
    #[arg(long = ORB_NOFILE.long(), env = ORB_NOFILE.env(), help = ORB_NOFILE.help())]
    pub orb_nofile: Option<String>,
    /// `ORB_NPROC`.
    #[arg(long = ORB_NPROC.long(), env = ORB_NPROC.env(), help = ORB_NPROC.help())]
    pub orb_nproc: Option<String>,
}

impl std::fmt::Debug for SecurityArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecurityArgs")
            .field("orb_auth", &self.orb_auth)
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| "<redacted>"))
            .field("allow_anonymous", &self.allow_anonymous)
            .field("allowed_origins", &self.allowed_origins)
            .field("orb_user", &self.orb_user)
            .field("orb_group", &self.orb_group)
            .field("orb_nofile", &self.orb_nofile)
            .field("orb_nproc", &self.orb_nproc)
            .finish()
    }
}

/// Typed settings of this area (`Debug` never shows the secret).
#[derive(Debug, Clone)]
pub struct SecuritySettings {
    /// `ORB_AUTH`.
    pub orb_auth: bool,
    /// `JWT_SECRET`.
    pub jwt_secret: Option<Secret>,
    /// `ALLOW_ANONYMOUS`.
    pub allow_anonymous: bool,
    /// `ALLOWED_ORIGINS`, normalised (lower case, no trailing `/`); empty means any.
    pub allowed_origins: Vec<String>,
    /// `ORB_USER`: name and uid.
    pub orb_user: Option<(String, u32)>,
    /// `ORB_GROUP` (or `ORB_USER`'s primary group): name and gid.
    pub orb_group: Option<(String, u32)>,
    /// `ORB_NOFILE`.
    pub orb_nofile: Option<u64>,
    /// `ORB_NPROC`.
    pub orb_nproc: Option<u64>,
}

impl Default for SecuritySettings {
    /// The development defaults.
    fn default() -> Self {
        let dotenv = shared::settings::DotEnv::default();
        let mut v = Validator::new(&dotenv);
        SecurityArgs::default().validate(&mut v, false)
    }
}

/// What switching orbs to `ORB_USER`/`ORB_GROUP` needs in our effective
/// capability set: `CAP_SETUID` (7) and `CAP_SETGID` (6) for the switch, and
/// `CAP_KILL` (5) to signal orbs that then run as another user.
pub const SWITCH_CAPABILITIES: u64 = (1 << 7) | (1 << 6) | (1 << 5);

/// This process's effective capability set (`CapEff` of `/proc/self/status`;
/// empty when unreadable).
pub fn effective_capabilities() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| cap_eff(&status))
        .unwrap_or(0)
}

/// The `CapEff:` line of a `/proc/<pid>/status` text.
fn cap_eff(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?.trim();
    u64::from_str_radix(hex, 16).ok()
}

impl SecuritySettings {
    /// What the launcher applies to each orb process, for this process's
    /// capabilities (see [`SecuritySettings::isolation_with`]).
    pub fn isolation(&self) -> Isolation {
        self.isolation_with(effective_capabilities())
    }

    /// What the launcher applies to each orb process when our effective
    /// capability set is `effective`. The user and group are switched only
    /// when it holds all of [`SWITCH_CAPABILITIES`] (root does; the shipped
    /// unit grants them as ambient capabilities); otherwise a warning says
    /// `ORB_USER` cannot apply.
    pub fn isolation_with(&self, effective: u64) -> Isolation {
        let wanted = self.orb_user.is_some() || self.orb_group.is_some();
        let can_switch = effective & SWITCH_CAPABILITIES == SWITCH_CAPABILITIES;
        if wanted && !can_switch {
            tracing::warn!(
                "ORB_USER/ORB_GROUP ignored: cpu-server is not root and lacks CAP_SETUID, CAP_SETGID \
                 and CAP_KILL (give them, e.g. AmbientCapabilities= in the unit; see deploy/README.md); \
                 orbs run as the server's own user and can read everything it can"
            );
        } else if wanted {
            tracing::info!(
                user = self.orb_user.as_ref().map(|(name, _)| name.as_str()),
                group = self.orb_group.as_ref().map(|(name, _)| name.as_str()),
                "orbs run as ORB_USER/ORB_GROUP"
            );
        }
        Isolation {
            uid: self.orb_user.as_ref().filter(|_| can_switch).map(|(_, uid)| *uid),
            gid: self.orb_group.as_ref().filter(|_| can_switch).map(|(_, gid)| *gid),
            nofile: self.orb_nofile,
            nproc: self.orb_nproc,
        }
    }
}

impl SecurityArgs {
    /// Validates into [`SecuritySettings`], recording every error in `v`.
    pub fn validate(self, v: &mut Validator<'_>, production: bool) -> SecuritySettings {
        let orb_auth = v.boolean(&ORB_AUTH, self.orb_auth);
        let allow_anonymous = v.boolean(&ALLOW_ANONYMOUS, self.allow_anonymous);
        let jwt_secret = match v.optional(&JWT_SECRET, self.jwt_secret) {
            Some(secret) if secret.len() < MIN_JWT_SECRET_LEN => {
                v.error(
                    &JWT_SECRET,
                    "<redacted>",
                    format!("at least {MIN_JWT_SECRET_LEN} bytes (an HS256 key of 256 bits)"),
                );
                None
            }
            Some(secret) => Some(Secret::new(secret)),
            None if production && !allow_anonymous => {
                v.error(
                    &JWT_SECRET,
                    "",
                    "required when NODE_ENV=production (clients must authenticate); \
                     set ALLOW_ANONYMOUS=true to run without client authentication",
                );
                None
            }
            None => None,
        };
        let allowed_origins = match v.optional(&ALLOWED_ORIGINS, self.allowed_origins) {
            None => Vec::new(),
            Some(raw) => {
                let origins: Vec<String> = raw
                    .split(',')
                    .map(str::trim)
                    .filter(|o| !o.is_empty())
                    .map(normalize_origin)
                    .collect();
                if origins.is_empty() || origins.iter().any(|o| !o.contains("://")) {
                    v.error(
                        &ALLOWED_ORIGINS,
                        raw,
                        "comma-separated origins with their scheme, e.g. https://app.example.com",
                    );
                }
                origins
            }
        };
        let orb_user = v
            .optional(&ORB_USER, self.orb_user)
            .and_then(|name| match User::from_name(&name) {
                Ok(Some(user)) => Some((name, user.uid.as_raw(), user.gid.as_raw())),
                _ => {
                    v.error(&ORB_USER, name, "an existing user name (see /etc/passwd)");
                    None
                }
            });
        let orb_group = match v.optional(&ORB_GROUP, self.orb_group) {
            Some(name) => match Group::from_name(&name) {
                Ok(Some(group)) => Some((name, group.gid.as_raw())),
                _ => {
                    v.error(&ORB_GROUP, name, "an existing group name (see /etc/group)");
                    None
                }
            },
            None => orb_user
                .as_ref()
                .map(|(name, _, gid)| (format!("{name}'s group"), *gid)),
        };
        let orb_nofile = v.opt(&ORB_NOFILE, self.orb_nofile, Rule::number(16, 1 << 31));
        let orb_nproc = v.opt(&ORB_NPROC, self.orb_nproc, Rule::number(1, 1 << 31));
        SecuritySettings {
            orb_auth,
            jwt_secret,
            allow_anonymous,
            allowed_origins,
            orb_user: orb_user.map(|(name, uid, _)| (name, uid)),
            orb_group,
            orb_nofile,
            orb_nproc,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::settings::DotEnv;

    fn validate(args: SecurityArgs, production: bool) -> Result<SecuritySettings, String> {
        let dotenv = DotEnv::default();
        let mut v = Validator::new(&dotenv);
        let settings = args.validate(&mut v, production);
        v.finish().map(|()| settings).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_in_development() {
        let s = validate(SecurityArgs::default(), false).expect("valid");
        assert!(s.orb_auth && s.jwt_secret.is_none() && !s.allow_anonymous);
        assert!(s.allowed_origins.is_empty() && s.orb_user.is_none());
        let iso = s.isolation();
        assert_eq!((iso.uid, iso.gid, iso.nofile, iso.nproc), (None, None, None, None));
    }

    #[test]
    fn production_needs_a_jwt_secret_or_allow_anonymous() {
        let error = validate(SecurityArgs::default(), true).expect_err("refused");
        assert!(error.contains("JWT_SECRET"), "{error}");
        let anonymous = SecurityArgs {
            allow_anonymous: Some("true".into()),
            ..SecurityArgs::default()
        };
        assert!(validate(anonymous, true).is_ok());
        let secret = SecurityArgs {
            jwt_secret: Some("s".repeat(32)),
            ..SecurityArgs::default()
        };
        let s = validate(secret, true).expect("valid");
        assert!(!format!("{s:?}").contains("ssss"), "secret redacted in Debug");
    }

    #[test]
    fn short_secret_bad_names_and_origins_are_refused_without_echoing_the_secret() {
        let args = SecurityArgs {
            jwt_secret: Some("short-secret-value".into()),
            orb_user: Some("no-such-user-x9".into()),
            orb_group: Some("no-such-group-x9".into()),
            allowed_origins: Some("example.com".into()),
            orb_nofile: Some("3".into()),
            ..SecurityArgs::default()
        };
        let error = validate(args, false).expect_err("refused");
        for name in ["JWT_SECRET", "ORB_USER", "ORB_GROUP", "ALLOWED_ORIGINS", "ORB_NOFILE"] {
            assert!(error.contains(name), "{name} in {error}");
        }
        assert!(!error.contains("short-secret-value"), "{error}");
    }

    #[test]
    fn orb_user_resolves_with_its_primary_group() {
        let args = SecurityArgs {
            orb_user: Some("root".into()),
            orb_nofile: Some("256".into()),
            allowed_origins: Some("https://App.example.com/, http://localhost:5173".into()),
            ..SecurityArgs::default()
        };
        let s = validate(args, false).expect("valid");
        assert_eq!(s.orb_user, Some(("root".to_owned(), 0)));
        assert_eq!(s.orb_group.map(|(_, gid)| gid), Some(0));
        assert_eq!(s.orb_nofile, Some(256));
        assert_eq!(s.allowed_origins, ["https://app.example.com", "http://localhost:5173"]);
    }

    #[test]
    fn orb_user_applies_with_the_switch_capabilities_not_only_as_root() {
        let args = SecurityArgs {
            orb_user: Some("root".into()),
            orb_group: Some("root".into()),
            ..SecurityArgs::default()
        };
        let s = validate(args, false).expect("valid");
        let ids = |caps: u64| {
            let iso = s.isolation_with(caps);
            (iso.uid, iso.gid)
        };
        // A non-root server given exactly CAP_SETUID, CAP_SETGID and CAP_KILL.
        assert_eq!(ids(SWITCH_CAPABILITIES), (Some(0), Some(0)));
        // Root: every capability.
        assert_eq!(ids(u64::MAX >> 23), (Some(0), Some(0)));
        // Without one of the three (no CAP_KILL: it could not stop its orbs), nothing switches.
        for missing in [5, 6, 7] {
            assert_eq!(
                ids(SWITCH_CAPABILITIES & !(1 << missing)),
                (None, None),
                "without cap {missing}"
            );
        }
        assert_eq!(ids(0), (None, None));
    }

    #[test]
    fn the_effective_set_is_read_from_proc_status() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapPrm:\t00000000000000e0\nCapEff:\t00000000000000e0\n";
        assert_eq!(cap_eff(status), Some(SWITCH_CAPABILITIES));
        assert_eq!(cap_eff("Name:\tx\n"), None);
    }
}
