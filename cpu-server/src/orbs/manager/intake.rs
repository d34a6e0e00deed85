//! Inputs that become lifecycle events: launcher and driver reports, room
//! events from the registry, resource samples.

use std::collections::HashMap;

use tokio::time::Instant;

use super::*;
use crate::orbs::lifecycle::StartedInfo;
use crate::orbs::process_control::ProcessEvent;
use crate::rooms::events::RoomEvent;

impl Manager {
    pub(super) fn on_report(&mut self, report: Report) {
        let event = match report {
            Report::Spawned {
                room,
                generation,
                result,
            } => {
                let result = match result {
                    Ok(orb) => {
                        self.table.answered(orb.pid.map(|pid| (pid, room.as_str())));
                        let info = StartedInfo {
                            pid: orb.pid,
                            supervision: orb.supervision,
                        };
                        let handle = Handle {
                            room: room.clone(),
                            pid: orb.pid,
                            orders: orb.orders,
                            handover: orb.handover,
                        };
                        self.handles.insert(generation, handle);
                        Ok(info)
                    }
                    Err(error) => {
                        self.table.answered(None);
                        self.credentials.revoke(&room, generation);
                        self.seats.remove(&generation);
                        Err(error)
                    }
                };
                Event::Spawned {
                    room,
                    generation,
                    result,
                }
            }
            Report::Process {
                room,
                generation,
                event,
            } => {
                // The handle knows the process's room now: a warm orb's driver
                // still names the pool entry it was started for.
                let room = self.handles.get(&generation).map_or(room, |h| h.room.clone());
                if matches!(event, ProcessEvent::Exited { .. }) {
                    self.seats.remove(&generation);
                }
                if matches!(event, ProcessEvent::Exited { .. })
                    && let Some(handle) = self.handles.remove(&generation)
                {
                    if let Some(pid) = handle.pid {
                        self.table.exited(pid);
                    }
                    self.credentials.revoke(&room, generation);
                    if handle.pid.is_none() {
                        // A remote orb may outlive what its launcher saw (a lost node):
                        // its token is revoked, and its socket, if any, closed now.
                        self.notifier.close_ai(&room);
                    }
                }
                Event::Process {
                    room,
                    generation,
                    event,
                }
            }
        };
        self.feed(event);
    }

    pub(super) fn on_room_event(&mut self, event: RoomEvent) {
        #[cfg(debug_assertions)]
        failpoint_panic_on_join(&event);
        let event = match event {
            RoomEvent::HumanJoined {
                room,
                user_id,
                user_role,
                ..
            } => Event::HumanJoined {
                room,
                user_id,
                role: user_role,
            },
            RoomEvent::HumanRestored {
                room,
                user_id,
                user_role,
            } => Event::HumanRestored {
                room,
                user_id,
                role: user_role,
            },
            RoomEvent::HumanLeft { room, user_id, .. } => Event::HumanLeft { room, user_id },
            RoomEvent::AiActivity { room } => Event::AiActivity { room },
            RoomEvent::AiShutdown { room, reason } => Event::AiAnnouncedEnd { room, reason },
            RoomEvent::AiJoined { room, user_id } => {
                tracing::info!(%room, %user_id, "orb joined its room");
                Event::AiJoined { room }
            }
            RoomEvent::AiLeft { room, user_id } => {
                tracing::info!(%room, %user_id, "orb left its room");
                Event::AiLeft { room }
            }
        };
        self.feed(event);
    }

    /// Samples of local processes, matched to their generation by pid.
    pub(super) fn on_samples(&mut self, samples: Vec<Sample>) {
        let now = Instant::now();
        // One index per batch: a sample per orb must not scan every handle.
        let by_pid: HashMap<u32, u64> = self
            .handles
            .iter()
            .filter_map(|(generation, h)| h.pid.map(|pid| (pid, *generation)))
            .collect();
        for sample in samples {
            let generation = by_pid
                .get(&sample.pid)
                .copied()
                .filter(|g| self.handles.get(g).is_some_and(|h| h.room == sample.room));
            if let Some(generation) = generation {
                let figures = (sample.cpu_percent, sample.rss_bytes, sample.gpu_bytes);
                self.life.resources(&sample.room, generation, figures, now);
            }
        }
        self.carry_out_pending();
    }
}

/// Fault injection for the tests of supervision's own failure (debug builds
/// only): `MUC_FAILPOINT=manager_panic_on_join` makes the manager panic at
/// the first human join, as an unexpected bug would.
#[cfg(debug_assertions)]
fn failpoint_panic_on_join(event: &RoomEvent) {
    if matches!(event, RoomEvent::HumanJoined { .. })
        && std::env::var("MUC_FAILPOINT").is_ok_and(|v| v == "manager_panic_on_join")
    {
        panic!("failpoint manager_panic_on_join");
    }
}
