//! Warm start (`--warm`): the orb starts in no room and waits on its manager
//! channel for `orb_assign`.
//!
//! First it opens its room socket (`/orb-seat`, with its process token), which
//! the server gives the orb's room when it gives the orb that room
//! (docs/protocol.md §3.3). Then it says `orb_warm`, and heartbeats like any
//! orb meanwhile, so the manager finds a warm orb that hangs; it reads the
//! socket too (so the server's pings are answered). On the assignment it takes
//! the room, session, coach, client and token; if the server says the socket
//! was given the room, it sends its `join` there at once (no connection to
//! make: this is what puts the AI in the room within a millisecond). Then it
//! answers `orb_assigned` and hands the channel to the session, with whatever
//! the manager sent after the assignment still unread, and the socket. A
//! `shutdown_graceful`, the end of the channel or a signal ends it before that
//! (exit 0).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Map;
use shared::ipc::{
    IpcCodec, IpcEvent, MAX_ORB_LINE_BYTES, ManagerToOrb, OrbAssign, OrbAssigned, OrbHeartbeat, OrbMetrics,
    OrbToManager, OrbWarm,
};
use shared::room::orb_user_id;
use shared::secret::Secret;
use shared::signals::Signals;
use tokio::net::UnixStream;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::codec::Framed;

use crate::exit;
use crate::ipc_link::ManagerChannel;
use crate::metrics::{CpuSampler, rss_mb};
use crate::room_link::{Seat, Socket, open_seat};
use crate::settings::{Settings, check_room_id};

type Channel = Framed<UnixStream, IpcCodec<ManagerToOrb, OrbToManager>>;

/// Bound of one write to the manager (it reads continuously; a full socket means it is stuck).
const WRITE_BOUND: Duration = Duration::from_secs(5);

/// Waits for the room. `Ok`: `settings` now hold the assignment, and the channel
/// (and the seated room socket, if any) go on to the session; `Err`: the exit
/// code (the orb ends without a room).
pub async fn await_room(
    settings: &mut Settings,
    channel: ManagerChannel,
    signals: &mut Signals,
) -> Result<(Option<ManagerChannel>, Option<Seat>), i32> {
    let stream = UnixStream::from_std(channel.stream).map_err(|error| {
        tracing::error!(%error, "cannot use the manager channel");
        exit::USAGE
    })?;
    let mut framed: Channel = Framed::new(stream, IpcCodec::new(MAX_ORB_LINE_BYTES));
    // Before `orb_warm`: the manager then holds the seat before it counts this orb ready.
    let mut seat = open(settings).await;
    if let Some(socket) = seat.as_mut()
        && !rehearse(socket).await
    {
        seat = None;
    }
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
            _ = beat.tick() => {
                send(&mut framed, heartbeat(&mut cpu)).await?;
                if let Some(socket) = seat.as_mut() && !rehearse(socket).await {
                    seat = None;
                }
            }
            frame = next_frame(seat.as_mut()) => {
                if !still_open(frame) {
                    seat = None;
                }
            }
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
    let seated = assign.seated;
    take(settings, assign)?;
    // The join first, before anything else: the room waits for it.
    let seat = match seat {
        Some(socket) if seated => join_on(socket, settings).await,
        _ => None,
    };
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
    let channel = ManagerChannel {
        stream,
        unread: parts.read_buf,
    };
    // Without a seat (none given, or it failed) the session connects and joins as a cold orb does.
    Ok((Some(channel), seat))
}

/// The room socket, opened while warm; `None` (logged) when it cannot be.
async fn open(settings: &Settings) -> Option<Socket> {
    let (Some(url), Some(token)) = (seat_url(&settings.room_url), &settings.auth_token) else {
        tracing::info!("warm: no token or no room URL path; the room will be joined after the assignment");
        return None;
    };
    match open_seat(&url, token).await {
        Ok(socket) => {
            tracing::debug!(%url, "warm: room socket open");
            Some(socket)
        }
        Err(why) => {
            tracing::warn!(%url, %why, "warm: cannot open the room socket; the room will be joined after the assignment");
            None
        }
    }
}

/// `/orb-seat` beside the room path of `room_url` (`ws://h/ws-simple/` → `ws://h/orb-seat`).
pub fn seat_url(room_url: &str) -> Option<String> {
    let base = room_url.trim_end_matches('/');
    let (scheme, rest) = base.split_once("://")?;
    let (host_and_path, _) = rest.rsplit_once('/')?;
    Some(format!("{scheme}://{host_and_path}/orb-seat"))
}

/// The next frame of the seat; never without one.
async fn next_frame(seat: Option<&mut Socket>) -> Option<Result<Message, WsError>> {
    match seat {
        Some(socket) => socket.next().await,
        None => std::future::pending().await,
    }
}

/// Whether the seat is still open after `frame` (pings and pongs are all it should carry).
fn still_open(frame: Option<Result<Message, WsError>>) -> bool {
    match frame {
        Some(Ok(Message::Close(frame))) => {
            tracing::info!(?frame, "warm: the server closed the room socket");
            false
        }
        Some(Ok(Message::Text(text))) => {
            tracing::debug!(%text, "warm: room frame before the assignment ignored");
            true
        }
        Some(Ok(_)) => true,
        Some(Err(error)) => {
            tracing::info!(%error, "warm: room socket lost");
            false
        }
        None => false,
    }
}

/// A JSON `ping` on the seat (the server answers `pong`), with each heartbeat: the
/// socket is known to work both ways, and the paths the join takes (a frame
/// written, one read) are warm when the assignment comes. False: the socket is gone.
async fn rehearse(socket: &mut Socket) -> bool {
    let ping = Message::text(r#"{"type":"ping"}"#);
    matches!(tokio::time::timeout(WRITE_BOUND, socket.send(ping)).await, Ok(Ok(())))
}

/// Sends the orb's `join` on its seat; `None` (logged) when the socket is gone.
async fn join_on(mut socket: Socket, settings: &Settings) -> Option<Seat> {
    let join = crate::session::join_frame(settings, &orb_user_id(&settings.session));
    match tokio::time::timeout(WRITE_BOUND, socket.send(Message::text(join))).await {
        Ok(Ok(())) => Some(Seat(socket)),
        _ => {
            tracing::info!("warm: room socket unwritable; the room will be joined by connecting");
            None
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seat_is_beside_the_room_path() {
        assert_eq!(
            seat_url("ws://127.0.0.1:3000/ws-simple/").as_deref(),
            Some("ws://127.0.0.1:3000/orb-seat")
        );
        assert_eq!(
            seat_url("wss://h/ai/ws-simple/").as_deref(),
            Some("wss://h/ai/orb-seat")
        );
        assert_eq!(seat_url("not a url"), None);
    }
}
