//! Operator commands: list, spawn, stop, reset, timeline, summary, tokens, shutdown.

use tokio::time::Instant;

use super::*;
use crate::orbs::lifecycle::SpawnAnswer;
use crate::orbs::lifecycle::{StopReason, StopRequest, is_warm_key};
use crate::orbs::timeline::why;
use crate::orbs::{OrbRecord, RoomTimeline, SpawnOutcome, SpawnRequest};

impl Manager {
    pub(super) fn on_command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::List(reply) => {
                let _ = reply.send(self.life.records(now, wall_ms()));
            }
            Command::Get(room, reply) => {
                let _ = reply.send(self.life.record(&room, now, wall_ms()));
            }
            Command::Spawn(request, reply) => {
                let _ = reply.send(self.spawn_request(request, now));
            }
            Command::Stop {
                room,
                reason,
                origin,
                reply,
            } => {
                let waiter = self.new_waiter(reply);
                let request = StopRequest {
                    reason,
                    waiter: Some(waiter),
                    origin,
                };
                self.life.stop_for(&room, request, now);
                self.carry_out_pending();
            }
            Command::StopAll { reason, origin, reply } => {
                let rooms = self.life.rooms();
                self.stop_rooms(rooms, reason, origin, reply);
            }
            Command::Events(room, reply) => {
                let state = self.life.phase(&room).map(|p| p.state());
                let timeline = self.timelines.get(&room).map(|events| RoomTimeline {
                    why: why::explain(&events, state),
                    room,
                    state,
                    events,
                });
                let _ = reply.send(timeline);
            }
            Command::Summary(room, reply) => {
                let _ = reply.send(self.summaries.get(&room, wall_ms()));
            }
            Command::ExportSummaries(reply) => {
                let _ = reply.send(self.summaries.export(wall_ms()));
            }
            Command::ImportSummaries(kept) => {
                tracing::info!(
                    rooms = kept.len(),
                    "session summaries taken over from the previous program image"
                );
                self.summaries.import(kept, wall_ms());
            }
            Command::Reset(room, reply) => {
                let result = self.life.reset(&room, now);
                self.carry_out_pending();
                let record = result.and_then(|()| self.record_or_error(&room, now));
                let _ = reply.send(record);
            }
            Command::WarmPool(reply) => {
                let _ = reply.send(self.warm_pool_view(now));
            }
            Command::ResetWarmPool(reply) => {
                self.life.reset_pool(now);
                self.carry_out_pending();
                let _ = reply.send(self.warm_pool_view(now));
            }
            Command::Shutdown(reply) => self.begin_shutdown(Some(reply)),
            Command::HandOver(reply) => self.ask_hand_over(super::handover::Waiting::HandOver(reply)),
            Command::Settle(reply) => self.ask_hand_over(super::handover::Waiting::Settled(reply)),
            Command::VerifyToken { room, token, reply } => {
                let _ = reply.send(self.credentials.verify(&room, &token, now));
            }
            Command::IssueOperatorToken { room, ttl, reply } => {
                let _ = reply.send(self.credentials.issue_operator(&room, ttl, now));
            }
            Command::Seat { token, seat, reply } => {
                let _ = reply.send(self.keep_seat(&token, seat));
            }
            Command::Reseat { entry, seat, reply } => {
                let _ = reply.send(self.reseat(&entry, seat));
            }
        }
    }

    /// The lifecycle's pool view, with which members have an open room socket.
    fn warm_pool_view(&self, now: Instant) -> crate::orbs::lifecycle::WarmPoolView {
        let mut view = self.life.warm_pool(now);
        for member in &mut view.members {
            member.seated = self.handles.iter().any(|(generation, h)| {
                h.room == member.id && self.seats.get(generation).is_some_and(|s| !s.is_closed())
            });
        }
        view.seated = view.members.iter().filter(|m| m.seated).count();
        view
    }

    /// Keeps the seat of the warm orb holding `token` (a newer seat replaces an older one).
    pub(super) fn keep_seat(&mut self, token: &str, seat: SeatSender) -> Option<String> {
        let (entry, generation) = self.credentials.holder(token, is_warm_key)?;
        let entry = entry.to_owned();
        self.seats.insert(generation, seat);
        tracing::debug!(%entry, generation, "warm orb's room socket open");
        Some(entry)
    }

    /// Keeps `seat` for the warm orb of pool entry `entry` (its seat handed over by
    /// an upgrade, as its orb was); false when the entry holds no orb.
    pub(super) fn reseat(&mut self, entry: &str, seat: SeatSender) -> bool {
        let Some(generation) = self
            .handles
            .iter()
            .find(|(_, handle)| handle.room == entry && is_warm_key(&handle.room))
            .map(|(generation, _)| *generation)
        else {
            return false;
        };
        self.seats.insert(generation, seat);
        tracing::debug!(%entry, generation, "warm orb's handed-over room socket open");
        true
    }

    fn record_or_error(&self, room: &str, now: Instant) -> Result<OrbRecord, String> {
        self.life
            .record(room, now, wall_ms())
            .ok_or_else(|| format!("no orb for room {room}"))
    }

    fn spawn_request(&mut self, request: SpawnRequest, now: Instant) -> Result<SpawnOutcome, String> {
        let answer = self.life.spawn(&request.room, request.session, now);
        self.carry_out_pending();
        let record = self.record_or_error(&request.room, now)?;
        Ok(match answer? {
            SpawnAnswer::Existing => SpawnOutcome::Existing(record),
            SpawnAnswer::Queued => SpawnOutcome::Queued(record),
            SpawnAnswer::Created => SpawnOutcome::Created(record),
        })
    }

    /// Stops the orbs of `rooms` at once; the answer comes when the last one is gone.
    fn stop_rooms(
        &mut self,
        rooms: Vec<String>,
        reason: StopReason,
        origin: Option<&'static str>,
        reply: oneshot::Sender<Vec<(String, ExitRecord)>>,
    ) {
        let now = Instant::now();
        let mut waits = Vec::new();
        for room in rooms {
            let (tx, rx) = oneshot::channel();
            let waiter = self.new_waiter(tx);
            let request = StopRequest {
                reason,
                waiter: Some(waiter),
                origin,
            };
            self.life.stop_for(&room, request, now);
            waits.push((room, rx));
        }
        self.carry_out_pending();
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

    /// Server shutdown: no new orbs, queued ones forgotten, every orb stopped.
    pub(super) fn begin_shutdown(&mut self, reply: Option<oneshot::Sender<()>>) {
        let rooms = self.life.drain();
        let (tx, rx) = oneshot::channel();
        self.stop_rooms(rooms, StopReason::SystemShutdown, None, tx);
        if let Some(reply) = reply {
            tokio::spawn(async move {
                let _ = rx.await;
                let _ = reply.send(());
            });
        }
    }
}
