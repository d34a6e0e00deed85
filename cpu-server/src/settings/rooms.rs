//! Settings of the room server and relay (limits, liveness).

use clap::Args;
use shared::settings::{Key, Validator};

/// Raw room flags.
#[derive(Debug, Clone, Default, Args)]
pub struct RoomArgs {
    /// Largest room message, bytes [default: 65536].
    #[arg(long, env = "MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<String>,
}

/// Typed room settings.
#[derive(Debug, Clone)]
pub struct RoomSettings {
    /// Largest room message, bytes.
    pub max_message_bytes: usize,
}

impl RoomArgs {
    /// Validates into [`RoomSettings`], recording every error in `v`.
    pub fn validate(self, v: &mut Validator<'_>) -> RoomSettings {
        let max_message_bytes = v.number(
            Key::new("MAX_MESSAGE_BYTES", "max-message-bytes"),
            self.max_message_bytes,
            shared::room::DEFAULT_MAX_MESSAGE_BYTES as u64,
            256,
            16 * 1024 * 1024,
        ) as usize;
        RoomSettings { max_message_bytes }
    }
}
