//! The room sockets an upgrade hands over.
//!
//! In the running image, each joined human's connection task stops at a frame
//! boundary and parks its socket here (still a member: its outbox keeps taking
//! what the registry sends until the registry is frozen); then every parked
//! socket is turned into [`SocketParts`] and written into the handover as a
//! [`SocketEntry`]. The new image adopts each entry's descriptor and resumes
//! the socket, already joined, with its unread and unsent bytes.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use shared::room::Participant;

use std::os::fd::{AsRawFd, OwnedFd};

use tracing::{info, warn};

use crate::rooms::outbox::ConnId;
use crate::rooms::registry::RegistryHandle;
use crate::ws::socket::{SocketParts, WsSocket};

/// A socket stopped for the handover, with who it is.
#[derive(Debug)]
pub struct Parked {
    /// Its connection id (kept in the new image).
    pub conn: ConnId,
    /// The peer's address.
    pub ip: IpAddr,
    /// For a warm orb's seat (not in a room): its pool entry (`warm+N`).
    pub seat_of: Option<String>,
    /// The socket (a member's room is the registry's to say).
    pub socket: WsSocket,
}

/// Where connection tasks park their sockets; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct ParkedSockets(Arc<Mutex<Vec<Parked>>>);

impl ParkedSockets {
    /// Parks one socket.
    pub fn park(&self, parked: Parked) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(parked);
    }

    /// Every socket parked so far.
    pub fn take(&self) -> Vec<Parked> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// The warm orbs' seats parked so far (the members stay).
    pub fn take_seats(&self) -> Vec<Parked> {
        let mut all = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (seats, members) = std::mem::take(&mut *all).into_iter().partition(|p| p.seat_of.is_some());
        *all = members;
        seats
    }
}

/// One handed-over room socket in the document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketEntry {
    /// Its descriptor number in the new image.
    pub fd: i32,
    /// Its connection id.
    pub conn: ConnId,
    /// The peer's address.
    pub ip: IpAddr,
    /// Its room.
    pub room: String,
    /// Who it joined as.
    pub participant: Participant,
    /// Whether it is the room's AI (its orb handed over too; format 3).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ai: bool,
    /// Bytes read and not parsed (base64).
    pub unread: String,
    /// Encoded frames not written (base64).
    pub unsent: String,
}

impl SocketEntry {
    /// The entry of `parts`, whose descriptor will be `fd`.
    pub fn new(member: (ConnId, Participant, bool), ip: IpAddr, room: String, fd: i32, parts: &SocketParts) -> Self {
        let (conn, participant, ai) = member;
        Self {
            fd,
            conn,
            ip,
            room,
            participant,
            ai,
            unread: STANDARD.encode(&parts.unread),
            unsent: STANDARD.encode(&parts.unsent),
        }
    }

    /// The unread and unsent bytes.
    pub fn bytes(&self) -> Result<(Vec<u8>, Vec<u8>), String> {
        let decode = |what: &str, text: &str| {
            STANDARD
                .decode(text)
                .map_err(|e| format!("socket {}: its {what} bytes are not base64: {e}", self.conn))
        };
        Ok((decode("unread", &self.unread)?, decode("unsent", &self.unsent)?))
    }
}

/// A warm orb's seat handed over (its orb is handed over too): a room socket
/// in no room yet, waiting to be given one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeatEntry {
    /// Its descriptor number in the new image.
    pub fd: i32,
    /// Its connection id.
    pub conn: ConnId,
    /// The peer's address.
    pub ip: IpAddr,
    /// The orb's pool entry (`warm+N`).
    pub entry: String,
    /// Bytes read and not parsed (base64).
    pub unread: String,
    /// Encoded frames not written (base64).
    pub unsent: String,
}

impl SeatEntry {
    /// The unread and unsent bytes.
    pub fn bytes(&self) -> Result<(Vec<u8>, Vec<u8>), String> {
        let decode = |what: &str, text: &str| {
            STANDARD
                .decode(text)
                .map_err(|e| format!("seat {}: its {what} bytes are not base64: {e}", self.conn))
        };
        Ok((decode("unread", &self.unread)?, decode("unsent", &self.unsent)?))
    }
}

/// The parked warm orbs' seats (from [`ParkedSockets::take_seats`]) as entries,
/// with the descriptors to keep open until the exec.
pub fn seat_entries(seats: Vec<Parked>) -> (Vec<SeatEntry>, Vec<OwnedFd>) {
    let (mut entries, mut fds) = (Vec::new(), Vec::new());
    for parked in seats {
        let Some(entry) = parked.seat_of else { continue };
        if let Some(parts) = parked.socket.hand_over() {
            entries.push(SeatEntry {
                fd: parts.fd.as_raw_fd(),
                conn: parked.conn,
                ip: parked.ip,
                entry,
                unread: STANDARD.encode(&parts.unread),
                unsent: STANDARD.encode(&parts.unsent),
            });
            fds.push(parts.fd);
        }
    }
    (entries, fds)
}

/// Freezes the registry and turns every parked socket that is still a member
/// into its entry, in its room's join order; the descriptors to keep open
/// until the exec come with them. A parked socket that cannot be handed over
/// (a fragmented message half received) is dropped. Take the seats first
/// ([`ParkedSockets::take_seats`]).
pub async fn entries(registry: &RegistryHandle, parked: &ParkedSockets) -> (Vec<SocketEntry>, Vec<OwnedFd>) {
    let rooms = registry.freeze().await;
    let mut sockets: std::collections::HashMap<ConnId, Parked> =
        parked.take().into_iter().map(|p| (p.conn, p)).collect();
    let (mut entries, mut fds) = (Vec::new(), Vec::new());
    for room in rooms {
        for (conn, participant, is_ai) in room.members {
            // Parked only when handed over (an AI's socket, when its orb is too).
            let Some(parked) = sockets.remove(&conn) else {
                continue;
            };
            match parked.socket.hand_over() {
                Some(parts) => {
                    let fd = parts.fd.as_raw_fd();
                    entries.push(SocketEntry::new(
                        (conn, participant, is_ai),
                        parked.ip,
                        room.room.clone(),
                        fd,
                        &parts,
                    ));
                    fds.push(parts.fd);
                }
                None => {
                    warn!(conn, room = %room.room, "a room socket cannot be handed over (a message half received); closed")
                }
            }
        }
    }
    if !sockets.is_empty() {
        warn!(
            count = sockets.len(),
            "parked sockets that were no longer members are closed"
        );
    }
    info!(sockets = entries.len(), "room sockets handed over");
    (entries, fds)
}
