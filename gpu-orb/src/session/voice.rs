//! The session's side of the voice: starting the pipeline (listener thread, speaker
//! thread and pacer, conductor) when the settings turn it on, telling the room what
//! the conductor reports, and the end-of-session `session_summary`.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use serde_json::{Map, json};
use shared::ipc::{OrbToManager, SessionSummary};
use shared::room::{AiResponse, AiStatus, RoomMessage};
use tokio::sync::{mpsc, oneshot};

use super::Session;
use crate::brain::Brain;
use crate::media::AudioEngine;
use crate::settings::Settings;
use crate::voice::conductor::{self, Control, Deps, VoiceHandle, VoiceUpdate};
use crate::voice::dsp::VadConfig;
use crate::voice::settings::VoicePlan;
use crate::voice::{VoiceEngine, listener, providers, speaker};

/// Opus frames the listener thread holds before peers' frames are dropped (~1 s of 20 peers).
const EAR_QUEUE: usize = 1000;
/// Speech events queued towards the conductor.
const HEARD_QUEUE: usize = 16;
/// Longest the summary may take of the stop's time.
const SUMMARY_AT_MOST: Duration = Duration::from_secs(3);

/// A running voice: the engine the media hub opens sinks of, and the conductor's handle.
pub(super) struct Voice {
    pub engine: Arc<dyn AudioEngine>,
    pub handle: VoiceHandle,
}

/// Starts the voice when the settings say so; `None` (with the reason logged) otherwise.
pub(super) fn start<B: Brain>(settings: &Settings, brain: Arc<B>, user_id: &str) -> Option<Voice> {
    let voice = &settings.voice;
    let plan = match &voice.plan {
        VoicePlan::Off { reason } => {
            tracing::info!(%reason, "voice off");
            return None;
        }
        VoicePlan::On(plan) => plan,
    };
    let started = (|| -> Result<Voice, String> {
        let providers = providers::build(plan).map_err(|e| format!("speech providers: {e}"))?;
        let (ears_tx, ears_rx) = std::sync::mpsc::sync_channel(EAR_QUEUE);
        let (heard_tx, heard_rx) = mpsc::channel(HEARD_QUEUE);
        let (spoken_tx, spoken_rx) = mpsc::channel(16);
        let paused = Arc::new(AtomicBool::new(false));
        let vad = VadConfig {
            end_silence_ms: millis(voice.end_silence),
            max_utterance_ms: millis(voice.max_utterance),
            ..VadConfig::default()
        };
        // The threads end when their queues close (the engine and the mouth dropped).
        listener::spawn(ears_rx, heard_tx, vad, paused.clone()).map_err(|e| format!("voice-ears thread: {e}"))?;
        let mouths = crate::voice::Mouths::default();
        let (mouth, _mouth_thread) =
            speaker::start(mouths.clone(), spoken_tx).map_err(|e| format!("voice-mouth thread: {e}"))?;
        let handle = conductor::start(
            Deps {
                providers,
                brain,
                reply: voice.reply,
                names: voice.names.clone(),
                call: plan.call,
                ai_id: user_id.to_owned(),
                log_transcripts: voice.log_transcripts,
                paused,
            },
            mouth,
            heard_rx,
            spoken_rx,
        );
        Ok(Voice {
            engine: Arc::new(VoiceEngine::new(ears_tx, mouths)),
            handle,
        })
    })();
    match started {
        Ok(v) => {
            tracing::info!(reply = ?voice.reply, names = ?voice.names, "voice on");
            Some(v)
        }
        Err(error) => {
            tracing::error!(%error, "voice could not start: the AI hears and says nothing");
            None
        }
    }
}

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

impl<B: Brain> Session<B> {
    /// Tells the room what the conductor reports.
    pub(super) fn on_voice(&mut self, update: VoiceUpdate) {
        match update {
            VoiceUpdate::Status(status) => self.status(status),
            VoiceUpdate::Response { text, in_reply_to } => self.to_room(RoomMessage::AiResponse(AiResponse {
                text,
                in_reply_to: Some(in_reply_to),
                from_id: None,
                extra: Map::new(),
            })),
            VoiceUpdate::Error { code, message } => {
                let mut extra = Map::new();
                extra.insert("code".into(), json!(code));
                extra.insert("message".into(), json!(message));
                self.to_room(RoomMessage::AiStatus(AiStatus {
                    status: "error".to_owned(),
                    session_id: Some(self.settings.session.clone()),
                    from_id: None,
                    extra,
                }));
            }
        }
    }

    /// The roles of `peers`, for the transcript.
    pub(super) fn tell_voice_roles(&self, peers: &[shared::room::Participant]) {
        for p in peers {
            self.voice_control(Control::Role {
                user: p.user_id.clone(),
                role: p.user_role.clone(),
            });
        }
    }

    /// Hands a control to the conductor (dropped when it is that far behind).
    pub(super) fn voice_control(&self, control: Control) {
        if let Some(voice) = &self.voice
            && voice.handle.control.try_send(control).is_err()
        {
            tracing::warn!("voice conductor busy: a control was dropped");
        }
    }

    /// The transcript and, if the brain makes it within `bound`, a summary, as
    /// `session_summary` to the manager (nothing without a voice or a manager), within `bound`.
    pub(super) async fn send_summary(&mut self, bound: Duration) {
        let (Some(voice), Some(ipc)) = (self.voice.as_ref(), self.ipc.as_ref()) else {
            return;
        };
        let (tx, rx) = oneshot::channel();
        if voice.handle.control.send(Control::Finish(tx)).await.is_err() {
            return;
        }
        let Ok(Ok(transcript)) = tokio::time::timeout(bound / 4, rx).await else {
            return;
        };
        let bound = bound.saturating_sub(bound / 4);
        let lines: Vec<String> = transcript
            .entries()
            .map(|e| format!("{} ({}): {}", e.speaker, e.role, e.text))
            .collect();
        let summary = if lines.is_empty() {
            None
        } else {
            let prompt = format!(
                "Summarise this coaching session in a few sentences for the coach:\n{}",
                lines.join("\n")
            );
            let within = bound.min(SUMMARY_AT_MOST);
            match tokio::time::timeout(within, self.brain_shared.reply(prompt)).await {
                Ok(Ok(text)) => Some(text),
                Ok(Err(error)) => {
                    tracing::warn!(%error, "no session summary: the transcript goes alone");
                    None
                }
                Err(_) => {
                    tracing::warn!(
                        within_ms = within.as_millis(),
                        "session summary too slow: the transcript goes alone"
                    );
                    None
                }
            }
        };
        let summary = transcript.to_json_within(summary, shared::ipc::MAX_SUMMARY_BYTES);
        tracing::info!(
            turns = transcript.turns(),
            truncated = transcript.truncated(),
            "session summary sent"
        );
        let _ = ipc
            .send(OrbToManager::SessionSummary(SessionSummary {
                room_id: self.settings.room.clone(),
                session_id: self.settings.session.clone(),
                summary,
                extra: Map::new(),
            }))
            .await;
    }
}
