//! One room socket, served by one task: it decodes the socket's frames and
//! routes them (through the recipients' outboxes: straight into their sockets
//! when nothing is queued ahead), writes what its own outbox queued, pings, and
//! closes. The registry is told to remove the participant exactly here, once,
//! whatever the cause (leave, close, error, timeout).

use std::net::IpAddr;
use std::sync::Arc;

use shared::room::{ErrorCode, ErrorReply, FrameError, MessageKind, RoomMessage, parse_envelope, parse_inbound};
use tokio::sync::oneshot;
use tokio::time::{Duration, Instant};
use tracing::{Instrument, debug, info, info_span, warn};

use super::limits::{IpSlot, TokenBucket};
use super::outbox::{CLOSE_NORMAL, CLOSE_PING_TIMEOUT, CLOSE_SLOW_CONSUMER, CLOSE_TOO_LARGE, ConnId, Kick, Outbox};
use super::ping_timer::PingTimer;
use super::registry::RegistryHandle;
use super::room_view::{Relayed, RoomLink, Route};
use super::seat::{Seat, SeatReceiver};
use super::stats::RelayStats;
use crate::auth::{Auth, Credential, token};
use crate::settings::RoomSettings;
use crate::shutdown::Closing;
use crate::upgrade::sockets::Parked;
use crate::ws::frame::{Frame, ProtocolError, TextFrame};
use crate::ws::handshake::RoomStream;
use crate::ws::outbox::Ending;
use crate::ws::socket::{Read, WsSocket};

/// How long a closing socket gets to flush its close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// The AI's frames tell the OrbManager it is alive at most this often.
const AI_ACTIVITY_EVERY: Duration = Duration::from_millis(100);

/// Everything one connection needs, gathered by the upgrade handler.
#[derive(Debug)]
pub struct Connection {
    /// This socket's id.
    pub id: ConnId,
    /// The room of the path (already validated).
    pub room: String,
    /// The peer's address.
    pub ip: IpAddr,
    /// The registry.
    pub registry: RegistryHandle,
    /// Authentication (including the orb-token check of AI joins).
    pub auth: Auth,
    /// What the upgrade request proved (a client JWT, a candidate orb token, nothing).
    pub credential: Credential,
    /// Limits and liveness.
    pub settings: Arc<RoomSettings>,
    /// Relay counters.
    pub stats: Arc<RelayStats>,
    /// Set when the server closes every socket (with its code).
    pub closing: Closing,
    /// This socket's place in the per-IP limit, released when the connection ends.
    pub slot: IpSlot,
    /// A warm orb's seat (`/orb-seat`): the socket joins no room until the
    /// OrbManager sends it one; then only as that room's AI.
    pub seat: Option<SeatReceiver>,
}

/// How the reader stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReaderEnd {
    /// The socket failed or the peer's side ended without a close frame.
    PeerGone,
    /// The peer sent a close frame (with this code): it gets one back.
    PeerClosed(Option<u16>),
    /// The reader queued a close frame (too large, ping timeout) or kicked itself.
    Closing,
    /// Closed by the server out of band (replaced, slow consumer, shutdown…).
    Kicked(Kick),
    /// Stopped at a frame boundary for an upgrade that hands the socket over.
    HandOver,
}

/// The participant this socket joined as, and its room.
#[derive(Debug)]
struct Joined {
    is_ai: bool,
    /// Its `userId`: the `fromId` of everything it relays.
    user_id: String,
    /// The same, written as a JSON string.
    from_json: String,
    link: RoomLink,
    /// When the OrbManager last heard of this AI's activity from here.
    activity_sent: Option<Instant>,
}

/// A frame ready to relay (encoded in the reader's [`TextFrame`], with the
/// server's `fromId`): what it is and where to.
struct Outgoing<'t> {
    kind: MessageKind,
    target: Result<Option<std::borrow::Cow<'t, str>>, FrameError>,
}

impl Connection {
    /// Serves the socket until it ends, then removes its participant.
    pub async fn run(self, stream: RoomStream) {
        let span = info_span!("conn", conn = self.id, room = %self.room, ip = %self.ip, user = tracing::field::Empty);
        self.serve(stream).instrument(span).await;
    }

    async fn serve(self, stream: RoomStream) {
        RelayStats::bump(&self.stats.connections);
        debug!("connected");
        let socket = WsSocket::new(stream, self.settings.max_message_bytes, self.settings.ws_send_queue);
        self.serve_socket(socket, None).await;
    }

    /// Serves a socket a previous program image handed over: already joined as
    /// `(user_id, is_ai)` with its membership restored by the registry as the
    /// link, or (`None`) a warm orb's seat still waiting for its room.
    pub async fn resume(self, socket: WsSocket, joined: Option<(String, bool, RoomLink)>) {
        let span = info_span!("conn", conn = self.id, room = %self.room, ip = %self.ip, user = tracing::field::Empty);
        self.serve_socket(socket, joined).instrument(span).await;
    }

    async fn serve_socket(mut self, mut socket: WsSocket, joined: Option<(String, bool, RoomLink)>) {
        let seat = self.seat.take();
        let mut reader = Reader {
            conn: &self,
            outbox: socket.outbox().clone(),
            joined: None,
            refused_joins: 0,
            bucket: TokenBucket::new(self.settings.max_messages_per_second, Instant::now()),
            last_seen: Instant::now(),
            dropped: Vec::new(),
            frame: TextFrame::default(),
            seat,
            given: None,
        };
        if let Some((user_id, is_ai, link)) = joined {
            reader.joined_as(user_id, is_ai, link);
        }
        let mut end = reader.run(&mut socket).await;
        let joined = reader.joined.take();
        // A warm orb's seat not given a room yet: its orb is handed over too.
        let waiting_seat = joined.is_none() && reader.seat.is_some() && reader.given.is_none();
        drop(reader);
        if end == ReaderEnd::HandOver {
            let parks = match &joined {
                Some(joined) => self.closing.parks(joined.is_ai),
                None => waiting_seat && self.closing.parks(true),
            };
            if parks && socket.is_plain() {
                // Still a member (or still a seat): the new image resumes it; nothing leaves.
                debug!("parked for the upgrade's handover");
                self.closing.parked.park(Parked {
                    conn: self.id,
                    ip: self.ip,
                    seat_of: waiting_seat.then(|| self.room.clone()),
                    socket,
                });
                return;
            }
            end = ReaderEnd::Kicked(Kick::from(self.closing.code()));
        }
        // The one place membership is cleaned up.
        self.registry.leave(self.id).await;
        // No frame is taken after this; a kick overtakes what was queued, and so
        // does the peer's close.
        let ending = if end == ReaderEnd::Closing {
            Ending::Flush
        } else {
            Ending::Drop
        };
        let queued_close = socket.end(ending);
        let close = match end {
            ReaderEnd::Closing => Some(queued_close.unwrap_or(Kick::from(CLOSE_NORMAL))),
            ReaderEnd::PeerClosed(code) => Some(Kick::from((code.unwrap_or(CLOSE_NORMAL.0), ""))),
            ReaderEnd::Kicked(kick) => Some(kick),
            ReaderEnd::PeerGone | ReaderEnd::HandOver => None,
        };
        if let Some(kick) = close {
            debug!(code = kick.code, reason = kick.reason, "closing");
            socket.close(kick);
            socket.finish(CLOSE_GRACE).await;
        }
        debug!(?end, "disconnected");
        drop(self.slot);
    }
}

/// The reading half: parses, checks and routes each frame.
struct Reader<'a> {
    conn: &'a Connection,
    outbox: Outbox,
    joined: Option<Joined>,
    /// Joins refused by authentication; only the first is a warning (no log flood).
    refused_joins: u32,
    bucket: TokenBucket,
    last_seen: Instant,
    /// Recipients to remove after a relay (kept to reuse its allocation).
    dropped: Vec<ConnId>,
    /// The frame being relayed, encoded once for every recipient (reused).
    frame: TextFrame,
    /// A warm orb's seat not yet given its room.
    seat: Option<SeatReceiver>,
    /// The room given to this warm orb's socket, which its `join` goes to.
    given: Option<Seat>,
}

impl Reader<'_> {
    /// Membership granted: this socket now relays as `user`.
    fn joined_as(&mut self, user: String, is_ai: bool, link: RoomLink) {
        tracing::Span::current().record("user", user.as_str());
        let from_json = serde_json::Value::String(user.clone()).to_string();
        self.joined = Some(Joined {
            is_ai,
            user_id: user,
            from_json,
            link,
            activity_sent: None,
        });
    }

    /// The OrbManager gave this warm orb its room: the orb's `join`, when the orb
    /// sends it, goes there (it was authenticated by its process token at the upgrade).
    fn on_seat(&mut self, seat: Seat) {
        tracing::Span::current().record("room", seat.room.as_str());
        debug!("warm orb's socket given its room; waiting for the orb's join");
        self.given = Some(seat);
    }

    /// A warm orb's `join` on its seat: into its room, as its AI, and nothing else.
    async fn seated_join(&mut self, mut inbound: shared::room::Inbound) -> Result<(), ReaderEnd> {
        // Stripped first: a token is never relayed, stored or logged. The seat's own
        // authentication stands for it.
        let _ = token::take_join_token(&mut inbound.fields);
        let request = match inbound.join_request() {
            Ok(request) => request,
            Err(e) => return self.error(e.code(), e.to_string()),
        };
        let Some(seat) = &self.given else { return Ok(()) };
        if !request.is_ai() || request.user_id != seat.user_id() {
            let message = format!("this socket may only join its room as {}", seat.user_id());
            return self.error(ErrorCode::Forbidden, message);
        }
        let (room, user) = (seat.room.clone(), request.user_id.clone());
        match self
            .conn
            .registry
            .join(self.conn.id, &room, request, self.outbox.clone())
            .await
        {
            Ok(link) => {
                info!("warm orb joined its room on its seat");
                self.joined_as(user, true, link);
                Ok(())
            }
            Err(reply) => self.error(reply.code, reply.message),
        }
    }

    async fn run(&mut self, socket: &mut WsSocket) -> ReaderEnd {
        let interval = self.conn.settings.ws_ping_interval;
        let mut ping = PingTimer::new(interval, Instant::now());
        let conn = self.conn;
        let mut closing = conn.closing.watch();
        loop {
            // Every frame already read, in order; they arrived together, so one
            // clock reading serves them all.
            let now = Instant::now();
            loop {
                let frame = match socket.next_frame() {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(e) => return self.on_protocol_error(&e),
                };
                self.last_seen = now;
                let flow = match frame {
                    Frame::Text(text) => self.on_text(text, now).await,
                    Frame::Binary => self.error(
                        ErrorCode::InvalidJson,
                        "binary frames are not supported; send JSON text".to_owned(),
                    ),
                    Frame::Close(code) => return ReaderEnd::PeerClosed(code),
                    Frame::Ping(_) | Frame::Pong | Frame::Fragment => Ok(()),
                };
                if let Err(end) = flow {
                    return end;
                }
            }
            tokio::select! {
                biased;
                () = &mut closing => return if conn.closing.handing_over() {
                    ReaderEnd::HandOver
                } else {
                    ReaderEnd::Kicked(Kick::from(conn.closing.code()))
                },
                read = socket.drive() => match read {
                    Ok(Read::Bytes) => {}
                    Ok(Read::Kicked(kick)) => return ReaderEnd::Kicked(kick),
                    Ok(Read::Eof) => return ReaderEnd::PeerGone,
                    Err(e) => {
                        debug!(error = %e, "socket error");
                        return ReaderEnd::PeerGone;
                    }
                },
                seat = seat_given(self.seat.as_mut()) => {
                    self.seat = None;
                    match seat {
                        Some(seat) => self.on_seat(seat),
                        None => {
                            debug!("warm orb's socket will not be seated; closing");
                            return self.close(CLOSE_NORMAL);
                        }
                    }
                }
                () = ping.due() => {
                    if self.last_seen.elapsed() > interval * 3 / 2 {
                        info!("no pong for two ping intervals: closing");
                        return self.close(CLOSE_PING_TIMEOUT);
                    }
                    socket.put_ping();
                }
            }
        }
    }

    /// A frame that cannot be read: one over the cap gets `too_large` and 1009;
    /// one breaking the protocol closes the socket with its code (1002, 1007).
    fn on_protocol_error(&mut self, error: &ProtocolError) -> ReaderEnd {
        match error {
            ProtocolError::TooLarge { size, max } => {
                warn!(size, max, "frame over the size cap");
                let message = format!("message exceeds the limit of {max} bytes");
                if self.error(ErrorCode::TooLarge, message).is_err() {
                    return ReaderEnd::Closing;
                }
                self.close(CLOSE_TOO_LARGE)
            }
            ProtocolError::Protocol(_) | ProtocolError::InvalidUtf8 => {
                debug!(%error, "closing on a protocol error");
                ReaderEnd::Kicked(Kick::from(error.close()))
            }
        }
    }

    async fn on_text(&mut self, text: &str, now: Instant) -> Result<(), ReaderEnd> {
        if !self.bucket.try_take(now) {
            let message = format!(
                "more than {} messages per second: message dropped",
                self.conn.settings.max_messages_per_second
            );
            return self.error(ErrorCode::RateLimited, message);
        }
        // The fast path: a joined member's plain frame of a relayed kind, read without a map.
        if let Some(joined) = &self.joined
            && let Some(envelope) = parse_envelope(text, self.conn.settings.max_message_bytes)
        {
            let allowed = !envelope.kind.is_ai_only() || joined.is_ai;
            if allowed && envelope.kind.is_relayed() {
                self.frame.encode(&envelope.relayed_parts(text, &joined.from_json));
                let kind = envelope.kind;
                let target = Ok(envelope.target.map(std::borrow::Cow::Borrowed));
                return self.relay(Outgoing { kind, target }).await;
            }
            if allowed && envelope.kind == MessageKind::OrbHeartbeat {
                self.ai_activity().await;
                return Ok(());
            }
        }
        let mut inbound = match parse_inbound(text, self.conn.settings.max_message_bytes) {
            Ok(inbound) => inbound,
            Err(e @ FrameError::TooLarge { .. }) => {
                self.error(e.code(), e.to_string())?;
                return Err(self.close(CLOSE_TOO_LARGE));
            }
            Err(e) => return self.error(e.code(), e.to_string()),
        };
        let id = self.conn.id;
        let joined_ai = self.joined.as_ref().map(|j| j.is_ai);
        match (inbound.kind, joined_ai) {
            (MessageKind::Ping, joined) => {
                self.push(&RoomMessage::Pong(Default::default()).to_json())?;
                if joined == Some(true) {
                    self.ai_activity().await;
                }
                Ok(())
            }
            (MessageKind::Join, Some(_)) => self.error(
                ErrorCode::AlreadyJoined,
                "this socket already joined; open a new socket to join again".to_owned(),
            ),
            (MessageKind::Join, None) if self.seat.is_some() || self.given.is_some() => {
                // The manager gives the seat its room before it tells the orb, so a
                // join that comes before the seat was polled finds it already sent.
                if let Some(receiver) = &mut self.seat {
                    match receiver.try_recv() {
                        Ok(seat) => {
                            self.seat = None;
                            self.on_seat(seat);
                        }
                        Err(oneshot::error::TryRecvError::Empty) => {
                            return self.error(
                                ErrorCode::Forbidden,
                                "a warm orb's socket joins only the room the server gives it, once it is given"
                                    .to_owned(),
                            );
                        }
                        Err(oneshot::error::TryRecvError::Closed) => {
                            self.seat = None;
                            return Err(self.close(CLOSE_NORMAL));
                        }
                    }
                }
                self.seated_join(inbound).await
            }
            (MessageKind::Join, None) => {
                // Stripped first: a token is never relayed, stored or logged.
                let join_token = token::take_join_token(&mut inbound.fields);
                let request = match inbound.join_request() {
                    Ok(request) => request,
                    Err(e) => return self.error(e.code(), e.to_string()),
                };
                let checked = self
                    .conn
                    .auth
                    .check_join(&self.conn.room, &self.conn.credential, join_token, &request)
                    .await;
                if let Err((code, message)) = checked {
                    self.refused_joins = self.refused_joins.saturating_add(1);
                    if self.refused_joins == 1 {
                        warn!(user = %request.user_id, role = %request.user_role, %code, "join refused");
                    } else {
                        debug!(user = %request.user_id, role = %request.user_role, %code, refused = self.refused_joins, "join refused");
                    }
                    return self.error(code, message);
                }
                let user = request.user_id.clone();
                let is_ai = request.is_ai();
                match self
                    .conn
                    .registry
                    .join(id, &self.conn.room, request, self.outbox.clone())
                    .await
                {
                    Ok(link) => {
                        self.joined_as(user, is_ai, link);
                        Ok(())
                    }
                    Err(reply) => self.error(reply.code, reply.message),
                }
            }
            (kind, None) => self.error(
                ErrorCode::NotJoined,
                format!("send \"join\" before \"{}\"", kind.as_str()),
            ),
            (MessageKind::Leave, Some(_)) => {
                self.joined = None;
                self.conn.registry.leave(id).await;
                Ok(())
            }
            (kind, Some(is_ai)) if kind.is_ai_only() && !is_ai => self.error(
                ErrorCode::Forbidden,
                format!("only the AI participant may send \"{}\"", kind.as_str()),
            ),
            (MessageKind::AiOrbShutdown, Some(_)) => {
                self.joined = None;
                let reason = inbound.string_field("reason").ok().flatten();
                self.conn.registry.ai_shutdown(id, reason).await;
                Ok(())
            }
            (MessageKind::OrbHeartbeat, Some(_)) => {
                self.ai_activity().await;
                Ok(())
            }
            (kind, Some(_)) => {
                // Owned: `into_relayed` consumes the frame. `relay` decides whether it counts.
                let target = inbound
                    .target()
                    .map(|t| t.map(|t| std::borrow::Cow::Owned(t.to_owned())));
                let from = self.joined.as_ref().map(|j| j.user_id.as_str()).unwrap_or_default();
                self.frame.encode(&[&inbound.into_relayed(from)]);
                self.relay(Outgoing { kind, target }).await
            }
        }
    }

    /// Delivers `out` through the room's view, from this reader's task.
    async fn relay(&mut self, out: Outgoing<'_>) -> Result<(), ReaderEnd> {
        let Some(joined) = self.joined.as_mut() else {
            return Ok(());
        };
        let target = if out.kind.honours_target() {
            out.target
        } else {
            Ok(None)
        };
        let route = match &target {
            Err(e) => return self.error(e.code(), e.to_string()),
            Ok(Some(target)) => Route::To(target),
            Ok(None) => Route::Others,
        };
        let mut dropped = std::mem::take(&mut self.dropped);
        // The kept view, or the latest one (see `ViewReader::latest`): no lock is held
        // while the recipients' sockets are written.
        let link = &mut joined.link;
        let sender = (self.conn.id, &*link.member);
        let relayed = link
            .view
            .latest()
            .relay(sender, route, &self.frame, &link.counters, &mut dropped);
        // A recipient kicked here leaves the room now, not when its socket has closed.
        for conn in dropped.drain(..) {
            self.conn.registry.leave(conn).await;
        }
        self.dropped = dropped;
        let Some(joined) = self.joined.as_ref() else {
            return Ok(());
        };
        match relayed {
            Relayed::Delivered(_) => {}
            // Left or replaced while this frame was read: nobody hears it.
            Relayed::NotMember => return Ok(()),
            Relayed::NoSuchPeer => {
                let name = target.as_ref().ok().and_then(|t| t.as_deref()).unwrap_or_default();
                let message = format!("no participant {name:?} in this room");
                joined.link.counters.metrics.error(&ErrorCode::PeerNotFound.to_string());
                return self.error(ErrorCode::PeerNotFound, message);
            }
        }
        if joined.is_ai {
            self.ai_activity().await;
        }
        Ok(())
    }

    /// Tells the OrbManager (through the registry) that this AI is alive, at most
    /// every [`AI_ACTIVITY_EVERY`].
    async fn ai_activity(&mut self) {
        let Some(joined) = self.joined.as_mut().filter(|j| j.is_ai) else {
            return;
        };
        let now = Instant::now();
        if joined
            .activity_sent
            .is_some_and(|at| now.duration_since(at) < AI_ACTIVITY_EVERY)
        {
            return;
        }
        joined.activity_sent = Some(now);
        self.conn.registry.ai_activity(self.conn.id).await;
    }

    /// Queues an `error` reply; the connection carries on.
    fn error(&mut self, code: ErrorCode, message: String) -> Result<(), ReaderEnd> {
        RelayStats::bump(&self.conn.stats.errors);
        debug!(%code, %message, "error reply");
        self.push(&ErrorReply::frame(code, message).to_json())
    }

    /// Sends `text` to this socket; a full queue drops it as a slow consumer.
    fn push(&mut self, text: &str) -> Result<(), ReaderEnd> {
        match self.outbox.try_text(text.as_bytes()) {
            Ok(()) => Ok(()),
            Err(_) => {
                RelayStats::bump(&self.conn.stats.slow_consumers);
                self.outbox.kick(CLOSE_SLOW_CONSUMER);
                Err(ReaderEnd::Closing)
            }
        }
    }

    /// Closes the socket after everything already queued.
    fn close(&mut self, close: (u16, &'static str)) -> ReaderEnd {
        self.outbox.close_after_queued(close);
        ReaderEnd::Closing
    }
}

/// The seat, once the manager sends it (`None`: it never will); never without a seat.
async fn seat_given(seat: Option<&mut SeatReceiver>) -> Option<Seat> {
    match seat {
        Some(receiver) => receiver.await.ok(),
        None => std::future::pending().await,
    }
}
