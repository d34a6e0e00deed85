//! The session orchestrator: the one task that owns the orb's state.
//!
//! It starts the [`RoomLink`] and [`IpcLink`] tasks and then waits, in one
//! `select!`, on their events, the brain's replies, the heartbeat tick, the
//! lifetime and idle deadlines and the signals. Who is present (room and
//! manager views, [`Presence`]) drives the idle countdown ([`IdleTimer`]):
//! the orb is idle only while no human is in the room. Every decision to stop becomes
//! a [`Stop`], carried out once by `Session::finish` (in `stop.rs`).

mod room_events;
mod stop;
mod voice;

use std::time::Duration;

use serde_json::{Map, json};
use shared::clock::epoch_ms;
use shared::ipc::{ManagerToOrb, OrbError, OrbHeartbeat, OrbMetrics, OrbToManager};
use shared::room::{AI_USER_NAME, Join, OrbHeartbeatFrame, PARTICIPANT_AI, RoomMessage, orb_user_id};
use shared::secret::Secret;
use shared::signals::Signals;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tracing::Instrument;

pub use stop::{EXIT_MARGIN, RUNTIME_SHUTDOWN, Stop};

use crate::brain::{Brain, BrainQueue, MAX_WAITING};
use crate::idle::IdleTimer;
use crate::ipc_link::{IpcInbound, IpcLink, ManagerChannel};
use crate::media::{EchoEngine, MediaHub, Outgoing, SilentEngine};
use crate::metrics::{CpuSampler, rss_mb};
use crate::presence::Presence;
use crate::room_link::{LinkConfig, RoomCommand, RoomEvent, RoomLink, Seat};
use crate::settings::{BrainSettings, Settings};

/// One orb's session and everything it owns.
pub struct Session<B: Brain> {
    settings: Settings,
    user_id: String,
    brain: BrainQueue<std::sync::Arc<B>>,
    /// The same brain, for the voice's session summary.
    brain_shared: std::sync::Arc<B>,
    room: mpsc::Sender<RoomCommand>,
    room_events: mpsc::Receiver<RoomEvent>,
    room_task: JoinHandle<()>,
    ipc: Option<mpsc::Sender<OrbToManager>>,
    ipc_events: Option<mpsc::Receiver<IpcInbound>>,
    ipc_task: Option<JoinHandle<()>>,
    presence: Presence,
    idle: IdleTimer,
    lifetime_end: Option<Instant>,
    heartbeat: Option<Interval>,
    latency: Duration,
    cpu: CpuSampler,
    paused: bool,
    /// The media connections (`None` with `ORB_MEDIA=false`: offers are ignored).
    media: Option<MediaHub>,
    /// The voice pipeline (`None` in test mode, without keys or without media).
    voice: Option<voice::Voice>,
}

impl<B: Brain> Session<B> {
    /// Starts the room link (and the IPC link when a channel was inherited); a warm
    /// orb's `seat` is its room socket, already in the room.
    pub fn start(
        settings: Settings,
        brain: B,
        channel: Option<ManagerChannel>,
        seat: Option<Seat>,
    ) -> std::io::Result<Self> {
        let user_id = orb_user_id(&settings.session);
        let config = LinkConfig {
            url: settings.room_url.clone(),
            join: Secret::new(join_frame(&settings, &user_id)),
            token: settings.auth_token.clone(),
            ping_interval: settings.ping_interval,
            reconnect_grace: settings.reconnect_grace,
        };
        let (link, room, room_events) = RoomLink::new(config, seat);
        let (ipc, ipc_events, ipc_task) = match channel {
            Some(stream) => {
                let (link, tx, rx) = IpcLink::new(stream)?;
                (Some(tx), Some(rx), Some(tokio::spawn(link.run().in_current_span())))
            }
            None => (None, None, None),
        };
        let room_task = tokio::spawn(link.run().in_current_span());
        let brain = std::sync::Arc::new(brain);
        let voice = match settings.brain {
            BrainSettings::Echo => None,
            BrainSettings::OpenAi(_) => voice::start(&settings, brain.clone(), &user_id),
        };
        let media = settings.media.enabled.then(|| {
            let engine: std::sync::Arc<dyn crate::media::AudioEngine> = match (&settings.brain, &voice) {
                // Test mode: each human hears their own audio back.
                (BrainSettings::Echo, _) => std::sync::Arc::new(EchoEngine),
                (BrainSettings::OpenAi(_), Some(voice)) => voice.engine.clone(),
                (BrainSettings::OpenAi(_), None) => std::sync::Arc::new(SilentEngine),
            };
            MediaHub::new(settings.media.clone(), engine)
        });
        let now = Instant::now();
        tracing::info!(url = %settings.room_url, ipc = ipc.is_some(), test_mode = settings.test_mode, "orb starting");
        Ok(Self {
            idle: IdleTimer::new(settings.idle_timeout, now),
            lifetime_end: settings.max_lifetime.map(|lifetime| now + lifetime),
            settings,
            user_id,
            brain: BrainQueue::new(brain.clone(), MAX_WAITING),
            brain_shared: brain,
            room,
            room_events,
            room_task,
            ipc,
            ipc_events,
            ipc_task,
            presence: Presence::default(),
            heartbeat: None,
            latency: Duration::ZERO,
            cpu: CpuSampler::new(),
            paused: false,
            media,
            voice,
        })
    }

    /// Serves until something asks it to stop; returns the exit code.
    pub async fn run(mut self, signals: &mut Signals) -> i32 {
        let stop = loop {
            tokio::select! {
                _ = sleep_until_some(self.lifetime_end) => break Stop::normal("timeout", &self.settings),
                _ = sleep_until_some(self.idle.deadline()) => {
                    tracing::info!("nobody human in the room for the idle timeout");
                    break Stop::normal("idle_timeout", &self.settings);
                }
                name = signals.recv() => {
                    tracing::info!(signal = name, "signal received: shutting down");
                    break Stop::normal("signal", &self.settings);
                }
                event = self.room_events.recv() => match event {
                    Some(event) => if let Some(stop) = self.on_room_event(event).await { break stop },
                    None => break Stop::room_lost("room link ended unexpectedly"),
                },
                event = recv_if_open(self.ipc_events.as_mut()) => match event {
                    Some(IpcInbound::Message(message)) => if let Some(stop) = self.on_ipc(message) { break stop },
                    Some(IpcInbound::Closed) | None => {
                        tracing::warn!("manager channel closed: shutting down");
                        self.ipc_events = None;
                        break Stop::normal("manager_gone", &self.settings);
                    }
                },
                answered = self.brain.next_reply() => self.on_reply(answered),
                outgoing = next_media(self.media.as_mut()) => self.on_media(outgoing),
                update = recv_if_open(self.voice.as_mut().map(|v| &mut v.handle.updates)) => match update {
                    Some(update) => self.on_voice(update),
                    None => {
                        tracing::error!("the voice conductor ended: the AI hears and says nothing");
                        self.voice = None;
                    }
                },
                _ = tick_if_started(self.heartbeat.as_mut()) => self.send_heartbeat(),
            }
        };
        if let Some(media) = self.media.as_mut() {
            media.close_all();
        }
        self.finish(stop, signals).await
    }

    fn on_ipc(&mut self, message: ManagerToOrb) -> Option<Stop> {
        match message {
            ManagerToOrb::ShutdownGraceful(request) => {
                tracing::info!(reason = %request.reason, timeout_ms = request.timeout, "shutdown requested by the manager");
                let bound = Duration::from_millis(request.timeout).min(self.settings.shutdown_timeout);
                Some(Stop::requested(request.reason, bound))
            }
            ManagerToOrb::ParticipantJoined(p) => {
                tracing::info!(user_id = %p.user_id, user_role = %p.user_role, "manager: participant joined");
                self.presence.manager_joined(&p.user_id, &p.user_role);
                self.presence_changed();
                None
            }
            ManagerToOrb::ParticipantLeft(p) => {
                tracing::info!(user_id = %p.user_id, "manager: participant left");
                self.presence.manager_left(&p.user_id);
                self.presence_changed();
                None
            }
            ManagerToOrb::OrbAssign(assign) => {
                tracing::warn!(room = %assign.room_id, "orb_assign to an orb that has its room; ignored");
                None
            }
        }
    }

    /// Restarts or cancels the idle countdown after a change in who is present.
    fn presence_changed(&mut self) {
        let was_counting = self.idle.deadline().is_some();
        self.idle.set_present(self.presence.any_human(), Instant::now());
        match (was_counting, self.idle.deadline()) {
            (false, Some(_)) => tracing::info!(
                timeout_ms = self.settings.idle_timeout.map_or(0, |t| t.as_millis()),
                "no human in the room: idle countdown started"
            ),
            (true, None) => {
                tracing::debug!(humans = ?self.presence.humans(), "a human is present: idle countdown cancelled")
            }
            _ => {}
        }
    }

    /// `orb_heartbeat` to the manager (dropped rather than queued when the channel is full) and to the room.
    fn send_heartbeat(&mut self) {
        let mut extra = Map::new();
        if let Some(media) = self.media.as_ref() {
            // Every heartbeat while media is on, `[]` without peers; none with ORB_MEDIA=false.
            extra.insert("media".to_owned(), json!(media.snapshot()));
        }
        if let Some(voice) = self.voice.as_ref() {
            extra.insert("voice".to_owned(), voice.handle.health.borrow().to_json(Instant::now()));
        }
        let metrics = OrbMetrics {
            cpu: round2(self.cpu.sample()),
            memory: round2(rss_mb()),
            latency: round2(self.latency.as_secs_f64() * 1000.0),
            extra,
        };
        tracing::debug!(
            cpu = metrics.cpu,
            memory_mb = metrics.memory,
            latency_ms = metrics.latency,
            "heartbeat"
        );
        if let Some(peers) = metrics
            .extra
            .get("media")
            .filter(|m| m.as_array().is_some_and(|a| !a.is_empty()))
        {
            tracing::debug!(%peers, "media");
        }
        let frame = RoomMessage::OrbHeartbeat(OrbHeartbeatFrame {
            metrics: Some(json!({"cpu": metrics.cpu, "memory": metrics.memory, "latency": metrics.latency})),
            extra: Map::new(),
        });
        self.send_room(RoomCommand::Send(frame));
        self.ipc_send_now(OrbToManager::OrbHeartbeat(OrbHeartbeat {
            room_id: self.settings.room.clone(),
            timestamp: epoch_ms(),
            metrics,
            extra: Map::new(),
        }));
    }

    /// Queues a frame for the room socket without waiting; dropped and logged
    /// when the link is that far behind.
    fn send_room(&self, command: RoomCommand) {
        if self.room.try_send(command).is_err() {
            tracing::warn!("room link busy: frame dropped");
        }
    }

    /// Queues an IPC message without waiting (heartbeats, non-critical errors).
    fn ipc_send_now(&self, message: OrbToManager) {
        if let Some(ipc) = &self.ipc
            && ipc.try_send(message).is_err()
        {
            tracing::debug!("IPC link busy: message dropped");
        }
    }

    fn report_error(&self, error: String, critical: bool) {
        self.ipc_send_now(OrbToManager::OrbError(OrbError {
            error,
            critical,
            extra: Map::new(),
        }));
    }

    fn start_heartbeats(&mut self) {
        if self.heartbeat.is_none() {
            let mut interval = tokio::time::interval(self.settings.heartbeat_interval);
            interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
            self.heartbeat = Some(interval);
        }
    }
}

/// The AI's `join` (with `token` when `ORB_AUTH_TOKEN` is set).
/// The orb's `join` (with its token, if it has one).
pub(crate) fn join_frame(settings: &Settings, user_id: &str) -> String {
    let mut extra = Map::new();
    if let Some(token) = &settings.auth_token {
        extra.insert("token".into(), json!(token.expose()));
    }
    RoomMessage::Join(Join {
        user_id: user_id.to_owned(),
        user_name: String::from(AI_USER_NAME),
        user_role: String::from("ai"),
        participant_type: Some(String::from(PARTICIPANT_AI)),
        room_id: None,
        extra,
    })
    .to_json()
}

/// The next tick, or never when heartbeats have not started.
async fn tick_if_started(interval: Option<&mut Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// The media table's next message for the room, or never without media.
async fn next_media(media: Option<&mut MediaHub>) -> Outgoing {
    match media {
        Some(media) => media.next_outgoing().await,
        None => std::future::pending().await,
    }
}

/// At `deadline`, or never when there is none.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The next message, or never when there is no channel.
async fn recv_if_open<T>(rx: Option<&mut mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use serde_json::Value;
    use shared::settings::DotEnv;

    use super::*;
    use crate::cli::Cli;

    fn settings(token: Option<&str>) -> Settings {
        let cli = Cli::try_parse_from(["gpu-orb", "--room=r1", "--session=s1", "--test-mode"]).expect("parse");
        let token = token.map(str::to_owned);
        Settings::resolve(cli, &DotEnv::default(), &|name| {
            (name == "ORB_AUTH_TOKEN").then(|| token.clone()).flatten()
        })
        .expect("valid")
    }

    #[test]
    fn join_frame_is_the_ai_join_with_the_token_only_when_set() {
        let plain: Value = serde_json::from_str(&join_frame(&settings(None), "ai-orb-s1")).expect("json");
        assert_eq!(
            plain,
            json!({"type":"join","userId":"ai-orb-s1","userName":"AI Assistant","userRole":"ai","participantType":"ai"})
        );
        let with_token: Value = serde_json::from_str(&join_frame(&settings(Some("t0k")), "ai-orb-s1")).expect("json");
        assert_eq!(with_token["token"], "t0k");
    }

    #[test]
    fn metrics_are_rounded() {
        assert_eq!(round2(1.23456), 1.23);
        assert!(epoch_ms() > 1_600_000_000_000);
    }
}
