//! Settings of the room server and relay (limits, liveness).

use std::time::Duration;

use clap::Args;
use shared::settings::{Key, Validator};

/// Raw room flags; every one also readable from its environment variable.
#[derive(Debug, Clone, Default, Args)]
pub struct RoomArgs {
    /// Largest room message, bytes [default: 65536].
    #[arg(long, env = "MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<String>,
    /// Most participants in one room [default: 16].
    #[arg(long, env = "MAX_ROOM_PARTICIPANTS")]
    pub max_room_participants: Option<String>,
    /// Most rooms on this server [default: 1000].
    #[arg(long, env = "MAX_ROOMS")]
    pub max_rooms: Option<String>,
    /// Most open room sockets from one IP address [default: 64].
    #[arg(long, env = "MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<String>,
    /// Messages per second one socket may send (token bucket, burst of one second) [default: 200].
    #[arg(long, env = "MAX_MESSAGES_PER_SECOND")]
    pub max_messages_per_second: Option<String>,
    /// Outgoing messages queued per socket before it is dropped as a slow consumer [default: 256].
    #[arg(long, env = "WS_SEND_QUEUE")]
    pub ws_send_queue: Option<String>,
    /// WebSocket ping period, ms; a peer silent for two periods is dropped [default: 30000].
    #[arg(long, env = "WS_PING_INTERVAL")]
    pub ws_ping_interval: Option<String>,
    /// Reverse proxies whose X-Forwarded-For is believed, comma-separated IPs (e.g. 127.0.0.1,::1
    /// behind a local nginx); per-address limits then apply to the real client [default: none].
    #[arg(long, env = "TRUSTED_PROXIES")]
    pub trusted_proxies: Option<String>,
}

/// Typed room settings.
#[derive(Debug, Clone)]
pub struct RoomSettings {
    /// Largest room message, bytes.
    pub max_message_bytes: usize,
    /// Most participants in one room.
    pub max_room_participants: usize,
    /// Most rooms on this server.
    pub max_rooms: usize,
    /// Most open room sockets from one IP address.
    pub max_connections_per_ip: usize,
    /// Messages per second per socket (also the burst).
    pub max_messages_per_second: u32,
    /// Outgoing queue of one socket, messages.
    pub ws_send_queue: usize,
    /// WebSocket ping period.
    pub ws_ping_interval: Duration,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

impl Default for RoomSettings {
    fn default() -> Self {
        let dotenv = shared::settings::DotEnv::default();
        let mut v = Validator::new(&dotenv);
        RoomArgs::default().validate(&mut v)
    }
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
        let max_room_participants = v.number(
            Key::new("MAX_ROOM_PARTICIPANTS", "max-room-participants"),
            self.max_room_participants,
            16,
            1,
            1000,
        ) as usize;
        let max_rooms = v.number(Key::new("MAX_ROOMS", "max-rooms"), self.max_rooms, 1000, 1, 1_000_000) as usize;
        let max_connections_per_ip = v.number(
            Key::new("MAX_CONNECTIONS_PER_IP", "max-connections-per-ip"),
            self.max_connections_per_ip,
            64,
            1,
            1_000_000,
        ) as usize;
        let max_messages_per_second = v.number(
            Key::new("MAX_MESSAGES_PER_SECOND", "max-messages-per-second"),
            self.max_messages_per_second,
            200,
            1,
            1_000_000,
        ) as u32;
        let ws_send_queue = v.number(
            Key::new("WS_SEND_QUEUE", "ws-send-queue"),
            self.ws_send_queue,
            256,
            1,
            1_000_000,
        ) as usize;
        let ws_ping_interval = v.millis(
            Key::new("WS_PING_INTERVAL", "ws-ping-interval"),
            self.ws_ping_interval,
            30_000,
            10,
        );
        let trusted_proxies = v.parse(
            Key::new("TRUSTED_PROXIES", "trusted-proxies"),
            self.trusted_proxies,
            Vec::new(),
            "comma-separated IP addresses, e.g. 127.0.0.1,::1",
            |raw| {
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse().map_err(|_| format!("{s:?} is not an IP address")))
                    .collect()
            },
        );
        RoomSettings {
            max_message_bytes,
            max_room_participants,
            max_rooms,
            max_connections_per_ip,
            max_messages_per_second,
            ws_send_queue,
            ws_ping_interval,
            trusted_proxies,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::settings::DotEnv;

    #[test]
    fn defaults_are_sane_and_bad_values_are_all_reported() {
        let s = RoomSettings::default();
        assert_eq!(s.max_message_bytes, 64 * 1024);
        assert_eq!(s.ws_send_queue, 256);
        assert_eq!(s.ws_ping_interval, Duration::from_secs(30));
        let dotenv = DotEnv::default();
        let mut v = Validator::new(&dotenv);
        RoomArgs {
            max_room_participants: Some("abc".into()),
            max_messages_per_second: Some("0".into()),
            ws_ping_interval: Some("-1".into()),
            ..RoomArgs::default()
        }
        .validate(&mut v);
        let errors = v.finish().expect_err("three bad values");
        assert_eq!(errors.0.len(), 3, "{errors}");
        let text = errors.to_string();
        assert!(text.contains("MAX_ROOM_PARTICIPANTS"), "{text}");
        assert!(text.contains("MAX_MESSAGES_PER_SECOND"), "{text}");
        assert!(text.contains("WS_PING_INTERVAL"), "{text}");
    }
}
