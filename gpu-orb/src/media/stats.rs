//! Per-peer media health: ICE and DTLS state, packets and bytes each way, the
//! last packet's time, packets per source address and the orb's forwarding
//! delay. Each peer task owns its [`PeerStats`] and publishes copies through a
//! `watch` channel; [`PeerSnapshot`] is what a heartbeat reads.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

/// Source addresses counted one by one; packets from more land in `other_sources`.
pub const MAX_SOURCES: usize = 8;

/// One peer's counters, as its task keeps them.
#[derive(Debug, Clone, Default)]
pub struct PeerStats {
    /// ICE state (`new`, `checking`, `connected`, `completed`, `disconnected`).
    pub ice: &'static str,
    /// DTLS/SRTP state (`new`, `connected`).
    pub dtls: &'static str,
    /// UDP datagrams received.
    pub packets_in: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// UDP datagrams sent.
    pub packets_out: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Audio frames handed to the engine.
    pub frames_in: u64,
    /// Audio frames written towards the peer.
    pub frames_out: u64,
    /// When the last datagram arrived.
    pub last_packet: Option<Instant>,
    /// When ICE and DTLS were both up (the manager's media-stall rule counts from it).
    pub connected_at: Option<Instant>,
    /// Datagrams per source address (the first [`MAX_SOURCES`]).
    pub sources: Vec<(SocketAddr, u64)>,
    /// Datagrams from further addresses.
    pub other_sources: u64,
    /// Packet received → echoed frame written, inside the orb.
    pub forward_delay: DelayHistogram,
}

impl PeerStats {
    /// A fresh peer.
    pub fn new() -> Self {
        Self {
            ice: "new",
            dtls: "new",
            ..Self::default()
        }
    }

    /// Counts one received datagram.
    pub fn received(&mut self, source: SocketAddr, bytes: usize, now: Instant) {
        self.packets_in += 1;
        self.bytes_in += bytes as u64;
        self.last_packet = Some(now);
        if let Some((_, n)) = self.sources.iter_mut().find(|(a, _)| *a == source) {
            *n += 1;
        } else if self.sources.len() < MAX_SOURCES {
            self.sources.push((source, 1));
        } else {
            self.other_sources += 1;
        }
    }

    /// Counts one sent datagram.
    pub fn sent(&mut self, bytes: usize) {
        self.packets_out += 1;
        self.bytes_out += bytes as u64;
    }

    /// The snapshot of `peer` at `now`.
    pub fn snapshot(&self, peer: &str, now: Instant) -> PeerSnapshot {
        PeerSnapshot {
            peer: peer.to_owned(),
            ice: self.ice,
            dtls: self.dtls,
            packets_in: self.packets_in,
            bytes_in: self.bytes_in,
            packets_out: self.packets_out,
            bytes_out: self.bytes_out,
            frames_in: self.frames_in,
            frames_out: self.frames_out,
            last_packet_age_ms: self
                .last_packet
                .map(|t| u64::try_from(now.duration_since(t).as_millis()).unwrap_or(u64::MAX)),
            connected_age_ms: self
                .connected_at
                .map(|t| u64::try_from(now.duration_since(t).as_millis()).unwrap_or(u64::MAX)),
            sources: self
                .sources
                .iter()
                .map(|(a, n)| SourceCount {
                    address: a.to_string(),
                    packets: *n,
                })
                .collect(),
            other_sources: self.other_sources,
            forward_delay_p99_us: self.forward_delay.quantile_us(0.99),
            forward_delay_max_us: self.forward_delay.max_us,
        }
    }
}

/// One peer's media health at one moment: an element of the heartbeat's
/// `metrics.media` (docs/protocol.md §4), with the admin API's snake_case names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerSnapshot {
    /// The participant.
    pub peer: String,
    /// ICE state.
    pub ice: &'static str,
    /// DTLS state.
    pub dtls: &'static str,
    /// Datagrams in.
    pub packets_in: u64,
    /// Bytes in.
    pub bytes_in: u64,
    /// Datagrams out.
    pub packets_out: u64,
    /// Bytes out.
    pub bytes_out: u64,
    /// Audio frames in.
    pub frames_in: u64,
    /// Audio frames out.
    pub frames_out: u64,
    /// Milliseconds since the last datagram, if any came.
    pub last_packet_age_ms: Option<u64>,
    /// Milliseconds since ICE and DTLS were both connected (`None` before).
    pub connected_age_ms: Option<u64>,
    /// Datagrams per source address (the first [`MAX_SOURCES`]).
    pub sources: Vec<SourceCount>,
    /// Datagrams from addresses beyond the first few.
    pub other_sources: u64,
    /// 99th percentile of the forwarding delay (upper bucket bound), µs.
    pub forward_delay_p99_us: Option<u64>,
    /// Largest forwarding delay, µs.
    pub forward_delay_max_us: u64,
}

/// Datagrams from one source address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceCount {
    /// `ip:port` the datagrams came from (the browser, or the TURN server's relay).
    pub address: String,
    /// How many.
    pub packets: u64,
}

/// Delays in power-of-two microsecond buckets: fixed size, no allocation.
#[derive(Debug, Clone, Default)]
pub struct DelayHistogram {
    buckets: [u64; 32],
    count: u64,
    /// Largest delay seen, µs.
    pub max_us: u64,
}

impl DelayHistogram {
    /// Records one delay.
    pub fn record(&mut self, delay: Duration) {
        let us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        let bucket = (64 - us.leading_zeros()).min(31) as usize;
        self.buckets[bucket] += 1;
        self.count += 1;
        self.max_us = self.max_us.max(us);
    }

    /// The upper bound (µs) of the bucket holding quantile `q`, if anything was recorded.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((self.count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some((1u64 << i).saturating_sub(1).max(1));
            }
        }
        Some(self.max_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_counted_and_bounded() {
        let now = Instant::now();
        let mut stats = PeerStats::new();
        for port in 0..(MAX_SOURCES as u16 + 3) {
            let source = SocketAddr::from(([127, 0, 0, 1], 5000 + port));
            stats.received(source, 100, now);
            stats.received(source, 100, now);
        }
        assert_eq!(stats.sources.len(), MAX_SOURCES);
        assert_eq!(stats.sources[0].1, 2);
        assert_eq!(stats.other_sources, 6);
        assert_eq!(stats.packets_in, 2 * (MAX_SOURCES as u64 + 3));
        stats.sent(50);
        let snap = stats.snapshot("u1", now + Duration::from_millis(1500));
        assert_eq!(
            (snap.packets_out, snap.bytes_out, snap.last_packet_age_ms),
            (1, 50, Some(1500))
        );
        let json = serde_json::to_value(&snap).expect("snapshot json");
        assert_eq!(json["packets_in"], 2 * (MAX_SOURCES as u64 + 3));
        assert_eq!(
            json["sources"][0],
            serde_json::json!({"address": "127.0.0.1:5000", "packets": 2})
        );
    }

    #[test]
    fn the_delay_quantile_is_a_bucket_bound() {
        let mut h = DelayHistogram::default();
        assert_eq!(h.quantile_us(0.99), None);
        for _ in 0..99 {
            h.record(Duration::from_micros(40));
        }
        h.record(Duration::from_millis(3));
        assert_eq!(h.quantile_us(0.5), Some(63));
        assert_eq!(h.quantile_us(0.99), Some(63));
        assert_eq!(h.quantile_us(1.0), Some(4095));
        assert_eq!(h.max_us, 3000);
    }
}
