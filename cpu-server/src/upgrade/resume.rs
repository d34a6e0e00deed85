//! The new image's side of the room sockets an upgrade handed over: each is
//! resumed as a connection task, already joined, its room restored in the
//! registry as it was (nobody is told anything: the members already know each
//! other), its unread bytes parsed first and its unsent frames written first.
//! They run on the main runtime (new sockets go to the relay loops).

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use tracing::{info, warn};

use super::sockets::SocketEntry;
use crate::auth::Credential;
use crate::http::AppState;
use crate::ws::socket::WsSocket;

/// Resumes `sockets` into `state`'s registry and connection tasks; returns how many.
pub async fn resume(state: &AppState, sockets: Vec<(SocketEntry, std::net::TcpStream)>) -> usize {
    if sockets.is_empty() {
        return 0;
    }
    // Rooms in the order the document lists them, members in join order.
    let mut rooms: Vec<(String, Vec<_>)> = Vec::new();
    let mut room_at: HashMap<String, usize> = HashMap::new();
    let mut resumed = Vec::new();
    for (entry, stream) in sockets {
        let (unread, unsent) = match entry.bytes() {
            Ok(bytes) => bytes,
            Err(e) => {
                warn!(conn = entry.conn, error = %e, "a handed-over room socket is dropped");
                continue;
            }
        };
        let tcp = match tokio::net::TcpStream::from_std(stream) {
            Ok(tcp) => tcp,
            Err(e) => {
                warn!(conn = entry.conn, error = %e, "a handed-over room socket cannot be served; dropped");
                continue;
            }
        };
        let socket = WsSocket::resume(
            tcp,
            &unread,
            unsent,
            state.settings.max_message_bytes,
            state.settings.ws_send_queue,
        );
        let member = (entry.conn, entry.participant.clone(), socket.outbox().clone(), entry.ai);
        let at = *room_at.entry(entry.room.clone()).or_insert_with(|| {
            rooms.push((entry.room.clone(), Vec::new()));
            rooms.len() - 1
        });
        rooms[at].1.push(member);
        state.next_conn.fetch_max(entry.conn + 1, Ordering::Relaxed);
        resumed.push((entry, socket));
    }
    let mut links: HashMap<_, _> = state.registry.restore(rooms).await;
    let count = resumed.len();
    for (entry, socket) in resumed {
        let Some(link) = links.remove(&entry.conn) else {
            continue;
        };
        let slot = state.ip_limiter.acquire_anyway(entry.ip);
        let connection = state.connection(entry.conn, entry.room, entry.ip, Credential::None, slot, None);
        let user_id = entry.participant.user_id;
        tokio::spawn(
            state
                .connections
                .track_future(connection.resume(socket, user_id, entry.ai, link)),
        );
    }
    info!(
        sockets = count,
        "room sockets taken over from the previous program image"
    );
    count
}
