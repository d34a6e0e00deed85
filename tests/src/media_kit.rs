//! Helpers of the WebRTC media tests: figures printed by the pages, a veth pair
//! and a coturn configuration for the TURN path. The namespace, the browser
//! tools check and the bounded `node` run are in `browser_kit`.

pub use crate::browser_kit::{browser_dir, enter_loopback_namespace, require_browser_setup, run_node};

use std::path::Path;
use std::process::Command;

/// The `MEDIA {json}` figure lines a browser test printed.
pub fn figures(output: &str) -> Vec<serde_json::Value> {
    output
        .lines()
        .filter_map(|line| line.trim().trim_start_matches("# ").strip_prefix("MEDIA "))
        .filter_map(|json| serde_json::from_str(json).ok())
        .collect()
}

/// Inside the test's own namespace (after [`enter_loopback_namespace`]): a veth pair,
/// `mucrelay` with `relay_ip` (the CPU host's side: coturn relays from it) and `mucorb`
/// with `orb_ip` (the orb's internal address), both /24 and up.
pub fn add_veth_pair(relay_ip: &str, orb_ip: &str) {
    let ip = |args: &[&str]| {
        let out = Command::new("ip").args(args).output().expect("`ip` (iproute2)");
        assert!(
            out.status.success(),
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ip(&["link", "add", "mucrelay", "type", "veth", "peer", "name", "mucorb"]);
    ip(&["addr", "add", &format!("{relay_ip}/24"), "dev", "mucrelay"]);
    ip(&["addr", "add", &format!("{orb_ip}/24"), "dev", "mucorb"]);
    ip(&["link", "set", "mucrelay", "up"]);
    ip(&["link", "set", "mucorb", "up"]);
}

/// A coturn configuration for the TURN media test: it listens on 127.0.0.1:`port` (the
/// browsers' side), relays from `relay_ip`, and may relay to `orb_ip` only — every other
/// IPv4 and IPv6 peer, loopback included, is denied. The same rules as
/// `deploy/coturn/turnserver.conf.example`.
pub fn coturn_config(port: u16, relay_ip: &str, orb_ip: &str, secret: &str, log: &Path) -> String {
    let min_port = 30_000 + (port % 200) * 50;
    format!(
        "listening-ip=127.0.0.1\nlistening-port={port}\nrelay-ip={relay_ip}\n\
         min-port={min_port}\nmax-port={}\n\
         use-auth-secret\nstatic-auth-secret={secret}\nrealm=myultracoach.test\nfingerprint\n\
         no-tls\nno-dtls\nno-cli\nno-multicast-peers\n\
         denied-peer-ip=0.0.0.0-255.255.255.255\ndenied-peer-ip=::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff\n\
         allowed-peer-ip={orb_ip}\n\
         simple-log\nlog-file={}\n",
        min_port + 49,
        log.display()
    )
}

/// A cpu-server for the browser media and voice tests: it spawns the real gpu-orb of the
/// build on the coach's join, stops it as soon as the room is empty, answers the admin API
/// with `admin_token` and heartbeats every 500 ms; `extra` settings go on top (a later
/// setting of the same name wins).
pub fn start_orb_server(admin_token: &str, extra: &[(&str, &str)]) -> crate::room_harness::RoomServer {
    let target = crate::binaries::target_dir().display().to_string();
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".to_owned());
    let mut env: Vec<(&str, &str)> = vec![
        ("PATH", &path),
        ("ORB_SPAWN_ON", "coach"),
        ("GPU_SERVER_PATH", &target),
        ("ROOM_EMPTY_GRACE", "0"),
        ("ORB_STOP_GRACE", "2000"),
        ("ORB_KILL_GRACE", "1000"),
        ("ADMIN_TOKEN", admin_token),
        ("ORB_HEALTH_CHECK_INTERVAL", "500"),
    ];
    env.extend_from_slice(extra);
    crate::room_harness::RoomServer::start(&env)
}
