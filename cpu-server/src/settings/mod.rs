//! cpu-server settings: flags, environment, `.env`, defaults (in that order).
//!
//! Each area owns its own flag group and typed settings (`rooms`, `orbs`);
//! [`ServerArgs::validate`] builds all of them and reports every error at once.

pub mod admin;
pub mod connections;
pub mod logs;
pub mod orbs;
pub mod placement;
pub mod rooms;
pub mod security;
pub mod turn;
pub mod warm_pool;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use shared::settings::{DotEnv, Key, Setting, SettingErrors, Validator};

pub use admin::{AdminArgs, AdminSettings};
pub use connections::{ConnectionArgs, ConnectionSettings};
pub use logs::{LogsArgs, LogsSettings};
pub use orbs::{OrbArgs, OrbSettings, SpawnOn};
pub use placement::{LauncherKind, PlacementArgs, PlacementSettings, SlurmSettings};
pub use rooms::{RoomArgs, RoomSettings};
pub use security::{Isolation, SecurityArgs, SecuritySettings};
pub use turn::{TurnArgs, TurnSettings};
pub use warm_pool::{WarmPoolArgs, WarmPoolSettings};

const CPU_HOST: Setting = Setting::new(
    Key::new("CPU_HOST", "cpu-host"),
    "localhost:3000",
    "Address to listen on, host:port",
);
const NODE_ENV: Setting = Setting::new(
    Key::new("NODE_ENV", "node-env"),
    "development",
    "production or development",
);
const TLS_CERT: Setting = Setting::derived(
    Key::new("TLS_CERT", "tls-cert"),
    "plain HTTP, TLS terminated by the reverse proxy",
    "PEM certificate chain; with TLS_KEY the server speaks HTTPS/WSS itself",
);
const TLS_KEY: Setting = Setting::documented(Key::new("TLS_KEY", "tls-key"), "PEM private key matching TLS_CERT");

/// The settings declared here (the areas have their own tables).
#[cfg(test)]
const SETTINGS: &[&Setting] = &[&CPU_HOST, &NODE_ENV, &TLS_CERT, &TLS_KEY];

/// Raw server flags.
#[derive(Debug, Clone, Default, Args)]
pub struct ServerArgs {
    /// `CPU_HOST`.
    #[arg(long = CPU_HOST.long(), env = CPU_HOST.env(), help = CPU_HOST.help())]
    pub cpu_host: Option<String>,
    /// `NODE_ENV`.
    #[arg(long = NODE_ENV.long(), env = NODE_ENV.env(), help = NODE_ENV.help())]
    pub node_env: Option<String>,
    /// `TLS_CERT`.
    #[arg(long = TLS_CERT.long(), env = TLS_CERT.env(), help = TLS_CERT.help())]
    pub tls_cert: Option<String>,
    /// `TLS_KEY`.
    #[arg(long = TLS_KEY.long(), env = TLS_KEY.env(), help = TLS_KEY.help())]
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
    /// Where orbs run.
    #[command(flatten)]
    pub placement: PlacementArgs,
    /// The warm pool.
    #[command(flatten)]
    pub warm_pool: WarmPoolArgs,
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
    /// Where orbs run.
    pub placement: PlacementSettings,
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
        let listen = v.socket_addr(&CPU_HOST, self.cpu_host);
        let production = v.parse(&NODE_ENV, self.node_env, "production or development", |raw| match raw {
            "production" => Ok(true),
            "development" | "test" => Ok(false),
            _ => Err(String::new()),
        });
        let tls = tls_paths(&mut v, self.tls_cert, self.tls_key);
        let rooms = self.rooms.validate(&mut v);
        let connections = self.connections.validate(&mut v);
        let mut orbs = self.orbs.validate(&mut v, production, has_ai_key);
        let placement = self.placement.validate(&mut v, listen);
        orbs.warm_pool = self.warm_pool.validate(&mut v);
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
            placement,
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
    let cert = v.optional(&TLS_CERT, cert);
    let key = v.optional(&TLS_KEY, key);
    let mut file = |setting: &Setting, path: String| {
        if std::path::Path::new(&path).is_file() {
            Some(PathBuf::from(path))
        } else {
            v.error(setting, path, "a readable PEM file");
            None
        }
    };
    match (cert, key) {
        (None, None) => None,
        (Some(cert), Some(key)) => {
            let cert = file(&TLS_CERT, cert);
            let key = file(&TLS_KEY, key);
            Some(TlsPaths { cert: cert?, key: key? })
        }
        (Some(_), None) => {
            v.error(&TLS_KEY, "", "set together with TLS_CERT");
            None
        }
        (None, Some(_)) => {
            v.error(&TLS_CERT, "", "set together with TLS_KEY");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every declaration of cpu-server, for the checks below.
    fn all() -> Vec<&'static Setting> {
        [
            SETTINGS,
            rooms::SETTINGS,
            connections::SETTINGS,
            orbs::SETTINGS,
            placement::SETTINGS,
            warm_pool::SETTINGS,
            admin::SETTINGS,
            logs::SETTINGS,
            security::SETTINGS,
            turn::SETTINGS,
        ]
        .concat()
    }

    #[test]
    fn every_default_passes_its_own_rule() {
        let dotenv = DotEnv::default();
        for node_env in ["development", "production"] {
            let args = ServerArgs {
                node_env: Some(node_env.into()),
                security: SecurityArgs {
                    allow_anonymous: Some("true".into()),
                    ..SecurityArgs::default()
                },
                ..ServerArgs::default()
            };
            if let Err(errors) = args.validate(&dotenv, true) {
                panic!("defaults ({node_env}): {errors}");
            }
        }
    }

    #[test]
    fn every_setting_is_in_the_readme_with_its_default() {
        let readme = include_str!("../../../README.md");
        let problems = shared::settings::undocumented(&all(), readme);
        assert!(problems.is_empty(), "README.md, Settings: {problems:#?}");
    }

    #[test]
    fn the_protocol_settings_are_in_protocol_md_section_4_with_their_defaults() {
        let protocol = include_str!("../../../docs/protocol.md");
        let section = protocol
            .split("\n## 4.")
            .nth(1)
            .and_then(|rest| rest.split("\n## 5.").next())
            .expect("docs/protocol.md has a §4");
        let problems = shared::settings::undocumented(orbs::PROTOCOL, section);
        assert!(problems.is_empty(), "docs/protocol.md §4: {problems:#?}");
    }
}
