//! The conductor: the one task that owns the voice's state (stage, transcript, the
//! utterance in flight). A finished utterance goes to speech-to-text, its text into the
//! transcript and, when the AI is addressed ([`should_answer`]), with the recent
//! transcript to the brain; the answer goes to the room as text and, sentence by
//! sentence, to text-to-speech and the [`Mouth`]. One utterance is in flight per orb (the
//! latest one waiting behind it); a human starting to speak while the AI speaks stops
//! it (barge-in). Every step is bounded by the providers' timeouts; a failure tells the
//! room (`ai_status` error with a code) and the AI listens again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use shared::clock::epoch_ms;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::listener::{Heard, Utterance};
use super::providers::{PcmStream, Providers, with_retries};
use super::settings::{CallPolicy, ReplyMode};
use super::speaker::{Mouth, Speech, Spoken};
use super::transcript::{Entry, Transcript};
use super::turns::should_answer;
use crate::brain::Brain;

/// Characters of one text-to-speech request at most (OpenAI refuses beyond 4096).
const TTS_CHUNK_CHARS: usize = 400;

/// What the voice asks the session to tell the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoiceUpdate {
    /// `ai_status` with this status.
    Status(&'static str),
    /// `ai_response`: the AI's answer to `in_reply_to`.
    Response {
        /// The answer.
        text: String,
        /// The speaker it answers.
        in_reply_to: String,
    },
    /// `ai_status` `error` with a stable code.
    Error {
        /// `stt_failed`, `stt_timeout`, `tts_failed`, `tts_timeout`, `brain_failed`.
        code: &'static str,
        /// For people.
        message: String,
    },
}

/// What the session tells the voice.
#[derive(Debug)]
pub enum Control {
    /// A participant's role (for the transcript).
    Role {
        /// userId.
        user: String,
        /// Their role.
        role: String,
    },
    /// `ai_control` pause (`true`) or resume.
    Pause(bool),
    /// The session ends: the transcript so far.
    Finish(oneshot::Sender<Transcript>),
}

/// The stage the heartbeat reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Waiting for speech.
    Listening,
    /// An answer is being made.
    Thinking,
    /// The AI is speaking.
    Speaking,
    /// `ai_control` pause.
    Paused,
}

impl Stage {
    /// The `ai_status` / heartbeat word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Listening => "listening",
            Self::Thinking => "thinking",
            Self::Speaking => "speaking",
            Self::Paused => "paused",
        }
    }
}

/// The voice's health, published for the heartbeat.
#[derive(Debug, Clone)]
pub struct VoiceHealth {
    /// The stage now.
    pub stage: Stage,
    /// Since when.
    pub stage_since: Instant,
    /// When the utterance in flight was accepted (until its answer starts, it is ignored, or it fails).
    pub pending_since: Option<Instant>,
    /// Utterances heard.
    pub utterances: u64,
    /// Answers spoken.
    pub answers: u64,
    /// Failures.
    pub errors: u64,
    /// The last failure's code.
    pub last_error: Option<&'static str>,
    /// The last answer: end of turn decided → its first frame sent, ms.
    pub last_latency_ms: Option<u64>,
    /// Of which the providers and the brain took, ms.
    pub last_provider_ms: Option<u64>,
}

impl VoiceHealth {
    fn new(now: Instant) -> Self {
        Self {
            stage: Stage::Listening,
            stage_since: now,
            pending_since: None,
            utterances: 0,
            answers: 0,
            errors: 0,
            last_error: None,
            last_latency_ms: None,
            last_provider_ms: None,
        }
    }

    /// The heartbeat's `voice` object (docs/protocol.md §3).
    pub fn to_json(&self, now: Instant) -> Value {
        let ms = |since: Instant| u64::try_from(now.saturating_duration_since(since).as_millis()).unwrap_or(u64::MAX);
        json!({
            "stage": self.stage.as_str(),
            "stage_age_ms": ms(self.stage_since),
            "pending_ms": self.pending_since.map(ms),
            "utterances": self.utterances,
            "answers": self.answers,
            "errors": self.errors,
            "last_error": self.last_error,
            "last_latency_ms": self.last_latency_ms,
            "last_provider_ms": self.last_provider_ms,
        })
    }
}

/// What the conductor needs.
pub struct Deps<B: Brain> {
    /// Speech-to-text and text-to-speech.
    pub providers: Providers,
    /// The brain (shared with typed `say`).
    pub brain: Arc<B>,
    /// `ORB_VOICE_REPLY`.
    pub reply: ReplyMode,
    /// `ORB_VOICE_NAMES`.
    pub names: Vec<String>,
    /// Timeouts and retries of the provider calls.
    pub call: CallPolicy,
    /// The AI's own userId (its transcript lines).
    pub ai_id: String,
    /// `ORB_LOG_TRANSCRIPTS`.
    pub log_transcripts: bool,
    /// Shared with the listener thread: paused hears nothing.
    pub paused: Arc<AtomicBool>,
}

/// The session's handle on the conductor.
#[derive(Debug)]
pub struct VoiceHandle {
    /// Controls.
    pub control: mpsc::Sender<Control>,
    /// What to tell the room.
    pub updates: mpsc::Receiver<VoiceUpdate>,
    /// The health for the heartbeat.
    pub health: watch::Receiver<VoiceHealth>,
}

/// The step in flight.
enum Step {
    Transcribe(JoinHandle<Result<String, super::providers::ProviderError>>),
    Think(JoinHandle<Result<String, crate::brain::BrainError>>),
    Speak(JoinHandle<Result<(), super::providers::ProviderError>>),
    /// All PCM is with the mouth: waiting for its `Finished`.
    Playing,
}

struct Turn {
    id: u64,
    utterance: Utterance,
    provider_time: Duration,
    step: Step,
    step_started: Instant,
    speaker_role: String,
    text: String,
}

struct Conductor<B: Brain> {
    deps: Deps<B>,
    mouth: Mouth,
    updates: mpsc::Sender<VoiceUpdate>,
    health: watch::Sender<VoiceHealth>,
    transcript: Transcript,
    roles: std::collections::HashMap<String, String>,
    turn: Option<Turn>,
    waiting: Option<Utterance>,
    next_id: u64,
    speaking: Option<(u64, Instant, Duration)>,
}

/// Starts the conductor task.
pub fn start<B: Brain>(
    deps: Deps<B>,
    mouth: Mouth,
    heard: mpsc::Receiver<Heard>,
    spoken: mpsc::Receiver<Spoken>,
) -> VoiceHandle {
    let (control_tx, control) = mpsc::channel(32);
    let (updates_tx, updates) = mpsc::channel(64);
    let (health_tx, health) = watch::channel(VoiceHealth::new(Instant::now()));
    let conductor = Conductor {
        deps,
        mouth,
        updates: updates_tx,
        health: health_tx,
        transcript: Transcript::default(),
        roles: std::collections::HashMap::new(),
        turn: None,
        waiting: None,
        next_id: 1,
        speaking: None,
    };
    tokio::spawn(conductor.run(heard, spoken, control));
    VoiceHandle {
        control: control_tx,
        updates,
        health,
    }
}

impl<B: Brain> Conductor<B> {
    async fn run(
        mut self,
        mut heard: mpsc::Receiver<Heard>,
        mut spoken: mpsc::Receiver<Spoken>,
        mut control: mpsc::Receiver<Control>,
    ) {
        loop {
            tokio::select! {
                event = heard.recv() => match event {
                    Some(Heard::SpeechStarted { peer }) => self.on_speech_started(&peer),
                    Some(Heard::Utterance(u)) => self.on_utterance(u),
                    None => break,
                },
                done = step_done(self.turn.as_mut()) => self.on_step_done(done).await,
                report = spoken.recv() => match report {
                    Some(report) => self.on_spoken(report),
                    None => break,
                },
                command = control.recv() => match command {
                    Some(Control::Role { user, role }) => { self.roles.insert(user, role); }
                    Some(Control::Pause(paused)) => self.on_pause(paused),
                    Some(Control::Finish(reply)) => {
                        self.abort_turn();
                        let _ = reply.send(std::mem::take(&mut self.transcript));
                    }
                    None => break,
                },
            }
        }
        self.abort_turn();
    }

    fn on_speech_started(&mut self, peer: &str) {
        if let Some((turn, ..)) = self.speaking {
            tracing::info!(peer, turn, "barge-in: a human speaks, the AI stops");
            self.mouth.cancel(turn);
            self.speaking = None;
            if let Some(t) = self.turn.as_ref().filter(|t| t.id == turn) {
                if let Step::Speak(task) = &t.step {
                    task.abort();
                }
                self.turn = None;
            }
            self.set_stage(Stage::Listening);
            self.next_waiting();
        }
    }

    fn on_utterance(&mut self, u: Utterance) {
        if self.deps.paused.load(Ordering::Relaxed) {
            return;
        }
        self.health.send_modify(|h| h.utterances += 1);
        if self.turn.is_some() {
            // One in flight: the latest utterance waits behind it.
            tracing::debug!(peer = %u.peer, "an utterance waits behind the one in flight");
            self.waiting = Some(u);
            return;
        }
        self.begin(u);
    }

    fn begin(&mut self, utterance: Utterance) {
        let id = self.next_id;
        self.next_id += 1;
        let stt = self.deps.providers.stt.clone();
        let call = self.deps.call;
        let wav = utterance.wav.clone();
        tracing::info!(peer = %utterance.peer, audio_ms = utterance.audio_ms, turn = id, "utterance to speech-to-text");
        let task = tokio::spawn(async move {
            with_retries(call.attempts(), call.base_delay, || stt.transcribe(wav.clone())).await
        });
        let now = Instant::now();
        let speaker_role = self.roles.get(&*utterance.peer).cloned().unwrap_or_default();
        self.health.send_modify(|h| h.pending_since = Some(utterance.decided));
        self.turn = Some(Turn {
            id,
            utterance,
            provider_time: Duration::ZERO,
            step: Step::Transcribe(task),
            step_started: now,
            speaker_role,
            text: String::new(),
        });
    }

    async fn on_step_done(&mut self, done: StepDone) {
        let Some(mut turn) = self.turn.take() else { return };
        turn.provider_time += turn.step_started.elapsed();
        match done {
            StepDone::Transcribed(Ok(text)) => self.transcribed(turn, text),
            StepDone::Thought(Ok(answer)) => self.thought(turn, answer),
            StepDone::Spoke(Ok(())) => {
                // The last PCM is with the mouth; `Finished` ends the turn.
                turn.step = Step::Playing;
                self.turn = Some(turn);
            }
            StepDone::Spoke(Err(e)) => {
                // Whatever of the answer the mouth holds goes too.
                self.mouth.cancel(turn.id);
                self.speaking = None;
                self.failed(e.code(), e.to_string());
            }
            StepDone::Transcribed(Err(e)) => self.failed(e.code(), e.to_string()),
            StepDone::Thought(Err(e)) => self.failed("brain_failed", e.to_string()),
            StepDone::Aborted => self.settle(),
        }
    }

    fn transcribed(&mut self, mut turn: Turn, text: String) {
        let speaker = turn.utterance.peer.to_string();
        if self.deps.log_transcripts {
            tracing::info!(%speaker, %text, "heard");
        } else {
            tracing::info!(%speaker, chars = text.len(), stt_ms = turn.provider_time.as_millis(), "heard");
        }
        if text.trim().is_empty() {
            self.settle();
            return;
        }
        let entry = Entry {
            speaker: speaker.clone(),
            role: turn.speaker_role.clone(),
            text: text.clone(),
            at_ms: epoch_ms(),
        };
        self.transcript.push(entry.clone());
        if turn.utterance.cut_at_max || !should_answer(self.deps.reply, &self.deps.names, &text) {
            if !turn.utterance.cut_at_max {
                tracing::debug!(%speaker, "not addressed to the AI: no answer");
            }
            self.settle();
            return;
        }
        self.set_stage(Stage::Thinking);
        let prompt = self.transcript.prompt_for(&entry);
        let brain = self.deps.brain.clone();
        turn.text = text;
        turn.step_started = Instant::now();
        turn.step = Step::Think(tokio::spawn(async move { brain.reply(prompt).await }));
        self.turn = Some(turn);
    }

    fn thought(&mut self, mut turn: Turn, answer: String) {
        let speaker = turn.utterance.peer.to_string();
        self.send(VoiceUpdate::Response {
            text: answer.clone(),
            in_reply_to: speaker,
        });
        self.transcript.push(Entry {
            speaker: self.deps.ai_id.clone(),
            role: "ai".to_owned(),
            text: answer.clone(),
            at_ms: epoch_ms(),
        });
        let tts = self.deps.providers.tts.clone();
        let call = self.deps.call;
        let mouth = self.mouth.clone();
        let id = turn.id;
        turn.step_started = Instant::now();
        turn.step = Step::Speak(tokio::spawn(
            async move { speak(&*tts, &call, &mouth, id, &answer).await },
        ));
        self.turn = Some(turn);
    }

    fn on_spoken(&mut self, report: Spoken) {
        match report {
            Spoken::FirstFrame { turn, at } => {
                let Some(t) = self.turn.as_ref().filter(|t| t.id == turn) else {
                    return;
                };
                let latency = at.saturating_duration_since(t.utterance.decided);
                // Provider time up to now: the steps done, plus the current one until its first audio.
                let provider = t.provider_time + at.saturating_duration_since(t.step_started);
                self.speaking = Some((turn, at, provider));
                // The bench (tests/src/bench_voice.rs) reads these fields.
                tracing::info!(
                    turn,
                    latency_us = latency.as_micros(),
                    provider_us = provider.as_micros(),
                    silence_waited_ms = t.utterance.silence_waited_ms,
                    "the AI speaks"
                );
                let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
                self.health.send_modify(|h| {
                    h.pending_since = None;
                    h.answers += 1;
                    h.last_latency_ms = Some(ms(latency));
                    h.last_provider_ms = Some(ms(provider));
                });
                self.set_stage(Stage::Speaking);
            }
            Spoken::Finished { turn } => {
                if self.speaking.is_some_and(|(t, ..)| t == turn) {
                    self.speaking = None;
                }
                if self.turn.as_ref().is_some_and(|t| t.id == turn) {
                    self.turn = None;
                    self.settle();
                }
            }
        }
    }

    fn on_pause(&mut self, paused: bool) {
        self.deps.paused.store(paused, Ordering::Relaxed);
        if paused {
            self.abort_turn();
            self.waiting = None;
        }
        // The session tells the room `paused` / `listening` itself.
        let stage = if paused { Stage::Paused } else { Stage::Listening };
        self.health.send_modify(|h| {
            h.stage = stage;
            h.stage_since = Instant::now();
        });
    }

    fn failed(&mut self, code: &'static str, message: String) {
        tracing::warn!(code, %message, "the voice could not answer");
        self.health.send_modify(|h| {
            h.errors += 1;
            h.last_error = Some(code);
        });
        self.send(VoiceUpdate::Error {
            code,
            message: format!("The AI could not answer: {message}"),
        });
        let stage = self.health.borrow().stage;
        if stage == Stage::Listening {
            // Said again after every error, so a page knows the AI still listens.
            self.send(VoiceUpdate::Status(stage.as_str()));
        }
        self.settle();
    }

    /// The turn is over (answered, ignored, failed): listen, and take the waiting utterance.
    fn settle(&mut self) {
        self.health.send_modify(|h| h.pending_since = None);
        if !self.deps.paused.load(Ordering::Relaxed) {
            self.set_stage(Stage::Listening);
        }
        self.next_waiting();
    }

    fn next_waiting(&mut self) {
        if self.turn.is_none()
            && let Some(u) = self.waiting.take()
        {
            self.begin(u);
        }
    }

    fn abort_turn(&mut self) {
        if let Some(turn) = self.turn.take() {
            match turn.step {
                Step::Transcribe(t) => t.abort(),
                Step::Think(t) => t.abort(),
                Step::Speak(t) => t.abort(),
                Step::Playing => {}
            }
            self.mouth.cancel(turn.id);
        }
        self.speaking = None;
        self.health.send_modify(|h| h.pending_since = None);
    }

    fn set_stage(&mut self, stage: Stage) {
        let changed = self.health.borrow().stage != stage;
        if changed {
            self.health.send_modify(|h| {
                h.stage = stage;
                h.stage_since = Instant::now();
            });
            self.send(VoiceUpdate::Status(stage.as_str()));
        }
    }

    fn send(&self, update: VoiceUpdate) {
        if self.updates.try_send(update).is_err() {
            tracing::warn!("session behind: a voice update was dropped");
        }
    }
}

enum StepDone {
    Transcribed(Result<String, super::providers::ProviderError>),
    Thought(Result<String, crate::brain::BrainError>),
    Spoke(Result<(), super::providers::ProviderError>),
    Aborted,
}

/// The step in flight's result, or never without one.
async fn step_done(turn: Option<&mut Turn>) -> StepDone {
    let Some(turn) = turn else {
        return std::future::pending().await;
    };
    match &mut turn.step {
        Step::Transcribe(t) => t.await.map_or(StepDone::Aborted, StepDone::Transcribed),
        Step::Think(t) => t.await.map_or(StepDone::Aborted, StepDone::Thought),
        Step::Speak(t) => match t.await {
            Ok(r) => StepDone::Spoke(r),
            Err(_) => StepDone::Aborted,
        },
        Step::Playing => std::future::pending().await,
    }
}

/// Speaks `text` as answer `turn`: sentence groups to text-to-speech one after another,
/// each streamed to the mouth as it arrives.
async fn speak(
    tts: &dyn super::providers::TextToSpeech,
    call: &CallPolicy,
    mouth: &Mouth,
    turn: u64,
    text: &str,
) -> Result<(), super::providers::ProviderError> {
    let mut begun = false;
    for piece in sentence_groups(text, TTS_CHUNK_CHARS) {
        let mut stream: PcmStream = with_retries(call.attempts(), call.base_delay, || tts.speak(&piece)).await?;
        if !begun {
            begun = true;
            if !mouth
                .say(Speech::Begin {
                    turn,
                    rate: stream.rate(),
                })
                .await
            {
                return Ok(());
            }
        }
        while let Some(bytes) = stream.next_chunk().await? {
            let samples = bytes
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect();
            if !mouth.say(Speech::Pcm { turn, samples }).await {
                return Ok(());
            }
        }
    }
    mouth.say(Speech::End { turn }).await;
    Ok(())
}

/// `text` cut after sentence ends into pieces of at most about `max` characters.
pub fn sentence_groups(text: &str, max: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    for sentence in text.split_inclusive(['.', '!', '?', '\n']) {
        if !current.is_empty() && current.len() + sentence.len() > max {
            out.push(std::mem::take(&mut current));
        }
        let mut rest = sentence;
        while rest.len() > max {
            let cut = rest
                .char_indices()
                .map(|(i, _)| i)
                .take_while(|&i| i <= max)
                .last()
                .unwrap_or(rest.len());
            let cut = if cut == 0 { rest.len() } else { cut };
            out.push(rest[..cut].to_owned());
            rest = &rest[cut..];
        }
        current.push_str(rest);
    }
    if !current.trim().is_empty() {
        out.push(current);
    }
    out.retain(|p| !p.trim().is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_cut_after_sentences_within_the_bound() {
        assert_eq!(sentence_groups("One. Two! Three?", 100), vec!["One. Two! Three?"]);
        assert_eq!(sentence_groups("One. Two! Three?", 8), vec!["One.", " Two!", " Three?"]);
        let long = "x".repeat(25);
        let pieces = sentence_groups(&long, 10);
        assert_eq!(pieces.concat(), long);
        assert!(pieces.iter().all(|p| p.len() <= 10));
        assert!(sentence_groups("  ", 10).is_empty());
    }
}
