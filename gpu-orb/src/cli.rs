//! The command line of docs/protocol.md §2.1, as clap sees it.
//!
//! Every field is a raw `Option<String>`: clap resolves flag > environment,
//! and [`crate::settings`] does the rest (`.env`, defaults, validation) so that
//! every bad value is reported together and exits 64 instead of clap's 2.

use clap::Parser;

use crate::settings::{
    CLIENT, COACH, CPU_HOST, IDLE_TIMEOUT, MAX_LIFETIME, ROOM, SERVER_URL, SESSION, TEST_MODE, WARM, WS_URL,
};

/// `gpu-orb`: the per-room AI worker.
///
/// Joins its room over WebSocket as the AI participant, reports health to its
/// manager over the `NODE_CHANNEL_FD` channel and exits cleanly. Every flag can
/// also come from the environment variable shown, then from `.env` in the
/// working directory. Durations are in milliseconds.
#[derive(Debug, Clone, Default, Parser)]
#[command(name = "gpu-orb", version, args_override_self = true)]
pub struct Cli {
    /// [`ROOM`].
    #[arg(long = ROOM.long(), env = ROOM.env(), help = ROOM.help(), value_name = "ROOM")]
    pub room: Option<String>,
    /// [`SESSION`].
    #[arg(long = SESSION.long(), env = SESSION.env(), help = SESSION.help(), value_name = "SESSION")]
    pub session: Option<String>,
    /// [`COACH`].
    #[arg(long = COACH.long(), env = COACH.env(), help = COACH.help(), value_name = "COACH")]
    pub coach: Option<String>,
    /// [`CLIENT`].
    #[arg(long = CLIENT.long(), env = CLIENT.env(), help = CLIENT.help(), value_name = "CLIENT")]
    pub client: Option<String>,
    /// [`CPU_HOST`].
    #[arg(long = CPU_HOST.long(), env = CPU_HOST.env(), help = CPU_HOST.help(), value_name = "HOST:PORT")]
    pub cpu_host: Option<String>,
    /// [`WS_URL`].
    #[arg(long = WS_URL.long(), env = WS_URL.env(), help = WS_URL.help(), value_name = "URL")]
    pub cpu_websocket_url: Option<String>,
    /// [`SERVER_URL`].
    #[arg(long = SERVER_URL.long(), env = SERVER_URL.env(), help = SERVER_URL.help(), value_name = "URL")]
    pub cpu_server_url: Option<String>,
    /// [`MAX_LIFETIME`].
    #[arg(long = MAX_LIFETIME.long(), env = MAX_LIFETIME.env(), help = MAX_LIFETIME.help(), value_name = "MS")]
    pub max_lifetime: Option<String>,
    /// [`IDLE_TIMEOUT`].
    #[arg(long = IDLE_TIMEOUT.long(), env = IDLE_TIMEOUT.env(), help = IDLE_TIMEOUT.help(), value_name = "MS")]
    pub idle_timeout: Option<String>,
    /// [`TEST_MODE`].
    #[arg(
        long = TEST_MODE.long(),
        env = TEST_MODE.env(),
        help = TEST_MODE.help(),
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub test_mode: Option<String>,
    /// [`WARM`].
    #[arg(
        long = WARM.long(),
        env = WARM.env(),
        help = WARM.help(),
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub warm: Option<String>,
    /// `ORB_MEDIA`, `ORB_MEDIA_IP`, `ORB_MEDIA_PORTS`.
    #[command(flatten)]
    pub media: crate::media::MediaArgs,
    /// `ORB_VOICE_*`, `ORB_STT_*`, `ORB_TTS_*`, `ELEVENLABS_*` (not the key), `ORB_PROVIDER_*`, `ORB_LOG_TRANSCRIPTS`.
    #[command(flatten)]
    pub voice: crate::voice::settings::VoiceArgs,
}
