//! What operators see: the record of each room's orb and the counts.

use tokio::time::Instant;

use super::*;
use crate::orbs::OrbCounts;
use crate::orbs::record::OrbRecord;

impl Lifecycle {
    /// The record of the room's orb at `now`; `wall_ms` is the same instant
    /// in ms since the Unix epoch (for the process's start time).
    pub fn record(&self, room: &str, now: Instant, wall_ms: u64) -> Option<OrbRecord> {
        let orb = self.orbs.get(room)?;
        let live = orb.phase.live();
        let uptime = live.map(|l| now.saturating_duration_since(l.started).as_millis() as u64);
        Some(OrbRecord {
            room: room.to_owned(),
            session: orb.session.clone(),
            pid: live.and_then(|l| l.pid),
            state: orb.phase.state(),
            started_at_ms: uptime.map(|up| wall_ms.saturating_sub(up)),
            uptime_ms: uptime.unwrap_or(0),
            restarts: orb.policy.restarts,
            last_exit: orb.last_exit.clone(),
            last_heartbeat_ms: live.map(|l| now.saturating_duration_since(l.last_heard).as_millis() as u64),
            ipc_rtt_ms: orb.ipc_delay_ms,
            spawn_to_ready_ms: orb.spawn_to_ready_ms,
            cpu_percent: orb.sample.map(|s| s.0),
            rss_bytes: orb.sample.map(|s| s.1),
            gpu_memory_bytes: orb.gpu_bytes,
            participants: self.humans(room),
            queue_position: self.queue.iter().position(|r| r == room).map(|i| i + 1),
            media: orb.media.clone(),
            voice: orb.voice.clone(),
            gpu: orb.gpu.clone(),
            placement: orb.placement.clone(),
            stop_reason: match &orb.phase {
                OrbPhase::Stopping { reason, .. } => Some(*reason),
                _ => None,
            },
        })
    }

    /// Every record, by room.
    pub fn records(&self, now: Instant, wall_ms: u64) -> Vec<OrbRecord> {
        self.rooms()
            .iter()
            .filter_map(|room| self.record(room, now, wall_ms))
            .collect()
    }

    /// Slots taken, the limit, rooms queued.
    pub fn counts(&self) -> OrbCounts {
        OrbCounts {
            active: self.slots_used,
            max: self.rules.max_concurrent,
            queued: self.queue.len(),
            gpu_slots: self.gpu_slots.total(),
            gpu_slots_used: self.gpu_slots.used(),
            warm: self.warm_counts(),
        }
    }

    /// The room's orb's phase (for the shell and the tests).
    pub fn phase(&self, room: &str) -> Option<&OrbPhase> {
        self.orbs.get(room).map(|o| &o.phase)
    }
}
