//! The media settings: `ORB_MEDIA`, `ORB_MEDIA_IP`, `ORB_MEDIA_PORTS`.
//!
//! [`MediaArgs`] is the clap side (flag > environment, raw strings, like
//! [`crate::cli::Cli`]); [`MediaArgs::resolve`] applies `.env` and the defaults
//! through the shared [`Validator`], so a bad value is reported with every
//! other bad setting (exit 64), naming the variable and the accepted form.

use std::net::IpAddr;

use shared::settings::{Key, Rule, Setting, Validator};

use super::bind::{LocalAddr, local_addrs};

const MEDIA: Setting = Setting::new(
    Key::new("ORB_MEDIA", "media"),
    "true",
    "Answer the browsers' WebRTC offers (`false`: ignore them, the legacy behaviour)",
);
const MEDIA_IP: Setting = Setting::new(
    Key::new("ORB_MEDIA_IP", "media-ip"),
    "127.0.0.1",
    "Where media UDP is bound: an IP address, an interface name (`eth1`) or a CIDR (`10.0.0.0/8`: \
     the first local address inside it)",
);
const MEDIA_PORTS: Setting = Setting::derived(
    Key::new("ORB_MEDIA_PORTS", "media-ports"),
    "any free port",
    "UDP ports for media, `FROM-TO` inclusive (e.g. `40000-40100`)",
);

/// The media declarations (for the documentation checks).
#[cfg(test)]
pub(crate) const SETTINGS: &[&Setting] = &[&MEDIA, &MEDIA_IP, &MEDIA_PORTS];

/// The media flags, flattened into the orb's command line.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct MediaArgs {
    /// `ORB_MEDIA`.
    #[arg(
        long = MEDIA.long(),
        env = MEDIA.env(),
        help = MEDIA.help(),
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub media: Option<String>,
    /// `ORB_MEDIA_IP`.
    #[arg(long = MEDIA_IP.long(), env = MEDIA_IP.env(), help = MEDIA_IP.help(), value_name = "IP|INTERFACE|CIDR")]
    pub media_ip: Option<String>,
    /// `ORB_MEDIA_PORTS`.
    #[arg(long = MEDIA_PORTS.long(), env = MEDIA_PORTS.env(), help = MEDIA_PORTS.help(), value_name = "FROM-TO")]
    pub media_ports: Option<String>,
}

/// The media settings, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSettings {
    /// `ORB_MEDIA`: whether the orb answers offers at all.
    pub enabled: bool,
    /// The local address media sockets bind to (resolved from `ORB_MEDIA_IP`).
    pub ip: IpAddr,
    /// `ORB_MEDIA_PORTS`; `None`: an ephemeral port per peer.
    pub ports: Option<PortRange>,
}

impl Default for MediaSettings {
    /// The declared defaults (`ORB_MEDIA`, `ORB_MEDIA_IP`, `ORB_MEDIA_PORTS` above).
    fn default() -> Self {
        let dotenv = shared::settings::DotEnv::default();
        let mut v = Validator::new(&dotenv);
        MediaArgs::default().resolve_with(&mut v, &[])
    }
}

/// An inclusive range of UDP ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port.
    pub from: u16,
    /// Last port (≥ `from`).
    pub to: u16,
}

impl PortRange {
    /// Parses `FROM-TO` (1 ≤ FROM ≤ TO ≤ 65535) or a single port.
    pub fn parse(raw: &str) -> Option<Self> {
        let (from, to) = match raw.split_once('-') {
            Some((from, to)) => (from.trim().parse::<u16>().ok()?, to.trim().parse::<u16>().ok()?),
            None => {
                let port = raw.trim().parse::<u16>().ok()?;
                (port, port)
            }
        };
        (from >= 1 && from <= to).then_some(Self { from, to })
    }

    /// How many ports it holds.
    pub fn len(self) -> u32 {
        u32::from(self.to) - u32::from(self.from) + 1
    }

    /// Never empty (kept for clippy's `len_without_is_empty`).
    pub fn is_empty(self) -> bool {
        false
    }
}

/// What `ORB_MEDIA_IP` names, before it is matched against the local addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindSpec {
    /// An address.
    Addr(IpAddr),
    /// A network: the first local address inside it.
    Cidr(IpAddr, u8),
    /// An interface: its first address (IPv4 first).
    Interface(String),
}

impl BindSpec {
    /// Parses an address, a CIDR or an interface name.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let raw = raw.trim();
        if let Ok(ip) = raw.parse::<IpAddr>() {
            return Ok(Self::Addr(ip));
        }
        if let Some((net, bits)) = raw.split_once('/') {
            let net: IpAddr = net.parse().map_err(|_| "a CIDR needs an address before the /")?;
            let max = if net.is_ipv4() { 32 } else { 128 };
            return match bits.parse::<u8>() {
                Ok(bits) if bits <= max => Ok(Self::Cidr(net, bits)),
                _ => Err("a CIDR prefix length is 0-32 (IPv4) or 0-128 (IPv6)"),
            };
        }
        let name_ok = !raw.is_empty()
            && raw.len() <= 15
            && raw
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'));
        if name_ok {
            Ok(Self::Interface(raw.to_owned()))
        } else {
            Err("an IP address, an interface name or a CIDR")
        }
    }

    /// The local address this names among `locals`, or why none fits.
    pub fn pick(&self, locals: &[LocalAddr]) -> Result<IpAddr, String> {
        let usable = |ip: &IpAddr| !ip.is_unspecified() && !ip.is_multicast();
        match self {
            Self::Addr(ip) if !usable(ip) => {
                Err(format!("{ip} cannot be a media address: give one address of this host"))
            }
            Self::Addr(ip) => locals
                .iter()
                .any(|l| l.ip == *ip)
                .then_some(*ip)
                .ok_or_else(|| format!("{ip} is not an address of this host ({})", listing(locals))),
            Self::Cidr(net, bits) => locals
                .iter()
                .map(|l| l.ip)
                .find(|ip| usable(ip) && in_cidr(*ip, *net, *bits))
                .ok_or_else(|| format!("no address of this host is in {net}/{bits} ({})", listing(locals))),
            Self::Interface(name) => {
                let all: Vec<IpAddr> = locals
                    .iter()
                    .filter(|l| l.interface == *name)
                    .map(|l| l.ip)
                    .filter(usable)
                    .collect();
                all.iter()
                    .find(|ip| ip.is_ipv4())
                    .or_else(|| all.first())
                    .copied()
                    .ok_or_else(|| format!("no interface {name} with an address ({})", listing(locals)))
            }
        }
    }
}

/// Whether `ip` is inside `net/bits` (same family only).
pub fn in_cidr(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

fn listing(locals: &[LocalAddr]) -> String {
    let shown: Vec<String> = locals.iter().map(|l| format!("{} {}", l.interface, l.ip)).collect();
    if shown.is_empty() {
        String::from("this host has no addresses")
    } else {
        format!("this host has: {}", shown.join(", "))
    }
}

impl MediaArgs {
    /// Validates against the host's real addresses.
    pub fn resolve(self, v: &mut Validator<'_>) -> MediaSettings {
        self.resolve_with(v, &local_addrs())
    }

    /// Validates against `locals` (tests give their own).
    pub fn resolve_with(self, v: &mut Validator<'_>, locals: &[LocalAddr]) -> MediaSettings {
        let enabled = v.boolean(&MEDIA, self.media);
        // The default is an address, taken as it is; a given value must name
        // one of `locals`.
        let default_ip = |v: &mut Validator<'_>| {
            let rule = Rule::new("an IP address", |raw| raw.parse::<IpAddr>().map_err(|e| e.to_string()));
            v.get(&MEDIA_IP, None, rule)
        };
        let ip = match v.raw(&MEDIA_IP, self.media_ip) {
            None => default_ip(v),
            Some(raw) => match BindSpec::parse(&raw).map_err(String::from).and_then(|s| s.pick(locals)) {
                Ok(ip) => ip,
                Err(why) => {
                    v.error(&MEDIA_IP, raw, format!("{why}; e.g. 10.0.0.5, eth1 or 10.0.0.0/8"));
                    default_ip(v)
                }
            },
        };
        let ports = v.opt(
            &MEDIA_PORTS,
            self.media_ports,
            Rule::new(
                "a UDP port range FROM-TO with 1 <= FROM <= TO <= 65535, e.g. 40000-40100",
                |raw| PortRange::parse(raw).ok_or_else(String::new),
            ),
        );
        MediaSettings { enabled, ip, ports }
    }
}

#[cfg(test)]
mod tests {
    use shared::settings::DotEnv;

    use super::*;

    fn locals() -> Vec<LocalAddr> {
        [
            ("lo", "127.0.0.1"),
            ("eth0", "192.168.1.20"),
            ("eth1", "fe80::1"),
            ("eth1", "10.1.2.3"),
        ]
        .iter()
        .map(|(interface, ip)| LocalAddr {
            interface: (*interface).to_owned(),
            ip: ip.parse().expect("ip"),
        })
        .collect()
    }

    fn resolve(media: Option<&str>, ip: Option<&str>, ports: Option<&str>) -> (MediaSettings, Vec<String>) {
        let dotenv = DotEnv::default();
        let mut v = Validator::new(&dotenv);
        let args = MediaArgs {
            media: media.map(str::to_owned),
            media_ip: ip.map(str::to_owned),
            media_ports: ports.map(str::to_owned),
        };
        let settings = args.resolve_with(&mut v, &locals());
        let errors = v
            .finish()
            .err()
            .map(|e| e.0.iter().map(ToString::to_string).collect())
            .unwrap_or_default();
        (settings, errors)
    }

    #[test]
    fn defaults_are_media_on_loopback_any_port() {
        let (settings, errors) = resolve(None, None, None);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(settings, MediaSettings::default());
        assert_eq!(
            (settings.enabled, settings.ip, settings.ports),
            (true, IpAddr::from([127, 0, 0, 1]), None)
        );
        assert!(!resolve(Some("false"), None, None).0.enabled);
    }

    #[test]
    fn an_address_an_interface_or_a_cidr_picks_a_local_address() {
        assert_eq!(
            resolve(None, Some("192.168.1.20"), None).0.ip.to_string(),
            "192.168.1.20"
        );
        assert_eq!(
            resolve(None, Some("eth1"), None).0.ip.to_string(),
            "10.1.2.3",
            "IPv4 first"
        );
        assert_eq!(resolve(None, Some("10.0.0.0/8"), None).0.ip.to_string(), "10.1.2.3");
        assert_eq!(
            resolve(None, Some("192.168.0.0/16"), None).0.ip.to_string(),
            "192.168.1.20"
        );
    }

    #[test]
    fn port_ranges_parse_and_bad_ones_are_refused() {
        assert_eq!(
            PortRange::parse("40000-40100"),
            Some(PortRange { from: 40000, to: 40100 })
        );
        assert_eq!(PortRange::parse("5000"), Some(PortRange { from: 5000, to: 5000 }));
        assert_eq!(PortRange::parse("40000-40100").map(PortRange::len), Some(101));
        for bad in ["0-10", "10-5", "a-b", "1-70000", "-", ""] {
            assert_eq!(PortRange::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn every_bad_value_names_its_setting_and_the_fix() {
        let (_, errors) = resolve(Some("maybe"), Some("10.9.9.9"), Some("9-1"));
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].starts_with("ORB_MEDIA (--media)"), "{errors:?}");
        assert!(errors[1].starts_with("ORB_MEDIA_IP") && errors[1].contains("not an address of this host"));
        assert!(errors[2].starts_with("ORB_MEDIA_PORTS") && errors[2].contains("40000-40100"));
        for bad in ["0.0.0.0", "wlan9", "172.16.0.0/12", "10.0.0.0/40", "not an interface!"] {
            let (_, errors) = resolve(None, Some(bad), None);
            assert_eq!(errors.len(), 1, "{bad}: {errors:?}");
            assert!(errors[0].starts_with("ORB_MEDIA_IP"), "{errors:?}");
        }
    }

    #[test]
    fn cidr_matching_keeps_families_apart() {
        let v4: IpAddr = "10.1.2.3".parse().expect("ip");
        assert!(in_cidr(v4, "10.0.0.0".parse().expect("ip"), 8));
        assert!(in_cidr(v4, "0.0.0.0".parse().expect("ip"), 0));
        assert!(!in_cidr(v4, "10.1.2.4".parse().expect("ip"), 32));
        assert!(!in_cidr(v4, "::".parse().expect("ip"), 0));
        assert!(in_cidr(
            "fe80::1".parse().expect("ip"),
            "fe80::".parse().expect("ip"),
            10
        ));
    }
}
