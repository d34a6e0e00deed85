//! cpu-server settings: flags, environment, `.env`, defaults (in that order).
//!
//! Each area owns its own flag group and typed settings (`rooms`, `orbs`);
//! [`ServerArgs::validate`] builds all of them and reports every error at once.

pub mod admin;
pub mod connections;
pub mod logs;
pub mod orbs;
pub mod rooms;
pub mod security;
pub mod turn;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use shared::settings::{DotEnv, Key, SettingErrors, Validator};

pub use admin::{AdminArgs, AdminSettings};
pub use connections::{ConnectionArgs, ConnectionSettings};
pub use logs::{LogsArgs, LogsSettings};
pub use orbs::{OrbArgs, OrbSettings, SpawnOn};
pub use rooms::{RoomArgs, RoomSettings};
pub use security::{Isolation, SecurityArgs, SecuritySettings};
pub use turn::{TurnArgs, TurnSettings};

/// Raw server flags.
#[derive(Debug, Clone, Default, Args)]
pub struct ServerArgs {
    /// Address to listen on, host:port [default: localhost:3000].
    #[arg(long, env = "CPU_HOST")]
    pub cpu_host: Option<String>,
    /// production or development [default: development].
    #[arg(long, env = "NODE_ENV")]
    pub node_env: Option<String>,
    /// PEM certificate chain; with TLS_KEY the server speaks HTTPS/WSS itself
    /// [default: plain HTTP, TLS terminated by the reverse proxy].
    #[arg(long, env = "TLS_CERT")]
    pub tls_cert: Option<String>,
    /// PEM private key matching TLS_CERT.
    #[arg(long, env = "TLS_KEY")]
    pub tls_key: Option<String>,
    /// Room and relay settings.
    #[command(flatten)]
    pub rooms: RoomArgs,
    /// Connection timeouts and caps of the listeners.
    #[command(flatten)]
    pub connections: ConnectionArgs,
    /// OrbManager settings.
    #[command(flatten)]
    pub orbs: OrbArgs,
    /// Admin API settings.
    #[command(flatten)]
    pub admin: AdminArgs,
    /// Log settings.
    #[command(flatten)]
    pub logs: LogsArgs,
    /// Authentication and orb isolation settings.
    #[command(flatten)]
    pub security: SecurityArgs,
    /// STUN/TURN settings.
    #[command(flatten)]
    pub turn: TurnArgs,
}

/// Typed, validated server settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Listen address.
    pub listen: SocketAddr,
    /// `NODE_ENV=production`.
    pub production: bool,
    /// Native TLS, when both `TLS_CERT` and `TLS_KEY` are set.
    pub tls: Option<TlsPaths>,
    /// Room and relay settings.
    pub rooms: RoomSettings,
    /// Connection timeouts and caps of the listeners.
    pub connections: ConnectionSettings,
    /// OrbManager settings.
    pub orbs: OrbSettings,
    /// Admin API settings.
    pub admin: AdminSettings,
    /// Log settings.
    pub logs: LogsSettings,
    /// Authentication and orb isolation settings.
    pub security: SecuritySettings,
    /// STUN/TURN settings.
    pub turn: TurnSettings,
}

impl ServerArgs {
    /// Validates every setting, falling back to `dotenv` then defaults.
    /// `has_ai_key` tells whether `OPENAI_API_KEY` is set anywhere.
    pub fn validate(self, dotenv: &DotEnv, has_ai_key: bool) -> Result<Settings, SettingErrors> {
        let mut v = Validator::new(dotenv);
        let listen = v.socket_addr(Key::new("CPU_HOST", "cpu-host"), self.cpu_host, "localhost:3000");
        let production = v.parse(
            Key::new("NODE_ENV", "node-env"),
            self.node_env,
            false,
            "production or development",
            |raw| match raw {
                "production" => Ok(true),
                "development" | "test" => Ok(false),
                _ => Err(String::new()),
            },
        );
        let tls = tls_paths(&mut v, self.tls_cert, self.tls_key);
        let rooms = self.rooms.validate(&mut v);
        let connections = self.connections.validate(&mut v);
        let orbs = self.orbs.validate(&mut v, production, has_ai_key);
        let admin = self.admin.validate(&mut v, production);
        let logs = self.logs.validate(&mut v, production);
        let security = self.security.validate(&mut v, production);
        let turn = self.turn.validate(&mut v, production);
        v.finish()?;
        Ok(Settings {
            listen,
            production,
            tls,
            rooms,
            connections,
            orbs,
            admin,
            logs,
            security,
            turn,
        })
    }
}

/// Where the certificate and key of native TLS are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPaths {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Both TLS files or neither; each must be a readable file.
fn tls_paths(v: &mut Validator<'_>, cert: Option<String>, key: Option<String>) -> Option<TlsPaths> {
    let cert_key = Key::new("TLS_CERT", "tls-cert");
    let key_key = Key::new("TLS_KEY", "tls-key");
    let cert = v.optional(cert_key, cert);
    let key = v.optional(key_key, key);
    let mut file = |k: Key, path: String| {
        if std::path::Path::new(&path).is_file() {
            Some(PathBuf::from(path))
        } else {
            v.error(k, path, "a readable PEM file");
            None
        }
    };
    match (cert, key) {
        (None, None) => None,
        (Some(cert), Some(key)) => {
            let cert = file(cert_key, cert);
            let key = file(key_key, key);
            Some(TlsPaths { cert: cert?, key: key? })
        }
        (Some(_), None) => {
            v.error(key_key, "", "set together with TLS_CERT");
            None
        }
        (None, Some(_)) => {
            v.error(cert_key, "", "set together with TLS_KEY");
            None
        }
    }
}
