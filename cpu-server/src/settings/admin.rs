//! Settings of the operator surface: admin API token and address, state directory.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use shared::settings::{Key, Validator};

/// Where generated state (the admin token) lives in production.
pub const PRODUCTION_STATE_DIR: &str = "/var/lib/myultracoach";
/// Where generated state lives in development (relative to the working directory).
pub const DEVELOPMENT_STATE_DIR: &str = "./state";
/// Shortest `ADMIN_TOKEN` accepted.
pub const MIN_TOKEN_LEN: usize = 16;

/// Raw flags of this area (each also readable from its environment variable).
#[derive(Clone, Default, Args)]
pub struct AdminArgs {
    /// Bearer token of the admin API and /metrics [default: generated at start
    /// into STATE_DIR/admin-token, mode 0600].
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Separate host:port for the admin API and /metrics (e.g. 127.0.0.1:3001)
    /// [default: served on CPU_HOST].
    #[arg(long, env = "ADMIN_HOST")]
    pub admin_host: Option<String>,
    /// Directory of generated state [default: ./state, /var/lib/myultracoach in production].
    #[arg(long, env = "STATE_DIR")]
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
        let token_key = Key::new("ADMIN_TOKEN", "admin-token");
        let token = v.optional(token_key, self.admin_token).and_then(|token| {
            if token.len() < MIN_TOKEN_LEN || token.chars().any(char::is_whitespace) {
                v.error(
                    token_key,
                    "<redacted>",
                    format!("at least {MIN_TOKEN_LEN} characters without spaces (or unset to generate one)"),
                );
                None
            } else {
                Some(token)
            }
        });
        let host_key = Key::new("ADMIN_HOST", "admin-host");
        let host = v
            .optional(host_key, self.admin_host.clone())
            .map(|_| v.socket_addr(host_key, self.admin_host, "127.0.0.1:3001"));
        let default_dir = if production {
            PRODUCTION_STATE_DIR
        } else {
            DEVELOPMENT_STATE_DIR
        };
        let state_dir = PathBuf::from(v.string(Key::new("STATE_DIR", "state-dir"), self.state_dir, default_dir));
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
