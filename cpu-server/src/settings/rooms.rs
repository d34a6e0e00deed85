//! Settings of the room server and relay (limits, liveness).

use std::time::Duration;

use clap::Args;
use shared::settings::{Key, Rule, Setting, Validator};

const MAX_MESSAGE_BYTES: Setting = Setting::new(
    Key::new("MAX_MESSAGE_BYTES", "max-message-bytes"),
    "65536",
    "Largest room message, bytes",
);
const MAX_ROOM_PARTICIPANTS: Setting = Setting::new(
    Key::new("MAX_ROOM_PARTICIPANTS", "max-room-participants"),
    "16",
    "Most participants in one room",
);
const MAX_ROOMS: Setting = Setting::new(Key::new("MAX_ROOMS", "max-rooms"), "1000", "Most rooms on this server");
const MAX_CONNECTIONS_PER_IP: Setting = Setting::new(
    Key::new("MAX_CONNECTIONS_PER_IP", "max-connections-per-ip"),
    "64",
    "Most open room sockets from one IP address",
);
const MAX_MESSAGES_PER_SECOND: Setting = Setting::new(
    Key::new("MAX_MESSAGES_PER_SECOND", "max-messages-per-second"),
    "200",
    "Messages per second one socket may send (token bucket, burst of one second)",
);
const WS_SEND_QUEUE: Setting = Setting::new(
    Key::new("WS_SEND_QUEUE", "ws-send-queue"),
    "256",
    "Outgoing messages queued per socket before it is dropped as a slow consumer",
);
const WS_PING_INTERVAL: Setting = Setting::new(
    Key::new("WS_PING_INTERVAL", "ws-ping-interval"),
    "30000",
    "WebSocket ping period, ms; a peer silent for two periods is dropped",
);
const TRUSTED_PROXIES: Setting = Setting::derived(
    Key::new("TRUSTED_PROXIES", "trusted-proxies"),
    "none",
    "Reverse proxies whose X-Forwarded-For is believed, comma-separated IPs (e.g. 127.0.0.1,::1 \
     behind a local nginx); per-address limits then apply to the real client",
);

/// This area's declarations (for the documentation checks).
#[cfg(test)]
pub(super) const SETTINGS: &[&Setting] = &[
    &MAX_MESSAGE_BYTES,
    &MAX_ROOM_PARTICIPANTS,
    &MAX_ROOMS,
    &MAX_CONNECTIONS_PER_IP,
    &MAX_MESSAGES_PER_SECOND,
    &WS_SEND_QUEUE,
    &WS_PING_INTERVAL,
    &TRUSTED_PROXIES,
];

/// Raw room flags; every one also readable from its environment variable.
#[derive(Debug, Clone, Default, Args)]
pub struct RoomArgs {
    /// `MAX_MESSAGE_BYTES`.
    #[arg(long = MAX_MESSAGE_BYTES.long(), env = MAX_MESSAGE_BYTES.env(), help = MAX_MESSAGE_BYTES.help())]
    pub max_message_bytes: Option<String>,
    /// `MAX_ROOM_PARTICIPANTS`.
    #[arg(long = MAX_ROOM_PARTICIPANTS.long(), env = MAX_ROOM_PARTICIPANTS.env(), help = MAX_ROOM_PARTICIPANTS.help())]
    pub max_room_participants: Option<String>,
    /// `MAX_ROOMS`.
    #[arg(long = MAX_ROOMS.long(), env = MAX_ROOMS.env(), help = MAX_ROOMS.help())]
    pub max_rooms: Option<String>,
    /// `MAX_CONNECTIONS_PER_IP`.
    #[arg(long = MAX_CONNECTIONS_PER_IP.long(), env = MAX_CONNECTIONS_PER_IP.env(), help = MAX_CONNECTIONS_PER_IP.help())]
    pub max_connections_per_ip: Option<String>,
    /// `MAX_MESSAGES_PER_SECOND`.
    #[arg(long = MAX_MESSAGES_PER_SECOND.long(), env = MAX_MESSAGES_PER_SECOND.env(), help = MAX_MESSAGES_PER_SECOND.help())]
    pub max_messages_per_second: Option<String>,
    /// `WS_SEND_QUEUE`.
    #[arg(long = WS_SEND_QUEUE.long(), env = WS_SEND_QUEUE.env(), help = WS_SEND_QUEUE.help())]
    pub ws_send_queue: Option<String>,
    /// `WS_PING_INTERVAL`.
    #[arg(long = WS_PING_INTERVAL.long(), env = WS_PING_INTERVAL.env(), help = WS_PING_INTERVAL.help())]
    pub ws_ping_interval: Option<String>,
    /// `TRUSTED_PROXIES`.
    #[arg(long = TRUSTED_PROXIES.long(), env = TRUSTED_PROXIES.env(), help = TRUSTED_PROXIES.help())]
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
        let max_message_bytes = v.number(&MAX_MESSAGE_BYTES, self.max_message_bytes, 256, 16 * 1024 * 1024) as usize;
        let max_room_participants = v.number(&MAX_ROOM_PARTICIPANTS, self.max_room_participants, 1, 1000) as usize;
        let max_rooms = v.number(&MAX_ROOMS, self.max_rooms, 1, 1_000_000) as usize;
        let max_connections_per_ip =
            v.number(&MAX_CONNECTIONS_PER_IP, self.max_connections_per_ip, 1, 1_000_000) as usize;
        let max_messages_per_second =
            v.number(&MAX_MESSAGES_PER_SECOND, self.max_messages_per_second, 1, 1_000_000) as u32;
        let ws_send_queue = v.number(&WS_SEND_QUEUE, self.ws_send_queue, 1, 1_000_000) as usize;
        let ws_ping_interval = v.millis(&WS_PING_INTERVAL, self.ws_ping_interval, 10);
        let trusted_proxies = v
            .opt(
                &TRUSTED_PROXIES,
                self.trusted_proxies,
                Rule::new("comma-separated IP addresses, e.g. 127.0.0.1,::1", |raw| {
                    raw.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| s.parse().map_err(|_| format!("{s:?} is not an IP address")))
                        .collect()
                }),
            )
            .unwrap_or_default();
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
        assert_eq!(
            s.max_message_bytes,
            shared::room::DEFAULT_MAX_MESSAGE_BYTES,
            "the server's default is the orbs' frame cap"
        );
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
