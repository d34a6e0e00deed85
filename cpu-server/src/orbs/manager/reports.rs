//! What orb tasks report: ready, heartbeats, errors, exits; and resource samples.

use super::*;

impl Manager {
    pub(super) fn on_report(&mut self, report: Report) {
        let Report {
            room,
            generation,
            pid,
            kind,
        } = report;
        let kind = match kind {
            ReportKind::Exited { exit, ran_for } => return self.on_exit(&room, generation, pid, exit, ran_for),
            ReportKind::Spawned(spawned) => return self.on_spawned(&room, generation, spawned),
            kind => kind,
        };
        let Some(entry) = self.orbs.get_mut(&room) else { return };
        if entry.process.as_ref().map(|r| r.generation) != Some(generation) {
            return; // a report of an older process
        }
        match kind {
            ReportKind::Ready => {
                entry.last_heartbeat = Some(Instant::now());
                if entry.state == OrbState::Spawning {
                    entry.state = OrbState::Ready;
                }
                if let Some(running) = &entry.process {
                    let ready_after = running.started.elapsed();
                    entry.spawn_to_ready_ms = Some(ready_after.as_secs_f64() * 1000.0);
                    crate::metrics::global()
                        .spawn_to_ready
                        .observe(ready_after.as_secs_f64());
                    info!(%room, pid, ready_ms = ready_after.as_secs_f64() * 1000.0, "orb ready");
                    // The humans already there: the orb's own count of who is present
                    // (it never idles while one is) starts complete, whatever its socket saw.
                    for (user_id, user_role) in self.people.get(&room).map(|p| &p.humans).into_iter().flatten() {
                        let message = ManagerToOrb::ParticipantJoined(ParticipantJoined {
                            user_id: user_id.clone(),
                            user_role: user_role.clone(),
                            extra: Default::default(),
                        });
                        let _ = running.control.try_send(Control::Send(message));
                    }
                }
            }
            ReportKind::Heartbeat { metrics, delay_ms } => {
                crate::metrics::global().heartbeats.inc();
                if let Some(delay) = delay_ms {
                    crate::metrics::global().ipc_delay.observe(delay.max(0.0) / 1000.0);
                }
                entry.last_heartbeat = Some(Instant::now());
                entry.ipc_delay_ms = delay_ms;
                if entry.state == OrbState::Unresponsive {
                    entry.state = OrbState::Ready;
                }
                if entry.sample.is_none() && metrics.memory > 0.0 {
                    entry.sample = Some((metrics.cpu, (metrics.memory * 1024.0 * 1024.0) as u64));
                }
            }
            ReportKind::Error { error, critical } => {
                warn!(%room, %error, critical, "orb error");
            }
            ReportKind::Summary(summary) => {
                info!(%room, session = %entry.session, summary = %summary, "session summary");
            }
            ReportKind::Unresponsive => {
                crate::metrics::global().kill("unresponsive");
                entry.state = OrbState::Unresponsive;
            }
            ReportKind::Exited { .. } | ReportKind::Spawned(_) => {}
        }
    }

    pub(super) fn on_exit(&mut self, room: &str, generation: u64, pid: u32, exit: ExitRecord, ran_for: Duration) {
        // The slot belongs to the process: freed now that it is reaped, whatever else happens.
        self.slots_used = self.slots_used.saturating_sub(1);
        self.table.lock().remove(&pid);
        crate::metrics::global().exit(cause_label(&exit.reason));
        let humans = self.humans(room);
        let draining = self.draining;
        if let Some(entry) = self.orbs.get_mut(room)
            && entry.process.as_ref().map(|r| r.generation) == Some(generation)
        {
            entry.process = None;
            entry.last_exit = Some(exit.clone());
            for waiter in entry.waiters.drain(..) {
                let _ = waiter.send(Some(exit.clone()));
            }
            match after_exit(entry.stop_reason.as_deref(), &exit, humans, draining) {
                AfterExit::Remove { tell_room, respawn } => {
                    self.remove_entry(room);
                    if let Some(cause) = tell_room {
                        let message = ai_status("ended", json!({"code": cause, "message": ended_message(cause)}));
                        let _ = self.notifier.notify_room(room, message);
                    }
                    // Stopped because the room was empty, but someone came back during the stop:
                    // they get a fresh orb (a join while an entry exists starts nothing).
                    if respawn && self.wants_orb(room) {
                        self.create_entry(room, None);
                        self.try_start(room);
                    }
                }
                AfterExit::RestartNotFailure => {
                    info!(%room, humans, "orb ended itself for idleness with humans present; restarting it");
                    entry.state = OrbState::Restarting;
                    self.set_timer(room, TimerKind::RestartDue, FIRST_BACKOFF);
                }
                AfterExit::Failure => self.after_failure(room, ran_for),
            }
        }
        self.fill_free_slots();
        self.publish_counts();
    }

    pub(super) fn on_samples(&mut self, samples: Vec<Sample>) {
        for sample in samples {
            let Some(entry) = self.orbs.get_mut(&sample.room) else {
                continue;
            };
            let Some(running) = &entry.process else { continue };
            if running.pid != sample.pid {
                continue;
            }
            entry.sample = Some((sample.cpu_percent, sample.rss_bytes));
            if let Some(limit) = self.settings.memory_limit_bytes
                && sample.rss_bytes > limit
                && entry.state != OrbState::Stopping
            {
                warn!(room = %sample.room, rss = sample.rss_bytes, limit, "orb over ORB_MEMORY_LIMIT_MB; killing it");
                let kill = Control::Kill {
                    reason: "memory_limit".to_owned(),
                };
                // Marked only once the order is queued: a full channel is retried at the next sample.
                if running.control.try_send(kill).is_ok() {
                    crate::metrics::global().kill("memory_limit");
                    entry.state = OrbState::Stopping;
                }
            }
        }
    }

    /// After a failed start or an unexpected exit: restart after a backoff, or
    /// park the orb (and tell the room) when the crash-loop limit is reached.
    pub(super) fn after_failure(&mut self, room: &str, ran_for: Duration) {
        let Some(entry) = self.orbs.get_mut(room) else { return };
        let reason = entry
            .last_exit
            .as_ref()
            .map_or("crash", |e| e.reason.as_str())
            .to_owned();
        let decision = entry.policy.on_failure(Instant::now(), ran_for, fastrand::f64());
        match decision {
            RestartDecision::After(delay) => {
                info!(%room, %reason, delay_ms = delay.as_millis() as u64, "orb failed; restarting");
                entry.state = OrbState::Restarting;
                self.set_timer(room, TimerKind::RestartDue, delay);
            }
            RestartDecision::Park { until } => {
                warn!(%room, %reason, "orb crash loop; parked");
                entry.state = OrbState::Parked;
                self.set_timer_at(room, TimerKind::ParkExpired, until);
                let message = ai_status(
                    "error",
                    json!({"message": "The AI assistant keeps failing and is paused; an operator can reset it.",
                           "code": "orb_parked"}),
                );
                let _ = self.notifier.notify_room(room, message);
            }
        }
    }
}
