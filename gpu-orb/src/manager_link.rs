//! The supervision link (`ORB_LINK_URL`): for an orb with no inherited
//! `NODE_CHANNEL_FD` (a Slurm job on another host), the manager channel carried
//! over a WebSocket to cpu-server's `/orb-link/{room}`, one IPC line per text
//! frame, authenticated with `ORB_AUTH_TOKEN` as a bearer header.
//!
//! It is a bridge: the session and [`crate::ipc_link::IpcLink`] see an ordinary
//! socket pair, whose other end this task pumps to and from the WebSocket. So the
//! messages, their caps and their order are exactly those of the inherited
//! channel. A lost link is dialled again with backoff; when it stays lost longer
//! than `ORB_RECONNECT_GRACE` (or the server refuses the token: the orb's process
//! ended for the manager) the bridge closes its end, which the session reads as
//! the manager gone, and the orb ends.

use std::os::unix::net::UnixStream as StdUnixStream;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use shared::ipc::MAX_ORB_LINE_BYTES;
use shared::secret::Secret;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, header::AUTHORIZATION};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};

use crate::backoff;

/// Where the link goes and how long it may stay lost.
#[derive(Debug, Clone)]
pub struct LinkTarget {
    /// `ORB_LINK_URL`.
    pub url: String,
    /// `ORB_AUTH_TOKEN`.
    pub token: Secret,
    /// `ORB_RECONNECT_GRACE`.
    pub grace: Duration,
}

/// Why one connection ended.
enum Ended {
    /// The orb closed its end: it is done.
    OrbDone,
    /// The link broke: dial again.
    Lost(String),
    /// The server refused the token: no supervisor will ever take this orb again.
    Refused(String),
}

/// Makes the socket pair and starts the bridge on the current runtime; returns the
/// orb's end, to be used like an inherited channel.
pub fn start(target: LinkTarget) -> std::io::Result<StdUnixStream> {
    let (orb, bridge) = StdUnixStream::pair()?;
    orb.set_nonblocking(true)?;
    bridge.set_nonblocking(true)?;
    let bridge = UnixStream::from_std(bridge)?;
    tokio::spawn(run(target, bridge));
    Ok(orb)
}

async fn run(target: LinkTarget, end: UnixStream) {
    let (read, mut write) = end.into_split();
    let mut lines = FramedRead::new(read, LinesCodec::new_with_max_length(MAX_ORB_LINE_BYTES));
    let mut lost_since = Instant::now();
    let mut attempt = 0u32;
    loop {
        match connect(&target).await {
            Ok(socket) => {
                tracing::info!("supervision link up");
                attempt = 0;
                match pump(socket, &mut lines, &mut write).await {
                    Ended::OrbDone => return,
                    Ended::Lost(why) => tracing::warn!(%why, "supervision link lost"),
                    Ended::Refused(why) => {
                        tracing::warn!(%why, "supervision link refused: ending");
                        return;
                    }
                }
                lost_since = Instant::now();
            }
            Err(Ended::Refused(why)) => {
                tracing::warn!(%why, "supervision link refused: ending");
                return;
            }
            Err(Ended::Lost(why)) => tracing::warn!(%why, attempt, "supervision link unreachable"),
            Err(Ended::OrbDone) => return,
        }
        if lost_since.elapsed() >= target.grace {
            tracing::warn!(
                grace_ms = target.grace.as_millis() as u64,
                "supervision link lost for good"
            );
            return;
        }
        attempt = attempt.saturating_add(1);
        let pause = backoff::random_delay(attempt).min(target.grace.saturating_sub(lost_since.elapsed()));
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            // The orb ended meanwhile.
            line = lines.next() => if line.is_none() { return },
        }
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(target: &LinkTarget) -> Result<Socket, Ended> {
    let mut request = target
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| Ended::Refused(format!("bad ORB_LINK_URL: {e}")))?;
    let value = HeaderValue::from_str(&format!("Bearer {}", target.token.expose()))
        .map_err(|_| Ended::Refused("ORB_AUTH_TOKEN is not a valid header value".to_owned()))?;
    request.headers_mut().insert(AUTHORIZATION, value);
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_ORB_LINE_BYTES))
        .max_frame_size(Some(MAX_ORB_LINE_BYTES));
    match tokio_tungstenite::connect_async_with_config(request, Some(config), true).await {
        Ok((socket, _)) => Ok(socket),
        Err(WsError::Http(response)) if matches!(response.status().as_u16(), 401 | 403) => {
            Err(Ended::Refused(format!("HTTP {}", response.status())))
        }
        Err(e) => Err(Ended::Lost(e.to_string())),
    }
}

/// Carries lines both ways until one side ends.
async fn pump(
    mut socket: Socket,
    lines: &mut FramedRead<tokio::net::unix::OwnedReadHalf, LinesCodec>,
    write: &mut tokio::net::unix::OwnedWriteHalf,
) -> Ended {
    loop {
        tokio::select! {
            line = lines.next() => match line {
                Some(Ok(line)) => {
                    if let Err(e) = socket.send(Message::text(line)).await {
                        return Ended::Lost(e.to_string());
                    }
                }
                // Cannot happen: the IPC link's encoder refuses over-cap lines.
                Some(Err(LinesCodecError::MaxLineLengthExceeded)) => tracing::warn!("over-cap IPC line dropped"),
                Some(Err(LinesCodecError::Io(_))) | None => {
                    let _ = socket.close(None).await;
                    return Ended::OrbDone;
                }
            },
            frame = socket.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    let mut line = text.as_str().to_owned();
                    line.push('\n');
                    if write.write_all(line.as_bytes()).await.is_err() {
                        return Ended::OrbDone;
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    // 4401: the server's word that this orb's process is over for it.
                    if frame.as_ref().is_some_and(|f| u16::from(f.code) == 4401) {
                        return Ended::Refused("closed by the server".to_owned());
                    }
                    return Ended::Lost(format!("closed: {frame:?}"));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Ended::Lost(e.to_string()),
                None => return Ended::Lost("connection closed".to_owned()),
            },
        }
    }
}
