//! Settings of the operator surface: admin API token and address, state directory.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use shared::settings::{Key, Rule, Setting, Validator};

/// Where generated state (the admin token) lives in production.
pub const PRODUCTION_STATE_DIR: &str = "/var/lib/myultracoach";
/// Where generated state lives in development (relative to the working directory).
pub const DEVELOPMENT_STATE_DIR: &str = "./state";
/// Shortest `ADMIN_TOKEN` accepted.
pub const MIN_TOKEN_LEN: usize = 16;

const ADMIN_TOKEN: Setting = Setting::derived(
    Key::new("ADMIN_TOKEN", "admin-token"),
    "generated at start into STATE_DIR/admin-token, mode 0600",
    "Bearer token of the admin API and /metrics",
);
const ADMIN_HOST: Setting = Setting::derived(
    Key::new("ADMIN_HOST", "admin-host"),
    "served on CPU_HOST",
    "Separate host:port for the admin API and /metrics (e.g. 127.0.0.1:3001)",
);
const STATE_DIR: Setting = Setting::derived(
    Key::new("STATE_DIR", "state-dir"),
    "./state, /var/lib/myultracoach in production",
    "Directory of generated state",
);

/// This area's declarations (for the documentation checks).
#[cfg(test)]
pub(super) const SETTINGS: &[&Setting] = &[&ADMIN_TOKEN, &ADMIN_HOST, &STATE_DIR];

/// Raw flags of this area (each also readable from its environment variable).
#[derive(Clone, Default, Args)]
pub struct AdminArgs {
    /// `ADMIN_TOKEN`.
    #[arg(long = ADMIN_TOKEN.long(), env = ADMIN_TOKEN.env(), help = ADMIN_TOKEN.help(), hide_env_values = true)]
    pub admin_token: Option<String>,
    /// `ADMIN_HOST`.
    #[arg(long = ADMIN_HOST.long(), env = ADMIN_HOST.env(), help = ADMIN_HOST.help())]
    pub admin_host: Option<String>,
    /// `STATE_DIR`.
    #[arg(long = STATE_DIR.long(), env = STATE_DIR.env(), help = STATE_DIR.help())]
    pub state_dir: Option<String>,
}

impl std::fmt::Debug for AdminArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminArgs")
            .field("admin_token", &self.admin_token.as_ref().map(|_| "<redacted>"))
            .field("admin_host", &self.admin_host)
            .field("state_dir", &self.state_dir)
            .finish()
    }
}

/// Typed settings of this area.
#[derive(Clone, Default)]
pub struct AdminSettings {
    /// `ADMIN_TOKEN`, when set; otherwise one is generated at start.
    pub token: Option<String>,
    /// `ADMIN_HOST`: the admin routes only there, not on `CPU_HOST`.
    pub host: Option<SocketAddr>,
    /// `STATE_DIR`.
    pub state_dir: PathBuf,
}

impl std::fmt::Debug for AdminSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSettings")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("host", &self.host)
            .field("state_dir", &self.state_dir)
            .finish()
    }
}

impl AdminSettings {
    /// `STATE_DIR/admin-token`.
    pub fn token_file(&self) -> PathBuf {
        self.state_dir.join("admin-token")
    }
}

impl AdminArgs {
    /// Validates into [`AdminSettings`], recording every error in `v`.
    pub fn validate(self, v: &mut Validator<'_>, production: bool) -> AdminSettings {
        let token = v.optional(&ADMIN_TOKEN, self.admin_token).and_then(|token| {
            if token.len() < MIN_TOKEN_LEN || token.chars().any(char::is_whitespace) {
                v.error(
                    &ADMIN_TOKEN,
                    "<redacted>",
                    format!("at least {MIN_TOKEN_LEN} characters without spaces (or unset to generate one)"),
                );
                None
            } else {
                Some(token)
            }
        });
        let host = v.opt(&ADMIN_HOST, self.admin_host, Rule::socket_addr());
        let state_dir = v.optional(&STATE_DIR, self.state_dir).map_or_else(
            || {
                PathBuf::from(if production {
                    PRODUCTION_STATE_DIR
                } else {
                    DEVELOPMENT_STATE_DIR
                })
            },
            PathBuf::from,
        );
        AdminSettings { token, host, state_dir }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::settings::DotEnv;

    #[test]
    fn defaults_and_short_token() {
        let dotenv = DotEnv::default();
        let mut v = Validator::new(&dotenv);
        let s = AdminArgs::default().validate(&mut v, true);
        assert!(s.token.is_none() && s.host.is_none());
        assert_eq!(s.token_file(), PathBuf::from("/var/lib/myultracoach/admin-token"));
        assert!(v.finish().is_ok());
        let mut v = Validator::new(&dotenv);
        let args = AdminArgs {
            admin_token: Some("short".into()),
            admin_host: Some("127.0.0.1:3001".into()),
            state_dir: None,
        };
        let s = args.validate(&mut v, false);
        assert_eq!(s.host, Some("127.0.0.1:3001".parse().expect("addr")));
        let errors = v.finish().expect_err("short token refused");
        assert!(!errors.to_string().contains("short"), "token value never printed");
    }
}
