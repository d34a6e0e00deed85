//! Slots, the FIFO queue, launching, failures and forgetting a room's orb.
//!
//! A slot is taken when a launch is asked for and freed only when the
//! launcher failed or the process is gone, so `MAX_CONCURRENT_ORBS` is never
//! exceeded.

use tokio::time::Instant;
use tracing::{info, warn};

use super::exit_rule::spawn_failed;
use super::phase::OrbLife;
use super::restart_policy::{RestartDecision, RestartPolicy};
use super::spawn_rule::Role;
use super::*;

impl Lifecycle {
    pub(super) fn create_entry(&mut self, room: &str, session: Option<String>, now: Instant) {
        let life = OrbLife::new(
            session.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            RestartPolicy::new(self.rules.max_restarts, self.rules.restart_window),
        );
        self.orbs.insert(room.to_owned(), life);
        if let Some(idle) = self.rules.idle_timeout
            && self.humans(room) == 0
        {
            // Started with nobody in the room (admin API): the idle timeout applies.
            self.arm(room, TimerKind::Idle, now + idle);
        }
    }

    /// Gives the room a ready warm orb, or starts one if a slot is free, else queues it.
    pub(super) fn try_start(&mut self, room: &str, now: Instant) {
        if let Some(key) = self.ready_warm() {
            self.assign_warm(&key, room, now);
        } else if self.slots_used < self.rules.max_concurrent {
            self.launch(room, false);
        } else if !self.queue.iter().any(|r| r == room) {
            if let Some(orb) = self.orbs.get_mut(room) {
                orb.phase = OrbPhase::Queued { told: None };
            }
            self.queue.push_back(room.to_owned());
            self.note(
                room,
                Note::Queued {
                    position: self.queue.len(),
                },
            );
            self.tell_queue_positions();
        }
    }

    /// Serves queued rooms, first with ready warm orbs, then with free slots.
    pub(super) fn fill_free_slots(&mut self, now: Instant) {
        while !self.draining {
            let warm = self.ready_warm();
            if warm.is_none() && self.slots_used >= self.rules.max_concurrent {
                break;
            }
            let Some(room) = self.queue.pop_front() else { break };
            if !self
                .orbs
                .get(&room)
                .is_some_and(|o| matches!(o.phase, OrbPhase::Queued { .. }))
            {
                continue;
            }
            match warm {
                Some(key) => self.assign_warm(&key, &room, now),
                None => self.launch(&room, false),
            }
        }
        self.tell_queue_positions();
    }

    /// Tells each queued room its position when it changed.
    pub(super) fn tell_queue_positions(&mut self) {
        let changed: Vec<(String, usize)> = self
            .queue
            .iter()
            .enumerate()
            .filter_map(|(index, room)| {
                let told = match self.orbs.get(room).map(|o| &o.phase) {
                    Some(OrbPhase::Queued { told }) => *told,
                    _ => return None,
                };
                (told != Some(index + 1)).then(|| (room.clone(), index + 1))
            })
            .collect();
        for (room, position) in changed {
            self.notify(&room, Notice::Queued(position));
        }
    }

    /// The room heard its queue position (a busy registry hears it at the next change).
    pub fn note_told(&mut self, room: &str, position: usize) {
        if let Some(OrbPhase::Queued { told }) = self.orbs.get_mut(room).map(|o| &mut o.phase) {
            *told = Some(position);
        }
    }

    /// Takes a slot and asks for process `generation` of the room (or of pool entry `room`: `warm`).
    pub(super) fn launch(&mut self, room: &str, warm: bool) {
        let generation = self.next_generation;
        self.next_generation += 1;
        let humans = self.people.get(room);
        let coach = humans.and_then(|h| h.first_with(&Role::Coach));
        let client = humans.and_then(|h| h.first_with(&Role::Client));
        let Some(orb) = self.orbs.get_mut(room) else { return };
        orb.phase = OrbPhase::Starting { generation, live: None };
        // Capacity counts the GPU slots too, so one is free whenever a slot is.
        let gpu = self.gpu_slots.take(generation);
        orb.gpu = gpu.clone();
        let launch = OrbLaunch {
            room: room.to_owned(),
            session: orb.session.clone(),
            coach,
            client,
            gpu,
            warm,
        };
        self.slots_used += 1;
        self.note(room, Note::Launching { generation });
        self.push(Action::Launch { generation, launch });
    }

    /// A start that produced no process: counts as a failed start.
    pub(super) fn start_failed(&mut self, room: &str, error: &str, now: Instant) {
        warn!(%room, %error, "orb failed to start");
        self.push(Action::Count(Tally::Exit(ExitCause::SpawnFailed)));
        if warm_pool::is_warm_key(room) {
            return self.warm_failed(room, error, Duration::ZERO, now);
        }
        if self.orbs.contains_key(room) {
            self.note(
                room,
                Note::SpawnFailed {
                    error: error.to_owned(),
                },
            );
        }
        let Some(orb) = self.orbs.get_mut(room) else { return };
        let exit = spawn_failed(error);
        orb.last_exit = Some(exit.clone());
        if let OrbPhase::Stopping { waiters, .. } = &mut orb.phase {
            // Stopped while it was starting: nothing to restart.
            let waiters = std::mem::take(waiters);
            for waiter in waiters {
                self.push(Action::Reply {
                    waiter,
                    exit: Some(exit.clone()),
                });
            }
            self.remove_entry(room);
        } else {
            self.after_failure(room, Duration::ZERO, now);
        }
    }

    /// After a failed start or an unexpected exit: restart after a backoff, or
    /// park the orb (and tell the room) when the crash-loop limit is reached.
    pub(super) fn after_failure(&mut self, room: &str, ran_for: Duration, now: Instant) {
        let jitter = self.jitter.f64();
        let Some(orb) = self.orbs.get_mut(room) else { return };
        let reason = orb.last_exit.as_ref().map_or("crash", |e| e.reason.as_str()).to_owned();
        match orb.policy.on_failure(now, ran_for, jitter) {
            RestartDecision::After(delay) => {
                info!(%room, %reason, delay_ms = delay.as_millis() as u64, "orb failed; restarting");
                orb.phase = OrbPhase::Restarting { due: now + delay };
                self.arm(room, TimerKind::RestartDue, now + delay);
                let delay_ms = delay.as_millis() as u64;
                self.note(
                    room,
                    Note::RestartScheduled {
                        delay_ms,
                        counted: true,
                    },
                );
            }
            RestartDecision::Park { until } => {
                warn!(%room, %reason, "orb crash loop; parked");
                orb.phase = OrbPhase::Parked { until };
                self.arm(room, TimerKind::ParkExpired, until);
                let for_ms = until.saturating_duration_since(now).as_millis() as u64;
                self.note(room, Note::Parked { for_ms });
                self.notify(room, Notice::Parked);
            }
        }
    }

    /// Forgets the room's orb: its timers, its queue place, its waiters.
    pub(super) fn remove_entry(&mut self, room: &str) {
        for kind in TimerKind::ALL {
            self.cancel(room, kind);
        }
        self.queue.retain(|r| r != room);
        if let Some(orb) = self.orbs.remove(room)
            && let OrbPhase::Stopping { waiters, .. } = orb.phase
        {
            for waiter in waiters {
                self.push(Action::Reply {
                    waiter,
                    exit: orb.last_exit.clone(),
                });
            }
        }
        self.tell_queue_positions();
    }
}
