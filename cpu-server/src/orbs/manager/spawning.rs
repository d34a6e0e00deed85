//! Slots, the FIFO queue and starting a process.

use super::*;

impl Manager {
    pub(super) fn create_entry(&mut self, room: &str, session: Option<String>) {
        let entry = OrbEntry {
            session: session.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            state: OrbState::Queued,
            process: None,
            policy: RestartPolicy::new(self.settings.max_restarts, self.settings.restart_window),
            last_exit: None,
            last_heartbeat: None,
            ipc_delay_ms: None,
            sample: None,
            stop_reason: None,
            waiters: Vec::new(),
            launching: None,
            told_position: None,
            auth_token: random_token(),
            spawn_to_ready_ms: None,
        };
        self.orbs.insert(room.to_owned(), entry);
        if let Some(idle_timeout) = self.settings.idle_timeout
            && self.humans(room) == 0
        {
            // Started with nobody in the room (admin API): the idle timeout applies.
            self.set_timer(room, TimerKind::Idle, idle_timeout);
        }
    }

    /// Starts the room's orb if a slot is free, else queues it.
    pub(super) fn try_start(&mut self, room: &str) {
        if self.slots_used < self.settings.max_concurrent {
            self.launch(room);
        } else if !self.queue.iter().any(|r| r == room) {
            if let Some(entry) = self.orbs.get_mut(room) {
                entry.state = OrbState::Queued;
            }
            self.queue.push_back(room.to_owned());
            self.tell_queue_positions();
        }
        self.publish_counts();
    }

    pub(super) fn fill_free_slots(&mut self) {
        while self.slots_used < self.settings.max_concurrent && !self.draining {
            let Some(room) = self.queue.pop_front() else { break };
            if self
                .orbs
                .get(&room)
                .is_some_and(|e| e.process.is_none() && e.launching.is_none())
            {
                self.launch(&room);
            }
        }
        self.tell_queue_positions();
    }

    pub(super) fn tell_queue_positions(&mut self) {
        for (index, room) in self.queue.iter().enumerate() {
            let position = index + 1;
            let Some(entry) = self.orbs.get_mut(room) else { continue };
            // Recorded as told only once delivered: a busy registry hears it at the next change.
            if entry.told_position != Some(position)
                && self
                    .notifier
                    .notify_room(room, ai_status("queued", json!({"position": position})))
            {
                entry.told_position = Some(position);
            }
        }
    }

    /// Takes a slot and asks the spawner thread to start the room's orb; the
    /// result comes back as a [`ReportKind::Spawned`] report.
    pub(super) fn launch(&mut self, room: &str) {
        let generation = self.next_generation;
        self.next_generation += 1;
        let people = self.people.get(room);
        let find =
            |role: &str| people.and_then(|p| p.humans.iter().find(|(_, r)| *r == role).map(|(id, _)| id.clone()));
        let (coach, client) = (find("coach"), find("client"));
        let Some(entry) = self.orbs.get_mut(room) else { return };
        // Each process gets its own token: a killed orb's token stops working.
        entry.auth_token = random_token();
        let launch = OrbLaunch {
            room: room.to_owned(),
            session: entry.session.clone(),
            coach,
            client,
        };
        let env = LaunchEnv {
            auth_token: entry.auth_token.clone(),
            heartbeat_interval_ms: self.settings.health_check_interval.as_millis() as u64,
        };
        let (launcher, table, reports) = (Arc::clone(&self.launcher), self.table.clone(), self.reports_tx.clone());
        let job = Box::new(move || {
            let mut error = None;
            let spawned = table.record_spawn(&launch.room, || match launcher.launch(&launch, &env) {
                Ok(process) => Some((process.pid, process)),
                Err(e) => {
                    error = Some(e);
                    None
                }
            });
            let (pid, spawned) = match spawned {
                Some((pid, process)) => (pid, Ok(process)),
                None => (0, Err(error.unwrap_or_default())),
            };
            let report = Report {
                room: launch.room,
                generation,
                pid,
                kind: ReportKind::Spawned(spawned),
            };
            // Reports are consumed by the manager loop, which never waits on this thread.
            let _ = reports.blocking_send(report);
        });
        if self.spawner.submit(job).is_err() {
            self.start_failed(room, "the spawner thread is gone".to_owned());
            return;
        }
        self.slots_used += 1;
        entry_launching(self.orbs.get_mut(room), generation);
    }

    /// The spawner's answer for one launch.
    pub(super) fn on_spawned(&mut self, room: &str, generation: u64, spawned: Result<SpawnedProcess, String>) {
        let wanted = self.orbs.get(room).is_some_and(|e| e.launching == Some(generation));
        match spawned {
            Err(error) => {
                self.slots_used = self.slots_used.saturating_sub(1);
                if wanted {
                    if let Some(entry) = self.orbs.get_mut(room) {
                        entry.launching = None;
                    }
                    self.start_failed(room, error);
                }
                self.fill_free_slots();
                self.publish_counts();
            }
            Ok(process) if wanted => self.supervise(room, generation, process),
            Ok(process) => {
                // The room's orb was stopped or replaced while this one started:
                // supervise it only to kill and reap it (its exit frees the slot).
                let control = self.start_task(room, generation, process);
                let _ = control.try_send(Control::Kill {
                    reason: "manual_termination".to_owned(),
                });
            }
        }
    }

    /// A start that produced no process: no slot is held; counts as a failed start.
    fn start_failed(&mut self, room: &str, error: String) {
        warn!(%room, %error, "orb failed to start");
        crate::metrics::global().exit("spawn_failed");
        let Some(entry) = self.orbs.get_mut(room) else { return };
        entry.last_exit = Some(ExitRecord {
            code: None,
            signal: None,
            reason: format!("spawn_failed: {error}"),
            normal: false,
        });
        if entry.stop_reason.is_some() {
            // Stopped while it was starting: nothing to restart.
            self.remove_entry(room);
        } else {
            self.after_failure(room, Duration::ZERO);
        }
    }

    fn supervise(&mut self, room: &str, generation: u64, process: SpawnedProcess) {
        let pid = process.pid;
        let control = self.start_task(room, generation, process);
        let Some(entry) = self.orbs.get_mut(room) else { return };
        entry.launching = None;
        crate::metrics::global().spawns.inc();
        if entry.last_exit.is_some() {
            entry.policy.note_restart();
            crate::metrics::global().restarts.inc();
        }
        info!(%room, pid, generation, session = %entry.session, "orb started");
        if let Some(reason) = &entry.stop_reason {
            // A stop was asked for while it started: carry it out now.
            let _ = control.try_send(Control::Stop { reason: reason.clone() });
        } else {
            entry.state = OrbState::Spawning;
        }
        entry.process = Some(Running {
            pid,
            generation,
            started: Instant::now(),
            started_ms: now_ms(),
            control,
        });
        entry.told_position = None;
        entry.last_heartbeat = None;
        entry.sample = None;
    }

    /// Starts the supervisor task of a started process; returns its control channel.
    fn start_task(&mut self, room: &str, generation: u64, mut process: SpawnedProcess) -> mpsc::Sender<Control> {
        if let (Some(stdout), Some(stderr)) = (process.child.stdout.take(), process.child.stderr.take()) {
            spawn_output_capture(stdout, stderr, self.launcher.log_path(room));
        }
        let (control_tx, control_rx) = mpsc::channel(64);
        let timing = Timing {
            ready_timeout: self.settings.ready_timeout,
            unresponsive_timeout: self.settings.unresponsive_timeout,
            max_lifetime: self.settings.max_lifetime,
            stop_grace: self.settings.stop_grace,
            kill_grace: self.settings.kill_grace,
        };
        OrbTask {
            room: room.to_owned(),
            generation,
            child: process.child,
            pid: process.pid,
            ipc: process.ipc,
            timing,
            control: control_rx,
            reports: self.reports_tx.clone(),
        }
        .spawn();
        control_tx
    }
}

fn entry_launching(entry: Option<&mut OrbEntry>, generation: u64) {
    if let Some(entry) = entry {
        entry.launching = Some(generation);
        entry.state = OrbState::Spawning;
        entry.told_position = None;
    }
}
