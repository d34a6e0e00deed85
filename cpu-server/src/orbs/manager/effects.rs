//! Carrying out the lifecycle's actions: launches on the spawner thread,
//! orders to started orbs, room notices, timers, replies and metrics.

use shared::ipc::{ManagerToOrb, OrbAssign};
use shared::room::{AiStatus, RoomMessage};
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::Instant;

use super::*;
use crate::metrics::Metrics;
use crate::orbs::lifecycle::stall_rule::stall_message;
use crate::orbs::lifecycle::{Notice, Tally};
use crate::orbs::orb_command::OrbLaunch;
use crate::orbs::process_control::{EventSink, LaunchEnv};
use crate::rooms::seat::Seat;

impl Manager {
    pub(super) fn apply(&mut self, action: Action) {
        match action {
            Action::Launch { generation, launch } => self.launch(generation, launch),
            Action::Assign { generation, launch } => self.assign(generation, launch),
            Action::Order { generation, order } => self.deliver(generation, order),
            Action::Notify { room, notice } => {
                let queued = match notice {
                    Notice::Queued(position) => Some(position),
                    _ => None,
                };
                let (status, fields) = notice_fields(notice);
                if self.notifier.notify_room(&room, ai_status(status, fields))
                    && let Some(position) = queued
                {
                    self.life.note_told(&room, position);
                }
            }
            Action::Arm { timer, at } => self.timers.arm(timer, at),
            Action::Cancel(timer) => self.timers.cancel(&timer),
            Action::Reply { waiter, exit } => {
                if let Some(reply) = self.waiters.remove(&waiter) {
                    let _ = reply.send(exit);
                }
            }
            Action::Count(tally) => count(&self.metrics, tally),
            Action::Note { room, note } => self.timelines.push(&room, wall_ms(), note),
            Action::KeepSummary { room, session, summary } => {
                self.summaries.keep(&room, &session, wall_ms(), &summary);
            }
        }
    }

    /// Asks the spawner thread to start process `generation`; the answer
    /// comes back as a [`Report::Spawned`], then the driver runs.
    fn launch(&mut self, generation: u64, launch: OrbLaunch) {
        let room = launch.room.clone();
        let env = LaunchEnv {
            auth_token: self.credentials.issue(&room, generation),
            heartbeat_interval_ms: self.heartbeat_interval_ms,
        };
        let (launcher, reports) = (Arc::clone(&self.launcher), self.reports_tx.clone());
        let job = Box::new(move || {
            let events = EventSink::new(&launch.room, generation, reports.clone());
            let (result, driver) = match launcher.start(&launch, &env, events) {
                Ok(started) => (Ok(started.orb), Some(started.driver)),
                Err(error) => (Err(error), None),
            };
            let report = Report::Spawned {
                room: launch.room,
                generation,
                result,
            };
            // Reports are consumed by the manager loop, which never waits on this thread.
            let _ = reports.blocking_send(report);
            // After the answer, so that every event of the orb follows it. Even
            // when the manager is gone: the driver then kills and reaps the orb.
            if let Some(driver) = driver {
                tokio::spawn(driver);
            }
        });
        self.table.launching();
        if self.spawner.submit(job).is_err() {
            self.table.answered(None);
            self.credentials.revoke(&room, generation);
            let failed = Event::Spawned {
                room,
                generation,
                result: Err("the spawner thread is gone".to_owned()),
            };
            let actions = self.life.on(failed, Instant::now());
            for action in actions {
                self.apply(action);
            }
        }
    }

    /// Re-keys process `generation` (a warm orb) to `launch.room`; for a room, mints
    /// the room's token for it and sends `orb_assign` (the token only on its channel).
    fn assign(&mut self, generation: u64, launch: OrbLaunch) {
        let Some(handle) = self.handles.get_mut(&generation) else {
            return; // already gone: its exit is on its way
        };
        let from = std::mem::replace(&mut handle.room, launch.room.clone());
        let pid = handle.pid;
        self.credentials.revoke(&from, generation);
        if let Some(pid) = pid {
            self.table.retag(pid, &launch.room);
        }
        if launch.warm {
            return;
        }
        // Its open room socket joins the room now: the AI is in before the orb wakes up.
        let seat = Seat {
            room: launch.room.clone(),
            session: launch.session.clone(),
        };
        let seated = self
            .seats
            .remove(&generation)
            .is_some_and(|sender| sender.send(seat).is_ok());
        tracing::info!(room = %launch.room, %from, ?pid, seated, "warm orb assigned");
        let message = ManagerToOrb::OrbAssign(OrbAssign {
            room_id: launch.room.clone(),
            session_id: launch.session,
            coach_id: launch.coach,
            client_id: launch.client,
            token: self.credentials.issue(&launch.room, generation),
            seated,
            extra: Default::default(),
        });
        self.deliver(generation, Order::Tell(message));
    }

    /// Delivers `order` to process `generation`. A message for the orb is
    /// dropped when its queue is full; a stop or kill never is.
    fn deliver(&mut self, generation: u64, order: Order) {
        let Some(handle) = self.handles.get(&generation) else {
            return;
        };
        match handle.orders.try_send(order) {
            Ok(()) | Err(TrySendError::Closed(_)) => {}
            Err(TrySendError::Full(Order::Tell(_))) => {
                tracing::debug!(room = %handle.room, "orb's order queue full; message dropped");
            }
            Err(TrySendError::Full(order)) => {
                let orders = handle.orders.clone();
                tokio::spawn(async move {
                    let _ = orders.send(order).await;
                });
            }
        }
    }
}

fn count(metrics: &Metrics, tally: Tally) {
    match tally {
        Tally::Spawn => {
            metrics.spawns.inc();
        }
        Tally::Restart => {
            metrics.restarts.inc();
        }
        Tally::Stop(reason) => metrics.kill(reason.label()),
        Tally::Exit(cause) => metrics.exit(cause.label()),
        Tally::Heartbeat(delay) => {
            let _ = metrics.heartbeats.inc();
            if let Some(delay) = delay {
                metrics.ipc_delay.observe(delay.max(0.0) / 1000.0);
            }
        }
        Tally::SpawnToReady(after) => metrics.spawn_to_ready.observe(after.as_secs_f64()),
    }
}

/// The `ai_status` status and fields of a notice.
pub(super) fn notice_fields(notice: Notice) -> (&'static str, serde_json::Value) {
    match notice {
        Notice::Queued(position) => ("queued", serde_json::json!({ "position": position })),
        Notice::ClusterQueued(reason) => ("queued", serde_json::json!({ "reason": reason })),
        Notice::Ended(cause) => (
            "ended",
            serde_json::json!({ "code": cause.label(), "message": cause.ended_message() }),
        ),
        Notice::Parked => (
            "error",
            serde_json::json!({
                "message": "The AI assistant keeps failing and is paused; an operator can reset it.",
                "code": "orb_parked",
            }),
        ),
        Notice::Stalled(reason) => (
            "error",
            serde_json::json!({ "code": reason.label(), "message": stall_message(reason) }),
        ),
    }
}

fn ai_status(status: &str, extra: serde_json::Value) -> RoomMessage {
    let extra = match extra {
        serde_json::Value::Object(map) => map,
        _ => Default::default(),
    };
    RoomMessage::AiStatus(AiStatus {
        status: status.to_owned(),
        session_id: None,
        from_id: None,
        extra,
    })
}
