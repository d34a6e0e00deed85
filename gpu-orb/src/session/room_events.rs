//! What the session does with each room event: joins, participants (the
//! room's view of who is present), `ai_control` and the brain's replies, and
//! WebRTC signalling addressed to the AI (handed to the [`crate::media::MediaHub`]), with the
//! answers and refusals it sends back.

use serde_json::{Map, Value, json};
use shared::ipc::{OrbReady, OrbToManager};
use shared::room::{AiControl, AiResponse, AiStatus, ErrorCode, RoomMessage, Signal};

use super::{Session, Stop};
use crate::brain::{Admission, Answered, Ask, Brain};
use crate::media::{Outgoing, SignalError};
use crate::room_link::{RoomCommand, RoomEvent};

impl<B: Brain> Session<B> {
    pub(super) async fn on_room_event(&mut self, event: RoomEvent) -> Option<Stop> {
        match event {
            RoomEvent::Joined { peers, first } => {
                self.tell_voice_roles(&peers);
                self.presence.room.reset(peers);
                self.presence_changed();
                self.status(if self.paused { "paused" } else { "ready" });
                if self.voice.is_some() && !self.paused {
                    // The voice pipeline waits for speech.
                    self.status("listening");
                }
                if first {
                    let ids = self.presence.room.ids();
                    if let Some(ipc) = &self.ipc {
                        let ready = OrbToManager::OrbReady(OrbReady {
                            room_id: self.settings.room.clone(),
                            participants: Some(json!(ids)),
                            extra: Map::new(),
                        });
                        let _ = ipc.send(ready).await;
                    }
                    self.start_heartbeats();
                }
                None
            }
            RoomEvent::Frame(value) => self.on_frame(value).await,
            RoomEvent::Latency(rtt) => {
                self.latency = rtt;
                None
            }
            RoomEvent::Disconnected(why) => {
                self.report_error(format!("room connection lost ({why}); reconnecting"), false);
                None
            }
            RoomEvent::Refused(why) => Some(Stop::refused(&why)),
            RoomEvent::GaveUp(why) => Some(Stop::room_lost(&why)),
        }
    }

    async fn on_frame(&mut self, value: Value) -> Option<Stop> {
        let message = match serde_json::from_value::<RoomMessage>(value) {
            Ok(message) => message,
            Err(e) => {
                tracing::debug!(error = %e, "ignored a room frame the orb does not use");
                return None;
            }
        };
        match message {
            RoomMessage::UserJoined(joined) => {
                let p = joined.participant;
                tracing::info!(user_id = %p.user_id, user_role = %p.user_role, "participant joined");
                if p.user_id != self.user_id {
                    self.voice_control(crate::voice::conductor::Control::Role {
                        user: p.user_id.clone(),
                        role: p.user_role.clone(),
                    });
                    self.presence.room.joined(p);
                    self.presence_changed();
                }
            }
            RoomMessage::UserLeft(p) => {
                tracing::info!(user_id = %p.user_id, "participant left");
                if let Some(media) = self.media.as_mut() {
                    media.left(&p.user_id);
                }
                self.presence.room.left(&p.user_id);
                self.presence_changed();
            }
            RoomMessage::PeerDiscovery(discovery) => {
                self.tell_voice_roles(&discovery.peers);
                self.presence.room.reset(discovery.peers);
                self.presence_changed();
            }
            RoomMessage::AiControl(control) => return self.on_control(control).await,
            RoomMessage::Offer(signal) => self.on_signal(Kind::Offer, signal),
            RoomMessage::IceCandidate(signal) => self.on_signal(Kind::Candidate, signal),
            RoomMessage::Answer(signal) => self.on_signal(Kind::Answer, signal),
            RoomMessage::Error(error) => {
                tracing::warn!(code = %error.code, message = %error.message, "room server reported an error");
            }
            other => tracing::debug!(frame = ?other, "room frame"),
        }
        None
    }

    async fn on_control(&mut self, control: AiControl) -> Option<Stop> {
        tracing::info!(action = %control.action, from = control.from_id.as_deref().unwrap_or(""), "ai_control");
        match control.action.as_str() {
            "say" => match control.text {
                Some(text) => {
                    let from = control.from_id;
                    match self.brain.ask(Ask {
                        from: from.clone(),
                        text,
                    }) {
                        Admission::Started => self.status("thinking"),
                        Admission::Queued { position } => {
                            tracing::info!(position, "say queued behind the request in flight");
                        }
                        Admission::Busy => {
                            tracing::warn!(from = from.as_deref().unwrap_or(""), "say refused: the AI is busy");
                            self.busy(from);
                        }
                    }
                }
                None => tracing::warn!("ai_control say without text ignored"),
            },
            "pause" => {
                self.paused = true;
                self.voice_control(crate::voice::conductor::Control::Pause(true));
                self.status("paused");
            }
            "resume" => {
                self.paused = false;
                self.voice_control(crate::voice::conductor::Control::Pause(false));
                self.status("listening");
            }
            "end_session" => return Some(Stop::normal("session_complete", &self.settings)),
            other => tracing::warn!(action = other, "unknown ai_control action ignored"),
        }
        None
    }

    pub(super) fn on_reply(&mut self, answered: Answered) {
        let Answered {
            from,
            result,
            next_started,
        } = answered;
        match result {
            Ok(text) => {
                let response = RoomMessage::AiResponse(AiResponse {
                    text,
                    in_reply_to: from,
                    from_id: None,
                    extra: Map::new(),
                });
                self.to_room(response);
                self.status("speaking");
            }
            Err(error) => {
                tracing::warn!(%error, "the brain could not answer");
                self.report_error(format!("AI reply failed: {error}"), false);
            }
        }
        if next_started {
            self.status("thinking");
        } else {
            self.status(if self.paused { "paused" } else { "listening" });
        }
    }

    /// The refusal of a `say` beyond the queue: `ai_status` `error` with code
    /// `busy`, to the asker alone (`toId`, also named in `inReplyTo`).
    fn busy(&self, asker: Option<String>) {
        let mut extra = Map::new();
        extra.insert("code".into(), json!(ErrorCode::Busy.as_str()));
        extra.insert(
            "message".into(),
            json!("The AI is still answering earlier questions; ask again once it has answered."),
        );
        if let Some(asker) = asker {
            extra.insert("toId".into(), json!(asker));
            extra.insert("inReplyTo".into(), json!(asker));
        }
        self.to_room(RoomMessage::AiStatus(AiStatus {
            status: String::from("error"),
            session_id: Some(self.settings.session.clone()),
            from_id: None,
            extra,
        }));
    }

    /// An `offer`, `ice-candidate` or `answer`: handled only when addressed to the AI
    /// (an untargeted one is for the others) and media is on (`ORB_MEDIA`).
    fn on_signal(&mut self, kind: Kind, signal: Signal) {
        let to = signal.to_id.as_deref().or(signal.target_id.as_deref());
        let (Some(media), Some(from), true) = (
            self.media.as_mut(),
            signal.from_id.as_deref(),
            to == Some(&*self.user_id),
        ) else {
            tracing::debug!(kind = ?kind, "signal not for the AI's media: ignored");
            return;
        };
        let result = match kind {
            Kind::Offer => media.offer(from, &signal.extra),
            Kind::Candidate => media.candidate(from, &signal.extra),
            Kind::Answer => Err(SignalError::invalid("the AI never offers, so it takes no answer")),
        };
        if let Err(error) = result {
            tracing::warn!(peer = from, kind = ?kind, code = %error.code, message = %error.message, "signal refused");
            let from = from.to_owned();
            self.refuse(from, kind, error);
        }
    }

    /// What the media table has for the room: an answer, or a refusal of a renegotiation.
    pub(super) fn on_media(&mut self, outgoing: Outgoing) {
        match outgoing {
            Outgoing::Answer { to, sdp } => {
                tracing::info!(peer = %to, "answer sent");
                let mut extra = Map::new();
                extra.insert("answer".into(), json!({"type": "answer", "sdp": sdp}));
                self.to_room(RoomMessage::Answer(Signal {
                    to_id: Some(to),
                    target_id: None,
                    from_id: None,
                    extra,
                }));
            }
            Outgoing::Refused { to, error } => {
                tracing::warn!(peer = %to, code = %error.code, message = %error.message, "offer refused");
                self.refuse(to, Kind::Offer, error);
            }
        }
    }

    /// The refusal of a signal: `ai_status` `error` with the code and a
    /// message, to the sender alone (`toId`, also named in `inReplyTo`; the
    /// room relays a targeted `ai_status` to its target only, docs/protocol.md §1.5).
    fn refuse(&self, to: String, kind: Kind, error: SignalError) {
        let mut extra = Map::new();
        extra.insert("code".into(), json!(error.code.as_str()));
        extra.insert("message".into(), json!(error.message));
        extra.insert("toId".into(), json!(to));
        extra.insert("inReplyTo".into(), json!(to));
        extra.insert("signal".into(), json!(kind.wire()));
        self.to_room(RoomMessage::AiStatus(AiStatus {
            status: String::from("error"),
            session_id: Some(self.settings.session.clone()),
            from_id: None,
            extra,
        }));
    }

    pub(super) fn status(&self, status: &str) {
        let frame = RoomMessage::AiStatus(AiStatus {
            status: status.to_owned(),
            session_id: Some(self.settings.session.clone()),
            from_id: None,
            extra: Map::new(),
        });
        self.to_room(frame);
    }

    pub(super) fn to_room(&self, message: RoomMessage) {
        self.send_room(RoomCommand::Send(message));
    }
}

/// Which signal a refusal is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Offer,
    Candidate,
    Answer,
}

impl Kind {
    fn wire(self) -> &'static str {
        match self {
            Self::Offer => "offer",
            Self::Candidate => "ice-candidate",
            Self::Answer => "answer",
        }
    }
}
