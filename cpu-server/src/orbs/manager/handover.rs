//! Handing the orbs over to the next program image (an upgrade), and taking
//! them over in it.
//!
//! Running image: an upgrade asks ([`Command::HandOver`]); the manager waits
//! (at most [`SETTLE`]) until every orb is in a settled phase, takes in what
//! was already said to it (room events, driver reports), asks each driver to
//! let its process go, and answers with the document and the descriptors.
//! From then on it holds no orb: nothing it does can touch them.
//!
//! New image: before its first event the manager imports the document, adopts
//! each process with a new driver, restores each token and timer, and counts a
//! process the document promised but did not bring as exited.

use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{info, warn};

use super::*;
use crate::orbs::handover::{OperatorToken, OrbsDocument, OrbsHandover, OrbsTakeover, ProcessEntry, TimerEntry};
use crate::orbs::lifecycle::snapshot::Blocker;
use crate::orbs::process_control::{EventSink, ProcessEvent};
use crate::orbs::process_group;

/// Longest wait for stops and launches under way to settle before the orbs are handed over.
pub const SETTLE: Duration = Duration::from_secs(10);
/// Longest wait for the drivers to let their processes go (all at once: one bound for all).
const LET_GO: Duration = Duration::from_secs(2);

/// An upgrade waiting for the orbs.
pub(super) struct Pending {
    reply: Waiting,
    until: Instant,
}

/// What the upgrade waits for.
pub(super) enum Waiting {
    /// The orbs to settle (before the drain: the server still serves meanwhile).
    Settled(oneshot::Sender<Result<(), String>>),
    /// The orbs themselves.
    HandOver(oneshot::Sender<Result<OrbsHandover, String>>),
}

/// How often a pending handover looks again whether the orbs settled.
pub(super) const RETRY: Duration = Duration::from_millis(20);

impl Manager {
    /// An upgrade asks for the orbs, or (`Waiting::Settled`) for them to settle first.
    pub(super) fn ask_hand_over(&mut self, reply: Waiting) {
        if self.handed_over {
            refuse(reply, "the orbs were handed over already".to_owned());
            return;
        }
        if let Some(earlier) = self.pending.take() {
            refuse(earlier.reply, "another upgrade asked".to_owned());
        }
        self.pending = Some(Pending {
            reply,
            until: Instant::now() + SETTLE,
        });
    }

    /// Hands the orbs over if they settled; refuses when they cannot be, or did
    /// not settle in time. `inputs` and `reports`: what was said before is heard first.
    pub(super) async fn try_hand_over(&mut self, inputs: &mut Inputs, reports: &mut mpsc::Receiver<Report>) {
        let Some(pending) = self.pending.take() else { return };
        match self.life.handover_blocker() {
            Some(Blocker::Never(why)) => return refuse(pending.reply, why.to_owned()),
            Some(Blocker::Settling(why)) if Instant::now() >= pending.until => {
                return refuse(pending.reply, format!("{why} after {}s", SETTLE.as_secs()));
            }
            Some(Blocker::Settling(_)) => {
                self.pending = Some(pending);
                return;
            }
            None => {}
        }
        let reply = match pending.reply {
            Waiting::Settled(reply) => {
                let _ = reply.send(Ok(()));
                return;
            }
            Waiting::HandOver(reply) => reply,
        };
        let pending = Pending {
            reply: Waiting::HandOver(reply),
            until: pending.until,
        };
        while let Ok(event) = inputs.events.try_recv() {
            self.on_room_event(event);
        }
        while let Ok(report) = reports.try_recv() {
            self.on_report(report);
        }
        if self.life.handover_blocker().is_some() {
            self.pending = Some(pending);
            return;
        }
        let Waiting::HandOver(reply) = pending.reply else {
            return;
        };
        let handover = self.hand_over().await;
        info!(
            orbs = handover.document.processes.len(),
            rooms = handover.document.lifecycle.rooms.len(),
            "orbs handed over to the next program image"
        );
        let _ = reply.send(Ok(handover));
    }

    async fn hand_over(&mut self) -> OrbsHandover {
        let (now, written_at_ns) = (Instant::now(), crate::orbs::handover::monotonic_ns());
        let (lifecycle, adopted) = self.life.export(now);
        let mut letting_go = Vec::new();
        for process in &adopted {
            let Some(handle) = self.handles.get_mut(&process.generation) else {
                continue;
            };
            let Some(port) = handle.handover.take() else { continue };
            let (tx, rx) = oneshot::channel();
            if port.send(tx).is_ok() {
                letting_go.push((handle.room.clone(), process.generation, rx));
            }
        }
        let mut document = OrbsDocument {
            written_at_ns,
            lifecycle,
            timers: self
                .timers
                .export(now)
                .into_iter()
                .map(|(timer, in_ms)| TimerEntry {
                    room: timer.room,
                    kind: timer.kind,
                    in_ms,
                })
                .collect(),
            processes: Vec::new(),
            operator_tokens: self
                .credentials
                .operator_tokens(now)
                .into_iter()
                .map(|(room, token, left)| OperatorToken {
                    room,
                    token,
                    expires_in_ms: left.as_millis() as u64,
                })
                .collect(),
            timelines: self.timelines.export(),
        };
        let mut fds = Vec::new();
        // Every driver was asked at once; one deadline bounds them all.
        let deadline = Instant::now() + LET_GO;
        for (room, generation, rx) in letting_go {
            match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(handed)) => {
                    let token = self.credentials.token_of(&room, generation);
                    document
                        .processes
                        .push(ProcessEntry::new(&room, generation, token, &handed));
                    fds.extend(handed.ipc);
                    if let Some((out, err)) = handed.output {
                        fds.push(out);
                        fds.push(err);
                    }
                }
                // Exited meanwhile (or its driver is stuck): the new image counts it as exited.
                _ => warn!(%room, generation, "an orb process was not handed over"),
            }
        }
        self.forget_orbs();
        OrbsHandover { document, fds }
    }

    /// After the handover: no orb is this manager's any more; nothing it does
    /// can start, stop or signal one.
    fn forget_orbs(&mut self) {
        self.handed_over = true;
        self.life.forget_all();
        self.timers = Timers::default();
        self.handles.clear();
        self.seats.clear();
        for (_, reply) in self.waiters.drain() {
            let _ = reply.send(None);
        }
    }

    /// In a new image, before any event: takes over the orbs a previous image handed over.
    pub fn take_over(&mut self, takeover: OrbsTakeover) {
        let OrbsTakeover { document, processes } = takeover;
        // Ages and times left count from the export: the upgrade's pause is added.
        let now = document.written_at(Instant::now());
        let adopted = self.life.import(document.lifecycle, now);
        self.timelines.import(document.timelines, wall_ms());
        let mut brought: HashMap<u64, (ProcessEntry, crate::orbs::process_control::HandedOver)> =
            processes.into_iter().map(|p| (p.0.generation, p)).collect();
        let mut missing = Vec::new();
        for process in &adopted {
            let Some((entry, handed)) = brought
                .remove(&process.generation)
                .filter(|(e, _)| e.pid == process.pid)
            else {
                missing.push(*process);
                continue;
            };
            let events = EventSink::new(&entry.room, entry.generation, self.reports_tx.clone());
            match self.launcher.adopt(&entry.room, entry.token.as_deref(), handed, events) {
                Ok(started) => {
                    self.table.launching();
                    self.table.answered(entry.pid.map(|pid| (pid, entry.room.as_str())));
                    if let Some(token) = entry.token.clone() {
                        self.credentials.keep(&entry.room, entry.generation, token);
                    }
                    self.handles.insert(
                        entry.generation,
                        Handle {
                            room: entry.room.clone(),
                            pid: started.orb.pid,
                            orders: started.orb.orders,
                            handover: started.orb.handover,
                        },
                    );
                    tokio::spawn(started.driver);
                }
                Err(error) => {
                    warn!(room = %entry.room, pid = ?entry.pid, job = ?entry.job, %error, "a handed-over orb cannot be driven; killing it");
                    if let Some(pid) = entry.pid {
                        process_group::kill(pid);
                    }
                    missing.push(*process);
                }
            }
        }
        // Processes nobody's record names: nothing may run unsupervised.
        for (entry, _) in brought.into_values() {
            warn!(room = %entry.room, pid = ?entry.pid, job = ?entry.job, "a handed-over orb belongs to no room; killing it");
            if let Some(pid) = entry.pid {
                process_group::kill(pid);
            }
        }
        for timer in &document.timers {
            self.timers.arm(timer.timer(), now + Duration::from_millis(timer.in_ms));
        }
        for token in document.operator_tokens {
            let left = Duration::from_millis(token.expires_in_ms);
            self.credentials.keep_operator(&token.room, token.token, left, now);
        }
        info!(
            orbs = self.handles.len(),
            missing = missing.len(),
            "orbs taken over from the previous program image"
        );
        // A process the record promised but that did not come: it ended during the
        // upgrade, as far as anyone can tell; the restart rule decides.
        for process in missing {
            let Some(room) = self.life.room_of(process.generation) else {
                continue;
            };
            let exited = ProcessEvent::Exited {
                code: None,
                signal: None,
            };
            self.feed(Event::Process {
                room,
                generation: process.generation,
                event: exited,
            });
        }
        self.publish_counts();
    }
}

/// Answers a waiting upgrade with why its orbs will not be handed over.
fn refuse(reply: Waiting, why: String) {
    match reply {
        Waiting::Settled(reply) => drop(reply.send(Err(why))),
        Waiting::HandOver(reply) => drop(reply.send(Err(why))),
    }
}
