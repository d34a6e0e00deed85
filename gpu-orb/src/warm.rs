//! Warm start (`--warm`): the orb starts in no room and waits on its manager
//! channel for `orb_assign`.
//!
//! It says `orb_warm` once it can take a room, and heartbeats like any orb
//! meanwhile, so the manager finds a warm orb that hangs. On the assignment it
//! takes the room, session, coach, client and token, answers `orb_assigned`,
//! and hands the channel to the session, with whatever the manager sent after
//! the assignment still unread. A `shutdown_graceful`, the end of the channel
//! or a signal ends it before that (exit 0).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Map;
use shared::ipc::{
    IpcCodec, IpcEvent, MAX_ORB_LINE_BYTES, ManagerToOrb, OrbAssign, OrbAssigned, OrbHeartbeat, OrbMetrics,
    OrbToManager, OrbWarm,
};
use shared::secret::Secret;
use shared::signals::Signals;
use tokio::net::UnixStream;
use tokio_util::codec::Framed;

use crate::exit;
use crate::ipc_link::ManagerChannel;
use crate::metrics::{CpuSampler, rss_mb};
use crate::settings::{Settings, check_room_id};

type Channel = Framed<UnixStream, IpcCodec<ManagerToOrb, OrbToManager>>;

/// Bound of one write to the manager (it reads continuously; a full socket means it is stuck).
const WRITE_BOUND: Duration = Duration::from_secs(5);

/// Waits for the room. `Ok`: `settings` now hold the assignment and the channel
/// goes on to the session; `Err`: the exit code (the orb ends without a room).
pub async fn await_room(
    settings: &mut Settings,
    channel: ManagerChannel,
    signals: &mut Signals,
) -> Result<ManagerChannel, i32> {
    let stream = UnixStream::from_std(channel.stream).map_err(|error| {
        tracing::error!(%error, "cannot use the manager channel");
        exit::USAGE
    })?;
    let mut framed: Channel = Framed::new(stream, IpcCodec::new(MAX_ORB_LINE_BYTES));
    send(&mut framed, OrbToManager::OrbWarm(OrbWarm { extra: Map::new() })).await?;
    tracing::info!("warm: waiting for a room");
    let mut cpu = CpuSampler::new();
    let mut beat = tokio::time::interval(settings.heartbeat_interval);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    beat.tick().await; // the first tick is now
    let assign = loop {
        tokio::select! {
            signal = signals.recv() => {
                tracing::info!(signal, "signal while warm; exiting");
                return Err(exit::OK);
            }
            _ = beat.tick() => send(&mut framed, heartbeat(&mut cpu)).await?,
            line = framed.next() => match line {
                None | Some(Err(_)) => {
                    tracing::info!("manager channel closed while warm; exiting");
                    return Err(exit::OK);
                }
                Some(Ok(IpcEvent::Message(ManagerToOrb::OrbAssign(assign)))) => break assign,
                Some(Ok(IpcEvent::Message(ManagerToOrb::ShutdownGraceful(request)))) => {
                    tracing::info!(reason = %request.reason, "shutdown requested while warm");
                    return Err(exit::OK);
                }
                Some(Ok(other)) => tracing::debug!(?other, "ignored while warm"),
            },
        }
    };
    take(settings, assign)?;
    let assigned = OrbAssigned {
        room_id: settings.room.clone(),
        extra: Map::new(),
    };
    send(&mut framed, OrbToManager::OrbAssigned(assigned)).await?;
    tracing::info!(room = %settings.room, session = %settings.session, "warm: assigned to room");
    let parts = framed.into_parts();
    let stream = parts.io.into_std().map_err(|error| {
        tracing::error!(%error, "cannot hand the manager channel to the session");
        exit::INTERNAL
    })?;
    Ok(ManagerChannel {
        stream,
        unread: parts.read_buf,
    })
}

/// Writes the assignment into the settings (what a cold orb's flags and token give it).
fn take(settings: &mut Settings, assign: OrbAssign) -> Result<(), i32> {
    if let Err(why) = check_room_id(&assign.room_id) {
        tracing::error!(room = %assign.room_id, why, "orb_assign with an unusable room id");
        return Err(exit::USAGE);
    }
    settings.room_url.push_str(&assign.room_id);
    settings.room = assign.room_id;
    settings.session = assign.session_id;
    settings.coach = assign.coach_id;
    settings.client = assign.client_id;
    settings.auth_token = Some(Secret::new(assign.token));
    settings.warm = false;
    Ok(())
}

fn heartbeat(cpu: &mut CpuSampler) -> OrbToManager {
    OrbToManager::OrbHeartbeat(OrbHeartbeat {
        room_id: String::new(),
        timestamp: shared::clock::epoch_ms(),
        metrics: OrbMetrics {
            cpu: cpu.sample(),
            memory: rss_mb(),
            latency: 0.0,
            extra: Map::new(),
        },
        extra: Map::new(),
    })
}

async fn send(framed: &mut Channel, message: OrbToManager) -> Result<(), i32> {
    match tokio::time::timeout(WRITE_BOUND, framed.send(message)).await {
        Ok(Ok(())) => Ok(()),
        _ => {
            tracing::info!("manager channel unwritable while warm; exiting");
            Err(exit::OK)
        }
    }
}
