//! The client's address when cpu-server sits behind a reverse proxy.
//!
//! Behind nginx every socket comes from the proxy's address, so per-address
//! limits would count the whole site as one client. When the peer is one of
//! `TRUSTED_PROXIES`, the client is the right-most `X-Forwarded-For` entry that
//! is not itself a trusted proxy (entries further left are client-supplied and
//! may be forged). Otherwise the peer address is the client.

use std::net::IpAddr;

use axum::http::HeaderMap;

/// The address per-client limits and logs use.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    forwarded
        .iter()
        .rev()
        .filter_map(|entry| entry.parse::<IpAddr>().ok())
        .find(|ip| !trusted.contains(ip))
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in xff {
            map.append("x-forwarded-for", value.parse().expect("header value"));
        }
        map
    }

    const PROXY: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        let peer: IpAddr = "203.0.113.9".parse().expect("ip");
        assert_eq!(client_ip(peer, &headers(&["198.51.100.1"]), &[PROXY]), peer);
    }

    #[test]
    fn trusted_proxy_names_the_right_most_untrusted_entry() {
        let client: IpAddr = "198.51.100.7".parse().expect("ip");
        // A forged left-most entry is ignored: nginx appends the real peer on the right.
        let h = headers(&["10.9.9.9, 198.51.100.7"]);
        assert_eq!(client_ip(PROXY, &h, &[PROXY]), client);
        let two_headers = headers(&["10.9.9.9", "198.51.100.7, 127.0.0.1"]);
        assert_eq!(client_ip(PROXY, &two_headers, &[PROXY]), client);
    }

    #[test]
    fn trusted_proxy_without_a_usable_header_is_the_client() {
        assert_eq!(client_ip(PROXY, &headers(&[]), &[PROXY]), PROXY);
        assert_eq!(client_ip(PROXY, &headers(&["garbage"]), &[PROXY]), PROXY);
    }
}
