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
            epoch: 0,
            told_position: None,
            auth_token: random_token(),
            spawn_to_ready_ms: None,
        };
        self.orbs.insert(room.to_owned(), entry);
        if let Some(idle_timeout) = self.settings.idle_timeout
            && self.humans(room) == 0
        {
            // Started with nobody in the room (admin API): the idle timeout applies.
            let epoch = self.people.get(room).map_or(0, |p| p.epoch);
            let idle = Timer {
                room: room.to_owned(),
                kind: TimerKind::Idle,
                epoch,
            };
            self.timers.insert(idle, idle_timeout);
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
            if self.orbs.get(&room).is_some_and(|e| e.process.is_none()) {
                self.launch(&room);
            }
        }
        self.tell_queue_positions();
    }

    pub(super) fn tell_queue_positions(&mut self) {
        for (index, room) in self.queue.iter().enumerate() {
            let position = index + 1;
            let Some(entry) = self.orbs.get_mut(room) else { continue };
            if entry.told_position != Some(position) {
                entry.told_position = Some(position);
                self.notifier
                    .notify_room(room, ai_status("queued", json!({"position": position})));
            }
        }
    }

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
        let spawned = {
            // Hold the table across the spawn: the reaper must not take the new orb for an orphan.
            let mut table = self.table.lock();
            let spawned = self.launcher.launch(&launch, &env);
            if let Ok(process) = &spawned {
                table.insert(process.pid, room.to_owned());
            }
            spawned
        };
        let mut process = match spawned {
            Ok(process) => process,
            Err(error) => {
                warn!(%room, %error, "orb failed to start");
                let exit = ExitRecord {
                    code: None,
                    signal: None,
                    reason: format!("spawn_failed: {error}"),
                    normal: false,
                };
                // No process, no slot: count it as a failed start straight away.
                crate::metrics::global().exit("spawn_failed");
                entry.last_exit = Some(exit);
                self.after_failure(room, Duration::ZERO);
                return;
            }
        };
        self.slots_used += 1;
        crate::metrics::global().spawns.inc();
        if entry.last_exit.is_some() {
            entry.policy.note_restart();
            crate::metrics::global().restarts.inc();
        }
        info!(%room, pid = process.pid, generation, session = %entry.session, "orb started");
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
        entry.process = Some(Running {
            pid: process.pid,
            generation,
            started: Instant::now(),
            started_ms: now_ms(),
            control: control_tx,
        });
        entry.state = OrbState::Spawning;
        entry.told_position = None;
        entry.last_heartbeat = None;
        entry.sample = None;
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
    }
}
