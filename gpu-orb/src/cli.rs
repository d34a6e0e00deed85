//! The command line of docs/protocol.md §2.1, as clap sees it.
//!
//! Every field is a raw `Option<String>`: clap resolves flag > environment,
//! and [`crate::settings`] does the rest (`.env`, defaults, validation) so that
//! every bad value is reported together and exits 64 instead of clap's 2.

use clap::Parser;

/// `gpu-orb`: the per-room AI worker.
///
/// Joins its room over WebSocket as the AI participant, reports health to its
/// manager over the `NODE_CHANNEL_FD` channel and exits cleanly. Every flag can
/// also come from the environment variable shown, then from `.env` in the
/// working directory. Durations are in milliseconds.
#[derive(Debug, Clone, Default, Parser)]
#[command(name = "gpu-orb", version, args_override_self = true)]
pub struct Cli {
    /// Room to join (required; 1–64 of A-Z a-z 0-9 _ . -).
    #[arg(long, env = "ROOM_ID", value_name = "ROOM")]
    pub room: Option<String>,
    /// Session id (the AI joins as `ai-orb-<session>`); a UUID v4 when absent.
    #[arg(long, env = "SESSION_ID", value_name = "SESSION")]
    pub session: Option<String>,
    /// The coach's user id (informational).
    #[arg(long, env = "COACH_ID", value_name = "COACH")]
    pub coach: Option<String>,
    /// The client's user id (informational).
    #[arg(long, env = "CLIENT_ID", value_name = "CLIENT")]
    pub client: Option<String>,
    /// cpu-server address; the orb connects to ws://HOST:PORT/ws-simple/ROOM [default: localhost:3000].
    #[arg(long = "cpu-host", env = "CPU_SERVER_HOST", value_name = "HOST:PORT")]
    pub cpu_host: Option<String>,
    /// WebSocket base URL (e.g. wss://host/ws-simple); `/ROOM` is appended. Wins over --cpu-host.
    #[arg(long = "cpu-websocket-url", env = "CPU_WEBSOCKET_URL", value_name = "URL")]
    pub cpu_websocket_url: Option<String>,
    /// cpu-server base URL (e.g. https://host); used as ws(s)://host/ws-simple/ROOM when no WebSocket URL is set.
    #[arg(long = "cpu-server-url", env = "CPU_SERVER_URL", value_name = "URL")]
    pub cpu_server_url: Option<String>,
    /// Exit (reason `timeout`) after this many ms; 0 = no limit [default: 7200000].
    #[arg(long = "max-lifetime", env = "MAX_ORB_LIFETIME", value_name = "MS")]
    pub max_lifetime: Option<String>,
    /// Exit (reason `idle_timeout`) after no human was in the room for this many ms; 0 = never [default: 300000].
    #[arg(long = "idle-timeout", env = "IDLE_TIMEOUT", value_name = "MS")]
    pub idle_timeout: Option<String>,
    /// Test mode: no external AI calls; `say` is answered with `echo: <text>`.
    #[arg(
        long = "test-mode",
        env = "ORB_TEST_MODE",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub test_mode: Option<String>,
    /// `ORB_MEDIA`, `ORB_MEDIA_IP`, `ORB_MEDIA_PORTS`.
    #[command(flatten)]
    pub media: crate::media::MediaArgs,
}
