//! The room registry: ONE actor task owns every room and its members.
//!
//! Connection tasks talk to it through a bounded command channel (joins get a
//! `oneshot` reply with their [`RoomLink`]); membership changes happen only here,
//! keyed by the per-connection id, so a stale socket's late close can never
//! remove the participant that replaced it. After each change it publishes the
//! room's [`RoomView`], through which the members' readers relay their frames
//! themselves (see [`super::room_view`]): relayed frames do not pass through
//! here. What it sends itself (discovery, joins, leaves, notifications) goes
//! with `try_send` on the members' bounded outboxes, so a slow reader never
//! stalls a room: its socket is kicked with 1008 and it leaves. Room events go
//! out on the OrbManager seam without waiting: nothing here ever waits on the
//! OrbManager (see [`EventOutbox`]).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::ws::Utf8Bytes;
use shared::room::{
    AI_USER_ID_PREFIX, ErrorCode, ErrorReply, JoinRequest, PARTICIPANT_AI, Participant, PeerDiscovery, RoomMessage,
    UserJoined,
};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use super::events::{RoomEvent, RoomEventSender, RoomNotifier};
use super::offer_rule::{Side, should_create_offer};
use super::outbox::{CLOSE_REPLACED, CLOSE_REVOKED, ConnId, Outbox};
use super::room_view::{Counters, RoomLink, RoomView, ViewMember, ViewPublisher, deliver_to};
use super::stats::RelayStats;
use crate::metrics::Metrics;
use crate::settings::RoomSettings;

/// Capacity of the command channel into the registry.
const COMMAND_CAPACITY: usize = 1024;
/// Membership events held while the OrbManager's channel is full. Each socket
/// makes at most a join and a leave, so this is reached only when the manager
/// is stuck; past it events are dropped and logged.
const MAX_PENDING_EVENTS: usize = 65_536;

/// A request to the registry.
#[derive(Debug)]
enum Command {
    Join {
        conn: ConnId,
        room: String,
        request: JoinRequest,
        outbox: Outbox,
        reply: oneshot::Sender<Result<RoomLink, ErrorReply>>,
    },
    AiShutdown {
        conn: ConnId,
        reason: Option<String>,
    },
    AiActivity {
        conn: ConnId,
    },
    Leave {
        conn: ConnId,
    },
    Notify {
        room: String,
        message: RoomMessage,
    },
    CloseAi {
        room: String,
    },
    List {
        reply: oneshot::Sender<Vec<RoomInfo>>,
    },
    Freeze {
        reply: oneshot::Sender<Vec<FrozenRoom>>,
    },
    Restore {
        rooms: Vec<RestoredRoom>,
        reply: oneshot::Sender<HashMap<ConnId, RoomLink>>,
    },
}

/// A room handed over by a previous program image: its id and its members in
/// join order, each with the outbox of its resumed socket and whether it is the
/// room's AI.
pub type RestoredRoom = (String, Vec<(ConnId, Participant, Outbox, bool)>);

/// One room's members (join order) when the registry froze for an upgrade.
#[derive(Debug, Clone, PartialEq)]
pub struct FrozenRoom {
    /// The room id.
    pub room: String,
    /// Its members: connection, participant, whether it is the AI.
    pub members: Vec<(ConnId, Participant, bool)>,
}

/// One room as operators see it: its participants, no secrets.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RoomInfo {
    /// The room id.
    pub room: String,
    /// Members in join order (`userId`, `userName`, `userRole`, `participantType`).
    pub participants: Vec<Participant>,
}

/// Cloneable handle to the registry actor.
#[derive(Debug, Clone)]
pub struct RegistryHandle {
    commands: mpsc::Sender<Command>,
    rooms: watch::Receiver<usize>,
}

impl RegistryHandle {
    /// Joins `conn` to `room`; `outbox` receives everything for it from now on
    /// (its `peer-discovery` first). The link relays its frames; an error is the
    /// reply to send back.
    pub async fn join(
        &self,
        conn: ConnId,
        room: &str,
        request: JoinRequest,
        outbox: Outbox,
    ) -> Result<RoomLink, ErrorReply> {
        let (reply, rx) = oneshot::channel();
        let command = Command::Join {
            conn,
            room: room.to_owned(),
            request,
            outbox,
            reply,
        };
        let gone = || ErrorReply {
            message: "the server is shutting down".to_owned(),
            code: ErrorCode::Draining,
        };
        self.commands.send(command).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// The AI on `conn` announced its shutdown (`ai-orb-shutdown`): it leaves.
    pub async fn ai_shutdown(&self, conn: ConnId, reason: Option<String>) {
        let _ = self.commands.send(Command::AiShutdown { conn, reason }).await;
    }

    /// The AI on `conn` was heard from (a relayed frame, `ping`, `orb_heartbeat`).
    pub async fn ai_activity(&self, conn: ConnId) {
        let _ = self.commands.send(Command::AiActivity { conn }).await;
    }

    /// `conn` leaves its room (leave, close, error or timeout: idempotent).
    pub async fn leave(&self, conn: ConnId) {
        let _ = self.commands.send(Command::Leave { conn }).await;
    }

    /// For an upgrade that hands room sockets over: every room's members, after
    /// which the registry stops (it sends nothing more to anyone).
    pub async fn freeze(&self) -> Vec<FrozenRoom> {
        let (reply, rx) = oneshot::channel();
        if self.commands.send(Command::Freeze { reply }).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// In a new program image: the handed-over rooms, each member with the
    /// outbox of its resumed socket, back as they were (nobody is told: they
    /// already know each other); the OrbManager hears of every human
    /// ([`RoomEvent::HumanRestored`]), not of an AI (its orb was handed over too).
    /// Returns each member's link.
    pub async fn restore(&self, rooms: Vec<RestoredRoom>) -> HashMap<ConnId, RoomLink> {
        let (reply, rx) = oneshot::channel();
        if self.commands.send(Command::Restore { rooms, reply }).await.is_err() {
            return HashMap::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Every room with its participants, sorted by room id.
    pub async fn room_list(&self) -> Vec<RoomInfo> {
        let (reply, rx) = oneshot::channel();
        if self.commands.send(Command::List { reply }).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Resolves when the registry actor has ended (it runs until every handle
    /// is dropped, so before that only a panic ends it).
    pub async fn failed(&self) {
        self.commands.closed().await;
    }

    /// Rooms alive now.
    pub fn rooms(&self) -> usize {
        *self.rooms.borrow()
    }
}

impl RoomNotifier for RegistryHandle {
    fn notify_room(&self, room: &str, message: RoomMessage) -> bool {
        let command = Command::Notify {
            room: room.to_owned(),
            message,
        };
        let sent = self.commands.try_send(command).is_ok();
        if !sent {
            warn!(room, "registry busy or gone: room notification dropped");
        }
        sent
    }

    fn close_ai(&self, room: &str) {
        let command = Command::CloseAi { room: room.to_owned() };
        if self.commands.try_send(command).is_err() {
            warn!(room, "registry busy or gone: the ended orb's socket is not closed now");
        }
    }
}

/// Starts the registry actor.
pub fn spawn_registry(
    settings: RoomSettings,
    events: RoomEventSender,
    stats: Arc<RelayStats>,
    metrics: Arc<Metrics>,
) -> RegistryHandle {
    let (commands, rx) = mpsc::channel(COMMAND_CAPACITY);
    let (rooms_tx, rooms) = watch::channel(0);
    let registry = Registry {
        settings,
        rooms: HashMap::new(),
        by_conn: HashMap::new(),
        events: EventOutbox::new(events),
        counters: Arc::new(Counters { stats, metrics }),
        rooms_count: rooms_tx,
        dropped: Vec::new(),
    };
    tokio::spawn(registry.run(rx));
    RegistryHandle { commands, rooms }
}

/// One participant of a room.
#[derive(Debug)]
struct Member {
    conn: ConnId,
    participant: Participant,
    is_ai: bool,
    outbox: Outbox,
    /// Cleared when it stops being a member, before anyone is told: its reader's
    /// frames still in flight then reach nobody (see `Outbox::try_relay`).
    member: Arc<AtomicBool>,
}

impl Member {
    /// No longer a member: call before telling anyone.
    fn retire(&self) {
        self.member.store(false, Ordering::Release);
    }

    fn side(&self) -> Side<'_> {
        Side {
            user_id: &self.participant.user_id,
            user_role: &self.participant.user_role,
            is_ai: self.is_ai,
        }
    }
}

/// The members of one room, in join order, and their view for the relay.
#[derive(Debug)]
struct Room {
    members: Vec<Member>,
    view: ViewPublisher,
}

impl Room {
    fn new() -> Self {
        Self {
            members: Vec::new(),
            view: ViewPublisher::default(),
        }
    }

    /// Publishes the members as they are now to every member's reader.
    fn publish(&self) {
        self.publish_with(|_| {});
    }

    /// Like [`Room::publish`], running `first` (no IO: queueing only) while readers
    /// wait for the new view.
    fn publish_with(&self, first: impl FnOnce(&[Member])) {
        let members = self
            .members
            .iter()
            .map(|m| ViewMember {
                conn: m.conn,
                user_id: m.participant.user_id.clone(),
                outbox: m.outbox.clone(),
            })
            .collect();
        self.view.publish_with(RoomView { members }, || first(&self.members));
    }

    fn humans(&self) -> usize {
        self.members.iter().filter(|m| !m.is_ai).count()
    }
}

/// The actor's state; only [`Registry::run`] touches it.
struct Registry {
    settings: RoomSettings,
    rooms: HashMap<String, Room>,
    /// Which room and user each joined connection is.
    by_conn: HashMap<ConnId, (String, String)>,
    events: EventOutbox,
    counters: Arc<Counters>,
    rooms_count: watch::Sender<usize>,
    /// Members whose outbox overflowed or closed, to remove after the command.
    dropped: Vec<ConnId>,
}

/// Queues `text` for `member`; one that must go is removed after the command.
fn deliver(member: &Member, text: &Utf8Bytes, counters: &Counters, dropped: &mut Vec<ConnId>) {
    if !deliver_to(&member.outbox, member.conn, &member.participant.user_id, text, counters) {
        dropped.push(member.conn);
    }
}

impl Registry {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let sender = self.events.sender.clone();
        loop {
            let command = tokio::select! {
                biased;
                permit = sender.reserve(), if self.events.has_pending() => {
                    self.events.send_pending(permit.ok());
                    continue;
                }
                command = commands.recv() => match command {
                    Some(command) => command,
                    None => break,
                },
            };
            match command {
                Command::Join {
                    conn,
                    room,
                    request,
                    outbox,
                    reply,
                } => {
                    let result = self.join(conn, room, request, outbox);
                    let _ = reply.send(result);
                }
                Command::AiShutdown { conn, reason } => self.ai_shutdown(conn, reason),
                Command::AiActivity { conn } => {
                    if let Some((room, true)) = self.member(conn).map(|(r, m)| (r.to_owned(), m.is_ai)) {
                        self.events.activity(room);
                    }
                }
                Command::Leave { conn } => self.remove(conn),
                Command::Notify { room, message } => self.notify(&room, &message),
                Command::CloseAi { room } => self.close_ai(&room),
                Command::List { reply } => {
                    let mut rooms: Vec<RoomInfo> = self
                        .rooms
                        .iter()
                        .map(|(room, r)| RoomInfo {
                            room: room.clone(),
                            participants: r.members.iter().map(|m| m.participant.clone()).collect(),
                        })
                        .collect();
                    rooms.sort_by(|a, b| a.room.cmp(&b.room));
                    let _ = reply.send(rooms);
                }
                Command::Freeze { reply } => {
                    let rooms = self
                        .rooms
                        .iter()
                        .map(|(room, r)| FrozenRoom {
                            room: room.clone(),
                            members: r
                                .members
                                .iter()
                                .map(|m| (m.conn, m.participant.clone(), m.is_ai))
                                .collect(),
                        })
                        .collect();
                    let _ = reply.send(rooms);
                    info!("room registry frozen for an upgrade");
                    return;
                }
                Command::Restore { rooms, reply } => {
                    let _ = reply.send(self.restore(rooms));
                }
            }
            while let Some(conn) = self.dropped.pop() {
                self.remove(conn);
            }
        }
        debug!("room registry stopped");
    }

    /// Whether `user_id` is the AI's in `room_id`: an AI member's id, or the
    /// `ai-orb-` prefix every orb's id has.
    fn is_ai_identity(&self, room_id: &str, user_id: &str) -> bool {
        user_id.starts_with(AI_USER_ID_PREFIX)
            || self
                .rooms
                .get(room_id)
                .is_some_and(|room| room.members.iter().any(|m| m.is_ai && m.participant.user_id == user_id))
    }

    fn member(&self, conn: ConnId) -> Option<(&str, &Member)> {
        let (room_id, _) = self.by_conn.get(&conn)?;
        let member = self.rooms.get(room_id)?.members.iter().find(|m| m.conn == conn)?;
        Some((room_id.as_str(), member))
    }

    fn publish_count(&self) {
        self.rooms_count.send_replace(self.rooms.len());
    }

    fn join(
        &mut self,
        conn: ConnId,
        room_id: String,
        request: JoinRequest,
        outbox: Outbox,
    ) -> Result<RoomLink, ErrorReply> {
        let refuse = |code: ErrorCode, message: String| Err(ErrorReply { message, code });
        if self.by_conn.contains_key(&conn) {
            return refuse(ErrorCode::AlreadyJoined, "this socket already joined a room".to_owned());
        }
        let is_new_room = !self.rooms.contains_key(&room_id);
        if is_new_room && self.rooms.len() >= self.settings.max_rooms {
            return refuse(
                ErrorCode::TooManyRooms,
                format!(
                    "the server already has its maximum of {} rooms",
                    self.settings.max_rooms
                ),
            );
        }
        let is_ai = request.is_ai();
        if !is_ai && self.is_ai_identity(&room_id, &request.user_id) {
            return refuse(
                ErrorCode::Forbidden,
                format!("userId {:?} belongs to the AI participant", request.user_id),
            );
        }
        let rooms_after = self.rooms.len() + usize::from(is_new_room);
        let room = self.rooms.entry(room_id.clone()).or_insert_with(Room::new);
        let existing = room
            .members
            .iter()
            .position(|m| m.participant.user_id == request.user_id);
        if existing.is_none() && room.members.len() >= self.settings.max_room_participants {
            return refuse(
                ErrorCode::RoomFull,
                format!("room is full ({} participants)", self.settings.max_room_participants),
            );
        }
        let replaced = existing.map(|pos| room.members.remove(pos));
        if let Some(old) = &replaced {
            info!(room = %room_id, user = %request.user_id, old_conn = old.conn, conn, "rejoin replaces the old socket");
            self.by_conn.remove(&old.conn);
            old.retire();
            old.outbox.kick(CLOSE_REPLACED);
        }
        let participant = Participant {
            user_id: request.user_id,
            user_name: request.user_name,
            user_role: request.user_role,
            participant_type: if is_ai {
                PARTICIPANT_AI.to_owned()
            } else {
                request.participant_type
            },
        };
        let member = Arc::new(AtomicBool::new(true));
        let joiner = Member {
            conn,
            participant,
            is_ai,
            outbox,
            member: Arc::clone(&member),
        };
        let discovery = RoomMessage::PeerDiscovery(PeerDiscovery {
            peers: room.members.iter().map(|m| m.participant.clone()).collect(),
            room_id: room_id.clone(),
        });
        let discovery: Utf8Bytes = discovery.to_json().into();
        let joined_frames: Vec<Utf8Bytes> = room
            .members
            .iter()
            .map(|member| {
                let joined = RoomMessage::UserJoined(UserJoined {
                    participant: joiner.participant.clone(),
                    should_create_offer: should_create_offer(member.side(), joiner.side()),
                });
                joined.to_json().into()
            })
            .collect();
        let user_id = joiner.participant.user_id.clone();
        let role = joiner.participant.user_role.clone();
        room.members.push(joiner);
        // Its discovery and the view with it at once, under the view's lock: no frame
        // reaches it before its discovery, and a reader that acts on the discovery (its
        // client answered it) already finds it. Then the others hear of it.
        // The count first: the joiner's discovery may be written to its socket at
        // once, and whoever heard it must find the room counted (`/health`).
        self.rooms_count.send_replace(rooms_after);
        let (counters, dropped) = (&self.counters, &mut self.dropped);
        room.publish_with(|members| {
            if let Some(joiner) = members.last() {
                deliver(joiner, &discovery, counters, dropped);
            }
        });
        for (member, frame) in room.members.iter().zip(&joined_frames) {
            deliver(member, frame, &self.counters, &mut self.dropped);
        }
        let link = RoomLink {
            view: room.view.subscribe(),
            member,
            counters: Arc::clone(&self.counters),
        };
        let humans = room.humans();
        self.by_conn.insert(conn, (room_id.clone(), user_id.clone()));
        info!(room = %room_id, user = %user_id, conn, is_ai, humans, "joined");
        if let Some(old) = replaced {
            if old.is_ai {
                self.events.emit(RoomEvent::AiLeft {
                    room: room_id.clone(),
                    user_id: old.participant.user_id,
                });
            } else if is_ai {
                self.events.emit(RoomEvent::HumanLeft {
                    room: room_id.clone(),
                    user_id: old.participant.user_id,
                    humans,
                });
            }
        }
        let event = if is_ai {
            RoomEvent::AiJoined { room: room_id, user_id }
        } else {
            RoomEvent::HumanJoined {
                room: room_id,
                user_id,
                user_role: role,
                humans,
            }
        };
        self.events.emit(event);
        Ok(link)
    }

    fn restore(&mut self, rooms: Vec<RestoredRoom>) -> HashMap<ConnId, RoomLink> {
        let mut links = HashMap::new();
        for (room_id, members) in rooms {
            let room = self.rooms.entry(room_id.clone()).or_insert_with(Room::new);
            for (conn, participant, outbox, is_ai) in members {
                let member = Arc::new(AtomicBool::new(true));
                self.by_conn
                    .insert(conn, (room_id.clone(), participant.user_id.clone()));
                let (user_id, user_role) = (participant.user_id.clone(), participant.user_role.clone());
                room.members.push(Member {
                    conn,
                    participant,
                    is_ai,
                    outbox,
                    member: Arc::clone(&member),
                });
                links.insert(
                    conn,
                    RoomLink {
                        view: room.view.subscribe(),
                        member,
                        counters: Arc::clone(&self.counters),
                    },
                );
                // The AI's orb, handed over with it, is the OrbManager's already.
                if !is_ai {
                    self.events.emit(RoomEvent::HumanRestored {
                        room: room_id.clone(),
                        user_id,
                        user_role,
                    });
                }
            }
            room.publish();
            info!(room = %room_id, humans = room.humans(), "room taken over from the previous program image");
        }
        self.publish_count();
        links
    }

    fn ai_shutdown(&mut self, conn: ConnId, reason: Option<String>) {
        let Some((room_id, user_id)) = self.by_conn.get(&conn).cloned() else {
            return; // Left or was replaced meanwhile.
        };
        if !self.member(conn).is_some_and(|(_, m)| m.is_ai) {
            return;
        }
        info!(room = %room_id, user = %user_id, ?reason, "AI announced its shutdown");
        self.events.emit(RoomEvent::AiShutdown { room: room_id, reason });
        self.remove(conn);
    }

    /// Removes `conn` from its room, once: later calls find nothing.
    /// Closes the room's AI socket (its process is over for the manager) and removes it.
    fn close_ai(&mut self, room_id: &str) {
        let Some(room) = self.rooms.get(room_id) else { return };
        let Some(ai) = room.members.iter().find(|m| m.is_ai) else {
            return;
        };
        let conn = ai.conn;
        info!(room = %room_id, conn, "closing the AI socket of an ended orb process");
        ai.outbox.kick(CLOSE_REVOKED);
        self.remove(conn);
    }

    fn remove(&mut self, conn: ConnId) {
        let Some((room_id, user_id)) = self.by_conn.remove(&conn) else {
            return;
        };
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return;
        };
        let Some(pos) = room.members.iter().position(|m| m.conn == conn) else {
            return;
        };
        let member = room.members.remove(pos);
        member.retire();
        // The view without it first: nothing more is relayed to it once others hear it left.
        room.publish();
        let left = Utf8Bytes::from(RoomMessage::UserLeft(member.participant.clone()).to_json());
        for other in &room.members {
            deliver(other, &left, &self.counters, &mut self.dropped);
        }
        let humans = room.humans();
        if room.members.is_empty() {
            self.rooms.remove(&room_id);
            self.publish_count();
            info!(room = %room_id, "room closed");
        }
        info!(room = %room_id, user = %user_id, conn, humans, "left");
        let event = if member.is_ai {
            RoomEvent::AiLeft { room: room_id, user_id }
        } else {
            RoomEvent::HumanLeft {
                room: room_id,
                user_id,
                humans,
            }
        };
        self.events.emit(event);
    }

    fn notify(&mut self, room_id: &str, message: &RoomMessage) {
        let Some(room) = self.rooms.get(room_id) else {
            return;
        };
        let text = Utf8Bytes::from(message.to_json());
        for member in &room.members {
            deliver(member, &text, &self.counters, &mut self.dropped);
        }
    }
}

/// The registry's side of the OrbManager seam: events go straight into the
/// bounded channel when it has room, else wait here in order (bounded by
/// [`MAX_PENDING_EVENTS`]) and are sent by the registry loop as room frees up.
/// `AiActivity` is a liveness hint: when it cannot go at once it is dropped,
/// the next frame of the AI brings another.
struct EventOutbox {
    sender: RoomEventSender,
    pending: VecDeque<RoomEvent>,
}

impl EventOutbox {
    fn new(sender: RoomEventSender) -> Self {
        Self {
            sender,
            pending: VecDeque::new(),
        }
    }

    fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// A membership or shutdown event: never waits, never reorders.
    fn emit(&mut self, event: RoomEvent) {
        if self.pending.is_empty() {
            match self.sender.try_send(event) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => debug!("OrbManager gone: room event dropped"),
                Err(mpsc::error::TrySendError::Full(event)) => self.hold(event),
            }
        } else {
            self.hold(event);
        }
    }

    fn hold(&mut self, event: RoomEvent) {
        if self.pending.len() >= MAX_PENDING_EVENTS {
            warn!(?event, "OrbManager not taking room events: event dropped");
            return;
        }
        self.pending.push_back(event);
    }

    /// Activity of a room's AI (a heartbeat for the manager): sent only when it
    /// can go at once.
    fn activity(&mut self, room: String) {
        if self.pending.is_empty() {
            let _ = self.sender.try_send(RoomEvent::AiActivity { room });
        }
    }

    /// Sends the oldest held event with `permit`; `None` means the manager is gone.
    fn send_pending(&mut self, permit: Option<mpsc::Permit<'_, RoomEvent>>) {
        match permit {
            Some(permit) => {
                if let Some(event) = self.pending.pop_front() {
                    permit.send(event);
                }
            }
            None => self.pending.clear(),
        }
    }
}

#[cfg(test)]
mod tests;
