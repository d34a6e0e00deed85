//! Scrape-time levels: refreshed from a [`Snapshot`], then everything rendered
//! in the Prometheus (OpenMetrics) text format.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{FloatGauge, Labels, Metrics};
use crate::orbs::{OrbCounts, OrbRecord, OrbState};

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

const STATES: [(OrbState, &str); 7] = [
    (OrbState::Queued, "queued"),
    (OrbState::Spawning, "spawning"),
    (OrbState::Ready, "ready"),
    (OrbState::Unresponsive, "unresponsive"),
    (OrbState::Stopping, "stopping"),
    (OrbState::Restarting, "restarting"),
    (OrbState::Parked, "parked"),
];

/// What a scrape reads from the running server.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Every orb record.
    pub orbs: Vec<OrbRecord>,
    /// Slots and queue.
    pub counts: OrbCounts,
    /// Rooms alive.
    pub rooms: usize,
    /// Client sockets open now.
    pub open_connections: usize,
    /// Connections accepted so far.
    pub connections: u64,
    /// Messages relayed so far (one per recipient).
    pub relayed: u64,
    /// Bytes of those messages so far.
    pub relayed_bytes: u64,
    /// `error` replies so far.
    pub relay_errors: u64,
    /// Sockets dropped as slow consumers so far.
    pub slow_consumers: u64,
}

/// Gauges and mirrored counters set at each scrape.
#[derive(Debug)]
pub(super) struct Levels {
    orbs_by_state: Family<Labels, Gauge>,
    active: Gauge,
    max: Gauge,
    queued: Gauge,
    heartbeat_age: Family<Labels, FloatGauge>,
    heartbeat_age_max: FloatGauge,
    cpu: Family<Labels, FloatGauge>,
    rss: Family<Labels, Gauge>,
    gpu_memory: Family<Labels, Gauge>,
    gpu: Family<Labels, Gauge>,
    gpu_slots: Gauge,
    gpu_slots_used: Gauge,
    warm_size: Gauge,
    warm_ready: Gauge,
    warm_parked: Gauge,
    warm_disabled: Gauge,
    warm_assignments: Counter,
    warm_failures: Counter,
    rooms: Gauge,
    open_connections: Gauge,
    connections: Counter,
    relayed: Counter,
    relay_errors: Counter,
    slow_consumers: Counter,
}

impl Levels {
    pub(super) fn register(r: &mut Registry) -> Self {
        let levels = Self {
            orbs_by_state: Family::default(),
            active: Gauge::default(),
            max: Gauge::default(),
            queued: Gauge::default(),
            heartbeat_age: Family::default(),
            heartbeat_age_max: FloatGauge::default(),
            cpu: Family::default(),
            rss: Family::default(),
            gpu_memory: Family::default(),
            gpu: Family::default(),
            gpu_slots: Gauge::default(),
            gpu_slots_used: Gauge::default(),
            warm_size: Gauge::default(),
            warm_ready: Gauge::default(),
            warm_parked: Gauge::default(),
            warm_disabled: Gauge::default(),
            warm_assignments: Counter::default(),
            warm_failures: Counter::default(),
            rooms: Gauge::default(),
            open_connections: Gauge::default(),
            connections: Counter::default(),
            relayed: Counter::default(),
            relay_errors: Counter::default(),
            slow_consumers: Counter::default(),
        };
        r.register("orbs", "Orbs by state", levels.orbs_by_state.clone());
        r.register("orb_slots_used", "Orb slots taken", levels.active.clone());
        r.register("orb_slots_max", "MAX_CONCURRENT_ORBS", levels.max.clone());
        r.register(
            "orb_queue_length",
            "Rooms waiting for an orb slot",
            levels.queued.clone(),
        );
        r.register(
            "orb_heartbeat_age_seconds",
            "Age of each orb's last heartbeat",
            levels.heartbeat_age.clone(),
        );
        r.register(
            "orb_heartbeat_age_max_seconds",
            "Oldest last heartbeat among orbs",
            levels.heartbeat_age_max.clone(),
        );
        r.register(
            "orb_cpu_percent",
            "CPU of each orb's process tree, % of one core",
            levels.cpu.clone(),
        );
        r.register(
            "orb_rss_bytes",
            "Resident memory of each orb's process tree",
            levels.rss.clone(),
        );
        r.register(
            "orb_gpu_memory_bytes",
            "GPU memory of each orb's process tree (NVML; absent without the NVIDIA driver)",
            levels.gpu_memory.clone(),
        );
        r.register(
            "orb_gpu",
            "1 per orb on a GPU slot, labelled with its device (ORB_GPUS)",
            levels.gpu.clone(),
        );
        r.register(
            "orb_gpu_slots",
            "GPU slots in all (ORB_GPUS x ORB_GPU_SLOTS_PER_DEVICE; 0 without GPUs)",
            levels.gpu_slots.clone(),
        );
        r.register("orb_gpu_slots_used", "GPU slots held", levels.gpu_slots_used.clone());
        r.register("warm_pool_size", "ORB_WARM_POOL (0: off)", levels.warm_size.clone());
        r.register(
            "warm_pool_ready",
            "Warm orbs ready to be given a room",
            levels.warm_ready.clone(),
        );
        r.register(
            "warm_pool_parked",
            "1 while the warm pool is parked after too many failures",
            levels.warm_parked.clone(),
        );
        r.register(
            "warm_pool_disabled",
            "1 when the warm pool is off for good (the orb program cannot be warm)",
            levels.warm_disabled.clone(),
        );
        r.register(
            "warm_pool_assignments",
            "Rooms that got a warm orb",
            levels.warm_assignments.clone(),
        );
        r.register(
            "warm_pool_failures",
            "Warm orbs that failed or were discarded",
            levels.warm_failures.clone(),
        );
        r.register("rooms", "Rooms alive", levels.rooms.clone());
        r.register(
            "open_connections",
            "Client sockets open",
            levels.open_connections.clone(),
        );
        r.register("connections", "Client connections accepted", levels.connections.clone());
        r.register(
            "relayed_messages",
            "Messages relayed (one per recipient)",
            levels.relayed.clone(),
        );
        r.register("relay_error_replies", "error replies sent", levels.relay_errors.clone());
        r.register(
            "slow_consumers",
            "Sockets dropped as slow consumers",
            levels.slow_consumers.clone(),
        );
        levels
    }

    fn refresh(&self, s: &Snapshot) {
        self.orbs_by_state.clear();
        for (state, name) in STATES {
            let n = s.orbs.iter().filter(|o| o.state == state).count();
            self.orbs_by_state
                .get_or_create(&vec![("state".to_owned(), name.to_owned())])
                .set(n as i64);
        }
        self.active.set(s.counts.active as i64);
        self.max.set(s.counts.max as i64);
        self.queued.set(s.counts.queued as i64);
        self.gpu_slots.set(s.counts.gpu_slots.unwrap_or(0) as i64);
        self.gpu_slots_used.set(s.counts.gpu_slots_used as i64);
        let warm = s.counts.warm;
        self.warm_size.set(warm.size as i64);
        self.warm_ready.set(warm.ready as i64);
        self.warm_parked.set(i64::from(warm.parked));
        self.warm_disabled.set(i64::from(warm.disabled));
        mirror(&self.warm_assignments, warm.assignments);
        mirror(&self.warm_failures, warm.failures);
        self.gpu.clear();
        self.heartbeat_age.clear();
        self.cpu.clear();
        self.rss.clear();
        self.gpu_memory.clear();
        let mut oldest: f64 = 0.0;
        for orb in &s.orbs {
            let room = vec![("room".to_owned(), orb.room.clone())];
            if let Some(gpu) = &orb.gpu {
                let labels = vec![("room".to_owned(), orb.room.clone()), ("gpu".to_owned(), gpu.clone())];
                self.gpu.get_or_create(&labels).set(1);
            }
            if let Some(age) = orb.last_heartbeat_ms {
                let age = age as f64 / 1000.0;
                oldest = oldest.max(age);
                self.heartbeat_age.get_or_create(&room).set(age);
            }
            if let Some(cpu) = orb.cpu_percent {
                self.cpu.get_or_create(&room).set(cpu);
            }
            if let Some(rss) = orb.rss_bytes {
                self.rss
                    .get_or_create(&room)
                    .set(i64::try_from(rss).unwrap_or(i64::MAX));
            }
            if let Some(used) = orb.gpu_memory_bytes {
                self.gpu_memory
                    .get_or_create(&room)
                    .set(i64::try_from(used).unwrap_or(i64::MAX));
            }
        }
        self.heartbeat_age_max.set(oldest);
        self.rooms.set(s.rooms as i64);
        self.open_connections.set(s.open_connections as i64);
        mirror(&self.connections, s.connections);
        mirror(&self.relayed, s.relayed);
        mirror(&self.relay_errors, s.relay_errors);
        mirror(&self.slow_consumers, s.slow_consumers);
    }
}

/// Raises `counter` to `total` (a monotonic count kept elsewhere).
fn mirror(counter: &Counter, total: u64) {
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}

impl Metrics {
    /// Refreshes the levels from `snapshot` and renders every metric.
    pub fn render(&self, snapshot: &Snapshot) -> String {
        let _one_at_a_time = self
            .scrape_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.levels.refresh(snapshot);
        mirror(&self.relayed_bytes, snapshot.relayed_bytes);
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orbs::OrbRecord;

    fn orb(room: &str, state: OrbState) -> OrbRecord {
        OrbRecord {
            room: room.into(),
            session: "s".into(),
            pid: Some(42),
            state,
            started_at_ms: None,
            uptime_ms: 0,
            restarts: 0,
            last_exit: None,
            last_heartbeat_ms: Some(1500),
            ipc_rtt_ms: None,
            spawn_to_ready_ms: None,
            cpu_percent: Some(12.5),
            rss_bytes: Some(1_048_576),
            gpu_memory_bytes: Some(2_097_152),
            participants: 0,
            queue_position: None,
            media: None,
            voice: None,
            stop_reason: None,
            gpu: Some("1".into()),
            placement: None,
        }
    }

    #[test]
    fn renders_levels_and_counters_as_text() {
        let metrics = Metrics::new();
        metrics.spawns.inc();
        metrics.kill("manual_termination");
        metrics.exit("crash");
        let snapshot = Snapshot {
            orbs: vec![orb("r1", OrbState::Ready), orb("r2", OrbState::Ready)],
            rooms: 3,
            relayed: 7,
            ..Snapshot::default()
        };
        let text = metrics.render(&snapshot);
        for line in [
            "cpu_server_orb_spawns_total 1",
            "cpu_server_orb_kills_total{reason=\"manual_termination\"} 1",
            "cpu_server_orb_exits_total{cause=\"crash\"} 1",
            "cpu_server_orbs{state=\"ready\"} 2",
            "cpu_server_orbs{state=\"parked\"} 0",
            "cpu_server_orb_rss_bytes{room=\"r1\"} 1048576",
            "cpu_server_orb_gpu_memory_bytes{room=\"r1\"} 2097152",
            "cpu_server_orb_heartbeat_age_max_seconds 1.5",
            "cpu_server_rooms 3",
            "cpu_server_relayed_messages_total 7",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(text.trim_end().ends_with("# EOF"));
        // A room that is gone loses its per-orb series; mirrored counters never go down.
        let text = metrics.render(&Snapshot {
            relayed: 5,
            ..Snapshot::default()
        });
        assert!(!text.contains("room=\"r1\""), "{text}");
        assert!(text.lines().any(|l| l == "cpu_server_relayed_messages_total 7"));
    }
}
