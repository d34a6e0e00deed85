//! Where the supervision link of a remote orb (`GET /orb-link/{room}`, docs/protocol.md
//! §3.1) finds its driver: per room, the token of the orb process being driven and
//! the way to hand it the socket. An entry lives as long as its driver; a token of
//! an ended process (a partitioned orb coming back) finds nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::ws::WebSocket;
use shared::secret::constant_time_eq;
use tokio::sync::mpsc;

/// Links waiting for one driver (a reconnecting orb replaces its link).
pub const LINK_QUEUE: usize = 2;

#[derive(Debug)]
struct Entry {
    generation: u64,
    token: String,
    links: mpsc::Sender<WebSocket>,
}

/// The rendezvous of links and drivers; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct LinkHub {
    rooms: Arc<Mutex<HashMap<String, Entry>>>,
}

impl LinkHub {
    /// Process `generation` of `room`, holding `token`, takes its links from the receiver.
    pub fn register(&self, room: &str, generation: u64, token: &str) -> mpsc::Receiver<WebSocket> {
        let (tx, rx) = mpsc::channel(LINK_QUEUE);
        let entry = Entry {
            generation,
            token: token.to_owned(),
            links: tx,
        };
        self.lock().insert(room.to_owned(), entry);
        rx
    }

    /// Process `generation` of `room` is gone.
    pub fn remove(&self, room: &str, generation: u64) {
        let mut rooms = self.lock();
        if rooms.get(room).is_some_and(|e| e.generation == generation) {
            rooms.remove(room);
        }
    }

    /// Where a link of `room` presenting `token` goes (`None`: refused). Constant-time compare.
    pub fn find(&self, room: &str, token: &str) -> Option<mpsc::Sender<WebSocket>> {
        let rooms = self.lock();
        let entry = rooms.get(room)?;
        constant_time_eq(entry.token.as_bytes(), token.as_bytes()).then(|| entry.links.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.rooms.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rule: only the current process's token finds its driver; an ended one's never does.
    #[test]
    fn only_the_live_process_token_finds_its_driver() {
        let hub = LinkHub::default();
        let _rx1 = hub.register("r", 1, "t1");
        assert!(hub.find("r", "t1").is_some());
        assert!(hub.find("r", "t2").is_none());
        assert!(hub.find("other", "t1").is_none());
        let _rx2 = hub.register("r", 2, "t2");
        assert!(hub.find("r", "t1").is_none(), "the replaced process's token");
        hub.remove("r", 1);
        assert!(hub.find("r", "t2").is_some(), "an old generation's end removes nothing");
        hub.remove("r", 2);
        assert!(hub.find("r", "t2").is_none());
    }
}
