//! The orb's WebSocket to its room: connect, join, ping, reconnect.
//!
//! One task ([`RoomLink::run`]) owns the socket. The session talks to it with
//! [`RoomCommand`]s and hears [`RoomEvent`]s back. When the connection drops
//! the link reconnects with backoff and joins again; if the room stays
//! unreachable for the reconnect grace it reports [`RoomEvent::GaveUp`].
//!
//! A warm orb's first connection may be its seat: the room socket it opened
//! while warm, on which it already sent its `join` (docs/protocol.md §3.3). The
//! link then only waits for the `peer-discovery`.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use shared::room::{DEFAULT_MAX_MESSAGE_BYTES, ErrorCode, Participant, RoomMessage};
use shared::secret::Secret;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, header::AUTHORIZATION};
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig, frame::coding::CloseCode};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::backoff;

/// A room socket.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A warm orb's room socket on which its `join` is already sent.
#[derive(Debug)]
pub struct Seat(pub Socket);

/// Bound of one connect + join handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a clean close waits for the server's close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// What the link needs to know.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Full room URL (`ws://…/ws-simple/ROOM` or `wss://…`).
    pub url: String,
    /// The `join` frame, sent on every (re)connection (it may carry the token).
    pub join: Secret,
    /// Bearer token for the upgrade request.
    pub token: Option<Secret>,
    /// Period of `ping`.
    pub ping_interval: Duration,
    /// How long the room may stay unreachable.
    pub reconnect_grace: Duration,
}

/// Session → link.
#[derive(Debug)]
pub enum RoomCommand {
    /// Send one frame (dropped while disconnected).
    Send(RoomMessage),
    /// Close the socket cleanly and stop.
    Close,
}

/// Link → session.
#[derive(Debug)]
pub enum RoomEvent {
    /// Joined (again): `peer-discovery` arrived.
    Joined {
        /// Everyone else in the room.
        peers: Vec<Participant>,
        /// First join of this orb's life.
        first: bool,
    },
    /// A frame after the join (a JSON object with a string `type`).
    Frame(Value),
    /// Round trip of the last ping.
    Latency(Duration),
    /// The connection dropped; reconnecting.
    Disconnected(String),
    /// The server refused the orb (`forbidden`/`unauthorized`, or 401/403 at upgrade).
    Refused(String),
    /// Not reconnected within the grace period.
    GaveUp(String),
}

/// Why a connection attempt failed.
enum Attempt {
    Refused(String),
    Failed(String),
    Closed,
}

/// How a joined connection ended.
enum Ended {
    Closed,
    Lost(String),
}

/// Frames the session may have waiting for the socket before new ones are dropped.
pub const COMMAND_QUEUE: usize = 256;

/// The task owning the room socket.
pub struct RoomLink {
    config: LinkConfig,
    commands: mpsc::Receiver<RoomCommand>,
    events: mpsc::Sender<RoomEvent>,
    /// The warm orb's seated socket, for the first connection.
    seat: Option<Seat>,
}

impl RoomLink {
    /// A link and the ends the session keeps.
    ///
    /// The session never waits on the link (which may itself be waiting for
    /// the session to take an event): it uses `try_send` on a bounded command
    /// queue, and a frame that finds the queue full is dropped and logged
    /// rather than growing memory. Events are bounded too, which pushes back on
    /// reading the socket instead.
    pub fn new(config: LinkConfig, seat: Option<Seat>) -> (Self, mpsc::Sender<RoomCommand>, mpsc::Receiver<RoomEvent>) {
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
        let (ev_tx, ev_rx) = mpsc::channel(64);
        let link = Self {
            config,
            commands: cmd_rx,
            events: ev_tx,
            seat,
        };
        (link, cmd_tx, ev_rx)
    }

    /// Connects, joins and serves until closed, refused or out of grace.
    pub async fn run(mut self) {
        let mut down_since = Instant::now();
        let mut attempt = 0u32;
        let mut first = true;
        loop {
            let last_error = match self.connect_and_join(down_since).await {
                Ok((socket, peers)) => {
                    tracing::info!(url = %self.config.url, peers = peers.len(), "joined the room");
                    attempt = 0;
                    if !self.emit(RoomEvent::Joined { peers, first }).await {
                        return;
                    }
                    first = false;
                    match self.serve(socket).await {
                        Ended::Closed => return,
                        Ended::Lost(reason) => {
                            tracing::warn!(%reason, "room connection lost; reconnecting");
                            down_since = Instant::now();
                            if !self.emit(RoomEvent::Disconnected(reason.clone())).await {
                                return;
                            }
                            reason
                        }
                    }
                }
                Err(Attempt::Refused(why)) => {
                    self.emit(RoomEvent::Refused(why)).await;
                    return;
                }
                Err(Attempt::Closed) => return,
                Err(Attempt::Failed(why)) => {
                    tracing::warn!(error = %why, attempt, "could not join the room");
                    why
                }
            };
            let left = self.config.reconnect_grace.saturating_sub(down_since.elapsed());
            if left.is_zero() {
                let why = format!(
                    "room unreachable for {} ms (grace {} ms), last error: {last_error}",
                    down_since.elapsed().as_millis(),
                    self.config.reconnect_grace.as_millis()
                );
                self.emit(RoomEvent::GaveUp(why)).await;
                return;
            }
            let pause = backoff::random_delay(attempt).min(left);
            attempt = attempt.saturating_add(1);
            if !self.idle_for(pause).await {
                return;
            }
        }
    }

    /// Sleeps, dropping frames sent meanwhile; false if told to close.
    async fn idle_for(&mut self, pause: Duration) -> bool {
        let wake = Instant::now() + pause;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => return true,
                cmd = self.commands.recv() => match cmd {
                    Some(RoomCommand::Send(msg)) => tracing::debug!(frame = ?msg, "not connected: frame dropped"),
                    Some(RoomCommand::Close) | None => return false,
                },
            }
        }
    }

    async fn emit(&self, event: RoomEvent) -> bool {
        self.events.send(event).await.is_ok()
    }

    async fn connect_and_join(&mut self, down_since: Instant) -> Result<(Socket, Vec<Participant>), Attempt> {
        let left = self.config.reconnect_grace.saturating_sub(down_since.elapsed());
        let bound = HANDSHAKE_TIMEOUT.min(left.max(Duration::from_millis(200)));
        let seat = self.seat.take();
        let seated = seat.is_some();
        let config = &self.config;
        let handshake = async move {
            match seat {
                Some(Seat(mut socket)) => {
                    let peers = await_discovery(&mut socket).await?;
                    tracing::info!("joined on the warm room socket");
                    Ok((socket, peers))
                }
                None => handshake(config).await,
            }
        };
        tokio::pin!(handshake);
        loop {
            tokio::select! {
                result = tokio::time::timeout(bound, &mut handshake) => {
                    return match result {
                        Ok(Err(Attempt::Failed(why))) if seated => {
                            Err(Attempt::Failed(format!("warm room socket: {why}")))
                        }
                        Ok(r) => r,
                        Err(_) => Err(Attempt::Failed(format!("no join within {} ms", bound.as_millis()))),
                    };
                }
                cmd = self.commands.recv() => match cmd {
                    Some(RoomCommand::Send(msg)) => tracing::debug!(frame = ?msg, "not joined yet: frame dropped"),
                    Some(RoomCommand::Close) | None => return Err(Attempt::Closed),
                },
            }
        }
    }

    /// Pumps frames both ways until closed or lost.
    async fn serve(&mut self, socket: Socket) -> Ended {
        let (mut sink, mut stream) = socket.split();
        let period = self.config.ping_interval;
        let mut ping = tokio::time::interval_at(Instant::now() + period, period);
        // One protocol ping right away, so the first heartbeats carry a latency.
        let mut pending: Option<Instant> = Some(Instant::now());
        if let Err(e) = sink.send(Message::Ping(Vec::new().into())).await {
            return Ended::Lost(e.to_string());
        }
        loop {
            tokio::select! {
                cmd = self.commands.recv() => match cmd {
                    Some(RoomCommand::Send(msg)) => {
                        if let Err(e) = sink.send(Message::text(msg.to_json())).await {
                            return Ended::Lost(e.to_string());
                        }
                    }
                    Some(RoomCommand::Close) | None => {
                        let frame = CloseFrame { code: CloseCode::Normal, reason: "orb shutting down".into() };
                        let _ = sink.send(Message::Close(Some(frame))).await;
                        let drain = async { while let Some(Ok(_)) = stream.next().await {} };
                        let _ = tokio::time::timeout(CLOSE_TIMEOUT, drain).await;
                        return Ended::Closed;
                    }
                },
                _ = ping.tick() => {
                    pending = Some(Instant::now());
                    let ws_ping = sink.send(Message::Ping(Vec::new().into())).await;
                    let json_ping = sink.send(Message::text(r#"{"type":"ping"}"#)).await;
                    if let Err(e) = ws_ping.and(json_ping) {
                        return Ended::Lost(e.to_string());
                    }
                }
                frame = stream.next() => if let Some(ended) = self.on_frame(frame, &mut pending).await {
                    return ended;
                },
            }
        }
    }

    /// One frame read from the room; `Some`: the connection ended.
    async fn on_frame(
        &mut self,
        frame: Option<Result<Message, WsError>>,
        pending: &mut Option<Instant>,
    ) -> Option<Ended> {
        match frame {
            Some(Ok(Message::Text(text))) => match parse_frame(&text) {
                Some(value) if value["type"] == "pong" => self.latency(pending).await,
                Some(value) => {
                    if !self.emit(RoomEvent::Frame(value)).await {
                        return Some(Ended::Closed);
                    }
                }
                None => {
                    tracing::warn!(frame = %truncate(&text), "ignored a room frame that is not a JSON object with a type")
                }
            },
            Some(Ok(Message::Pong(_))) => self.latency(pending).await,
            Some(Ok(Message::Binary(data))) => tracing::warn!(bytes = data.len(), "ignored a binary room frame"),
            Some(Ok(Message::Close(frame))) => return Some(Ended::Lost(format!("server closed: {frame:?}"))),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Some(Ended::Lost(e.to_string())),
            None => return Some(Ended::Lost(String::from("connection closed"))),
        }
        None
    }

    async fn latency(&self, pending: &mut Option<Instant>) {
        if let Some(sent) = pending.take() {
            self.emit(RoomEvent::Latency(sent.elapsed())).await;
        }
    }
}

/// Connects (with the bearer header), sends the join and waits for `peer-discovery`.
async fn handshake(config: &LinkConfig) -> Result<(Socket, Vec<Participant>), Attempt> {
    let mut socket = connect(&config.url, config.token.as_ref()).await?;
    socket
        .send(Message::text(config.join.expose()))
        .await
        .map_err(|e| Attempt::Failed(e.to_string()))?;
    let peers = await_discovery(&mut socket).await?;
    Ok((socket, peers))
}

/// Opens a warm orb's room socket (`/orb-seat`), authenticated by its process token.
pub async fn open_seat(url: &str, token: &Secret) -> Result<Socket, String> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, connect(url, Some(token))).await {
        Ok(Ok(socket)) => Ok(socket),
        Ok(Err(Attempt::Refused(why) | Attempt::Failed(why))) => Err(why),
        Ok(Err(Attempt::Closed)) => Err(String::from("closed")),
        Err(_) => Err(format!("no upgrade within {} ms", HANDSHAKE_TIMEOUT.as_millis())),
    }
}

/// The WebSocket upgrade to `url`, with `token` as the bearer header.
async fn connect(url: &str, token: Option<&Secret>) -> Result<Socket, Attempt> {
    let mut request = url
        .into_client_request()
        .map_err(|e| Attempt::Failed(format!("bad room URL: {e}")))?;
    if let Some(token) = token {
        let value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            .map_err(|_| Attempt::Failed(String::from("ORB_AUTH_TOKEN is not a valid header value")))?;
        request.headers_mut().insert(AUTHORIZATION, value);
    }
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(DEFAULT_MAX_MESSAGE_BYTES))
        .max_frame_size(Some(DEFAULT_MAX_MESSAGE_BYTES))
        .read_buffer_size(16 * 1024)
        .write_buffer_size(0);
    // `true`: TCP_NODELAY. With Nagle on, a reply written while the server's ACK of the
    // previous frame is delayed waits up to 40 ms (seen as a 44 ms say -> ai_response).
    match tokio_tungstenite::connect_async_with_config(request, Some(ws_config), true).await {
        Ok((socket, _)) => Ok(socket),
        Err(WsError::Http(response)) if matches!(response.status().as_u16(), 401 | 403) => Err(Attempt::Refused(
            format!("upgrade refused with HTTP {}", response.status()),
        )),
        Err(e) => Err(Attempt::Failed(e.to_string())),
    }
}

/// Reads up to `peer-discovery`.
async fn await_discovery(socket: &mut Socket) -> Result<Vec<Participant>, Attempt> {
    loop {
        let text = match socket.next().await {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => return Err(Attempt::Failed(format!("closed during join: {frame:?}"))),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(Attempt::Failed(e.to_string())),
            None => return Err(Attempt::Failed(String::from("closed during join"))),
        };
        match serde_json::from_str::<RoomMessage>(&text) {
            Ok(RoomMessage::PeerDiscovery(discovery)) => return Ok(discovery.peers),
            Ok(RoomMessage::Error(error)) if matches!(error.code, ErrorCode::Forbidden | ErrorCode::Unauthorized) => {
                return Err(Attempt::Refused(format!("{}: {}", error.code, error.message)));
            }
            Ok(RoomMessage::Error(error)) => {
                tracing::warn!(code = %error.code, message = %error.message, "error reply to the join");
            }
            _ => tracing::debug!(frame = %truncate(&text), "frame before peer-discovery ignored"),
        }
    }
}

/// A JSON object with a string `type`, or `None`.
pub fn parse_frame(text: &str) -> Option<Value> {
    let value: Value = serde_json::from_str(text).ok()?;
    value.get("type")?.as_str()?;
    Some(value)
}

fn truncate(text: &str) -> String {
    text.chars().take(120).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_must_be_typed_objects() {
        assert!(parse_frame(r#"{"type":"pong"}"#).is_some());
        for bad in ["{{{", "[1,2]", "42", r#"{"type":7}"#, r#"{"no":"type"}"#] {
            assert!(parse_frame(bad).is_none(), "{bad}");
        }
    }
}
