//! cpu-server settings: flags, environment, `.env`, defaults (in that order).
//!
//! Each area owns its own flag group and typed settings (`rooms`, `orbs`);
//! [`ServerArgs::validate`] builds all of them and reports every error at once.

pub mod orbs;
pub mod rooms;

use std::net::SocketAddr;

use clap::Args;
use shared::settings::{DotEnv, Key, SettingErrors, Validator};

pub use orbs::{OrbArgs, OrbSettings, SpawnOn};
pub use rooms::{RoomArgs, RoomSettings};

/// Raw server flags.
#[derive(Debug, Clone, Default, Args)]
pub struct ServerArgs {
    /// Address to listen on, host:port [default: localhost:3000].
    #[arg(long, env = "CPU_HOST")]
    pub cpu_host: Option<String>,
    /// production or development [default: development].
    #[arg(long, env = "NODE_ENV")]
    pub node_env: Option<String>,
    /// Room and relay settings.
    #[command(flatten)]
    pub rooms: RoomArgs,
    /// OrbManager settings.
    #[command(flatten)]
    pub orbs: OrbArgs,
}

/// Typed, validated server settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Listen address.
    pub listen: SocketAddr,
    /// `NODE_ENV=production`.
    pub production: bool,
    /// Room and relay settings.
    pub rooms: RoomSettings,
    /// OrbManager settings.
    pub orbs: OrbSettings,
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
        let rooms = self.rooms.validate(&mut v);
        let orbs = self.orbs.validate(&mut v, production, has_ai_key);
        v.finish()?;
        Ok(Settings {
            listen,
            production,
            rooms,
            orbs,
        })
    }
}
