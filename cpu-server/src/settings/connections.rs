//! Settings of the listeners' connections before they become room sockets:
//! how long a connection may take to shake hands and send its request, how
//! many may be open (in total, and per client address before the upgrade), and
//! how many event loops room sockets run on.

use std::time::Duration;

use clap::Args;
use shared::settings::{Key, Setting, Validator};

const HTTP_HEADER_TIMEOUT: Setting = Setting::new(
    Key::new("HTTP_HEADER_TIMEOUT", "http-header-timeout"),
    "10000",
    "Longest wait for a complete request header, ms, from the start of the connection (after TLS) \
     and again after each response (an idle keep-alive connection)",
);
const TLS_HANDSHAKE_TIMEOUT: Setting = Setting::new(
    Key::new("TLS_HANDSHAKE_TIMEOUT", "tls-handshake-timeout"),
    "10000",
    "Longest TLS handshake, ms (native TLS only)",
);
const WS_UPGRADE_TIMEOUT: Setting = Setting::new(
    Key::new("WS_UPGRADE_TIMEOUT", "ws-upgrade-timeout"),
    "15000",
    "Longest time from accepting a connection to its first complete request (for a room socket: its \
     completed WebSocket upgrade), TLS handshake included, ms",
);
const MAX_CONNECTIONS: Setting = Setting::new(
    Key::new("MAX_CONNECTIONS", "max-connections"),
    "16384",
    "Most open connections (room sockets included); more are accepted and closed at once, with a \
     rate-limited warning",
);
const MAX_PENDING_CONNECTIONS_PER_IP: Setting = Setting::new(
    Key::new("MAX_PENDING_CONNECTIONS_PER_IP", "max-pending-connections-per-ip"),
    "64",
    "Most open connections from one TCP peer address that are not (yet) room sockets; peers in \
     TRUSTED_PROXIES are exempt",
);
const RELAY_THREADS: Setting = Setting::new(
    Key::new("RELAY_THREADS", "relay-threads"),
    "0",
    "Single-threaded event loops that plain-TCP room sockets are spread over (each its own thread \
     and epoll); 0: one per CPU core the process may use",
);

/// This area's declarations (for the documentation checks).
#[cfg(test)]
pub(super) const SETTINGS: &[&Setting] = &[
    &HTTP_HEADER_TIMEOUT,
    &TLS_HANDSHAKE_TIMEOUT,
    &WS_UPGRADE_TIMEOUT,
    &MAX_CONNECTIONS,
    &MAX_PENDING_CONNECTIONS_PER_IP,
    &RELAY_THREADS,
];

/// Raw flags of this area (each also readable from its environment variable).
#[derive(Debug, Clone, Default, Args)]
pub struct ConnectionArgs {
    /// `HTTP_HEADER_TIMEOUT`.
    #[arg(long = HTTP_HEADER_TIMEOUT.long(), env = HTTP_HEADER_TIMEOUT.env(), help = HTTP_HEADER_TIMEOUT.help())]
    pub http_header_timeout: Option<String>,
    /// `TLS_HANDSHAKE_TIMEOUT`.
    #[arg(long = TLS_HANDSHAKE_TIMEOUT.long(), env = TLS_HANDSHAKE_TIMEOUT.env(), help = TLS_HANDSHAKE_TIMEOUT.help())]
    pub tls_handshake_timeout: Option<String>,
    /// `WS_UPGRADE_TIMEOUT`.
    #[arg(long = WS_UPGRADE_TIMEOUT.long(), env = WS_UPGRADE_TIMEOUT.env(), help = WS_UPGRADE_TIMEOUT.help())]
    pub ws_upgrade_timeout: Option<String>,
    /// `MAX_CONNECTIONS`.
    #[arg(long = MAX_CONNECTIONS.long(), env = MAX_CONNECTIONS.env(), help = MAX_CONNECTIONS.help())]
    pub max_connections: Option<String>,
    /// `MAX_PENDING_CONNECTIONS_PER_IP`.
    #[arg(
        long = MAX_PENDING_CONNECTIONS_PER_IP.long(),
        env = MAX_PENDING_CONNECTIONS_PER_IP.env(),
        help = MAX_PENDING_CONNECTIONS_PER_IP.help()
    )]
    pub max_pending_connections_per_ip: Option<String>,
    /// `RELAY_THREADS`.
    #[arg(long = RELAY_THREADS.long(), env = RELAY_THREADS.env(), help = RELAY_THREADS.help())]
    pub relay_threads: Option<String>,
}

/// Typed settings of this area.
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    /// `HTTP_HEADER_TIMEOUT`.
    pub header_timeout: Duration,
    /// `TLS_HANDSHAKE_TIMEOUT`.
    pub tls_handshake_timeout: Duration,
    /// `WS_UPGRADE_TIMEOUT`.
    pub upgrade_timeout: Duration,
    /// `MAX_CONNECTIONS`.
    pub max_connections: usize,
    /// `MAX_PENDING_CONNECTIONS_PER_IP`.
    pub max_pending_per_ip: usize,
    /// `RELAY_THREADS`, resolved: at least one.
    pub relay_threads: usize,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        let dotenv = shared::settings::DotEnv::default();
        let mut v = Validator::new(&dotenv);
        ConnectionArgs::default().validate(&mut v)
    }
}

impl ConnectionArgs {
    /// Validates into [`ConnectionSettings`], recording every error in `v`.
    pub fn validate(self, v: &mut Validator<'_>) -> ConnectionSettings {
        let header_timeout = v.millis(&HTTP_HEADER_TIMEOUT, self.http_header_timeout, 10);
        let tls_handshake_timeout = v.millis(&TLS_HANDSHAKE_TIMEOUT, self.tls_handshake_timeout, 10);
        let upgrade_timeout = v.millis(&WS_UPGRADE_TIMEOUT, self.ws_upgrade_timeout, 10);
        let max_connections = v.number(&MAX_CONNECTIONS, self.max_connections, 1, 10_000_000) as usize;
        let max_pending_per_ip = v.number(
            &MAX_PENDING_CONNECTIONS_PER_IP,
            self.max_pending_connections_per_ip,
            1,
            10_000_000,
        ) as usize;
        let relay_threads = match v.number(&RELAY_THREADS, self.relay_threads, 0, 1024) {
            0 => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            n => n as usize,
        };
        ConnectionSettings {
            header_timeout,
            tls_handshake_timeout,
            upgrade_timeout,
            max_connections,
            max_pending_per_ip,
            relay_threads,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::settings::DotEnv;

    #[test]
    fn defaults_and_every_bad_value_named() {
        let s = ConnectionSettings::default();
        assert_eq!(s.header_timeout, Duration::from_secs(10));
        assert_eq!(s.tls_handshake_timeout, Duration::from_secs(10));
        assert_eq!(s.upgrade_timeout, Duration::from_secs(15));
        assert_eq!((s.max_connections, s.max_pending_per_ip), (16_384, 64));
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        assert_eq!(s.relay_threads, cores, "one loop per core");
        let dotenv = DotEnv::default();
        let mut v = Validator::new(&dotenv);
        ConnectionArgs {
            http_header_timeout: Some("0".into()),
            tls_handshake_timeout: Some("99999999999".into()),
            ws_upgrade_timeout: Some("soon".into()),
            max_connections: Some("0".into()),
            max_pending_connections_per_ip: Some("-3".into()),
            relay_threads: Some("2000".into()),
        }
        .validate(&mut v);
        let errors = v.finish().expect_err("six bad values");
        assert_eq!(errors.0.len(), 6, "{errors}");
        let text = errors.to_string();
        for name in [
            "HTTP_HEADER_TIMEOUT",
            "TLS_HANDSHAKE_TIMEOUT",
            "WS_UPGRADE_TIMEOUT",
            "MAX_CONNECTIONS",
            "MAX_PENDING_CONNECTIONS_PER_IP",
            "RELAY_THREADS",
        ] {
            assert!(text.contains(name), "{name}: {text}");
        }
    }
}
