//! What happens to processes: the launcher's answer, ready, heartbeats,
//! errors, resources, the start of a stop, and the exit (with the restart rule).

use tokio::time::Instant;
use tracing::{info, warn};

use super::escalation::Escalation;
use super::exit_rule::{AfterExit, after_exit, classify};
use super::note;
use super::restart_policy::FIRST_BACKOFF;
use super::*;

/// An IPC heartbeat this late (its timestamp → arrival) goes on the timeline.
const LATE_HEARTBEAT_MS: f64 = 1000.0;

impl Lifecycle {
    pub(super) fn spawned(&mut self, room: &str, generation: u64, result: Result<StartedInfo, String>, now: Instant) {
        let waiting = self
            .orbs
            .get(room)
            .is_some_and(|o| o.phase.generation() == Some(generation) && o.phase.live().is_none());
        let info = match result {
            Err(error) => {
                // No process: the slot taken for it is free again.
                self.slots_used = self.slots_used.saturating_sub(1);
                self.gpu_slots.free(generation);
                if waiting {
                    self.start_failed(room, &error, now);
                }
                self.fill_free_slots(now);
                return;
            }
            Ok(info) => info,
        };
        if !waiting {
            // The room's orb was stopped or replaced while this one started:
            // kill it; its exit frees the slot.
            self.order(generation, Order::Kill);
            return;
        }
        let live = Live {
            pid: info.pid,
            supervision: info.supervision,
            started: now,
            last_heard: now,
            announced: None,
        };
        self.push(Action::Count(Tally::Spawn));
        self.note(
            room,
            Note::Started {
                generation,
                pid: info.pid,
            },
        );
        let Some(orb) = self.orbs.get_mut(room) else { return };
        let restart = orb.last_exit.is_some();
        if restart {
            orb.policy.note_restart();
        }
        orb.sample = None;
        orb.gpu_bytes = None;
        orb.media = None;
        orb.voice = None;
        info!(%room, pid = ?info.pid, generation, session = %orb.session, "orb started");
        let stopping = match &mut orb.phase {
            OrbPhase::Starting { live: slot, .. } => {
                *slot = Some(live);
                None
            }
            OrbPhase::Stopping {
                live: slot,
                reason,
                escalation,
                ..
            } => {
                // A stop was asked for while it started: carry it out now.
                *slot = Some(live);
                Some(escalation.begin(*reason, now, self.rules.graces))
            }
            _ => None,
        };
        if restart {
            self.push(Action::Count(Tally::Restart));
        }
        match stopping {
            Some(step) => self.take_step(room, generation, step),
            None => {
                self.arm(room, TimerKind::ReadyDue, now + self.rules.ready_timeout);
                if let Some(life) = self.rules.max_lifetime {
                    self.arm(room, TimerKind::LifetimeEnd, now + life);
                }
            }
        }
    }

    pub(super) fn process_event(&mut self, room: &str, generation: u64, event: ProcessEvent, now: Instant) {
        if let ProcessEvent::Exited { code, signal } = event {
            return self.exited(room, generation, code, signal, now);
        }
        let current = self
            .orbs
            .get(room)
            .is_some_and(|o| o.phase.generation() == Some(generation) && o.phase.live().is_some());
        if !current {
            return; // an older process's news
        }
        if !matches!(
            event,
            ProcessEvent::Resources { .. } | ProcessEvent::CannotAsk | ProcessEvent::Placement(_)
        ) {
            self.heard_from(room, now);
        }
        match event {
            ProcessEvent::Ready if is_warm_key(room) => self.warm_said_ready(now),
            ProcessEvent::Ready => self.became_ready(room, generation, now),
            ProcessEvent::Warm if is_warm_key(room) => self.warm_ready(room, generation, now),
            ProcessEvent::Warm => warn!(%room, "orb_warm from a room's orb; ignored"),
            ProcessEvent::Assigned { room: said } => self.warm_took(room, generation, &said, now),
            ProcessEvent::Heartbeat { metrics, delay_ms } => {
                self.push(Action::Count(Tally::Heartbeat(delay_ms)));
                if let Some(delay) = delay_ms.filter(|d| *d >= LATE_HEARTBEAT_MS) {
                    self.note(room, Note::HeartbeatLate { delay_ms: delay as u64 });
                }
                let mut media_changed = None;
                if let Some(orb) = self.orbs.get_mut(room) {
                    orb.ipc_delay_ms = delay_ms;
                    let media = metrics.extra.get("media").cloned();
                    let peers = note::media_peers(media.as_ref());
                    if peers.is_some() && peers != note::media_peers(orb.media.as_ref()) {
                        media_changed = peers;
                    }
                    orb.media = media;
                    orb.voice = metrics.extra.get("voice").cloned();
                    if orb.sample.is_none() && metrics.memory > 0.0 {
                        orb.sample = Some((metrics.cpu, (metrics.memory * 1024.0 * 1024.0) as u64));
                    }
                }
                if let Some(peers) = media_changed {
                    self.note(room, Note::MediaChanged { peers });
                }
                self.check_stall(room, &metrics.extra, now);
            }
            ProcessEvent::Error { error, critical } => {
                warn!(%room, %error, critical, "orb error");
                if critical {
                    self.begin_stop(room, StopRequest::internal(StopReason::OrbError), now);
                }
            }
            ProcessEvent::Summary(summary) => {
                // Kept by the shell; its content (a transcript) is never logged.
                let session = self.orbs.get(room).map(|o| o.session.clone()).unwrap_or_default();
                self.push(Action::KeepSummary {
                    room: room.to_owned(),
                    session,
                    summary,
                });
            }
            ProcessEvent::Announced(reason) => {
                if let Some(live) = self.orbs.get_mut(room).and_then(|o| o.phase.live_mut()) {
                    live.announced = Some(reason);
                }
            }
            ProcessEvent::CannotAsk => {
                let graces = self.rules.graces;
                let step = match self.orbs.get_mut(room).map(|o| &mut o.phase) {
                    Some(OrbPhase::Stopping { escalation, .. }) => escalation.cannot_ask(now, graces),
                    _ => None,
                };
                if let Some(step) = step {
                    self.take_step(room, generation, step);
                }
            }
            ProcessEvent::Resources { cpu_percent, rss_bytes } => {
                self.resources(room, generation, (cpu_percent, rss_bytes, None), now)
            }
            ProcessEvent::Placement(placement) => self.placed(room, placement, now),
            ProcessEvent::Exited { .. } => {}
        }
    }

    pub(super) fn became_ready(&mut self, room: &str, generation: u64, now: Instant) {
        let Some(orb) = self.orbs.get_mut(room) else { return };
        let OrbPhase::Starting {
            generation: g,
            live: Some(live),
        } = &orb.phase
        else {
            return;
        };
        let (g, live) = (*g, live.clone());
        if g != generation {
            return;
        }
        let ready_after = now.saturating_duration_since(live.started);
        orb.spawn_to_ready_ms = Some(ready_after.as_secs_f64() * 1000.0);
        orb.phase = OrbPhase::Ready { generation, live };
        info!(%room, ready_ms = ready_after.as_secs_f64() * 1000.0, "orb ready");
        self.push(Action::Count(Tally::SpawnToReady(ready_after)));
        let after_ms = ready_after.as_millis() as u64;
        self.note(room, Note::Ready { generation, after_ms });
        self.cancel(room, TimerKind::ReadyDue);
        self.arm(room, TimerKind::Watchdog, now + self.rules.unresponsive_timeout);
        self.tell_orb_who_is_here(room);
    }

    /// The media-flow rule on a heartbeat: a ready orb whose call is stalled
    /// is stopped for it, as a failure (restart), and the room is told. Only a
    /// ready orb is checked, so the heartbeats of the stopping one add nothing.
    fn check_stall(&mut self, room: &str, metrics: &serde_json::Map<String, serde_json::Value>, now: Instant) {
        let Some(timeout) = self.rules.media_stall_timeout else {
            return;
        };
        if !matches!(self.orbs.get(room).map(|o| &o.phase), Some(OrbPhase::Ready { .. })) {
            return;
        }
        let Some(stall) = stall_rule::stall(metrics, timeout) else {
            return;
        };
        let reason = stall.reason();
        warn!(%room, %reason, ?stall, "the orb's call is stalled; replacing the orb");
        self.note(room, Note::Stalled { stall });
        self.notify(room, Notice::Stalled(reason));
        self.begin_stop(room, StopRequest::internal(reason), now);
    }

    /// CPU, memory and GPU memory (`None`: not measured) of process
    /// `generation`'s tree; over `ORB_MEMORY_LIMIT_MB` or
    /// `ORB_GPU_MEMORY_LIMIT_MB` it is killed.
    pub fn resources(&mut self, room: &str, generation: u64, sample: (f64, u64, Option<u64>), now: Instant) {
        let (cpu_percent, rss_bytes, gpu_bytes) = sample;
        let Some(orb) = self.orbs.get_mut(room) else { return };
        if orb.phase.generation() != Some(generation) || orb.phase.live().is_none() {
            return;
        }
        orb.sample = Some((cpu_percent, rss_bytes));
        orb.gpu_bytes = gpu_bytes;
        let running = matches!(orb.phase, OrbPhase::Starting { .. } | OrbPhase::Ready { .. });
        if !running {
            return;
        }
        let over = match (self.rules.memory_limit_bytes, self.rules.gpu_memory_limit_bytes) {
            (Some(limit), _) if rss_bytes > limit => {
                warn!(%room, rss = rss_bytes, limit, "orb over ORB_MEMORY_LIMIT_MB; killing it");
                Note::OverMemoryLimit {
                    rss_bytes,
                    limit_bytes: limit,
                }
            }
            (_, Some(limit)) if gpu_bytes.is_some_and(|g| g > limit) => {
                let gpu_bytes = gpu_bytes.unwrap_or_default();
                warn!(%room, gpu = gpu_bytes, limit, "orb over ORB_GPU_MEMORY_LIMIT_MB; killing it");
                Note::OverGpuMemoryLimit {
                    gpu_bytes,
                    limit_bytes: limit,
                }
            }
            _ => return,
        };
        self.note(room, over);
        self.begin_stop(room, StopRequest::internal(StopReason::MemoryLimit), now);
    }

    /// Starts stopping the room's orb for `reason` (or joins a stop under way).
    /// Returns false when the room has no process to stop.
    pub(super) fn begin_stop(&mut self, room: &str, request: StopRequest, now: Instant) -> bool {
        let StopRequest { reason, waiter, origin } = request;
        let graces = self.rules.graces;
        let Some(orb) = self.orbs.get_mut(room) else {
            return false;
        };
        match &mut orb.phase {
            OrbPhase::Starting { .. } | OrbPhase::Ready { .. } => {}
            OrbPhase::Stopping {
                reason: current,
                waiters,
                ..
            } => {
                waiters.extend(waiter);
                // A stop that ends the orb's life overrides one that would restart it.
                if !reason.ends_life() || current.ends_life() {
                    return true;
                }
                *current = reason;
                self.push(Action::Count(Tally::Stop(reason)));
                let asked = Note::StopAsked {
                    reason,
                    origin: origin.map(Into::into),
                    silent_ms: None,
                };
                self.note(room, asked);
                return true;
            }
            _ => return false,
        }
        let Some((generation, live)) =
            std::mem::replace(&mut orb.phase, OrbPhase::Queued { told: None }).into_process()
        else {
            return false;
        };
        let silent_ms = (reason == StopReason::Unresponsive)
            .then(|| {
                live.as_ref()
                    .map(|l| now.saturating_duration_since(l.last_heard).as_millis() as u64)
            })
            .flatten();
        let mut escalation = Escalation::Pending;
        let step = live.is_some().then(|| escalation.begin(reason, now, graces));
        orb.phase = OrbPhase::Stopping {
            generation,
            live,
            reason,
            waiters: waiter.into_iter().collect(),
            escalation,
        };
        info!(%room, %reason, "stopping orb");
        self.push(Action::Count(Tally::Stop(reason)));
        let asked = Note::StopAsked {
            reason,
            origin: origin.map(Into::into),
            silent_ms,
        };
        self.note(room, asked);
        // A warm orb stopped before it took the room: its stop is the room's, not a fault of it.
        if let Some(orb) = self.orbs.get_mut(room) {
            orb.assigning = None;
        }
        for kind in [
            TimerKind::ReadyDue,
            TimerKind::Watchdog,
            TimerKind::LifetimeEnd,
            TimerKind::AssignDue,
        ] {
            self.cancel(room, kind);
        }
        if let Some(step) = step {
            self.take_step(room, generation, step);
        }
        true
    }

    /// Delivers a step of the stop escalation and arms the next.
    pub(super) fn take_step(&mut self, room: &str, generation: u64, step: escalation::Step) {
        let sent = match step.order {
            Order::AskToStop { .. } => "shutdown_graceful",
            Order::Terminate => "SIGTERM",
            Order::Kill => "SIGKILL",
            Order::Tell(_) => "message",
        };
        self.note(room, Note::Signalled { sent: sent.into() });
        self.order(generation, step.order);
        match step.next {
            Some(at) => self.arm(room, TimerKind::Escalate, at),
            None => self.cancel(room, TimerKind::Escalate),
        }
    }

    /// Process `generation` is gone: its slot is free, and the restart rule decides.
    fn exited(&mut self, room: &str, generation: u64, code: Option<i32>, signal: Option<i32>, now: Instant) {
        // The slot belongs to the process: freed now that it is gone, whatever else happens.
        self.slots_used = self.slots_used.saturating_sub(1);
        self.gpu_slots.free(generation);
        let humans = self.humans(room);
        let draining = self.draining;
        let current = self
            .orbs
            .get(room)
            .is_some_and(|o| o.phase.generation() == Some(generation));
        if !current {
            // A process killed because nobody wanted it any more.
            let exit = classify(code, signal, Some(StopReason::ManualTermination), None);
            self.push(Action::Count(Tally::Exit(exit.cause)));
            self.fill_free_slots(now);
            return;
        }
        if is_warm_key(room) {
            self.warm_exited(room, generation, code, signal, now);
            self.fill_free_slots(now);
            return;
        }
        let Some(orb) = self.orbs.get_mut(room) else { return };
        orb.assigning = None;
        let phase = std::mem::replace(&mut orb.phase, OrbPhase::Queued { told: None });
        let (ending, waiters, live) = match phase {
            OrbPhase::Stopping {
                reason, waiters, live, ..
            } => (Some(reason), waiters, live),
            OrbPhase::Starting { live, .. } => (None, Vec::new(), live),
            OrbPhase::Ready { live, .. } => (None, Vec::new(), Some(live)),
            _ => (None, Vec::new(), None),
        };
        let announced = live.as_ref().and_then(|l| l.announced.clone());
        let ran_for = live.map_or(Duration::ZERO, |l| now.saturating_duration_since(l.started));
        let exit = classify(code, signal, ending, announced.as_deref());
        info!(%room, code = ?exit.code, signal = ?exit.signal, reason = %exit.reason, normal = exit.normal, "orb exited");
        orb.last_exit = Some(exit.clone());
        self.push(Action::Count(Tally::Exit(exit.cause)));
        self.note(room, Note::exited(generation, &exit, ending.is_some()));
        for kind in TimerKind::PROCESS {
            self.cancel(room, kind);
        }
        for waiter in waiters {
            self.push(Action::Reply {
                waiter,
                exit: Some(exit.clone()),
            });
        }
        match after_exit(ending, &exit, humans, draining) {
            AfterExit::Remove { tell_room, respawn } => {
                self.note(room, Note::Ended { told_room: tell_room });
                self.remove_entry(room);
                if let Some(cause) = tell_room {
                    self.notify(room, Notice::Ended(cause));
                }
                // Stopped because the room was empty, but someone came back during the stop:
                // they get a fresh orb (a join while an entry exists starts nothing).
                if respawn && self.room_calls_for_orb(room) {
                    self.create_entry(room, None, now);
                    self.try_start(room, now);
                }
            }
            AfterExit::RestartNotFailure => {
                info!(%room, humans, "orb ended itself for idleness with humans present; restarting it");
                let due = now + FIRST_BACKOFF;
                if let Some(orb) = self.orbs.get_mut(room) {
                    orb.phase = OrbPhase::Restarting { due };
                }
                self.arm(room, TimerKind::RestartDue, due);
                let delay_ms = FIRST_BACKOFF.as_millis() as u64;
                self.note(
                    room,
                    Note::RestartScheduled {
                        delay_ms,
                        counted: false,
                    },
                );
            }
            AfterExit::Failure => self.after_failure(room, ran_for, now),
        }
        self.fill_free_slots(now);
    }
}
