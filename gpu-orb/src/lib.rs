//! `gpu-orb`: the per-room AI worker that cpu-server spawns for each video room.
//!
//! One orb joins one room over WebSocket as the AI participant
//! (`ai-orb-<session>`), answers `ai_control` messages through a [`brain::Brain`],
//! reports health to its manager over the inherited `NODE_CHANNEL_FD` channel,
//! and ends cleanly on a signal, a manager request, its lifetime, idleness or
//! the end of the session. Run by hand (no `NODE_CHANNEL_FD`) it behaves the
//! same minus IPC. See docs/protocol.md §1–§3 for the wire formats.
//!
//! # Layout
//! - [`cli`]: the clap command line (`--room=… --session=…`, each flag with its env name).
//! - [`settings`]: flag > environment > `.env` > default, validated all at once.
//! - [`logging`]: tracing to stderr and `ORB_LOG_DIR/orb-<room>.log`.
//! - [`session`]: the orchestrator task owning all state; [`session::Stop`] ends it.
//! - [`room_link`]: the WebSocket task (join, ping, latency, reconnect with backoff).
//! - [`ipc_link`]: the manager channel task (typed lines both ways).
//! - [`manager_link`]: without `NODE_CHANNEL_FD`, the same channel over a WebSocket (`ORB_LINK_URL`).
//! - [`warm`]: `--warm`: started in no room, waiting on the manager channel for `orb_assign`.
//! - [`brain`]: the [`brain::Brain`] trait, [`brain::TestBrain`] and [`brain::OpenAiBrain`].
//! - [`media`]: the WebRTC answerer (one task per peer), the audio seam, test-mode echo.
//! - [`voice`]: the voice pipeline: turn detection, speech providers, paced answers, the voice settings.
//! - [`presence`] (room and manager views of who is there), [`idle`] (idle means nobody
//!   there), [`participants`], [`backoff`], [`metrics`]: small pure pieces.
//! - [`exit`]: exit codes (SIGTERM/SIGINT come from `shared::signals`).
//!
//! # Tasks and channels
//! One current-thread runtime, three tasks. The session task owns all mutable
//! state (presence, idle and lifetime deadlines, heartbeat timer, pause
//! flag, the brain queue: one request in flight, at most four waiting). The room link owns the WebSocket and the
//! ping/latency bookkeeping; the IPC link owns the framed manager socket.
//! Session → links: bounded queues filled with `try_send` (a frame or heartbeat
//! is dropped and logged, never queued without bound, when a link stops reading).
//! Links → session: bounded event channels. Brain requests run as a task of the
//! session's [`brain::BrainQueue`] (one at a time, at most four `say`s waiting,
//! the rest refused `busy`) so a slow endpoint never blocks the loop.
//!
//! # Exit codes
//! | code | meaning |
//! |---|---|
//! | 0 | normal end: SIGTERM/SIGINT, `shutdown_graceful`, `--max-lifetime` (`timeout`), `--idle-timeout` (`idle_timeout`), `end_session` (`session_complete`), manager channel closed (`manager_gone`) |
//! | 1 | internal failure before the session could start |
//! | 2 | the room stayed unreachable longer than `ORB_RECONNECT_GRACE` |
//! | 3 | the room server refused the orb (`error` `forbidden`/`unauthorized` to the join, or HTTP 401/403 on upgrade) |
//! | 64 | bad settings (all reported at once, each naming its flag/variable), or an unusable `NODE_CHANNEL_FD` |
//! | 130 | a second signal arrived during the graceful shutdown |
//!
//! # Environment
//! Flags: `ROOM_ID`, `SESSION_ID`, `COACH_ID`, `CLIENT_ID`, `CPU_SERVER_HOST`, `CPU_WEBSOCKET_URL`,
//! `CPU_SERVER_URL`, `MAX_ORB_LIFETIME`, `IDLE_TIMEOUT`, `ORB_TEST_MODE`. Environment only:
//! `ORB_HEARTBEAT_INTERVAL` (30000 ms), `ORB_PING_INTERVAL` (30000 ms), `ORB_RECONNECT_GRACE`
//! (60000 ms), `ORB_SHUTDOWN_TIMEOUT` (5000 ms), `ORB_LOG_DIR` (not written when `ORB_SUPERVISED` is set: the manager files stderr there), `ORB_AUTH_TOKEN` (never logged),
//! `OPENAI_API_KEY`, `OPENAI_BASE_URL`, `OPENAI_MODEL`, `OPENAI_TIMEOUT` (30000 ms), `NODE_CHANNEL_FD`,
//! `ORB_MEDIA` (true), `ORB_MEDIA_IP` (127.0.0.1), `ORB_MEDIA_PORTS` (any),
//! voice (gpu-orb/src/voice/settings.rs): `ORB_VOICE_*`, `ORB_STT_*`, `ORB_TTS_*`, `ELEVENLABS_*`
//! (`ELEVENLABS_API_KEY` never logged), `ORB_PROVIDER_TIMEOUT`, `ORB_PROVIDER_RETRIES`, `ORB_LOG_TRANSCRIPTS`,
//! `RUST_LOG`.

pub mod backoff;
pub mod brain;
pub mod cli;
pub mod exit;
pub mod idle;
pub mod ipc_link;
pub mod logging;
pub mod manager_link;
pub mod media;
pub mod metrics;
pub mod participants;
pub mod presence;
pub mod room_link;
pub mod session;
pub mod settings;
pub mod voice;
pub mod warm;

use std::os::unix::net::UnixStream;

use shared::signals::Signals;
use tracing::Instrument;

use crate::brain::{Brain, OpenAiBrain, TestBrain};
use crate::ipc_link::ManagerChannel;
use crate::session::Session;
use crate::settings::{BrainSettings, Settings};

/// Runs one orb until it ends; returns the process exit code.
///
/// Must run inside a tokio runtime with IO and time enabled; `channel` is
/// the manager's socket from `shared::ipc::channel_from_env`, if any. A warm
/// orb (`--warm`) builds its brain first, then waits there for its room.
pub async fn run(settings: Settings, channel: Option<UnixStream>) -> i32 {
    let mut signals = match Signals::install() {
        Ok(signals) => signals,
        Err(error) => {
            tracing::error!(%error, "cannot install signal handlers");
            return exit::INTERNAL;
        }
    };
    match settings.brain.clone() {
        BrainSettings::Echo => serve(settings, TestBrain, channel, &mut signals).await,
        BrainSettings::OpenAi(openai) => match OpenAiBrain::new(openai) {
            Ok(brain) => serve(settings, brain, channel, &mut signals).await,
            Err(error) => {
                tracing::error!(%error, "cannot build the OpenAI client");
                exit::INTERNAL
            }
        },
    }
}

async fn serve<B: Brain>(mut settings: Settings, brain: B, channel: Option<UnixStream>, signals: &mut Signals) -> i32 {
    let channel = if settings.warm {
        // The inherited socket, or the supervision link of a job on another host.
        let Some(manager) = manager_channel(&settings, channel).ok().flatten() else {
            tracing::error!(
                "--warm needs the manager channel (NODE_CHANNEL_FD or ORB_LINK_URL): run it under cpu-server"
            );
            return exit::USAGE;
        };
        let waiting = warm::await_room(&mut settings, manager, signals);
        match waiting.instrument(tracing::info_span!("orb", room = "(warm)")).await {
            Ok(taken) => taken,
            Err(code) => return code,
        }
    } else {
        match manager_channel(&settings, channel) {
            Ok(channel) => (channel, None),
            Err(code) => return code,
        }
    };
    let (channel, seat) = channel;
    let span = tracing::info_span!("orb", room = %settings.room, session = %settings.session);
    async move {
        match Session::start(settings, brain, channel, seat) {
            Ok(session) => session.run(signals).await,
            Err(error) => {
                tracing::error!(%error, "cannot use the manager channel");
                exit::USAGE
            }
        }
    }
    .instrument(span)
    .await
}

/// The inherited channel, or the supervision link over a WebSocket (`ORB_LINK_URL`), or none.
fn manager_channel(settings: &Settings, channel: Option<UnixStream>) -> Result<Option<ManagerChannel>, i32> {
    Ok(match (channel, &settings.link_url, &settings.auth_token) {
        (Some(inherited), _, _) => Some(inherited.into()),
        (None, Some(url), Some(token)) => {
            let target = manager_link::LinkTarget {
                url: url.clone(),
                token: token.clone(),
                grace: settings.reconnect_grace,
            };
            match manager_link::start(target) {
                Ok(channel) => Some(channel.into()),
                Err(error) => {
                    tracing::error!(%error, "cannot start the supervision link");
                    return Err(exit::INTERNAL);
                }
            }
        }
        (None, Some(_), None) => {
            tracing::warn!("ORB_LINK_URL without ORB_AUTH_TOKEN: running without supervision");
            None
        }
        (None, None, _) => None,
    })
}
