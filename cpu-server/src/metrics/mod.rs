//! Prometheus metrics of the server (`GET /metrics`).
//!
//! One [`Metrics`] owns the registry; it is created once per server in `lib.rs`
//! and handed as an `Arc<Metrics>` to whoever counts (the room registry, the
//! admin API, `/metrics`). Events (spawns, restarts,
//! kills, exits, ready, heartbeats, error replies) bump counters and
//! histograms where they happen; levels (orbs by state, per-orb CPU/RSS,
//! heartbeat ages, queue, rooms, connections, relay totals) are refreshed from
//! a [`scrape::Snapshot`] at each scrape. `cpu_server_start_time_seconds` is set
//! once, when the server builds its `Metrics`: a change of it between scrapes is
//! how `deploy/prometheus/alerts.yml` sees a restart.
//!
//! # Layout
//! - [`scrape`]: the scrape-time snapshot and the text rendering.

pub mod scrape;

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A metric's labels.
pub type Labels = Vec<(String, String)>;
/// A floating-point gauge.
pub type FloatGauge = Gauge<f64, AtomicU64>;

/// Every metric of the server.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Orb processes started.
    pub spawns: Counter,
    /// Orb processes started again after a failure.
    pub restarts: Counter,
    /// Stops and kills asked for, by reason.
    pub kills: Family<Labels, Counter>,
    /// Orb process ends, by cause.
    pub exits: Family<Labels, Counter>,
    /// IPC heartbeats received.
    pub heartbeats: Counter,
    /// Spawn → `orb_ready`, seconds.
    pub spawn_to_ready: Histogram,
    /// IPC heartbeat delay (its timestamp to its arrival), seconds.
    pub ipc_delay: Histogram,
    /// Error replies and admin API errors, by code.
    pub errors: Family<Labels, Counter>,
    /// Bytes of relayed messages (one copy per recipient), mirrored from the
    /// relay's own tally at each scrape.
    relayed_bytes: Counter,
    /// Unix time (seconds) this server started: when its `Metrics` were built.
    start_time: FloatGauge,
    levels: scrape::Levels,
    /// Serializes scrapes (the level refresh is read-modify-write).
    scrape_lock: Mutex<()>,
}

/// A label value safe for metrics: the part before any `:`, lowercase
/// `[a-z0-9_]`, at most 40 characters (keeps the label set small).
pub fn label_value(raw: &str) -> String {
    let head = raw.split(':').next().unwrap_or_default().trim();
    let value: String = head
        .chars()
        .take(40)
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if value.is_empty() { "unknown".to_owned() } else { value }
}

fn label(name: &str, value: &str) -> Labels {
    vec![(name.to_owned(), label_value(value))]
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric registered, all at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("cpu_server");
        let spawns = Counter::default();
        registry.register("orb_spawns", "Orb processes started", spawns.clone());
        let restarts = Counter::default();
        registry.register(
            "orb_restarts",
            "Orb processes restarted after a failure",
            restarts.clone(),
        );
        let kills = Family::<Labels, Counter>::default();
        registry.register("orb_kills", "Orb stops and kills requested, by reason", kills.clone());
        let exits = Family::<Labels, Counter>::default();
        registry.register("orb_exits", "Orb process exits, by cause", exits.clone());
        let heartbeats = Counter::default();
        registry.register("orb_heartbeats", "Orb IPC heartbeats received", heartbeats.clone());
        let spawn_to_ready = Histogram::new(exponential_buckets(0.05, 2.0, 10));
        registry.register(
            "orb_spawn_to_ready_seconds",
            "Orb spawn to orb_ready",
            spawn_to_ready.clone(),
        );
        let ipc_delay = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        registry.register("orb_ipc_delay_seconds", "Orb IPC heartbeat delay", ipc_delay.clone());
        let errors = Family::<Labels, Counter>::default();
        registry.register("errors", "Error replies and admin API errors, by code", errors.clone());
        let relayed_bytes = Counter::default();
        registry.register(
            "relayed_bytes",
            "Bytes of relayed messages (one copy per recipient)",
            relayed_bytes.clone(),
        );
        let start_time = FloatGauge::default();
        start_time.set(unix_now_seconds());
        registry.register(
            "start_time_seconds",
            "Unix time the server started, seconds",
            start_time.clone(),
        );
        let levels = scrape::Levels::register(&mut registry);
        Self {
            registry,
            spawns,
            restarts,
            kills,
            exits,
            heartbeats,
            spawn_to_ready,
            ipc_delay,
            errors,
            relayed_bytes,
            start_time,
            levels,
            scrape_lock: Mutex::new(()),
        }
    }

    /// Counts a stop or kill asked for `reason`.
    pub fn kill(&self, reason: &str) {
        self.kills.get_or_create(&label("reason", reason)).inc();
    }

    /// Counts an orb process exit of `cause`.
    pub fn exit(&self, cause: &str) {
        self.exits.get_or_create(&label("cause", cause)).inc();
    }

    /// Unix time (seconds) this server started.
    pub fn start_time_seconds(&self) -> f64 {
        self.start_time.get()
    }

    /// The start time of the process this image took over by an upgrade (it
    /// did not restart: its rooms went on).
    pub fn started_at(&self, seconds: f64) {
        self.start_time.set(seconds);
    }

    /// Counts an error of `code`.
    pub fn error(&self, code: &str) {
        self.errors.get_or_create(&label("code", code)).inc();
    }
}

/// Wall-clock seconds since the Unix epoch, to the millisecond.
fn unix_now_seconds() -> f64 {
    shared::clock::epoch_ms() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_stay_small_and_safe() {
        assert_eq!(label_value("manual_termination"), "manual_termination");
        assert_eq!(label_value("spawn_failed: No such file (os error 2)"), "spawn_failed");
        assert_eq!(label_value("Weird Reason!"), "weird_reason_");
        assert_eq!(label_value(""), "unknown");
        assert_eq!(label_value(&"x".repeat(100)).len(), 40);
    }

    #[test]
    fn start_time_is_set_once_at_creation() {
        let before = unix_now_seconds();
        let metrics = Metrics::new();
        let start = metrics.start_time_seconds();
        assert!(start >= before && start <= unix_now_seconds(), "{start}");
        let text = metrics.render(&scrape::Snapshot::default());
        assert!(
            text.contains(&format!("cpu_server_start_time_seconds {start}")),
            "{text}"
        );
    }
}
