//! The host's addresses, and binding one peer's UDP socket inside `ORB_MEDIA_PORTS`.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};

use super::settings::PortRange;

/// One address of one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAddr {
    /// Interface name (`lo`, `eth0`).
    pub interface: String,
    /// Its address.
    pub ip: IpAddr,
}

/// Every IPv4 and IPv6 address of this host (empty if `getifaddrs` fails).
pub fn local_addrs() -> Vec<LocalAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    addrs
        .filter_map(|a| {
            let address = a.address?;
            let ip = match (address.as_sockaddr_in(), address.as_sockaddr_in6()) {
                (Some(v4), _) => IpAddr::V4(v4.ip()),
                (_, Some(v6)) => IpAddr::V6(v6.ip()),
                _ => return None,
            };
            Some(LocalAddr {
                interface: a.interface_name,
                ip,
            })
        })
        .collect()
}

/// Why no socket could be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Every port of the range is taken.
    #[error("every UDP port of ORB_MEDIA_PORTS {from}-{to} on {ip} is in use: widen the range")]
    Exhausted {
        /// The address.
        ip: IpAddr,
        /// First port of the range.
        from: u16,
        /// Last port.
        to: u16,
    },
    /// The bind failed for another reason.
    #[error("cannot bind a UDP socket on {0}: {1}")]
    Io(SocketAddr, io::Error),
}

/// A non-blocking UDP socket on `ip`: an ephemeral port, or the first free one of
/// `ports` starting at `start` (callers rotate it so ports are reused last).
/// At most `ports.len()` binds are tried.
pub fn bind_udp(ip: IpAddr, ports: Option<PortRange>, start: u32) -> Result<UdpSocket, BindError> {
    let socket = match ports {
        None => {
            let addr = SocketAddr::new(ip, 0);
            UdpSocket::bind(addr).map_err(|e| BindError::Io(addr, e))?
        }
        Some(range) => bind_in_range(ip, range, start)?,
    };
    let addr = socket
        .local_addr()
        .map_err(|e| BindError::Io(SocketAddr::new(ip, 0), e))?;
    socket.set_nonblocking(true).map_err(|e| BindError::Io(addr, e))?;
    Ok(socket)
}

fn bind_in_range(ip: IpAddr, range: PortRange, start: u32) -> Result<UdpSocket, BindError> {
    for i in 0..range.len() {
        let offset = (start.wrapping_add(i)) % range.len();
        let port = u16::try_from(u32::from(range.from) + offset).unwrap_or(range.to);
        let addr = SocketAddr::new(ip, port);
        match UdpSocket::bind(addr) {
            Ok(socket) => return Ok(socket),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(BindError::Io(addr, e)),
        }
    }
    Err(BindError::Exhausted {
        ip,
        from: range.from,
        to: range.to,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn the_host_has_loopback() {
        assert!(local_addrs().iter().any(|a| a.ip == LOOPBACK), "{:?}", local_addrs());
    }

    #[test]
    fn a_range_is_filled_then_exhausted_with_a_clear_error() {
        // A free pair of ports: bind two ephemeral sockets, release them, use their range only if adjacent.
        let probe = bind_udp(LOOPBACK, None, 0).expect("ephemeral");
        let port = probe.local_addr().expect("addr").port();
        drop(probe);
        let range = PortRange { from: port, to: port };
        let first = bind_udp(LOOPBACK, Some(range), 7).expect("the one port");
        assert_eq!(first.local_addr().expect("addr").port(), port);
        let error = bind_udp(LOOPBACK, Some(range), 0).expect_err("exhausted");
        assert!(matches!(error, BindError::Exhausted { .. }), "{error}");
        assert!(error.to_string().contains("ORB_MEDIA_PORTS") && error.to_string().contains("widen"));
    }
}
