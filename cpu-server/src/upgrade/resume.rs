//! The new image's side of the room sockets an upgrade handed over: each is
//! resumed as a connection task, already joined, its room restored in the
//! registry as it was (nobody is told anything: the members already know each
//! other), its unread bytes parsed first and its unsent frames written first.
//! Like a new plain-TCP room socket, each runs on one of the relay loops (its
//! descriptor registered with that loop's epoll), so the relay path after an
//! upgrade is the one before it.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::oneshot;
use tracing::{info, warn};

use super::sockets::{SeatEntry, SocketEntry};
use crate::auth::Credential;
use crate::http::AppState;
use crate::rooms::connection::Connection;
use crate::rooms::outbox::Outbox;
use crate::rooms::room_view::RoomLink;
use crate::ws::socket::WsSocket;

/// Longest wait for the loops to take the sockets up, all of them (they are
/// idle then: the server starts).
const TAKE_UP: Duration = Duration::from_secs(5);

/// What a resumed socket's task waits for once its outbox is in the registry.
type Go = oneshot::Sender<(Connection, RoomLink, tokio_util::task::task_tracker::TaskTrackerToken)>;

/// Resumes `sockets` into `state`'s registry and connection tasks; returns how many.
pub async fn resume(state: &AppState, sockets: Vec<(SocketEntry, std::net::TcpStream)>) -> usize {
    if sockets.is_empty() {
        return 0;
    }
    // Rooms in the order the document lists them, members in join order.
    let mut rooms: Vec<(String, Vec<_>)> = Vec::new();
    let mut room_at: HashMap<String, usize> = HashMap::new();
    let mut waiting = Vec::new();
    let deadline = tokio::time::Instant::now() + TAKE_UP;
    for (entry, stream) in sockets {
        let Some((outbox, go)) = take_up(state, &entry, stream, deadline).await else {
            continue;
        };
        let member = (entry.conn, entry.participant.clone(), outbox, entry.ai);
        let at = *room_at.entry(entry.room.clone()).or_insert_with(|| {
            rooms.push((entry.room.clone(), Vec::new()));
            rooms.len() - 1
        });
        rooms[at].1.push(member);
        state.next_conn.fetch_max(entry.conn + 1, Ordering::Relaxed);
        waiting.push((entry, go));
    }
    let mut links: HashMap<_, _> = state.registry.restore(rooms).await;
    let count = waiting.len();
    for (entry, go) in waiting {
        // No link: the socket's task ends and closes it.
        let Some(link) = links.remove(&entry.conn) else {
            continue;
        };
        let slot = state.ip_limiter.acquire_anyway(entry.ip);
        let connection = state.connection(entry.conn, entry.room, entry.ip, Credential::None, slot, None);
        let _ = go.send((connection, link, state.connections.token()));
    }
    info!(
        sockets = count,
        "room sockets taken over from the previous program image"
    );
    count
}

/// Resumes the warm orbs' seats: each given back to its orb's pool entry in the
/// OrbManager (so that the orb's next room is given to it at once, as before the
/// upgrade) and served as a seat waiting for its room; returns how many.
pub async fn resume_seats(state: &AppState, seats: Vec<(SeatEntry, std::net::TcpStream)>) -> usize {
    let mut count = 0;
    for (entry, stream) in seats {
        let (unread, unsent) = match entry.bytes() {
            Ok(bytes) => bytes,
            Err(e) => {
                warn!(conn = entry.conn, error = %e, "a handed-over seat is dropped");
                continue;
            }
        };
        let (sender, receiver) = crate::rooms::seat::seat_channel();
        if !state.orbs.reseat(&entry.entry, sender).await {
            // Its orb is gone: the socket closes, the orb (if any) connects when it gets a room.
            warn!(entry = %entry.entry, "a handed-over seat has no warm orb any more; closed");
            continue;
        }
        state.next_conn.fetch_max(entry.conn + 1, Ordering::Relaxed);
        let slot = state.ip_limiter.acquire_anyway(entry.ip);
        let connection = state.connection(
            entry.conn,
            entry.entry,
            entry.ip,
            Credential::None,
            slot,
            Some(receiver),
        );
        let (max_message, max_queued) = (state.settings.max_message_bytes, state.settings.ws_send_queue);
        let tracked = state.connections.token();
        let conn = entry.conn;
        let task = async move {
            let _tracked = tracked;
            match tokio::net::TcpStream::from_std(stream) {
                Ok(tcp) => {
                    let socket = WsSocket::resume(tcp, &unread, unsent, max_message, max_queued);
                    connection.resume(socket, None).await;
                }
                Err(e) => warn!(conn, error = %e, "a handed-over seat cannot be served; dropped"),
            }
        };
        match &state.relay_loops {
            Some(loops) => loops.spawn(task),
            None => drop(tokio::spawn(task)),
        }
        count += 1;
    }
    if count > 0 {
        info!(
            seats = count,
            "warm orbs' seats taken over from the previous program image"
        );
    }
    count
}

/// Starts `entry`'s socket on a relay loop (on this runtime without loops); its
/// outbox, and where to send its connection once the registry took it.
async fn take_up(
    state: &AppState,
    entry: &SocketEntry,
    stream: std::net::TcpStream,
    deadline: tokio::time::Instant,
) -> Option<(Outbox, Go)> {
    let (unread, unsent) = match entry.bytes() {
        Ok(bytes) => bytes,
        Err(e) => {
            warn!(conn = entry.conn, error = %e, "a handed-over room socket is dropped");
            return None;
        }
    };
    let (max_message, max_queued) = (state.settings.max_message_bytes, state.settings.ws_send_queue);
    let (user_id, ai, conn) = (entry.participant.user_id.clone(), entry.ai, entry.conn);
    let (outbox_tx, outbox_rx) = oneshot::channel();
    let (go, wait) = oneshot::channel::<(Connection, RoomLink, tokio_util::task::task_tracker::TaskTrackerToken)>();
    let task = async move {
        // Registered with the epoll of the runtime it runs on.
        let tcp = match tokio::net::TcpStream::from_std(stream) {
            Ok(tcp) => tcp,
            Err(e) => return warn!(conn, error = %e, "a handed-over room socket cannot be served; dropped"),
        };
        let socket = WsSocket::resume(tcp, &unread, unsent, max_message, max_queued);
        if outbox_tx.send(socket.outbox().clone()).is_err() {
            return;
        }
        if let Ok((connection, link, _tracked)) = wait.await {
            connection.resume(socket, Some((user_id, ai, link))).await;
        }
    };
    match &state.relay_loops {
        Some(loops) => loops.spawn(task),
        None => drop(tokio::spawn(task)),
    }
    match tokio::time::timeout_at(deadline, outbox_rx).await {
        Ok(Ok(outbox)) => Some((outbox, go)),
        _ => None,
    }
}
