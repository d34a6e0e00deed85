//! Operator commands: list, spawn, stop, reset, tokens, shutdown.

use super::*;

impl Manager {
    pub(super) fn on_command(&mut self, command: Command) {
        match command {
            Command::List(reply) => {
                let mut records: Vec<OrbRecord> = self.orbs.keys().filter_map(|room| self.record(room)).collect();
                records.sort_by(|a, b| a.room.cmp(&b.room));
                let _ = reply.send(records);
            }
            Command::Get(room, reply) => {
                let _ = reply.send(self.record(&room));
            }
            Command::Spawn(request, reply) => {
                let _ = reply.send(self.spawn_request(request));
            }
            Command::Stop { room, reason, reply } => self.stop(&room, &reason, reply),
            Command::StopAll { reason, reply } => self.stop_all(&reason, reply),
            Command::Reset(room, reply) => {
                let _ = reply.send(self.reset(&room));
            }
            Command::Shutdown(reply) => self.begin_shutdown(Some(reply)),
            Command::VerifyToken { room, token, reply } => {
                let _ = reply.send(self.verify_token(&room, &token));
            }
            Command::IssueOperatorToken { room, ttl, reply } => {
                let token = random_token();
                let now = Instant::now();
                let tokens = self.operator_tokens.entry(room).or_default();
                tokens.retain(|(_, expires)| *expires > now);
                tokens.push((token.clone(), now + ttl));
                let _ = reply.send(token);
            }
        }
    }

    pub(super) fn verify_token(&mut self, room: &str, token: &str) -> bool {
        let current = self
            .orbs
            .get(room)
            .filter(|e| e.process.is_some() || e.launching.is_some())
            .map(|e| e.auth_token.as_str());
        if current.is_some_and(|t| constant_time_eq(t.as_bytes(), token.as_bytes())) {
            return true;
        }
        let now = Instant::now();
        let Some(tokens) = self.operator_tokens.get_mut(room) else {
            return false;
        };
        tokens.retain(|(_, expires)| *expires > now);
        let found = tokens
            .iter()
            .position(|(t, _)| constant_time_eq(t.as_bytes(), token.as_bytes()));
        if let Some(index) = found {
            tokens.swap_remove(index);
        }
        if tokens.is_empty() {
            self.operator_tokens.remove(room);
        }
        found.is_some()
    }

    pub(super) fn spawn_request(&mut self, request: SpawnRequest) -> Result<SpawnOutcome, String> {
        if self.draining {
            return Err("server is shutting down".to_owned());
        }
        if let Some(record) = self.record(&request.room) {
            return Ok(SpawnOutcome::Existing(record));
        }
        self.create_entry(&request.room, request.session);
        self.try_start(&request.room);
        let record = self.record(&request.room).ok_or("orb vanished")?;
        Ok(match record.state {
            OrbState::Queued => SpawnOutcome::Queued(record),
            _ => SpawnOutcome::Created(record),
        })
    }

    pub(super) fn stop(&mut self, room: &str, reason: &str, reply: oneshot::Sender<Option<ExitRecord>>) {
        let Some(entry) = self.orbs.get_mut(room) else {
            let _ = reply.send(None);
            return;
        };
        match &entry.process {
            Some(running) => {
                crate::metrics::global().kill(cause_label(reason));
                entry.stop_reason.get_or_insert_with(|| reason.to_owned());
                entry.state = OrbState::Stopping;
                entry.waiters.push(reply);
                let control = running.control.clone();
                let reason = reason.to_owned();
                tokio::spawn(async move {
                    let _ = control.send(Control::Stop { reason }).await;
                });
            }
            None if entry.launching.is_some() => {
                // Starting on the spawner thread: the stop is carried out when it has a pid.
                crate::metrics::global().kill(cause_label(reason));
                entry.stop_reason.get_or_insert_with(|| reason.to_owned());
                entry.state = OrbState::Stopping;
                entry.waiters.push(reply);
            }
            None => {
                // Queued, restarting or parked: nothing runs; forget it.
                let exit = ExitRecord {
                    code: None,
                    signal: None,
                    reason: reason.to_owned(),
                    normal: true,
                };
                self.remove_entry(room);
                let _ = reply.send(Some(exit));
            }
        }
    }

    pub(super) fn stop_all(&mut self, reason: &str, reply: oneshot::Sender<Vec<(String, ExitRecord)>>) {
        let rooms: Vec<String> = self.orbs.keys().cloned().collect();
        let mut waits = Vec::new();
        for room in rooms {
            let (tx, rx) = oneshot::channel();
            self.stop(&room, reason, tx);
            waits.push((room, rx));
        }
        // Every stop runs at once; the answer comes when the last orb is gone.
        tokio::spawn(async move {
            let mut exits = Vec::new();
            for (room, rx) in waits {
                if let Ok(Some(exit)) = rx.await {
                    exits.push((room, exit));
                }
            }
            let _ = reply.send(exits);
        });
    }

    pub(super) fn reset(&mut self, room: &str) -> Result<OrbRecord, String> {
        let entry = self
            .orbs
            .get_mut(room)
            .ok_or_else(|| format!("no orb for room {room}"))?;
        entry.policy.reset();
        if entry.state == OrbState::Parked {
            // The operator wants the orb back now: no park timer any more.
            entry.state = OrbState::Restarting;
            self.cancel_timer(room, TimerKind::ParkExpired);
            self.try_start(room);
        }
        self.record(room).ok_or_else(|| format!("no orb for room {room}"))
    }

    pub(super) fn begin_shutdown(&mut self, reply: Option<oneshot::Sender<()>>) {
        self.draining = true;
        for room in std::mem::take(&mut self.queue) {
            self.remove_entry(&room);
        }
        let (tx, rx) = oneshot::channel();
        self.stop_all("system_shutdown", tx);
        if let Some(reply) = reply {
            tokio::spawn(async move {
                let _ = rx.await;
                let _ = reply.send(());
            });
        }
    }
}
